//! Micro-benchmarks of the core: `Registry::handle` answering a manifest GET on the memory
//! store, routing, and SHA-256 throughput (sha2 as compiled; the native server's AVX2 block
//! function is measured by `cargo bench -p berth-server`).
//!
//!   cargo bench -p berth --bench core
//!
//! Figures vary with the machine's load; compare runs of the same moment.

use std::hint::black_box;

use berth::testing::ManualEnv;
use berth::{Body, Config, Digest, MemoryStore, Registry};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Method, Request, StatusCode};
use sha2::Digest as _;

fn request(method: Method, uri: &str, headers: &[(&str, &str)], body: Body) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body).expect("a valid request")
}

/// A registry holding one image (config, one layer, manifest tagged `v1`); the manifest digest.
fn registry(rt: &tokio::runtime::Runtime) -> (Registry<MemoryStore>, Digest) {
    let reg = Registry::new(
        MemoryStore::new(),
        ManualEnv::at(1_700_000_000),
        Config::default(),
    );
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let layer = Bytes::from(vec![7u8; 4096]);
    for blob in [&config, &layer] {
        let d = Digest::sha256(blob);
        let uri = format!("/v2/bench/app/blobs/uploads/?digest={d}");
        let resp =
            rt.block_on(reg.handle(request(Method::POST, &uri, &[], Body::Full(blob.clone()))));
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::sha256(&config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": Digest::sha256(&layer).to_string(),
            "size": layer.len(),
        }],
    })
    .to_string();
    let digest = Digest::sha256(manifest.as_bytes());
    let resp = rt.block_on(reg.handle(request(
        Method::PUT,
        "/v2/bench/app/manifests/v1",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(manifest),
    )));
    assert_eq!(resp.status(), StatusCode::CREATED);
    (reg, digest)
}

fn handle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let (reg, digest) = registry(&rt);
    let accept = (
        "accept",
        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
    );
    let mut group = c.benchmark_group("handle");
    for (name, method, uri) in [
        (
            "manifest GET by tag",
            Method::GET,
            "/v2/bench/app/manifests/v1".to_owned(),
        ),
        (
            "manifest GET by digest",
            Method::GET,
            format!("/v2/bench/app/manifests/{digest}"),
        ),
        (
            "manifest HEAD by tag",
            Method::HEAD,
            "/v2/bench/app/manifests/v1".to_owned(),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let resp =
                    rt.block_on(reg.handle(request(method.clone(), &uri, &[accept], Body::Empty)));
                assert_eq!(resp.status(), StatusCode::OK);
                black_box(resp)
            })
        });
    }
    group.finish();
}

fn route(c: &mut Criterion) {
    let paths = [
        "/v2/",
        "/v2/library/alpine/manifests/latest",
        "/v2/a/b/c/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "/v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef",
        "/v2/team/app/tags/list",
        "/v2/manifests/blobs/manifests/x",
    ];
    c.bench_function("route::parse (6 paths)", |b| {
        b.iter(|| {
            for p in paths {
                black_box(berth::route::parse(black_box(p)));
            }
        })
    });
}

fn hashing(c: &mut Criterion) {
    let data = vec![0x5au8; 1 << 20];
    let mut group = c.benchmark_group("sha256 1 MiB");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("sha2 (as compiled: SHA-NI or portable)", |b| {
        b.iter(|| black_box(sha2::Sha256::digest(black_box(&data))))
    });
    group.finish();
}

criterion_group!(benches, handle, route, hashing);
criterion_main!(benches);
