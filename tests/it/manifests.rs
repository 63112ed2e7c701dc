//! end-3, end-7, end-9 and referrers (end-12), in-process.

use berth::{Body, Config, Digest};
use http::Method;
use serde_json::json;

use crate::core::*;

#[tokio::test]
async fn image_by_tag_and_digest_byte_for_byte() {
    let r = Reg::new();
    let config = r.push_blob("app", b"{}").await;
    let layer = r.push_blob("app", b"layer").await;
    // Odd spacing and key order and an unknown field: the bytes must come back unchanged.
    let text = format!(
        "{{ \"schemaVersion\": 2, \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"size\":2,\"digest\":\"{config}\"}},\n  \"layers\": [{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{layer}\",\"size\":5,\"urls\":[],\"x-unknown\":1}}], \"annotations\": {{\"z\":\"1\",\"a\":\"2\"}} }}"
    );
    let d = Digest::sha256(text.as_bytes());
    let resp = r
        .send(
            Method::PUT,
            "/v2/app/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            text.clone(),
        )
        .await;
    resp.expect(201);
    assert_eq!(
        resp.header("location"),
        Some(format!("/v2/app/manifests/{d}").as_str())
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(d.to_string().as_str())
    );
    for reference in ["v1".to_owned(), d.to_string()] {
        let got = r.get(&format!("/v2/app/manifests/{reference}")).await;
        got.expect(200);
        assert_eq!(got.body, text.as_bytes());
        assert_eq!(got.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            got.header("docker-content-digest"),
            Some(d.to_string().as_str())
        );
        assert_eq!(
            got.header("content-length"),
            Some(text.len().to_string().as_str())
        );
        let head = r.head(&format!("/v2/app/manifests/{reference}")).await;
        head.expect(200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(text.len().to_string().as_str())
        );
        assert_eq!(head.header("content-type"), Some(OCI_MANIFEST));
    }
    // A manifest can be fetched as a blob of its repository too.
    r.get(&format!("/v2/app/blobs/{d}")).await.expect(200);
}

