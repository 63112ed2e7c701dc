//! A store that counts the calls made on it: a garbage collection pass on the cron trigger
//! stops stepping before it runs out of the invocation's subrequests (each storage call is one
//! or two R2 operations).

use std::cell::Cell;

use bytes::Bytes;

use berth::storage::{BlobEntry, BlobInfo, RangeSpec};
use berth::{
    BlobRead, Body, Digest, ListOptions, PutMode, RepoName, Storage, StorageError, Stored, Version,
};

type Result<T> = std::result::Result<T, StorageError>;

pub struct Counted<S> {
    pub inner: S,
    calls: Cell<u32>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Counted<S> {
        Counted {
            inner,
            calls: Cell::new(0),
        }
    }

    pub fn calls(&self) -> u32 {
        self.calls.get()
    }

    fn count(&self) {
        self.calls.set(self.calls.get() + 1);
    }
}

impl<S: Storage> Storage for Counted<S> {
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        self.count();
        self.inner.blob_head(digest).await
    }
    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        self.count();
        self.inner.blob_get(digest, range).await
    }
    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        self.count();
        self.inner.blob_put(digest, body).await
    }
    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        self.count();
        self.inner.blob_delete(digest).await
    }
    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        self.count();
        self.inner.blob_list(options).await
    }
    async fn upload_start(&self, id: &str) -> Result<String> {
        self.count();
        self.inner.upload_start(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        self.count();
        self.inner.upload_append(id, state, offset, body).await
    }
    async fn upload_finish(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        self.count();
        self.inner.upload_finish(id, state, digest, size).await
    }
    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        self.count();
        self.inner.upload_abort(id, state).await
    }
    async fn meta_get(&self, key: &str) -> Result<Stored> {
        self.count();
        self.inner.meta_get(key).await
    }
    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        self.count();
        self.inner.meta_put(key, value, mode).await
    }
    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        self.count();
        self.inner.meta_delete(key, expected).await
    }
    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        self.count();
        self.inner.meta_list(prefix, options).await
    }
    fn writable(&self, name: &RepoName) -> bool {
        self.inner.writable(name)
    }
}
