//! The client (`berth_client`) against in-process `berth serve` instances, through a proxy
//! that logs every request, and on demand cuts a response short, caps request bodies, fails
//! requests with 429 or 503, or demands Bearer tokens from a token service of its own.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use berth::manifest::Descriptor;
use berth::names::Reference;
use berth::{Body, Config, Digest, Hasher, Registry};
use berth_client::auth::{Credential, Keychain, Secret};
use berth_client::{
    Client, ClientOptions, CopyOptions, ErrorKind, Location, Outcome, Progress, UploadOptions, copy,
};
use berth_server::env::SystemEnv;
use berth_server::fs::FsStore;
use berth_server::server::{self, Options};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

// ------------------------------------------------------------------------------ servers

/// `berth serve` in-process on 127.0.0.1:0, stopped when dropped.
struct Berth {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn berth(config: Config) -> Berth {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("root")).await.unwrap();
    let registry = Arc::new(Registry::new(store, SystemEnv, config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = Options {
        grace: Duration::from_secs(5),
        ..Options::default()
    };
    tokio::spawn(server::run(listener, registry, options, async move {
        let _ = stopped.await;
    }));
    Berth {
        addr,
        _stop: stop,
        _dir: dir,
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    range: Option<String>,
    content_length: Option<u64>,
    /// Request body bytes that passed through.
    body: Arc<AtomicU64>,
    status: u16,
}

#[derive(Default)]
struct Rules {
    /// Cut the first GET whose path contains the text after this many body bytes.
    cut: Mutex<Option<(String, u64)>>,
    /// Answer 413 to requests with a larger Content-Length.
    max_body: Option<u64>,
    /// Answer (status, Retry-After) instead of forwarding the next requests of this method.
    fail: Mutex<Vec<(String, u16, Option<&'static str>)>>,
    /// Fail the Nth PATCH (1-based) with 503 after forwarding half its body.
    break_patch: Option<usize>,
    auth: Option<Auth>,
}

struct Auth {
    user: &'static str,
    password: &'static str,
    /// token → granted scopes (`repository:NAME:ACTIONS`).
    tokens: Mutex<HashMap<String, Vec<String>>>,
    issued: AtomicU64,
}

struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl Proxy {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path_part: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.uri.contains(path_part))
            .count()
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }
}

async fn proxy(upstream: SocketAddr, rules: Rules) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rules = Arc::new(rules);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let log = seen.clone();
    tokio::spawn(async move {
        let patches = Arc::new(AtomicU64::new(0));
        loop {
            let (stream, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = &mut stopped => break,
            };
            let (http, rules, log, patches) =
                (http.clone(), rules.clone(), log.clone(), patches.clone());
            let service = service_fn(move |req| {
                let (http, rules, log, patches) =
                    (http.clone(), rules.clone(), log.clone(), patches.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        forward(req, upstream, addr, &http, &rules, &log, &patches).await,
                    )
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Proxy {
        addr,
        seen,
        _stop: stop,
    }
}

fn reply(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> http::Response<Body> {
    let mut r = http::Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(body.into()).unwrap()
}

async fn forward(
    req: http::Request<Incoming>,
    upstream: SocketAddr,
    me: SocketAddr,
    http: &reqwest::Client,
    rules: &Rules,
    log: &Mutex<Vec<Seen>>,
    patches: &AtomicU64,
) -> http::Response<Body> {
    let method = req.method().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_length = header("content-length").and_then(|v| v.parse().ok());
    let body = Arc::new(AtomicU64::new(0));
    let record = |status: u16| {
        log.lock().unwrap().push(Seen {
            method: method.clone(),
            uri: uri.clone(),
            range: header("range"),
            content_length,
            body: body.clone(),
            status,
        });
    };
    if let Some(auth) = &rules.auth {
        if uri.starts_with("/token") {
            return token(auth, &uri, header("authorization"));
        }
        if let Some(denied) = check_token(auth, &method, &uri, header("authorization"), me) {
            record(401);
            return denied;
        }
    }
    {
        let mut fail = rules.fail.lock().unwrap();
        if let Some(i) = fail.iter().position(|(m, _, _)| *m == method) {
            let (_, status, after) = fail.remove(i);
            record(status);
            let headers: Vec<(&str, String)> = after
                .map(|a| ("retry-after", a.to_owned()))
                .into_iter()
                .collect();
            return reply(
                status,
                &headers,
                "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\"}]}",
            );
        }
    }
    if let (Some(max), Some(n)) = (rules.max_body, content_length)
        && n > max
    {
        record(413);
        return reply(413, &[], "request body too large");
    }
    let mut break_after = None;
    if method == "PATCH" {
        let n = patches.fetch_add(1, Ordering::SeqCst) as usize + 1;
        if rules.break_patch == Some(n) {
            break_after = Some(content_length.unwrap_or(0) / 2);
        }
    }
    let mut out = http.request(req.method().clone(), format!("http://{upstream}{uri}"));
    for (k, v) in req.headers() {
        if k != "host" && k != "authorization" {
            out = out.header(k, v);
        }
    }
    let (_, incoming) = req.into_parts();
    let counter = body.clone();
    if let Some(limit) = break_after {
        // Swallow the body, forward half of it as a chunk of its own, and fail: the registry
        // holds part of the chunk, the client must ask where it stands.
        let mut stream = IncomingStream(incoming);
        let mut buf = Vec::new();
        while let Some(Ok(b)) = stream.next().await {
            counter.fetch_add(b.len() as u64, Ordering::Relaxed);
            buf.extend_from_slice(&b);
        }
        let half = &buf[..limit as usize];
        let start: u64 = header("content-range")
            .and_then(|r| r.split('-').next()?.parse().ok())
            .unwrap_or(0);
        let _ = http
            .patch(format!("http://{upstream}{uri}"))
            .header("content-range", format!("{start}-{}", start + limit - 1))
            .header("content-length", limit.to_string())
            .body(half.to_vec())
            .send()
            .await;
        record(503);
        return reply(503, &[], "broken on purpose");
    }
    let stream = IncomingStream(incoming).map(move |r| {
        if let Ok(b) = &r {
            counter.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        r
    });
    if content_length.is_some_and(|n| n > 0) || header("transfer-encoding").is_some() {
        out = out.body(reqwest::Body::wrap_stream(stream));
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            record(502);
            return reply(502, &[], format!("proxy: {e}"));
        }
    };
    let status = resp.status().as_u16();
    record(status);
    let mut builder = http::Response::builder().status(status);
    for (k, v) in resp.headers() {
        builder = builder.header(k, v);
    }
    let mut cut = None;
    if method == "GET" {
        let mut rule = rules.cut.lock().unwrap();
        if rule
            .as_ref()
            .is_some_and(|(part, _)| uri.contains(part.as_str()))
        {
            cut = rule.take().map(|(_, n)| n);
        }
    }
    let mut sent = 0u64;
    let body = resp.bytes_stream().map(move |r| {
        let b = r.map_err(io::Error::other)?;
        if let Some(limit) = cut
            && sent + b.len() as u64 > limit
        {
            return Err(io::Error::other("cut on purpose"));
        }
        sent += b.len() as u64;
        Ok(b)
    });
    builder.body(Body::stream(body)).unwrap()
}

struct IncomingStream(Incoming);

impl futures_core::Stream for IncomingStream {
    type Item = io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.0).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                Poll::Ready(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        return Poll::Ready(Some(Ok(d)));
                    }
                }
            }
        }
    }
}

/// The token service: Basic credentials (or none, for pull only) for a token with the scopes
/// asked.
fn token(auth: &Auth, uri: &str, authorization: Option<String>) -> http::Response<Body> {
    use base64::Engine as _;
    let authenticated = match authorization {
        None => false,
        Some(a) => {
            let expected = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", auth.user, auth.password));
            if a != format!("Basic {expected}") {
                return reply(401, &[], "{\"details\":\"bad credentials\"}");
            }
            true
        }
    };
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut granted = Vec::new();
    for pair in query.split('&') {
        if let Some(s) = pair.strip_prefix("scope=") {
            let s = s
                .replace("%3A", ":")
                .replace("%2C", ",")
                .replace("%2F", "/");
            if !authenticated {
                // Anonymous: pull only.
                if let Some((resource, _)) = s.rsplit_once(':') {
                    granted.push(format!("{resource}:pull"));
                }
            } else {
                granted.push(s);
            }
        }
    }
    let n = auth.issued.fetch_add(1, Ordering::SeqCst);
    let value = format!("token-{n}");
    auth.tokens.lock().unwrap().insert(value.clone(), granted);
    reply(
        200,
        &[("content-type", "application/json".into())],
        json!({"token": value, "expires_in": 300}).to_string(),
    )
}

/// `None` when the request's token grants what it needs; else the 401 challenge.
fn check_token(
    auth: &Auth,
    method: &str,
    uri: &str,
    authorization: Option<String>,
    me: SocketAddr,
) -> Option<http::Response<Body>> {
    let path = uri.split('?').next().unwrap_or(uri);
    let mut needed = Vec::new();
    let name = ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| path.rfind(m).map(|i| &path[4..i]))
        .max_by_key(|n| n.len());
    if let Some(name) = name {
        let action = if method == "GET" || method == "HEAD" {
            "pull"
        } else {
            "push"
        };
        needed.push((name.to_owned(), action));
        if let Some(from) = uri.split("from=").nth(1) {
            needed.push((from.split('&').next().unwrap_or("").to_owned(), "pull"));
        }
    }
    let tokens = auth.tokens.lock().unwrap();
    let granted = authorization
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .and_then(|t| tokens.get(&t).cloned());
    let ok = granted.as_ref().is_some_and(|g| {
        needed.iter().all(|(n, a)| {
            g.iter().any(|s| {
                s.strip_prefix(&format!("repository:{n}:"))
                    .is_some_and(|acts| acts.split(',').any(|x| x == *a))
            })
        })
    });
    if ok {
        return None;
    }
    let scope = needed
        .iter()
        .map(|(n, a)| {
            let acts = if *a == "push" { "pull,push" } else { "pull" };
            format!("repository:{n}:{acts}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let challenge =
        format!("Bearer realm=\"http://{me}/token\",service=\"berth-test\",scope=\"{scope}\"");
    Some(reply(
        401,
        &[("www-authenticate", challenge)],
        "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}",
    ))
}

// ------------------------------------------------------------------------------ images

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn desc(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": Digest::sha256(bytes), "size": bytes.len()})
}

/// An OCI layout being written by a test.
struct TestLayout<'a> {
    dir: &'a Path,
    index: Vec<Value>,
}

impl<'a> TestLayout<'a> {
    fn new(dir: &'a Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        TestLayout {
            dir,
            index: Vec::new(),
        }
    }

    fn put(&self, media_type: &str, bytes: &[u8]) -> Value {
        let d = Digest::sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        desc(media_type, bytes)
    }

    /// An image of the given layers; its manifest's descriptor.
    fn image(&self, arch: &str, layers: &[Vec<u8>]) -> Value {
        let layer_descs: Vec<Value> = layers.iter().map(|l| self.put(LAYER, l)).collect();
        let diff_ids: Vec<Value> = layer_descs.iter().map(|d| d["digest"].clone()).collect();
        let config = json!({"architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        let config = self.put(OCI_CONFIG, config.to_string().as_bytes());
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": config, "layers": layer_descs});
        self.put(OCI_MANIFEST, manifest.to_string().as_bytes())
    }

    fn index(&self, children: &[(Value, &str)]) -> Value {
        let manifests: Vec<Value> = children
            .iter()
            .map(|(d, arch)| {
                let mut d = d.clone();
                d["platform"] = json!({"os": "linux", "architecture": arch});
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.put(OCI_INDEX, index.to_string().as_bytes())
    }

    fn tag(&mut self, d: &Value, tag: &str) {
        let mut d = d.clone();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(d);
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

fn digest_of(d: &Value) -> Digest {
    d["digest"].as_str().unwrap().parse().unwrap()
}

fn client(insecure: bool) -> Client {
    Client::new(ClientOptions {
        insecure,
        backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    })
    .unwrap()
}

fn at(s: &str) -> Location {
    s.parse().unwrap()
}

fn quiet() -> Arc<dyn Progress> {
    Arc::new(())
}

/// Every event of a copy, for assertions.
#[derive(Default)]
struct Events {
    blobs: Mutex<Vec<(Digest, Outcome)>>,
    notes: Mutex<Vec<String>>,
}

impl Progress for Events {
    fn blob_done(&self, desc: &Descriptor, outcome: Outcome) {
        self.blobs
            .lock()
            .unwrap()
            .push((desc.digest.clone(), outcome));
    }
    fn note(&self, message: &str) {
        self.notes.lock().unwrap().push(message.to_owned());
    }
}

impl Events {
    fn outcomes(&self) -> Vec<Outcome> {
        self.blobs.lock().unwrap().iter().map(|(_, o)| *o).collect()
    }
}

// ------------------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_an_image_and_an_index_in_and_out_with_identical_digests() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = TestLayout::new(&src);
    let multi = layout.image(
        "amd64",
        &[data(1000, 1), data(300_000, 2), data(2 << 20, 3)],
    );
    let amd = layout.image("amd64", &[data(5000, 4), data(70_000, 5)]);
    let arm = layout.image("arm64", &[data(5000, 6), data(70_000, 7)]);
    let index = layout.index(&[(amd.clone(), "amd64"), (arm.clone(), "arm64")]);
    layout.tag(&multi, "multi");
    layout.tag(&index, "multiarch");

    let one = berth(Config::default()).await;
    let two = berth(Config::default()).await;
    let c = client(true);
    let s = src.display();
    for (tag, want) in [("multi", &multi), ("multiarch", &index)] {
        // layout → registry
        let r = copy(
            &c,
            &at(&format!("oci:{s}:{tag}")),
            &at(&format!("{}/in/{tag}:v1", one.addr)),
            &CopyOptions::default(),
            quiet(),
        )
        .await
        .unwrap();
        assert_eq!(r.digest, digest_of(want), "{tag}: pushed digest");
        let repo = c.repository(&one.addr.to_string(), format!("in/{tag}").parse().unwrap());
        let m = repo
            .manifest(&Reference::Tag("v1".parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(m.digest, digest_of(want), "{tag}: digest in the registry");

        // registry → registry (another berth)
        let r = copy(
            &c,
            &at(&format!("{}/in/{tag}:v1", one.addr)),
            &at(&format!("{}/copied/{tag}:v2", two.addr)),
            &CopyOptions::default(),
            quiet(),
        )
        .await
        .unwrap();
        assert_eq!(r.digest, digest_of(want), "{tag}: registry to registry");

        // registry → layout: byte for byte the same manifests and blobs
        let out = work.path().join(format!("out-{tag}"));
        let r = copy(
            &c,
            &at(&format!("{}/copied/{tag}:v2", two.addr)),
            &at(&format!("oci:{}:{tag}", out.display())),
            &CopyOptions::default(),
            quiet(),
        )
        .await
        .unwrap();
        assert_eq!(r.digest, digest_of(want));
        let pulled = berth_client::layout::Layout::open(&out).await.unwrap();
        let d = pulled
            .resolve(Some(&Reference::Tag(tag.parse().unwrap())))
            .await
            .unwrap();
        assert_eq!(
            d.digest,
            digest_of(want),
            "{tag}: index.json of the pulled layout"
        );
        for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_eq!(
                Digest::sha256(&bytes).hex(),
                entry.file_name().to_str().unwrap(),
                "every pulled blob is what its name says"
            );
            assert_eq!(
                std::fs::read(src.join("blobs/sha256").join(entry.file_name())).unwrap(),
                bytes
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(work.path().join("out-multiarch/blobs/sha256"))
            .unwrap()
            .count(),
        1 + 2 * 4,
        "index, two manifests, two configs, four layers"
    );

    // One platform of the index: its manifest alone, under the tag.
    let r = copy(
        &c,
        &at(&format!("{}/in/multiarch:v1", one.addr)),
        &at(&format!("oci:{}/arm:arm", work.path().display())),
        &CopyOptions {
            platform: Some("linux/arm64".parse().unwrap()),
            ..CopyOptions::default()
        },
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.digest, digest_of(&arm));
    assert_eq!(r.blobs, 3);
    let err = copy(
        &c,
        &at(&format!("{}/in/multiarch:v1", one.addr)),
        &at(&format!("oci:{}/x", work.path().display())),
        &CopyOptions {
            platform: Some("linux/s390x".parse().unwrap()),
            ..CopyOptions::default()
        },
        quiet(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.hint().unwrap().contains("linux/arm64"),
        "{:?}",
        err.hint()
    );

    // Tags, paged.
    for t in ["a", "b", "c"] {
        copy(
            &c,
            &at(&format!("{}/in/multi:v1", one.addr)),
            &at(&format!("{}/in/multi:{t}", one.addr)),
            &CopyOptions::default(),
            quiet(),
        )
        .await
        .unwrap();
    }
    let repo = c.repository(&one.addr.to_string(), "in/multi".parse().unwrap());
    assert_eq!(repo.tags(Some(2)).await.unwrap(), ["a", "b", "c", "v1"]);
    let page = repo.tags_page(Some(3), None).await.unwrap();
    assert_eq!(page.tags, ["a", "b", "c"]);
    assert!(page.next.is_some());

    // Delete by digest: every tag of it goes.
    repo.delete_manifest(&Reference::Digest(digest_of(&multi)))
        .await
        .unwrap();
    let err = repo
        .manifest(&Reference::Tag("v1".parse().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.code(), Some("MANIFEST_UNKNOWN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_an_interrupted_pull_with_range() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = TestLayout::new(&src);
    let big = data(8 << 20, 9);
    let big_digest = Digest::sha256(&big);
    let image = layout.image("amd64", &[data(100, 1), big]);
    layout.tag(&image, "v1");
    let reg = berth(Config::default()).await;
    let c = client(true);
    copy(
        &c,
        &at(&format!("oci:{}:v1", src.display())),
        &at(&format!("{}/r/img:v1", reg.addr)),
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap();

    let cut_at = 3 << 20;
    let p = proxy(
        reg.addr,
        Rules {
            cut: Mutex::new(Some((big_digest.to_string(), cut_at))),
            ..Rules::default()
        },
    )
    .await;
    let events = Arc::new(Events::default());
    let out = work.path().join("out");
    let r = copy(
        &c,
        &at(&format!("{}/r/img:v1", p.host())),
        &at(&format!("oci:{}:v1", out.display())),
        &CopyOptions::default(),
        events.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.digest, digest_of(&image));
    let gets: Vec<Seen> = p
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.uri.contains(&big_digest.to_string()))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    let resumed_at: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .expect("the second GET asks for the rest");
    assert!(
        resumed_at > 0 && resumed_at <= cut_at,
        "resumed at {resumed_at}"
    );
    assert_eq!(gets[1].status, 206);
    let bytes = std::fs::read(out.join("blobs/sha256").join(big_digest.hex())).unwrap();
    assert_eq!(Digest::sha256(&bytes), big_digest);
    assert!(
        events
            .notes
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("resuming")),
        "the resume is reported"
    );
}

/// A layout holding one image with a single layer of `size` deterministic bytes, written in
/// pieces so the test never holds it in memory.
fn big_layer_layout(dir: &Path, size: u64) -> (Value, Digest) {
    let mut layout = TestLayout::new(dir);
    let tmp = dir.join("blobs/sha256/layer.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    let mut h = Hasher::new(berth::Algorithm::Sha256);
    let piece = data(1 << 20, 42);
    let mut left = size;
    let mut n = 0u8;
    while left > 0 {
        let take = left.min(piece.len() as u64) as usize;
        let mut p = piece[..take].to_vec();
        p[0] = n; // every MiB differs
        n = n.wrapping_add(1);
        std::io::Write::write_all(&mut f, &p).unwrap();
        h.update(&p);
        left -= take as u64;
    }
    drop(f);
    let d = h.finish();
    std::fs::rename(&tmp, dir.join("blobs/sha256").join(d.hex())).unwrap();
    let layer = json!({"mediaType": LAYER, "digest": d, "size": size});
    let config = layout.put(OCI_CONFIG, br#"{"architecture":"amd64","os":"linux"}"#);
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": config, "layers": [layer]});
    let m = layout.put(OCI_MANIFEST, manifest.to_string().as_bytes());
    layout.tag(&m, "big");
    (m, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_a_300_mib_layer_in_chunks_of_at_most_32_mib() {
    const MIB: u64 = 1 << 20;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let size = 300 * MIB;
    let (manifest, layer) = big_layer_layout(&src, size);
    let reg = berth(Config::default()).await;
    // The proxy refuses any body over 32 MiB, as a Worker refuses one over 100 MB.
    let p = proxy(
        reg.addr,
        Rules {
            max_body: Some(32 * MIB),
            ..Rules::default()
        },
    )
    .await;
    let c = client(true);
    let options = CopyOptions {
        upload: UploadOptions {
            chunk_size: 64 * MIB,
            max_chunk_size: Some(32 * MIB),
            retries: 2,
        },
        ..CopyOptions::default()
    };
    let r = copy(
        &c,
        &at(&format!("oci:{}:big", src.display())),
        &at(&format!("{}/edge/big:v1", p.host())),
        &options,
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.digest, digest_of(&manifest));
    let patches: Vec<Seen> = p
        .seen()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 10, "300 MiB in 32 MiB chunks");
    let mut total = 0;
    for s in &patches {
        let n = s.body.load(Ordering::Relaxed);
        assert!(n <= 32 * MIB, "a chunk of {n} bytes");
        assert_eq!(Some(n), s.content_length);
        assert_eq!(s.status, 202);
        total += n;
    }
    assert_eq!(total, size);
    assert!(
        p.seen().iter().all(|s| s.status != 413),
        "no request was too large"
    );

    // Read it back through the client, which verifies the digest as it streams.
    let repo = c.repository(&reg.addr.to_string(), "edge/big".parse().unwrap());
    let mut stream = repo.blob(&Descriptor {
        media_type: LAYER.into(),
        digest: layer.clone(),
        size,
        artifact_type: None,
        annotations: None,
        urls: None,
    });
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        read += chunk.expect("the digest checks out").len() as u64;
    }
    assert_eq!(read, size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_honour_the_registry_minimum_and_survive_a_broken_patch() {
    const MIB: u64 = 1 << 20;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let size = 20 * MIB + 12345;
    let (_, layer) = big_layer_layout(&src, size);
    let reg = berth(Config {
        chunk_min_length: Some(8 * MIB),
        ..Config::default()
    })
    .await;
    let p = proxy(
        reg.addr,
        Rules {
            break_patch: Some(2),
            ..Rules::default()
        },
    )
    .await;
    let c = client(true);
    let options = CopyOptions {
        upload: UploadOptions {
            chunk_size: MIB,
            max_chunk_size: Some(16 * MIB),
            retries: 2,
        },
        ..CopyOptions::default()
    };
    copy(
        &c,
        &at(&format!("oci:{}:big", src.display())),
        &at(&format!("{}/edge/min:v1", p.host())),
        &options,
        quiet(),
    )
    .await
    .unwrap();
    let patches: Vec<Seen> = p
        .seen()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .collect();
    // 8 MiB chunks (the minimum, over the 1 MiB asked); the second breaks halfway, the
    // client asks where the upload is (GET) and sends the rest of that chunk.
    let sizes: Vec<u64> = patches.iter().map(|s| s.content_length.unwrap()).collect();
    assert_eq!(
        sizes,
        [8 * MIB, 8 * MIB, 4 * MIB, 4 * MIB + 12345],
        "{patches:?}"
    );
    assert_eq!(patches[1].status, 503);
    assert!(
        p.count("GET", "/blobs/uploads/") >= 1,
        "the client asked for the offset"
    );
    let repo = c.repository(&reg.addr.to_string(), "edge/min".parse().unwrap());
    assert_eq!(repo.blob_size(&layer).await.unwrap(), Some(size));

    // A maximum below the registry's minimum cannot work, and says so.
    let err = copy(
        &c,
        &at(&format!("oci:{}:big", src.display())),
        &at(&format!("{}/edge/min2:v1", reg.addr)),
        &CopyOptions {
            upload: UploadOptions {
                max_chunk_size: Some(4 * MIB),
                ..options.upload.clone()
            },
            ..CopyOptions::default()
        },
        quiet(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("OCI-Chunk-Min-Length"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skips_blobs_the_destination_has_and_mounts_within_a_registry() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = TestLayout::new(&src);
    let image = layout.image(
        "amd64",
        &[data(10_000, 1), data(20_000, 2), data(30_000, 3)],
    );
    layout.tag(&image, "v1");
    let reg = berth(Config::default()).await;
    let p = proxy(reg.addr, Rules::default()).await;
    let c = client(true);
    let from = at(&format!("oci:{}:v1", src.display()));
    let to = at(&format!("{}/m/a:v1", p.host()));
    copy(&c, &from, &to, &CopyOptions::default(), quiet())
        .await
        .unwrap();
    let puts_before = p.count("PUT", "/blobs/uploads/");
    assert_eq!(puts_before, 4, "config and three layers uploaded");

    // Again: every blob is there (HEAD 200), none is uploaded.
    let events = Arc::new(Events::default());
    let r = copy(&c, &from, &to, &CopyOptions::default(), events.clone())
        .await
        .unwrap();
    assert_eq!(r.skipped, 4);
    assert_eq!(events.outcomes(), vec![Outcome::Skipped; 4]);
    assert_eq!(p.count("PUT", "/blobs/uploads/"), puts_before);
    assert_eq!(p.count("POST", "/blobs/uploads/"), 4);

    // To another repository of the same registry: mounted, no byte read or sent.
    let gets = p.count("GET", "/blobs/sha256:");
    let r = copy(
        &c,
        &to,
        &at(&format!("{}/m/b:v1", p.host())),
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!((r.mounted, r.copied), (4, 0));
    let mounts: Vec<Seen> = p
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.uri.contains("mount=") && s.uri.contains("from=m/a"))
        .collect();
    assert_eq!(mounts.len(), 4);
    assert!(mounts.iter().all(|s| s.status == 201));
    assert_eq!(p.count("GET", "/blobs/sha256:"), gets, "no blob was read");
    assert_eq!(r.digest, digest_of(&image));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_with_bearer_tokens() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = TestLayout::new(&src);
    let image = layout.image("amd64", &[data(10_000, 1), data(20_000, 2)]);
    layout.tag(&image, "v1");
    let reg = berth(Config::default()).await;
    let p = proxy(
        reg.addr,
        Rules {
            auth: Some(Auth {
                user: "alice",
                password: "s3cret",
                tokens: Mutex::new(HashMap::new()),
                issued: AtomicU64::new(0),
            }),
            ..Rules::default()
        },
    )
    .await;
    let from = at(&format!("oci:{}:v1", src.display()));
    let to = at(&format!("{}/secure/app:v1", p.host()));

    // Anonymous: the token service grants pull only, so the push is refused, with a hint.
    let anonymous = client(true);
    let err = copy(&anonymous, &from, &to, &CopyOptions::default(), quiet())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(
        err.hint().unwrap().contains("docker login"),
        "{:?}",
        err.hint()
    );

    // Wrong password: the token service says no, and the error names the source.
    let with = |user: &str, password: &str| {
        let keychain = Keychain {
            everywhere: Some(Credential {
                secret: Secret::Basic {
                    username: user.into(),
                    password: password.into(),
                },
                source: "the test".into(),
            }),
            ..Keychain::default()
        };
        Client::new(ClientOptions {
            insecure: true,
            keychain,
            backoff: Duration::from_millis(10),
            ..ClientOptions::default()
        })
        .unwrap()
    };
    let err = copy(
        &with("alice", "wrong"),
        &from,
        &to,
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.to_string().contains("the test"), "{err}");

    // Right password: one token for the repository's pull,push scope serves every request.
    let alice = with("alice", "s3cret");
    let r = copy(&alice, &from, &to, &CopyOptions::default(), quiet())
        .await
        .unwrap();
    assert_eq!(r.digest, digest_of(&image));
    assert_eq!(alice.tokens_fetched(), 1, "the token is cached per scope");

    // Credentials from a docker config file.
    let auth_file = work.path().join("config.json");
    std::fs::write(
        &auth_file,
        json!({"auths": {p.host(): {"auth": "YWxpY2U6czNjcmV0"}}}).to_string(),
    )
    .unwrap();
    let from_file = Client::new(ClientOptions {
        insecure: true,
        keychain: Keychain {
            files: vec![work.path().join("missing.json"), auth_file],
            ..Keychain::default()
        },
        ..ClientOptions::default()
    })
    .unwrap();
    let r = copy(
        &from_file,
        &to,
        &at(&format!("{}/secure/copy:v1", p.host())),
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.mounted, 3,
        "mounted with a token covering both repositories"
    );

    // Anonymous pull works: the token service grants pull without credentials.
    let before = anonymous.tokens_fetched();
    let out = work.path().join("out");
    let r = copy(
        &anonymous,
        &to,
        &at(&format!("oci:{}:v1", out.display())),
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.digest, digest_of(&image));
    assert_eq!(anonymous.tokens_fetched(), before + 1, "one pull token");
    assert!(
        p.seen().iter().filter(|s| s.status == 401).count() >= 2,
        "the registry did challenge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_429_and_503_honouring_retry_after() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = TestLayout::new(&src);
    let image = layout.image("amd64", &[data(10_000, 1)]);
    layout.tag(&image, "v1");
    let reg = berth(Config::default()).await;
    let p = proxy(
        reg.addr,
        Rules {
            fail: Mutex::new(vec![
                ("HEAD".into(), 429, Some("0")),
                ("HEAD".into(), 503, None),
                ("PUT".into(), 429, Some("1")),
            ]),
            ..Rules::default()
        },
    )
    .await;
    let c = client(true);
    let r = copy(
        &c,
        &at(&format!("oci:{}:v1", src.display())),
        &at(&format!("{}/busy/app:v1", p.host())),
        &CopyOptions {
            jobs: 1,
            ..CopyOptions::default()
        },
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.digest, digest_of(&image));
    let statuses: Vec<u16> = p.seen().iter().map(|s| s.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 1);

    // Out of retries: the error says what and what to do.
    let none = Client::new(ClientOptions {
        insecure: true,
        retries: 0,
        ..ClientOptions::default()
    })
    .unwrap();
    p.seen.lock().unwrap().clear();
    let p2 = proxy(
        reg.addr,
        Rules {
            fail: Mutex::new(vec![("GET".into(), 503, None)]),
            ..Rules::default()
        },
    )
    .await;
    let err = none
        .repository(&p2.host(), "busy/app".parse().unwrap())
        .manifest(&Reference::Tag("v1".parse().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.hint().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_referrers_along_on_request() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = TestLayout::new(&src);
    let image = layout.image("amd64", &[data(1000, 1)]);
    layout.tag(&image, "v1");
    // An SBOM artifact about the image, untagged in index.json as oras keeps it.
    let sbom = layout.put("application/spdx+json", br#"{"spdx":"yes"}"#);
    let empty = layout.put("application/vnd.oci.empty.v1+json", b"{}");
    let artifact = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json", "config": empty, "layers": [sbom],
        "subject": image, "annotations": {"kind": "sbom"}});
    let artifact = layout.put(OCI_MANIFEST, artifact.to_string().as_bytes());
    layout.index.push(artifact.clone());
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": layout.index});
    std::fs::write(src.join("index.json"), index.to_string()).unwrap();

    let reg = berth(Config::default()).await;
    let c = client(true);
    let with_referrers = CopyOptions {
        referrers: true,
        ..CopyOptions::default()
    };
    let r = copy(
        &c,
        &at(&format!("oci:{}:v1", src.display())),
        &at(&format!("{}/ref/app:v1", reg.addr)),
        &with_referrers,
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.referrers, 1);
    let (subject, list) = berth_client::referrers(
        &c,
        &at(&format!("{}/ref/app:v1", reg.addr)),
        Some("application/spdx+json"),
    )
    .await
    .unwrap();
    assert_eq!(subject, digest_of(&image));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].digest, digest_of(&artifact));

    // Onward to a layout: the referrer lands in its index.json, untagged.
    let out = work.path().join("out");
    let r = copy(
        &c,
        &at(&format!("{}/ref/app:v1", reg.addr)),
        &at(&format!("oci:{}:v1", out.display())),
        &with_referrers,
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.referrers, 1);
    let pulled = berth_client::layout::Layout::open(&out).await.unwrap();
    let refs = pulled.referrers(&digest_of(&image)).await.unwrap();
    assert_eq!(refs.len(), 1);
    // Without asking, no referrers move.
    let r = copy(
        &c,
        &at(&format!("{}/ref/app:v1", reg.addr)),
        &at(&format!("{}/ref/plain:v1", reg.addr)),
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.referrers, 0);
}

/// A tar in the old `docker save` shape: `manifest.json`, `<id>.json`, `<id>/layer.tar`.
fn docker_archive(path: &Path, layers: &[Vec<u8>]) -> (Vec<Digest>, Digest) {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::sha256(l)).collect();
    let config = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string()
    .into_bytes();
    let config_digest = Digest::sha256(&config);
    let config_name = format!("{}.json", config_digest.hex());
    let mut layer_names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("{:064x}/layer.tar", i + 1);
        files.push((name.clone(), l.clone()));
        layer_names.push(name);
    }
    files.push((config_name.clone(), config));
    let manifest = json!([{"Config": config_name, "RepoTags": ["example/app:v1"],
        "Layers": layer_names}]);
    files.push(("manifest.json".into(), manifest.to_string().into_bytes()));
    let mut tar = Vec::new();
    for (name, bytes) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", bytes.len()).as_bytes());
        h[136..147].copy_from_slice(b"14524764000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        tar.extend_from_slice(&h);
        tar.extend_from_slice(&bytes);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    std::fs::write(path, tar).unwrap();
    (diff_ids, config_digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_from_a_docker_archive() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("app.tar");
    let (diff_ids, config) = docker_archive(&file, &[data(3000, 1), data(600_000, 2)]);
    let reg = berth(Config::default()).await;
    let c = client(true);
    let src = at(&format!("docker-archive:{}", file.display()));
    let r = copy(
        &c,
        &src,
        &at(&format!("{}/arch/app:v1", reg.addr)),
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.blobs, 3);
    let i = berth_client::inspect(&c, &at(&format!("{}/arch/app:v1", reg.addr)))
        .await
        .unwrap();
    let image = i.image.unwrap();
    assert_eq!(image.config.digest, config);
    let layers: Vec<Digest> = image.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(
        layers, diff_ids,
        "uncompressed layers keep their diff_ids as digests"
    );
    assert_eq!(image.platform.as_deref(), Some("linux/amd64"));
    // The same archive read twice gives the same manifest digest.
    let again = berth_client::inspect(&c, &src).await.unwrap();
    assert_eq!(again.digest, r.digest);
    // Picking the image by name works; a wrong name says which exist.
    let named = at(&format!("docker-archive:{}:example/app:v1", file.display()));
    assert_eq!(
        berth_client::inspect(&c, &named).await.unwrap().digest,
        r.digest
    );
    let wrong = at(&format!("docker-archive:{}:other:v1", file.display()));
    assert_eq!(
        berth_client::inspect(&c, &wrong).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_content_fails_the_copy_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut layout = TestLayout::new(&src);
    let layer = data(50_000, 1);
    let image = layout.image("amd64", std::slice::from_ref(&layer));
    layout.tag(&image, "v1");
    // Flip a byte of the layer on disk.
    let path = src.join("blobs/sha256").join(Digest::sha256(&layer).hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let reg = berth(Config::default()).await;
    let c = client(true);
    let err = copy(
        &c,
        &at(&format!("oci:{}:v1", src.display())),
        &at(&format!("{}/bad/app:v1", reg.addr)),
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Digest, "{err}");
    let repo = c.repository(&reg.addr.to_string(), "bad/app".parse().unwrap());
    assert_eq!(
        repo.manifest_head(&Reference::Tag("v1".parse().unwrap()))
            .await
            .unwrap(),
        None,
        "no manifest refers to what failed"
    );
    let err = copy(
        &c,
        &at(&format!("oci:{}:v1", src.display())),
        &at(&format!("oci:{}:v1", work.path().join("out").display())),
        &CopyOptions::default(),
        quiet(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Digest);
    assert!(
        !work
            .path()
            .join("out/blobs/sha256")
            .join(Digest::sha256(&layer).hex())
            .exists()
    );
}
