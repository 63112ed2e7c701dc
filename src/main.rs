//! The `berth` binary: `berth serve`, and the client commands beside it (push, pull, copy,
//! tags, inspect, delete, referrers), thin layers over `berth::client`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use berth::client::auth::{Credential, Keychain, Secret};
use berth::client::progress::{Bars, JsonLines, Progress, human};
use berth::client::{
    Client, ClientOptions, CopyOptions, CopyReport, Error, ErrorKind, ImageRef, Location, Platform,
    UploadOptions,
};
use berth::names::Reference;
use berth::native::config::{ServeArgs, Settings, parse_size};
use clap::{Args, Parser, Subcommand};

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
    Server(berth::native::config::Command),
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

/// How to reach registries.
#[derive(Args, Debug)]
struct ConnArgs {
    /// Plain HTTP, no TLS, for every registry in the command
    #[arg(long, env = "BERTH_INSECURE")]
    insecure: bool,
    /// Plain HTTP for this HOST[:PORT] only; repeatable (comma-separated in the variable)
    #[arg(
        long = "insecure-host",
        value_name = "HOST",
        env = "BERTH_INSECURE_HOSTS",
        value_delimiter = ','
    )]
    insecure_hosts: Vec<String>,
    /// Username for the registries (else docker/podman auth files are searched)
    #[arg(long, short = 'u', env = "BERTH_USERNAME")]
    username: Option<String>,
    /// Password or token for --username
    #[arg(long, short = 'p', env = "BERTH_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    /// The auth file to use instead of docker's and podman's (e.g. ~/.docker/config.json)
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    authfile: Option<PathBuf>,
    /// Retries of a request on connection errors, 429 and 5xx
    #[arg(long, default_value_t = 4, value_name = "N")]
    retries: u32,
}

