//! The `berth` binary: `berth serve`, `berth auth`, and the client commands beside them (push,
//! pull, copy, tags, inspect, delete, referrers), thin layers over `berth_client` (`cli/`).

mod cli;

use std::process::ExitCode;

use berth_client::{Error, ErrorKind};
use berth_server::config::{Command as ServerCommand, GcRun, ServeArgs, Settings};
use clap::{Parser, Subcommand};

use cli::args::{DeleteArgs, InspectArgs, MoveArgs, ReferrersArgs, TagsArgs};
use cli::transfer::{layout_location, local_location, registry_location, transfer};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "An OCI Distribution registry, and a client for any registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Server(ServerCommand),
    /// Push an image from an OCI layout or a docker archive to a registry.
    ///
    /// SOURCE is oci:DIR[:TAG], docker-archive:FILE, or a plain path (a directory is an OCI
    /// layout, a file a docker archive). DEST is HOST/NAME[:TAG].
    Push(MoveArgs),
    /// Pull an image from a registry into an OCI layout directory.
    ///
    /// SOURCE is HOST/NAME[:TAG] or HOST/NAME@DIGEST; DEST is oci:DIR[:TAG] or a plain
    /// DIR[:TAG] (the tag defaults to the source's).
    Pull(MoveArgs),
    /// Copy an image between any two of: registry, OCI layout, docker archive (source only).
    ///
    /// Locations: HOST/NAME:TAG, HOST/NAME@DIGEST, oci:DIR[:TAG], docker-archive:FILE.
    Copy(MoveArgs),
    /// List a repository's tags (HOST/NAME, or oci:DIR).
    Tags(TagsArgs),
    /// Show a manifest: media type, digest, platforms, config, layers and sizes.
    Inspect(InspectArgs),
    /// Delete a manifest (by tag or digest) from a registry. A tag is resolved to its digest
    /// first, so every tag of that manifest goes with it.
    Delete(DeleteArgs),
    /// List the artifacts (signatures, SBOMs...) that refer to a manifest.
    Referrers(ReferrersArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(ServerCommand::Serve(args)) => serve(*args),
        Command::Server(ServerCommand::Gc(run)) => gc(*run),
        Command::Server(ServerCommand::Auth(cmd)) => match berth_server::auth::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Push(a) => client(a.out.json, async move {
            let src = local_location(&a.source)?;
            let dst = registry_location(&a.dest)?;
            transfer(src, dst, &a.transfer, &a.conn, &a.out).await
        }),
        Command::Pull(a) => client(a.out.json, async move {
            let src = registry_location(&a.source)?;
            let dst = layout_location(&a.dest)?;
            transfer(src, dst, &a.transfer, &a.conn, &a.out).await
        }),
        Command::Copy(a) => client(a.out.json, async move {
            let src = a.source.parse()?;
            let dst = a.dest.parse()?;
            transfer(src, dst, &a.transfer, &a.conn, &a.out).await
        }),
        Command::Tags(a) => client(a.out.json, cli::show::tags(a)),
        Command::Inspect(a) => client(a.out.json, cli::show::inspect(a)),
        Command::Delete(a) => client(a.out.json, cli::show::delete(a)),
        Command::Referrers(a) => client(a.out.json, cli::show::referrers(a)),
    }
}

/// Threads for blocking file work (tokio's default is 512). Most of them would wait on fsync:
/// past a few dozen the disk gains nothing, and each thread costs memory (a stack, a malloc
/// arena). Work beyond them queues.
const BLOCKING_THREADS: usize = 32;

/// Run `work` on a multi-threaded runtime: the one place the binary builds one.
fn run_async<T>(work: impl Future<Output = T>) -> Result<T, ExitCode> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(r) => Ok(r.block_on(work)),
        Err(e) => {
            eprintln!("berth: starting the runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let settings = match Settings::resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_max_level(settings.log_level)
        .with_writer(std::io::stderr);
    if settings.ops.log_json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    match run_async(berth_server::serve(settings)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

fn gc(run: GcRun) -> ExitCode {
    let settings = match Settings::resolve(run.serve) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(
            settings
                .log_level
                .min(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .with_writer(std::io::stderr)
        .init();
    let start = std::time::Instant::now();
    let (report, scrubbed) = match run_async(berth_server::collect_once(
        &settings,
        run.dry_run,
        run.scrub,
    )) {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            eprintln!("berth: {e}");
            return ExitCode::FAILURE;
        }
        Err(code) => return code,
    };
    if run.json {
        let v = serde_json::json!({"gc": report, "scrub": scrubbed});
        println!("{v}");
    } else {
        cli::gc::print(&report, scrubbed.as_ref(), start.elapsed());
    }
    match (&report.aborted, scrubbed.map(|s| s.corrupt.len())) {
        (Some(_), _) => ExitCode::FAILURE,
        (_, Some(n)) if n > 0 => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// Run a client command; print its error (what failed, then what to do) and exit non-zero.
fn client(json: bool, work: impl Future<Output = Result<(), Error>>) -> ExitCode {
    let e = match run_async(work) {
        Ok(Ok(())) => return ExitCode::SUCCESS,
        Ok(Err(e)) => e,
        Err(code) => return code,
    };
    if json {
        let v = serde_json::json!({
            "event": "error", "kind": format!("{:?}", e.kind()).to_lowercase(),
            "message": e.message(), "hint": e.hint(), "status": e.status(),
            "code": e.code(),
        });
        println!("{v}");
    }
    eprintln!("berth: {e}");
    if let Some(h) = e.hint() {
        eprintln!("  hint: {h}");
    }
    if e.kind() == ErrorKind::Usage {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}
