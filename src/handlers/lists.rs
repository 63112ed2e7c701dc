//! Listings: the base check, tags, catalog and referrers (end-1, end-8, end-12).

use futures_util::future::try_join_all;
use http::request::Parts;
use http::{Response, StatusCode, header};
use serde_json::json;

use super::{Reply, digest, repo, store_err};
use crate::body::Body;
use crate::error::{Code, RegistryError};
use crate::keys;
use crate::manifest::{Descriptor, OCI_INDEX};
use crate::query::{Query, encode};
use crate::registry::{Ctx, Result};
use crate::storage::{ListOptions, Storage, StorageError};

/// One page of a listing: the entries, and the `Link` to the next page if there is one.
struct Page {
    entries: Vec<String>,
    next: Option<String>,
}

impl<S: Storage> Ctx<'_, S> {
    /// end-1: GET `/v2/`.
    pub(crate) fn base(&self) -> Response<Body> {
        Reply::new(StatusCode::OK).json(&json!({}))
    }

    /// List `prefix` by `n` and `last`, capped at the configured page size. `path` is the
    /// endpoint's own, for the `Link` header.
    async fn page(&self, prefix: &str, req: &Parts, path: &str) -> Result<Page> {
        let q = Query::parse(req.uri.query());
        let n = match q.get("n") {
            None | Some("") => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| {
                RegistryError::new(
                    Code::PaginationNumberInvalid,
                    "n must be a non-negative integer",
                )
            })?),
        };
        let limit = n.map_or(self.config.max_page_size, |n| {
            n.min(self.config.max_page_size as u64) as usize
        });
        if limit == 0 {
            return Ok(Page {
                entries: Vec::new(),
                next: None,
            });
        }
        let last = q.get("last").filter(|l| !l.is_empty());
        let mut entries = self
            .store
            .meta_list(
                prefix,
                ListOptions {
                    after: last,
                    limit: Some(limit + 1),
                },
            )
            .await
            .map_err(store_err)?;
        let mut next = None;
        if entries.len() > limit {
            entries.truncate(limit);
            let last = entries.last().map(String::as_str).unwrap_or_default();
            next = Some(format!(
                "<{path}?n={limit}&last={}>; rel=\"next\"",
                encode(last)
            ));
        }
        Ok(Page { entries, next })
    }

    fn listing(page: Page, body: serde_json::Value) -> Response<Body> {
        let mut reply = Reply::new(StatusCode::OK);
        if let Some(link) = page.next {
            reply = reply.header(header::LINK, link);
        }
        reply.json(&body)
    }

    /// end-8: GET `/v2/<name>/tags/list[?n=&last=]`.
    pub(crate) async fn tags_list(&self, name: &str, req: &Parts) -> Result<Response<Body>> {
        let name = repo(name)?;
        match self.store.meta_get(&keys::catalog(&name)).await {
            Ok(_) => {}
            Err(StorageError::NotFound) => {
                return Err(RegistryError::new(
                    Code::NameUnknown,
                    "repository name not known to registry",
                ));
            }
            Err(e) => return Err(store_err(e)),
        }
        let page = self
            .page(&keys::tags(&name), req, &format!("/v2/{name}/tags/list"))
            .await?;
        let body = json!({ "name": name.as_str(), "tags": page.entries });
        Ok(Self::listing(page, body))
    }

    /// GET `/v2/_catalog[?n=&last=]`.
    pub(crate) async fn catalog(&self, req: &Parts) -> Result<Response<Body>> {
        let page = self.page(keys::CATALOG, req, "/v2/_catalog").await?;
        let body = json!({ "repositories": page.entries });
        Ok(Self::listing(page, body))
    }

    /// end-12: GET `/v2/<name>/referrers/<digest>[?artifactType=&n=&last=]`: always an index,
    /// empty when nothing refers to the digest; a page of at most the configured page size,
    /// with a `Link` to the next (the spec allows it), read a few entries at a time.
    pub(crate) async fn referrers(
        &self,
        name: &str,
        d: &str,
        req: &Parts,
    ) -> Result<Response<Body>> {
        let name = repo(name)?;
        let d = digest(d)?;
        let q = Query::parse(req.uri.query());
        let filter = q.get("artifactType").filter(|t| !t.is_empty());
        let prefix = keys::referrers(&name, &d);
        let path = format!("/v2/{name}/referrers/{d}");
        let mut page = self.page(&prefix, req, &path).await?;
        if let (Some(link), Some(f)) = (&mut page.next, filter) {
            // The next page filters as this one did.
            *link = link.replacen(">;", &format!("&artifactType={}>;", encode(f)), 1);
        }
        let keys: Vec<String> = page
            .entries
            .iter()
            .map(|k| format!("{prefix}{k}"))
            .collect();
        let mut entries: Vec<Option<Descriptor>> = Vec::with_capacity(keys.len());
        for batch in keys.chunks(16) {
            entries.extend(
                try_join_all(batch.iter().map(|key| async move {
                    match self.store.meta_get(key).await {
                        Ok(s) => Ok(serde_json::from_slice::<Descriptor>(&s.value).ok()),
                        Err(StorageError::NotFound) => Ok(None),
                        Err(e) => Err(store_err(e)),
                    }
                }))
                .await?,
            );
        }
        let manifests: Vec<Descriptor> = entries
            .into_iter()
            .flatten()
            .filter(|e| filter.is_none_or(|f| e.artifact_type.as_deref() == Some(f)))
            .collect();
        let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests })
            .to_string();
        let mut reply = Reply::new(StatusCode::OK)
            .header(header::CONTENT_TYPE, OCI_INDEX)
            .header(header::CONTENT_LENGTH, body.len().to_string());
        if filter.is_some() {
            reply = reply.header("oci-filters-applied", "artifactType");
        }
        if let Some(link) = page.next {
            reply = reply.header(header::LINK, link);
        }
        Ok(reply.body(Body::from(body)))
    }
}
