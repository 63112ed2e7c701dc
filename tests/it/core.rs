//! The handler driven in-process against the memory store: every endpoint id of the spec.

use std::sync::Arc;

use berth::testing::ManualEnv;
use berth::{Body, Config, Digest, MemoryStore, Registry, Storage};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};

pub struct Reg<S = MemoryStore> {
    pub reg: Registry<S>,
    pub env: Arc<ManualEnv>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The OCI error code of an error response.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.code(), code);
        assert_eq!(self.header("content-type"), Some("application/json"));
        self
    }
}

impl Reg {
    pub fn new() -> Reg {
        Reg::with(Config::default())
    }

    pub fn with(config: Config) -> Reg {
        let env = Arc::new(ManualEnv::at(1_700_000_000));
        Reg {
            reg: Registry::new(MemoryStore::new(), env.clone(), config),
            env,
        }
    }
}

impl<S: Storage> Reg<S> {
    /// A registry over `store`, whose clock is `env`'s.
    pub fn over(store: S, env: Arc<ManualEnv>, config: Config) -> Reg<S> {
        Reg {
            reg: Registry::new(store, env.clone(), config),
            env,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self.reg.handle(req.body(body.into()).unwrap()).await;
        let (parts, body) = resp.into_parts();
        let body = body.collect(1 << 30).await.expect("response body");
        assert_eq!(
            parts
                .headers
                .get("docker-distribution-api-version")
                .map(|v| v.as_bytes()),
            Some(&b"registry/2.0"[..]),
            "every response carries the API version"
        );
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.send(Method::GET, uri, &[], Body::Empty).await
    }

    pub async fn head(&self, uri: &str) -> Resp {
        self.send(Method::HEAD, uri, &[], Body::Empty).await
    }

    pub async fn delete(&self, uri: &str) -> Resp {
        self.send(Method::DELETE, uri, &[], Body::Empty).await
    }

    /// Monolithic push (end-4b); returns the digest.
    pub async fn push_blob(&self, name: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256(data);
        remember_size(&d, data.len() as u64);
        self.send(
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/?digest={d}"),
            &[],
            Bytes::copy_from_slice(data),
        )
        .await
        .expect(201);
        d
    }

    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &Value,
    ) -> Resp {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(
            Method::PUT,
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", media_type)],
            bytes,
        )
        .await
    }

    /// Push config and layers, then an image manifest under `tag`; returns the manifest's digest and bytes.
    pub async fn push_image(&self, name: &str, tag: &str, seed: &str) -> (Digest, Vec<u8>) {
        let config = self
            .push_blob(name, format!("{{\"config\":\"{seed}\"}}").as_bytes())
            .await;
        let layer = self
            .push_blob(name, format!("layer of {seed}").as_bytes())
            .await;
        let m = image_manifest(&config, &[&layer], None, None);
        let bytes = serde_json::to_vec(&m).unwrap();
        self.put_manifest(name, tag, OCI_MANIFEST, &m)
            .await
            .expect(201);
        (Digest::sha256(&bytes), bytes)
    }

    pub async fn location(&self, name: &str) -> String {
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/"),
                &[],
                Body::Empty,
            )
            .await;
        r.expect(202);
        r.header("location").expect("Location").to_owned()
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub fn desc(media_type: &str, d: &Digest, size: u64) -> Value {
    json!({ "mediaType": media_type, "digest": d.to_string(), "size": size })
}

static SIZES: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

/// The size of a blob `push_blob` pushed, for descriptors (which must give it right).
pub fn remember_size(d: &Digest, size: u64) {
    SIZES.lock().unwrap().push((d.to_string(), size));
}

/// The size `push_blob` saw for `d`; 1 for digests it never pushed.
pub fn size_of(d: &Digest) -> u64 {
    let d = d.to_string();
    SIZES
        .lock()
        .unwrap()
        .iter()
        .find(|(k, _)| *k == d)
        .map_or(1, |(_, s)| *s)
}

pub fn image_manifest(
    config: &Digest,
    layers: &[&Digest],
    subject: Option<Value>,
    artifact_type: Option<&str>,
) -> Value {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config, size_of(config)),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar+gzip", l, size_of(l))).collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        m["subject"] = s;
    }
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    m
}

fn with_host(location: &str, query: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{query}")
}

// ---------------------------------------------------------------- end-1

