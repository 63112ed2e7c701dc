//! Blob GETs answered with a redirect when the store names a place the client may fetch the
//! bytes from itself ([`Storage::blob_location`]: a presigned bucket URL natively).

use std::sync::Arc;

use berth::testing::ManualEnv;
use berth::{
    BlobEntry, BlobInfo, BlobRead, Body, Config, Digest, ListOptions, MemoryStore, PutMode,
    RangeSpec, Storage, StorageError, Stored, Version,
};
use bytes::Bytes;
use http::Method;

use crate::core::Reg;

type Result<T> = std::result::Result<T, StorageError>;

/// The memory store, which also names a location for every blob it holds; or fails to, when
/// `down` is set.
#[derive(Default)]
struct Located {
    inner: MemoryStore,
    down: std::sync::atomic::AtomicBool,
}

fn url_of(d: &Digest) -> String {
    format!(
        "https://bucket.example/blobs/{}?X-Amz-Signature=abc",
        d.hex()
    )
}

impl Storage for Located {
    async fn blob_location(&self, d: &Digest) -> Result<Option<String>> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::unavailable("bucket down"));
        }
        self.inner.blob_head(d).await?;
        Ok(Some(url_of(d)))
    }
    async fn blob_head(&self, d: &Digest) -> Result<BlobInfo> {
        self.inner.blob_head(d).await
    }
    async fn blob_get(&self, d: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        self.inner.blob_get(d, range).await
    }
    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        self.inner.blob_list(options).await
    }
    async fn blob_put(&self, d: &Digest, body: Body) -> Result<u64> {
        self.inner.blob_put(d, body).await
    }
    async fn blob_delete(&self, d: &Digest) -> Result<()> {
        self.inner.blob_delete(d).await
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
    async fn upload_finish(&self, id: &str, state: &str, d: &Digest, size: u64) -> Result<()> {
        self.inner.upload_finish(id, state, d, size).await
    }
    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        self.inner.upload_abort(id, state).await
    }
    async fn meta_get(&self, key: &str) -> Result<Stored> {
        self.inner.meta_get(key).await
    }
    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        self.inner.meta_put(key, value, mode).await
    }
    async fn meta_delete(&self, key: &str, v: Option<&Version>) -> Result<()> {
        self.inner.meta_delete(key, v).await
    }
    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        self.inner.meta_list(prefix, options).await
    }
}

fn reg() -> Reg<Arc<Located>> {
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    Reg::over(Arc::new(Located::default()), env, Config::default())
}

#[tokio::test]
async fn a_blob_get_redirects_to_the_stores_location() {
    let r = reg();
    let d = r.push_blob("app", b"layer bytes").await;
    let uri = format!("/v2/app/blobs/{d}");
    let got = r.get(&uri).await;
    got.expect(307);
    assert_eq!(got.header("location"), Some(url_of(&d).as_str()));
    assert_eq!(
        got.header("docker-content-digest"),
        Some(d.to_string().as_str())
    );
    assert_eq!(got.header("content-length"), Some("0"));
    assert!(got.body.is_empty());
    // The URL expires: the redirect must not be cached as the blob would be.
    assert!(
        !got.header("cache-control")
            .unwrap_or("")
            .contains("immutable"),
        "cache-control: {:?}",
        got.header("cache-control")
    );
    // A range is the bucket's to serve: redirected too.
    let ranged = r
        .send(Method::GET, &uri, &[("range", "bytes=2-4")], Body::Empty)
        .await;
    ranged.expect(307);
    assert_eq!(ranged.header("location"), Some(url_of(&d).as_str()));
}

#[tokio::test]
async fn head_and_conditional_gets_are_answered_here() {
    let r = reg();
    let d = r.push_blob("app", b"layer bytes").await;
    let uri = format!("/v2/app/blobs/{d}");
    let head = r.head(&uri).await;
    head.expect(200);
    assert_eq!(head.header("content-length"), Some("11"));
    assert_eq!(
        head.header("docker-content-digest"),
        Some(d.to_string().as_str())
    );
    assert_eq!(head.header("location"), None);
    let etag = format!("\"{d}\"");
    let cached = r
        .send(Method::GET, &uri, &[("if-none-match", &etag)], Body::Empty)
        .await;
    cached.expect(304);
    assert_eq!(cached.header("location"), None);
}

#[tokio::test]
async fn no_location_for_a_blob_the_repository_does_not_hold() {
    let r = reg();
    let d = r.push_blob("app", b"private layer").await;
    // The store holds it, but `other` never linked it: no URL to the bytes leaks.
    r.get(&format!("/v2/other/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    let absent = Digest::sha256(b"never pushed");
    r.get(&format!("/v2/app/blobs/{absent}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn a_store_failing_to_name_a_location_is_503() {
    let r = reg();
    let d = r.push_blob("app", b"layer bytes").await;
    r.reg
        .store()
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    r.get(&format!("/v2/app/blobs/{d}")).await.expect(503);
}

/// Stores without locations (the default) serve the bytes themselves.
#[tokio::test]
async fn without_a_location_the_registry_serves_the_bytes() {
    let r = Reg::new();
    let d = r.push_blob("app", b"layer bytes").await;
    let got = r.get(&format!("/v2/app/blobs/{d}")).await;
    got.expect(200);
    assert_eq!(got.body.as_ref(), b"layer bytes");
    assert_eq!(MemoryStore::new().blob_location(&d).await.unwrap(), None);
}