#[tokio::test]
async fn put_by_digest_must_match() {
    let r = Reg::new();
    let config = r.push_blob("a", b"{}").await;
    let m = image_manifest(&config, &[], None, None);
    let bytes = serde_json::to_vec(&m).unwrap();
    let d = Digest::sha256(&bytes);
    r.put_manifest("a", &d.to_string(), OCI_MANIFEST, &m)
        .await
        .expect(201);
    r.get(&format!("/v2/a/manifests/{d}")).await.expect(200);
    let wrong = Digest::sha256(b"other");
    r.put_manifest("a", &wrong.to_string(), OCI_MANIFEST, &m)
        .await
        .expect_error(400, "DIGEST_INVALID");
    r.get(&format!("/v2/a/manifests/{wrong}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // sha512 by digest.
    let d512 = Digest::of(berth::Algorithm::Sha512, &bytes);
    r.put_manifest("a", &d512.to_string(), OCI_MANIFEST, &m)
        .await
        .expect(201);
    assert_eq!(r.get(&format!("/v2/a/manifests/{d512}")).await.body, bytes);
}

#[tokio::test]
async fn several_tags_at_once() {
    let r = Reg::new();
    let config = r.push_blob("a", b"{}").await;
    let m = image_manifest(&config, &[], None, None);
    let d = Digest::sha256(&serde_json::to_vec(&m).unwrap());
    let resp = r
        .put_manifest(
            "a",
            &format!("{d}?tag=v1&tag=v1.0&tag=latest"),
            OCI_MANIFEST,
            &m,
        )
        .await;
    resp.expect(201);
    let tags: Vec<_> = resp
        .headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags, ["v1", "v1.0", "latest"]);
    for t in ["v1", "v1.0", "latest"] {
        assert_eq!(
            r.head(&format!("/v2/a/manifests/{t}"))
                .await
                .header("docker-content-digest"),
            Some(d.to_string().as_str())
        );
    }
    r.put_manifest("a", &format!("{d}?tag=bad/tag"), OCI_MANIFEST, &m)
        .await
        .expect_error(400, "MANIFEST_INVALID");
}

#[tokio::test]
async fn referenced_content_must_exist() {
    let r = Reg::new();
    let config = r.push_blob("a", b"{}").await;
    let missing = Digest::sha256(b"never pushed");
    let m = image_manifest(&config, &[&missing], None, None);
    r.put_manifest("a", "v1", OCI_MANIFEST, &m)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    let m = image_manifest(&missing, &[], None, None);
    r.put_manifest("a", "v1", OCI_MANIFEST, &m)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // A blob in another repository does not count.
    let elsewhere = r.push_blob("b", b"elsewhere").await;
    let m = image_manifest(&config, &[&elsewhere], None, None);
    r.put_manifest("a", "v1", OCI_MANIFEST, &m)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    r.get("/v2/a/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // Non-distributable layers and the subject need not be present.
    let mut m = image_manifest(&config, &[], Some(desc(OCI_MANIFEST, &missing, 10)), None);
    m["layers"] = json!([{
        "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "digest": missing.to_string(), "size": 5, "urls": ["https://example.com/layer"]
    }]);
    r.put_manifest("a", "v2", OCI_MANIFEST, &m)
        .await
        .expect(201);
}

#[tokio::test]
async fn indexes_nested_and_docker_types() {
    let r = Reg::new();
    let (amd, amd_bytes) = r.push_image("multi", "amd64", "amd").await;
    let (arm, arm_bytes) = r.push_image("multi", "arm64", "arm").await;
    let plat = |d: &Digest, n: usize, arch: &str| {
        let mut x = desc(OCI_MANIFEST, d, n as u64);
        x["platform"] = json!({"os": "linux", "architecture": arch});
        x
    };
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [plat(&amd, amd_bytes.len(), "amd64"), plat(&arm, arm_bytes.len(), "arm64")]});
    let resp = r.put_manifest("multi", "latest", OCI_INDEX, &index).await;
    resp.expect(201);
    let index_digest: Digest = resp
        .header("docker-content-digest")
        .unwrap()
        .parse()
        .unwrap();
    let index_size = serde_json::to_vec(&index).unwrap().len() as u64;
    assert_eq!(
        r.get("/v2/multi/manifests/latest")
            .await
            .header("content-type"),
        Some(OCI_INDEX)
    );
    // An index of indexes.
    let nested = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(OCI_INDEX, &index_digest, index_size)]});
    r.put_manifest("multi", "nested", OCI_INDEX, &nested)
        .await
        .expect(201);
    // A child that is not in the repository.
    let missing = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(OCI_MANIFEST, &Digest::sha256(b"no"), 1)]});
    r.put_manifest("multi", "broken", OCI_INDEX, &missing)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");

    // Docker schema 2 and manifest list.
    let config = r.push_blob("docker", b"{\"architecture\":\"amd64\"}").await;
    let layer = r.push_blob("docker", b"docker layer").await;
    let m = json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": desc("application/vnd.docker.container.image.v1+json", &config, 24),
        "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", &layer, 12)]});
    let resp = r.put_manifest("docker", "v1", DOCKER_MANIFEST, &m).await;
    resp.expect(201);
    let md: Digest = resp
        .header("docker-content-digest")
        .unwrap()
        .parse()
        .unwrap();
    let list = json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [desc(DOCKER_MANIFEST, &md, serde_json::to_vec(&m).unwrap().len() as u64)]});
    r.put_manifest("docker", "list", DOCKER_LIST, &list)
        .await
        .expect(201);
    assert_eq!(
        r.get("/v2/docker/manifests/list")
            .await
            .header("content-type"),
        Some(DOCKER_LIST)
    );
    assert_eq!(
        r.get("/v2/docker/manifests/v1")
            .await
            .header("content-type"),
        Some(DOCKER_MANIFEST)
    );
}

#[tokio::test]
async fn artifacts() {
    let r = Reg::new();
    let empty = r.push_blob("art", b"{}").await;
    let file = r.push_blob("art", b"sbom contents").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": desc("application/vnd.oci.empty.v1+json", &empty, 2),
        "layers": [desc("application/spdx+json", &file, 13)]});
    r.put_manifest("art", "sbom", OCI_MANIFEST, &m)
        .await
        .expect(201);
    r.get("/v2/art/manifests/sbom").await.expect(200);
}

