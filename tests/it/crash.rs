//! A real `berth serve` killed (SIGKILL) at random moments while clients push, restarted on the
//! same root each time; then whatever the store holds must read back whole.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth::native::fs::FsStore;
use berth::{Digest, ListOptions, Storage, StorageError};
use futures_util::StreamExt;

use crate::server::client::{Conn, with_digest};
use crate::server::spawn_berth;

const ROUNDS: u64 = 6;
const PUSHERS: u64 = 3;

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
async fn push(addr: SocketAddr, seed: u64, pushed: Arc<AtomicU64>) {
    let mut rng = Rng(seed | 1);
    let Ok(mut c) = Conn::connect(addr).await else {
        return;
    };
    for k in 0.. {
        if push_image(&mut c, &mut rng, seed, k).await.is_err() {
            return;
        }
        pushed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn push_image(c: &mut Conn, rng: &mut Rng, seed: u64, k: u64) -> std::io::Result<()> {
    let fail = |what: &str, r: &crate::server::client::Reply| {
        std::io::Error::other(format!("{what}: {} {:?}", r.status, r.body))
    };
    let len = 1 + rng.below(3 << 20) as usize;
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
        let location = r.header("location").unwrap_or_default().to_owned();
        let cut = rng.below(layer.len() as u64) as usize;
        let r = c.request("PATCH", &location, &[], &layer[..cut]).await?;
        if r.status != 202 {
            return Err(fail("patch", &r));
        }
        let r = c
            .request("PUT", &with_digest(&location, &ld), &[], &layer[cut..])
            .await?;
        if r.status != 201 {
            return Err(fail("put", &r));
        }
    }
    let config = format!(r#"{{"pusher":{seed},"image":{k}}}"#);
    let cd = Digest::sha256(config.as_bytes()).to_string();
    let uri = format!("/v2/crash/blobs/uploads/?digest={cd}");
    let r = c.request("POST", &uri, &[], config.as_bytes()).await?;
    if r.status != 201 {
        return Err(fail("config", &r));
    }
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
    let blobs = store.blobs().await.unwrap();
    for d in &blobs {
        let data = read_back(&store, d).await;
        assert_eq!(&Digest::sha256(&data), d, "blob {d} reads back whole");
    }
    let all = ListOptions::default();
    let tags = store.meta_list("repos/crash/_tags/", all).await.unwrap();
    for tag in &tags {
        let key = format!("repos/crash/_tags/{tag}");
        let value = store.meta_get(&key).await.unwrap().value;
        let d: Digest = std::str::from_utf8(&value).unwrap().parse().unwrap();
        let link = format!("repos/crash/_manifests/sha256/{}", d.hex());
        store.meta_get(&link).await.expect("a tag names a manifest");
        let manifest: serde_json::Value =
            serde_json::from_slice(&read_back(&store, &d).await).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        for desc in layers.iter().chain([&manifest["config"]]) {
            let bd: Digest = desc["digest"].as_str().unwrap().parse().unwrap();
            assert_eq!(store.blob_size(&bd).await.ok(), desc["size"].as_u64());
        }
    }
    for link in store.meta_list("repos/crash/_blobs/", all).await.unwrap() {
        let d: Digest = link.replacen('/', ":", 1).parse().unwrap();
        match store.blob_size(&d).await {
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
    for round in 0..ROUNDS {
        let (mut child, addr) = spawn_berth(&[&root_arg], dir.path());
        let before = pushed.load(Ordering::SeqCst);
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|p| {
                let seed = rng.next() ^ (round << 8 | p);
                tokio::spawn(push(addr, seed, pushed.clone()))
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
        pushed.load(Ordering::SeqCst) >= ROUNDS,
        "every round pushed"
    );
    let tags = check(&root).await;
    println!(
        "{} images pushed in {ROUNDS} rounds; {tags} tags checked",
        pushed.load(Ordering::SeqCst)
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
