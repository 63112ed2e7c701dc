//! The native home: `berth serve` over HTTP on one machine.
//!
//! - [`fs::FsStore`]: the writable filesystem store;
//! - [`s3::S3Store`]: the S3-compatible store, shared by any number of instances;
//! - [`layout::LayoutStore`]: an OCI image layout directory served read-only as one repository;
//! - [`store::NativeStore`]: both behind one [`berth::Storage`];
//! - [`server`]: hyper 1 + tokio, graceful shutdown, request logs, upload purging;
//! - [`auth`]: loading the access-control policy, and the `berth auth` helpers;
//! - [`config`]: flags, `BERTH_*` variables and the TOML file, merged into [`config::Settings`];
//! - `stall`: cutting off request bodies and responses that stop moving;
//! - [`sha256`]: a faster SHA-256 block function for x86-64 CPUs without SHA-NI.

pub mod auth;
mod cache;
pub mod config;
pub mod env;
mod error;
pub mod events;
mod files;
pub mod fs;
pub mod layout;
pub mod maintenance;
pub mod metrics;
pub mod mirror;
pub mod ops;
pub mod s3;
pub mod server;
pub mod sha256;
mod stall;
pub mod store;
pub mod tls;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use berth::registry::{Config, Registry};
pub use error::{BadValue, Error};

/// Open the stores `settings` name. `shared`: without taking the root from a server that may
/// be running on it (and without its cleanup at start): for a dry run, which writes nothing.
pub async fn open_store(
    settings: &config::Settings,
    shared: bool,
) -> Result<store::NativeStore, Error> {
    let root: store::Root = match &settings.s3 {
        // A bucket has no lock: any number of instances share it.
        Some(s3) => {
            let store = s3
                .open()
                .await
                .map_err(|e| Error::setting(format!("storage {}", s3.url()), e.to_string()))?;
            tracing::info!(
                "data in {} at {}",
                store.url(),
                s3.endpoint.as_deref().unwrap_or("AWS S3")
            );
            if let Some(expiry) = s3.redirect {
                tracing::info!(
                    "blob GETs redirect to presigned bucket URLs valid {}s",
                    expiry.as_secs()
                );
            }
            store.into()
        }
        None => {
            let opened = if shared {
                fs::FsStore::open_shared(&settings.root).await
            } else {
                fs::FsStore::open(&settings.root).await
            };
            let fs =
                opened.map_err(|e| Error::io(format!("opening {}", settings.root.display()), e))?;
            tracing::info!("data in {}", fs.root().display());
            fs.into()
        }
    };
    let mut layouts = Vec::new();
    for (name, dir) in &settings.layouts {
        let layout = layout::LayoutStore::open(name.clone(), dir)
            .await
            .map_err(|e| Error::io(format!("layout {name}={}", dir.display()), e))?;
        tracing::info!(
            "serving the OCI layout {} as {name}, read-only",
            dir.display()
        );
        layouts.push(layout);
    }
    Ok(store::NativeStore::new(root, layouts))
}

/// The registry over `store` as `settings` configure it: limits, access control, content
/// policy.
pub fn registry<S: berth::Storage>(
    store: S,
    settings: &config::Settings,
) -> Result<Registry<S>, Error> {
    let config = Config {
        read_only: settings.read_only,
        deletes: !settings.no_deletes,
        max_manifest_size: settings.max_manifest_size,
        max_blob_size: settings.max_blob_size,
        max_uploads: settings.max_uploads,
        upload_expiry: settings.upload_expiry,
        gc_grace: settings.gc_grace,
        ..Config::default()
    };
    let mut registry = Registry::new(store, env::SystemEnv::new(), config);
    if let Some(path) = &settings.auth {
        let auth = auth::load(path)?;
        tracing::info!(
            "access control from {} (service {:?}, tokens at {})",
            path.display(),
            auth.service(),
            auth.token_path()
        );
        if !auth.realm_configured() && !settings.listen.ip().is_loopback() {
            tracing::warn!(
                "the access policy names no realm: each 401 tells the client to fetch its token \
                 from the Host the request named, which a shared cache in front could hand to \
                 others; set realm = \"https://YOUR-HOST{}\" in {}",
                auth.token_path(),
                path.display()
            );
        }
        registry = registry.with_auth(Arc::new(auth));
    }
    if let Some(path) = &settings.gc_policy {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let policy = berth::gc::ContentPolicy::parse(&text)
            .map_err(|e| Error::setting(path.display().to_string(), e.to_string()))?;
        tracing::info!("content policy from {}", path.display());
        registry = registry.with_policy(Arc::new(policy));
    }
    Ok(registry)
}

