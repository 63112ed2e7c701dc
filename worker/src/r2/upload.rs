//! Uploads over R2 multipart: equal parts, pending objects for what does not fill one, and the
//! state the core keeps between requests (see the module above for the key layout).

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::StreamExt;
use js_sys::futures::JsFuture;
use wasm_bindgen::prelude::*;
use worker::{Conditional, Data, MultipartUpload, Object, UploadedPart};

use berth::storage::multipart::{Pending, UploadState};
use berth::{Body, Digest, StorageError};

use super::{MAX_PARTS, R2Store, Result, SIZE, TARGET, absent, blob_key, r2_err};
use crate::js;

fn chunked_key(id: &str) -> String {
    format!("chunked/{id}")
}

fn upload_prefix(id: &str) -> String {
    format!("upload/{id}/")
}

fn open_key(id: &str) -> String {
    format!("upload/{id}/open")
}

fn pending_key(id: &str, nonce: &str) -> String {
    format!("upload/{id}/p-{nonce}")
}

#[wasm_bindgen(inline_js = r#"
// One part of a multipart upload, streamed into R2 while its bytes arrive: R2 stores it as the
// request brings it, instead of after the last byte. One write is in flight at a time.
export class PartUpload {
  constructor(bucket, key, uploadId, n, len) {
    const { readable, writable } = new FixedLengthStream(len);
    this.writer = writable.getWriter();
    this.last = undefined;
    this.done = bucket.resumeMultipartUpload(key, uploadId).uploadPart(n, readable);
    this.done.catch(() => {});
  }

  // `bytes` views wasm memory, which may move once this yields: it is copied first, and goes
  // in once the previous write is taken.
  async write(bytes) {
    const copy = bytes.slice();
    await this.last;
    this.last = this.writer.write(copy);
    this.last.catch(() => {});
  }

  // Every byte written: the part's etag.
  async finish() {
    await this.last;
    await this.writer.close();
    return (await this.done).etag;
  }

  abort(reason) {
    this.writer.abort(reason).catch(() => {});
  }
}
"#)]
extern "C" {
    type PartUpload;

    #[wasm_bindgen(constructor)]
    fn new(bucket: &JsValue, key: &str, upload_id: &str, n: u16, len: f64) -> PartUpload;

    #[wasm_bindgen(method)]
    fn write(this: &PartUpload, bytes: &[u8]) -> js_sys::Promise;

    #[wasm_bindgen(method)]
    fn finish(this: &PartUpload) -> js_sys::Promise;

    #[wasm_bindgen(method)]
    fn abort(this: &PartUpload, reason: &str);
}

/// A part being streamed, and how many bytes it still needs.
struct Streaming(PartUpload, u64);

impl Drop for Streaming {
    /// Unfinished (the body failed or ended early): R2 is told, and stores nothing.
    fn drop(&mut self) {
        if self.1 > 0 {
            self.0.abort("append failed");
        }
    }
}

/// Appends bytes to an upload: fills parts of exactly the upload's part size, and parks the rest
/// in a pending object. A part the body is known to fill (its length is known) streams into R2
/// as its bytes arrive; one it may not fill is gathered in memory and sent once full.
struct Appender<'a> {
    store: &'a R2Store,
    id: &'a str,
    st: UploadState,
    /// New bytes not yet in a part or a pending object.
    buf: Vec<u8>,
    /// Bytes the body has still to bring, when its length is known (`Body::len`: the core
    /// checked it against the request's `Content-Length`).
    coming: Option<u64>,
    streaming: Option<Streaming>,
}

