//! Manifests: pull, push, delete (end-3, end-7, end-9).

use bytes::Bytes;
use futures_util::future::try_join_all;
use http::request::Parts;
use http::{Response, StatusCode, header};

use super::blobs::{CONTENT_CSP, IMMUTABLE, not_found};
use super::{Reply, not_modified, repo, store_err};
use crate::body::Body;
use crate::digest::{Checked, Digest};
use crate::error::{Code, RegistryError};
use crate::events::{Action, Event};
use crate::gc::hold::Held;
use crate::keys;
use crate::links::TagLink;
use crate::manifest::{self, Descriptor, ManifestLink};
use crate::names::{Reference, ReferenceError};
use crate::names::{RepoName, Tag};
use crate::query::Query;
use crate::registry::{Ctx, Result};
use crate::storage::{ListOptions, PutMode, Storage, StorageError};

/// `?tag=` parameters one manifest push may carry (the spec: at least 10; 414 past the cap).
pub(crate) const MAX_TAGS_PER_PUSH: usize = 100;

/// Tags a delete by digest reads, page by page, looking for those naming the manifest.
const DELETE_TAG_PAGE: usize = 1000;

fn manifest_unknown() -> RegistryError {
    RegistryError::new(Code::ManifestUnknown, "manifest unknown to registry")
}

fn reference(s: &str) -> Result<Reference> {
    s.parse().map_err(|e| match e {
        ReferenceError::Digest(e) => RegistryError::new(Code::DigestInvalid, e.to_string()),
        ReferenceError::Tag => RegistryError::new(Code::ManifestInvalid, "invalid tag"),
    })
}