#[tokio::test]
async fn base_answers_200() {
    let r = Reg::new();
    r.get("/v2/").await.expect(200);
    r.head("/v2/").await.expect(200);
    r.get("/v2").await.expect(200);
}

#[tokio::test]
async fn head_responses_have_no_body() {
    let r = Reg::new();
    let d = Digest::sha256(b"missing");
    for uri in [
        format!("/v2/a/blobs/{d}"),
        "/v2/a/manifests/nope".to_owned(),
        "/v2/a/blobs/sha256:bad".to_owned(),
    ] {
        let resp = r.head(&uri).await;
        assert!(resp.status.is_client_error(), "{uri}");
        assert!(resp.body.is_empty(), "{uri}");
    }
}

#[tokio::test]
async fn handle_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let r = Reg::new();
    let fut = r
        .reg
        .handle(Request::get("/v2/").body(Body::Empty).unwrap());
    assert_send(&fut);
    assert_eq!(fut.await.status(), 200);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let r = Reg::new();
    r.get("/v2/a/b").await.expect(404);
    r.get("/other").await.expect(404);
    let resp = r
        .send(Method::POST, "/v2/a/manifests/latest", &[], Body::Empty)
        .await;
    resp.expect_error(405, "UNSUPPORTED");
    assert!(resp.header("allow").unwrap().contains("PUT"));
}

// ---------------------------------------------------------------- end-2, end-4b

#[tokio::test]
async fn monolithic_push_and_pull_both_algorithms() {
    let r = Reg::new();
    let data = b"hello blob";
    for alg in [berth::Algorithm::Sha256, berth::Algorithm::Sha512] {
        let d = Digest::of(alg, data);
        let resp = r
            .send(
                Method::POST,
                &format!("/v2/a/b/blobs/uploads/?digest={d}"),
                &[],
                &data[..],
            )
            .await;
        resp.expect(201);
        assert_eq!(
            resp.header("location"),
            Some(format!("/v2/a/b/blobs/{d}").as_str())
        );
        assert_eq!(
            resp.header("docker-content-digest"),
            Some(d.to_string().as_str())
        );
        let got = r.get(&format!("/v2/a/b/blobs/{d}")).await;
        got.expect(200);
        assert_eq!(&got.body[..], data);
        assert_eq!(got.header("content-length"), Some("10"));
        assert_eq!(
            got.header("docker-content-digest"),
            Some(d.to_string().as_str())
        );
        assert_eq!(got.header("etag"), Some(format!("\"{d}\"").as_str()));
        let head = r.head(&format!("/v2/a/b/blobs/{d}")).await;
        head.expect(200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), Some("10"));
    }
}

#[tokio::test]
async fn digest_in_query_may_be_percent_encoded() {
    let r = Reg::new();
    let d = Digest::sha256(b"x");
    let enc = d.to_string().replace(':', "%3A");
    r.send(
        Method::POST,
        &format!("/v2/a/blobs/uploads/?digest={enc}"),
        &[],
        &b"x"[..],
    )
    .await
    .expect(201);
    r.head(&format!("/v2/a/blobs/{d}")).await.expect(200);
}

