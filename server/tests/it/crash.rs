//! A real `berth serve` killed (SIGKILL) at random moments while clients push, restarted on the
//! same root each time; then whatever the store holds must read back whole, every blob and
//! manifest the server acknowledged is there, and uploads cut off by a kill can be finished.
//! `BERTH_CRASH_ROUNDS` sets the number of kills (6 by default).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth::{Digest, ListOptions, Storage, StorageError};
use berth_server::fs::FsStore;
use futures_util::StreamExt;

use crate::server::client::{Conn, with_digest};
use crate::server::spawn_berth;

const PUSHERS: u64 = 3;

fn rounds() -> u64 {
    std::env::var("BERTH_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6)
}

/// A chunked upload in progress: the bytes acknowledged so far.
struct Pending {
    location: String,
    data: Vec<u8>,
    acked: usize,
}

/// What the pushers were told is stored, and the uploads they had under way.
#[derive(Default)]
struct Ledger {
    blobs: Mutex<Vec<Digest>>,
    manifests: Mutex<Vec<Digest>>,
    pending: Mutex<HashMap<u64, Pending>>,
}

impl Ledger {
    fn acked(&self, list: &Mutex<Vec<Digest>>, d: &str) {
        list.lock().unwrap().push(d.parse().unwrap());
    }
}

/// A small deterministic generator: the seed is printed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Push blobs and tagged manifests until the server goes away.
async fn push(addr: SocketAddr, seed: u64, pushed: Arc<AtomicU64>, ledger: Arc<Ledger>) {
    let mut rng = Rng(seed | 1);
    let Ok(mut c) = Conn::connect(addr).await else {
        return;
    };
    for k in 0.. {
        if push_image(&mut c, &mut rng, seed, k, &ledger)
            .await
            .is_err()
        {
            return;
        }
        pushed.fetch_add(1, Ordering::SeqCst);
    }
}

/// Finish an upload a kill interrupted: from where the server says it is, which must include
/// every acknowledged chunk, or from scratch if the session is gone.
async fn resume(c: &mut Conn, p: Pending) {
    let d = Digest::sha256(&p.data).to_string();
    let r = c.request("GET", &p.location, &[], b"").await.unwrap();
    let r = match r.status {
        204 => {
            let range = r.header("range").unwrap();
            let last: usize = range.strip_prefix("0-").unwrap().parse().unwrap();
            // Chunks are at least 2 bytes, so `0-0` is an empty upload.
            let offset = if last == 0 { 0 } else { last + 1 };
            assert!(
                offset >= p.acked,
                "acknowledged bytes kept: {offset} < {}",
                p.acked
            );
            assert!(offset <= p.data.len());
            let uri = with_digest(&p.location, &d);
            c.request("PUT", &uri, &[], &p.data[offset..])
                .await
                .unwrap()
        }
        404 => {
            let uri = format!("/v2/crash/blobs/uploads/?digest={d}");
            c.request("POST", &uri, &[], &p.data).await.unwrap()
        }
        s => panic!("upload status after a crash: {s}"),
    };
    assert_eq!(
        r.status,
        201,
        "finishing {} ({} bytes, {} acknowledged): {}",
        p.location,
        p.data.len(),
        p.acked,
        String::from_utf8_lossy(&r.body)
    );
}

async fn push_image(
    c: &mut Conn,
    rng: &mut Rng,
    seed: u64,
    k: u64,
    ledger: &Ledger,
) -> std::io::Result<()> {
    let fail = |what: &str, r: &crate::server::client::Reply| {
        std::io::Error::other(format!("{what}: {} {:?}", r.status, r.body))
    };
    let len = 16 + rng.below(3 << 20) as usize;
    let layer = rng.bytes(len);
    let ld = Digest::sha256(&layer).to_string();
    if rng.below(2) == 0 {
        let uri = format!("/v2/crash/blobs/uploads/?digest={ld}");
        let r = c.request("POST", &uri, &[], &layer).await?;
        if r.status != 201 {
            return Err(fail("monolithic", &r));
        }
    } else {
        let r = c
            .request("POST", "/v2/crash/blobs/uploads/", &[], b"")
            .await?;
        if r.status != 202 {
            return Err(fail("post", &r));
        }
        let location = r.header("location").unwrap_or_default().to_owned();
        let pending = Pending {
            location: location.clone(),
            data: layer.clone(),
            acked: 0,
        };
        ledger.pending.lock().unwrap().insert(seed, pending);
        // Three chunks of at least 2 bytes, with Content-Range.
        let cuts = [0, len / 3, 2 * len / 3];
        for (i, &from) in cuts.iter().enumerate() {
            let to = cuts.get(i + 1).copied().unwrap_or(len);
            let range = format!("{from}-{}", to - 1);
            let hdr = [("content-range", range.as_str())];
            let r = c
                .request("PATCH", &location, &hdr, &layer[from..to])
                .await?;
            if r.status != 202 {
                return Err(fail("patch", &r));
            }
            if let Some(p) = ledger.pending.lock().unwrap().get_mut(&seed) {
                p.acked = to;
            }
        }
        let r = c
            .request("PUT", &with_digest(&location, &ld), &[], b"")
            .await?;
        if r.status != 201 {
            return Err(fail("put", &r));
        }
        ledger.pending.lock().unwrap().remove(&seed);
    }
    ledger.acked(&ledger.blobs, &ld);
    let config = format!(r#"{{"pusher":{seed},"image":{k}}}"#);
    let cd = Digest::sha256(config.as_bytes()).to_string();
    let uri = format!("/v2/crash/blobs/uploads/?digest={cd}");
    let r = c.request("POST", &uri, &[], config.as_bytes()).await?;
    if r.status != 201 {
        return Err(fail("config", &r));
    }
    ledger.acked(&ledger.blobs, &cd);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let ct = [("content-type", "application/vnd.oci.image.manifest.v1+json")];
    for tag in [format!("p{seed}-{k}"), "latest".to_owned()] {
        let uri = format!("/v2/crash/manifests/{tag}");
        let r = c.request("PUT", &uri, &ct, manifest.as_bytes()).await?;
        if r.status != 201 {
            return Err(fail("manifest", &r));
        }
        ledger.acked(
            &ledger.manifests,
            r.header("docker-content-digest").unwrap(),
        );
    }
    Ok(())
}

async fn read_back(store: &FsStore, d: &Digest) -> Vec<u8> {
    let blob = store.blob_get(d, None).await.unwrap();
    let mut body = blob.body.into_stream();
    let mut out = Vec::new();
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    assert_eq!(out.len() as u64, blob.size);
    out
}

/// Every blob whole; every tag → a manifest link → a manifest whose blobs are all there.
async fn check(root: &Path) -> usize {
    let store = FsStore::open(root).await.unwrap();
    let blobs = store
        .blob_list(Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.digest)
        .collect::<Vec<_>>();
    for d in &blobs {
        let data = read_back(&store, d).await;
        assert_eq!(&Digest::sha256(&data), d, "blob {d} reads back whole");
    }
    let all = ListOptions::default();
    let tags = store.meta_list("repos/crash/_tags/", all).await.unwrap();
    for tag in &tags {
        let key = format!("repos/crash/_tags/{tag}");
        let value = store.meta_get(&key).await.unwrap().value;
        let d = berth::links::TagLink::parse(&value)
            .expect("a tag reads")
            .digest;
        let link = format!("repos/crash/_manifests/sha256/{}", d.hex());
        store.meta_get(&link).await.expect("a tag names a manifest");
        let manifest: serde_json::Value =
            serde_json::from_slice(&read_back(&store, &d).await).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        for desc in layers.iter().chain([&manifest["config"]]) {
            let bd: Digest = desc["digest"].as_str().unwrap().parse().unwrap();
            assert_eq!(
                store.blob_head(&bd).await.map(|i| i.size).ok(),
                desc["size"].as_u64()
            );
        }
    }
    for link in store.meta_list("repos/crash/_blobs/", all).await.unwrap() {
        let d: Digest = link.replacen('/', ":", 1).parse().unwrap();
        match store.blob_head(&d).await.map(|i| i.size) {
            Ok(_) => {}
            Err(StorageError::NotFound) => panic!("blob link {d} without its blob"),
            Err(e) => panic!("{e}"),
        }
    }
    tags.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_leaves_a_readable_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root_arg = format!("--root={}", root.display());
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut rng = Rng(seed | 1);
    let pushed = Arc::new(AtomicU64::new(0));
    let ledger = Arc::new(Ledger::default());
    let (rounds, mut resumed) = (rounds(), 0);
    for round in 0..rounds {
        let (mut child, addr) = spawn_berth(&[&root_arg], dir.path());
        let interrupted: Vec<Pending> = ledger
            .pending
            .lock()
            .unwrap()
            .drain()
            .map(|(_, p)| p)
            .collect();
        let mut c = Conn::connect(addr).await.unwrap();
        for p in interrupted {
            ledger.acked(&ledger.blobs, &Digest::sha256(&p.data).to_string());
            resume(&mut c, p).await;
            resumed += 1;
        }
        let before = pushed.load(Ordering::SeqCst);
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|p| {
                let seed = rng.next() ^ (round << 8 | p);
                tokio::spawn(push(addr, seed, pushed.clone(), ledger.clone()))
            })
            .collect();
        // Let some pushes land, then kill at a random moment among the writes.
        for _ in 0..600 {
            if pushed.load(Ordering::SeqCst) > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        child.kill().unwrap();
        child.wait().unwrap();
        for p in pushers {
            p.await.unwrap();
        }
    }
    assert!(
        pushed.load(Ordering::SeqCst) >= rounds,
        "every round pushed"
    );
    let tags = check(&root).await;
    let store = FsStore::open(&root).await.unwrap();
    let (blobs, manifests) = (
        ledger.blobs.lock().unwrap().clone(),
        ledger.manifests.lock().unwrap().clone(),
    );
    for d in blobs.iter().chain(&manifests) {
        let data = read_back(&store, d).await;
        assert_eq!(&Digest::sha256(&data), d, "acknowledged {d} reads back");
    }
    for d in &manifests {
        let link = format!("repos/crash/_manifests/sha256/{}", d.hex());
        store
            .meta_get(&link)
            .await
            .expect("an acknowledged manifest is linked");
    }
    drop(store);
    println!(
        "{} images pushed in {rounds} rounds; {} blobs and {} manifests acknowledged; \
         {resumed} interrupted uploads finished; {tags} tags checked",
        pushed.load(Ordering::SeqCst),
        blobs.len(),
        manifests.len()
    );
    assert!(tags > 0);
    // And the restarted server serves it.
    let (mut child, addr) = spawn_berth(&[&root_arg], dir.path());
    let mut c = Conn::connect(addr).await.unwrap();
    let r = c
        .request("GET", "/v2/crash/manifests/latest", &[], b"")
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.status, 200);
}

/// Found by the test above: a kill after the closing PUT moved the bytes into place and removed
/// the upload's directory, but before the session was dropped. Retrying that PUT must succeed.
#[tokio::test]
async fn a_finish_cut_off_after_its_rename_can_be_retried() {
    let s = crate::hostile::start().await;
    let data = b"the bytes of a finished upload".to_vec();
    let d = Digest::sha256(&data);
    let mut c = Conn::connect(s.addr).await.unwrap();
    let r = c
        .request("POST", "/v2/r/blobs/uploads/", &[], b"")
        .await
        .unwrap();
    let location = r.header("location").unwrap().to_owned();
    let r = c.request("PATCH", &location, &[], &data).await.unwrap();
    assert_eq!(r.status, 202);
    // What the killed finish left: the blob in place, the upload's directory gone.
    let id = location
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let upload = s.root().join("uploads").join(id);
    let shard = s.root().join("blobs/sha256").join(&d.hex()[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::rename(upload.join("data"), shard.join(d.hex())).unwrap();
    std::fs::remove_dir(&upload).unwrap();
    let uri = with_digest(&location, &d.to_string());
    let r = c.request("PUT", &uri, &[], b"").await.unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = c
        .request("GET", &format!("/v2/r/blobs/{d}"), &[], b"")
        .await
        .unwrap();
    assert_eq!(r.body, data);
    // A session whose bytes vanished otherwise: 404, so the client starts again. (A closing
    // PUT at offset 0 needs none of the session's bytes: it is a whole blob.)
    let r = c
        .request("POST", "/v2/r/blobs/uploads/", &[], b"")
        .await
        .unwrap();
    let location = r.header("location").unwrap().to_owned();
    let r = c.request("PATCH", &location, &[], b"lost").await.unwrap();
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap().to_owned();
    let id = location
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    std::fs::remove_dir_all(s.root().join("uploads").join(id)).unwrap();
    let uri = with_digest(&location, &Digest::sha256(b"lost").to_string());
    let r = c.request("PUT", &uri, &[], b"").await.unwrap();
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
}
