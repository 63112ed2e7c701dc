//! Uploads over S3 multipart: equal parts (R2's S3 API needs them equal), pending objects for
//! what does not fill one, and the state the core keeps between requests, so that every append
//! may reach another instance. A failed append changes nothing the saved state refers to: its
//! parts are numbered past the saved ones, pending objects get fresh keys and are deleted only
//! once a later state no longer names them.

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{Attribute, Attributes, PutOptions, PutPayload};

use berth::body::ByteStream;
use berth::storage::multipart::{Pending, UploadState};
use berth::{Body, Digest, StorageError};

use super::{MAX_PARTS, Result, S3Store, SIZE, TARGET, blob_key, random_hex, s3_err};

fn chunked_key(id: &str) -> String {
    format!("chunked/{id}")
}

fn upload_dir(id: &str) -> String {
    format!("uploads/{id}")
}

fn open_key(id: &str) -> String {
    format!("uploads/{id}/open")
}

fn pending_key(id: &str, nonce: &str) -> String {
    format!("uploads/{id}/p-{nonce}")
}

/// Appends bytes to a multipart object: fills parts of exactly the part size, and parks the
/// rest in a pending object.
struct Appender<'a> {
    store: &'a S3Store,
    /// The object the multipart upload completes to.
    key: String,
    /// The upload's id (pending objects live under `uploads/<id>/`).
    id: &'a str,
    st: UploadState,
    /// New bytes not yet in a part or a pending object.
    buf: Vec<Bytes>,
    buf_len: u64,
}

impl<'a> Appender<'a> {
    fn new(store: &'a S3Store, key: String, id: &'a str, st: UploadState) -> Appender<'a> {
        Appender {
            store,
            key,
            id,
            st,
            buf: Vec::new(),
            buf_len: 0,
        }
    }

    fn room(&self) -> u64 {
        self.st.part - self.st.pending_len() - self.buf_len
    }

    async fn push(&mut self, mut chunk: Bytes) -> Result<()> {
        while !chunk.is_empty() {
            let take = self.room().min(chunk.len() as u64) as usize;
            self.buf.push(chunk.split_to(take));
            self.buf_len += take as u64;
            self.st.len += take as u64;
            if self.room() == 0 {
                self.flush_part().await?;
            }
        }
        Ok(())
    }

    /// The buffer, with the pending bytes before it: what the next part or the last one holds.
    async fn take_buffered(&mut self) -> Result<PutPayload> {
        let mut chunks = Vec::new();
        if !self.st.pending.is_empty() {
            chunks.extend(self.store.load_pending(self.id, &self.st).await?);
            let used = std::mem::take(&mut self.st.pending);
            self.st.drop.extend(used.into_iter().map(|p| p.k));
        }
        chunks.append(&mut self.buf);
        self.buf_len = 0;
        Ok(chunks.into_iter().collect())
    }

    /// A part is full: the pending bytes and the buffer become the next part.
    async fn flush_part(&mut self) -> Result<()> {
        let data = self.take_buffered().await?;
        self.upload_part(data).await
    }

    async fn upload_part(&mut self, data: PutPayload) -> Result<()> {
        let store = self.store;
        let path = store.path(&self.key);
        if self.st.mp.is_none() {
            let mp = store
                .s3
                .create_multipart(&path)
                .await
                .map_err(|e| s3_err("create multipart", &self.key, e))?;
            self.st.mp = Some(mp);
        }
        let n = self.st.parts.len() as u64;
        if n >= MAX_PARTS {
            return Err(StorageError::other(format!(
                "more than {MAX_PARTS} parts of {} bytes",
                self.st.part
            )));
        }
        let mp = self.st.mp.clone().unwrap_or_default();
        let part = store
            .s3
            .put_part(&path, &mp, n as usize, data)
            .await
            .map_err(|e| s3_err("upload part", &self.key, e))?;
        self.st.parts.push(part.content_id);
        Ok(())
    }

    /// The body ended: what is left in the buffer waits in a new pending object.
    async fn park(&mut self) -> Result<()> {
        if self.buf_len == 0 {
            return Ok(());
        }
        let nonce = random_hex(8);
        let key = pending_key(self.id, &nonce);
        let n = self.buf_len;
        let data: PutPayload = std::mem::take(&mut self.buf).into_iter().collect();
        self.buf_len = 0;
        let e = self.store.put(&key, data, PutOptions::default()).await?;
        self.st.pending.push(Pending { k: nonce, n, e });
        Ok(())
    }

    async fn feed(&mut self, mut stream: ByteStream) -> Result<()> {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            self.push(chunk).await?;
        }
        Ok(())
    }

    /// Upload what is buffered and pending as the last part and complete the object.
    async fn complete(&mut self) -> Result<()> {
        if !self.st.pending.is_empty() || self.buf_len > 0 {
            let last = self.take_buffered().await?;
            self.upload_part(last).await?;
        }
        let mp = self
            .st
            .mp
            .clone()
            .ok_or_else(|| StorageError::other("upload has no multipart"))?;
        let parts = self
            .st
            .parts
            .iter()
            .map(|e| PartId {
                content_id: e.clone(),
            })
            .collect();
        // S3 checks every part's ETag: if a racing append replaced a part, this fails rather
        // than assemble bytes the digest was not checked against.
        self.store
            .s3
            .complete_multipart(&self.store.path(&self.key), &mp, parts)
            .await
            .map_err(|e| s3_err("complete multipart", &self.key, e))?;
        Ok(())
    }

    /// Drop the multipart upload, if one was begun (already gone is fine).
    async fn abort_multipart(&self) {
        if let Some(mp) = &self.st.mp {
            let path = self.store.path(&self.key);
            if let Err(e) = self.store.s3.abort_multipart(&path, mp).await {
                tracing::debug!("s3: abort multipart {}: {e}", self.key);
            }
        }
    }
}

