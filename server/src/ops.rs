//! What the server answers itself, before the registry: liveness (`/healthz`), readiness
//! (`/readyz`, which asks the store), and the metrics (`/metrics`); and request ids.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};

use crate::metrics::{self, Metrics};
use berth::body::Body;
use berth::storage::{Storage, StorageError};

/// The server's own parts, shared by every connection.
#[derive(Default)]
pub struct Ops {
    /// Requests are counted here when set.
    pub metrics: Option<Arc<Metrics>>,
    /// Answer `/metrics` on this listener.
    pub serve_metrics: bool,
    /// Request log lines as JSON fields rather than text.
    pub json_logs: bool,
    /// Serve HTTPS with this certificate.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Where the registry's events go, when webhooks are configured.
    pub events: Option<crate::events::Sender>,
}

impl fmt::Debug for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ops")
            .field("metrics", &self.metrics.is_some())
            .field("serve_metrics", &self.serve_metrics)
            .field("json_logs", &self.json_logs)
            .field("tls", &self.tls.is_some())
            .field("events", &self.events.is_some())
            .finish()
    }
}

pub const REQUEST_ID: &str = "x-request-id";

/// The client's `X-Request-Id` if it is sane (1 to 64 of `[A-Za-z0-9._:-]`), else a fresh one.
pub fn request_id(headers: &http::HeaderMap) -> String {
    if let Some(v) = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return v.to_owned();
    }
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: a process-wide counter still tells requests apart in the log.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&n.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The answer to `/healthz`, `/readyz` or `/metrics`; `None` for everything else.
pub async fn answer<S: Storage>(
    store: &S,
    ops: &Ops,
    method: &Method,
    path: &str,
) -> Option<Response<Body>> {
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    if path == "/metrics" && !ops.serve_metrics {
        return None;
    }
    if *method != Method::GET && *method != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(resp);
    }
    let mut resp = match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => ready(store).await,
        _ => {
            let body = ops.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            resp
        }
    };
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if *method == Method::HEAD {
        *resp.body_mut() = Body::Empty;
    }
    Some(resp)
}

/// Ready when the store answers a cheap call: the head of a blob (the empty one) that may or
/// may not be there.
async fn ready<S: Storage>(store: &S) -> Response<Body> {
    match store.blob_head(&berth::Digest::sha256(b"")).await {
        Ok(_) | Err(StorageError::NotFound) => text(StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::warn!("readiness: {e}");
            text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable\n")
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let body: String = body.into();
    let mut resp = Response::new(Body::Full(Bytes::from(body.into_bytes())));
    *resp.status_mut() = status;
    let len = resp.body().len().unwrap_or(0);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// One request's log line as JSON fields (`--log-format json`).
#[allow(clippy::too_many_arguments)]
pub fn log_json(
    method: &Method,
    path: &str,
    status: u16,
    received: u64,
    sent: u64,
    ms: f64,
    id: &str,
    complete: bool,
    internal: Option<&str>,
) {
    let ms = (ms * 10.0).round() / 10.0;
    match internal {
        Some(error) => tracing::error!(
            target: "berth::request", method = %method, path, status, received, sent, ms,
            request_id = id, error, "request"
        ),
        None if !complete => tracing::warn!(
            target: "berth::request", method = %method, path, status, received, sent, ms,
            request_id = id, cut_short = true, "request"
        ),
        None => tracing::info!(
            target: "berth::request", method = %method, path, status, received, sent, ms,
            request_id = id, "request"
        ),
    }
}

/// The metrics listener (`--metrics-listen`): `/metrics`, `/healthz` and `/readyz`, nothing
/// else; HTTP/1.1 only.
pub async fn serve_side<S: Storage>(
    listener: tokio::net::TcpListener,
    registry: Arc<berth::Registry<S>>,
    ops: Arc<Ops>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("accept (metrics): {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (registry, ops) = (registry.clone(), ops.clone());
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (registry, ops) = (registry.clone(), ops.clone());
                async move {
                    let resp = answer(registry.store(), &ops, req.method(), req.uri().path()).await;
                    let resp = resp.unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"));
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(std::time::Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
