//! Issue 16: the review's findings on the core, each with its test.

use berth::{Config, Digest};
use http::Method;
use serde_json::json;

use crate::core::*;

#[tokio::test]
async fn nosniff_everywhere_and_a_sandbox_on_content() {
    let r = Reg::new();
    let (d, _) = r.push_image("app", "v1", "x").await;
    let layer = r.push_blob("app", b"bytes").await;
    for uri in [
        "/v2/".to_owned(),
        "/v2/app/manifests/nope".to_owned(),
        "/v2/app/tags/list".to_owned(),
        format!("/v2/app/manifests/{d}"),
        format!("/v2/app/blobs/{layer}"),
    ] {
        let resp = r.get(&uri).await;
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{uri}"
        );
    }
    for uri in [
        format!("/v2/app/manifests/{d}"),
        format!("/v2/app/blobs/{layer}"),
    ] {
        let resp = r.get(&uri).await;
        let csp = resp.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("sandbox"),
            "{uri}: {csp}"
        );
    }
}

#[tokio::test]
async fn only_manifest_media_types_are_manifests() {
    let r = Reg::new();
    let config = r.push_blob("app", b"{}").await;
    let page = json!({"schemaVersion": 2,
        "config": desc("application/vnd.oci.image.config.v1+json", &config, 2),
        "layers": [], "x": "<script>alert(1)</script>"});
    for t in [
        "text/html",
        "application/json",
        "application/vnd.example.thing",
    ] {
        r.put_manifest("app", "page", t, &page)
            .await
            .expect_error(400, "MANIFEST_INVALID");
    }
    let mut typed = page.clone();
    typed["mediaType"] = json!("text/html");
    r.put_manifest("app", "page", OCI_MANIFEST, &typed)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    r.get("/v2/app/manifests/page").await.expect(404);
    // Artifacts are OCI image manifests with an artifactType: accepted.
    let mut artifact = page.clone();
    artifact["mediaType"] = json!(OCI_MANIFEST);
    artifact["artifactType"] = json!("application/vnd.example.sbom");
    r.put_manifest("app", "sbom", OCI_MANIFEST, &artifact)
        .await
        .expect(201);
}

#[tokio::test]
async fn image_manifests_need_layers() {
    let r = Reg::new();
    let config = r.push_blob("app", b"{}").await;
    let c = desc("application/vnd.oci.image.config.v1+json", &config, 2);
    for m in [
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c}),
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c, "layers": null}),
    ] {
        r.put_manifest("app", "v1", OCI_MANIFEST, &m)
            .await
            .expect_error(400, "MANIFEST_INVALID");
    }
}

#[tokio::test]
async fn descriptor_sizes_must_match_the_blobs() {
    let r = Reg::new();
    let config = r.push_blob("app", b"{}").await;
    let layer = r.push_blob("app", b"layer").await;
    let m = |size: u64| {
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", &config, 2),
            "layers": [desc("application/vnd.oci.image.layer.v1.tar", &layer, size)]})
    };
    let resp = r.put_manifest("app", "v1", OCI_MANIFEST, &m(4)).await;
    resp.expect_error(400, "MANIFEST_INVALID");
    r.put_manifest("app", "v1", OCI_MANIFEST, &m(5))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_bad_n_is_a_pagination_error() {
    let r = Reg::new();
    r.push_image("app", "v1", "x").await;
    for uri in [
        "/v2/app/tags/list?n=-1",
        "/v2/app/tags/list?n=x",
        "/v2/_catalog?n=1.5",
    ] {
        r.get(uri)
            .await
            .expect_error(400, "PAGINATION_NUMBER_INVALID");
    }
}