impl<S: Storage> Ctx<'_, S> {
    /// The digest a reference names in this repository.
    async fn resolve(&self, name: &RepoName, r: &Reference) -> Result<Digest> {
        match r {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(t) => {
                let stored = self
                    .store
                    .meta_get(&keys::tag(name, t))
                    .await
                    .map_err(|e| not_found(e, manifest_unknown))?;
                TagLink::parse(&stored.value)
                    .map(|l| l.digest)
                    .ok_or_else(|| RegistryError::internal(format!("corrupt tag {name}:{t}")))
            }
        }
    }

    async fn manifest_link(&self, name: &RepoName, d: &Digest) -> Result<ManifestLink> {
        let stored = self
            .store
            .meta_get(&keys::manifest(name, d))
            .await
            .map_err(|e| not_found(e, manifest_unknown))?;
        serde_json::from_slice(&stored.value).map_err(RegistryError::internal)
    }

    /// end-3: GET/HEAD `/v2/<name>/manifests/<reference>`: the bytes and type as pushed.
    pub(crate) async fn manifest_get(
        &self,
        name: &str,
        r: &str,
        head: bool,
        req: &Parts,
    ) -> Result<Response<Body>> {
        let name = repo(name)?;
        let r = r.parse::<Reference>().map_err(|e| match e {
            ReferenceError::Digest(e) => RegistryError::new(Code::DigestInvalid, e.to_string()),
            ReferenceError::Tag => manifest_unknown(),
        })?;
        let d = self.resolve(&name, &r).await?;
        let link = self.manifest_link(&name, &d).await?;
        let etag = format!("\"{d}\"");
        let mut reply = Reply::new(StatusCode::OK)
            .header(header::CONTENT_TYPE, &link.media_type)
            .header("docker-content-digest", d.to_string())
            .header(header::ETAG, &etag)
            .header(header::CONTENT_SECURITY_POLICY, CONTENT_CSP);
        if matches!(r, Reference::Digest(_)) {
            reply = reply.header(header::CACHE_CONTROL, IMMUTABLE);
        }
        if not_modified(req, &etag) {
            let mut resp = reply.body(Body::Empty);
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(resp);
        }
        let reply = reply.header(header::CONTENT_LENGTH, link.size.to_string());
        if head {
            return Ok(reply.body(Body::Empty));
        }
        if let Some(bytes) = self.manifests.get(&d) {
            return Ok(reply.body(Body::Full(bytes)));
        }
        let blob = self
            .store
            .blob_get(&d, None)
            .await
            .map_err(|e| not_found(e, manifest_unknown))?;
        if !self.manifests.takes(link.size) {
            return Ok(reply.body(blob.body));
        }
        let bytes = blob
            .body
            .collect(link.size as usize)
            .await
            .map_err(|e| match e {
                Some(e) => store_err(StorageError::Body(e)),
                None => RegistryError::internal(format!("manifest {d} is longer than its link")),
            })?;
        // Checked before it is kept: the cache must never pin bytes the store got wrong.
        if Digest::of(d.algorithm(), &bytes) != d {
            return Err(RegistryError::internal(format!(
                "the stored bytes of manifest {d} do not match its digest"
            )));
        }
        self.manifests.put(d, bytes.clone());
        Ok(reply.body(Body::Full(bytes)))
    }

    /// end-7: PUT `/v2/<name>/manifests/<reference>[?tag=..]`.
    pub(crate) async fn manifest_put(
        &self,
        name: &str,
        r: &str,
        req: &Parts,
        body: Body,
    ) -> Result<Response<Body>> {
        let name = repo(name)?;
        let r = reference(r)?;
        let q = Query::parse(req.uri.query());
        if q.all("tag").count() > MAX_TAGS_PER_PUSH {
            return Err(RegistryError::new(
                Code::ManifestInvalid,
                format!("at most {MAX_TAGS_PER_PUSH} tag parameters per push"),
            )
            .with_status(StatusCode::URI_TOO_LONG));
        }
        let mut tags: Vec<Tag> = q
            .all("tag")
            .map(|t| {
                t.parse().map_err(|()| {
                    RegistryError::new(Code::ManifestInvalid, format!("invalid tag {t:?}"))
                })
            })
            .collect::<Result<_>>()?;
        let content_type = super::header(req, header::CONTENT_TYPE).map(str::to_owned);
        let limit = self.config.max_manifest_size;
        let bytes = body.collect(limit).await.map_err(|e| match e {
            None => RegistryError::new(
                Code::SizeInvalid,
                format!("manifest larger than {limit} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE),
            Some(e) => super::body_err(&e),
        })?;
        let d = match &r {
            Reference::Digest(want) => {
                let got = Digest::of(want.algorithm(), &bytes);
                if &got != want {
                    return Err(RegistryError::new(
                        Code::DigestInvalid,
                        format!("manifest digest {got} does not match {want}"),
                    ));
                }
                got
            }
            Reference::Tag(t) => {
                tags.insert(0, t.clone());
                Digest::sha256(&bytes)
            }
        };
        let m = manifest::inspect(&bytes, content_type.as_deref())
            .map_err(|e| RegistryError::new(Code::ManifestInvalid, e.to_string()))?;
        let size = bytes.len() as u64;
        let since = self.env.now();
        if !self.pull_through {
            for t in &tags {
                self.check_immutable(&name, t, Some(&d)).await?;
            }
            self.hold_references(&name, &m).await?;
        }
        // The manifest's own bytes may be there already (the same manifest pushed again).
        let existed = match self.hold(&d).await? {
            Held::Dying => {
                return Err(RegistryError::unavailable(format!(
                    "manifest {d} is being garbage-collected"
                )));
            }
            Held::Present(_) => true,
            Held::Absent => false,
        };
        let new_here = !self.link_exists(&keys::manifest(&name, &d)).await?;
        if new_here && !self.pull_through {
            self.check_quota(&name, size).await?;
        }
        self.in_time(since)?;

        // Bytes first, then the link, the referrer entry, the catalog entry and the tags: a
        // crash in between leaves a manifest that nothing names yet, never a name without a
        // manifest, nor a tag of a repository the catalog does not list.
        if !existed {
            let body = Body::stream(Checked::digest(
                Body::Full(bytes).into_stream(),
                d.clone(),
                Some(size),
            ));
            self.store.blob_put(&d, body).await.map_err(store_err)?;
        }
        let now = self.env.now();
        let link = ManifestLink {
            media_type: m.media_type.clone(),
            size,
            subject: m.subject.as_ref().map(|s| s.digest.clone()),
            at: now,
            pushed: !self.pull_through,
        };
        let link = serde_json::to_vec(&link).map_err(RegistryError::internal)?;
        self.store
            .meta_put(
                &keys::manifest(&name, &d),
                Bytes::from(link),
                PutMode::Overwrite,
            )
            .await
            .map_err(store_err)?;
        if new_here {
            self.add_usage(&name, size).await?;
        }
        if let Some(subject) = &m.subject {
            let entry = Descriptor {
                media_type: m.media_type.clone(),
                digest: d.clone(),
                size,
                artifact_type: m.referrer_artifact_type(),
                annotations: m.annotations.clone(),
                urls: None,
            };
            let entry = serde_json::to_vec(&entry).map_err(RegistryError::internal)?;
            self.store
                .meta_put(
                    &keys::referrer(&name, &subject.digest, &d),
                    Bytes::from(entry),
                    PutMode::Overwrite,
                )
                .await
                .map_err(store_err)?;
        }
        match self
            .store
            .meta_put(&keys::catalog(&name), Bytes::new(), PutMode::Create)
            .await
        {
            Ok(_) | Err(StorageError::AlreadyExists) => {}
            Err(e) => return Err(store_err(e)),
        }
        for t in &tags {
            self.set_tag(&name, t, &d, now).await?;
        }

        let mut reply = Reply::new(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/manifests/{d}"))
            .header("docker-content-digest", d.to_string());
        if let Some(subject) = &m.subject {
            reply = reply.header("oci-subject", subject.digest.to_string());
        }
        if matches!(r, Reference::Digest(_)) {
            for t in &tags {
                reply = reply.header("oci-tag", t.as_str());
            }
        }
        let mut resp = reply.empty();
        if self.pull_through {
            return Ok(resp);
        }
        resp.extensions_mut().insert(Event {
            action: Action::ManifestPushed,
            repository: name.to_string(),
            digest: Some(d.to_string()),
            media_type: Some(m.media_type.clone()),
            size: Some(size),
            tags: tags.iter().map(|t| t.as_str().to_owned()).collect(),
            actor: None,
        });
        Ok(resp)
    }

    /// Point `t` at `d`. An immutable tag is written only if absent, so that of two pushes
    /// racing to set it, the second is checked against the first.
    pub(crate) async fn set_tag(
        &self,
        name: &RepoName,
        t: &Tag,
        d: &Digest,
        now: u64,
    ) -> Result<()> {
        let key = keys::tag(name, t);
        let value = Bytes::from(
            TagLink {
                digest: d.clone(),
                at: now,
            }
            .to_bytes(),
        );
        if !self.pull_through && self.is_immutable(name, t) {
            match self.store.meta_put(&key, value, PutMode::Create).await {
                Ok(_) => return Ok(()),
                Err(StorageError::AlreadyExists) => {
                    return self.check_immutable(name, t, Some(d)).await;
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        self.store
            .meta_put(&key, value, PutMode::Overwrite)
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    /// The tags of `name` that name `d`, with their versions: read a page at a time, a few
    /// reads at once, so that memory is one page and the reads are never all in flight.
    async fn tags_naming(
        &self,
        name: &RepoName,
        d: &Digest,
    ) -> Result<Vec<(String, crate::storage::Version)>> {
        let prefix = keys::tags(name);
        let mut here = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .meta_list(
                    &prefix,
                    ListOptions {
                        after: after.as_deref(),
                        limit: Some(DELETE_TAG_PAGE),
                    },
                )
                .await
                .map_err(store_err)?;
            let mut found = Vec::new();
            for batch in page.chunks(16) {
                found.extend(
                    try_join_all(batch.iter().map(|t| {
                        let key = format!("{prefix}{t}");
                        async move {
                            match self.store.meta_get(&key).await {
                                Ok(s)
                                    if TagLink::parse(&s.value).is_some_and(|l| &l.digest == d) =>
                                {
                                    Ok(Some((t.clone(), key, s.version)))
                                }
                                Ok(_) | Err(StorageError::NotFound) => Ok(None),
                                Err(e) => Err(store_err(e)),
                            }
                        }
                    }))
                    .await?,
                );
            }
            for (t, key, version) in found.into_iter().flatten() {
                if let Ok(tag) = t.parse() {
                    self.check_immutable(name, &tag, None).await?;
                }
                here.push((key, version));
            }
            if page.len() < DELETE_TAG_PAGE {
                return Ok(here);
            }
            after = page.last().cloned();
        }
    }

    async fn link_exists(&self, key: &str) -> Result<bool> {
        match self.store.meta_get(key).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    /// end-9: DELETE by tag drops the tag; by digest, the manifest, its tags and its referrer
    /// entry.
    pub(crate) async fn manifest_delete(&self, name: &str, r: &str) -> Result<Response<Body>> {
        let name = repo(name)?;
        let r = reference(r)?;
        let mut event = Event {
            action: Action::TagDeleted,
            repository: name.to_string(),
            digest: None,
            media_type: None,
            size: None,
            tags: Vec::new(),
            actor: None,
        };
        match r {
            Reference::Tag(t) => {
                self.check_immutable(&name, &t, None).await?;
                self.store
                    .meta_delete(&keys::tag(&name, &t), None)
                    .await
                    .map_err(|e| not_found(e, manifest_unknown))?;
                event.tags.push(t.as_str().to_owned());
            }
            Reference::Digest(d) => {
                let link = self.manifest_link(&name, &d).await?;
                let here = self.tags_naming(&name, &d).await?;
                // Only while they still name this manifest: a tag moved meanwhile stays.
                for (key, version) in here {
                    match self.store.meta_delete(&key, Some(&version)).await {
                        Ok(()) => {
                            let tag = key.strip_prefix(&keys::tags(&name)).unwrap_or(&key);
                            event.tags.push(tag.to_owned());
                        }
                        Err(StorageError::NotFound | StorageError::Precondition) => {}
                        Err(e) => return Err(store_err(e)),
                    }
                }
                if let Some(subject) = &link.subject {
                    ignore_missing(
                        self.store
                            .meta_delete(&keys::referrer(&name, subject, &d), None)
                            .await,
                    )?;
                }
                ignore_missing(
                    self.store
                        .meta_delete(&keys::manifest(&name, &d), None)
                        .await,
                )?;
                event.action = Action::ManifestDeleted;
                event.digest = Some(d.to_string());
                event.media_type = Some(link.media_type.clone());
                event.size = Some(link.size);
            }
        }
        let mut resp = Reply::new(StatusCode::ACCEPTED).empty();
        resp.extensions_mut().insert(event);
        Ok(resp)
    }
}

fn ignore_missing(r: Result<(), StorageError>) -> Result<()> {
    match r {
        Ok(()) | Err(StorageError::NotFound) => Ok(()),
        Err(e) => Err(store_err(e)),
    }
}
