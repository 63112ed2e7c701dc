//! One upstream body, many readers: the clients pulling a cold blob at once and the store
//! write that caches it.
//!
//! No runtime: whoever polls drives. Every reader's poll first advances the store write (the
//! "driver"), then takes its next chunk, reading the upstream when it is the one that needs
//! more. Chunks stay in a window until every reader has passed them, so memory is bounded by
//! the window and the slowest reader sets the pace. The bytes are hashed as they come in and
//! the last chunk is released only once the digest and length check out: a corrupt or
//! truncated upstream body ends every reader with an error before it looks complete, and the
//! store write (which checks again) never commits it.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use futures_core::Stream;

use crate::MaybeSend;
use crate::body::ByteStream;
use crate::digest::{Digest, Hasher};

/// Chunks kept for readers that are behind (hyper reads 8–16 KiB at a time from a socket,
/// so a few MiB at most).
const WINDOW: usize = 256;

/// The store write, boxed: it reads the tee through a [`Reader`] of its own.
pub(crate) trait Driver: Future<Output = Result<(), String>> + MaybeSend {}
impl<T: Future<Output = Result<(), String>> + MaybeSend> Driver for T {}

pub(crate) struct Tee {
    state: Mutex<State>,
    driver: Mutex<Option<Pin<Box<dyn Driver>>>>,
    wake: Arc<WakeAll>,
}

struct State {
    source: Option<ByteStream>,
    hasher: Option<Hasher>,
    expect: Digest,
    size: Option<u64>,
    received: u64,
    /// Released chunks; `chunks[0]` is chunk number `base`.
    chunks: VecDeque<Bytes>,
    base: u64,
    /// The newest chunk, held back until the body is known to be whole and right.
    held: Option<Bytes>,
    /// Each reader's next chunk number; `None` for a reader that has gone.
    cursors: Vec<Option<u64>>,
    /// How the upstream body ended.
    end: Option<Result<(), String>>,
    /// How the store write ended.
    stored: Option<Result<(), String>>,
    /// The upstream has not answered yet: readers wait.
    opening: bool,
    /// The upstream never gave a body (an error status, or the request went away).
    abandoned: bool,
}

/// Wakes every reader waiting on the tee: the upstream and the store write are polled with it,
/// whichever reader polled them.
#[derive(Default)]
struct WakeAll(Mutex<Vec<Waker>>);

impl WakeAll {
    fn register(&self, w: &Waker) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !list.iter().any(|x| x.will_wake(w)) {
            list.push(w.clone());
        }
    }
}

impl Wake for WakeAll {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let list = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        for w in list {
            w.wake();
        }
    }
}

