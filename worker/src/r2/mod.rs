//! [`Storage`] over an R2 bucket.
//!
//! ```text
//! blobs/<alg>/<hex>         a blob's bytes, or a pointer to them: an empty object whose custom
//!                           metadata names the object holding the bytes and their size
//! chunked/<id>              a chunked upload's multipart object; once complete, what a pointer
//!                           names (the bytes are never copied to blobs/)
//! upload/<id>/open          marker: the upload is open
//! upload/<id>/p-<nonce>     bytes of an upload that do not fill a part yet
//! meta/<key>                the core's metadata documents (keys as in berth::keys)
//! ```
//!
//! Bytes stay out of wasm where they can: a blob put with a platform body streams into R2 with
//! R2's own checksum, and a blob read hands R2's stream back as it is. A chunked upload's bytes
//! pass through wasm once, where the core hashes them; they are cut into equal parts of an R2
//! multipart upload, and what does not fill a part waits in pending objects. The part list and
//! pending objects are in the state string the core keeps in its upload session, so every
//! append may land on a new isolate. A failed append changes nothing the saved state refers to:
//! pending objects get fresh keys and are deleted only once a later state no longer names them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;

use bytes::Bytes;
use worker::{Bucket, Conditional, Data, Object, Range};

use berth::digest::BodyCheck;
use berth::{
    Algorithm, BlobRead, Body, ByteRange, Digest, ListOptions, PutMode, Storage, StorageError,
    Stored, Version,
};

use crate::body::JsBody;
use crate::{js, text};

mod upload;

type Result<T, E = StorageError> = std::result::Result<T, E>;

/// R2's floor for every part but the last.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// R2's ceiling on the number of parts.
pub const MAX_PARTS: u64 = 10_000;
/// An append holds up to about two parts in wasm memory, and a Worker has 128 MB.
pub const MAX_PART_SIZE: u64 = 64 << 20;
/// 16 MiB parts: 10,000 of them make 156 GiB, far past the 10 GiB a blob must reach, while an
/// append holds at most about two parts in memory (well inside a Worker's 128 MB).
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;

const TARGET: &str = "berth-target";
const SIZE: &str = "berth-size";

pub struct R2Store {
    bucket: Bucket,
    part_size: u64,
    /// Where each blob read in this request lives. Blobs never change, so a request that asks
    /// for a blob's size and then its bytes follows a pointer once.
    located: RefCell<HashMap<Digest, Located>>,
}

#[derive(Clone)]
struct Located {
    key: String,
    size: u64,
}

