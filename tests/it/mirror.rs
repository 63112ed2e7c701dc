//! The pull-through cache in process: a mirror registry whose upstreams are other registries
//! over memory stores, reached through a fake `Upstream` that counts, fails, rate-limits or
//! corrupts on demand. The clock only moves when a test says.

use std::sync::{Arc, Mutex};

use berth::mirror::{MirrorConfig, Upstream};
use berth::testing::ManualEnv;
use berth::testing::gate::{Gated, Op};
use berth::{Body, Config, Digest, MemoryStore, Registry, Storage};
use bytes::Bytes;
use std::future::Future;

use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::core::{OCI_INDEX, OCI_MANIFEST, Reg, desc, image_manifest};

const TTL: u64 = 300;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Up,
    Down,
    Limited,
    /// Blob bodies come with their first byte changed.
    Corrupt,
    /// Blob bodies stop half way.
    Truncated,
}

/// An upstream registry, and what the mirror asked of it.
struct Fake {
    reg: Reg,
    log: Mutex<Vec<String>>,
    mode: Mutex<Mode>,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            reg: Reg::new(),
            log: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Up),
        })
    }

    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, what: &str) -> usize {
        self.log().iter().filter(|l| l.contains(what)).count()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

/// Several fakes, by `ns`.
struct Upstreams(Vec<(String, Arc<Fake>)>);

impl Upstream for Upstreams {
    async fn send(&self, ns: &str, req: Request<()>) -> Result<Response<Body>, String> {
        let fake = &self
            .0
            .iter()
            .find(|(n, _)| n == ns)
            .ok_or_else(|| format!("no upstream {ns}"))?
            .1;
        let line = format!("{} {}", req.method(), req.uri());
        fake.log.lock().unwrap().push(line);
        // The answer takes a while: requests arriving meanwhile must wait for it, not ask too.
        tokio::task::yield_now().await;
        let mode = *fake.mode.lock().unwrap();
        match mode {
            Mode::Down => return Err("connection refused".into()),
            Mode::Limited => {
                return Ok(Response::builder()
                    .status(429)
                    .header("retry-after", "7")
                    .body(Body::Empty)
                    .unwrap());
            }
            _ => {}
        }
        let blob = req.uri().path().contains("/blobs/");
        let (parts, ()) = req.into_parts();
        let resp = fake
            .reg
            .reg
            .handle(Request::from_parts(parts, Body::Empty))
            .await;
        let (parts, body) = resp.into_parts();
        // Small chunks, each after a yield: bytes arrive over time, as from a socket.
        let bytes = body.collect(1 << 30).await.unwrap();
        let mut chunks: Vec<Bytes> = (0..bytes.len())
            .step_by(16 << 10)
            .map(|i| bytes.slice(i..(i + (16 << 10)).min(bytes.len())))
            .collect();
        if blob && parts.status == StatusCode::OK {
            match mode {
                Mode::Corrupt if !chunks.is_empty() => {
                    let mut first = chunks[0].to_vec();
                    first[0] ^= 0xff;
                    chunks[0] = Bytes::from(first);
                }
                Mode::Truncated => chunks.truncate(chunks.len() / 2),
                _ => {}
            }
        }
        let stream = futures_util::stream::iter(chunks).then(|c| async move {
            tokio::task::yield_now().await;
            Ok::<_, std::io::Error>(c)
        });
        Ok(Response::from_parts(parts, Body::stream(stream)))
    }
}

type Mirror = Reg<Arc<MemoryStore>>;

/// A mirror of `a.test` (the default) and `b.test` (by `ns`, or under `b/`).
fn mirror_of(a: &Arc<Fake>, b: &Arc<Fake>) -> Mirror {
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    let config = MirrorConfig::new(
        &["http://a.test".into(), "b.test=http://b.test".into()],
        &["b=b.test".into()],
        TTL,
        false,
    )
    .unwrap();
    let ups = Upstreams(vec![
        ("a.test".into(), a.clone()),
        ("b.test".into(), b.clone()),
    ]);
    let reg = Registry::new(Arc::new(MemoryStore::new()), env.clone(), Config::default())
        .with_mirror(config, ups);
    Reg { reg, env }
}

fn setup() -> (Arc<Fake>, Arc<Fake>, Mirror) {
    let (a, b) = (Fake::new(), Fake::new());
    let m = mirror_of(&a, &b);
    (a, b, m)
}

async fn blob_of(m: &Mirror, d: &Digest) -> bool {
    m.reg.store().blob_head(d).await.is_ok()
}

#[tokio::test]
async fn an_image_pulls_through_with_its_digests_and_then_from_the_cache() {
    let (a, _b, m) = setup();
    let (d, bytes) = a.reg.push_image("team/app", "v1", "one").await;
    let r = m.get("/v2/team/app/manifests/v1").await;
    r.expect(200);
    assert_eq!(r.body, bytes);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(d.to_string().as_str())
    );
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    let man = r.json();
    for l in [&man["config"], &man["layers"][0]] {
        let digest = l["digest"].as_str().unwrap();
        let got = m.get(&format!("/v2/team/app/blobs/{digest}")).await;
        got.expect(200);
        assert_eq!(Digest::sha256(&got.body).to_string(), digest);
        assert_eq!(
            got.header("content-length"),
            Some(got.body.len().to_string().as_str())
        );
    }
    assert_eq!(
        a.count("HEAD /v2/team/app/manifests/v1"),
        1,
        "{:?}",
        a.log()
    );
    assert_eq!(a.count(&format!("GET /v2/team/app/manifests/{d}")), 1);

    // Cached: by digest and blobs never ask again; the tag not within its TTL.
    a.clear();
    m.get(&format!("/v2/team/app/manifests/{d}"))
        .await
        .expect(200);
    m.get("/v2/team/app/manifests/v1").await.expect(200);
    m.head("/v2/team/app/manifests/v1").await.expect(200);
    let layer = man["layers"][0]["digest"].as_str().unwrap();
    m.get(&format!("/v2/team/app/blobs/{layer}"))
        .await
        .expect(200);
    m.head(&format!("/v2/team/app/blobs/{layer}"))
        .await
        .expect(200);
    assert!(a.log().is_empty(), "{:?}", a.log());
    // And it is all there with the upstream gone.
    a.set(Mode::Down);
    m.get(&format!("/v2/team/app/manifests/{d}"))
        .await
        .expect(200);
    m.get(&format!("/v2/team/app/blobs/{layer}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn a_moved_tag_is_seen_after_the_ttl_and_not_before() {
    let (a, _b, m) = setup();
    let (d1, _) = a.reg.push_image("app", "latest", "one").await;
    let digest = |r: &crate::core::Resp| r.header("docker-content-digest").unwrap().to_owned();
    assert_eq!(
        digest(&m.get("/v2/app/manifests/latest").await),
        d1.to_string()
    );
    let (d2, _) = a.reg.push_image("app", "latest", "two").await;

    m.env.advance(TTL - 1);
    a.clear();
    assert_eq!(
        digest(&m.get("/v2/app/manifests/latest").await),
        d1.to_string()
    );
    assert!(a.log().is_empty(), "within the TTL: {:?}", a.log());

    m.env.advance(2);
    assert_eq!(
        digest(&m.get("/v2/app/manifests/latest").await),
        d2.to_string()
    );
    // A HEAD, then only the new manifest.
    assert_eq!(
        a.log(),
        [
            "HEAD /v2/app/manifests/latest".to_owned(),
            format!("GET /v2/app/manifests/{d2}")
        ]
    );

    // Unchanged upstream: a HEAD revalidates, nothing is fetched.
    m.env.advance(TTL + 1);
    a.clear();
    assert_eq!(
        digest(&m.get("/v2/app/manifests/latest").await),
        d2.to_string()
    );
    assert_eq!(a.log(), ["HEAD /v2/app/manifests/latest".to_owned()]);
}

#[tokio::test]
async fn a_dead_or_limiting_upstream_serves_the_cache_stale_and_errors_without() {
    let (a, _b, m) = setup();
    a.reg.push_image("app", "v1", "one").await;
    a.reg.push_image("app", "v2", "two").await;
    m.get("/v2/app/manifests/v1").await.expect(200);
    m.env.advance(TTL + 1);

    for mode in [Mode::Down, Mode::Limited] {
        a.set(mode);
        let r = m.get("/v2/app/manifests/v1").await;
        r.expect(200);
        assert!(r.header("warning").unwrap().starts_with("299 "), "{mode:?}");
    }
    // Nothing cached: the upstream's state, as an OCI error.
    a.set(Mode::Limited);
    let r = m.get("/v2/app/manifests/v2").await;
    r.expect_error(429, "TOOMANYREQUESTS");
    assert_eq!(r.header("retry-after"), Some("7"));
    a.set(Mode::Down);
    m.get("/v2/app/manifests/v2")
        .await
        .expect_error(502, "UNAVAILABLE");
    let missing = Digest::sha256(b"never pushed");
    m.get(&format!("/v2/app/blobs/{missing}"))
        .await
        .expect_error(502, "UNAVAILABLE");
    a.set(Mode::Up);
    m.get("/v2/app/manifests/v9")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    m.get(&format!("/v2/app/blobs/{missing}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    m.head(&format!("/v2/app/blobs/{missing}"))
        .await
        .expect(404);
}

/// Send a GET and read its body to the end, or to the error that ends it.
async fn read(m: &Mirror, uri: &str) -> (StatusCode, Result<Bytes, String>) {
    let req = Request::get(uri).body(Body::Empty).unwrap();
    let resp = m.reg.handle(req).await;
    let status = resp.status();
    let mut body = resp.into_body().into_stream();
    let mut all = Vec::new();
    while let Some(c) = body.next().await {
        match c {
            Ok(c) => all.extend_from_slice(&c),
            Err(e) => return (status, Err(e.to_string())),
        }
    }
    (status, Ok(Bytes::from(all)))
}

#[tokio::test]
async fn a_corrupt_or_cut_upstream_blob_fails_and_nothing_is_cached() {
    let (a, _b, m) = setup();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let d = a.reg.push_blob("app", &data).await;
    let uri = format!("/v2/app/blobs/{d}");
    for mode in [Mode::Corrupt, Mode::Truncated] {
        a.set(mode);
        let (status, body) = read(&m, &uri).await;
        assert_eq!(status, 200);
        let e = body.expect_err("the body ends in an error, never looks complete");
        assert!(e.contains("digest") || e.contains("short"), "{mode:?}: {e}");
        assert!(!blob_of(&m, &d).await, "{mode:?}: nothing stored");
    }
    a.set(Mode::Up);
    let (_, body) = read(&m, &uri).await;
    assert_eq!(body.unwrap(), data);
    assert!(blob_of(&m, &d).await);
}

/// hyper stops reading a body once it has sent Content-Length bytes, and drops it: the blob
/// must be in the store by then. The interleaving: the store write waits (a gate) while the
/// client reads; the last byte is held until the write has ended.
#[tokio::test]
async fn the_blob_is_stored_before_a_client_gets_its_last_byte() {
    let a = Fake::new();
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    let config = MirrorConfig::new(&["http://a.test".into()], &[], TTL, false).unwrap();
    let store = Arc::new(Gated::new(MemoryStore::new()));
    let reg = Registry::new(store.clone(), env.clone(), Config::default())
        .with_mirror(config, Upstreams(vec![("a.test".into(), a.clone())]));
    let m = Arc::new(Reg { reg, env });
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let d = a.reg.push_blob("app", &data).await;
    let gate = store.gate(Op::BlobPut(d.clone()));
    let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = tokio::spawn({
        let (m, got, d) = (m.clone(), got.clone(), d.clone());
        async move {
            let req = Request::get(format!("/v2/app/blobs/{d}"))
                .body(Body::Empty)
                .unwrap();
            let resp = m.reg.handle(req).await;
            let len: usize = resp.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let mut body = resp.into_body().into_stream();
            while got.load(std::sync::atomic::Ordering::SeqCst) < len {
                let n = body.next().await.unwrap().unwrap().len();
                got.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            }
            // As hyper does: all Content-Length bytes sent, the body is dropped unread to its end.
        }
    });
    gate.reached().await;
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    let before = got.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        before < data.len(),
        "the last byte waits for the store ({before})"
    );
    gate.open();
    client.await.unwrap();
    assert!(
        store.inner().blob_head(&d).await.is_ok(),
        "stored once the last byte was sent"
    );
    a.clear();
    m.get(&format!("/v2/app/blobs/{d}")).await.expect(200);
    assert!(a.log().is_empty(), "{:?}", a.log());
}

#[tokio::test]
async fn eight_clients_on_one_cold_blob_make_one_upstream_get() {
    let (a, _b, m) = setup();
    let data: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i * 7 % 253) as u8).collect();
    let d = a.reg.push_blob("app", &data).await;
    let uri = format!("/v2/app/blobs/{d}");
    let reads = (0..8).map(|_| read(&m, &uri));
    for (status, body) in futures_util::future::join_all(reads).await {
        assert_eq!(status, 200);
        assert_eq!(body.unwrap().len(), data.len());
    }
    assert_eq!(a.count(&format!("GET {uri}")), 1, "{:?}", a.log());
    assert!(blob_of(&m, &d).await);

    // One that comes when the shared bytes have moved on waits, then reads the store.
    let other = vec![9u8; 6 << 20];
    let d = a.reg.push_blob("app", &other).await;
    let uri = format!("/v2/app/blobs/{d}");
    let first = m
        .reg
        .handle(Request::get(&uri).body(Body::Empty).unwrap())
        .await;
    let mut first = first.into_body().into_stream();
    let mut got = 0;
    while got < (5 << 20) {
        got += first.next().await.unwrap().unwrap().len();
    }
    let (late, rest) = tokio::join!(read(&m, &uri), async {
        while let Some(c) = first.next().await {
            got += c.unwrap().len();
        }
        got
    });
    assert_eq!(rest, other.len());
    assert_eq!(late.1.unwrap(), other);
    assert_eq!(a.count(&format!("GET {uri}")), 1, "{:?}", a.log());
}

/// The request that was fetching goes away before the upstream answers: those waiting on it
/// get an error, not a hang, and the next request fetches afresh.
#[tokio::test]
async fn a_fetch_abandoned_before_the_answer_fails_its_waiters_and_is_forgotten() {
    let (a, _b, m) = setup();
    let d = a.reg.push_blob("app", b"some layer").await;
    let uri = format!("/v2/app/blobs/{d}");
    let req = || Request::get(&uri).body(Body::Empty).unwrap();
    let mut leader = Box::pin(m.reg.handle(req()));
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(
        leader.as_mut().poll(&mut cx).is_pending(),
        "waiting on the upstream"
    );
    let mut waiter = Box::pin(m.reg.handle(req()));
    assert!(
        waiter.as_mut().poll(&mut cx).is_pending(),
        "waiting on the leader"
    );
    drop(leader);
    let resp = waiter.await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let (_, body) = read(&m, &uri).await;
    assert_eq!(body.unwrap(), &b"some layer"[..]);
}

#[tokio::test]
async fn ns_and_prefixes_route_to_their_upstream_and_ns_is_echoed() {
    let (a, b, m) = setup();
    let (da, _) = a.reg.push_image("org/app", "v1", "from a").await;
    let (db, _) = b.reg.push_image("org/app", "v1", "from b").await;
    let digest = |r: &crate::core::Resp| r.header("docker-content-digest").unwrap().to_owned();

    let r = m.get("/v2/org/app/manifests/v1?ns=b.test").await;
    assert_eq!(digest(&r), db.to_string());
    assert_eq!(r.header("oci-namespace"), Some("b.test"));
    let r = m.get("/v2/org/app/manifests/v1").await;
    assert_eq!(digest(&r), da.to_string());
    assert_eq!(r.header("oci-namespace"), None);
    let r = m.get("/v2/org/app/manifests/v1?ns=a.test").await;
    assert_eq!(r.header("oci-namespace"), Some("a.test"));
    // The prefix is the same cache as ns=b.test: no new upstream request.
    b.clear();
    let r = m.get("/v2/b/org/app/manifests/v1").await;
    assert_eq!(digest(&r), db.to_string());
    assert!(b.log().is_empty(), "{:?}", b.log());
    let layer = r.json()["layers"][0]["digest"].as_str().unwrap().to_owned();
    m.get(&format!("/v2/org/app/blobs/{layer}?ns=b.test"))
        .await
        .expect(200);
    assert_eq!(b.count(&format!("GET /v2/org/app/blobs/{layer}")), 1);
    // Kept apart: the same name from each upstream.
    let tags = m.get("/v2/b/org/app/tags/list").await.json();
    assert_eq!(tags["name"], "b/org/app");
}

#[tokio::test]
async fn pushes_to_a_mirrored_repository_are_refused() {
    let (_a, _b, m) = setup();
    let r = m
        .send(Method::POST, "/v2/app/blobs/uploads/", &[], Body::Empty)
        .await;
    assert_eq!(r.code(), "UNSUPPORTED");
    let r = m
        .put_manifest("app", "v1", OCI_MANIFEST, &json!({"schemaVersion": 2}))
        .await;
    assert_eq!(r.code(), "UNSUPPORTED");
    assert_eq!(m.delete("/v2/app/manifests/v1").await.code(), "UNSUPPORTED");
}

#[tokio::test]
async fn docker_hub_names_get_library() {
    let a = Fake::new();
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    let config = MirrorConfig::new(&["docker.io".into()], &[], TTL, false).unwrap();
    let ups = Upstreams(vec![("docker.io".into(), a.clone())]);
    let reg = Registry::new(Arc::new(MemoryStore::new()), env.clone(), Config::default())
        .with_mirror(config, ups);
    let m = Reg { reg, env };
    let (d, _) = a.reg.push_image("library/alpine", "3", "alpine").await;
    let r = m.get("/v2/alpine/manifests/3").await;
    r.expect(200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(d.to_string().as_str())
    );
    assert_eq!(a.log()[0], "HEAD /v2/library/alpine/manifests/3");
}

#[tokio::test]
async fn an_index_and_referrers_pull_through() {
    let (a, _b, m) = setup();
    let (d1, b1) = a.reg.push_image("app", "amd", "amd64").await;
    let (d2, b2) = a.reg.push_image("app", "arm", "arm64").await;
    let mut p1 = desc(OCI_MANIFEST, &d1, b1.len() as u64);
    p1["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut p2 = desc(OCI_MANIFEST, &d2, b2.len() as u64);
    p2["platform"] = json!({"os": "linux", "architecture": "arm64"});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [p1, p2]});
    a.reg
        .put_manifest("app", "multi", OCI_INDEX, &index)
        .await
        .expect(201);
    let r = m.get("/v2/app/manifests/multi").await;
    r.expect(200);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    for (d, bytes) in [(&d1, &b1), (&d2, &b2)] {
        let r = m.get(&format!("/v2/app/manifests/{d}")).await;
        r.expect(200);
        assert_eq!(&r.body[..], &bytes[..]);
    }

    // An SBOM-like artifact on the amd64 image.
    let empty = a.reg.push_blob("app", b"{}").await;
    let sbom = a.reg.push_blob("app", b"sbom contents").await;
    let mut art = image_manifest(&empty, &[&sbom], None, None);
    art["artifactType"] = json!("application/spdx+json");
    art["subject"] = desc(OCI_MANIFEST, &d1, b1.len() as u64);
    let art_bytes = serde_json::to_vec(&art).unwrap();
    let art_d = Digest::sha256(&art_bytes);
    a.reg
        .put_manifest("app", &art_d.to_string(), OCI_MANIFEST, &art)
        .await
        .expect(201);
    let list = m.get(&format!("/v2/app/referrers/{d1}")).await;
    list.expect(200);
    let list = list.json();
    assert_eq!(list["manifests"][0]["digest"], art_d.to_string());
    assert_eq!(
        list["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    let r = m.get(&format!("/v2/app/manifests/{art_d}")).await;
    r.expect(200);
    assert_eq!(r.body, art_bytes);
    // With the upstream down, the cached referrer is still listed.
    a.set(Mode::Down);
    let list = m.get(&format!("/v2/app/referrers/{d1}")).await.json();
    assert_eq!(list["manifests"][0]["digest"], art_d.to_string());
}

/// Over its size limit, the cache drops the manifests used least recently; a pass frees the
/// bytes they alone held, and what stays still pulls without the upstream.
#[tokio::test]
async fn the_cache_keeps_to_its_size_by_dropping_the_least_recently_used() {
    let a = Fake::new();
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    // Pushes allowed: what clients push is not cache, however old, and never evicted.
    let mut config = MirrorConfig::new(&["http://a.test".into()], &[], TTL, true).unwrap();
    let store = Arc::new(MemoryStore::with_clock(berth::testing::clock_of(&env)));
    let big = |seed: u8| vec![seed; 10_000];
    // Three images of ~10 kB each; room for two.
    config.cache_size = Some(25_000);
    let reg = Registry::new(
        store.clone(),
        env.clone(),
        Config {
            gc_grace: 60,
            ..Config::default()
        },
    )
    .with_mirror(config, Upstreams(vec![("a.test".into(), a.clone())]));
    let m = Reg { reg, env };
    let mine = m.push_blob("mine", &big(9)).await;
    let cfg = m.push_blob("mine", b"{}").await;
    let pushed = m
        .put_manifest(
            "mine",
            "v1",
            OCI_MANIFEST,
            &image_manifest(&cfg, &[&mine], None, None),
        )
        .await;
    pushed.expect(201);
    let pushed = pushed.header("docker-content-digest").unwrap().to_owned();
    let mut images = Vec::new();
    for (i, tag) in ["old", "mid", "new"].iter().enumerate() {
        let cfg = a
            .reg
            .push_blob("app", format!("{{\"n\":{i}}}").as_bytes())
            .await;
        let layer = a.reg.push_blob("app", &big(i as u8)).await;
        let man = image_manifest(&cfg, &[&layer], None, None);
        let r = a.reg.put_manifest("app", tag, OCI_MANIFEST, &man).await;
        r.expect(201);
        let d: Digest = r.header("docker-content-digest").unwrap().parse().unwrap();
        images.push((d, layer));
    }
    for (i, tag) in ["old", "mid", "new"].iter().enumerate() {
        m.env.advance(10);
        let r = m.get(&format!("/v2/app/manifests/{tag}")).await;
        r.expect(200);
        m.get(&format!("/v2/app/blobs/{}", images[i].1))
            .await
            .expect(200);
    }
    // "old" is used again (past its TTL: revalidated), so "mid" is now the least recent.
    m.env.advance(TTL + 1);
    m.get("/v2/app/manifests/old").await.expect(200);

    let e = m.reg.evict_mirror().await.unwrap().unwrap();
    assert_eq!(e.manifests, 1, "{e:?}");
    assert!(e.cached > 25_000 && e.bytes >= 10_000, "{e:?}");
    assert!(m.reg.evict_mirror().await.unwrap().unwrap().manifests == 0);
    m.env.advance(61);
    m.reg.collect_garbage(false).await.unwrap();
    assert!(
        store.blob_head(&images[1].1).await.is_err(),
        "mid's layer is freed"
    );
    assert!(
        store.blob_head(&mine).await.is_ok(),
        "the pushed layer stays"
    );
    m.get(&format!("/v2/mine/manifests/{pushed}"))
        .await
        .expect(200);
    a.set(Mode::Down);
    for i in [0, 2] {
        assert!(store.blob_head(&images[i].1).await.is_ok());
        m.get(&format!("/v2/app/manifests/{}", images[i].0))
            .await
            .expect(200);
    }
}

/// Each read says what the cache did (a response extension the homes count in metrics).
#[tokio::test]
async fn reads_say_what_the_cache_did() {
    use berth::mirror::CacheResult::{self, *};
    let (a, _b, m) = setup();
    let (_, bytes) = a.reg.push_image("app", "v1", "one").await;
    let layer = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let what = |uri: String| {
        let m = &m;
        async move {
            let resp = m
                .reg
                .handle(Request::get(uri).body(Body::Empty).unwrap())
                .await;
            let r = resp.extensions().get::<CacheResult>().copied();
            resp.into_body().collect(1 << 30).await.unwrap();
            r
        }
    };
    assert_eq!(what("/v2/app/manifests/v1".into()).await, Some(Miss));
    assert_eq!(what("/v2/app/manifests/v1".into()).await, Some(Hit));
    assert_eq!(what(format!("/v2/app/blobs/{layer}")).await, Some(Miss));
    assert_eq!(what(format!("/v2/app/blobs/{layer}")).await, Some(Hit));
    m.env.advance(TTL + 1);
    assert_eq!(what("/v2/app/manifests/v1".into()).await, Some(Revalidated));
    m.env.advance(TTL + 1);
    a.set(Mode::Down);
    assert_eq!(what("/v2/app/manifests/v1".into()).await, Some(Stale));
}
