//! Garbage collection in process: what a pass removes and keeps, and each race of GC.md driven
//! through its interleavings with gates on the store (`berth::testing::gate`), on a clock that
//! only moves when the test says.

use std::sync::Arc;

use berth::gc::Report;
use berth::keys;
use berth::testing::gate::{Gated, Op};
use berth::testing::{ManualEnv, clock_of};
use berth::{Config, Digest, Env, MemoryStore, PutMode, Storage};
use bytes::Bytes;
use serde_json::json;

use crate::core::{OCI_INDEX, OCI_MANIFEST, Reg, desc, image_manifest};

const GRACE: u64 = 100;

type GReg = Reg<Gated<MemoryStore>>;

fn registry() -> GReg {
    let env = Arc::new(ManualEnv::at(1_700_000_000));
    let store = Gated::new(MemoryStore::with_clock(clock_of(&env)));
    let config = Config {
        gc_grace: GRACE,
        ..Config::default()
    };
    Reg::over(store, env, config)
}

fn store(r: &GReg) -> &MemoryStore {
    r.reg.store().inner()
}

async fn exists(r: &GReg, d: &Digest) -> bool {
    store(r).blob_head(d).await.is_ok()
}

async fn pass(r: &GReg) -> Report {
    r.reg.collect_garbage(false).await.expect("a pass")
}

/// An image whose blobs are unreferenced once its manifest is deleted, and old enough to go.
async fn orphaned_blob(r: &GReg, name: &str) -> Digest {
    let b = r
        .push_blob(name, format!("orphan of {name}").as_bytes())
        .await;
    r.env.advance(GRACE + 1);
    b
}

fn manifest_on(config: &Digest, layer: &Digest) -> serde_json::Value {
    image_manifest(config, &[layer], None, None)
}

#[tokio::test]
async fn a_pass_removes_what_nothing_references_and_keeps_the_rest() {
    let r = registry();
    let (kept, _) = r.push_image("app", "v1", "kept").await;
    let (gone, _) = r.push_image("app", "v2", "gone").await;
    let loose = r.push_blob("app", b"never referenced").await;
    r.delete(&format!("/v2/app/manifests/{gone}"))
        .await
        .expect(202);

    // Within the grace, nothing goes.
    let report = pass(&r).await;
    assert_eq!(report.blobs_deleted, 0, "{report:?}");
    assert!(exists(&r, &loose).await);

    r.env.advance(GRACE + 1);
    let report = pass(&r).await;
    // The deleted image's manifest, config and layer, and the loose blob.
    assert_eq!(report.blobs_deleted, 4, "{report:?}");
    assert!(!exists(&r, &loose).await);
    assert!(!exists(&r, &gone).await);
    assert!(exists(&r, &kept).await);
    r.get("/v2/app/manifests/v1").await.expect(200);
    let m = r.get("/v2/app/manifests/v1").await.json();
    for d in [&m["config"]["digest"], &m["layers"][0]["digest"]] {
        r.get(&format!("/v2/app/blobs/{}", d.as_str().unwrap()))
            .await
            .expect(200);
    }
    // The repository's links to the deleted blobs went too.
    r.head(&format!("/v2/app/blobs/{loose}")).await.expect(404);
    assert!(report.links_deleted >= 3, "{report:?}");
    // A second pass finds nothing more.
    assert_eq!(pass(&r).await.blobs_deleted, 0);
}

#[tokio::test]
async fn a_dry_run_lists_and_keeps() {
    let r = registry();
    let loose = r.push_blob("app", b"loose").await;
    r.env.advance(GRACE + 1);
    let report = r.reg.collect_garbage(true).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(report.blobs_deleted, 1);
    assert_eq!(report.bytes_freed, 5);
    assert!(
        report
            .items
            .iter()
            .any(|i| i.kind == "blob" && i.name == loose.to_string()),
        "{report:?}"
    );
    assert!(exists(&r, &loose).await, "a dry run deletes nothing");
    r.head(&format!("/v2/app/blobs/{loose}")).await.expect(200);
}

