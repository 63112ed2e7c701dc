//! Garbage collection against live traffic on a real socket and the filesystem store: writers
//! push images (uploading, reusing blobs found by HEAD, mounting from a shared repository),
//! move tags and delete manifests while a pass runs every second with a grace of 4 s (and
//! untagged manifests going once past it). After,
//! every acknowledged live manifest and every blob it names reads back with its digest; once
//! everything is deleted, the blobs on disk fall to nothing.
//!
//!   BERTH_GC_SECONDS=120 cargo test -p berth-server --test it gc::   (default 12 s)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::{Config, Digest, Registry};
use berth_server::env::SystemEnv;
use berth_server::fs::FsStore;
use berth_server::maintenance::{self, Schedule};
use berth_server::server::{self, Options};
use tokio::net::TcpListener;

use crate::server::client::{Conn, Reply};

const GRACE: u64 = 4;
const WRITERS: usize = 4;

/// A tiny deterministic generator (xorshift), seeded per writer: runs replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a writer's pushes were acknowledged as: tag → (manifest digest, the blobs it names).
type Acked = BTreeMap<String, (Digest, Vec<(Digest, Vec<u8>)>)>;

async fn req(
    c: &mut Conn,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    c.request(method, path, headers, body)
        .await
        .expect("the server answers")
}

/// Put a blob into `repo`, the way clients do: skip it if a HEAD finds it, else mount it from
/// `pool` (1 in 3) or upload it. Ok(()) once the registry said it has it.
async fn put_blob(c: &mut Conn, rng: &mut Rng, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256(data);
    let head = req(c, "HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], b"").await;
    if head.status == 200 {
        return d;
    }
    if rng.below(3) == 0 {
        let r = req(
            c,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?mount={d}&from=pool"),
            &[],
            b"",
        )
        .await;
        if r.status == 201 {
            return d;
        }
        assert_eq!(r.status, 202, "a refused mount falls back to an upload");
    }
    loop {
        let r = req(
            c,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[],
            data,
        )
        .await;
        match r.status {
            201 => return d,
            // A pass is deleting these very bytes: try again in a moment.
            503 => tokio::time::sleep(Duration::from_millis(200)).await,
            s => panic!("upload: {s} {}", String::from_utf8_lossy(&r.body)),
        }
    }
}

async fn writer(addr: SocketAddr, id: usize, until: Instant) -> (String, Acked, u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) * 0x1234_5678));
    let mut c = Conn::connect(addr).await.unwrap();
    let repo = format!("w{id}/app");
    let mut acked = Acked::new();
    let mut refused = 0;
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        match rng.below(10) {
            // Delete a tagged manifest (by digest: its tags go with it).
            0..=2 if !acked.is_empty() => {
                let tag = acked
                    .keys()
                    .nth(rng.below(acked.len() as u64) as usize)
                    .unwrap()
                    .clone();
                let (m, _) = acked.remove(&tag).unwrap();
                let r = req(
                    &mut c,
                    "DELETE",
                    &format!("/v2/{repo}/manifests/{m}"),
                    &[],
                    b"",
                )
                .await;
                assert_eq!(r.status, 202);
                // Other tags on the same manifest went with it.
                acked.retain(|_, (d, _)| *d != m);
            }
            // Feed the shared pool others mount from.
            1 => {
                let data = format!("pool blob {}", rng.below(8)).into_bytes();
                put_blob(&mut c, &mut rng, "pool", &data).await;
            }
            // Push an image: a config, and layers from a small set (so some are reused).
            _ => {
                let tag = format!("t{}", rng.below(5));
                let mut blobs = Vec::new();
                for k in 0..2 {
                    let data = if k == 0 {
                        format!("config {id} {n}").into_bytes()
                    } else {
                        let size = 1000 + rng.below(30_000) as usize;
                        let seed = rng.below(12);
                        let mut v = format!("pool blob {}", seed % 8).into_bytes();
                        if seed >= 8 {
                            v = (0..size)
                                .map(|i| (i as u64 * (seed + 3) % 251) as u8)
                                .collect();
                        }
                        v
                    };
                    let d = put_blob(&mut c, &mut rng, &repo, &data).await;
                    blobs.push((d, data));
                }
                let desc = |d: &Digest, len: usize, t: &str| serde_json::json!({"mediaType": t, "digest": d.to_string(), "size": len});
                let manifest = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": desc(&blobs[0].0, blobs[0].1.len(), "application/vnd.oci.image.config.v1+json"),
                    "layers": [desc(&blobs[1].0, blobs[1].1.len(), "application/vnd.oci.image.layer.v1.tar")],
                });
                let body = serde_json::to_vec(&manifest).unwrap();
                let r = req(
                    &mut c,
                    "PUT",
                    &format!("/v2/{repo}/manifests/{tag}"),
                    &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                    &body,
                )
                .await;
                match r.status {
                    201 => {
                        acked.insert(tag, (Digest::sha256(&body), blobs));
                    }
                    // A blob found by HEAD (or mounted) went before the manifest landed, or the
                    // request ran past its deadline: the client pushes again from the start.
                    400 | 503 => {
                        let text = String::from_utf8_lossy(&r.body).into_owned();
                        assert!(
                            r.status == 503 || text.contains("MANIFEST_BLOB_UNKNOWN"),
                            "{text}"
                        );
                        refused += 1;
                    }
                    s => panic!("manifest push: {s} {}", String::from_utf8_lossy(&r.body)),
                }
            }
        }
    }
    (repo, acked, refused)
}

fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_under_live_traffic_loses_nothing_and_frees_everything() {
    let seconds: u64 = std::env::var("BERTH_GC_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = FsStore::open(&root).await.unwrap();
    let config = Config {
        gc_grace: GRACE,
        ..Config::default()
    };
    // Manifests a moved tag left behind go too, so that deleting every tagged one frees all.
    let policy = berth::gc::ContentPolicy::parse("[gc]\nuntagged = \"0s\"\n").unwrap();
    let registry = Arc::new(Registry::new(store, SystemEnv, config).with_policy(Arc::new(policy)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::run(
        listener,
        registry.clone(),
        Options::default(),
        std::future::pending(),
    ));
    let schedule = Schedule {
        gc: Some(Duration::from_secs(1)),
        scrub: None,
        purge: Duration::from_secs(60),
        metrics: None,
    };
    let gc = tokio::spawn(maintenance::run(registry.clone(), schedule));

    let until = Instant::now() + Duration::from_secs(seconds);
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| tokio::spawn(writer(addr, i, until)))
        .collect();
    let mut results = Vec::new();
    for w in writers {
        results.push(w.await.expect("a writer"));
    }
    // Passes went on while the writers worked; one more after them, past the grace.
    tokio::time::sleep(Duration::from_secs(GRACE + 1)).await;

    let mut c = Conn::connect(addr).await.unwrap();
    let mut checked = 0;
    for (repo, acked, refused) in &results {
        eprintln!(
            "{repo}: {} tags live, {refused} pushes refused and retried",
            acked.len()
        );
        for (tag, (m, blobs)) in acked {
            let r = req(
                &mut c,
                "GET",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[],
                b"",
            )
            .await;
            assert_eq!(r.status, 200, "{repo}:{tag}");
            assert_eq!(
                &Digest::sha256(&r.body),
                m,
                "{repo}:{tag} names what was pushed"
            );
            for (d, data) in blobs {
                let r = req(&mut c, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"").await;
                assert_eq!(r.status, 200, "{repo}:{tag} blob {d}");
                assert_eq!(&r.body, data, "{repo}:{tag} blob {d} reads back whole");
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "the writers acknowledged something");
    let peak = bytes_under(&root.join("blobs"));

    // Delete everything; passes past the grace leave (almost) nothing.
    for (repo, acked, _) in &results {
        for (m, _) in acked.values() {
            let r = req(
                &mut c,
                "DELETE",
                &format!("/v2/{repo}/manifests/{m}"),
                &[],
                b"",
            )
            .await;
            assert!(r.status == 202 || r.status == 404, "{}", r.status);
        }
    }
    tokio::time::sleep(Duration::from_secs(GRACE + 3)).await;
    let report = registry.collect_garbage(false).await.unwrap();
    let left = bytes_under(&root.join("blobs"));
    eprintln!(
        "blobs on disk: {peak} bytes at the end of the run, {left} after deleting all; {}",
        report.summary()
    );
    assert_eq!(left, 0, "every blob goes once nothing names it: {report:?}");
    gc.abort();
}
