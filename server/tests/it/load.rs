//! Load: many keep-alive clients mixing manifest and blob pulls with pushes against a real
//! `berth serve`. Every body's digest is checked; any error fails. The suite runs a short
//! version; `bench/load.sh` runs the long one against the release build and prints figures.
//!
//! `BERTH_LOAD_SECS` (5), `BERTH_LOAD_CLIENTS` (32), `BERTH_LOAD_BIN` (the debug binary).
//! Another registry already running (Distribution, for the figures beside berth's):
//! `BERTH_LOAD_ADDR` (host:port), `BERTH_LOAD_PID` (its process, for memory and threads),
//! `BERTH_LOAD_TWO_STEP=1` (POST, then PUT with the body: Distribution 2.8 takes no body in
//! the POST). `BERTH_LOAD_STATIC=DIR` with `BERTH_LOAD_ADDR`: the generator's own ceiling. The
//! images are written as files under DIR (`v2/load/manifests/<tag>`, `v2/load/blobs/<digest>`)
//! for a static server there (nginx), and the clients only pull.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::Digest;
use tokio::task::JoinSet;

use crate::server::client::Conn;
use crate::server::spawn_berth;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const IMAGES: usize = 8;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Image {
    tag: String,
    manifest: Digest,
    blobs: Vec<Digest>,
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Push a blob: one POST with the body, or POST then PUT. Returns the requests it took.
async fn push_blob(c: &mut Conn, data: &[u8], d: &Digest, two_step: bool) -> Result<u32, String> {
    let err = |e: std::io::Error| e.to_string();
    if !two_step {
        let uri = format!("/v2/load/blobs/uploads/?digest={d}");
        let r = c.request("POST", &uri, &[], data).await.map_err(err)?;
        return if r.status == 201 {
            Ok(1)
        } else {
            Err(format!("blob push: {}", r.status))
        };
    }
    let r = c
        .request("POST", "/v2/load/blobs/uploads/", &[], b"")
        .await
        .map_err(err)?;
    let location = r.header("location").filter(|_| r.status == 202);
    let location = location.ok_or_else(|| format!("upload start: {}", r.status))?;
    // Distribution answers with an absolute URL: keep its path and query.
    let path = match location.find("://") {
        Some(i) => location[i + 3..]
            .find('/')
            .map_or("/", |j| &location[i + 3 + j..]),
        None => location,
    };
    let uri = crate::server::client::with_digest(path, &d.to_string());
    let ct = [("content-type", "application/octet-stream")];
    let r = c.request("PUT", &uri, &ct, data).await.map_err(err)?;
    if r.status != 201 {
        return Err(format!("blob put: {}", r.status));
    }
    Ok(2)
}

/// An image's config and manifest, for `layer` under `tag`.
fn image(tag: &str, layer: &[u8]) -> (Vec<u8>, String) {
    let config = format!(r#"{{"tag":"{tag}"}}"#).into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        Digest::sha256(&config),
        config.len(),
        Digest::sha256(layer),
        layer.len()
    );
    (config, manifest)
}

/// The same image as files under `dir`, where a static server answers its pulls.
fn write_static(dir: &std::path::Path, tag: &str, layer: &[u8]) -> Image {
    let (config, manifest) = image(tag, layer);
    let blobs: Vec<Digest> = [layer, &config[..]]
        .iter()
        .map(|d| Digest::sha256(d))
        .collect();
    let base = dir.join("v2/load");
    for sub in ["blobs", "manifests"] {
        std::fs::create_dir_all(base.join(sub)).unwrap();
    }
    for (d, data) in blobs.iter().zip([layer, &config[..]]) {
        std::fs::write(base.join("blobs").join(d.to_string()), data).unwrap();
    }
    std::fs::write(base.join("manifests").join(tag), &manifest).unwrap();
    Image {
        tag: tag.to_owned(),
        manifest: Digest::sha256(manifest.as_bytes()),
        blobs,
    }
}

/// Push a layer, a config and a manifest under `tag`; the image and the requests it took, or
/// an error as text.
async fn push(
    c: &mut Conn,
    tag: &str,
    layer: &[u8],
    two_step: bool,
) -> Result<(Image, u32), String> {
    let (config, manifest) = image(tag, layer);
    let mut blobs = Vec::new();
    let mut requests = 1;
    for data in [layer, &config[..]] {
        let d = Digest::sha256(data);
        requests += push_blob(c, data, &d, two_step).await?;
        blobs.push(d);
    }
    let uri = format!("/v2/load/manifests/{tag}");
    let ct = [("content-type", MANIFEST)];
    let r = c
        .request("PUT", &uri, &ct, manifest.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 201 {
        return Err(format!("manifest push: {}", r.status));
    }
    let image = Image {
        tag: tag.to_owned(),
        manifest: Digest::sha256(manifest.as_bytes()),
        blobs,
    };
    Ok((image, requests))
}

/// GET `path` and check the body against `want`.
async fn pull(c: &mut Conn, path: &str, want: &Digest) -> Result<(), String> {
    // Distribution answers 404 to a GET of an OCI manifest that does not accept it.
    let r = c
        .request("GET", path, &[("accept", MANIFEST)], b"")
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("GET {path}: {}", r.status));
    }
    if &Digest::sha256(&r.body) != want {
        return Err(format!("GET {path}: wrong digest"));
    }
    Ok(())
}

