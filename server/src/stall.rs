//! Stall limits: a request body or a response write that makes no progress for too long fails
//! with `TimedOut`, so a client that stops mid-transfer cannot hold a connection forever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A deadline armed when an operation first waits and dropped when it moves.
pub struct Stall {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Stall {
    pub fn new(limit: Duration) -> Stall {
        Stall { limit, sleep: None }
    }

    /// Bytes moved: the next wait gets a fresh deadline.
    pub fn progress(&mut self) {
        self.sleep = None;
    }

    /// The operation is waiting: an error once it has waited `limit` since it last moved.
    pub fn waiting(&mut self, cx: &mut Context<'_>, what: &str) -> Poll<io::Error> {
        let limit = self.limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} stalled for {limit:?}"),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A connection whose writes fail once the peer has read nothing for the stall limit. Reads are
/// left alone: hyper bounds the wait for a request head, and the request body has its own
/// [`Stall`].
pub struct WriteStall<T> {
    io: T,
    stall: Stall,
}

impl<T> WriteStall<T> {
    pub fn new(io: T, limit: Duration) -> WriteStall<T> {
        WriteStall {
            io,
            stall: Stall::new(limit),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.stall.waiting(cx, "response").map(Err),
            done => {
                this.stall.progress();
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.stall.waiting(cx, "response").map(Err),
            done => {
                this.stall.progress();
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