/// What to print.
#[derive(Args, Debug)]
struct OutArgs {
    /// Machine-readable output: JSON (one object per line for transfers)
    #[arg(long)]
    json: bool,
    /// No progress and no summary; print only the digest
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// How to move images.
#[derive(Args, Debug)]
struct TransferArgs {
    /// From an index, copy only this platform's image (OS/ARCH[/VARIANT], e.g. linux/arm64);
    /// without it, the index and every platform are copied
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<Platform>,
    /// Also copy the artifacts that refer to the image (signatures, SBOMs)
    #[arg(long)]
    referrers: bool,
    /// Blobs transferred at once
    #[arg(long, short = 'j', default_value_t = 4, value_name = "N")]
    jobs: usize,
    /// Push blobs up to SIZE in one request, larger ones in chunks of SIZE (raised to the
    /// registry's OCI-Chunk-Min-Length)
    #[arg(long, default_value = "64M", value_name = "SIZE", value_parser = parse_size)]
    chunk_size: u64,
    /// Never send a request body larger than SIZE (e.g. 95M for a Cloudflare Worker)
    #[arg(long, env = "BERTH_MAX_CHUNK_SIZE", value_name = "SIZE", value_parser = parse_size)]
    max_chunk_size: Option<u64>,
}

/// SOURCE and DEST of `push`, `pull` and `copy` (their help says which locations each takes).
#[derive(Args, Debug)]
struct MoveArgs {
    source: String,
    dest: String,
    #[command(flatten)]
    transfer: TransferArgs,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutArgs,
}

#[derive(Args, Debug)]
struct TagsArgs {
    /// HOST/NAME, or oci:DIR
    repository: String,
    /// Tags per page requested from the registry
    #[arg(long, short = 'n', value_name = "N")]
    page_size: Option<usize>,
    /// Start after this tag
    #[arg(long, value_name = "TAG")]
    last: Option<String>,
    /// One page only (with --page-size); print the next page's link on stderr
    #[arg(long)]
    one_page: bool,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutArgs,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// HOST/NAME:TAG, HOST/NAME@DIGEST, oci:DIR[:TAG] or docker-archive:FILE
    reference: String,
    /// Print the manifest exactly as served
    #[arg(long, conflicts_with = "config")]
    raw: bool,
    /// Print the image's config (of the --platform one, for an index)
    #[arg(long)]
    config: bool,
    /// With --config on an index: which platform
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<Platform>,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutArgs,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// HOST/NAME:TAG or HOST/NAME@DIGEST
    reference: String,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutArgs,
}

#[derive(Args, Debug)]
struct ReferrersArgs {
    /// HOST/NAME:TAG, HOST/NAME@DIGEST or oci:DIR[:TAG]
    reference: String,
    /// Only artifacts of this type
    #[arg(long, value_name = "TYPE")]
    artifact_type: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(flatten)]
    out: OutArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(berth::native::config::Command::Serve(args)) => serve(*args),
        Command::Server(berth::native::config::Command::Auth(cmd)) => {
            match berth::native::auth::run(cmd) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
        Command::Tags(a) => client(a.out.json, tags(a)),
        Command::Inspect(a) => client(a.out.json, inspect(a)),
        Command::Delete(a) => client(a.out.json, delete(a)),
        Command::Referrers(a) => client(a.out.json, referrers(a)),
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
    tracing_subscriber::fmt()
        .with_max_level(settings.log_level)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(berth::native::serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Run a client command; print its error (what failed, then what to do) and exit non-zero.
fn client(json: bool, work: impl Future<Output = Result<(), Error>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
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
    }
}

fn client_for(conn: &ConnArgs) -> Result<Client, Error> {
    let mut keychain = Keychain {
        files: match &conn.authfile {
            Some(f) => vec![f.clone()],
            None => Keychain::default_files(),
        },
        ..Keychain::default()
    };
    let mut password = conn.password.clone();
    if conn.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::io("reading the password from stdin", e))?;
        password = Some(s.trim_end_matches(['\n', '\r']).to_owned());
    }
    match (&conn.username, password) {
        (Some(u), Some(p)) => {
            keychain.everywhere = Some(Credential {
                secret: Secret::Basic {
                    username: u.clone(),
                    password: p,
                },
                source: "--username/--password".into(),
            });
        }
        (Some(_), None) => {
            return Err(Error::usage(
                "--username needs a password: --password, --password-stdin or BERTH_PASSWORD",
            ));
        }
        (None, Some(_)) => return Err(Error::usage("--password needs --username")),
        (None, None) => {}
    }
    Client::new(ClientOptions {
        insecure: conn.insecure,
        insecure_hosts: conn.insecure_hosts.iter().cloned().collect(),
        keychain,
        retries: conn.retries,
        ..ClientOptions::default()
    })
}

/// A push source: `oci:`/`docker-archive:`, or a path (a directory is a layout, a file an
/// archive; `DIR:TAG` picks a tag).
fn local_location(s: &str) -> Result<Location, Error> {
    if s.starts_with("oci:") || s.starts_with("docker-archive:") {
        return s.parse();
    }
    if Path::new(s).is_file() {
        return Ok(Location::DockerArchive {
            file: s.into(),
            image: None,
        });
    }
    let layout: Location = format!("oci:{s}").parse()?;
    if let Location::Layout { dir, .. } = &layout
        && dir.is_dir()
    {
        return Ok(layout);
    }
    Err(Error::usage(format!(
        "{s}: not an OCI layout directory or a docker archive file"
    ))
    .with_hint(
        "push from oci:DIR[:TAG] or docker-archive:FILE; use `berth copy` between registries",
    ))
}

fn registry_location(s: &str) -> Result<Location, Error> {
    if s.starts_with("oci:") || s.starts_with("docker-archive:") {
        return Err(Error::usage(format!("{s} is not a registry reference"))
            .with_hint("write HOST/NAME:TAG, or use `berth copy` for any two locations"));
    }
    s.parse::<ImageRef>().map(Location::Registry)
}

fn layout_location(s: &str) -> Result<Location, Error> {
    if s.starts_with("oci:") {
        return s.parse();
    }
    format!("oci:{s}").parse()
}

