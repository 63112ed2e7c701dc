//! Blob reads and deletes (end-2, end-10), and redirects of blob reads to the store's own URL.

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode, header};

use super::{Reply, digest, not_modified, repo, store_err};
use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::keys;
use crate::links::BlobLink;
use crate::names::RepoName;
use crate::range;
use crate::registry::{Ctx, Result};
use crate::storage::{PutMode, Storage, StorageError};

/// Digest-addressed content never changes.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// On stored content (blobs, manifests): a browser opening it runs nothing and loads nothing.
pub(crate) const CONTENT_CSP: &str = "default-src 'none'; sandbox";

impl<S: Storage> Ctx<'_, S> {
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

    /// Record, with the time now, that the repository holds the blob; a new link counts
    /// towards the repository's usage.
    pub(crate) async fn link_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let key = keys::blob(name, digest);
        let value = Bytes::from(
            BlobLink {
                at: self.env.now(),
                size,
            }
            .to_bytes(),
        );
        match self
            .store
            .meta_put(&key, value.clone(), PutMode::Create)
            .await
        {
            Ok(_) => {
                // Passes visit the repository even before a manifest puts it in the catalog;
                // a new time, so that a pass that found it empty cannot drop it now.
                let now = Bytes::from(self.env.now().to_string());
                self.store
                    .meta_put(&keys::linked(name), now, PutMode::Overwrite)
                    .await
                    .map_err(store_err)?;
                self.add_usage(name, size).await
            }
            // Fresh again: a pass that read the old link cannot delete this one.
            Err(StorageError::AlreadyExists) => self
                .store
                .meta_put(&key, value, PutMode::Overwrite)
                .await
                .map(|_| ())
                .map_err(store_err),
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
        let mut reply = Reply::new(StatusCode::OK)
            .header(header::ETAG, &etag)
            .header("docker-content-digest", d.to_string())
            .header(header::CACHE_CONTROL, IMMUTABLE)
            .header(header::CONTENT_SECURITY_POLICY, CONTENT_CSP)
            .header(header::ACCEPT_RANGES, "bytes");
        if not_modified(req, &etag) {
            let mut r = reply.body(Body::Empty);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(r);
        }
        // A store that names a place to fetch the bytes from (a presigned bucket URL) takes
        // GETs, ranged or not, off the registry. HEAD is answered here: the client wants the
        // size, and a redirect would cost it a second trip. The URL expires, so the redirect
        // carries no caching headers.
        if !head
            && let Some(url) =
                (self.store.blob_location(&d).await).map_err(|e| not_found(e, unknown))?
        {
            return Ok(Reply::new(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, url)
                .header("docker-content-digest", d.to_string())
                .empty());
        }
        reply = reply.header(header::CONTENT_TYPE, "application/octet-stream");
        // A stale If-Range means: send it all. So does a Range that is not one byte range.
        let wanted = super::header(req, header::RANGE)
            .filter(|_| super::header(req, header::IF_RANGE).is_none_or(|v| v.trim() == etag))
            .and_then(range::parse_range);
        let Some(wanted) = wanted else {
            if head {
                let info = self
                    .store
                    .blob_head(&d)
                    .await
                    .map_err(|e| not_found(e, unknown))?;
                return Ok(reply
                    .header(header::CONTENT_LENGTH, info.size.to_string())
                    .body(Body::Empty));
            }
            let blob = self
                .store
                .blob_get(&d, None)
                .await
                .map_err(|e| not_found(e, unknown))?;
            return Ok(reply
                .header(header::CONTENT_LENGTH, blob.size.to_string())
                .body(blob.body));
        };
        // One trip for a ranged read too: the store resolves the range against the size.
        let blob = match self.store.blob_get(&d, Some(wanted)).await {
            Ok(blob) => blob,
            Err(StorageError::RangeNotSatisfiable { size }) => {
                return Err(
                    RegistryError::new(Code::SizeInvalid, "range not satisfiable")
                        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .with_header(
                            header::CONTENT_RANGE,
                            range::unsatisfied(size).parse().expect("ascii"),
                        ),
                );
            }
            Err(e) => return Err(not_found(e, unknown)),
        };
        let mut resp = reply
            .header(
                header::CONTENT_RANGE,
                range::content_range(blob.range, blob.size),
            )
            .header(header::CONTENT_LENGTH, blob.range.len().to_string())
            .body(blob.body);
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        Ok(resp)
    }

    /// end-10: DELETE `/v2/<name>/blobs/<digest>`. Drops the repository's link; the bytes stay
    /// for other repositories until garbage collection.
    pub(crate) async fn blob_delete(&self, name: &str, d: &str) -> Result<Response<Body>> {
        let name = repo(name)?;
        let d = digest(d)?;
        match self.store.meta_delete(&keys::blob(&name, &d), None).await {
            Ok(()) => Ok(Reply::new(StatusCode::ACCEPTED).empty()),
            Err(StorageError::NotFound) => Err(RegistryError::new(
                Code::BlobUnknown,
                "blob unknown to repository",
            )),
            Err(e) => Err(store_err(e)),
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
