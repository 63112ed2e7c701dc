//! Reads of mirrored repositories: serve what is cached, fetch what is not (`mirror/`).

use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use super::{Reply, digest, store_err};
use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::keys;
use crate::links::TagLink;
use crate::mirror::tee::Opening;
use crate::mirror::{CacheResult, Mirror, Target};
use crate::names::Reference;
use crate::registry::{Ctx, Result};
use crate::storage::{Storage, StorageError};

/// Every manifest type berth stores: the upstream answers with what it has.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Said on content served from the cache because the upstream could not be asked.
const STALE: &str = "299 - \"upstream unavailable: serving cached content\"";

/// What an upstream said, in the terms the mirror acts on.
enum Answer {
    Ok(Response<Body>),
    NotFound,
    /// 429, with its `Retry-After`.
    Limited(Option<HeaderValue>),
    /// No usable answer: unreachable, refused our credentials, or an error status.
    Down(String),
}

impl Answer {
    fn of(r: std::result::Result<Response<Body>, String>) -> Answer {
        let resp = match r {
            Ok(resp) => resp,
            Err(e) => return Answer::Down(format!("upstream unreachable: {e}")),
        };
        match resp.status() {
            s if s.is_success() => Answer::Ok(resp),
            StatusCode::NOT_FOUND => Answer::NotFound,
            StatusCode::TOO_MANY_REQUESTS => {
                Answer::Limited(resp.headers().get(header::RETRY_AFTER).cloned())
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Answer::Down("the upstream refused berth's credentials".into())
            }
            s => Answer::Down(format!("the upstream answered {s}")),
        }
    }

    /// The error a client gets when nothing is cached.
    fn into_error(self, unknown: fn() -> RegistryError) -> RegistryError {
        match self {
            Answer::Ok(_) => RegistryError::internal("not an error"),
            Answer::NotFound => unknown(),
            Answer::Limited(retry) => {
                let e = RegistryError::new(
                    Code::TooManyRequests,
                    "the upstream registry is rate-limiting this mirror",
                )
                .with_status(StatusCode::TOO_MANY_REQUESTS);
                match retry {
                    Some(v) => e.with_header(header::RETRY_AFTER, v),
                    None => e,
                }
            }
            Answer::Down(why) => {
                RegistryError::new(Code::Unavailable, why).with_status(StatusCode::BAD_GATEWAY)
            }
        }
    }
}

/// Say what the cache did, for the adapter's metrics.
fn tagged(r: Result<Response<Body>>, what: CacheResult) -> Result<Response<Body>> {
    r.map(|mut resp| {
        resp.extensions_mut().insert(what);
        resp
    })
}

fn manifest_unknown() -> RegistryError {
    RegistryError::new(Code::ManifestUnknown, "manifest unknown to registry")
}

fn blob_unknown() -> RegistryError {
    RegistryError::new(Code::BlobUnknown, "blob unknown to registry")
}

fn upstream_request(method: Method, path: String, accept: Option<&str>) -> Request<()> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(a) = accept {
        b = b.header(header::ACCEPT, a);
    }
    b.body(()).expect("a valid request")
}

