//! The garbage collection part of the contract: a pass over the store, through the core, with
//! the store's own clock for blob ages. A pass is global, so this runs on a store of its own
//! (nothing else in it that must survive). `now` is the caller's current time (the store's
//! clock must agree with it to within a minute).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};

use super::Storage;
use crate::body::Body;
use crate::digest::Digest;
use crate::keys;
use crate::registry::{Config, Registry};
use crate::storage::{PutMode, StorageError};
use crate::testing::ManualEnv;

type Outcome = Result<(), String>;

const GRACE: u64 = 600;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

async fn send<S: Storage>(
    reg: &Registry<Arc<S>>,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<StatusCode, String> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let req = req.body(Body::from(body)).map_err(|e| e.to_string())?;
    Ok(reg.handle(req).await.status())
}

async fn push_blob<S: Storage>(
    reg: &Registry<Arc<S>>,
    name: &str,
    data: &[u8],
) -> Result<Digest, String> {
    let d = Digest::sha256(data);
    let uri = format!("/v2/{name}/blobs/uploads/?digest={d}");
    let status = send(reg, Method::POST, &uri, None, data.to_vec()).await?;
    ensure!(status == StatusCode::CREATED, "push {d}: {status}");
    Ok(d)
}

async fn gone<S: Storage>(store: &S, d: &Digest) -> Result<bool, String> {
    match store.blob_head(d).await {
        Ok(_) => Ok(false),
        Err(StorageError::NotFound) => Ok(true),
        Err(e) => Err(format!("head {d}: {e}")),
    }
}

/// Push an image and a loose blob, let the grace pass, run a pass: the loose blob goes, the
/// image stays whole; a pinned blob stays; an upload over a blob marked dying is asked to retry.
pub async fn gc<S: Storage>(store: Arc<S>, tag: &str, now: u64) -> Outcome {
    let env = Arc::new(ManualEnv::at(now));
    let config = Config {
        gc_grace: GRACE,
        ..Config::default()
    };
    let reg = Registry::new(store.clone(), env.clone(), config);
    let name = format!("contract-gc-{tag}/app");
    let config_blob = push_blob(&reg, &name, format!("config {tag}").as_bytes()).await?;
    let layer = push_blob(&reg, &name, format!("layer {tag}").as_bytes()).await?;
    let loose = push_blob(&reg, &name, format!("loose {tag}").as_bytes()).await?;
    let pinned = push_blob(&reg, &name, format!("pinned {tag}").as_bytes()).await?;
    let dying = push_blob(&reg, &name, format!("dying {tag}").as_bytes()).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_blob.to_string(), "size": format!("config {tag}").len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.to_string(), "size": format!("layer {tag}").len()}],
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let m = Digest::sha256(&bytes);
    let status = send(
        &reg,
        Method::PUT,
        &format!("/v2/{name}/manifests/v1"),
        Some("application/vnd.oci.image.manifest.v1+json"),
        bytes,
    )
    .await?;
    ensure!(status == StatusCode::CREATED, "manifest push: {status}");

    // Within the grace nothing goes.
    let report = reg
        .collect_garbage(false)
        .await
        .map_err(|e| format!("pass: {e}"))?;
    ensure!(
        report.blobs_deleted == 0,
        "nothing goes within the grace: {report:?}"
    );

    // Past it: a writer's pin keeps `pinned`; a dying mark makes an upload of `dying` retry.
    env.advance(2 * GRACE);
    let later = now + 2 * GRACE;
    store
        .meta_put(
            &keys::pin(&pinned),
            Bytes::from(later.to_string()),
            PutMode::Overwrite,
        )
        .await
        .map_err(|e| format!("pin: {e}"))?;
    let mark = format!("{{\"pass\":\"contract\",\"at\":{later}}}");
    store
        .meta_put(&keys::dying(&dying), Bytes::from(mark), PutMode::Create)
        .await
        .map_err(|e| format!("dying mark: {e}"))?;
    let status = send(
        &reg,
        Method::POST,
        &format!("/v2/{name}/blobs/uploads/?digest={dying}"),
        None,
        format!("dying {tag}").into_bytes(),
    )
    .await?;
    ensure!(
        status == StatusCode::SERVICE_UNAVAILABLE,
        "an upload over a blob marked dying retries: {status}"
    );
    store
        .meta_delete(&keys::dying(&dying), None)
        .await
        .map_err(|e| format!("dying mark: {e}"))?;

    let report = reg
        .collect_garbage(false)
        .await
        .map_err(|e| format!("pass: {e}"))?;
    ensure!(
        gone(&*store, &loose).await?,
        "an unreferenced blob past its grace goes: {report:?}"
    );
    ensure!(
        !gone(&*store, &pinned).await?,
        "a pinned blob stays: {report:?}"
    );
    for d in [&config_blob, &layer, &m] {
        ensure!(
            !gone(&*store, d).await?,
            "{d}, named by a tagged manifest, stays"
        );
    }
    let status = send(
        &reg,
        Method::GET,
        &format!("/v2/{name}/manifests/v1"),
        None,
        vec![],
    )
    .await?;
    ensure!(status == StatusCode::OK, "the image still pulls: {status}");
    let status = send(
        &reg,
        Method::HEAD,
        &format!("/v2/{name}/blobs/{loose}"),
        None,
        vec![],
    )
    .await?;
    ensure!(
        status == StatusCode::NOT_FOUND,
        "the loose blob's link went too: {status}"
    );

    // Deleting the image lets its blobs go at the next pass.
    let status = send(
        &reg,
        Method::DELETE,
        &format!("/v2/{name}/manifests/{m}"),
        None,
        vec![],
    )
    .await?;
    ensure!(status == StatusCode::ACCEPTED, "delete: {status}");
    env.advance(2 * GRACE);
    let report = reg
        .collect_garbage(false)
        .await
        .map_err(|e| format!("pass: {e}"))?;
    // `dying` too: the refused upload had pinned it before it saw the mark.
    for d in [&config_blob, &layer, &m, &pinned, &dying] {
        ensure!(
            gone(&*store, d).await?,
            "{d} goes once nothing names it: {report:?}"
        );
    }
    // The passes ran on a clock ahead of the store's: take their report away, so that the
    // store's real passes are due as usual.
    store
        .meta_delete(keys::GC_LAST, None)
        .await
        .map_err(|e| format!("last report: {e}"))?;
    Ok(())
}
