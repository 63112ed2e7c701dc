//! `berth push`, `pull` and `copy`: where to, with which credentials, and the summary after.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use berth_client::auth::{Credential, Keychain, Secret};
use berth_client::progress::{Bars, JsonLines, Progress, human};
use berth_client::{
    Client, ClientOptions, CopyOptions, CopyReport, Error, ImageRef, Location, UploadOptions,
};

use super::args::{ConnArgs, OutArgs, TransferArgs};

pub(crate) fn client_for(conn: &ConnArgs) -> Result<Client, Error> {
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
pub(crate) fn local_location(s: &str) -> Result<Location, Error> {
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

pub(crate) fn registry_location(s: &str) -> Result<Location, Error> {
    if s.starts_with("oci:") || s.starts_with("docker-archive:") {
        return Err(Error::usage(format!("{s} is not a registry reference"))
            .with_hint("write HOST/NAME:TAG, or use `berth copy` for any two locations"));
    }
    s.parse::<ImageRef>().map(Location::Registry)
}

pub(crate) fn layout_location(s: &str) -> Result<Location, Error> {
    if s.starts_with("oci:") {
        return s.parse();
    }
    format!("oci:{s}").parse()
}

pub(crate) async fn transfer(
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
    let result = berth_client::copy(&client, &src, &dst, &options, progress).await;
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
