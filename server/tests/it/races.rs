//! Many clients at once on the same blob, the same tag, and pulls racing deletes, on the
//! filesystem store over a real socket: no 5xx, no corrupt body, tags end on a written value.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use berth::Digest;
use tokio::task::JoinSet;

use crate::hostile::start_with;
use crate::server::client::{Conn, Reply, with_digest};

const CLIENTS: usize = 16;
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn push_blob(c: &mut Conn, data: &[u8], chunked: bool) -> Reply {
    let d = Digest::sha256(data).to_string();
    if !chunked {
        let uri = format!("/v2/r/blobs/uploads/?digest={d}");
        return c.request("POST", &uri, &[], data).await.unwrap();
    }
    let r = c
        .request("POST", "/v2/r/blobs/uploads/", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap().to_owned();
    let half = data.len() / 2;
    let r = c
        .request("PATCH", &location, &[], &data[..half])
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    c.request("PUT", &with_digest(&location, &d), &[], &data[half..])
        .await
        .unwrap()
}

fn manifest(config: &Digest, size: usize, k: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{size}}},"layers":[],"annotations":{{"k":"{k}"}}}}"#
    )
}

async fn get_checked(c: &mut Conn, path: &str, want: &Digest) -> u16 {
    let r = c.request("GET", path, &[], b"").await.unwrap();
    match r.status {
        200 => assert_eq!(&Digest::sha256(&r.body), want, "{path} reads whole"),
        404 => {}
        s => panic!("GET {path}: {s} {}", String::from_utf8_lossy(&r.body)),
    }
    r.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_blob_from_many_clients() {
    // Long limits: readers keep their connections idle while writers run.
    let s = start_with(Duration::from_secs(600)).await;
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256(&data);
    let mut set = JoinSet::new();
    for k in 0..CLIENTS {
        let (addr, data) = (s.addr, data.clone());
        set.spawn(async move {
            let mut c = Conn::connect(addr).await.unwrap();
            push_blob(&mut c, &data, k % 2 == 1).await.status
        });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    let mut c = Conn::connect(s.addr).await.unwrap();
    assert_eq!(
        get_checked(&mut c, &format!("/v2/r/blobs/{d}"), &d).await,
        200
    );
    let blobs: Vec<_> = std::fs::read_dir(s.root().join("tmp")).unwrap().collect();
    assert!(blobs.is_empty(), "no temporary files left: {blobs:?}");
}

async fn put_manifest(addr: SocketAddr, tag: &str, body: &str) -> u16 {
    let mut c = Conn::connect(addr).await.unwrap();
    let uri = format!("/v2/r/manifests/{tag}");
    let r = c
        .request("PUT", &uri, &[("content-type", MANIFEST)], body.as_bytes())
        .await
        .unwrap();
    r.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tag_moved_by_many_clients() {
    // Long limits: readers keep their connections idle while writers run.
    let s = start_with(Duration::from_secs(600)).await;
    let config = b"{}";
    let cd = Digest::sha256(config);
    let mut c = Conn::connect(s.addr).await.unwrap();
    assert_eq!(push_blob(&mut c, config, false).await.status, 201);
    let bodies: Vec<String> = (0..CLIENTS).map(|k| manifest(&cd, 2, k)).collect();
    let written: HashSet<Digest> = bodies
        .iter()
        .map(|b| Digest::sha256(b.as_bytes()))
        .collect();
    for _round in 0..3 {
        let mut set = JoinSet::new();
        for body in bodies.clone() {
            let addr = s.addr;
            set.spawn(async move {
                let mut last = 0;
                for _ in 0..4 {
                    last = put_manifest(addr, "moving", &body).await;
                    assert_eq!(last, 201);
                }
                last
            });
        }
        // Readers meanwhile always see one whole manifest that was written.
        for _ in 0..20 {
            let r = c
                .request("GET", "/v2/r/manifests/moving", &[], b"")
                .await
                .unwrap();
            assert!(matches!(r.status, 200 | 404), "{}", r.status);
            if r.status == 200 {
                let d = Digest::sha256(&r.body);
                assert!(written.contains(&d));
                assert_eq!(
                    r.header("docker-content-digest"),
                    Some(d.to_string().as_str())
                );
            }
        }
        while let Some(status) = set.join_next().await {
            assert_eq!(status.unwrap(), 201);
        }
        let r = c
            .request("GET", "/v2/r/manifests/moving", &[], b"")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(
            written.contains(&Digest::sha256(&r.body)),
            "the tag ends on a written value"
        );
    }
    let r = c.request("GET", "/v2/r/tags/list", &[], b"").await.unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["moving"]));
}

async fn push_image(c: &mut Conn, layer: &[u8], config: &[u8], manifest: &str) {
    assert_eq!(push_blob(c, layer, false).await.status, 201);
    assert_eq!(push_blob(c, config, false).await.status, 201);
    let ct = [("content-type", MANIFEST)];
    let r = c
        .request("PUT", "/v2/r/manifests/v1", &ct, manifest.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_while_others_pull() {
    // Long limits: readers keep their connections idle while writers run.
    let s = start_with(Duration::from_secs(600)).await;
    let layer: Vec<u8> = (0..1u32 << 20).map(|i| (i * 13 % 256) as u8).collect();
    let ld = Digest::sha256(&layer);
    let config = b"{\"os\":\"linux\"}";
    let cd = Digest::sha256(config);
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let md = Digest::sha256(body.as_bytes());
    let mut c = Conn::connect(s.addr).await.unwrap();
    push_image(&mut c, &layer, config, &body).await;

    let mut pullers = JoinSet::new();
    for _ in 0..8 {
        let (addr, ld, md) = (s.addr, ld.clone(), md.clone());
        pullers.spawn(async move {
            let mut c = Conn::connect(addr).await.unwrap();
            let mut seen = 0;
            for _ in 0..40 {
                seen += get_checked(&mut c, &format!("/v2/r/blobs/{ld}"), &ld).await / 200;
                get_checked(&mut c, &format!("/v2/r/manifests/{md}"), &md).await;
                let r = c
                    .request("GET", "/v2/r/manifests/v1", &[], b"")
                    .await
                    .unwrap();
                assert!(matches!(r.status, 200 | 404), "{}", r.status);
                if r.status == 200 {
                    assert_eq!(Digest::sha256(&r.body), md);
                }
            }
            seen
        });
    }
    for _ in 0..10 {
        for path in [format!("/v2/r/manifests/{md}"), format!("/v2/r/blobs/{ld}")] {
            let r = c.request("DELETE", &path, &[], b"").await.unwrap();
            assert!(matches!(r.status, 202 | 404), "DELETE {path}: {}", r.status);
        }
        push_image(&mut c, &layer, config, &body).await;
    }
    while let Some(seen) = pullers.join_next().await {
        seen.unwrap();
    }
    // Pushed last: everything reads back.
    assert_eq!(
        get_checked(&mut c, &format!("/v2/r/blobs/{ld}"), &ld).await,
        200
    );
    assert_eq!(get_checked(&mut c, "/v2/r/manifests/v1", &md).await, 200);
}
