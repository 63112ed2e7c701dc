//! One repository on a registry: manifests, blobs, tags, referrers, deletes.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK, RANGE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use super::auth::scope;
use super::error::{Error, ErrorKind, Result};
use super::transport::{Client, Request, status_error};
use super::{MANIFEST_TYPES, MAX_MANIFEST};
use crate::digest::Digest;
use crate::manifest::{Descriptor, OCI_INDEX};
use crate::names::{Reference, RepoName};
use crate::query::encode;

/// A manifest as fetched: its bytes, media type and digest (verified).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            artifact_type: None,
            annotations: None,
            urls: None,
        }
    }
}

/// One page of a tags listing, and the request for the next, if the registry gave one.
#[derive(Clone, Debug)]
pub struct TagPage {
    pub tags: Vec<String>,
    /// The `Link` header's target, as a URL path with query.
    pub next: Option<String>,
}

/// A repository on a registry, e.g. `127.0.0.1:5000` + `team/app`. Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    pub(crate) client: Client,
    inner: Arc<RepoInner>,
}

struct RepoInner {
    host: String,
    name: RepoName,
    base: String,
    pull: [String; 1],
    push: [String; 1],
}

impl Repository {
    pub(crate) fn new(client: Client, host: String, name: RepoName) -> Repository {
        let base = client.base_url(&host);
        let pull = [scope(name.as_str(), false)];
        let push = [scope(name.as_str(), true)];
        Repository {
            client,
            inner: Arc::new(RepoInner {
                host,
                name,
                base,
                pull,
                push,
            }),
        }
    }

    pub fn host(&self) -> &str {
        &self.inner.host
    }

    pub fn name(&self) -> &RepoName {
        &self.inner.name
    }