/// Open the stores `settings` name, bind, and serve until SIGINT or SIGTERM.
pub async fn serve(settings: config::Settings) -> Result<(), Error> {
    if sha256::install() {
        tracing::info!("SHA-256: AVX2 block function (this CPU has no SHA-NI)");
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let store = metrics::Metered::new(open_store(&settings, false).await?, metrics.clone());
    // Shared: a mirror's blob fetch writes to the store after its request has returned.
    let mut registry = registry(Arc::new(store), &settings)?;
    if let Some(m) = &settings.mirror {
        let upstream = mirror::NativeUpstream::new(&m.config, m.auth.as_deref())?;
        for u in &m.config.upstreams {
            tracing::info!(
                "mirroring {} ({}){}{}",
                u.url,
                u.ns,
                if u.default { ", the default" } else { "" },
                u.prefix
                    .as_deref()
                    .map(|p| format!(", also under {p}/"))
                    .unwrap_or_default()
            );
        }
        registry = registry.with_mirror(m.config.clone(), upstream);
    }
    let registry = Arc::new(registry);
    let schedule = maintenance::Schedule {
        gc: settings.gc_interval,
        scrub: settings.scrub_interval,
        purge: Duration::from_secs((settings.upload_expiry / 4).clamp(1, 600)),
        metrics: Some(metrics.clone()),
    };
    let tls = match &settings.ops.tls {
        Some((cert, key)) => Some(tls::Tls::load(cert, key)?),
        None => None,
    };
    warn_exposed(&settings);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| Error::io(format!("listening on {}", settings.listen), e))?;
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch_sighup());
    }
    if let Some(addr) = settings.ops.metrics_listen {
        let side = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("listening on {addr} (metrics)"), e))?;
        let ops = Arc::new(ops::Ops {
            metrics: Some(metrics.clone()),
            serve_metrics: true,
            ..ops::Ops::default()
        });
        tokio::spawn(ops::serve_side(side, registry.clone(), ops));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let events = (!settings.ops.notify.is_empty()).then(|| {
        let bound = listener.local_addr().unwrap_or(settings.listen);
        let source = format!("{scheme}://{bound}");
        events::Sender::start(
            &settings.ops.notify,
            settings.ops.notify_queue,
            source,
            Some(metrics.clone()),
        )
    });
    let ops = Arc::new(ops::Ops {
        events,
        metrics: Some(metrics),
        serve_metrics: settings.ops.metrics_listen.is_none(),
        json_logs: settings.ops.log_json,
        tls,
    });
    let tasks = tokio::spawn(maintenance::run(registry.clone(), schedule));
    let options = server::Options {
        grace: settings.shutdown_grace,
        header_timeout: settings.header_timeout,
        max_header_size: settings.max_header_size,
        stall_timeout: settings.stall_timeout,
        max_connections: settings.max_connections,
        ops,
        ui: !settings.no_ui,
        ..server::Options::default()
    };
    let served = server::run(listener, registry, options, server::shutdown_signal())
        .await
        .map_err(|e| Error::io("serving", e));
    tasks.abort();
    served
}

/// Say once, at start, what a listener reachable from other machines lacks.
fn warn_exposed(settings: &config::Settings) {
    if settings.listen.ip().is_loopback() {
        return;
    }
    let addr = settings.listen;
    if settings.ops.tls.is_none() {
        tracing::warn!(
            "listening on {addr} without TLS: passwords and tokens cross the network in the \
             clear, and docker, podman and containerd refuse plain HTTP from other machines \
             (set --tls-cert and --tls-key, or put a TLS proxy in front)"
        );
    }
    if settings.auth.is_none() {
        tracing::warn!(
            "listening on {addr} without an access policy: anyone who can reach it may pull, \
             push and delete (set --auth)"
        );
    }
}

/// `berth gc`: one pass (and a scrub) now; the report for the caller to print.
pub async fn collect_once(
    settings: &config::Settings,
    dry_run: bool,
    scrub: bool,
) -> Result<(berth::gc::Report, Option<berth::gc::ScrubReport>), Error> {
    let store = open_store(settings, dry_run).await.map_err(|e| match e {
        Error::Io { what, source } if source.to_string().contains("another process serves") => {
            Error::setting(
                what,
                format!(
                    "{source}: that server collects garbage every --gc-interval; stop it to \
                     run a pass by hand, or use --dry-run"
                ),
            )
        }
        e => e,
    })?;
    let registry = registry(store, settings)?;
    let storage = |e: berth::StorageError| Error::setting("garbage collection", e.to_string());
    let report = registry.collect_garbage(dry_run).await.map_err(storage)?;
    let scrubbed = match scrub && !dry_run {
        true => Some(registry.scrub(None, None).await.map_err(storage)?),
        false => None,
    };
    Ok((report, scrubbed))
}