impl Appender<'_> {
    fn room(&self) -> usize {
        (self.st.part - self.st.pending_len()) as usize - self.buf.len()
    }

    async fn push(&mut self, mut chunk: Bytes) -> Result<()> {
        while !chunk.is_empty() {
            let streams = self.streaming.is_some()
                || (self.buf.is_empty()
                    && self.coming.unwrap_or(0) + chunk.len() as u64 >= self.room() as u64);
            let take = if streams {
                self.write(&chunk).await?
            } else {
                let take = self.room().min(chunk.len());
                self.buf.extend_from_slice(&chunk[..take]);
                if self.room() == 0 {
                    let full = std::mem::take(&mut self.buf);
                    self.write(&full).await?;
                }
                take
            };
            self.st.len += take as u64;
            drop(chunk.split_to(take));
        }
        Ok(())
    }

    /// Write what the open part takes of `bytes` (opening the next one, its pending bytes
    /// first, if none is); a part that is full is finished. How many bytes it took.
    async fn write(&mut self, bytes: &[u8]) -> Result<usize> {
        let mut part = match self.streaming.take() {
            Some(part) => part,
            None => self.open_part().await?,
        };
        let take = part.1.min(bytes.len() as u64) as usize;
        wait(part.0.write(&bytes[..take]), "upload part").await?;
        part.1 -= take as u64;
        if part.1 > 0 {
            self.streaming = Some(part);
        } else {
            let etag = wait(part.0.finish(), "upload part").await?;
            self.st.parts.push(etag.as_string().unwrap_or_default());
        }
        Ok(take)
    }

    /// The next part, open: the pending bytes are in it.
    async fn open_part(&mut self) -> Result<Streaming> {
        let n = self.next_part().await?;
        let key = chunked_key(self.id);
        let mp = self.st.mp.as_deref().unwrap_or_default();
        let part = PartUpload::new(self.store.bucket.as_ref(), &key, mp, n, self.st.part as f64);
        let mut part = Streaming(part, self.st.part);
        if !self.st.pending.is_empty() {
            let data = self.store.load_pending(self.id, &self.st, 0).await?;
            wait(part.0.write(&data), "upload part").await?;
            part.1 -= data.len() as u64;
            let used = std::mem::take(&mut self.st.pending);
            self.st.drop.extend(used.into_iter().map(|p| p.k));
        }
        Ok(part)
    }

    /// The number of the next part, with the multipart begun if it was not yet.
    async fn next_part(&mut self) -> Result<u16> {
        if self.st.mp.is_none() {
            let key = chunked_key(self.id);
            let mp = self
                .store
                .bucket
                .create_multipart_upload(&key)
                .execute()
                .await
                .map_err(|e| r2_err("create multipart", &key, e))?;
            self.st.mp = Some(mp.upload_id().await);
        }
        let n = self.st.parts.len() as u64 + 1;
        if n > MAX_PARTS {
            return Err(StorageError::other(format!(
                "more than {MAX_PARTS} parts of {} bytes",
                self.st.part
            )));
        }
        Ok(n as u16)
    }

    /// The body ended: what is left in the buffer waits in a new pending object.
    async fn park(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let nonce = js::random_hex(8);
        let key = pending_key(self.id, &nonce);
        let n = self.buf.len() as u64;
        let obj = self
            .store
            .bucket
            .put(&key, Data::Bytes(std::mem::take(&mut self.buf)))
            .execute()
            .await
            .map_err(|e| r2_err("put", &key, e))?
            .ok_or_else(|| r2_err("put", &key, "refused"))?;
        self.st.pending.push(Pending {
            k: nonce,
            n,
            e: obj.etag(),
        });
        Ok(())
    }

    async fn feed(&mut self, body: Body) -> Result<()> {
        let mut stream = body.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            self.coming = self.coming.map(|c| c.saturating_sub(chunk.len() as u64));
            self.push(chunk).await?;
        }
        if self.streaming.is_some() {
            // Fewer bytes than it said: the part is dropped unfinished, and so is the append.
            return Err(StorageError::other("the body ended before its length"));
        }
        Ok(())
    }
}

/// A JS promise's value; its rejection as an R2 error.
async fn wait(p: js_sys::Promise, op: &str) -> Result<JsValue> {
    JsFuture::from(p)
        .await
        .map_err(|e| StorageError::unavailable(format!("r2 {op}: {}", js::error_text(&e))))
}

impl R2Store {
    fn multipart(&self, id: &str, st: &UploadState) -> Result<MultipartUpload> {
        let mp = st
            .mp
            .as_deref()
            .ok_or_else(|| StorageError::other("upload has no multipart"))?;
        self.bucket
            .resume_multipart_upload(chunked_key(id), mp)
            .map_err(|e| r2_err("resume", &chunked_key(id), e))
    }