#[tokio::test]
async fn an_index_keeps_its_children_and_a_blob_shared_by_two_repositories_stays() {
    let r = registry();
    let (child, child_bytes) = r.push_image("multi", "child", "c").await;
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &child, child_bytes.len() as u64)],
    });
    r.put_manifest("multi", "latest", OCI_INDEX, &index)
        .await
        .expect(201);
    r.delete("/v2/multi/manifests/child").await.expect(202);
    // The same layer in another repository, whose image then goes.
    let shared = r.push_blob("other", b"layer of c").await;
    let config = r.push_blob("other", b"other config").await;
    let x = r
        .put_manifest("other", "x", OCI_MANIFEST, &manifest_on(&config, &shared))
        .await;
    x.expect(201);
    let x = x.header("docker-content-digest").unwrap().to_owned();
    r.delete(&format!("/v2/other/manifests/{x}"))
        .await
        .expect(202);
    r.env.advance(GRACE + 1);
    let report = pass(&r).await;
    assert!(exists(&r, &child).await, "the index names its child");
    assert!(
        exists(&r, &shared).await,
        "multi's child still names the layer"
    );
    assert!(!exists(&r, &config).await, "{report:?}");
    r.get(&format!("/v2/multi/manifests/{child}"))
        .await
        .expect(200);
    r.get(&format!("/v2/multi/blobs/{shared}"))
        .await
        .expect(200);
    r.head(&format!("/v2/other/blobs/{shared}"))
        .await
        .expect(404);
}

/// Write a fresh link of `d` into `name` straight into the store, as a request on another
/// instance may have left it a moment ago.
async fn fresh_link(r: &GReg, name: &str, d: &Digest) {
    let link = berth::links::BlobLink {
        at: r.env.now.load(std::sync::atomic::Ordering::SeqCst),
        size: 1,
    };
    store(r)
        .meta_put(
            &keys::blob(&name.parse().unwrap(), d),
            bytes::Bytes::from(link.to_bytes()),
            berth::PutMode::Overwrite,
        )
        .await
        .unwrap();
}

/// Race 1: a client HEADs an old unreferenced blob (200), skips its upload and pushes a
/// manifest naming it while a pass collects it. Interleaving 1a: the pass has read the
/// repository's stale link and is about to delete it when the push lands. The push pins the
/// blob and rewrites the link, so the pass's conditional delete of the link fails, and its
/// sweep finds the pin: manifest and blob stay.
#[tokio::test]
async fn race1a_push_before_the_link_is_dropped_keeps_everything() {
    let r = registry();
    let config = orphaned_blob(&r, "app").await;
    let layer = r.push_blob("app", b"fresh layer").await;
    r.head(&format!("/v2/app/blobs/{config}")).await.expect(200);
    let gate = r
        .reg
        .store()
        .gate(Op::MetaDelete(keys::blob(&"app".parse().unwrap(), &config)));
    let push = async {
        gate.reached().await;
        let push = r
            .put_manifest("app", "v1", OCI_MANIFEST, &manifest_on(&config, &layer))
            .await;
        gate.open();
        push
    };
    let (report, push) = tokio::join!(r.reg.collect_garbage(false), push);
    push.expect(201);
    let report = report.unwrap();
    assert_eq!(report.blobs_deleted, 0, "{report:?}");
    assert_eq!(report.links_deleted, 0, "{report:?}");
    assert_eq!(report.blobs_held, 1, "{report:?}");
    r.get(&format!("/v2/app/blobs/{config}")).await.expect(200);
    // Later passes see the manifest.
    r.env.advance(GRACE + 1);
    assert_eq!(pass(&r).await.blobs_deleted, 0);
    r.get(&format!("/v2/app/blobs/{config}")).await.expect(200);
}

