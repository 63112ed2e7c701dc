//! Blob reads and deletes (end-2, end-10).

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode, header};

use super::{Reply, digest, not_modified, repo, store_err};
use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::keys;
use crate::names::RepoName;
use crate::range::{self, RangeError};
use crate::registry::{Registry, Result};
use crate::storage::{PutMode, Storage, StorageError};

/// Digest-addressed content never changes.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";

impl<S: Storage> Registry<S> {
    /// Whether the repository holds the blob: pushed or mounted into it, or a manifest of it.
    pub(crate) async fn has_blob(&self, name: &RepoName, digest: &Digest) -> Result<bool> {
        for key in [keys::blob(name, digest), keys::manifest(name, digest)] {
            match self.store.meta_get(&key).await {
                Ok(_) => return Ok(true),
                Err(StorageError::NotFound) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(false)
    }

    /// Record that the repository holds the blob.
    pub(crate) async fn link_blob(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        match self
            .store
            .meta_put(&keys::blob(name, digest), Bytes::new(), PutMode::Create)
            .await
        {
            Ok(_) | Err(StorageError::AlreadyExists) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    /// end-2: GET/HEAD `/v2/<name>/blobs/<digest>`, with `Range` and `If-None-Match`.
    pub(crate) async fn blob_get(
        &self,
        name: &str,
        d: &str,
        head: bool,
        req: &Parts,
    ) -> Result<Response<Body>> {
        let name = repo(name)?;
        let d = digest(d)?;
        let unknown = || RegistryError::new(Code::BlobUnknown, "blob unknown to registry");
        if !self.has_blob(&name, &d).await? {
            return Err(unknown());
        }
        let etag = format!("\"{d}\"");
        let reply = || {
            Reply::new(StatusCode::OK)
                .header(header::ETAG, &etag)
                .header("docker-content-digest", d.to_string())
                .header(header::CACHE_CONTROL, IMMUTABLE)
                .header(header::ACCEPT_RANGES, "bytes")
        };
        if not_modified(req, &etag) {
            let mut r = reply().empty();
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r.headers_mut().remove(header::CONTENT_LENGTH);
            return Ok(r);
        }
        let wanted = super::header(req, header::RANGE).filter(|_| {
            // A stale If-Range means: send it all.
            super::header(req, header::IF_RANGE).is_none_or(|v| v.trim() == etag)
        });
        let ok = |r: Reply, len: u64| {
            r.header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len.to_string())
        };
        let Some(wanted) = wanted else {
            if head {
                let size = self
                    .store
                    .blob_size(&d)
                    .await
                    .map_err(|e| not_found(e, unknown))?;
                return Ok(ok(reply(), size).body(Body::Empty));
            }
            let blob = self
                .store
                .blob_get(&d, None)
                .await
                .map_err(|e| not_found(e, unknown))?;
            return Ok(ok(reply(), blob.size).body(blob.body));
        };
        let size = self
            .store
            .blob_size(&d)
            .await
            .map_err(|e| not_found(e, unknown))?;
        let r = match range::parse_range(wanted, size) {
            Ok(r) => r,
            Err(e) => {
                let msg = match e {
                    RangeError::Malformed => "malformed Range header",
                    RangeError::Multiple => "only one range per request is served",
                    RangeError::Unsatisfiable => "range not satisfiable",
                };
                return Err(RegistryError::new(Code::SizeInvalid, msg)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header(
                        header::CONTENT_RANGE,
                        range::unsatisfied(size).parse().expect("ascii"),
                    ));
            }
        };
        let partial = reply().header(header::CONTENT_RANGE, range::content_range(r, size));
        let mut resp = if head {
            ok(partial, r.len()).body(Body::Empty)
        } else {
            let blob = self
                .store
                .blob_get(&d, Some(r))
                .await
                .map_err(|e| not_found(e, unknown))?;
            ok(partial, r.len()).body(blob.body)
        };
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        Ok(resp)
    }

    /// end-10: DELETE `/v2/<name>/blobs/<digest>`. Drops the repository's link; the bytes stay
    /// for other repositories until garbage collection.
    pub(crate) async fn blob_delete(&self, name: &str, d: &str) -> Result<Response<Body>> {
        let name = repo(name)?;
        let d = digest(d)?;
        self.deletes_allowed()?;
        match self.store.meta_delete(&keys::blob(&name, &d)).await {
            Ok(()) => Ok(Reply::new(StatusCode::ACCEPTED).empty()),
            Err(StorageError::NotFound) => Err(RegistryError::new(
                Code::BlobUnknown,
                "blob unknown to repository",
            )),
            Err(e) => Err(store_err(e)),
        }
    }

    pub(crate) fn deletes_allowed(&self) -> Result<()> {
        if self.config.deletes {
            Ok(())
        } else {
            Err(RegistryError::new(
                Code::Unsupported,
                "deletes are disabled on this registry",
            ))
        }
    }

    pub(crate) fn writable(&self, name: &RepoName) -> Result<()> {
        if self.store.writable(name) {
            Ok(())
        } else {
            Err(RegistryError::new(
                Code::Unsupported,
                format!("repository {name} is read-only"),
            ))
        }
    }
}

/// NotFound means `unknown()`; anything else is the store's failure.
pub(crate) fn not_found(e: StorageError, unknown: impl FnOnce() -> RegistryError) -> RegistryError {
    match e {
        StorageError::NotFound => unknown(),
        e => store_err(e),
    }
}