fn blob_key(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

fn meta_key(key: &str) -> String {
    format!("meta/{key}")
}

fn r2_err(op: &str, key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Other(format!("r2 {op} {key}: {e}"))
}

fn absent() -> Conditional {
    Conditional {
        etag_does_not_match: Some("*".into()),
        ..Default::default()
    }
}

/// R2 refused a put because the bytes did not match the checksum it was given. Its message
/// ends `Actual SHA-256 was: <hex>`; the mismatch becomes the same error a checked stream gives,
/// so the core answers DIGEST_INVALID.
fn checksum_mismatch(expected: &Digest, message: &str) -> Option<StorageError> {
    let actual = text::checksum_mismatch(message)?.and_then(|hex| {
        format!("{}:{hex}", expected.algorithm())
            .parse::<Digest>()
            .ok()
    });
    let err = match actual {
        Some(actual) => io::Error::new(
            io::ErrorKind::InvalidData,
            BodyCheck::DigestMismatch {
                expected: expected.clone(),
                actual,
            },
        ),
        // Not a BodyCheck (that needs the actual digest): the core answers BLOB_UPLOAD_INVALID.
        None => io::Error::new(io::ErrorKind::InvalidData, message.to_owned()),
    };
    Some(StorageError::Body(err))
}

impl R2Store {
    /// The object's metadata; `NotFound` when there is none.
    async fn head(&self, key: &str) -> Result<Object> {
        self.bucket
            .head(key)
            .await
            .map_err(|e| r2_err("head", key, e))?
            .ok_or(StorageError::NotFound)
    }

    pub fn new(bucket: Bucket, part_size: u64) -> R2Store {
        R2Store {
            bucket,
            part_size: part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            located: RefCell::new(HashMap::new()),
        }
    }

    /// Where a blob's bytes are, following a pointer.
    async fn locate(&self, d: &Digest) -> Result<Located> {
        if let Some(l) = self.located.borrow().get(d) {
            return Ok(l.clone());
        }
        let key = blob_key(d);
        let obj = self.head(&key).await?;
        let located = located(key, &obj)?;
        self.located.borrow_mut().insert(d.clone(), located.clone());
        Ok(located)
    }

    /// Put bytes already in hand as the blob `d`, with R2 checking them against the digest.
    async fn put_blob_data(&self, d: &Digest, data: Data, size: u64) -> Result<u64> {
        let key = blob_key(d);
        let put = self.bucket.put(&key, data).only_if(absent());
        let raw = text::unhex(d.hex()).ok_or_else(|| StorageError::other("digest hex"))?;
        let put = match d.algorithm() {
            Algorithm::Sha256 => put.sha256(raw),
            Algorithm::Sha512 => put.sha512(raw),
        };
        match put.execute().await {
            Ok(Some(obj)) => Ok(obj.size()),
            // There already: blobs are content-addressed, so it holds these very bytes.
            Ok(None) => self.locate(d).await.map(|l| l.size).or(Ok(size)),
            Err(e) => {
                let msg = e.to_string();
                Err(checksum_mismatch(d, &msg).unwrap_or_else(|| r2_err("put", &key, msg)))
            }
        }
    }
}

impl R2Store {
    /// Every object key under `prefix` (for tests that check what is left in the bucket).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let mut list = self.bucket.list().prefix(prefix);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            let listed = list
                .execute()
                .await
                .map_err(|e| r2_err("list", prefix, e))?;
            keys.extend(listed.objects().iter().map(Object::key));
            match listed.cursor() {
                Some(c) if listed.truncated() => cursor = Some(c),
                _ => return Ok(keys),
            }
        }
    }
}

fn located(key: String, obj: &Object) -> Result<Located> {
    let meta = obj.custom_metadata().unwrap_or_default();
    match meta.get(TARGET) {
        Some(target) => {
            let size = meta
                .get(SIZE)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| r2_err("head", &key, "pointer without a size"))?;
            Ok(Located {
                key: target.clone(),
                size,
            })
        }
        None => Ok(Located {
            size: obj.size(),
            key,
        }),
    }
}

impl Storage for R2Store {
    async fn blob_size(&self, digest: &Digest) -> Result<u64> {
        self.locate(digest).await.map(|l| l.size)
    }

