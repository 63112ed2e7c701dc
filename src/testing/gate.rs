//! A store that stops chosen operations until the test lets them go: interleavings of
//! concurrent requests and garbage collection passes, driven deterministically.
//!
//! ```ignore
//! let store = Gated::new(MemoryStore::with_clock(clock));
//! let gate = store.gate(Op::BlobDelete(d.clone()));   // the next blob_delete of d waits
//! // ... start a pass in a task ...
//! gate.reached().await;                                // the pass is about to delete d
//! // ... do what must happen in between ...
//! gate.open();                                         // and let it go on
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::body::Body;
use crate::digest::Digest;
use crate::names::RepoName;
use crate::storage::{
    BlobEntry, BlobInfo, BlobRead, ListOptions, PutMode, RangeSpec, Result, Storage, Stored,
    Version,
};

/// An operation a gate stops: the first call that matches, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    BlobHead(Digest),
    BlobDelete(Digest),
    BlobPut(Digest),
    /// A metadata read of exactly this key.
    MetaGet(String),
    /// A metadata write of exactly this key.
    MetaPut(String),
    MetaDelete(String),
}

/// A one-way signal a task can wait for.
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, Vec<Waker>)>,
}

impl Signal {
    fn set(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = true;
        for w in s.1.drain(..) {
            w.wake();
        }
    }

    fn wait(self: Arc<Self>) -> impl Future<Output = ()> {
        Wait(self)
    }
}

struct Wait(Arc<Signal>);

impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 {
            Poll::Ready(())
        } else {
            s.1.push(cx.waker().clone());
            Poll::Pending
        }
    }
}

struct Armed {
    op: Op,
    reached: Arc<Signal>,
    open: Arc<Signal>,
}

/// The test's side of a gate.
pub struct Gate {
    reached: Arc<Signal>,
    open: Arc<Signal>,
}

impl Gate {
    /// Wait until an operation stops at this gate.
    pub async fn reached(&self) {
        self.reached.clone().wait().await
    }

    /// Let it go on.
    pub fn open(&self) {
        self.open.set();
    }
}

/// `S`, with gates.
pub struct Gated<S> {
    inner: S,
    armed: Mutex<Vec<Armed>>,
}

impl<S> Gated<S> {
    pub fn new(inner: S) -> Gated<S> {
        Gated {
            inner,
            armed: Mutex::new(Vec::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Stop the next call matching `op` until the returned gate is opened.
    pub fn gate(&self, op: Op) -> Gate {
        let reached = Arc::new(Signal::default());
        let open = Arc::new(Signal::default());
        self.armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Armed {
                op,
                reached: reached.clone(),
                open: open.clone(),
            });
        Gate { reached, open }
    }

    async fn pass(&self, op: Op) {
        let hit = {
            let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
            armed
                .iter()
                .position(|a| a.op == op)
                .map(|i| armed.remove(i))
        };
        if let Some(a) = hit {
            a.reached.set();
            a.open.wait().await;
        }
    }
}

impl<S: Storage> Storage for Gated<S> {
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        self.pass(Op::BlobHead(digest.clone())).await;
        self.inner.blob_head(digest).await
    }

    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        self.inner.blob_get(digest, range).await
    }

    async fn blob_location(&self, digest: &Digest) -> Result<Option<String>> {
        self.inner.blob_location(digest).await
    }

    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        self.pass(Op::BlobPut(digest.clone())).await;
        self.inner.blob_put(digest, body).await
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        self.pass(Op::BlobDelete(digest.clone())).await;
        self.inner.blob_delete(digest).await
    }

    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        self.inner.blob_list(options).await
    }

    async fn upload_start(&self, id: &str) -> Result<String> {
        self.inner.upload_start(id).await
    }

    async fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        self.inner.upload_append(id, state, offset, body).await
    }

    async fn upload_finish(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        self.inner.upload_finish(id, state, digest, size).await
    }

    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        self.inner.upload_abort(id, state).await
    }

    async fn meta_get(&self, key: &str) -> Result<Stored> {
        self.pass(Op::MetaGet(key.to_owned())).await;
        self.inner.meta_get(key).await
    }

    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        self.pass(Op::MetaPut(key.to_owned())).await;
        self.inner.meta_put(key, value, mode).await
    }

    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        self.pass(Op::MetaDelete(key.to_owned())).await;
        self.inner.meta_delete(key, expected).await
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        self.inner.meta_list(prefix, options).await
    }

    fn writable(&self, name: &RepoName) -> bool {
        self.inner.writable(name)
    }
}