impl Tee {
    /// A tee for bytes that must hash to `expect`, whose upstream request is on its way:
    /// readers can be taken now and wait for [`Tee::open`].
    // On wasm the body stream is not `Send`, and needs not be: the platform is one thread.
    #[allow(clippy::arc_with_non_send_sync)]
    pub(crate) fn opening(expect: Digest) -> Arc<Tee> {
        Arc::new(Tee {
            state: Mutex::new(State {
                source: None,
                hasher: Some(Hasher::new(expect.algorithm())),
                expect,
                size: None,
                received: 0,
                chunks: VecDeque::new(),
                base: 0,
                held: None,
                cursors: Vec::new(),
                end: None,
                stored: None,
                opening: true,
                abandoned: false,
            }),
            driver: Mutex::new(None),
            wake: Arc::new(WakeAll::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the bytes are known bad, or never came: a new fetch should start.
    pub(crate) fn failed(&self) -> bool {
        matches!(self.lock().end, Some(Err(_)))
    }

    /// The upstream's body, `size` bytes when it said.
    pub(crate) fn open(&self, source: ByteStream, size: Option<u64>) {
        let mut s = self.lock();
        s.source = Some(source);
        s.size = size;
        s.opening = false;
        drop(s);
        self.wake.wake_by_ref();
    }

    /// No body will come: readers end with `why`, waiters learn it.
    pub(crate) fn abandon(&self, why: &str) {
        let mut s = self.lock();
        if s.opening {
            s.opening = false;
            s.abandoned = true;
            fail(&mut s, why);
            s.stored = Some(Err(why.to_owned()));
        }
        drop(s);
        self.wake.wake_by_ref();
    }

    /// The length the upstream announced, once it has answered; `Err` if it gave no body.
    pub(crate) fn opened(self: &Arc<Self>) -> Opened {
        Opened(self.clone())
    }

    /// Set the store write; it should read the tee through a reader taken before any other.
    pub(crate) fn drive(&self, driver: impl Driver + 'static) {
        *self.driver.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::pin(driver));
    }

    /// A new reader from the first byte, while the first byte is still here; `None` once
    /// the window has moved on (the caller waits for [`Tee::stored`] and reads the store).
    pub(crate) fn reader(self: &Arc<Self>, waits_for_store: bool) -> Option<Reader> {
        let mut s = self.lock();
        if s.base != 0 || matches!(s.end, Some(Err(_))) {
            return None;
        }
        s.cursors.push(Some(0));
        Some(Reader {
            tee: self.clone(),
            id: s.cursors.len() - 1,
            waits_for_store,
            failed: false,
        })
    }

    /// Advance the store write, unless another reader is doing it right now.
    fn poll_driver(&self) {
        let Ok(mut slot) = self.driver.try_lock() else {
            return;
        };
        let Some(f) = slot.as_mut() else { return };
        let waker = Waker::from(self.wake.clone());
        if let Poll::Ready(r) = f.as_mut().poll(&mut Context::from_waker(&waker)) {
            *slot = None;
            drop(slot);
            self.lock().stored = Some(r);
            self.wake.wake_by_ref();
        }
    }

    /// Whether the store write is still going (or being polled right now).
    fn writing(&self) -> bool {
        self.driver.try_lock().map(|d| d.is_some()).unwrap_or(true)
    }

    /// How the store write ended, once it has; drives it meanwhile.
    pub(crate) fn stored(self: &Arc<Self>) -> Stored {
        Stored(self.clone())
    }

    /// Read the upstream once, into the window. `Pending` when the upstream has nothing yet
    /// (the caller's waker is registered with [`WakeAll`] first, so no wakeup is lost).
    fn pull(&self, s: &mut State) -> Poll<()> {
        let Some(source) = s.source.as_mut() else {
            return Poll::Ready(());
        };
        let waker = Waker::from(self.wake.clone());
        match source.as_mut().poll_next(&mut Context::from_waker(&waker)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                s.received += chunk.len() as u64;
                if s.size.is_some_and(|n| s.received > n) {
                    fail(s, "the upstream sent more bytes than it announced");
                    return Poll::Ready(());
                }
                if let Some(h) = s.hasher.as_mut() {
                    h.update(&chunk);
                }
                if !chunk.is_empty()
                    && let Some(prev) = s.held.replace(chunk)
                {
                    s.chunks.push_back(prev);
                }
                Poll::Ready(())
            }
            Poll::Ready(Some(Err(e))) => {
                fail(s, &format!("the upstream body broke off: {e}"));
                Poll::Ready(())
            }
            Poll::Ready(None) => {
                s.source = None;
                let got = s.hasher.take().map(Hasher::finish);
                if s.size.is_some_and(|n| n != s.received) {
                    fail(s, "the upstream body was cut short");
                } else if got.as_ref() != Some(&s.expect) {
                    fail(s, "the upstream sent bytes that do not match the digest");
                } else {
                    if let Some(last) = s.held.take() {
                        s.chunks.push_back(last);
                    }
                    s.end = Some(Ok(()));
                }
                Poll::Ready(())
            }
        }
    }

    /// Drop chunks every reader has passed.
    fn trim(s: &mut State) -> bool {
        let low = s.cursors.iter().flatten().min().copied();
        let low = low.unwrap_or(s.base + s.chunks.len() as u64);
        let mut trimmed = false;
        while s.base < low && !s.chunks.is_empty() {
            s.chunks.pop_front();
            s.base += 1;
            trimmed = true;
        }
        trimmed
    }
}

fn fail(s: &mut State, why: &str) {
    s.source = None;
    s.held = None;
    s.end = Some(Err(why.to_owned()));
}

/// One reader of a [`Tee`]: a client's response body, or the store write's input.
pub(crate) struct Reader {
    tee: Arc<Tee>,
    id: usize,
    /// A client's reader gets its last chunk only once the store write has ended, so that
    /// the last client going away never cancels a write that is about to commit.
    waits_for_store: bool,
    failed: bool,
}

impl Stream for Reader {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let tee = this.tee.clone();
        tee.wake.register(cx.waker());
        if this.waits_for_store {
            tee.poll_driver();
        }
        let mut s = tee.lock();
        if s.opening {
            return Poll::Pending;
        }
        loop {
            let at = s.cursors[this.id].expect("a live reader has a cursor");
            let end = s.base + s.chunks.len() as u64;
            // A client's last byte waits for the store write: hyper drops a body once it has
            // sent Content-Length bytes, and the write must not go with it.
            if this.waits_for_store
                && at + 1 == end
                && matches!(s.end, Some(Ok(())))
                && s.stored.is_none()
                && tee.writing()
            {
                return Poll::Pending;
            }
            if at < end {
                let chunk = s.chunks[(at - s.base) as usize].clone();
                s.cursors[this.id] = Some(at + 1);
                if Tee::trim(&mut s) {
                    tee.wake.wake_by_ref();
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            match &s.end {
                Some(Err(e)) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(io::Error::other(e.clone()))));
                }
                Some(Ok(())) => return Poll::Ready(None),
                None => {}
            }
            if s.chunks.len() >= WINDOW {
                // A slower reader holds the window; its progress wakes us.
                return Poll::Pending;
            }
            if tee.pull(&mut s).is_pending() {
                return Poll::Pending;
            }
            tee.wake.wake_by_ref();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut s = self.tee.lock();
        s.cursors[self.id] = None;
        if Tee::trim(&mut s) {
            self.tee.wake.wake_by_ref();
        }
    }
}

/// The end of the store write, driving it meanwhile (see [`Tee::stored`]).
pub(crate) struct Stored(Arc<Tee>);

impl Future for Stored {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let tee = &self.0;
        tee.wake.register(cx.waker());
        tee.poll_driver();
        match &tee.lock().stored {
            Some(r) => Poll::Ready(r.clone()),
            None => Poll::Pending,
        }
    }
}

/// The upstream's answer to a tee's request (see [`Tee::opened`]).
pub(crate) struct Opened(Arc<Tee>);

impl Future for Opened {
    type Output = Result<Option<u64>, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let tee = &self.0;
        tee.wake.register(cx.waker());
        let s = tee.lock();
        if s.opening {
            Poll::Pending
        } else if s.abandoned {
            Poll::Ready(Err(()))
        } else {
            Poll::Ready(Ok(s.size))
        }
    }
}

/// Abandons its tee when dropped before [`Tee::open`]: the request that was to open it
/// failed or went away, and whoever waits must not wait forever.
pub(crate) struct Opening<'a>(pub &'a Tee);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        // A no-op once opened.
        self.0.abandon("the upstream request went away");
    }
}