/// Interleaving 1b: the pass has dropped the stale link and is about to mark the blob dying
/// when the push lands: the push is refused (MANIFEST_BLOB_UNKNOWN), the blob goes, and the
/// client pushing it again from the start succeeds.
#[tokio::test]
async fn race1b_push_after_the_link_is_dropped_is_refused() {
    let r = registry();
    let config = orphaned_blob(&r, "app").await;
    let layer = r.push_blob("app", b"fresh layer").await;
    r.head(&format!("/v2/app/blobs/{config}")).await.expect(200);
    let gate = r.reg.store().gate(Op::MetaPut(keys::dying(&config)));
    let push = async {
        gate.reached().await;
        let push = r
            .put_manifest("app", "v1", OCI_MANIFEST, &manifest_on(&config, &layer))
            .await;
        gate.open();
        push
    };
    let (report, push) = tokio::join!(r.reg.collect_garbage(false), push);
    push.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(report.unwrap().blobs_deleted, 1);
    assert!(!exists(&r, &config).await);
    r.push_blob("app", b"orphan of app").await;
    r.put_manifest("app", "v1", OCI_MANIFEST, &manifest_on(&config, &layer))
        .await
        .expect(201);
    r.env.advance(GRACE + 1);
    pass(&r).await;
    r.get(&format!("/v2/app/blobs/{config}")).await.expect(200);
}

/// Race 3: a manifest push whose reference check has passed (blob pinned, no dying mark) is
/// stopped just before it commits while a whole pass runs: the pass finds the pin and the
/// fresh link, and keeps both; the push then commits.
#[tokio::test]
async fn race3_pass_between_check_and_commit_keeps_the_blob() {
    let r = registry();
    let config = orphaned_blob(&r, "app").await;
    let layer = r.push_blob("app", b"fresh layer").await;
    let m = manifest_on(&config, &layer);
    let d = Digest::sha256(&serde_json::to_vec(&m).unwrap());
    let gate = r.reg.store().gate(Op::BlobPut(d.clone()));
    let push = r.put_manifest("app", "v1", OCI_MANIFEST, &m);
    let collect = async {
        gate.reached().await;
        let report = r.reg.collect_garbage(false).await;
        gate.open();
        report
    };
    let (push, report) = tokio::join!(push, collect);
    push.expect(201);
    let report = report.unwrap();
    assert_eq!(report.blobs_held, 1, "{report:?}");
    assert_eq!(report.links_deleted, 0, "{report:?}");
    r.get(&format!("/v2/app/blobs/{config}")).await.expect(200);
    r.env.advance(GRACE + 1);
    assert_eq!(pass(&r).await.blobs_deleted, 0);
}

/// The two halves of the protocol cross: the pass has marked the blob dying and not yet read
/// the pin when a push (over a link another instance just wrote) pins it and finds the mark.
/// Both back off: the push is refused and the pass, seeing the pin, keeps the blob.
#[tokio::test]
async fn race_mark_and_pin_cross_both_back_off() {
    let r = registry();
    let config = orphaned_blob(&r, "app").await;
    let layer = r.push_blob("app", b"fresh layer").await;
    let before_mark = r.reg.store().gate(Op::MetaGet(keys::pin(&config)));
    let after_mark = r.reg.store().gate(Op::MetaGet(keys::pin(&config)));
    let push = async {
        before_mark.reached().await;
        before_mark.open();
        after_mark.reached().await;
        fresh_link(&r, "app", &config).await;
        let push = r
            .put_manifest("app", "v1", OCI_MANIFEST, &manifest_on(&config, &layer))
            .await;
        after_mark.open();
        push
    };
    let (report, push) = tokio::join!(r.reg.collect_garbage(false), push);
    push.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert!(
        push.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("garbage-collected")
    );
    let report = report.unwrap();
    assert_eq!(report.blobs_held, 1, "{report:?}");
    assert!(exists(&r, &config).await);
}