impl<S: Storage> Ctx<'_, S> {
    fn mirror(&self) -> &Mirror {
        self.mirror
            .expect("mirror endpoints run only with a mirror")
    }

    async fn ask(&self, t: &Target, method: Method, path: String, accept: Option<&str>) -> Answer {
        let req = upstream_request(method, format!("/v2/{}/{path}", t.remote), accept);
        Answer::of(self.mirror().upstream.send(&t.ns, req).await)
    }

    /// GET/HEAD `/v2/<name>/manifests/<reference>` of a mirrored repository.
    pub(crate) async fn mirror_manifest(
        &self,
        t: &Target,
        r: &str,
        head: bool,
        req: &Parts,
    ) -> Result<Response<Body>> {
        let local = t.local.as_str();
        let r: Reference = r.parse().map_err(|_| manifest_unknown())?;
        let tag = match &r {
            Reference::Digest(d) => {
                let mut what = CacheResult::Hit;
                if !self.has_manifest(t, d).await? {
                    self.fetch_manifest(t, d, None).await?;
                    what = CacheResult::Miss;
                }
                let resp = self.manifest_get(local, &d.to_string(), head, req).await;
                return tagged(resp, what);
            }
            Reference::Tag(tag) => tag,
        };
        let cached = match self.store.meta_get(&keys::tag(&t.local, tag)).await {
            Ok(s) => TagLink::parse(&s.value),
            Err(StorageError::NotFound) => None,
            Err(e) => return Err(store_err(e)),
        };
        let now = self.env.now();
        if let Some(link) = &cached
            && now < link.at.saturating_add(self.mirror().config.ttl)
        {
            let resp = self.manifest_get(local, tag.as_str(), head, req).await;
            return tagged(resp, CacheResult::Hit);
        }
        // Revalidate: a HEAD, and the manifest itself only when its digest is new here.
        let answer = self
            .ask(t, Method::HEAD, format!("manifests/{tag}"), Some(ACCEPT))
            .await;
        let resp = match answer {
            Answer::Ok(resp) => resp,
            Answer::NotFound => return Err(manifest_unknown()),
            other if cached.is_some() => {
                let mut resp = self.manifest_get(local, tag.as_str(), head, req).await?;
                resp.headers_mut()
                    .insert(header::WARNING, HeaderValue::from_static(STALE));
                drop(other);
                return tagged(Ok(resp), CacheResult::Stale);
            }
            other => return Err(other.into_error(manifest_unknown)),
        };
        let said = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let mut what = CacheResult::Miss;
        match said {
            Some(d) if self.has_manifest(t, &d).await? => {
                self.set_tag(&t.local, tag, &d, now).await?;
                what = CacheResult::Revalidated;
            }
            Some(d) => self.fetch_manifest(t, &d, Some(tag)).await?,
            None => {
                // No digest on the HEAD: fetch by tag and take the digest of what came.
                let answer = self
                    .ask(t, Method::GET, format!("manifests/{tag}"), Some(ACCEPT))
                    .await;
                let Answer::Ok(resp) = answer else {
                    return Err(answer.into_error(manifest_unknown));
                };
                let (bytes, kind) = self.manifest_body(resp).await?;
                let d = Digest::sha256(&bytes);
                self.store_manifest(t, &d, bytes, kind, Some(tag)).await?;
            }
        }
        let resp = self.manifest_get(local, tag.as_str(), head, req).await;
        tagged(resp, what)
    }

    async fn has_manifest(&self, t: &Target, d: &Digest) -> Result<bool> {
        match self.store.meta_get(&keys::manifest(&t.local, d)).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Fetch a manifest by digest, check it, and keep it (tagged, if `tag`).
    async fn fetch_manifest(
        &self,
        t: &Target,
        d: &Digest,
        tag: Option<&crate::names::Tag>,
    ) -> Result<()> {
        let answer = self
            .ask(t, Method::GET, format!("manifests/{d}"), Some(ACCEPT))
            .await;
        let Answer::Ok(resp) = answer else {
            return Err(answer.into_error(manifest_unknown));
        };
        let (bytes, kind) = self.manifest_body(resp).await?;
        let got = Digest::of(d.algorithm(), &bytes);
        if &got != d {
            return Err(RegistryError::new(
                Code::Unavailable,
                format!("the upstream sent manifest {got} for {d}; nothing was cached"),
            )
            .with_status(StatusCode::BAD_GATEWAY));
        }
        self.store_manifest(t, d, bytes, kind, tag).await
    }

    async fn manifest_body(&self, resp: Response<Body>) -> Result<(bytes::Bytes, Option<String>)> {
        let kind = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let limit = self.config.max_manifest_size;
        let bytes = resp.into_body().collect(limit).await.map_err(|e| {
            RegistryError::new(
                Code::Unavailable,
                match e {
                    None => format!("the upstream sent a manifest larger than {limit} bytes"),
                    Some(e) => format!("reading the upstream manifest failed: {e}"),
                },
            )
            .with_status(StatusCode::BAD_GATEWAY)
        })?;
        Ok((bytes, kind))
    }

    /// Keep a fetched manifest as a push would, minus what a cache cannot ask of upstream
    /// content: its blobs come later, on demand.
    async fn store_manifest(
        &self,
        t: &Target,
        d: &Digest,
        bytes: bytes::Bytes,
        kind: Option<String>,
        tag: Option<&crate::names::Tag>,
    ) -> Result<()> {
        let mut uri = format!("/v2/{}/manifests/{d}", t.local);
        if let Some(tag) = tag {
            uri.push_str(&format!("?tag={tag}"));
        }
        let mut b = Request::builder().method(Method::PUT).uri(uri);
        if let Some(k) = &kind {
            b = b.header(header::CONTENT_TYPE, k);
        }
        let (parts, ()) = b.body(()).map_err(RegistryError::internal)?.into_parts();
        let cx = Ctx {
            pull_through: true,
            principal: None,
            ..*self
        };
        cx.manifest_put(t.local.as_str(), &d.to_string(), &parts, Body::Full(bytes))
            .await
            .map_err(|e| {
                if e.code == Code::ManifestInvalid {
                    RegistryError::new(
                        Code::Unavailable,
                        format!(
                            "the upstream sent a manifest berth cannot store: {}",
                            e.message
                        ),
                    )
                    .with_status(StatusCode::BAD_GATEWAY)
                } else {
                    e
                }
            })?;
        Ok(())
    }

    /// GET/HEAD `/v2/<name>/blobs/<digest>` of a mirrored repository.
    pub(crate) async fn mirror_blob(
        &self,
        t: &Target,
        d: &str,
        head: bool,
        req: &Parts,
    ) -> Result<Response<Body>> {
        let local = t.local.as_str();
        let d = digest(d)?;
        // The bytes' size, if the store holds them (for any repository).
        let stored = match self.store.blob_head(&d).await {
            Ok(info) => Some(info.size),
            Err(StorageError::NotFound) => None,
            Err(e) => return Err(store_err(e)),
        };
        if stored.is_some() && self.has_blob(&t.local, &d).await? {
            let resp = self.blob_get(local, &d.to_string(), head, req).await;
            return tagged(resp, CacheResult::Hit);
        }
        let mirror = self.mirror();
        if head || stored.is_some() {
            // A HEAD fetches nothing; bytes another repository holds need only the upstream's
            // word that this repository has them too.
            let answer = self.ask(t, Method::HEAD, format!("blobs/{d}"), None).await;
            let Answer::Ok(resp) = answer else {
                return Err(answer.into_error(blob_unknown));
            };
            if let Some(size) = stored {
                self.link_blob(&t.local, &d, size).await?;
                let resp = self.blob_get(local, &d.to_string(), head, req).await;
                return tagged(resp, CacheResult::Revalidated);
            }
            let mut reply = blob_reply(&d, None);
            if let Some(n) = resp.headers().get(header::CONTENT_LENGTH) {
                reply = reply.header(header::CONTENT_LENGTH, n.to_str().unwrap_or("0"));
            }
            return Ok(reply.body(Body::Empty));
        }
        // One fetch per blob: the first request asks upstream, the others read its bytes.
        let (tee, lead) = mirror.flight(&t.local, &d);
        if !lead {
            let size = tee.opened().await.map_err(|()| {
                RegistryError::new(Code::Unavailable, "the upstream fetch of this blob failed")
                    .with_status(StatusCode::BAD_GATEWAY)
            })?;
            if let Some(reader) = tee.reader(true) {
                let resp = Ok(blob_reply(&d, size).body(Body::stream(reader)));
                return tagged(resp, CacheResult::Miss);
            }
            // Too late to share its bytes: wait for them in the store.
            tee.stored().await.map_err(|e| {
                RegistryError::new(Code::Unavailable, e).with_status(StatusCode::BAD_GATEWAY)
            })?;
            let resp = self.blob_get(local, &d.to_string(), head, req).await;
            return tagged(resp, CacheResult::Miss);
        }
        let opening = Opening(&tee);
        let store_reader = tee.reader(false).expect("a new tee takes readers");
        let client = tee.reader(true).expect("a new tee takes readers");
        let answer = self.ask(t, Method::GET, format!("blobs/{d}"), None).await;
        let Answer::Ok(resp) = answer else {
            mirror.forget(&t.local, &d, &tee);
            return Err(answer.into_error(blob_unknown));
        };
        let size = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        tee.drive(mirror.writer.write(
            d.clone(),
            t.local.clone(),
            self.env.now(),
            Body::stream(store_reader),
        ));
        tee.open(resp.into_body().into_stream(), size);
        drop(opening);
        tagged(
            Ok(blob_reply(&d, size).body(Body::stream(client))),
            CacheResult::Miss,
        )
    }

    /// GET `/v2/<name>/referrers/<digest>` of a mirrored repository: the upstream's list when
    /// it answers (it knows of referrers not pulled yet), the cached one otherwise.
    pub(crate) async fn mirror_referrers(
        &self,
        t: &Target,
        d: &str,
        req: &Parts,
    ) -> Result<Response<Body>> {
        let local = t.local.as_str();
        let d = digest(d)?;
        let mut path = format!("referrers/{d}");
        if let Some(q) = req.uri.query() {
            path.push('?');
            path.push_str(q);
        }
        if let Answer::Ok(resp) = self.ask(t, Method::GET, path, None).await {
            let filtered = resp.headers().get("oci-filters-applied").cloned();
            let limit = self.config.max_manifest_size;
            if let Ok(bytes) = resp.into_body().collect(limit).await
                && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()
            {
                let mut reply = Reply::new(StatusCode::OK)
                    .header(
                        header::CONTENT_TYPE,
                        "application/vnd.oci.image.index.v1+json",
                    )
                    .header(header::CONTENT_LENGTH, bytes.len().to_string());
                if let Some(f) = filtered.as_ref().and_then(|v| v.to_str().ok()) {
                    reply = reply.header("oci-filters-applied", f);
                }
                return Ok(reply.body(Body::Full(bytes)));
            }
        }
        self.referrers(local, &d.to_string(), req).await
    }
}

fn blob_reply(d: &Digest, size: Option<u64>) -> Reply {
    let mut reply = Reply::new(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("docker-content-digest", d.to_string())
        .header(header::ETAG, format!("\"{d}\""))
        .header(header::CONTENT_SECURITY_POLICY, super::blobs::CONTENT_CSP);
    if let Some(n) = size {
        reply = reply.header(header::CONTENT_LENGTH, n.to_string());
    }
    reply
}