#[tokio::test]
async fn tag_parameters_are_capped() {
    let r = Reg::new();
    let (_, bytes) = r.push_image("app", "v1", "x").await;
    let d = Digest::sha256(&bytes);
    let query = |n: usize| {
        (0..n)
            .map(|i| format!("tag=t{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let ct = [("content-type", OCI_MANIFEST)];
    let uri = |n: usize| format!("/v2/app/manifests/{d}?{}", query(n));
    let ok = r.send(Method::PUT, &uri(10), &ct, bytes.clone()).await;
    ok.expect(201);
    assert_eq!(ok.headers.get_all("oci-tag").iter().count(), 10);
    r.send(Method::PUT, &uri(100), &ct, bytes.clone())
        .await
        .expect(201);
    r.send(Method::PUT, &uri(101), &ct, bytes.clone())
        .await
        .expect(414);
}

#[tokio::test]
async fn referrers_come_in_pages() {
    let r = Reg::with(Config {
        max_page_size: 2,
        ..Config::default()
    });
    let (subject, sb) = r.push_image("a", "v1", "x").await;
    let config = r.push_blob("a", b"{}").await;
    let mut all = Vec::new();
    for i in 0..5 {
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": if i % 2 == 0 { "application/vnd.example.sig" } else { "application/vnd.example.sbom" },
            "config": desc("application/vnd.oci.empty.v1+json", &config, 2),
            "layers": [], "subject": desc(OCI_MANIFEST, &subject, sb.len() as u64),
            "annotations": {"i": i.to_string()}});
        r.put_manifest("a", &format!("r{i}"), OCI_MANIFEST, &m)
            .await
            .expect(201);
        all.push(Digest::sha256(&serde_json::to_vec(&m).unwrap()).to_string());
    }
    let walk = |first: String| {
        let r = &r;
        async move {
            let mut seen = Vec::new();
            let mut next = Some(first);
            while let Some(uri) = next.take() {
                let page = r.get(&uri).await;
                page.expect(200);
                let m = page.json()["manifests"].as_array().unwrap().clone();
                assert!(m.len() <= 2, "a page holds at most the page size");
                seen.extend(m.iter().map(|x| x["digest"].as_str().unwrap().to_owned()));
                next = page.header("link").map(|l| {
                    l.trim_start_matches('<')
                        .split('>')
                        .next()
                        .unwrap()
                        .to_owned()
                });
            }
            seen.sort();
            seen
        }
    };
    all.sort();
    assert_eq!(walk(format!("/v2/a/referrers/{subject}")).await, all);
    // The filter carries over to the next pages.
    let sigs = walk(format!(
        "/v2/a/referrers/{subject}?artifactType=application/vnd.example.sig"
    ))
    .await;
    assert_eq!(sigs.len(), 3);
}

#[tokio::test]
async fn delete_by_digest_finds_tags_past_the_first_page() {
    let r = Reg::new();
    let (d, bytes) = r.push_image("app", "t0000", "x").await;
    let (other, _) = r.push_image("app", "zz", "y").await;
    for i in 1..1500 {
        r.send(
            Method::PUT,
            &format!("/v2/app/manifests/t{i:04}"),
            &[("content-type", OCI_MANIFEST)],
            bytes.clone(),
        )
        .await
        .expect(201);
    }
    r.delete(&format!("/v2/app/manifests/{d}"))
        .await
        .expect(202);
    let tags = r.get("/v2/app/tags/list").await.json()["tags"].clone();
    assert_eq!(tags, json!(["zz"]));
    r.get(&format!("/v2/app/manifests/{other}"))
        .await
        .expect(200);
}

/// `max_blob_size`: a blob past it is refused with 413 SIZE_INVALID, whether its length is
/// announced (refused before a byte is read) or only found while it streams, monolithic or in
/// chunks; nothing of it is kept, and a blob at the limit passes.
#[tokio::test]
async fn blobs_past_the_size_limit_are_refused() {
    let r = Reg::with(Config {
        max_blob_size: Some(1000),
        ..Config::default()
    });
    let ok = vec![7u8; 1000];
    r.push_blob("app", &ok).await;
    let big = vec![8u8; 1001];
    let d = Digest::sha256(&big);
    let post = format!("/v2/app/blobs/uploads/?digest={d}");
    r.send(
        Method::POST,
        &post,
        &[("content-length", "1001")],
        big.clone(),
    )
    .await
    .expect_error(413, "SIZE_INVALID");
    // No Content-Length: found while it streams.
    let stream = futures_util::stream::iter(
        big.chunks(300)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    r.send(Method::POST, &post, &[], berth::Body::stream(stream))
        .await
        .expect_error(413, "SIZE_INVALID");
    r.head(&format!("/v2/app/blobs/{d}")).await.expect(404);
    // In chunks: the second would end past the limit.
    let loc = r.location("app").await;
    let resp = r
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "0-599"), ("content-length", "600")],
            big[..600].to_vec(),
        )
        .await;
    resp.expect(202);
    let loc = resp.header("location").unwrap().to_owned();
    r.send(
        Method::PATCH,
        &loc,
        &[("content-range", "600-1000"), ("content-length", "401")],
        big[600..].to_vec(),
    )
    .await
    .expect_error(413, "SIZE_INVALID");
    // The session goes with it (that blob can never fit). A closing PUT streaming past it:
    let loc = r.location("app").await;
    let resp = r
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "0-599"), ("content-length", "600")],
            big[..600].to_vec(),
        )
        .await;
    let loc = resp.header("location").unwrap().to_owned();
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
        bytes::Bytes::copy_from_slice(&big[600..]),
    )]);
    r.send(
        Method::PUT,
        &format!(
            "{loc}{}digest={d}",
            if loc.contains('?') { '&' } else { '?' }
        ),
        &[],
        berth::Body::stream(stream),
    )
    .await
    .expect_error(413, "SIZE_INVALID");
    r.head(&format!("/v2/app/blobs/{d}")).await.expect(404);
}
