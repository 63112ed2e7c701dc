//! TLS with rustls (the ring provider): the certificate chain and key from PEM files, HTTP/2
//! and HTTP/1.1 offered by ALPN. The files are looked at again for each new connection (their
//! modification time and size) and on SIGHUP; a renewed certificate is used from the next
//! connection on, and the connections already open keep theirs. A pair that does not load (a
//! renewal caught half-written) is reported once and the last good one stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// What the files looked like when last read: modification time and size of each.
type Stamp = [(Option<SystemTime>, u64); 2];

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

struct State {
    stamp: Stamp,
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Load the pair now: a server that cannot serve TLS does not start.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Tls>, Error> {
        let stamp = stamp(cert, key);
        let config = config(cert, key).map_err(|e| Error::setting("tls", e))?;
        Ok(Arc::new(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            state: Mutex::new(State {
                stamp,
                acceptor: TlsAcceptor::from(Arc::new(config)),
            }),
        }))
    }

    /// The acceptor for a new connection, reloading the files first if they changed.
    pub fn acceptor(&self) -> TlsAcceptor {
        let now = stamp(&self.cert, &self.key);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now != state.stamp {
            state.stamp = now;
            self.swap(&mut state);
        }
        state.acceptor.clone()
    }

    /// Read the files again whether or not they look changed (SIGHUP).
    pub fn reload(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.stamp = stamp(&self.cert, &self.key);
        self.swap(&mut state);
    }

    fn swap(&self, state: &mut State) {
        match config(&self.cert, &self.key) {
            Ok(c) => {
                state.acceptor = TlsAcceptor::from(Arc::new(c));
                tracing::info!("TLS: loaded {}", self.cert.display());
            }
            Err(e) => tracing::warn!("TLS: keeping the certificate in use: {e}"),
        }
    }

    /// Reload on every SIGHUP, for as long as the server runs.
    pub async fn watch_sighup(self: Arc<Self>) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch SIGHUP: {e}");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the TLS certificate");
            self.reload();
        }
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(cert), one(key)]
}

fn config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// HTTP/1.1 and HTTP/2 (by ALPN) with the limits the plain listener has.
pub(crate) fn builder(options: &crate::server::Options) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(options.max_buf_size.max(options.max_header_size))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_size).unwrap_or(u32::MAX))
        .max_concurrent_streams(128);
    b
}

/// One TLS connection: the handshake (within `timeout`), then HTTP until it closes or the
/// server shuts down.
pub(crate) async fn serve<I, S, B>(
    io: I,
    service: S,
    (acceptor, timeout): (TlsAcceptor, Duration),
    (builder, watcher): (auto::Builder<TokioExecutor>, Watcher),
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake: timed out");
            return;
        }
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!("connection: {e}");
    }
}
