//! Load: many keep-alive clients mixing manifest and blob pulls with pushes against a real
//! `berth serve`. Every body's digest is checked; any error fails. The suite runs a short
//! version; `bench/load.sh` runs the long one against the release build and prints figures.
//!
//! `BERTH_LOAD_SECS` (5), `BERTH_LOAD_CLIENTS` (32), `BERTH_LOAD_BIN` (the debug binary).

use std::sync::Arc;
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

/// Push a layer, a config and a manifest under `tag`; errors as text.
async fn push(c: &mut Conn, tag: &str, layer: &[u8]) -> Result<Image, String> {
    let config = format!(r#"{{"tag":"{tag}"}}"#).into_bytes();
    let mut blobs = Vec::new();
    for data in [layer, &config[..]] {
        let d = Digest::sha256(data);
        let uri = format!("/v2/load/blobs/uploads/?digest={d}");
        let r = c
            .request("POST", &uri, &[], data)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 201 {
            return Err(format!("blob push: {}", r.status));
        }
        blobs.push(d);
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        blobs[1],
        config.len(),
        blobs[0],
        layer.len()
    );
    let uri = format!("/v2/load/manifests/{tag}");
    let ct = [("content-type", MANIFEST)];
    let r = c
        .request("PUT", &uri, &ct, manifest.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 201 {
        return Err(format!("manifest push: {}", r.status));
    }
    Ok(Image {
        tag: tag.to_owned(),
        manifest: Digest::sha256(manifest.as_bytes()),
        blobs,
    })
}

/// GET `path` and check the body against `want`.
async fn pull(c: &mut Conn, path: &str, want: &Digest) -> Result<(), String> {
    let r = c
        .request("GET", path, &[], b"")
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
        let requests = match x % 20 {
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
                push(&mut c, &format!("c{k}-{}", n % 4), &layer).await?;
                4
            }
        };
        let us = start.elapsed().as_micros() as u32 / requests;
        lat.extend(std::iter::repeat_n(us, requests as usize));
    }
    Ok(lat)
}

/// Peak resident memory of `pid`, in KiB. Panics if it cannot be read: a 0 would pass.
fn peak_rss(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {path}"))
}

/// The peak RSS the load may reach, in KiB (VmHWM's unit).
const MAX_RSS_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_without_errors() {
    let (secs, clients) = (env("BERTH_LOAD_SECS", 5), env("BERTH_LOAD_CLIENTS", 32));
    let dir = tempfile::tempdir().unwrap();
    let root = format!("--root={}", dir.path().join("root").display());
    let (mut child, addr) = match std::env::var("BERTH_LOAD_BIN") {
        Ok(bin) => crate::server::spawn_berth_bin(&bin, &[&root], dir.path()),
        Err(_) => spawn_berth(&[&root], dir.path()),
    };
    let mut c = Conn::connect(addr).await.unwrap();
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let layer = bytes(1024 << (i % 11), i as u64);
        images.push(push(&mut c, &format!("v{i}"), &layer).await.unwrap());
    }
    let images = Arc::new(images);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut set = JoinSet::new();
    for k in 0..clients {
        set.spawn(client(addr, k, images.clone(), end));
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r.unwrap().expect("no errors under load"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rss = peak_rss(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "load: {clients} clients, {secs}s: {} requests, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, \
         peak RSS {} MiB",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        rss / 1024
    );
    assert!(!lat.is_empty());
    // Memory stays bounded: blobs are streamed, never held whole per request.
    assert!(rss > 0, "peak RSS read as 0");
    assert!(
        rss < MAX_RSS_KIB,
        "peak RSS {} MiB, over {} MiB",
        rss / 1024,
        MAX_RSS_KIB / 1024
    );
}
