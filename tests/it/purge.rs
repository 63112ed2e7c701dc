//! The upload purge running beside live uploads. Found by the crash test: a resumed upload
//! racing the purge a restarted server runs at once was turned away with 409.

use berth::testing::ManualEnv;
use berth::{
    BlobEntry, BlobInfo, BlobRead, Body, Config, Digest, ListOptions, MemoryStore, PutMode,
    RangeSpec, Registry, Storage, StorageError, Stored, Version,
};
use bytes::Bytes;
use http::{Method, Request};

type Result<T> = std::result::Result<T, StorageError>;

/// The memory store, yielding to the runtime before every metadata read, so that a purge and
/// a request on one thread interleave at those reads.
#[derive(Default)]
struct Yielding(MemoryStore, std::sync::atomic::AtomicBool);

impl Storage for Yielding {
    async fn blob_head(&self, d: &Digest) -> Result<BlobInfo> {
        self.0.blob_head(d).await
    }
    async fn blob_get(&self, d: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        self.0.blob_get(d, range).await
    }
    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        self.0.blob_list(options).await
    }
    async fn blob_put(&self, d: &Digest, body: Body) -> Result<u64> {
        self.0.blob_put(d, body).await
    }
    async fn blob_delete(&self, d: &Digest) -> Result<()> {
        self.0.blob_delete(d).await
    }
    async fn upload_start(&self, id: &str) -> Result<String> {
        self.0.upload_start(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        self.0.upload_append(id, state, offset, body).await
    }
    async fn upload_finish(&self, id: &str, state: &str, d: &Digest, size: u64) -> Result<()> {
        self.0.upload_finish(id, state, d, size).await
    }
    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        // When set, the first abort fails (and clears the flag).
        if self.1.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Unavailable("abort failed".into()));
        }
        self.0.upload_abort(id, state).await
    }
    async fn meta_get(&self, key: &str) -> Result<Stored> {
        tokio::task::yield_now().await;
        self.0.meta_get(key).await
    }
    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        self.0.meta_put(key, value, mode).await
    }
    async fn meta_delete(&self, key: &str, v: Option<&Version>) -> Result<()> {
        self.0.meta_delete(key, v).await
    }
    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        self.0.meta_list(prefix, options).await
    }
}

fn request(method: Method, uri: &str, body: &'static [u8]) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_purge_never_turns_a_live_upload_away() {
    let reg = Registry::new(Yielding::default(), ManualEnv::at(1000), Config::default());
    let r = reg
        .handle(request(Method::POST, "/v2/r/blobs/uploads/", b""))
        .await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    for _ in 0..20 {
        let patch = reg.handle(request(Method::PATCH, &location, b"chunk"));
        let (purged, r) = tokio::join!(reg.purge_uploads(), patch);
        assert_eq!(purged.unwrap(), 0);
        assert_eq!(
            r.status(),
            202,
            "a live upload is not busy because of the purge"
        );
    }
}

/// One storage error does not stop the purge: the other expired sessions still go, and the
/// error is reported at the end.
#[tokio::test(flavor = "current_thread")]
async fn a_purge_goes_on_past_a_storage_error() {
    let env = std::sync::Arc::new(ManualEnv::at(1000));
    let reg = Registry::new(Yielding::default(), env.clone(), Config::default());
    for _ in 0..3 {
        let r = reg
            .handle(request(Method::POST, "/v2/r/blobs/uploads/", b""))
            .await;
        assert_eq!(r.status(), 202);
    }
    env.advance(Config::default().upload_expiry + 1);
    reg.store()
        .1
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reg.purge_uploads().await.is_err(), "the error is reported");
    let left = reg
        .store()
        .0
        .meta_list("uploads/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "only the failed one is left: {left:?}");
    assert_eq!(reg.purge_uploads().await.unwrap(), 1);
}