#[tokio::test]
async fn blobs_are_per_repository() {
    let r = Reg::new();
    let d = r.push_blob("one", b"private").await;
    r.get(&format!("/v2/two/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    r.get(&format!("/v2/one/blobs/{}", Digest::sha256(b"nope")))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn monolithic_digest_mismatch_leaves_no_blob() {
    let r = Reg::new();
    let d = Digest::sha256(b"claimed");
    r.send(
        Method::POST,
        &format!("/v2/a/blobs/uploads/?digest={d}"),
        &[],
        &b"actual"[..],
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    r.head(&format!("/v2/a/blobs/{d}")).await.expect(404);
}

#[tokio::test]
async fn monolithic_size_mismatch() {
    let r = Reg::new();
    let d = Digest::sha256(b"abc");
    r.send(
        Method::POST,
        &format!("/v2/a/blobs/uploads/?digest={d}"),
        &[("content-length", "5")],
        &b"abc"[..],
    )
    .await
    .expect_error(400, "SIZE_INVALID");
    r.head(&format!("/v2/a/blobs/{d}")).await.expect(404);
}

#[tokio::test]
async fn bad_digests_are_400() {
    let r = Reg::new();
    for bad in [
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nonsense",
        "sha256:%2e%2e",
    ] {
        r.get(&format!("/v2/a/blobs/{bad}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
        r.send(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={bad}"),
            &[],
            &b"x"[..],
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn bad_names_are_400() {
    let r = Reg::new();
    let long = "a".repeat(256);
    for bad in [
        "A",
        "a/../b",
        "a/%2e%2e/b",
        "a%2Fb",
        "a\\b",
        "-a",
        &long,
        "a//b",
    ] {
        let resp = r.get(&format!("/v2/{bad}/tags/list")).await;
        assert_eq!(resp.status, 400, "{bad}");
        assert_eq!(resp.code(), "NAME_INVALID", "{bad}");
    }
}

#[tokio::test]
async fn zero_length_blobs() {
    let r = Reg::new();
    let d = Digest::sha256(b"");
    r.send(
        Method::POST,
        &format!("/v2/a/blobs/uploads/?digest={d}"),
        &[("content-length", "0")],
        Body::Empty,
    )
    .await
    .expect(201);
    let got = r.get(&format!("/v2/a/blobs/{d}")).await;
    got.expect(200);
    assert!(got.body.is_empty());
    assert_eq!(got.header("content-length"), Some("0"));
    // And through a session.
    let loc = r.location("b").await;
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={d}")),
        &[],
        Body::Empty,
    )
    .await
    .expect(201);
    r.head(&format!("/v2/b/blobs/{d}")).await.expect(200);
}

// ---------------------------------------------------------------- Range and conditional requests

#[tokio::test]
async fn ranges() {
    let r = Reg::new();
    let data: Vec<u8> = (0..100u8).collect();
    let d = r.push_blob("a", &data).await;
    let uri = format!("/v2/a/blobs/{d}");
    let cases: &[(&str, std::ops::Range<usize>, &str)] = &[
        ("bytes=0-9", 0..10, "bytes 0-9/100"),
        ("bytes=90-", 90..100, "bytes 90-99/100"),
        ("bytes=-5", 95..100, "bytes 95-99/100"),
        ("bytes=50-500", 50..100, "bytes 50-99/100"),
    ];
    for (range, want, content_range) in cases {
        let resp = r
            .send(Method::GET, &uri, &[("range", range)], Body::Empty)
            .await;
        resp.expect(206);
        assert_eq!(&resp.body[..], &data[want.clone()], "{range}");
        assert_eq!(resp.header("content-range"), Some(*content_range));
        assert_eq!(
            resp.header("content-length"),
            Some(want.len().to_string().as_str())
        );
        let head = r
            .send(Method::HEAD, &uri, &[("range", range)], Body::Empty)
            .await;
        head.expect(206);
        assert_eq!(
            head.header("content-length"),
            Some(want.len().to_string().as_str())
        );
    }
    for unsatisfiable in ["bytes=100-", "bytes=200-300", "bytes=-0"] {
        let resp = r
            .send(Method::GET, &uri, &[("range", unsatisfiable)], Body::Empty)
            .await;
        resp.expect_error(416, "SIZE_INVALID");
        assert_eq!(
            resp.header("content-range"),
            Some("bytes */100"),
            "{unsatisfiable}"
        );
    }
    // Not one valid byte range (RFC 9110 §14.2: a server may ignore it): the whole blob.
    for ignored in ["bytes=5-1", "bytes=x-y", "bytes=0-1,5-6", "pages=1-2"] {
        let resp = r
            .send(Method::GET, &uri, &[("range", ignored)], Body::Empty)
            .await;
        resp.expect(200);
        assert_eq!(&resp.body[..], &data[..], "{ignored}");
        assert_eq!(resp.header("content-range"), None, "{ignored}");
    }
    // A stale If-Range gets the whole blob.
    let resp = r
        .send(
            Method::GET,
            &uri,
            &[("range", "bytes=0-0"), ("if-range", "\"other\"")],
            Body::Empty,
        )
        .await;
    resp.expect(200);
    assert_eq!(resp.body.len(), 100);
    let etag = format!("\"{d}\"");
    let resp = r
        .send(
            Method::GET,
            &uri,
            &[("range", "bytes=0-0"), ("if-range", &etag)],
            Body::Empty,
        )
        .await;
    resp.expect(206);
}

#[tokio::test]
async fn conditional_get() {
    let r = Reg::new();
    let d = r.push_blob("a", b"cached").await;
    let uri = format!("/v2/a/blobs/{d}");
    let etag = r.get(&uri).await.header("etag").unwrap().to_owned();
    let resp = r
        .send(Method::GET, &uri, &[("if-none-match", &etag)], Body::Empty)
        .await;
    resp.expect(304);
    assert!(resp.body.is_empty());
    r.send(
        Method::GET,
        &uri,
        &[("if-none-match", "\"sha256:other\"")],
        Body::Empty,
    )
    .await
    .expect(200);
    let (md, _) = r.push_image("a", "v1", "c").await;
    let etag = format!("\"{md}\"");
    r.send(
        Method::GET,
        "/v2/a/manifests/v1",
        &[("if-none-match", &etag)],
        Body::Empty,
    )
    .await
    .expect(304);
}

// ---------------------------------------------------------------- end-4a, end-5, end-6, end-13, end-14

#[tokio::test]
async fn post_then_put() {
    let r = Reg::new();
    let loc = r.location("a").await;
    let data = b"whole blob in the put";
    let d = Digest::sha256(data);
    let resp = r
        .send(
            Method::PUT,
            &with_host(&loc, &format!("digest={d}")),
            &[],
            &data[..],
        )
        .await;
    resp.expect(201);
    assert_eq!(
        resp.header("location"),
        Some(format!("/v2/a/blobs/{d}").as_str())
    );
    assert_eq!(&r.get(&format!("/v2/a/blobs/{d}")).await.body[..], data);
    // The session is gone.
    r.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload() {
    let r = Reg::new();
    let post = r
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], Body::Empty)
        .await;
    post.expect(202);
    assert_eq!(post.header("range"), Some("0-0"));
    assert!(post.header("docker-upload-uuid").is_some());
    let mut loc = post.header("location").unwrap().to_owned();
    let chunks: [&[u8]; 3] = [b"first ", b"second ", b"third"];
    let mut offset = 0;
    for c in chunks {
        let range = format!("{}-{}", offset, offset + c.len() - 1);
        let resp = r
            .send(
                Method::PATCH,
                &loc,
                &[
                    ("content-range", &range),
                    ("content-length", &c.len().to_string()),
                ],
                c,
            )
            .await;
        resp.expect(202);
        offset += c.len();
        assert_eq!(
            resp.header("range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
        loc = resp.header("location").unwrap().to_owned();
        let status = r.get(&loc).await;
        status.expect(204);
        assert_eq!(
            status.header("range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
    }
    // A chunk at the wrong offset is a 416 that tells where the upload is.
    let resp = r
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "0-3")],
            &b"oops"[..],
        )
        .await;
    resp.expect_error(416, "BLOB_UPLOAD_INVALID");
    assert_eq!(
        resp.header("range"),
        Some(format!("0-{}", offset - 1).as_str())
    );
    let resp = r
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "100-103")],
            &b"oops"[..],
        )
        .await;
    resp.expect(416);
    // Content-Length disagreeing with Content-Range.
    let range = format!("{offset}-{}", offset + 3);
    r.send(
        Method::PATCH,
        &loc,
        &[("content-range", &range), ("content-length", "2")],
        &b"oops"[..],
    )
    .await
    .expect_error(400, "SIZE_INVALID");
    // A body shorter than its Content-Range.
    r.send(
        Method::PATCH,
        &loc,
        &[("content-range", &range)],
        &b"ab"[..],
    )
    .await
    .expect_error(400, "SIZE_INVALID");
    // The last chunk in the closing PUT.
    let all = b"first second third!";
    let d = Digest::sha256(all);
    let range = format!("{offset}-{offset}");
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={d}")),
        &[("content-range", &range)],
        &b"!"[..],
    )
    .await
    .expect(201);
    assert_eq!(&r.get(&format!("/v2/a/blobs/{d}")).await.body[..], all);
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    // What docker does: one PATCH holding the whole blob as a stream, then PUT.
    let r = Reg::new();
    let loc = r.location("a").await;
    let chunks: Vec<std::io::Result<Bytes>> = (0..100)
        .map(|i| Ok(Bytes::from(vec![i as u8; 1000])))
        .collect();
    let body = Body::stream(futures_util::stream::iter(chunks));
    let resp = r.send(Method::PATCH, &loc, &[], body).await;
    resp.expect(202);
    assert_eq!(resp.header("range"), Some("0-99999"));
    let data: Vec<u8> = (0..100).flat_map(|i| vec![i as u8; 1000]).collect();
    let d = Digest::sha256(&data);
    r.send(
        Method::PUT,
        &with_host(resp.header("location").unwrap(), &format!("digest={d}")),
        &[],
        Body::Empty,
    )
    .await
    .expect(201);
    assert_eq!(
        &r.get(&format!("/v2/a/blobs/{d}")).await.body[..],
        &data[..]
    );
}

#[tokio::test]
async fn closing_digest_mismatch_leaves_nothing() {
    let r = Reg::new();
    let loc = r.location("a").await;
    r.send(Method::PATCH, &loc, &[], &b"some bytes"[..])
        .await
        .expect(202);
    let wrong = Digest::sha256(b"other bytes");
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={wrong}")),
        &[],
        Body::Empty,
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    r.head(&format!("/v2/a/blobs/{wrong}")).await.expect(404);
    r.head(&format!("/v2/a/blobs/{}", Digest::sha256(b"some bytes")))
        .await
        .expect(404);
    r.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        r.reg.store().open_uploads(),
        0,
        "the upload's bytes are dropped"
    );
}

#[tokio::test]
async fn closing_put_needs_a_valid_digest() {
    let r = Reg::new();
    let loc = r.location("a").await;
    r.send(Method::PUT, &loc, &[], &b"x"[..])
        .await
        .expect_error(400, "DIGEST_INVALID");
    r.send(
        Method::PUT,
        &with_host(&loc, "digest=sha256:nothex"),
        &[],
        &b"x"[..],
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    // The session survives a refused PUT.
    r.get(&loc).await.expect(204);
}

#[tokio::test]
async fn digest_algorithm_sha512() {
    let r = Reg::new();
    let post = r
        .send(
            Method::POST,
            "/v2/a/blobs/uploads/?digest-algorithm=sha512",
            &[],
            Body::Empty,
        )
        .await;
    post.expect(202);
    let loc = post.header("location").unwrap().to_owned();
    r.send(
        Method::PATCH,
        &loc,
        &[("content-range", "0-4")],
        &b"hello"[..],
    )
    .await
    .expect(202);
    let d = Digest::of(berth::Algorithm::Sha512, b"hello");
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={d}")),
        &[],
        Body::Empty,
    )
    .await
    .expect(201);
    assert_eq!(&r.get(&format!("/v2/a/blobs/{d}")).await.body[..], b"hello");
    // An unsupported algorithm is refused up front.
    r.send(
        Method::POST,
        "/v2/a/blobs/uploads/?digest-algorithm=md5",
        &[],
        Body::Empty,
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    // A session started without an algorithm hashes as sha256 while bytes arrive; a closing
    // PUT naming sha512 is hashed again then, over the stored bytes (chunked, streamed, and
    // with a last chunk in the PUT).
    let d512 = Digest::of(berth::Algorithm::Sha512, b"abcdef");
    let loc = r.location("a").await;
    r.send(
        Method::PATCH,
        &loc,
        &[("content-range", "0-2")],
        &b"abc"[..],
    )
    .await
    .expect(202);
    r.send(Method::PATCH, &loc, &[("content-range", "3-4")], &b"de"[..])
        .await
        .expect(202);
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={d512}")),
        &[("content-range", "5-5")],
        &b"f"[..],
    )
    .await
    .expect(201);
    assert_eq!(
        &r.get(&format!("/v2/a/blobs/{d512}")).await.body[..],
        b"abcdef"
    );
    r.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let streamed = r.location("b").await;
    r.send(Method::PATCH, &streamed, &[], &b"abcdef"[..])
        .await
        .expect(202);
    r.send(
        Method::PUT,
        &with_host(&streamed, &format!("digest={d512}")),
        &[],
        Body::Empty,
    )
    .await
    .expect(201);
    r.head(&format!("/v2/b/blobs/{d512}")).await.expect(200);
    // The second hash is checked like the first: wrong bytes are refused, nothing is linked,
    // and the upload is gone.
    let wrong = Digest::of(berth::Algorithm::Sha512, b"other");
    let loc = r.location("c").await;
    r.send(Method::PATCH, &loc, &[], &b"abcdef"[..])
        .await
        .expect(202);
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={wrong}")),
        &[],
        Body::Empty,
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    r.head(&format!("/v2/c/blobs/{wrong}")).await.expect(404);
    r.head(&format!("/v2/c/blobs/{d512}")).await.expect(404);
    r.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    // A client that chose sha256 keeps it.
    let post = r
        .send(
            Method::POST,
            "/v2/a/blobs/uploads/?digest-algorithm=sha256",
            &[],
            Body::Empty,
        )
        .await;
    let loc = post.header("location").unwrap().to_owned();
    r.send(Method::PATCH, &loc, &[], &b"abcdef"[..])
        .await
        .expect(202);
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={d512}")),
        &[],
        Body::Empty,
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    // An empty session may close with sha512, the whole blob in the PUT.
    let d512 = Digest::of(berth::Algorithm::Sha512, b"abc");
    let loc = r.location("a").await;
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={d512}")),
        &[],
        &b"abc"[..],
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn cancel_upload() {
    let r = Reg::new();
    let loc = r.location("a").await;
    r.send(Method::PATCH, &loc, &[], &b"partial"[..])
        .await
        .expect(202);
    r.delete(&loc).await.expect(204);
    r.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.delete(&loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.send(Method::PATCH, &loc, &[], &b"more"[..])
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(r.reg.store().open_uploads(), 0);
}

#[tokio::test]
async fn upload_ids_are_checked() {
    let r = Reg::new();
    let loc = r.location("a").await;
    let id = loc.rsplit('/').next().unwrap();
    // Another repository's path does not reach the session.
    r.get(&format!("/v2/b/blobs/uploads/{id}"))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    for bad in ["..", "%2e%2e", "a.b", "x%00", "not-an-id"] {
        r.get(&format!("/v2/a/blobs/uploads/{bad}"))
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
}

#[tokio::test]
async fn sessions_expire_and_are_purged() {
    let r = Reg::with(Config {
        upload_expiry: 60,
        ..Config::default()
    });
    let stale = r.location("a").await;
    r.send(Method::PATCH, &stale, &[], &b"abandoned"[..])
        .await
        .expect(202);
    r.env.advance(30);
    let live = r.location("a").await;
    r.env.advance(40);
    assert_eq!(r.reg.purge_uploads().await.unwrap(), 1);
    assert_eq!(r.reg.store().open_uploads(), 1);
    r.get(&stale).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.get(&live).await.expect(204);
    // Activity keeps a session alive.
    r.send(Method::PATCH, &live, &[], &b"x"[..])
        .await
        .expect(202);
    r.env.advance(50);
    r.get(&live).await.expect(204);
    r.env.advance(61);
    r.get(&live).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(r.reg.store().open_uploads(), 0);
}

#[tokio::test]
async fn open_uploads_per_repository_are_capped() {
    let r = Reg::with(Config {
        max_uploads: Some(2),
        upload_expiry: 60,
        ..Config::default()
    });
    let post = async |name: &str| {
        r.send(
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/"),
            &[],
            Body::Empty,
        )
        .await
    };
    let first = r.location("a").await;
    let second = r.location("a").await;
    post("a").await.expect_error(429, "TOOMANYREQUESTS");
    // Each repository has its own count, a nested name too.
    r.location("a/b").await;
    r.location("b").await;
    // Monolithic pushes and mounts open no session, so the cap does not stop them.
    let d = r.push_blob("a", b"one go").await;
    r.send(
        Method::POST,
        &format!("/v2/a/blobs/uploads/?mount={d}&from=a"),
        &[],
        Body::Empty,
    )
    .await
    .expect(201);
    // A finished upload frees its place...
    let d = Digest::sha256(b"chunked");
    r.send(
        Method::PUT,
        &with_host(&first, &format!("digest={d}")),
        &[],
        &b"chunked"[..],
    )
    .await
    .expect(201);
    let third = r.location("a").await;
    post("a").await.expect_error(429, "TOOMANYREQUESTS");
    // ...and so does a cancelled one...
    r.delete(&second).await.expect(204);
    r.location("a").await;
    post("a").await.expect_error(429, "TOOMANYREQUESTS");
    // ...and an expired one, without waiting for the purge.
    r.env.advance(61);
    r.location("a").await;
    r.get(&third).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunk_min_length_is_advertised() {
    let r = Reg::with(Config {
        chunk_min_length: Some(5 << 20),
        ..Config::default()
    });
    let post = r
        .send(Method::POST, "/v2/a/blobs/uploads/", &[], Body::Empty)
        .await;
    assert_eq!(post.header("oci-chunk-min-length"), Some("5242880"));
}

#[tokio::test]
async fn short_chunks_are_bounded() {
    let r = Reg::with(Config {
        chunk_min_length: Some(4),
        ..Config::default()
    });
    let loc = r.location("a").await;
    // Chunks of the minimum are never counted...
    for at in [0, 4] {
        let range = format!("{at}-{}", at + 3);
        r.send(
            Method::PATCH,
            &loc,
            &[("content-range", &range)],
            &b"four"[..],
        )
        .await
        .expect(202);
    }
    // ...shorter ones are, up to the bound (a resumed chunk's rest is one; so is the last).
    let mut bytes = b"fourfour".to_vec();
    for _ in 0..berth::session::SHORT_CHUNKS {
        let range = format!("{}-{}", bytes.len(), bytes.len() + 1);
        r.send(
            Method::PATCH,
            &loc,
            &[("content-range", &range)],
            &b"ab"[..],
        )
        .await
        .expect(202);
        bytes.extend_from_slice(b"ab");
    }
    // Past it, more bytes are refused, in a PATCH or in the closing PUT, and nothing is read.
    let range = format!("{}-{}", bytes.len(), bytes.len() + 3);
    r.send(
        Method::PATCH,
        &loc,
        &[("content-range", &range)],
        &b"more"[..],
    )
    .await
    .expect_error(400, "BLOB_UPLOAD_INVALID");
    let whole = [&bytes[..], b"more"].concat();
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={}", Digest::sha256(&whole))),
        &[("content-range", &range)],
        &b"more"[..],
    )
    .await
    .expect_error(400, "BLOB_UPLOAD_INVALID");
    let status = r.get(&loc).await;
    status.expect(204);
    assert_eq!(
        status.header("range"),
        Some(format!("0-{}", bytes.len() - 1).as_str())
    );
    // The upload closes with what it holds.
    r.send(
        Method::PUT,
        &with_host(&loc, &format!("digest={}", Digest::sha256(&bytes))),
        &[],
        Body::Empty,
    )
    .await
    .expect(201);
}

// ---------------------------------------------------------------- end-11

#[tokio::test]
async fn mount() {
    let r = Reg::new();
    let d = r.push_blob("src", b"shared layer").await;
    let resp = r
        .send(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            &[],
            Body::Empty,
        )
        .await;
    resp.expect(201);
    assert_eq!(
        resp.header("location"),
        Some(format!("/v2/dst/blobs/{d}").as_str())
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(d.to_string().as_str())
    );
    r.get(&format!("/v2/dst/blobs/{d}")).await.expect(200);
    // Without `from`: mounted when the registry has it anywhere.
    r.send(
        Method::POST,
        &format!("/v2/other/blobs/uploads/?mount={d}"),
        &[],
        Body::Empty,
    )
    .await
    .expect(201);
    r.get(&format!("/v2/other/blobs/{d}")).await.expect(200);
    // `from` a repository that does not hold it: an upload session instead.
    let resp = r
        .send(
            Method::POST,
            &format!("/v2/third/blobs/uploads/?mount={d}&from=nothere"),
            &[],
            Body::Empty,
        )
        .await;
    resp.expect(202);
    assert!(
        resp.header("location")
            .unwrap()
            .starts_with("/v2/third/blobs/uploads/")
    );
    r.head(&format!("/v2/third/blobs/{d}")).await.expect(404);
    // A blob nobody has.
    let missing = Digest::sha256(b"missing");
    r.send(
        Method::POST,
        &format!("/v2/dst/blobs/uploads/?mount={missing}"),
        &[],
        Body::Empty,
    )
    .await
    .expect(202);
    r.send(
        Method::POST,
        "/v2/dst/blobs/uploads/?mount=bad&from=src",
        &[],
        Body::Empty,
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    r.send(
        Method::POST,
        &format!("/v2/dst/blobs/uploads/?mount={d}&from=BAD"),
        &[],
        Body::Empty,
    )
    .await
    .expect_error(400, "NAME_INVALID");
}
