//! Stall limits: a request body or a response write that makes no progress for too long fails
//! with `TimedOut`, so a client that stops mid-transfer cannot hold a connection forever.
//! Progress means [`MIN_PROGRESS`] bytes within the limit: a byte now and then (a client
//! trickling a body to hold a connection and a file) does not reset the clock.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes that must move within one stall limit (16 KiB a minute by default: 273 B/s, below
/// any real client's rate).
pub const MIN_PROGRESS: u64 = 16 << 10;

/// A deadline armed when an operation first waits, and dropped once it has moved
/// [`MIN_PROGRESS`] bytes since.
pub struct Stall {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    moved: u64,
}

impl Stall {
    pub fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            sleep: None,
            moved: 0,
        }
    }

    /// `n` bytes moved: enough of them since the deadline was armed, and the next wait gets a
    /// fresh one.
    pub fn progress(&mut self, n: usize) {
        if self.sleep.is_none() {
            return;
        }
        self.moved += n as u64;
        if self.moved >= MIN_PROGRESS {
            self.sleep = None;
            self.moved = 0;
        }
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
                if let Poll::Ready(Ok(n)) = &done {
                    this.stall.progress(*n);
                }
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
                if let Poll::Ready(Ok(n)) = &done {
                    this.stall.progress(*n);
                }
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
