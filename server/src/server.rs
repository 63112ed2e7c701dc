//! HTTP/1.1 with hyper 1 and tokio: keep-alive, `Expect: 100-continue` (hyper answers it when
//! the handler first reads the body), one log line per request, graceful shutdown. (What runs
//! beside the requests, garbage collection and the upload purge, is in `maintenance`.)

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::stall::{Stall, WriteStall};
use berth::body::Body;
use berth::error::InternalError;
use berth::registry::Registry;
use berth::storage::Storage;

#[derive(Clone, Debug)]
pub struct Options {
    /// How long requests in flight may run after the shutdown signal before connections close.
    pub grace: Duration,
    /// A client must send a request's head within this time. hyper starts this clock as soon
    /// as it waits for a head, so it also closes keep-alive connections idle this long.
    pub header_timeout: Duration,
    /// The largest request head (request line and headers); past it, 431.
    pub max_header_size: usize,
    /// The longest a request body or a response may go without moving a byte.
    pub stall_timeout: Duration,
    /// The connection's read buffer.
    pub max_buf_size: usize,
    /// Metrics, health, request logs, TLS (`ops`).
    pub ops: Arc<crate::ops::Ops>,
    /// Serve the web page (`ui`) at `/`.
    pub ui: bool,
    /// Connections open at once; past it, a new one gets 503 with `Retry-After` and is closed.
    pub max_connections: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            max_header_size: 32 * 1024,
            stall_timeout: Duration::from_secs(60),
            max_buf_size: 256 * 1024,
            ops: Arc::default(),
            ui: true,
            max_connections: 1024,
        }
    }
}

/// Serve `registry` on `listener` until `shutdown` completes; then stop accepting and let the
/// requests in flight finish, for at most `options.grace`.
pub async fn run<S: Storage>(
    listener: TcpListener,
    registry: Arc<Registry<S>>,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let scheme = if options.ops.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("listening on {scheme}://{addr}");
    let tls_builder = crate::tls::builder(&options);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_header_size(options.max_header_size)
        .max_buf_size(options.max_buf_size.max(options.max_header_size))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, usually: back off instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, options.ops.tls.is_some()));
            continue;
        };
        let registry = registry.clone();
        let (stall, ui) = (options.stall_timeout, options.ui);
        let peer = berth::auth::Peer(peer.ip());
        let ops = options.ops.clone();
        let service = service_fn(move |req| {
            let registry = registry.clone();
            let ops = ops.clone();
            let at = (peer, ops, ui);
            async move { Ok::<_, Infallible>(handle(registry, req, stall, at).await) }
        });
        if let Some(tls) = &options.ops.tls {
            let io = WriteStall::new(stream, stall);
            let handshake = (tls.acceptor(), options.header_timeout);
            let conn = (tls_builder.clone(), graceful.watcher());
            let served = crate::tls::serve(io, service, handshake, conn);
            tokio::spawn(async move {
                served.await;
                drop(slot);
            });
            continue;
        }
        let io = TokioIo::new(WriteStall::new(stream, stall));
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!("grace period of {:?} over: closing connections", options.grace);
        }
    }
    Ok(())
}

/// A connection past `--max-connections`: a 503 that says when to come back, then closed.
/// Over TLS there is no plain-text answer to give; it is closed at once.
async fn refuse(mut stream: tokio::net::TcpStream, tls: bool) {
    use tokio::io::AsyncWriteExt;
    tracing::warn!("connection refused: --max-connections reached");
    if tls {
        return;
    }
    let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"too many connections; try again","detail":null}]}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nDocker-Distribution-API-Version: registry/2.0\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(head.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// The request with the client's address for login throttling and, when it carries a Basic
/// login, the password checked on the blocking pool: a hash (600,000 rounds by default) must
/// not hold a reactor thread.
async fn with_login<S: Storage>(
    registry: &Arc<Registry<S>>,
    req: Request<Body>,
    peer: berth::auth::Peer,
) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(peer);
    let basic = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case("basic "))
        });
    if basic && registry.auth().is_some() {
        let registry = registry.clone();
        let headers = parts.headers.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verified = tokio::task::spawn_blocking(move || {
            registry
                .auth()
                .and_then(|a| a.verify_basic(&headers, Some(peer), now))
        })
        .await;
        if let Ok(Some(v)) = verified {
            parts.extensions.insert(v);
        }
    }
    Request::from_parts(parts, body)
}

