//! The content policy in process: retention applied by a pass, immutable tags and quotas
//! refused at push time with an OCI error that says why.

use std::sync::Arc;

use berth::gc::ContentPolicy;
use berth::testing::{ManualEnv, clock_of};
use berth::{Config, Digest, MemoryStore, Registry, Storage};
use bytes::Bytes;
use http::Method;
use serde_json::json;

use crate::core::{OCI_INDEX, OCI_MANIFEST, Reg, desc, image_manifest};

const GRACE: u64 = 100;

fn registry(policy: &str) -> Reg {
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    let store = MemoryStore::with_clock(clock_of(&env));
    let config = Config {
        gc_grace: GRACE,
        ..Config::default()
    };
    let policy = ContentPolicy::parse(policy).expect("a policy");
    Reg {
        reg: Registry::new(store, env.clone(), config).with_policy(Arc::new(policy)),
        env,
    }
}

async fn tags(r: &Reg, name: &str) -> Vec<String> {
    let v = r.get(&format!("/v2/{name}/tags/list")).await.json();
    let mut t: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    t.sort();
    t
}

#[tokio::test]
async fn retention_keeps_the_newest_and_drops_the_old_then_their_blobs_go() {
    let r = registry(
        r#"
        [gc]
        untagged = "0s"
        [[repos]]
        match = ["team/**"]
        tags = ["dev-*"]
        keep_newest = 2
        [[repos]]
        match = ["team/**"]
        tags = ["nightly-*"]
        max_age = "1h"
        "#,
    );
    let mut layers = Vec::new();
    for (i, tag) in ["dev-1", "dev-2", "dev-3", "nightly-a", "release"]
        .iter()
        .enumerate()
    {
        r.push_image("team/app", tag, tag).await;
        let m = r.get(&format!("/v2/team/app/manifests/{tag}")).await.json();
        layers.push(m["layers"][0]["digest"].as_str().unwrap().to_owned());
        r.env.advance(10 * (i as u64 + 1));
    }
    r.env.advance(3600);
    r.push_image("team/app", "nightly-b", "nightly-b").await;
    let dry = r.reg.collect_garbage(true).await.unwrap();
    let mut would: Vec<&str> = dry
        .items
        .iter()
        .filter(|i| i.kind == "tag")
        .map(|i| i.name.as_str())
        .collect();
    would.sort();
    assert_eq!(would, ["dev-1", "nightly-a"], "{dry:?}");
    assert!(dry.items.iter().any(|i| i.why.contains("rule 1")));
    assert_eq!(
        tags(&r, "team/app").await.len(),
        6,
        "a dry run changes nothing"
    );

    let report = r.reg.collect_garbage(false).await.unwrap();
    assert_eq!(report.tags_deleted, 2, "{report:?}");
    assert_eq!(
        tags(&r, "team/app").await,
        ["dev-2", "dev-3", "nightly-b", "release"]
    );
    // Their manifests are untagged now and go (untagged = 0s, past the grace); then, a pass
    // later past the grace, their blobs.
    assert_eq!(report.manifests_deleted, 2, "{report:?}");
    r.env.advance(GRACE + 1);
    r.reg.collect_garbage(false).await.unwrap();
    let store = r.reg.store();
    for (i, layer) in layers.iter().enumerate() {
        let d: Digest = layer.parse().unwrap();
        let gone = i == 0 || i == 3;
        assert_eq!(store.blob_head(&d).await.is_err(), gone, "layer {i}");
    }
}