/// One client until `end`: latencies in microseconds, or the first error.
async fn client(
    addr: std::net::SocketAddr,
    k: u64,
    images: Arc<Vec<Image>>,
    end: Instant,
    two_step: bool,
    pulls_only: bool,
) -> Result<Vec<u32>, String> {
    let mut c = Conn::connect(addr).await.map_err(|e| e.to_string())?;
    let mut lat = Vec::new();
    let mut x = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut n = 0u64;
    while Instant::now() < end {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let image = &images[x as usize % images.len()];
        let start = Instant::now();
        // One request in ten is a push, unless a static server answers (pulls only).
        let kind = if pulls_only { x % 18 } else { x % 20 };
        let requests = match kind {
            0..=8 => {
                let path = format!("/v2/load/manifests/{}", image.tag);
                pull(&mut c, &path, &image.manifest).await?;
                1
            }
            9..=17 => {
                let d = &image.blobs[(x >> 8) as usize % 2];
                pull(&mut c, &format!("/v2/load/blobs/{d}"), d).await?;
                1
            }
            _ => {
                n += 1;
                let layer = bytes(16 << 10, x);
                let tag = format!("c{k}-{}", n % 4);
                push(&mut c, &tag, &layer, two_step).await?.1
            }
        };
        let us = start.elapsed().as_micros() as u32 / requests;
        lat.extend(std::iter::repeat_n(us, requests as usize));
    }
    Ok(lat)
}

/// A number from `/proc/<pid>/status` (`VmHWM`, in KiB; `Threads`). Panics if it cannot be
/// read: a 0 would pass.
fn status(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

/// Samples the thread count of `pid` every 10 ms until `stop`; the highest seen. The kernel
/// keeps no peak of its own, as it does for memory.
fn peak_threads(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(status(pid, "Threads"));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

/// The peak RSS the load may reach, in KiB (VmHWM's unit).
const MAX_RSS_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_without_errors() {
    let (secs, clients) = (env("BERTH_LOAD_SECS", 5), env("BERTH_LOAD_CLIENTS", 32));
    let two_step = env("BERTH_LOAD_TWO_STEP", 0) == 1;
    let static_dir = std::env::var_os("BERTH_LOAD_STATIC").map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let root = format!("--root={}", dir.path().join("root").display());
    let external = std::env::var("BERTH_LOAD_ADDR").ok();
    let (mut child, addr, pid) = match (external, std::env::var("BERTH_LOAD_BIN")) {
        (Some(addr), _) => {
            let pid = std::env::var("BERTH_LOAD_PID").expect("BERTH_LOAD_PID with BERTH_LOAD_ADDR");
            (None, addr.parse().unwrap(), pid.parse().unwrap())
        }
        (None, Ok(bin)) => {
            let (child, addr) = crate::server::spawn_berth_bin(&bin, &[&root], dir.path());
            let pid = child.id();
            (Some(child), addr, pid)
        }
        (None, Err(_)) => {
            let (child, addr) = spawn_berth(&[&root], dir.path());
            let pid = child.id();
            (Some(child), addr, pid)
        }
    };
    let mut c = Conn::connect(addr).await.unwrap();
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let layer = bytes(1024 << (i % 11), i as u64);
        let tag = format!("v{i}");
        images.push(match &static_dir {
            Some(dir) => write_static(dir, &tag, &layer),
            None => push(&mut c, &tag, &layer, two_step).await.unwrap().0,
        });
    }
    let images = Arc::new(images);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = peak_threads(pid, stop.clone());
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut set = JoinSet::new();
    for k in 0..clients {
        let pulls_only = static_dir.is_some();
        set.spawn(client(addr, k, images.clone(), end, two_step, pulls_only));
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r.unwrap().expect("no errors under load"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let threads = threads.join().unwrap();
    let rss = status(pid, "VmHWM");
    if let Some(child) = child.as_mut() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let (rps, p50, p99) = (lat.len() as f64 / elapsed, pct(0.5), pct(0.99));
    println!(
        "load: {clients} clients, {secs}s: {} requests, {rps:.0} req/s, p50 {p50:.2} ms, \
         p99 {p99:.2} ms, peak RSS {} MiB, peak threads {threads}",
        lat.len(),
        rss / 1024
    );
    // For bench/load.sh: clients, seconds, requests/s, p50, p99, peak RSS KiB, peak threads.
    println!("load-figures\t{clients}\t{secs}\t{rps:.0}\t{p50:.2}\t{p99:.2}\t{rss}\t{threads}");
    assert!(!lat.is_empty());
    assert!(rss > 0, "peak RSS read as 0");
    // Memory stays bounded: blobs are streamed, never held whole per request. (Berth's bound:
    // another registry is only measured.)
    assert!(
        child.is_none() || rss < MAX_RSS_KIB,
        "peak RSS {} MiB, over {} MiB",
        rss / 1024,
        MAX_RSS_KIB / 1024
    );
}