    /// The pending bytes of an upload, checked against the etags the state recorded.
    async fn load_pending(&self, id: &str, st: &UploadState, extra: usize) -> Result<Vec<u8>> {
        let total = st.pending_len() as usize;
        let mut out = Vec::with_capacity(total + extra);
        for p in &st.pending {
            let key = pending_key(id, &p.k);
            let cond = Conditional {
                etag_matches: Some(p.e.clone()),
                ..Default::default()
            };
            let obj = self
                .bucket
                .get(&key)
                .only_if(cond)
                .execute()
                .await
                .map_err(|e| r2_err("get", &key, e))?
                .ok_or(StorageError::NotFound)?;
            let body = obj
                .body()
                .ok_or_else(|| r2_err("get", &key, "changed since it was written"))?;
            let bytes = body.bytes().await.map_err(|e| r2_err("read", &key, e))?;
            if bytes.len() as u64 != p.n {
                return Err(r2_err("read", &key, "wrong length"));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Delete everything under `upload/<id>/`: the marker and pending objects, including
    /// leftovers of appends whose state was never saved.
    async fn clear_upload(&self, id: &str) -> Result<()> {
        let prefix = upload_prefix(id);
        loop {
            let listed = self
                .bucket
                .list()
                .prefix(&prefix)
                .limit(1000)
                .execute()
                .await
                .map_err(|e| r2_err("list", &prefix, e))?;
            let keys: Vec<String> = listed.objects().iter().map(Object::key).collect();
            if keys.is_empty() {
                return Ok(());
            }
            self.bucket
                .delete_multiple(keys)
                .await
                .map_err(|e| r2_err("delete", &prefix, e))?;
            if !listed.truncated() {
                return Ok(());
            }
        }
    }

    /// Make an upload's bytes (its parts, pending objects and `tail`) the blob `d`.
    async fn complete(
        &self,
        id: &str,
        st: &UploadState,
        tail: Vec<u8>,
        d: &Digest,
        size: u64,
    ) -> Result<()> {
        if st.parts.is_empty() {
            // Less than a part: one put of the bytes, checked by R2 once more.
            let mut data = self.load_pending(id, st, tail.len()).await?;
            data.extend_from_slice(&tail);
            drop(tail);
            let n = data.len() as u64;
            if n != size {
                return Err(StorageError::other(format!(
                    "upload holds {n} bytes, not {size}"
                )));
            }
            self.put_blob_data(d, Data::Bytes(data)).await?;
            return Ok(());
        }
        let mp = self.multipart(id, st)?;
        let mut parts: Vec<UploadedPart> = st
            .parts
            .iter()
            .enumerate()
            .map(|(i, etag)| UploadedPart::new(i as u16 + 1, etag.clone()))
            .collect();
        if !st.pending.is_empty() || !tail.is_empty() {
            let mut last = self.load_pending(id, st, tail.len()).await?;
            last.extend_from_slice(&tail);
            drop(tail);
            if parts.len() as u64 >= MAX_PARTS {
                return Err(StorageError::other(format!("more than {MAX_PARTS} parts")));
            }
            let n = parts.len() as u16 + 1;
            let mp_id = st.mp.as_deref().unwrap_or_default();
            let part = PartUpload::new(
                self.bucket.as_ref(),
                &chunked_key(id),
                mp_id,
                n,
                last.len() as f64,
            );
            let mut part = Streaming(part, last.len() as u64);
            wait(part.0.write(&last), "upload part").await?;
            part.1 = 0;
            let etag = wait(part.0.finish(), "upload part").await?;
            parts.push(UploadedPart::new(n, etag.as_string().unwrap_or_default()));
        }
        // R2 checks every part's etag: if a racing append replaced a part, this fails rather
        // than assemble bytes the digest was not checked against.
        let key = chunked_key(id);
        let obj = mp
            .complete(parts)
            .await
            .map_err(|e| r2_err("complete", &key, e))?;
        if obj.size() != size {
            let _ = self.bucket.delete(&key).await;
            return Err(r2_err(
                "complete",
                &key,
                format!("assembled {} bytes, not {size}", obj.size()),
            ));
        }
        let meta = HashMap::from([
            (TARGET.to_owned(), key.clone()),
            (SIZE.to_owned(), size.to_string()),
        ]);
        let pointer = blob_key(d);
        let put = self
            .bucket
            .put(&pointer, Data::Empty)
            .custom_metadata(meta)
            .only_if(absent())
            .execute()
            .await
            .map_err(|e| r2_err("put", &pointer, e))?;
        if put.is_none() {
            // The blob exists already (another upload of the same bytes won): ours is surplus.
            let _ = self.bucket.delete(&key).await;
        }
        Ok(())
    }

    /// Drop an upload's R2 state: its multipart (if any) and everything under `upload/<id>/`.
    /// `chunked/<id>` itself is left alone: once complete it may be what a blob points to.
    async fn release(&self, id: &str, st: Option<&UploadState>) -> Result<()> {
        if let Some(st) = st.filter(|s| s.mp.is_some()) {
            if let Ok(mp) = self.multipart(id, st) {
                // Already aborted or completed is fine.
                let _ = mp.abort().await;
            }
        }
        self.clear_upload(id).await
    }

    pub(super) async fn start(&self, id: &str) -> Result<String> {
        let key = open_key(id);
        let put = self
            .bucket
            .put(&key, Data::Empty)
            .only_if(absent())
            .execute()
            .await
            .map_err(|e| r2_err("put", &key, e))?;
        if put.is_none() {
            return Err(StorageError::AlreadyExists);
        }
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
        if !st.drop.is_empty() {
            let keys: Vec<String> = st.drop.iter().map(|k| pending_key(id, k)).collect();
            self.bucket
                .delete_multiple(keys)
                .await
                .map_err(|e| r2_err("delete", &upload_prefix(id), e))?;
            st.drop.clear();
        }
        let had_multipart = st.mp.is_some();
        let mut app = Appender {
            store: self,
            id,
            st,
            buf: Vec::new(),
            coming: body.len(),
            streaming: None,
        };
        let fed = match app.feed(body).await {
            Ok(()) => app.park().await,
            Err(e) => Err(e),
        };
        if let Err(e) = fed {
            // A multipart begun by this append is named by no saved state: drop it now rather
            // than leave it to the bucket's lifecycle rule.
            if !had_multipart {
                if let Ok(mp) = self.multipart(id, &app.st) {
                    let _ = mp.abort().await;
                }
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
        self.complete(id, &st, Vec::new(), digest, size).await?;
        self.clear_upload(id).await
    }

    pub(super) async fn abort(&self, id: &str, state: &str) -> Result<()> {
        // An unreadable state still names the upload: its objects go all the same.
        let st = UploadState::read(state).ok();
        self.release(id, st.as_ref()).await
    }

    /// Store a checked stream of unknown length as the blob `digest`: one put if it is smaller
    /// than a part, else the upload machinery under an id of its own, dropped if it fails.
    pub(super) async fn put_stream(&self, digest: &Digest, body: Body) -> Result<u64> {
        let mut stream = body.into_stream();
        let mut head = Vec::new();
        while (head.len() as u64) < self.part_size {
            match stream.next().await {
                Some(chunk) => head.extend_from_slice(&chunk.map_err(StorageError::Body)?),
                None => return self.put_blob_data(digest, Data::Bytes(head)).await,
            }
        }
        let id = format!("put-{}", js::random_hex(16));
        let mut app = Appender {
            store: self,
            id: &id,
            st: UploadState {
                part: self.part_size,
                ..Default::default()
            },
            buf: Vec::new(),
            coming: None,
            streaming: None,
        };
        let fed = async {
            app.push(Bytes::from(head)).await?;
            app.feed(Body::Stream(stream)).await?;
            let tail = std::mem::take(&mut app.buf);
            let size = app.st.len;
            self.complete(&id, &app.st, tail, digest, size).await?;
            Ok(size)
        }
        .await;
        let released = self.release(&id, Some(&app.st)).await;
        let size = fed?;
        released?;
        Ok(size)
    }
}
