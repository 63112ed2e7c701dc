//! An OCI image layout on disk, served read-only beside a writable root through the handler.

use std::path::Path;

use berth::manifest::{OCI_INDEX, OCI_MANIFEST};
use berth::testing::ManualEnv;
use berth::{Body, Config, Digest, Registry};
use berth_server::fs::FsStore;
use berth_server::layout::LayoutStore;
use berth_server::store::NativeStore;
use http::{Method, Request, Response};
use serde_json::{Value, json};

const SBOM: &str = "application/vnd.example.sbom";

/// Write `data` as a blob of the layout; its descriptor.
fn blob(dir: &Path, media_type: &str, data: &[u8]) -> Value {
    let d = Digest::sha256(data);
    let path = dir.join("blobs/sha256").join(d.hex());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    json!({ "mediaType": media_type, "digest": d.to_string(), "size": data.len() })
}

fn image(dir: &Path, arch: &str) -> (Value, Vec<u8>) {
    let config = blob(
        dir,
        "application/vnd.oci.image.config.v1+json",
        format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).as_bytes(),
    );
    let layer = blob(
        dir,
        "application/vnd.oci.image.layer.v1.tar",
        format!("layer for {arch}").as_bytes(),
    );
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    (blob(dir, OCI_MANIFEST, &bytes), bytes)
}

struct Layout {
    amd64: Value,
    amd64_bytes: Vec<u8>,
    arm64: Value,
    index: Value,
    sbom: Value,
}

/// A layout with a tagged image, a tagged two-platform index and an SBOM referring to the image.
fn build(dir: &Path) -> Layout {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (amd64, amd64_bytes) = image(dir, "amd64");
    let (arm64, _) = image(dir, "arm64");
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, arm64] });
    let index = blob(dir, OCI_INDEX, &serde_json::to_vec(&index).unwrap());
    let empty = blob(dir, "application/vnd.oci.empty.v1+json", b"{}");
    let sbom = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM,
        "config": empty, "layers": [empty], "subject": amd64,
        "annotations": { "org.example": "yes" }
    });
    let sbom = blob(dir, OCI_MANIFEST, &serde_json::to_vec(&sbom).unwrap());
    let layout = Layout {
        amd64,
        amd64_bytes,
        arm64,
        index,
        sbom,
    };
    write_index(dir, &layout, &[]);
    layout
}

