//! The native home: `berth serve` over HTTP on one machine.
//!
//! - [`fs::FsStore`]: the writable filesystem store;
//! - [`layout::LayoutStore`]: an OCI image layout directory served read-only as one repository;
//! - [`store::NativeStore`]: both behind one [`crate::Storage`];
//! - [`server`]: hyper 1 + tokio, graceful shutdown, request logs, upload purging;
//! - [`auth`]: loading the access-control policy, and the `berth auth` helpers;
//! - [`config`]: flags, `BERTH_*` variables and the TOML file, merged into [`config::Settings`];
//! - `stall`: cutting off request bodies and responses that stop moving;
//! - [`sha256`]: a faster SHA-256 block function for x86-64 CPUs without SHA-NI.

pub mod auth;
mod cache;
pub mod config;
mod direct;
pub mod env;
mod files;
pub mod fs;
pub mod layout;
pub mod server;
pub mod sha256;
mod stall;
pub mod store;

use std::sync::Arc;

use crate::registry::{Config, Registry};

/// Open the stores `settings` name, bind, and serve until SIGINT or SIGTERM.
pub async fn serve(settings: config::Settings) -> Result<(), String> {
    if sha256::install() {
        tracing::info!("SHA-256: AVX2 block function (this CPU has no SHA-NI)");
    }
    let fs = fs::FsStore::open(&settings.root)
        .await
        .map_err(|e| format!("opening {}: {e}", settings.root.display()))?;
    tracing::info!("data in {}", fs.root().display());
    let mut layouts = Vec::new();
    for (name, dir) in &settings.layouts {
        let layout = layout::LayoutStore::open(name.clone(), dir)
            .await
            .map_err(|e| format!("layout {name}={}: {e}", dir.display()))?;
        tracing::info!(
            "serving the OCI layout {} as {name}, read-only",
            dir.display()
        );
        layouts.push(layout);
    }
    let store = store::NativeStore::new(fs, layouts);
    let config = Config {
        read_only: settings.read_only,
        deletes: !settings.no_deletes,
        max_manifest_size: settings.max_manifest_size,
        upload_expiry: settings.upload_expiry,
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
        registry = registry.with_auth(Arc::new(auth));
    }
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", settings.listen))?;
    let options = server::Options {
        grace: settings.shutdown_grace,
        header_timeout: settings.header_timeout,
        max_header_size: settings.max_header_size,
        stall_timeout: settings.stall_timeout,
        ..server::Options::default()
    };
    server::run(listener, registry, options, server::shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))
}
