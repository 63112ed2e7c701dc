//! HTTP/1.1 with hyper 1 and tokio: keep-alive, `Expect: 100-continue` (hyper answers it when
//! the handler first reads the body), one log line per request, graceful shutdown, and a
//! periodic purge of abandoned uploads.

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

use crate::body::Body;
use crate::error::InternalError;
use crate::native::stall::{Stall, WriteStall};
use crate::registry::Registry;
use crate::storage::Storage;

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
    /// How often to drop expired uploads; by default a quarter of the expiry, at most 10 min.
    pub purge_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            max_header_size: 32 * 1024,
            stall_timeout: Duration::from_secs(60),
            max_buf_size: 256 * 1024,
            purge_every: None,
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
    tracing::info!("listening on http://{addr}");
    let every = options.purge_every.unwrap_or_else(|| {
        Duration::from_secs((registry.config().upload_expiry / 4).clamp(1, 600))
    });
    let purger = tokio::spawn(purge(registry.clone(), every));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_header_size(options.max_header_size)
        .max_buf_size(options.max_buf_size.max(options.max_header_size))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
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
        let registry = registry.clone();
        let stall = options.stall_timeout;
        let service = service_fn(move |req| {
            let registry = registry.clone();
            async move { Ok::<_, Infallible>(handle(&registry, req, stall).await) }
        });
        let io = TokioIo::new(WriteStall::new(stream, stall));
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
    drop(listener);
    purger.abort();
    tracing::info!("shutting down: finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!("grace period of {:?} over: closing connections", options.grace);
        }
    }
    Ok(())
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

async fn purge<S: Storage>(registry: Arc<Registry<S>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match registry.purge_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("dropped {n} expired uploads"),
            Err(e) => tracing::warn!("purging uploads: {e}"),
        }
    }
}

async fn handle<S: Storage>(
    registry: &Registry<S>,
    req: Request<Incoming>,
    stall: Duration,
) -> Response<Logged> {
    let start = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    // The path only: a query may carry tokens, and headers are never logged.
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
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
    let resp = registry.handle(req).await;
    let (parts, body) = resp.into_parts();
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
            self.stall.progress();
            let frame = match ready!(polled) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                Some(Ok(frame)) => frame,
            };
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
        if let Some(internal) = l.internal {
            tracing::error!(
                target: "berth::request",
                "{} {} {status} in={received} out={sent} {ms:.1}ms error={internal}",
                l.method, l.path
            );
        } else if !complete {
            tracing::warn!(
                target: "berth::request",
                "{} {} {status} in={received} out={sent} {ms:.1}ms (response cut short)",
                l.method, l.path
            );
        } else {
            tracing::info!(
                target: "berth::request",
                "{} {} {status} in={received} out={sent} {ms:.1}ms",
                l.method, l.path
            );
        }
    }
}