fn write_index(dir: &Path, l: &Layout, extra_tags: &[&str]) {
    let named = |d: &Value, name: &str| {
        let mut d = d.clone();
        d["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
        d
    };
    let mut manifests = vec![
        named(&l.amd64, "v1"),
        named(&l.index, "example.com/demo:multi"),
        l.sbom.clone(),
    ];
    for t in extra_tags {
        manifests.push(named(&l.amd64, t));
    }
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

async fn registry(dir: &Path) -> Registry<NativeStore> {
    let fs = FsStore::open(dir.join("root")).await.unwrap();
    let layout = LayoutStore::open("demo".parse().unwrap(), dir.join("layout"))
        .await
        .unwrap();
    Registry::new(
        NativeStore::new(fs, vec![layout]),
        ManualEnv::at(1000),
        Config::default(),
    )
}

async fn call(
    reg: &Registry<NativeStore>,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (Response<()>, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = reg.handle(req.body(body).unwrap()).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect(64 << 20).await.unwrap();
    (Response::from_parts(parts, ()), bytes.to_vec())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn digest_of(d: &Value) -> &str {
    d["digest"].as_str().unwrap()
}

#[tokio::test]
async fn serves_tags_manifests_blobs_and_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let l = build(&dir.path().join("layout"));
    let reg = registry(dir.path()).await;

    let (r, body) = call(&reg, Method::GET, "/v2/demo/tags/list", &[], Body::Empty).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(&body),
        json!({ "name": "demo", "tags": ["multi", "v1"] })
    );

    let (r, body) = call(&reg, Method::GET, "/v2/demo/manifests/v1", &[], Body::Empty).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
    assert_eq!(r.headers()["docker-content-digest"], digest_of(&l.amd64));
    assert_eq!(body, l.amd64_bytes);

    let (r, _) = call(
        &reg,
        Method::HEAD,
        "/v2/demo/manifests/multi",
        &[],
        Body::Empty,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    assert_eq!(r.headers()["docker-content-digest"], digest_of(&l.index));

    // A child of the index, reachable by digest only.
    let uri = format!("/v2/demo/manifests/{}", digest_of(&l.arm64));
    let (r, _) = call(&reg, Method::GET, &uri, &[], Body::Empty).await;
    assert_eq!(r.status(), 200);

    let layer = Digest::sha256(b"layer for amd64");
    let uri = format!("/v2/demo/blobs/{layer}");
    let (r, body) = call(
        &reg,
        Method::GET,
        &uri,
        &[("range", "bytes=6-8")],
        Body::Empty,
    )
    .await;
    assert_eq!(r.status(), 206);
    assert_eq!(body, b"for");
    let missing = Digest::sha256(b"not there");
    let (r, _) = call(
        &reg,
        Method::GET,
        &format!("/v2/demo/blobs/{missing}"),
        &[],
        Body::Empty,
    )
    .await;
    assert_eq!(r.status(), 404);

    let uri = format!("/v2/demo/referrers/{}", digest_of(&l.amd64));
    let (r, body) = call(&reg, Method::GET, &uri, &[], Body::Empty).await;
    assert_eq!(r.status(), 200);
    let referrers = json_of(&body);
    assert_eq!(referrers["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(referrers["manifests"][0]["digest"], l.sbom["digest"]);
    assert_eq!(referrers["manifests"][0]["artifactType"], SBOM);
    assert_eq!(
        referrers["manifests"][0]["annotations"]["org.example"],
        "yes"
    );

    // index.json rewritten (an image rebuilt into the layout) is served at once.
    write_index(&dir.path().join("layout"), &l, &["v2"]);
    let (_, body) = call(&reg, Method::GET, "/v2/demo/tags/list", &[], Body::Empty).await;
    assert_eq!(json_of(&body)["tags"], json!(["multi", "v1", "v2"]));
}

#[tokio::test]
async fn refuses_writes_and_sits_beside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let l = build(&dir.path().join("layout"));
    let reg = registry(dir.path()).await;

    let unsupported = |r: &Response<()>, body: &[u8]| {
        assert_eq!(r.status(), 405, "{}", String::from_utf8_lossy(body));
        assert_eq!(json_of(body)["errors"][0]["code"], "UNSUPPORTED");
    };
    let (r, body) = call(
        &reg,
        Method::PUT,
        "/v2/demo/manifests/v9",
        &[("content-type", OCI_MANIFEST)],
        Body::from(l.amd64_bytes.clone()),
    )
    .await;
    unsupported(&r, &body);
    let (r, body) = call(
        &reg,
        Method::POST,
        "/v2/demo/blobs/uploads/",
        &[],
        Body::Empty,
    )
    .await;
    unsupported(&r, &body);
    assert!(
        String::from_utf8_lossy(&body).contains("read-only"),
        "the error says why"
    );
    let (r, body) = call(
        &reg,
        Method::DELETE,
        "/v2/demo/manifests/v1",
        &[],
        Body::Empty,
    )
    .await;
    unsupported(&r, &body);

    // A blob of the layout mounted into a repository of the root, then an image pushed there.
    let layer = Digest::sha256(b"layer for amd64");
    let config = Digest::sha256(br#"{"architecture":"amd64","os":"linux"}"#);
    for d in [&layer, &config] {
        let uri = format!("/v2/mine/blobs/uploads/?mount={d}&from=demo");
        let (r, _) = call(&reg, Method::POST, &uri, &[], Body::Empty).await;
        assert_eq!(r.status(), 201);
    }
    let (r, body) = call(
        &reg,
        Method::PUT,
        "/v2/mine/manifests/latest",
        &[("content-type", OCI_MANIFEST)],
        Body::from(l.amd64_bytes.clone()),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", String::from_utf8_lossy(&body));
    let (r, body) = call(
        &reg,
        Method::GET,
        &format!("/v2/mine/blobs/{layer}"),
        &[],
        Body::Empty,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, b"layer for amd64");

    let (_, body) = call(&reg, Method::GET, "/v2/_catalog", &[], Body::Empty).await;
    assert_eq!(json_of(&body)["repositories"], json!(["demo", "mine"]));
    let (r, body) = call(&reg, Method::GET, "/v2/_catalog?n=1", &[], Body::Empty).await;
    assert_eq!(json_of(&body)["repositories"], json!(["demo"]));
    assert!(r.headers().contains_key("link"));
    let (_, body) = call(
        &reg,
        Method::GET,
        "/v2/_catalog?last=demo",
        &[],
        Body::Empty,
    )
    .await;
    assert_eq!(json_of(&body)["repositories"], json!(["mine"]));
}

#[tokio::test]
async fn the_combined_store_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    build(&dir.path().join("layout"));
    let reg = registry(dir.path()).await;
    berth::storage::contract::run(reg.store(), "native")
        .await
        .unwrap();
}

#[tokio::test]
async fn only_layouts_open() {
    let dir = tempfile::tempdir().unwrap();
    let name: berth::RepoName = "x".parse().unwrap();
    assert!(LayoutStore::open(name.clone(), dir.path()).await.is_err());
    std::fs::write(dir.path().join("oci-layout"), "{}").unwrap();
    std::fs::write(dir.path().join("index.json"), r#"{"manifests":[]}"#).unwrap();
    assert!(LayoutStore::open(name, dir.path()).await.is_err());
}

/// A symlink under `blobs/` that leads out of the layout, and a file whose bytes are not its
/// name, are not there: never served, never mountable into a writable repository.
#[tokio::test]
async fn serves_only_verified_bytes_from_inside_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    build(&layout);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"outside the layout").unwrap();
    let leaked = Digest::sha256(b"outside the layout");
    std::os::unix::fs::symlink(&secret, layout.join("blobs/sha256").join(leaked.hex())).unwrap();
    // Bytes under a digest they do not have.
    let lying = Digest::sha256(b"what the name promises");
    std::fs::write(
        layout.join("blobs/sha256").join(lying.hex()),
        b"something else",
    )
    .unwrap();
    // A symlink that stays inside is fine.
    let inside = blob(&layout, "application/octet-stream", b"linked inside");
    let inside_d = Digest::sha256(b"linked inside");
    let moved = layout.join("blobs/sha256/elsewhere");
    std::fs::rename(layout.join("blobs/sha256").join(inside_d.hex()), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, layout.join("blobs/sha256").join(inside_d.hex())).unwrap();
    let reg = registry(dir.path()).await;

    for d in [&leaked, &lying] {
        for method in [Method::GET, Method::HEAD] {
            let (r, _) = call(
                &reg,
                method,
                &format!("/v2/demo/blobs/{d}"),
                &[],
                Body::Empty,
            )
            .await;
            assert_eq!(r.status(), 404, "{d}");
        }
        let (r, _) = call(
            &reg,
            Method::POST,
            &format!("/v2/mine/blobs/uploads/?mount={d}&from=demo"),
            &[],
            Body::Empty,
        )
        .await;
        assert_ne!(r.status(), 201, "{d} is not mounted");
    }
    let (r, body) = call(
        &reg,
        Method::GET,
        &format!("/v2/demo/blobs/{inside_d}"),
        &[],
        Body::Empty,
    )
    .await;
    assert_eq!(r.status(), 200, "{}", inside["digest"]);
    assert_eq!(body, b"linked inside");
    // Replaced with other bytes after it was verified: checked again.
    std::fs::remove_file(&moved).unwrap();
    std::fs::write(&moved, b"swapped later").unwrap();
    let (r, _) = call(
        &reg,
        Method::GET,
        &format!("/v2/demo/blobs/{inside_d}"),
        &[],
        Body::Empty,
    )
    .await;
    assert_eq!(r.status(), 404);
}