    /// `https://host/v2/<name>/<rest>`.
    pub(crate) fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.inner.base, self.inner.name)
    }

    /// A `Location` header or `Link` target made absolute.
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.inner.base)
        } else {
            format!("{}/{location}", self.inner.base)
        }
    }

    pub(crate) fn pull_scopes(&self) -> &[String] {
        &self.inner.pull
    }

    pub(crate) fn push_scopes(&self) -> &[String] {
        &self.inner.push
    }

    /// The same repository, asking for push access with every request: one token then
    /// serves the HEADs and GETs of a push as well as its uploads.
    pub fn for_push(mut self) -> Repository {
        let inner = RepoInner {
            host: self.inner.host.clone(),
            name: self.inner.name.clone(),
            base: self.inner.base.clone(),
            pull: self.inner.push.clone(),
            push: self.inner.push.clone(),
        };
        self.inner = Arc::new(inner);
        self
    }

    pub(crate) fn request(&self, method: Method, url: String, push: bool) -> Request<'_> {
        let scopes = if push {
            self.push_scopes()
        } else {
            self.pull_scopes()
        };
        Request::new(method, url, self.host(), scopes)
    }

    fn what(&self, thing: impl std::fmt::Display) -> String {
        format!("{}/{} {thing}", self.host(), self.name())
    }

    /// GET a manifest (any of [`MANIFEST_TYPES`]), verified: by digest, against the digest;
    /// by tag, against `Docker-Content-Digest` when the registry sends it.
    pub async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
        let url = self.url(&format!("manifests/{reference}"));
        let req = self
            .request(Method::GET, url, false)
            .header(ACCEPT, &MANIFEST_TYPES.join(", "));
        let resp = self.client.send(req).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what(format!("manifest {reference}"))).await);
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let bytes = read_limited(resp, MAX_MANIFEST)
            .await
            .map_err(|e| e.context(self.what(format!("manifest {reference}"))))?;
        let digest = match reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if &actual != d {
                    return Err(mismatch(&self.what("manifest"), d, &actual));
                }
                actual
            }
            Reference::Tag(_) => {
                let algorithm = header_digest
                    .as_ref()
                    .map(|d| d.algorithm())
                    .unwrap_or(crate::digest::Algorithm::Sha256);
                let actual = Digest::of(algorithm, &bytes);
                if let Some(h) = header_digest.filter(|h| *h != actual) {
                    return Err(mismatch(
                        &self.what(format!("manifest {reference}")),
                        &h,
                        &actual,
                    ));
                }
                // sha256 is the digest other clients will use for it.
                Digest::sha256(&bytes)
            }
        };
        let media_type = media_type_of(&bytes, content_type.as_deref());
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// HEAD a manifest: its descriptor, or `None` when absent.
    pub async fn manifest_head(&self, reference: &Reference) -> Result<Option<Descriptor>> {
        let url = self.url(&format!("manifests/{reference}"));
        let req = self
            .request(Method::HEAD, url, false)
            .header(ACCEPT, &MANIFEST_TYPES.join(", "));
        let resp = self.client.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what(format!("manifest {reference}"))).await);
        }
        let h = resp.headers();
        let digest = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let digest = match (digest, reference) {
            (Some(d), _) => d,
            (None, Reference::Digest(d)) => d.clone(),
            // No digest header: only a GET can tell.
            (None, Reference::Tag(_)) => {
                return self.manifest(reference).await.map(|m| Some(m.descriptor()));
            }
        };
        Ok(Some(Descriptor {
            media_type: h
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            digest,
            size: content_length(&resp).unwrap_or(0),
            artifact_type: None,
            annotations: None,
            urls: None,
        }))
    }

    /// PUT a manifest under a tag or its digest. Returns whether the registry processed its
    /// `subject` (the `OCI-Subject` header).
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<bool> {
        let url = self.url(&format!("manifests/{reference}"));
        let body = bytes.clone();
        let make = move || reqwest::Body::from(body.clone());
        let req = self
            .request(Method::PUT, url, true)
            .header(CONTENT_TYPE, media_type)
            .body(&make);
        let resp = self.client.send(req).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what(format!("manifest PUT {reference}"))).await);
        }
        Ok(resp.headers().contains_key("oci-subject"))
    }

    /// DELETE a manifest by digest (or a tag, where the registry allows it).
    pub async fn delete_manifest(&self, reference: &Reference) -> Result<()> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut scopes = vec![scope(self.name().as_str(), true)];
        scopes[0].push_str(",delete");
        let req = Request::new(Method::DELETE, url, self.host(), &scopes);
        let resp = self.client.send(req).await?;
        if !resp.status().is_success() {
            return Err(
                status_error(resp, &self.what(format!("DELETE manifest {reference}"))).await,
            );
        }
        Ok(())
    }

    /// DELETE a blob.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut scopes = vec![scope(self.name().as_str(), true)];
        scopes[0].push_str(",delete");
        let req = Request::new(Method::DELETE, url, self.host(), &scopes);
        let resp = self.client.send(req).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what(format!("DELETE blob {digest}"))).await);
        }
        Ok(())
    }

    /// HEAD a blob: its size, or `None` when the repository does not have it.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self
            .client
            .send(self.request(Method::HEAD, url, false))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(content_length(&resp).unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(resp, &self.what(format!("blob {digest}"))).await),
        }
    }

    /// GET a blob from `offset` on: the response, its body not yet read. A registry that
    /// ignores `Range` answers 200 from the start; the caller sees which from the status.
    pub(crate) async fn blob_response(&self, digest: &Digest, offset: u64) -> Result<Response> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut req = self.request(Method::GET, url, false);
        if offset > 0 {
            req = req.header(RANGE, &format!("bytes={offset}-"));
        }
        let resp = self.client.send(req).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(resp, &self.what(format!("blob {digest}"))).await)
        }
    }

    /// A blob's bytes as a stream, verified against `desc` and resumed with `Range` when the
    /// connection breaks. See [`super::stream::fetch`].
    pub fn blob(&self, desc: &Descriptor) -> crate::body::ByteStream {
        super::stream::fetch(self.clone(), desc.clone(), None)
    }

    /// One page of tags: `n` at most, after `last`.
    pub async fn tags_page(&self, n: Option<usize>, last: Option<&str>) -> Result<TagPage> {
        let mut q = Vec::new();
        if let Some(n) = n {
            q.push(format!("n={n}"));
        }
        if let Some(l) = last {
            q.push(format!("last={}", encode(l)));
        }
        let mut url = self.url("tags/list");
        if !q.is_empty() {
            url = format!("{url}?{}", q.join("&"));
        }
        self.tags_at(url).await
    }

    /// The page at `next` (from [`TagPage::next`]).
    pub async fn tags_next(&self, next: &str) -> Result<TagPage> {
        self.tags_at(self.absolute(next)).await
    }

    async fn tags_at(&self, url: String) -> Result<TagPage> {
        let resp = self
            .client
            .send(self.request(Method::GET, url, false))
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what("tags")).await);
        }
        let next = resp
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_link);
        #[derive(Deserialize)]
        struct List {
            tags: Option<Vec<String>>,
        }
        let bytes = read_limited(resp, 64 << 20).await?;
        let list: List = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Registry,
                format!("{}: unreadable tags list: {e}", self.what("")),
            )
        })?;
        Ok(TagPage {
            tags: list.tags.unwrap_or_default(),
            next,
        })
    }

    /// Every tag, following `Link` headers (at most 10,000 pages).
    pub async fn tags(&self, page_size: Option<usize>) -> Result<Vec<String>> {
        let mut page = self.tags_page(page_size, None).await?;
        let mut all = std::mem::take(&mut page.tags);
        for _ in 0..10_000 {
            let Some(next) = page.next.take() else { break };
            page = self.tags_next(&next).await?;
            if page.tags.is_empty() {
                break;
            }
            all.append(&mut page.tags);
        }
        Ok(all)
    }

    /// The manifests that refer to `digest`: the referrers API, or, where the registry has
    /// none (404), the `sha256-<hex>` fallback tag. Filtered by `artifact_type` if given.
    pub async fn referrers(
        &self,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut url = self.url(&format!("referrers/{digest}"));
        if let Some(t) = artifact_type {
            url = format!("{url}?artifactType={}", encode(t));
        }
        let resp = self
            .client
            .send(self.request(Method::GET, url, false))
            .await?;
        let filtered_by_registry = resp.headers().contains_key("oci-filters-applied");
        let bytes = match resp.status() {
            s if s.is_success() => read_limited(resp, MAX_MANIFEST).await?,
            StatusCode::NOT_FOUND => {
                let tag = format!("{}-{}", digest.algorithm(), digest.hex());
                let Ok(tag) = tag.parse() else {
                    return Ok(Vec::new());
                };
                match self.manifest(&Reference::Tag(tag)).await {
                    Ok(m) if m.media_type == OCI_INDEX => m.bytes,
                    Ok(_) => return Ok(Vec::new()),
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            }
            _ => {
                return Err(status_error(resp, &self.what(format!("referrers of {digest}"))).await);
            }
        };
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Registry,
                format!("unreadable referrers index: {e}"),
            )
        })?;
        let mut list = index.manifests;
        if let (Some(t), false) = (artifact_type, filtered_by_registry) {
            list.retain(|d| d.artifact_type.as_deref() == Some(t));
        }
        Ok(list)
    }
}