impl S3Store {
    /// The pending bytes of an upload, checked against the ETags the state recorded.
    async fn load_pending(&self, id: &str, st: &UploadState) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(st.pending.len());
        for p in &st.pending {
            let key = pending_key(id, &p.k);
            let got = self.get(&key, None).await?;
            if got.meta.e_tag.as_deref() != Some(p.e.as_str()) {
                return Err(s3_err("get", &key, "changed since it was written"));
            }
            let bytes = got.bytes().await.map_err(|e| s3_err("read", &key, e))?;
            if bytes.len() as u64 != p.n {
                return Err(s3_err("read", &key, "wrong length"));
            }
            out.push(bytes);
        }
        Ok(out)
    }

    /// Delete everything under `uploads/<id>/`: the marker and pending objects, including
    /// leftovers of appends whose state was never saved.
    async fn clear_upload(&self, id: &str) -> Result<()> {
        for key in self.keys(&upload_dir(id)).await? {
            self.delete(&key).await?;
        }
        Ok(())
    }

    pub(super) async fn start(&self, id: &str) -> Result<String> {
        let options = PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        self.put(&open_key(id), PutPayload::new(), options).await?;
        UploadState {
            part: self.part_size,
            ..Default::default()
        }
        .write()
    }

    pub(super) async fn append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        let mut st = UploadState::read(state)?;
        if st.len != offset {
            return Err(StorageError::Precondition);
        }
        self.head(&open_key(id)).await?;
        // The state we were given is saved, so what it lists to drop is garbage now.
        for k in std::mem::take(&mut st.drop) {
            self.delete(&pending_key(id, &k)).await?;
        }
        let had_multipart = st.mp.is_some();
        let mut app = Appender::new(self, chunked_key(id), id, st);
        let fed = match app.feed(body.into_stream()).await {
            Ok(()) => app.park().await,
            Err(e) => Err(e),
        };
        if let Err(e) = fed {
            // A multipart begun by this append is named by no saved state: drop it now.
            if !had_multipart {
                app.abort_multipart().await;
            }
            return Err(e);
        }
        let len = app.st.len;
        *state = app.st.write()?;
        Ok(len)
    }

    pub(super) async fn finish(
        &self,
        id: &str,
        state: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let st = UploadState::read(state)?;
        if st.len != size {
            return Err(StorageError::Precondition);
        }
        self.head(&open_key(id)).await?;
        if st.parts.is_empty() {
            // Less than a part (the core checked the digest): one put of the bytes.
            let data: PutPayload = self.load_pending(id, &st).await?.into_iter().collect();
            if data.content_length() as u64 != size {
                return Err(StorageError::other(format!(
                    "upload holds {} bytes, not {size}",
                    data.content_length()
                )));
            }
            self.put_blob(digest, data).await?;
        } else {
            let key = chunked_key(id);
            let mut app = Appender::new(self, key.clone(), id, st);
            app.complete().await?;
            self.point(digest, &key, size).await?;
        }
        self.clear_upload(id).await
    }

    /// Make `blobs/<digest>` a pointer to the complete object `key`, unless the blob exists
    /// already (another upload of the same bytes won): then `key` is surplus.
    async fn point(&self, digest: &Digest, key: &str, size: u64) -> Result<()> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::Metadata(TARGET.into()), key.to_owned().into());
        attributes.insert(Attribute::Metadata(SIZE.into()), size.to_string().into());
        let options = PutOptions {
            mode: object_store::PutMode::Create,
            attributes,
            ..Default::default()
        };
        match self
            .put(&blob_key(digest), PutPayload::new(), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(StorageError::AlreadyExists) => self.delete(key).await,
            Err(e) => Err(e),
        }
    }

    pub(super) async fn abort(&self, id: &str, state: &str) -> Result<()> {
        // An unreadable state still names the upload: its objects go all the same.
        if let Ok(st) = UploadState::read(state) {
            Appender::new(self, chunked_key(id), id, st)
                .abort_multipart()
                .await;
        }
        self.clear_upload(id).await
    }

    /// Store a stream of a part or more, of a length not said or above a single PUT's, as the
    /// blob `digest`: a multipart upload straight to its key, completed only once the checked
    /// stream has ended without an error. `head` holds the bytes already read.
    pub(super) async fn put_stream(
        &self,
        digest: &Digest,
        head: Vec<Bytes>,
        rest: ByteStream,
    ) -> Result<u64> {
        let id = format!("put-{}", random_hex(16));
        let st = UploadState {
            part: self.part_size,
            ..Default::default()
        };
        let mut app = Appender::new(self, blob_key(digest), &id, st);
        let done = async {
            for chunk in head {
                app.push(chunk).await?;
            }
            app.feed(rest).await?;
            // Never parked: the tail is still in the buffer.
            app.complete().await?;
            Ok(app.st.len)
        }
        .await;
        if done.is_err() {
            app.abort_multipart().await;
        }
        done
    }
}