#[tokio::test]
async fn untagged_manifests_go_but_an_index_keeps_its_children_and_referrers_their_subject() {
    let r = registry("[gc]\nuntagged = \"1h\"\norphan_referrers = true\n");
    let (child, child_bytes) = r.push_image("app", "child", "c").await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &child, child_bytes.len() as u64)]});
    r.put_manifest("app", "multi", OCI_INDEX, &index)
        .await
        .expect(201);
    r.delete("/v2/app/manifests/child").await.expect(202);
    let (lonely, _) = r.push_image("app", "lonely", "l").await;
    r.delete("/v2/app/manifests/lonely").await.expect(202);
    // A signature on the child, and one on a manifest that goes.
    let sig_config = r.push_blob("app", b"{}").await;
    let sig = image_manifest(
        &sig_config,
        &[],
        Some(desc(OCI_MANIFEST, &child, 1)),
        Some("sig"),
    );
    r.put_manifest("app", "sig", OCI_MANIFEST, &sig)
        .await
        .expect(201);
    let orphan = image_manifest(
        &sig_config,
        &[],
        Some(desc(OCI_MANIFEST, &lonely, 1)),
        Some("sig"),
    );
    let orphan_digest = Digest::sha256(&serde_json::to_vec(&orphan).unwrap());
    r.put_manifest("app", &orphan_digest.to_string(), OCI_MANIFEST, &orphan)
        .await
        .expect(201);
    r.delete("/v2/app/manifests/sig").await.expect(202);

    r.env.advance(1800);
    let report = r.reg.collect_garbage(false).await.unwrap();
    assert_eq!(
        report.manifests_deleted, 0,
        "younger than untagged: {report:?}"
    );
    r.env.advance(3600);
    let report = r.reg.collect_garbage(false).await.unwrap();
    // lonely, and the signature on it (nothing keeps either: untagged, and then orphaned).
    assert_eq!(
        report.manifests_deleted + report.referrers_deleted,
        2,
        "{report:?}"
    );
    r.get(&format!("/v2/app/manifests/{lonely}"))
        .await
        .expect(404);
    r.get(&format!("/v2/app/manifests/{child}"))
        .await
        .expect(200);
    r.get("/v2/app/manifests/multi").await.expect(200);
    // The child's signature lives (its subject lives); the other's went.
    let refs = r.get(&format!("/v2/app/referrers/{child}")).await.json();
    assert_eq!(refs["manifests"].as_array().unwrap().len(), 1);
    r.get(&format!("/v2/app/manifests/{orphan_digest}"))
        .await
        .expect(404);
    let refs = r.get(&format!("/v2/app/referrers/{lonely}")).await.json();
    assert!(refs["manifests"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn orphan_referrers_go_when_their_subject_is_deleted() {
    let r = registry(
        "[gc]
orphan_referrers = true
",
    );
    let (subject, _) = r.push_image("app", "v1", "s").await;
    let config = r.push_blob("app", b"{}").await;
    let sig = image_manifest(
        &config,
        &[],
        Some(desc(OCI_MANIFEST, &subject, 1)),
        Some("sig"),
    );
    let sig_digest = Digest::sha256(&serde_json::to_vec(&sig).unwrap());
    r.put_manifest("app", &sig_digest.to_string(), OCI_MANIFEST, &sig)
        .await
        .expect(201);
    r.env.advance(GRACE + 1);
    assert_eq!(
        r.reg
            .collect_garbage(false)
            .await
            .unwrap()
            .referrers_deleted,
        0
    );
    r.delete(&format!("/v2/app/manifests/{subject}"))
        .await
        .expect(202);
    let report = r.reg.collect_garbage(false).await.unwrap();
    assert_eq!(report.referrers_deleted, 1, "{report:?}");
    assert_eq!(
        report.manifests_deleted, 0,
        "untagged manifests stay without a rule"
    );
    r.get(&format!("/v2/app/manifests/{sig_digest}"))
        .await
        .expect(404);
}

#[tokio::test]
async fn immutable_tags_refuse_to_move_or_go() {
    let r = registry("[[repos]]\nmatch = [\"**\"]\nimmutable = [\"v*\"]\n");
    let (one, one_bytes) = r.push_image("app", "v1", "one").await;
    // The same digest again is fine.
    r.send(
        Method::PUT,
        "/v2/app/manifests/v1",
        &[("content-type", OCI_MANIFEST)],
        Bytes::from(one_bytes),
    )
    .await
    .expect(201);
    // Another digest under v1 is refused, and says why.
    let config = r.push_blob("app", b"two").await;
    let m = image_manifest(&config, &[], None, None);
    let refused = r.put_manifest("app", "v1", OCI_MANIFEST, &m).await;
    refused.expect_error(403, "DENIED");
    let message = refused.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("immutable") && message.contains(&one.to_string()),
        "{message}"
    );
    // So is ?tag= on a push by digest.
    let two = Digest::sha256(&serde_json::to_vec(&m).unwrap());
    r.put_manifest("app", &format!("{two}?tag=v1"), OCI_MANIFEST, &m)
        .await
        .expect_error(403, "DENIED");
    // Deleting the tag, or its manifest, is refused.
    r.delete("/v2/app/manifests/v1")
        .await
        .expect_error(403, "DENIED");
    r.delete(&format!("/v2/app/manifests/{one}"))
        .await
        .expect_error(403, "DENIED");
    let got = r.get("/v2/app/manifests/v1").await;
    got.expect(200);
    assert_eq!(
        got.header("docker-content-digest"),
        Some(one.to_string().as_str())
    );
    // Mutable tags move as always.
    r.put_manifest("app", "latest", OCI_MANIFEST, &m)
        .await
        .expect(201);
    r.delete("/v2/app/manifests/latest").await.expect(202);
}

#[tokio::test]
async fn quotas_refuse_pushes_past_them_before_the_bytes_are_stored() {
    let r = registry("[[repos]]\nmatch = [\"team/**\"]\nquota = \"1K\"\n");
    r.push_blob("team/a", &[1u8; 600]).await;
    // The second repository of the glob counts towards the same quota.
    let big = [2u8; 600];
    let d = Digest::sha256(&big);
    let refused = r
        .send(
            Method::POST,
            &format!("/v2/team/b/blobs/uploads/?digest={d}"),
            &[("content-length", "600")],
            Bytes::copy_from_slice(&big),
        )
        .await;
    refused.expect_error(403, "DENIED");
    let message = refused.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("quota") && message.contains("1.0 KiB") && message.contains("team/**"),
        "{message}"
    );
    assert!(r.reg.store().blob_head(&d).await.is_err(), "nothing stored");
    // A chunk whose Content-Range would pass the quota is refused before it is read.
    let loc = r.location("team/b").await;
    r.send(
        Method::PATCH,
        &loc,
        &[("content-range", "0-599"), ("content-length", "600")],
        Bytes::copy_from_slice(&big),
    )
    .await
    .expect_error(403, "DENIED");
    // Small pushes still fit; other repositories have no quota.
    r.push_blob("team/b", &[3u8; 100]).await;
    r.push_blob("other", &[4u8; 5000]).await;
    // A chunked upload whose size shows only at the end is refused at the closing PUT.
    let loc = r.location("team/b").await;
    let data = [5u8; 700];
    let d = Digest::sha256(&data);
    let sep = if loc.contains('?') { '&' } else { '?' };
    r.send(Method::PATCH, &loc, &[], Bytes::copy_from_slice(&data))
        .await
        .expect(202);
    r.send(
        Method::PUT,
        &format!("{loc}{sep}digest={d}"),
        &[],
        berth::Body::Empty,
    )
    .await
    .expect_error(403, "DENIED");
    assert!(r.reg.store().blob_head(&d).await.is_err());
}