async fn transfer(
    src: Location,
    dst: Location,
    t: &TransferArgs,
    conn: &ConnArgs,
    out: &OutArgs,
) -> Result<(), Error> {
    let client = client_for(conn)?;
    let options = CopyOptions {
        platform: t.platform.clone(),
        referrers: t.referrers,
        jobs: t.jobs.max(1),
        upload: UploadOptions {
            chunk_size: t.chunk_size,
            max_chunk_size: t.max_chunk_size,
            retries: conn.retries,
        },
    };
    let bars =
        (!out.json && !out.quiet && std::io::stderr().is_terminal()).then(|| Arc::new(Bars::new()));
    let json = out
        .json
        .then(|| Arc::new(JsonLines::new(std::io::stdout())));
    let progress: Arc<dyn Progress> = match (&bars, &json) {
        (Some(b), _) => b.clone(),
        (_, Some(j)) => j.clone(),
        _ => Arc::new(()),
    };
    let start = Instant::now();
    let result = berth::client::copy(&client, &src, &dst, &options, progress).await;
    if let Some(b) = &bars {
        b.finish();
    }
    let report = result.map_err(|e| e.context(format!("copying {src} to {dst}")))?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(j) = &json {
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        v["event"] = "done".into();
        v["seconds"] = serde_json::json!((secs * 1000.0).round() / 1000.0);
        j.emit(v);
    } else if out.quiet {
        println!("{}", report.digest);
    } else {
        println!("{}", summary(&report, secs));
    }
    Ok(())
}

fn summary(r: &CopyReport, secs: f64) -> String {
    let rate = if secs > 0.0 {
        format!(", {:.1} MB/s", r.bytes as f64 / secs / 1e6)
    } else {
        String::new()
    };
    let mut s = format!(
        "{} {}\n  {} manifest{}, {} blob{}: {} copied ({}), {} already there, {} mounted; \
         {secs:.2} s{rate}",
        r.destination,
        r.digest,
        r.manifests,
        if r.manifests == 1 { "" } else { "s" },
        r.blobs,
        if r.blobs == 1 { "" } else { "s" },
        r.copied,
        human(r.bytes),
        r.skipped,
        r.mounted,
    );
    if r.referrers > 0 {
        s.push_str(&format!("; {} referrers", r.referrers));
    }
    s
}

async fn tags(a: TagsArgs) -> Result<(), Error> {
    let (name, list) = if let Some(dir) = a.repository.strip_prefix("oci:") {
        let layout = berth::client::layout::Layout::open(dir).await?;
        (a.repository.clone(), layout.tags().await?)
    } else {
        let (host, name) = berth::client::reference::parse_repository(&a.repository)?;
        let client = client_for(&a.conn)?;
        let repo = client.repository(&host, name.clone());
        let list = if a.one_page || a.last.is_some() {
            let page = repo.tags_page(a.page_size, a.last.as_deref()).await?;
            if a.one_page {
                if let Some(next) = &page.next {
                    eprintln!("next: {next}");
                }
                page.tags
            } else {
                let mut all = page.tags;
                let mut next = page.next;
                for _ in 0..10_000 {
                    let Some(n) = next.take() else { break };
                    let p = repo.tags_next(&n).await?;
                    if p.tags.is_empty() {
                        break;
                    }
                    all.extend(p.tags);
                    next = p.next;
                }
                all
            }
        } else {
            repo.tags(a.page_size).await?
        };
        (format!("{host}/{name}"), list)
    };
    if a.out.json {
        println!("{}", serde_json::json!({"name": name, "tags": list}));
    } else {
        for t in list {
            println!("{t}");
        }
    }
    Ok(())
}