/// The pass has read no fresh pin after its mark and is about to delete the bytes when a push
/// (over a fresh link) arrives: the push finds the mark and is refused, never committing a
/// manifest whose blob then disappears.
#[tokio::test]
async fn race_push_while_the_bytes_are_deleted_is_refused() {
    let r = registry();
    let config = orphaned_blob(&r, "app").await;
    let layer = r.push_blob("app", b"fresh layer").await;
    let gate = r.reg.store().gate(Op::BlobDelete(config.clone()));
    let push = async {
        gate.reached().await;
        fresh_link(&r, "app", &config).await;
        let push = r
            .put_manifest("app", "v1", OCI_MANIFEST, &manifest_on(&config, &layer))
            .await;
        gate.open();
        push
    };
    let (report, push) = tokio::join!(r.reg.collect_garbage(false), push);
    push.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(report.unwrap().blobs_deleted, 1);
    assert!(!exists(&r, &config).await);
    r.get("/v2/app/manifests/v1").await.expect(404);
}

/// Race 2: a mount from a repository whose last manifest was deleted, while a pass collects
/// the blob. Mounting after the dying mark falls back to an upload (202); mounting before it
/// keeps the blob.
#[tokio::test]
async fn race_mount_from_a_repository_losing_its_last_manifest() {
    let r = registry();
    let (m, _) = r.push_image("src", "v1", "mounted").await;
    let doc = r.get("/v2/src/manifests/v1").await.json();
    let layer: Digest = doc["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    r.delete(&format!("/v2/src/manifests/{m}"))
        .await
        .expect(202);
    r.env.advance(GRACE + 1);

    // After the mark: the mount is refused and becomes an upload.
    let gate = r.reg.store().gate(Op::BlobDelete(layer.clone()));
    let mount_uri = format!("/v2/dst/blobs/uploads/?mount={layer}&from=src");
    let collect = async {
        gate.reached().await;
        let mount = r
            .send(http::Method::POST, &mount_uri, &[], berth::Body::Empty)
            .await;
        gate.open();
        mount
    };
    let (report, mount) = tokio::join!(r.reg.collect_garbage(false), collect);
    mount.expect(202);
    assert!(report.unwrap().blobs_deleted >= 1);
    assert!(!exists(&r, &layer).await);

    // Before the pass drops the source's link: the mount pins the blob and wins.
    let (m2, _) = r.push_image("src2", "v1", "mounted2").await;
    let doc = r.get("/v2/src2/manifests/v1").await.json();
    let layer2: Digest = doc["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    r.delete(&format!("/v2/src2/manifests/{m2}"))
        .await
        .expect(202);
    r.env.advance(GRACE + 1);
    let gate = r.reg.store().gate(Op::MetaDelete(keys::blob(
        &"src2".parse().unwrap(),
        &layer2,
    )));
    let mount_uri = format!("/v2/dst2/blobs/uploads/?mount={layer2}&from=src2");
    let collect = async {
        gate.reached().await;
        let mount = r
            .send(http::Method::POST, &mount_uri, &[], berth::Body::Empty)
            .await;
        gate.open();
        mount
    };
    let (report, mount) = tokio::join!(r.reg.collect_garbage(false), collect);
    mount.expect(201);
    assert_eq!(report.unwrap().blobs_held, 1);
    assert!(exists(&r, &layer2).await);
    r.get(&format!("/v2/dst2/blobs/{layer2}")).await.expect(200);
}

/// Race 4: two passes at once (two instances, or two cron invocations), no lock. Whichever
/// marks a blob dying first decides it; the other leaves it alone; nothing referenced goes.
#[tokio::test]
async fn race_two_passes_at_once() {
    let r = registry();
    let (keep, _) = r.push_image("app", "v1", "keep").await;
    let mut loose = Vec::new();
    for i in 0..20 {
        loose.push(r.push_blob("app", format!("loose {i}").as_bytes()).await);
    }
    r.env.advance(GRACE + 1);
    let gate = r.reg.store().gate(Op::BlobDelete(loose[3].clone()));
    let one = r.reg.collect_garbage(false);
    let two = async {
        gate.reached().await;
        // The first pass holds loose[3]'s dying mark; the second runs whole meanwhile.
        let report = r.reg.collect_garbage(false).await;
        gate.open();
        report
    };
    let (one, two) = tokio::join!(one, two);
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.blobs_deleted + two.blobs_deleted, 20, "{one:?} {two:?}");
    assert!(
        two.blobs_held >= 1,
        "the mark held by the first pass: {two:?}"
    );
    for d in &loose {
        assert!(!exists(&r, d).await);
    }
    assert!(exists(&r, &keep).await);
    r.get("/v2/app/manifests/v1").await.expect(200);
    // No dying marks left behind.
    assert!(
        store(&r)
            .meta_list(keys::DYING, Default::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// An upload finishing over a blob a pass is deleting is asked to retry, and keeps its
/// session: retried after the pass, it lands.
#[tokio::test]
async fn an_upload_over_a_dying_blob_retries() {
    let r = registry();
    let b = orphaned_blob(&r, "app").await;
    let gate = r.reg.store().gate(Op::BlobDelete(b.clone()));
    let uri = format!("/v2/app/blobs/uploads/?digest={b}");
    let upload = async {
        gate.reached().await;
        let resp = r
            .send(
                http::Method::POST,
                &uri,
                &[],
                bytes::Bytes::from_static(b"orphan of app"),
            )
            .await;
        gate.open();
        resp
    };
    let (report, resp) = tokio::join!(r.reg.collect_garbage(false), upload);
    resp.expect_error(503, "UNAVAILABLE");
    assert!(resp.header("retry-after").is_some());
    assert_eq!(report.unwrap().blobs_deleted, 1);
    r.push_blob("app", b"orphan of app").await;
    assert!(exists(&r, &b).await);
}

/// A pass that outlives its deadline deletes nothing more.
#[tokio::test]
async fn a_pass_past_its_deadline_stops() {
    let r = registry();
    let loose = orphaned_blob(&r, "app").await;
    let gate = r.reg.store().gate(Op::MetaPut(keys::dying(&loose)));
    let late = async {
        gate.reached().await;
        r.env.advance(GRACE);
        gate.open();
    };
    let (report, ()) = tokio::join!(r.reg.collect_garbage(false), late);
    let report = report.unwrap();
    assert_eq!(report.blobs_deleted, 0, "{report:?}");
    assert!(exists(&r, &loose).await);
}

/// A scrub finds bytes that no longer match their digest and takes them out of service;
/// the rest it leaves alone.
#[tokio::test]
async fn scrub_takes_out_corrupt_blobs() {
    let r = registry();
    let (_, _) = r.push_image("app", "v1", "good").await;
    let rotten = Digest::sha256(b"what was pushed");
    // Bytes changed behind berth's back (the memory store takes a plain body as it is).
    store(&r)
        .blob_put(&rotten, berth::Body::from(&b"what the disk holds now"[..]))
        .await
        .unwrap();
    let report = r.reg.scrub(None, None).await.unwrap();
    assert_eq!(report.checked, 4, "{report:?}");
    assert_eq!(report.corrupt, vec![rotten.clone()]);
    assert!(!exists(&r, &rotten).await);
    r.get("/v2/app/manifests/v1").await.expect(200);
    // In pages: two, then the rest.
    let first = r.reg.scrub(None, Some(2)).await.unwrap();
    assert_eq!(first.checked, 2);
    let rest = r.reg.scrub(first.last.as_deref(), None).await.unwrap();
    assert_eq!(rest.checked, 1);
}

/// A pass run a few steps at a time (the Worker's cron), its state saved in between, ends where
/// a pass run at once would; a new one starts only once the interval has gone by.
#[tokio::test]
async fn a_pass_in_steps_resumes_and_waits_for_its_interval() {
    let r = registry();
    let (keep, _) = r.push_image("app", "v1", "keep").await;
    let mut loose = Vec::new();
    for i in 0..7 {
        loose.push(
            r.push_blob(&format!("r{i}"), format!("loose {i}").as_bytes())
                .await,
        );
    }
    r.env.advance(GRACE + 1);
    let mut calls = 0;
    let report = loop {
        calls += 1;
        assert!(calls < 100, "the pass never ends");
        let mut budget = 2;
        let done = r
            .reg
            .collect_garbage_steps(3600, 2, || {
                budget -= 1;
                budget >= 0
            })
            .await
            .unwrap();
        if let Some(report) = done {
            break report;
        }
        assert!(
            store(&r).meta_get(keys::GC_STATE).await.is_ok(),
            "the pass is saved between calls"
        );
    };
    assert!(calls > 3, "it took several calls: {calls}");
    assert_eq!(report.blobs_deleted, 7, "{report:?}");
    assert!(exists(&r, &keep).await);
    assert!(
        store(&r).meta_get(keys::GC_STATE).await.is_err(),
        "no state once done"
    );
    assert_eq!(r.reg.last_gc().await.unwrap().unwrap().id, report.id);
    // Not due again before the interval.
    let again = r.reg.collect_garbage_steps(3600, 2, || true).await.unwrap();
    assert!(again.is_none());
    r.env.advance(3600);
    let again = r.reg.collect_garbage_steps(3600, 2, || true).await.unwrap();
    assert!(again.is_some());
}

/// A last report stamped in the future (a clock that ran ahead) does not hold passes off until
/// that time: past the tolerated skew, a pass is due at once.
#[tokio::test]
async fn a_report_from_the_future_does_not_stop_collection() {
    let r = registry();
    let ahead = r.env.now() + 7 * 24 * 3600;
    let report = serde_json::json!({
        "id": "gc-ahead", "dry_run": false, "started": ahead, "finished": ahead,
        "repositories": 0, "manifests_marked": 0, "blobs_seen": 0, "uploads_dropped": 0,
        "tags_deleted": 0, "manifests_deleted": 0, "referrers_deleted": 0, "links_deleted": 0,
        "blobs_deleted": 0, "bytes_freed": 0, "blobs_held": 0, "items": []
    });
    store(&r)
        .meta_put(
            keys::GC_LAST,
            Bytes::from(report.to_string()),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    assert_eq!(r.reg.last_gc().await.unwrap().unwrap().id, "gc-ahead");
    let done = r.reg.collect_garbage_steps(3600, 2, || true).await.unwrap();
    assert!(done.is_some(), "a pass ran");
}

/// Two cron invocations resume the same saved pass at once: the one that saves second loses
/// its progress (its deletions were safe on their own) and the pass goes on from the winner's.
#[tokio::test]
async fn two_invocations_of_a_stepped_pass_at_once() {
    let r = registry();
    let mut loose = Vec::new();
    for i in 0..6 {
        loose.push(
            r.push_blob(&format!("r{i}"), format!("loose {i}").as_bytes())
                .await,
        );
    }
    r.env.advance(GRACE + 1);
    // Save a pass in progress.
    let mut first = 1;
    r.reg
        .collect_garbage_steps(0, 2, || {
            first -= 1;
            first >= 0
        })
        .await
        .unwrap();
    // The first to finish stops before it files its report; the other runs meanwhile.
    let gate = r.reg.store().gate(Op::MetaPut(keys::GC_LAST.to_owned()));
    let slow = r.reg.collect_garbage_steps(0, 2, || true);
    let fast = async {
        gate.reached().await;
        let done = r.reg.collect_garbage_steps(0, 2, || true).await;
        gate.open();
        done
    };
    let (slow, fast) = tokio::join!(slow, fast);
    // Both ran the same pass from the same saved state; each ends it cleanly.
    assert!(fast.unwrap().is_some());
    assert!(slow.unwrap().is_some());
    assert!(store(&r).meta_get(keys::GC_STATE).await.is_err());
    for d in &loose {
        assert!(!exists(&r, d).await);
    }
}