/// The path as logged: an upload id works as a capability for its session, so it is never
/// written to the log.
fn loggable(path: &str) -> String {
    const UPLOADS: &str = "/blobs/uploads/";
    match path.find(UPLOADS) {
        Some(i) if path.len() > i + UPLOADS.len() => format!("{}<id>", &path[..i + UPLOADS.len()]),
        _ => path.to_owned(),
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

async fn handle<S: Storage>(
    registry: Arc<Registry<S>>,
    req: Request<Incoming>,
    stall: Duration,
    (peer, ops, ui): (berth::auth::Peer, Arc<crate::ops::Ops>, bool),
) -> Response<Logged> {
    let start = Instant::now();
    let id = crate::ops::request_id(req.headers());
    let received = Arc::new(AtomicU64::new(0));
    // The path only: a query may carry tokens, and headers are never logged.
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let path = loggable(&raw_path);
    let guard = ops.metrics.as_ref().map(|m| m.start(&method, &raw_path));
    let counter = received.clone();
    let req = req.map(|incoming| {
        if incoming.is_end_stream() {
            Body::Empty
        } else {
            Body::stream(RequestBody {
                incoming,
                counter,
                stall: Stall::new(stall),
            })
        }
    });
    let early = if req.version() == http::Version::HTTP_11
        && !req.headers().contains_key(http::header::HOST)
    {
        // RFC 9112 section 3.2: a request without Host is a 400.
        Some(
            berth::RegistryError::new(berth::Code::Unsupported, "HTTP/1.1 requires a Host header")
                .with_status(StatusCode::BAD_REQUEST)
                .into_response(),
        )
    } else {
        match crate::ops::answer(registry.store(), &ops, &method, &raw_path).await {
            Some(resp) => Some(resp),
            None if ui => crate::ui::serve(&req),
            None => None,
        }
    };
    let resp = match early {
        Some(resp) => resp,
        None => {
            let req = with_login(&registry, req, peer).await;
            registry.handle(req).await
        }
    };
    let (mut parts, body) = resp.into_parts();
    if let Some(what) = parts.extensions.remove::<berth::mirror::CacheResult>()
        && let Some(m) = &ops.metrics
    {
        m.mirror(what);
    }
    if let Some(event) = parts.extensions.remove::<berth::events::Event>()
        && let Some(events) = &ops.events
    {
        events.send(&event);
    }
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        parts.headers.insert(crate::ops::REQUEST_ID, v);
    }
    // hyper stops polling a body once Content-Length bytes are out.
    let expected = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let line = LogLine {
        expected,
        method,
        path,
        status: parts.status,
        start,
        received,
        internal: parts.extensions.get::<InternalError>().map(|e| e.0.clone()),
        id,
        ops,
        _guard: guard,
    };
    Response::from_parts(
        parts,
        Logged {
            body,
            sent: 0,
            complete: false,
            line: Some(line),
        },
    )
}

/// A request body as the core's byte stream; it fails if the client stops sending.
struct RequestBody {
    incoming: Incoming,
    counter: Arc<AtomicU64>,
    stall: Stall,
}

impl Stream for RequestBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let polled = Pin::new(&mut self.incoming).poll_frame(cx);
            if polled.is_pending() {
                let e = ready!(self.stall.waiting(cx, "request body"));
                return Poll::Ready(Some(Err(e)));
            }
            let frame = match ready!(polled) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                Some(Ok(frame)) => frame,
            };
            self.stall.progress(frame.data_ref().map_or(0, |d| d.len()));
            // Trailers carry nothing the registry reads.
            if let Ok(data) = frame.into_data() {
                self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                return Poll::Ready(Some(Ok(data)));
            }
        }
    }
}

struct LogLine {
    expected: Option<u64>,
    method: Method,
    path: String,
    status: StatusCode,
    start: Instant,
    received: Arc<AtomicU64>,
    internal: Option<String>,
    id: String,
    ops: Arc<crate::ops::Ops>,
    /// Ends the request in the in-flight gauges.
    _guard: Option<crate::metrics::RequestGuard>,
}

/// The response body, counting what it sends; the request's log line is written when it is
/// done or dropped (the client went away, or HEAD).
struct Logged {
    body: Body,
    sent: u64,
    complete: bool,
    line: Option<LogLine>,
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Some(Err(e)) => {
                tracing::warn!("response body failed: {e}");
            }
            None => self.complete = true,
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let Some(l) = self.line.take() else {
            return;
        };
        let complete = self.complete
            || self.body.is_end_stream()
            || l.expected.is_some_and(|n| n <= self.sent);
        let ms = l.start.elapsed().as_secs_f64() * 1000.0;
        let (status, received, sent) = (
            l.status.as_u16(),
            l.received.load(Ordering::Relaxed),
            self.sent,
        );
        if let Some(m) = &l.ops.metrics {
            m.finish(&l.method, &l.path, status, received, sent, l.start);
        }
        if l.ops.json_logs {
            crate::ops::log_json(
                &l.method,
                &l.path,
                status,
                received,
                sent,
                ms,
                &l.id,
                complete,
                l.internal.as_deref(),
            );
            return;
        }
        let id = &l.id;
        if let Some(internal) = l.internal {
            tracing::error!(
                target: "berth::request",
                "{} {} {status} in={received} out={sent} {ms:.1}ms id={id} error={internal}",
                l.method, l.path
            );
        } else if !complete {
            tracing::warn!(
                target: "berth::request",
                "{} {} {status} in={received} out={sent} {ms:.1}ms id={id} (response cut short)",
                l.method, l.path
            );
        } else {
            tracing::info!(
                target: "berth::request",
                "{} {} {status} in={received} out={sent} {ms:.1}ms id={id}",
                l.method, l.path
            );
        }
    }
}

#[cfg(test)]
mod log_tests {
    #[test]
    fn upload_ids_are_not_logged() {
        assert_eq!(
            super::loggable("/v2/a/b/blobs/uploads/abc123"),
            "/v2/a/b/blobs/uploads/<id>"
        );
        assert_eq!(
            super::loggable("/v2/a/blobs/uploads/"),
            "/v2/a/blobs/uploads/"
        );
        assert_eq!(super::loggable("/v2/a/tags/list"), "/v2/a/tags/list");
    }
}
