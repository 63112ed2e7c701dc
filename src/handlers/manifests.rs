//! Manifests: pull, push, delete (end-3, end-7, end-9).

use bytes::Bytes;
use futures_util::future::try_join_all;
use http::request::Parts;
use http::{Response, StatusCode, header};

use super::blobs::{IMMUTABLE, not_found};
use super::{Reply, not_modified, repo, store_err};
use crate::body::Body;
use crate::digest::{Checked, Digest};
use crate::error::{Code, RegistryError};
use crate::keys;
use crate::manifest::{self, Descriptor, ManifestLink};
use crate::names::{Reference, ReferenceError};
use crate::names::{RepoName, Tag};
use crate::query::Query;
use crate::registry::{Registry, Result};
use crate::storage::{ListOptions, PutMode, Storage, StorageError};

fn manifest_unknown() -> RegistryError {
    RegistryError::new(Code::ManifestUnknown, "manifest unknown to registry")
}

fn reference(s: &str) -> Result<Reference> {
    s.parse().map_err(|e| match e {
        ReferenceError::Digest(e) => RegistryError::new(Code::DigestInvalid, e.to_string()),
        ReferenceError::Tag => RegistryError::new(Code::ManifestInvalid, "invalid tag"),
    })
}

impl<S: Storage> Registry<S> {
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
                std::str::from_utf8(&stored.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
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
            .header(header::ETAG, &etag);
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
        let blob = self
            .store
            .blob_get(&d, None)
            .await
            .map_err(|e| not_found(e, manifest_unknown))?;
        Ok(reply.body(blob.body))
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
        self.writable(&name)?;
        let q = Query::parse(req.uri.query());
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
            .map_err(|e| RegistryError::new(Code::ManifestInvalid, e))?;
        self.check_references(&name, &m).await?;

        // Bytes first, then the link, the referrer entry and the tags: a crash in between
        // leaves a manifest that nothing names yet, never a name without a manifest.
        let size = bytes.len() as u64;
        let body = Body::stream(Checked::digest(
            Body::Full(bytes).into_stream(),
            d.clone(),
            Some(size),
        ));
        self.store.blob_put(&d, body).await.map_err(store_err)?;
        let link = ManifestLink {
            media_type: m.media_type.clone(),
            size,
            subject: m.subject.as_ref().map(|s| s.digest.clone()),
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
        for t in &tags {
            self.store
                .meta_put(
                    &keys::tag(&name, t),
                    Bytes::from(d.to_string()),
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
        Ok(reply.empty())
    }

    /// Every blob and child manifest the manifest names must be in the repository, except its
    /// subject and non-distributable layers.
    async fn check_references(&self, name: &RepoName, m: &manifest::Manifest) -> Result<()> {
        let blobs = m.blobs.iter().map(|b| async move {
            let ok = self.has_blob(name, &b.digest).await?;
            Ok::<_, RegistryError>((ok, &b.digest, "blob"))
        });
        let children = m.children.iter().map(|c| async move {
            let ok = match self.store.meta_get(&keys::manifest(name, &c.digest)).await {
                Ok(_) => true,
                Err(StorageError::NotFound) => false,
                Err(e) => return Err(store_err(e)),
            };
            Ok((ok, &c.digest, "manifest"))
        });
        let (blobs, children) =
            futures_util::future::join(try_join_all(blobs), try_join_all(children)).await;
        for (ok, d, what) in blobs?.into_iter().chain(children?) {
            if !ok {
                return Err(RegistryError::new(
                    Code::ManifestBlobUnknown,
                    format!("{what} {d} is not in repository {name}"),
                ));
            }
        }
        Ok(())
    }

    /// end-9: DELETE by tag drops the tag; by digest, the manifest, its tags and its referrer
    /// entry.
    pub(crate) async fn manifest_delete(&self, name: &str, r: &str) -> Result<Response<Body>> {
        let name = repo(name)?;
        let r = reference(r)?;
        self.deletes_allowed()?;
        match r {
            Reference::Tag(t) => {
                self.store
                    .meta_delete(&keys::tag(&name, &t))
                    .await
                    .map_err(|e| not_found(e, manifest_unknown))?;
            }
            Reference::Digest(d) => {
                let link = self.manifest_link(&name, &d).await?;
                let digest_text = d.to_string();
                let tags = self
                    .store
                    .meta_list(&keys::tags(&name), ListOptions::default())
                    .await
                    .map_err(store_err)?;
                for t in tags {
                    let key = format!("{}{t}", keys::tags(&name));
                    let points_here = match self.store.meta_get(&key).await {
                        Ok(s) => s.value == digest_text.as_bytes(),
                        Err(StorageError::NotFound) => false,
                        Err(e) => return Err(store_err(e)),
                    };
                    if points_here {
                        ignore_missing(self.store.meta_delete(&key).await)?;
                    }
                }
                if let Some(subject) = &link.subject {
                    ignore_missing(
                        self.store
                            .meta_delete(&keys::referrer(&name, subject, &d))
                            .await,
                    )?;
                }
                ignore_missing(self.store.meta_delete(&keys::manifest(&name, &d)).await)?;
            }
        }
        Ok(Reply::new(StatusCode::ACCEPTED).empty())
    }
}

fn ignore_missing(r: Result<(), StorageError>) -> Result<()> {
    match r {
        Ok(()) | Err(StorageError::NotFound) => Ok(()),
        Err(e) => Err(store_err(e)),
    }
}