pub(crate) fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn mismatch(what: &str, expected: &Digest, actual: &Digest) -> Error {
    Error::new(
        ErrorKind::Digest,
        format!("{what}: content has digest {actual}, expected {expected}"),
    )
    .with_hint("the registry served corrupt or different content; nothing was written for it")
}

/// The media type from the header, or else from the manifest's own `mediaType`, or else
/// guessed from its shape.
pub(crate) fn media_type_of(bytes: &[u8], header: Option<&str>) -> String {
    let header = header.filter(|h| {
        !h.is_empty()
            && *h != "application/json"
            && *h != "application/octet-stream"
            && *h != "text/plain"
    });
    if let Some(h) = header {
        return h.to_owned();
    }
    crate::manifest::inspect(bytes, None)
        .map(|m| m.media_type)
        .unwrap_or_else(|_| crate::manifest::OCI_MANIFEST.to_owned())
}

async fn read_limited(resp: Response, limit: usize) -> Result<Bytes> {
    if content_length(&resp).is_some_and(|n| n > limit as u64) {
        return Err(Error::new(
            ErrorKind::Registry,
            format!("response larger than {limit} bytes"),
        ));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Error::new(ErrorKind::Network, format!("reading the response: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(Error::new(
                ErrorKind::Registry,
                format!("response larger than {limit} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// `<url>; rel="next"` → `url`.
fn parse_link(v: &str) -> Option<String> {
    for part in v.split(',') {
        let part = part.trim();
        if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
            continue;
        }
        let start = part.find('<')? + 1;
        let end = part[start..].find('>')? + start;
        return Some(part[start..end].to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(
            parse_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(parse_link(r#"<x>; rel="prev""#), None);
        assert_eq!(encode("a+b/c"), "a%2Bb%2Fc");
    }
}
