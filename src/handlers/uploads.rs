//! Blob uploads: monolithic, chunked and streamed, and cross-repository mounts
//! (end-4a, end-4b, end-4c, end-5, end-6, end-11, end-13, end-14).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode, header};

use super::{Reply, body_err, content_length, digest, repo, store_err};
use crate::body::Body;
use crate::digest::{Algorithm, BodyCheck, Checked, Digest};
use crate::error::{Code, RegistryError};
use crate::gc::hold::Held;
use crate::keys;
use crate::names::RepoName;
use crate::query::Query;
use crate::range;
use crate::registry::{Claim, Ctx, Result};
use crate::session::{ChunkError, SHORT_CHUNKS, Session, chunk_length, valid_id};
use crate::storage::{ListOptions, PutMode, Storage, StorageError, Version};

fn created(name: &RepoName, d: &Digest) -> Response<Body> {
    Reply::new(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{d}"))
        .header("docker-content-digest", d.to_string())
        .empty()
}

fn progress(status: StatusCode, name: &RepoName, id: &str, offset: u64) -> Reply {
    Reply::new(status)
        .header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}"))
        .header(header::RANGE, range::upload_progress(offset))
        .header("docker-upload-uuid", id)
}

fn unknown_upload() -> RegistryError {
    RegistryError::new(Code::BlobUploadUnknown, "upload unknown to registry")
}

/// An upload claimed for one request, with its session as loaded.
struct Open<'a> {
    name: RepoName,
    session: Session,
    version: Version,
    _claim: Claim<'a>,
}

