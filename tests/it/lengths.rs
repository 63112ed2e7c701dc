//! What a store learns of a body's length. A chunk or blob whose request said its
//! `Content-Length` reaches the store as a body of that exact length (the core has checked it),
//! so a store can plan by it: the Worker streams an R2 part that the chunk will fill.

use std::sync::Mutex;

use berth::testing::ManualEnv;
use berth::{
    BlobEntry, BlobInfo, BlobRead, Body, Config, Digest, ListOptions, MemoryStore, PutMode,
    RangeSpec, Registry, Storage, StorageError, Stored, Version,
};
use bytes::Bytes;
use http::{Method, Request};

type Result<T> = std::result::Result<T, StorageError>;

/// The memory store, noting `Body::len` of every body it is given to keep.
#[derive(Default)]
struct Noting(MemoryStore, Mutex<Vec<Option<u64>>>);

impl Noting {
    fn note(&self, body: &Body) {
        self.1.lock().unwrap().push(body.len());
    }

    fn seen(&self) -> Vec<Option<u64>> {
        std::mem::take(&mut *self.1.lock().unwrap())
    }
}

impl Storage for Noting {
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
        self.note(&body);
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
        self.note(&body);
        self.0.upload_append(id, state, offset, body).await
    }
    async fn upload_finish(&self, id: &str, state: &str, d: &Digest, size: u64) -> Result<()> {
        self.0.upload_finish(id, state, d, size).await
    }
    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        self.0.upload_abort(id, state).await
    }
    async fn meta_get(&self, key: &str) -> Result<Stored> {
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

/// A request whose body is a stream of `parts` (a length the core cannot see), with the
/// `Content-Length` header when `len` is given.
fn request(
    method: Method,
    uri: &str,
    parts: &[&'static [u8]],
    len: Option<usize>,
) -> Request<Body> {
    let chunks: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(n) = len {
        b = b.header("content-length", n);
    }
    b.body(Body::stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

/// `at` (a session's location) with the closing `digest` parameter.
fn with_digest(at: &str, d: &Digest) -> String {
    let sep = if at.contains('?') { '&' } else { '?' };
    format!("{at}{sep}digest={d}")
}

async fn start(reg: &Registry<Noting>) -> String {
    let r = reg
        .handle(request(Method::POST, "/v2/r/blobs/uploads/", &[], None))
        .await;
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_chunk_with_a_content_length_reaches_the_store_with_it() {
    let reg = Registry::new(Noting::default(), ManualEnv::at(1000), Config::default());
    let at = start(&reg).await;
    let r = reg
        .handle(request(Method::PATCH, &at, &[b"hel", b"lo"], Some(5)))
        .await;
    assert_eq!(r.status(), 202);
    let at = r.headers()["location"].to_str().unwrap().to_owned();
    let r = reg
        .handle(request(Method::PATCH, &at, &[b" wor", b"ld"], None))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        reg.store().seen(),
        [Some(5), None],
        "chunked: said, then not said"
    );

    let d = Digest::sha256(b"hello world");
    let at = r.headers()["location"].to_str().unwrap().to_owned();
    let r = reg
        .handle(request(Method::PUT, &with_digest(&at, &d), &[], Some(0)))
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_whole_blob_with_a_content_length_reaches_the_store_with_it() {
    let reg = Registry::new(Noting::default(), ManualEnv::at(1000), Config::default());
    let d = Digest::sha256(b"abc");
    let uri = format!("/v2/r/blobs/uploads/?digest={d}");
    let r = reg
        .handle(request(Method::POST, &uri, &[b"a", b"bc"], Some(3)))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(reg.store().seen(), [Some(3)]);
}

/// The length is the core's promise, so a body that breaks it fails before the store keeps it.
#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_refused() {
    let reg = Registry::new(Noting::default(), ManualEnv::at(1000), Config::default());
    let at = start(&reg).await;
    let r = reg
        .handle(request(Method::PATCH, &at, &[b"hel"], Some(5)))
        .await;
    assert_eq!(r.status(), 400);
    let d = Digest::sha256(b"abc");
    let uri = format!("/v2/r/blobs/uploads/?digest={d}");
    let r = reg
        .handle(request(Method::POST, &uri, &[b"abc", b"d"], Some(3)))
        .await;
    assert_eq!(r.status(), 400);
    let r = reg
        .handle(request(
            Method::HEAD,
            &format!("/v2/r/blobs/{d}"),
            &[],
            None,
        ))
        .await;
    assert_eq!(r.status(), 404, "nothing kept");
}