    async fn blob_get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        let (key, size, obj) = match range {
            None => {
                // Most blobs are not pointers: one get, and a second only for a pointer.
                let key = blob_key(digest);
                let obj = self
                    .bucket
                    .get(&key)
                    .execute()
                    .await
                    .map_err(|e| r2_err("get", &key, e))?
                    .ok_or(StorageError::NotFound)?;
                let at = located(key.clone(), &obj)?;
                if at.key == key {
                    (key, at.size, obj)
                } else {
                    let obj = self
                        .bucket
                        .get(&at.key)
                        .execute()
                        .await
                        .map_err(|e| r2_err("get", &at.key, e))?
                        .ok_or_else(|| r2_err("get", &at.key, "pointer to nothing"))?;
                    (at.key, at.size, obj)
                }
            }
            Some(r) => {
                let at = self.locate(digest).await?;
                if r.is_empty() {
                    return Ok(BlobRead {
                        size: at.size,
                        body: Body::Empty,
                    });
                }
                let obj = self
                    .bucket
                    .get(&at.key)
                    .range(Range::OffsetWithLength {
                        offset: r.start,
                        length: r.len(),
                    })
                    .execute()
                    .await
                    .map_err(|e| r2_err("get", &at.key, e))?
                    .ok_or(StorageError::NotFound)?;
                (at.key, at.size, obj)
            }
        };
        let len = range.map_or(size, |r| r.len());
        let stream = match obj.body().map(|b| b.response_body()) {
            Some(Ok(worker::ResponseBody::Stream(s))) => s,
            Some(Ok(worker::ResponseBody::Empty)) | None if len == 0 => {
                return Ok(BlobRead {
                    size,
                    body: Body::Empty,
                });
            }
            _ => return Err(r2_err("get", &key, "no body")),
        };
        Ok(BlobRead {
            size,
            body: JsBody::body(stream, Some(len)),
        })
    }

    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        let body = match JsBody::take(body) {
            // The pass-through: the request body streams into R2, which checks the digest.
            Ok(JsBody {
                stream,
                len: Some(len),
            }) => {
                return self
                    .put_blob_data(digest, Data::ReadableStream(stream), len)
                    .await;
            }
            Ok(js) => Body::stream(berth::digest::Checked::digest(
                js::read_stream(&js.stream),
                digest.clone(),
                None,
            )),
            Err(body) => body,
        };
        self.put_stream(digest, body).await
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        let at = self.locate(digest).await?;
        let key = blob_key(digest);
        // The pointer first, so that no pointer is ever left naming deleted bytes.
        self.bucket
            .delete(&key)
            .await
            .map_err(|e| r2_err("delete", &key, e))?;
        if at.key != key {
            self.bucket
                .delete(&at.key)
                .await
                .map_err(|e| r2_err("delete", &at.key, e))?;
        }
        self.located.borrow_mut().remove(digest);
        Ok(())
    }

    async fn upload_start(&self, id: &str) -> Result<String> {
        self.start(id).await
    }

    async fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        self.append(id, state, offset, body).await
    }

    async fn upload_finish(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        self.finish(id, state, digest, size).await
    }

    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        self.abort(id, state).await
    }

    async fn meta_get(&self, key: &str) -> Result<Stored> {
        let k = meta_key(key);
        let obj = self
            .bucket
            .get(&k)
            .execute()
            .await
            .map_err(|e| r2_err("get", &k, e))?
            .ok_or(StorageError::NotFound)?;
        let version = Version(obj.etag());
        let value = match obj.body() {
            Some(b) => b.bytes().await.map_err(|e| r2_err("read", &k, e))?,
            None => Vec::new(),
        };
        Ok(Stored {
            value: Bytes::from(value),
            version,
        })
    }

    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        let k = meta_key(key);
        let put = self.bucket.put(&k, Data::Bytes(value.to_vec()));
        // R2's etag is the MD5 of the value: an update succeeds while the document still holds
        // the bytes the writer read, which is what compare-and-set needs.
        let (put, refused) = match &mode {
            PutMode::Overwrite => (put, StorageError::Precondition),
            PutMode::Create => (put.only_if(absent()), StorageError::AlreadyExists),
            PutMode::Update(v) => (
                put.only_if(Conditional {
                    etag_matches: Some(v.0.clone()),
                    ..Default::default()
                }),
                StorageError::Precondition,
            ),
        };
        match put.execute().await.map_err(|e| r2_err("put", &k, e))? {
            Some(obj) => Ok(Version(obj.etag())),
            None => Err(refused),
        }
    }

    async fn meta_delete(&self, key: &str) -> Result<()> {
        let k = meta_key(key);
        self.head(&k).await?;
        self.bucket
            .delete(&k)
            .await
            .map_err(|e| r2_err("delete", &k, e))
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        let full = meta_key(prefix);
        let mut want = options.limit.unwrap_or(usize::MAX);
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        while want > 0 {
            let mut list = self
                .bucket
                .list()
                .prefix(&full)
                .limit(want.min(1000) as u32);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            } else if let Some(after) = options.after {
                list = list.start_after(format!("{full}{after}"));
            }
            let listed = list.execute().await.map_err(|e| r2_err("list", &full, e))?;
            for obj in listed.objects() {
                let key = obj.key();
                if let Some(rel) = key.strip_prefix(&full) {
                    keys.push(rel.to_owned());
                    want -= 1;
                    if want == 0 {
                        break;
                    }
                }
            }
            match listed.cursor() {
                Some(c) if listed.truncated() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(keys)
    }
}