impl<S: Storage> Ctx<'_, S> {
    /// end-4a, end-4b, end-4c, end-11: POST `/v2/<name>/blobs/uploads/`.
    pub(crate) async fn upload_post(
        &self,
        name: &str,
        req: &Parts,
        body: Body,
    ) -> Result<Response<Body>> {
        let name = repo(name)?;
        let q = Query::parse(req.uri.query());
        if let Some(m) = q.get("mount") {
            let d = digest(m)?;
            let from = q
                .get("from")
                .filter(|f| !f.is_empty())
                .map(repo)
                .transpose()?;
            if self.mount(&name, &d, from.as_ref()).await? {
                return Ok(created(&name, &d));
            }
        } else if let Some(d) = q.get("digest") {
            let d = digest(d)?;
            let len = content_length(req)?;
            self.put_blob(&name, &d, body, len).await?;
            return Ok(created(&name, &d));
        }
        let (algorithm, fixed) = match q.get("digest-algorithm") {
            Some(a) => (
                a.parse::<Algorithm>()
                    .map_err(|e| RegistryError::new(Code::DigestInvalid, e.to_string()))?,
                true,
            ),
            None => (Algorithm::Sha256, false),
        };
        self.make_room(&name).await?;
        let id = self.env.new_id();
        if self.config.max_uploads.is_some() {
            self.store
                .meta_put(
                    &keys::open_upload(&name, &id),
                    Bytes::new(),
                    PutMode::Create,
                )
                .await
                .map_err(store_err)?;
        }
        let state = self.store.upload_start(&id).await.map_err(store_err)?;
        let mut session = Session::new(name.as_str(), algorithm, fixed, self.env.now(), state);
        session.owner = self.principal.clone();
        self.save_session(&id, &session, PutMode::Create).await?;
        let mut reply = progress(StatusCode::ACCEPTED, &name, &id, 0);
        if let Some(min) = self.config.chunk_min_length {
            reply = reply.header("oci-chunk-min-length", min.to_string());
        }
        Ok(reply.empty())
    }

    /// Refuse a new upload while the repository holds `max_uploads` open ones. Only then are they
    /// looked at: expired ones go, and so do entries whose session is gone (a crash between the
    /// writes, or one finishing now).
    async fn make_room(&self, name: &RepoName) -> Result<()> {
        let Some(max) = self.config.max_uploads else {
            return Ok(());
        };
        let prefix = keys::open_uploads(name);
        let options = ListOptions {
            after: None,
            limit: Some(max),
        };
        let ids = self
            .store
            .meta_list(&prefix, options)
            .await
            .map_err(store_err)?;
        if ids.len() < max {
            return Ok(());
        }
        let now = self.env.now();
        let mut open = 0;
        for id in ids {
            if self.live_session(&id, now).await.map_err(store_err)? {
                open += 1;
            } else {
                self.purge_one(&id, now).await.map_err(store_err)?;
                self.forget_open(name, &id).await.map_err(store_err)?;
            }
        }
        if open >= max {
            return Err(RegistryError::new(
                Code::TooManyRequests,
                format!("{name} has {open} uploads open, the most allowed: finish or cancel one"),
            )
            .with_status(StatusCode::TOO_MANY_REQUESTS));
        }
        Ok(())
    }

    /// Drop upload `id`'s entry among `name`'s open uploads.
    async fn forget_open(&self, name: &RepoName, id: &str) -> Result<(), StorageError> {
        match self
            .store
            .meta_delete(&keys::open_upload(name, id), None)
            .await
        {
            Ok(()) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Delete upload `id`'s session document and its entry among the repository's open
    /// uploads, in that order (a leftover entry is what `make_room` knows how to drop).
    async fn forget_session(&self, id: &str, session: &Session) -> Result<(), StorageError> {
        match self.store.meta_delete(&keys::upload(id), None).await {
            Ok(()) | Err(StorageError::NotFound) => {}
            Err(e) => return Err(e),
        }
        match session.name.parse::<RepoName>() {
            Ok(name) => self.forget_open(&name, id).await,
            Err(_) => Ok(()),
        }
    }

    /// Refuse, before reading a byte, a blob that would end past the size limit.
    fn check_size(&self, end: Option<u64>) -> Result<()> {
        match (self.config.max_blob_size, end) {
            (Some(limit), Some(end)) if end > limit => Err(body_err(&std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                BodyCheck::TooLarge { limit },
            ))),
            _ => Ok(()),
        }
    }

    /// A whole blob in one request: verified while it streams into the store.
    async fn put_blob(
        &self,
        name: &RepoName,
        d: &Digest,
        body: Body,
        len: Option<u64>,
    ) -> Result<()> {
        let len = len.or(match &body {
            Body::Foreign(f) => f.len(),
            _ => None,
        });
        self.check_size(len)?;
        if let Some(len) = len
            && self.link(name, d).await?.is_none()
        {
            self.check_quota(name, len).await?;
        }
        self.hold_for_upload(d).await?;
        let body = match body {
            // The adapter's own stream: the store verifies it by the platform's means.
            Body::Foreign(f) => Body::Foreign(f),
            other => Body::exact(
                Checked::digest(other.into_stream(), d.clone(), len)
                    .at_most(self.config.max_blob_size),
                len,
            ),
        };
        let size = self.store.blob_put(d, body).await.map_err(store_err)?;
        self.link_blob(name, d, size).await
    }

    /// end-11: link a blob that exists in `from` (or, with no `from`, anywhere).
    async fn mount(&self, name: &RepoName, d: &Digest, from: Option<&RepoName>) -> Result<bool> {
        if let Some(from) = from
            && !self.has_blob(from, d).await?
        {
            return Ok(false);
        }
        // Gone, or going: the client uploads it instead.
        let Held::Present(info) = self.hold(d).await? else {
            return Ok(false);
        };
        if self.link(name, d).await?.is_none() {
            self.check_quota(name, info.size).await?;
        }
        self.link_blob(name, d, info.size).await?;
        Ok(true)
    }

    async fn load_session(&self, name: &RepoName, id: &str) -> Result<(Session, Version)> {
        if !valid_id(id) {
            return Err(unknown_upload());
        }
        let stored = match self.store.meta_get(&keys::upload(id)).await {
            Ok(s) => s,
            Err(StorageError::NotFound) => return Err(unknown_upload()),
            Err(e) => return Err(store_err(e)),
        };
        let session: Session =
            serde_json::from_slice(&stored.value).map_err(RegistryError::internal)?;
        // Another repository's, or another caller's: as if it did not exist.
        if session.name != name.as_str() || session.owner != self.principal {
            return Err(unknown_upload());
        }
        if session.expired(self.env.now(), self.config.upload_expiry) {
            self.drop_session(id, &session).await?;
            return Err(unknown_upload());
        }
        Ok((session, stored.version))
    }

    async fn save_session(&self, id: &str, session: &Session, mode: PutMode) -> Result<()> {
        let json = serde_json::to_vec(session).map_err(RegistryError::internal)?;
        match self
            .store
            .meta_put(&keys::upload(id), Bytes::from(json), mode)
            .await
        {
            Ok(_) => Ok(()),
            Err(StorageError::Precondition) => Err(RegistryError::new(
                Code::BlobUploadInvalid,
                "the upload changed during this request",
            )
            .with_status(StatusCode::CONFLICT)),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn drop_session(&self, id: &str, session: &Session) -> Result<()> {
        self.store
            .upload_abort(id, &session.store)
            .await
            .map_err(store_err)?;
        self.forget_session(id, session).await.map_err(store_err)
    }

    /// Check a chunk's `Content-Range` and `Content-Length` against the session; the number of
    /// bytes the body must hold, if known.
    fn chunk_len(
        &self,
        req: &Parts,
        name: &RepoName,
        id: &str,
        session: &Session,
    ) -> Result<Option<u64>> {
        let cr = super::header(req, header::CONTENT_RANGE);
        chunk_length(session.offset, cr, content_length(req)?).map_err(|e| match e {
            ChunkError::Malformed => {
                RegistryError::new(Code::BlobUploadInvalid, "malformed Content-Range")
            }
            ChunkError::LengthMismatch => RegistryError::new(
                Code::SizeInvalid,
                "Content-Length does not match Content-Range",
            ),
            ChunkError::WrongOffset { start } => {
                let mut e = RegistryError::new(
                    Code::BlobUploadInvalid,
                    format!(
                        "chunk starts at {start}, the upload is at {}",
                        session.offset
                    ),
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE);
                for (k, v) in progress(StatusCode::OK, name, id, session.offset)
                    .empty()
                    .headers()
                {
                    if k != header::CONTENT_LENGTH {
                        e = e.with_header(k.clone(), v.clone());
                    }
                }
                e
            }
        })
    }

    /// Stream a chunk into the upload, hashing it on the way.
    async fn append(
        &self,
        id: &str,
        session: &mut Session,
        body: Body,
        len: Option<u64>,
    ) -> Result<()> {
        if len == Some(0) || matches!(body, Body::Empty) {
            return Ok(());
        }
        if session.short_chunks >= SHORT_CHUNKS {
            return Err(RegistryError::new(
                Code::BlobUploadInvalid,
                format!(
                    "{SHORT_CHUNKS} chunks of this upload were shorter than OCI-Chunk-Min-Length ({}): send chunks at least that long",
                    self.config.chunk_min_length.unwrap_or(0)
                ),
            ));
        }
        self.check_size(len.map(|n| session.offset + n))?;
        // What this chunk may add before the blob passes the limit.
        let room = self
            .config
            .max_blob_size
            .map(|limit| limit.saturating_sub(session.offset));
        let hasher = session
            .hasher()
            .ok_or_else(|| RegistryError::internal("unreadable hash state"))?;
        let slot = Arc::new(Mutex::new(Some(hasher)));
        let chunk = Body::exact(
            Checked::feeding(body.into_stream(), slot.clone(), len).at_most(room),
            len,
        );
        let new_len = self
            .store
            .upload_append(id, &mut session.store, session.offset, chunk)
            .await
            .map_err(|e| match e {
                StorageError::NotFound => unknown_upload(),
                e => store_err(e),
            })?;
        let hasher = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        session.hash = hasher
            .ok_or_else(|| RegistryError::internal("hash state lost"))?
            .save();
        if self
            .config
            .chunk_min_length
            .is_some_and(|min| new_len - session.offset < min)
        {
            session.short_chunks += 1;
        }
        session.offset = new_len;
        session.touched = self.env.now();
        Ok(())
    }

    /// Claim upload `id` of repository `name` for this request and load its session: the
    /// start of every request that changes an upload.
    async fn open(&self, name: &str, id: &str) -> Result<Open<'_>> {
        let name = repo(name)?;
        let claim = self.uploads.claim(id).ok_or_else(|| {
            RegistryError::new(
                Code::BlobUploadInvalid,
                "another request is writing to this upload",
            )
            .with_status(StatusCode::CONFLICT)
        })?;
        let (session, version) = self.load_session(&name, id).await?;
        Ok(Open {
            name,
            session,
            version,
            _claim: claim,
        })
    }

    /// end-13: GET `/v2/<name>/blobs/uploads/<id>`.
    pub(crate) async fn upload_status(&self, name: &str, id: &str) -> Result<Response<Body>> {
        let name = repo(name)?;
        let (session, _) = self.load_session(&name, id).await?;
        Ok(progress(StatusCode::NO_CONTENT, &name, id, session.offset).empty())
    }

    /// end-5: PATCH a chunk (with `Content-Range`) or the whole stream (without).
    pub(crate) async fn upload_patch(
        &self,
        name: &str,
        id: &str,
        req: &Parts,
        body: Body,
    ) -> Result<Response<Body>> {
        let Open {
            name,
            mut session,
            version,
            ..
        } = self.open(name, id).await?;
        let len = self.chunk_len(req, &name, id, &session)?;
        if let Some(len) = len {
            self.check_quota(&name, session.offset + len).await?;
        }
        self.append(id, &mut session, body, len).await?;
        session.touched = self.env.now();
        self.save_session(id, &session, PutMode::Update(version))
            .await?;
        Ok(progress(StatusCode::ACCEPTED, &name, id, session.offset).empty())
    }

    /// end-6: PUT `<location>?digest=<digest>`, with an optional last chunk.
    pub(crate) async fn upload_put(
        &self,
        name: &str,
        id: &str,
        req: &Parts,
        body: Body,
    ) -> Result<Response<Body>> {
        let Open {
            name, mut session, ..
        } = self.open(name, id).await?;
        let q = Query::parse(req.uri.query());
        let d = q
            .get("digest")
            .ok_or_else(|| {
                RegistryError::new(Code::DigestInvalid, "the closing PUT needs ?digest=")
            })
            .and_then(digest)?;
        // `rehash`: the bytes so far were hashed with another algorithm, which the client did not
        // choose; they are hashed again with the digest's once all are stored.
        let rehash = match session.closing_hasher(d.algorithm()) {
            Some(hasher) => {
                session.hash = hasher.save();
                false
            }
            None if session.may_rehash(d.algorithm()) => true,
            None => {
                return Err(RegistryError::new(
                    Code::DigestInvalid,
                    format!(
                        "this upload is hashed with another algorithm; start it with ?digest-algorithm={}",
                        d.algorithm()
                    ),
                ));
            }
        };
        let len = self.chunk_len(req, &name, id, &session)?;
        if session.offset == 0 {
            // The whole blob in the closing PUT: one put, as a POST with `?digest=` would. A store
            // may stream it in one request (S3) rather than through the session's parts, and a
            // platform body (a Worker's request stream) reaches storage untouched.
            self.put_blob(&name, &d, body, len).await?;
            self.drop_session(id, &session).await?;
            return Ok(created(&name, &d));
        }
        let linked = self.link(&name, &d).await?.is_some();
        if !linked && let Some(len) = len {
            self.check_quota(&name, session.offset + len).await?;
        }
        self.append(id, &mut session, body, len).await?;
        let actual = session
            .hasher()
            .ok_or_else(|| RegistryError::internal("unreadable hash state"))?
            .finish();
        if rehash {
            return self.finish_rehashed(&name, id, &session, &actual, &d).await;
        }
        if actual != d {
            self.drop_session(id, &session).await?;
            return Err(RegistryError::new(
                Code::DigestInvalid,
                format!("content digest {actual} does not match {d}"),
            ));
        }
        if !linked && len.is_none() {
            // Only now is the size known: over the quota, the upload goes.
            if let Err(e) = self.check_quota(&name, session.offset).await {
                self.drop_session(id, &session).await?;
                return Err(e);
            }
        }
        self.hold_for_upload(&d).await?;
        self.store
            .upload_finish(id, &session.store, &d, session.offset)
            .await
            .map_err(|e| match e {
                // The session outlived its bytes (a crash between the two): start again.
                StorageError::NotFound => unknown_upload(),
                e => store_err(e),
            })?;
        self.link_blob(&name, &d, session.offset).await?;
        self.forget_session(id, &session).await.map_err(store_err)?;
        Ok(created(&name, &d))
    }

    /// Close an upload whose bytes hashed to `hashed` under the digest `d` of another algorithm:
    /// store them as the blob `hashed` (verified, unlinked), then copy that through `d`'s check
    /// as a monolithic push would. The closing PUT pays one more read and write of the blob, and
    /// only uploads that named neither the algorithm nor a sha256 digest pay it. The unlinked
    /// `hashed` blob is garbage collection's to take.
    async fn finish_rehashed(
        &self,
        name: &RepoName,
        id: &str,
        session: &Session,
        hashed: &Digest,
        d: &Digest,
    ) -> Result<Response<Body>> {
        self.hold_for_upload(hashed).await?;
        self.store
            .upload_finish(id, &session.store, hashed, session.offset)
            .await
            .map_err(|e| match e {
                StorageError::NotFound => unknown_upload(),
                e => store_err(e),
            })?;
        self.forget_session(id, session).await.map_err(store_err)?;
        let read = self.store.blob_get(hashed, None).await.map_err(store_err)?;
        let body = Body::stream(read.body.into_stream());
        self.put_blob(name, d, body, Some(read.size)).await?;
        Ok(created(name, d))
    }

    /// end-14: DELETE `<location>` cancels the upload.
    pub(crate) async fn upload_cancel(&self, name: &str, id: &str) -> Result<Response<Body>> {
        let open = self.open(name, id).await?;
        self.drop_session(id, &open.session).await?;
        Ok(Reply::new(StatusCode::NO_CONTENT).empty())
    }

    /// Whether upload `id` has a readable session that has not expired. A gone session is not
    /// live, and neither is one that cannot be read.
    async fn live_session(&self, id: &str, now: u64) -> Result<bool, StorageError> {
        match self.store.meta_get(&keys::upload(id)).await {
            Ok(stored) => Ok(serde_json::from_slice::<Session>(&stored.value)
                .is_ok_and(|s| !s.expired(now, self.config.upload_expiry))),
            Err(StorageError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Drop upload sessions idle for longer than the configured expiry, with their bytes.
    /// Returns how many were dropped. Adapters call it now and then.
    pub async fn purge_uploads(&self) -> Result<usize, StorageError> {
        let now = self.env.now();
        let ids = self
            .store
            .meta_list(keys::UPLOADS, Default::default())
            .await?;
        let mut dropped = 0;
        // One session's storage error must not keep the rest: go on, report the first.
        let mut first_error = None;
        for id in ids {
            match self.purge_one(&id, now).await {
                Ok(true) => dropped += 1,
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(dropped)
    }

    /// Drop one upload session if it is expired and unclaimed; whether it was.
    async fn purge_one(&self, id: &str, now: u64) -> Result<bool, StorageError> {
        let id = id.to_owned();
        // Look before claiming: a claim held on a live session, even briefly, would turn a
        // client's request away with 409.
        if self.live_session(&id, now).await? {
            return Ok(false);
        }
        let Some(_claim) = self.uploads.claim(&id) else {
            return Ok(false);
        };
        // Touched since the first look?
        if self.live_session(&id, now).await? {
            return Ok(false);
        }
        let session = match self.store.meta_get(&keys::upload(&id)).await {
            // An unreadable session still goes, bytes and all (its state is lost).
            Ok(s) => serde_json::from_slice::<Session>(&s.value)
                .unwrap_or_else(|_| Session::new("", Algorithm::Sha256, false, 0, String::new())),
            Err(StorageError::NotFound) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.store.upload_abort(&id, &session.store).await?;
        self.forget_session(&id, &session).await?;
        Ok(true)
    }
}