async fn inspect(a: InspectArgs) -> Result<(), Error> {
    let client = client_for(&a.conn)?;
    let loc: Location = a.reference.parse()?;
    let i = berth::client::inspect(&client, &loc).await?;
    if a.raw {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(&i.raw);
        let _ = out.flush();
        return Ok(());
    }
    if a.config {
        let image = match (&i.image, &a.platform) {
            (Some(img), _) => img,
            (None, Some(p)) => i
                .platforms
                .iter()
                .find(|e| e.platform == p.to_string() || e.platform.starts_with(&format!("{p}/")))
                .and_then(|e| e.image.as_ref())
                .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no platform {p}")))?,
            (None, None) => {
                return Err(Error::usage("an index has no config of its own")
                    .with_hint("pick one with --platform OS/ARCH"));
            }
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&image.config_json).unwrap_or_default()
        );
        return Ok(());
    }
    if a.out.json {
        let mut v = serde_json::to_value(&i).unwrap_or_default();
        if let Some(img) = &i.image {
            v["config"] = img.config_json.clone();
        }
        println!("{v}");
        return Ok(());
    }
    if a.out.quiet {
        println!("{}", i.digest);
        return Ok(());
    }
    println!("Name:       {}", i.name);
    println!("Digest:     {}", i.digest);
    println!("MediaType:  {}", i.media_type);
    println!("Size:       {} (manifest)", human(i.size));
    if let Some(t) = &i.artifact_type {
        println!("Artifact:   {t}");
    }
    if let Some(s) = &i.subject {
        println!("Subject:    {s}");
    }
    if let Some(a) = &i.annotations {
        println!("Annotations:");
        for (k, v) in a {
            println!(
                "  {k}: {}",
                v.as_str().map(str::to_owned).unwrap_or(v.to_string())
            );
        }
    }
    if !i.platforms.is_empty() {
        println!("Platforms:");
        for p in &i.platforms {
            let size = p
                .image
                .as_ref()
                .map(|img| format!("{:>10}  {} layers", human(img.total_size), img.layers.len()))
                .unwrap_or_default();
            println!("  {:<16} {}  {size}", p.platform, p.digest);
        }
    }
    if let Some(img) = &i.image {
        if let Some(p) = &img.platform {
            println!("Platform:   {p}");
        }
        if let Some(c) = &img.created {
            println!("Created:    {c}");
        }
        println!(
            "Config:     {} ({}, {})",
            img.config.digest,
            img.config.media_type,
            human(img.config.size)
        );
        println!("Layers:");
        for l in &img.layers {
            println!("  {}  {:>10}  {}", l.digest, human(l.size), l.media_type);
        }
        println!("Total:      {} in config and layers", human(img.total_size));
    }
    Ok(())
}

async fn delete(a: DeleteArgs) -> Result<(), Error> {
    let client = client_for(&a.conn)?;
    let r: ImageRef = a.reference.parse()?;
    let repo = client.repository(&r.host, r.name.clone());
    let digest = match &r.reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(_) => match repo.manifest_head(&r.reference).await? {
            Some(d) => d.digest,
            None => {
                return Err(
                    Error::new(ErrorKind::NotFound, format!("{r}: no such manifest"))
                        .with_hint("list the tags with `berth tags HOST/NAME`"),
                );
            }
        },
    };
    repo.delete_manifest(&Reference::Digest(digest.clone()))
        .await
        .map_err(|e| e.context(format!("deleting {r}")))?;
    if a.out.json {
        println!(
            "{}",
            serde_json::json!({"deleted": digest, "name": format!("{}/{}", r.host, r.name)})
        );
    } else if a.out.quiet {
        println!("{digest}");
    } else {
        println!("deleted {}/{}@{digest}", r.host, r.name);
    }
    Ok(())
}

async fn referrers(a: ReferrersArgs) -> Result<(), Error> {
    let client = client_for(&a.conn)?;
    let loc: Location = a.reference.parse()?;
    let (digest, list) =
        berth::client::referrers(&client, &loc, a.artifact_type.as_deref()).await?;
    if a.out.json {
        println!(
            "{}",
            serde_json::json!({"subject": digest, "referrers": list})
        );
        return Ok(());
    }
    for d in list {
        if a.out.quiet {
            println!("{}", d.digest);
            continue;
        }
        println!(
            "{}  {:>10}  {}",
            d.digest,
            human(d.size),
            d.artifact_type.as_deref().unwrap_or(&d.media_type)
        );
    }
    Ok(())
}