#[tokio::test]
async fn invalid_manifests() {
    let r = Reg::new();
    let cases: &[(&str, &str)] = &[
        ("not json", OCI_MANIFEST),
        ("{}", OCI_MANIFEST),
        (
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
            OCI_INDEX,
        ),
        (
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:1","size":1},"layers":[]}"#,
            OCI_MANIFEST,
        ),
    ];
    for (body, ct) in cases {
        r.send(
            Method::PUT,
            "/v2/a/manifests/v1",
            &[("content-type", ct)],
            body.to_string(),
        )
        .await
        .expect_error(400, "MANIFEST_INVALID");
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    r.send(
        Method::PUT,
        "/v2/a/manifests/v1",
        &[("content-type", OCI_MANIFEST)],
        deep,
    )
    .await
    .expect_error(400, "MANIFEST_INVALID");
    // Content-Type disagreeing with mediaType.
    let config = r.push_blob("a", b"{}").await;
    let m = image_manifest(&config, &[], None, None);
    r.put_manifest("a", "v1", OCI_INDEX, &m)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    r.put_manifest("a", "bad..tag/", OCI_MANIFEST, &m)
        .await
        .expect(404);
    r.put_manifest("a", ".bad", OCI_MANIFEST, &m)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    r.get("/v2/a/manifests/.bad")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    r.get("/v2/a/manifests/sha256:zz")
        .await
        .expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn manifest_size_limit() {
    let r = Reg::new();
    let config = r.push_blob("a", b"{}").await;
    // 4 MiB is accepted by default.
    let mut m = image_manifest(&config, &[], None, None);
    let pad = 4 * 1024 * 1024 - serde_json::to_vec(&m).unwrap().len() - 40;
    m["annotations"] = json!({"pad": "x".repeat(pad)});
    let size = serde_json::to_vec(&m).unwrap().len();
    assert!(size <= 4 << 20 && size > (4 << 20) - 100, "{size}");
    r.put_manifest("a", "big", OCI_MANIFEST, &m)
        .await
        .expect(201);
    // Past the configured limit: 413.
    let small = Reg::with(Config {
        max_manifest_size: 1000,
        ..Config::default()
    });
    let config = small.push_blob("a", b"{}").await;
    let mut m = image_manifest(&config, &[], None, None);
    m["annotations"] = json!({"pad": "x".repeat(2000)});
    small
        .put_manifest("a", "big", OCI_MANIFEST, &m)
        .await
        .expect_error(413, "SIZE_INVALID");
}

#[tokio::test]
async fn tag_moves() {
    let r = Reg::new();
    let (d1, _) = r.push_image("a", "latest", "one").await;
    let (d2, _) = r.push_image("a", "latest", "two").await;
    assert_ne!(d1, d2);
    assert_eq!(
        r.head("/v2/a/manifests/latest")
            .await
            .header("docker-content-digest"),
        Some(d2.to_string().as_str())
    );
    r.get(&format!("/v2/a/manifests/{d1}")).await.expect(200);
}

// ---------------------------------------------------------------- end-9, end-10

#[tokio::test]
async fn delete_tag_removes_only_the_tag() {
    let r = Reg::new();
    let (d, _) = r.push_image("a", "v1", "x").await;
    r.put_manifest(
        "a",
        &format!("{d}?tag=v2"),
        OCI_MANIFEST,
        &serde_json::from_slice(&r.get("/v2/a/manifests/v1").await.body).unwrap(),
    )
    .await;
    r.delete("/v2/a/manifests/v1").await.expect(202);
    r.get("/v2/a/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    r.get("/v2/a/manifests/v2").await.expect(200);
    r.get(&format!("/v2/a/manifests/{d}")).await.expect(200);
    r.delete("/v2/a/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_digest_removes_manifest_tags_and_referrer_entry() {
    let r = Reg::new();
    let (subject, subject_bytes) = r.push_image("a", "v1", "x").await;
    let (other, _) = r.push_image("a", "other", "y").await;
    let config = r.push_blob("a", b"{}").await;
    let sig = image_manifest(
        &config,
        &[],
        Some(desc(OCI_MANIFEST, &subject, subject_bytes.len() as u64)),
        Some("application/vnd.example.sig"),
    );
    let resp = r.put_manifest("a", "sig", OCI_MANIFEST, &sig).await;
    resp.expect(201);
    let sig_digest = resp.header("docker-content-digest").unwrap().to_owned();
    r.put_manifest("a", &format!("{sig_digest}?tag=sig2"), OCI_MANIFEST, &sig)
        .await
        .expect(201);
    assert_eq!(
        r.get(&format!("/v2/a/referrers/{subject}")).await.json()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    r.delete(&format!("/v2/a/manifests/{sig_digest}"))
        .await
        .expect(202);
    r.get(&format!("/v2/a/manifests/{sig_digest}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    r.get("/v2/a/manifests/sig")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    r.get("/v2/a/manifests/sig2")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(
        r.get(&format!("/v2/a/referrers/{subject}")).await.json()["manifests"],
        json!([])
    );
    // Others are untouched.
    r.get("/v2/a/manifests/v1").await.expect(200);
    r.get(&format!("/v2/a/manifests/{other}")).await.expect(200);
    let tags = r.get("/v2/a/tags/list").await.json();
    assert_eq!(tags["tags"], json!(["other", "v1"]));
    r.delete(&format!("/v2/a/manifests/{sig_digest}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_blob() {
    let r = Reg::new();
    let d = r.push_blob("a", b"to delete").await;
    r.push_blob("b", b"to delete").await;
    r.delete(&format!("/v2/a/blobs/{d}")).await.expect(202);
    r.get(&format!("/v2/a/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    r.get(&format!("/v2/b/blobs/{d}")).await.expect(200);
    r.delete(&format!("/v2/a/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    r.delete("/v2/a/blobs/sha256:bad")
        .await
        .expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn deletes_can_be_disabled() {
    let r = Reg::with(Config {
        deletes: false,
        ..Config::default()
    });
    let (d, _) = r.push_image("a", "v1", "x").await;
    r.delete("/v2/a/manifests/v1")
        .await
        .expect_error(405, "UNSUPPORTED");
    r.delete(&format!("/v2/a/manifests/{d}"))
        .await
        .expect_error(405, "UNSUPPORTED");
    let blob = r.push_blob("a", b"b").await;
    r.delete(&format!("/v2/a/blobs/{blob}"))
        .await
        .expect_error(405, "UNSUPPORTED");
    r.get("/v2/a/manifests/v1").await.expect(200);
}

#[tokio::test]
async fn read_only_answers_only_reads() {
    let r = Reg::with(Config {
        read_only: true,
        ..Config::default()
    });
    r.get("/v2/").await.expect(200);
    let d = Digest::sha256(b"x");
    r.send(
        Method::POST,
        &format!("/v2/a/blobs/uploads/?digest={d}"),
        &[],
        &b"x"[..],
    )
    .await
    .expect_error(405, "UNSUPPORTED");
    r.send(Method::PUT, "/v2/a/manifests/v1", &[], Body::Empty)
        .await
        .expect_error(405, "UNSUPPORTED");
    r.delete("/v2/a/manifests/v1")
        .await
        .expect_error(405, "UNSUPPORTED");
    r.get("/v2/a/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

// ---------------------------------------------------------------- end-12

#[tokio::test]
async fn referrers() {
    let r = Reg::new();
    let (subject, sb) = r.push_image("a", "v1", "x").await;
    let empty = r.get(&format!("/v2/a/referrers/{subject}")).await;
    empty.expect(200);
    assert_eq!(empty.header("content-type"), Some(OCI_INDEX));
    assert_eq!(
        empty.json(),
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    );

    let config = r.push_blob("a", b"{}").await;
    let subj = desc(OCI_MANIFEST, &subject, sb.len() as u64);
    let mut sig = image_manifest(
        &config,
        &[],
        Some(subj.clone()),
        Some("application/vnd.example.sig"),
    );
    sig["annotations"] = json!({"org.example.signer": "alice"});
    let resp = r.put_manifest("a", "sig", OCI_MANIFEST, &sig).await;
    resp.expect(201);
    assert_eq!(
        resp.header("oci-subject"),
        Some(subject.to_string().as_str())
    );
    let sig_digest = resp.header("docker-content-digest").unwrap().to_owned();
    // No artifactType: the config's media type stands in.
    let sbom_config = r.push_blob("a", b"{\"sbom\":1}").await;
    let mut sbom = image_manifest(&sbom_config, &[], Some(subj), None);
    sbom["config"]["mediaType"] = json!("application/vnd.example.sbom.config");
    let resp = r.put_manifest("a", "sbom", OCI_MANIFEST, &sbom).await;
    resp.expect(201);
    let sbom_bytes = serde_json::to_vec(&sbom).unwrap();

    let all = r.get(&format!("/v2/a/referrers/{subject}")).await;
    all.expect(200);
    assert!(all.header("oci-filters-applied").is_none());
    let list = all.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let sig_entry = list
        .iter()
        .find(|e| e["digest"] == json!(sig_digest))
        .unwrap();
    assert_eq!(
        sig_entry["artifactType"],
        json!("application/vnd.example.sig")
    );
    assert_eq!(sig_entry["mediaType"], json!(OCI_MANIFEST));
    assert_eq!(
        sig_entry["annotations"],
        json!({"org.example.signer": "alice"})
    );
    assert_eq!(
        sig_entry["size"],
        json!(serde_json::to_vec(&sig).unwrap().len())
    );
    let sbom_entry = list
        .iter()
        .find(|e| e["digest"] == json!(Digest::sha256(&sbom_bytes).to_string()))
        .unwrap();
    assert_eq!(
        sbom_entry["artifactType"],
        json!("application/vnd.example.sbom.config")
    );

    let filtered = r
        .get(&format!(
            "/v2/a/referrers/{subject}?artifactType=application%2Fvnd.example.sig"
        ))
        .await;
    filtered.expect(200);
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    let list = filtered.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], json!(sig_digest));

    // A subject that does not exist (yet) still gets an empty index; a bad digest is a 400.
    r.get(&format!("/v2/a/referrers/{}", Digest::sha256(b"nothing")))
        .await
        .expect(200);
    r.get("/v2/a/referrers/sha256:zz")
        .await
        .expect_error(400, "DIGEST_INVALID");
    r.get("/v2/a/referrers/latest")
        .await
        .expect_error(400, "DIGEST_INVALID");
}

/// Two instances over one store, as on S3: the one that served a manifest keeps its bytes, and
/// still never serves one the other deleted, nor under a tag the other moved.
#[tokio::test]
async fn manifest_cache_never_outlives_the_link() {
    use berth::{MemoryStore, Storage};
    use std::sync::Arc;
    let store = Arc::new(MemoryStore::new());
    let env = Arc::new(berth::testing::ManualEnv::at(1_700_000_000));
    let a = Reg::over(store.clone(), env.clone(), Config::default());
    let b = Reg::over(store.clone(), env.clone(), Config::default());
    let (d, bytes) = a.push_image("app", "v1", "one").await;
    for r in ["v1".to_owned(), d.to_string()] {
        let got = a.get(&format!("/v2/app/manifests/{r}")).await;
        got.expect(200);
        assert_eq!(got.body, bytes);
    }
    // The bytes now come from memory: the store's copy is not read again.
    store.blob_delete(&d).await.unwrap();
    let got = a.get(&format!("/v2/app/manifests/{d}")).await;
    got.expect(200);
    assert_eq!(got.body, bytes);
    assert_eq!(got.header("content-type"), Some(OCI_MANIFEST));

    // Deleted on b: gone on a at once, by digest and by tag.
    b.push_image("app", "v1", "one").await; // bytes back in the store
    b.delete(&format!("/v2/app/manifests/{d}"))
        .await
        .expect(202);
    a.get(&format!("/v2/app/manifests/{d}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    a.get("/v2/app/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // Another repository never sees it through the cache either.
    a.get(&format!("/v2/other/manifests/{d}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");

    // A tag moved on b is seen on a at once.
    let (d1, _) = b.push_image("app", "v1", "one").await;
    assert_eq!(d1, d);
    a.get("/v2/app/manifests/v1").await.expect(200);
    let (d2, bytes2) = b.push_image("app", "v1", "two").await;
    let got = a.get("/v2/app/manifests/v1").await;
    got.expect(200);
    assert_eq!(
        got.header("docker-content-digest"),
        Some(d2.to_string().as_str())
    );
    assert_eq!(got.body, bytes2);
}

/// A store that returns other bytes than the digest names: refused, and nothing kept.
#[tokio::test]
async fn manifest_bytes_that_do_not_match_are_not_served_from_memory() {
    use berth::{MemoryStore, Storage};
    use std::sync::Arc;
    let store = Arc::new(MemoryStore::new());
    let env = Arc::new(berth::testing::ManualEnv::at(1_700_000_000));
    let a = Reg::over(store.clone(), env.clone(), Config::default());
    let (d, _) = a.push_image("app", "v1", "one").await;
    // The memory store takes a plain body as it is: bytes changed behind berth's back.
    store.blob_delete(&d).await.unwrap();
    store
        .blob_put(&d, Body::from(&b"{\"not\":\"it\"}"[..]))
        .await
        .unwrap();
    a.get(&format!("/v2/app/manifests/{d}")).await.expect(500);
    a.get(&format!("/v2/app/manifests/{d}")).await.expect(500);
}
