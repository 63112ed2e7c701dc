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
//! R2 has no conditional delete, so a delete that must not undo a newer write (`meta_delete`
//! with a version) replaces the document, by a conditional put, with a *retired* marker: an
//! object with the `berth-retired` custom metadata, which reads and listings treat as absent
//! and a `Create` may replace. A marker is never removed (an unconditional delete could remove
//! a document written after it); it costs one small object per such key.
//!
//! Bytes stay out of wasm where they can: a blob put with a platform body streams into R2 with
//! R2's own checksum, and a blob read hands R2's stream back as it is. A chunked upload's bytes
//! pass through wasm once, where the core hashes them; they are cut into equal parts of an R2
//! multipart upload, and what does not fill a part waits in pending objects. The part list and
//! pending objects are in the state string the core keeps in its upload session, so every
//! append may land on a new isolate. A failed append changes nothing the saved state refers to:
//! pending objects get fresh keys and are deleted only once a later state no longer names them.

use std::collections::HashMap;
use std::io;

use bytes::Bytes;
use worker::{Bucket, Conditional, Data, Include, Object, Range};

use berth::digest::BodyCheck;
use berth::storage::{BlobEntry, BlobInfo, RangeSpec, resolve_range};
use berth::{
    Algorithm, BlobRead, Body, Digest, ListOptions, PutMode, Storage, StorageError, Stored, Version,
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
/// Custom metadata of a retired metadata document (see the module's notes).
const RETIRED: &str = "berth-retired";

/// Cheap to clone (a handle on the binding): the mirror writes fetched blobs through a clone.
#[derive(Clone)]
pub struct R2Store {
    bucket: Bucket,
    part_size: u64,
}

/// Where a blob's bytes are: its own object, or the one its pointer names.
struct Located {
    key: String,
    size: u64,
    /// When the blob appeared (its object or its pointer was written).
    modified: u64,
}

fn blob_key(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

fn meta_key(key: &str) -> String {
    format!("meta/{key}")
}

/// R2 failed or refused: the request may succeed later (503).
fn r2_err(op: &str, key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::unavailable(format!("r2 {op} {key}: {e}"))
}

fn retired(obj: &Object) -> bool {
    obj.custom_metadata().is_ok_and(|m| m.contains_key(RETIRED))
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
    pub fn new(bucket: Bucket, part_size: u64) -> R2Store {
        R2Store {
            bucket,
            part_size: part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
        }
    }

    /// The object's metadata; `NotFound` when there is none.
    async fn head(&self, key: &str) -> Result<Object> {
        self.bucket
            .head(key)
            .await
            .map_err(|e| r2_err("head", key, e))?
            .ok_or(StorageError::NotFound)
    }

    /// The object with its body (a range of it, if asked); `NotFound` when there is none.
    async fn get(&self, key: &str, range: Option<Range>) -> Result<Object> {
        let mut get = self.bucket.get(key);
        if let Some(r) = range {
            get = get.range(r);
        }
        get.execute()
            .await
            .map_err(|e| r2_err("get", key, e))?
            .ok_or(StorageError::NotFound)
    }

    /// Where a blob's bytes are, following a pointer.
    async fn locate(&self, d: &Digest) -> Result<Located> {
        let key = blob_key(d);
        let obj = self.head(&key).await?;
        located(key, &obj)
    }

    /// Put bytes already in hand as the blob `d`, with R2 checking them against the digest.
    /// Never conditional on the blob being absent: "it is there already" would then let
    /// bytes R2 never checked count as a verified push of someone else's blob. A second put of
    /// the same digest writes the same bytes again.
    async fn put_blob_data(&self, d: &Digest, data: Data) -> Result<u64> {
        let key = blob_key(d);
        let put = self.bucket.put(&key, data);
        let raw = text::unhex(d.hex()).ok_or_else(|| StorageError::other("digest hex"))?;
        let put = match d.algorithm() {
            Algorithm::Sha256 => put.sha256(raw),
            Algorithm::Sha512 => put.sha512(raw),
        };
        match put.execute().await {
            Ok(Some(obj)) => Ok(obj.size()),
            Ok(None) => Err(r2_err("put", &key, "refused without a condition")),
            Err(e) => {
                let msg = e.to_string();
                Err(checksum_mismatch(d, &msg).unwrap_or_else(|| r2_err("put", &key, msg)))
            }
        }
    }

    /// Objects under `prefix` after `start_after`, with their custom metadata, handed to
    /// `take` in key order until it has taken `limit` (it answers whether it took one).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: Option<usize>,
        mut take: impl FnMut(Object) -> Result<bool>,
    ) -> Result<()> {
        let mut want = limit.unwrap_or(usize::MAX);
        let mut cursor: Option<String> = None;
        while want > 0 {
            let mut list = self
                .bucket
                .list()
                .prefix(prefix)
                .include(vec![Include::CustomMetadata])
                .limit(want.min(1000) as u32);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            } else if let Some(after) = &start_after {
                list = list.start_after(after.clone());
            }
            let listed = list
                .execute()
                .await
                .map_err(|e| r2_err("list", prefix, e))?;
            for obj in listed.objects() {
                if take(obj)? {
                    want -= 1;
                    if want == 0 {
                        return Ok(());
                    }
                }
            }
            match listed.cursor() {
                Some(c) if listed.truncated() => cursor = Some(c),
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Replace a retired marker at `k` (from the version it was read at) with `value`.
    async fn revive(&self, k: &str, value: &Bytes) -> Result<Option<Version>> {
        let obj = match self.head(k).await {
            Ok(obj) if retired(&obj) => obj,
            Ok(_) | Err(StorageError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let put = self
            .bucket
            .put(k, Data::Bytes(value.to_vec()))
            .only_if(etag_is(obj.etag()));
        Ok(put
            .execute()
            .await
            .map_err(|e| r2_err("put", k, e))?
            .map(|o| Version(o.etag())))
    }
}

#[cfg(feature = "contract")]
impl R2Store {
    /// Every object key under `prefix` (for tests that check what is left in the bucket).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        self.list(prefix, None, None, |obj| {
            keys.push(obj.key());
            Ok(true)
        })
        .await?;
        Ok(keys)
    }
}

fn located(key: String, obj: &Object) -> Result<Located> {
    let meta = obj.custom_metadata().unwrap_or_default();
    let modified = obj.uploaded().as_millis() / 1000;
    match meta.get(TARGET) {
        Some(target) => {
            let size = meta
                .get(SIZE)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StorageError::other(format!("r2 {key}: pointer without a size")))?;
            Ok(Located {
                key: target.clone(),
                size,
                modified,
            })
        }
        None => Ok(Located {
            size: obj.size(),
            key,
            modified,
        }),
    }
}

/// The digest a `blobs/<alg>/<hex>` key names.
fn blob_digest(key: &str) -> Option<Digest> {
    let (alg, hex) = key.strip_prefix("blobs/")?.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

fn etag_is(etag: String) -> Conditional {
    Conditional {
        etag_matches: Some(etag),
        ..Default::default()
    }
}

impl Storage for R2Store {
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        let at = self.locate(digest).await?;
        Ok(BlobInfo {
            size: at.size,
            modified: Some(at.modified),
        })
    }

    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        let (obj, size, range) = match range {
            // Most blobs are not pointers: one get, and a second only for a pointer.
            None => {
                let key = blob_key(digest);
                let obj = self.get(&key, None).await?;
                let at = located(key.clone(), &obj)?;
                let obj = if at.key == key {
                    obj
                } else {
                    self.get(&at.key, None)
                        .await
                        .map_err(|_| StorageError::other(format!("r2 {key}: pointer to nothing")))?
                };
                (obj, at.size, resolve_range(at.size, None)?)
            }
            // A range needs the size first: where the bytes are and how many, then them.
            Some(spec) => {
                let at = self.locate(digest).await?;
                let r = resolve_range(at.size, Some(spec))?;
                if r.is_empty() {
                    return Ok(BlobRead {
                        size: at.size,
                        range: r,
                        body: Body::Empty,
                    });
                }
                let obj = self
                    .get(
                        &at.key,
                        Some(Range::OffsetWithLength {
                            offset: r.start,
                            length: r.len(),
                        }),
                    )
                    .await?;
                (obj, at.size, r)
            }
        };
        let stream = match obj.body().map(|b| b.response_body()) {
            Some(Ok(worker::ResponseBody::Stream(s))) => s,
            Some(Ok(worker::ResponseBody::Empty)) | None if range.is_empty() => {
                return Ok(BlobRead {
                    size,
                    range,
                    body: Body::Empty,
                });
            }
            _ => return Err(r2_err("get", &obj.key(), "no body")),
        };
        Ok(BlobRead {
            size,
            range,
            body: JsBody::body(stream, Some(range.len())),
        })
    }

    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        let body = match JsBody::take(body) {
            // The pass-through: the request body streams into R2, which checks the digest.
            Ok(JsBody {
                stream,
                len: Some(_),
            }) => {
                return self
                    .put_blob_data(digest, Data::ReadableStream(stream))
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
        Ok(())
    }

    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        // `blobs/<alg>/<hex>` sorts as `<alg>:<hex>` does: the algorithms differ before the
        // separator, and the hex after it compares alike.
        let start_after = options
            .after
            .map(|a| format!("blobs/{}", a.replacen(':', "/", 1)));
        let mut out = Vec::new();
        self.list("blobs/", start_after, options.limit, |obj| {
            let key = obj.key();
            let Some(digest) = blob_digest(&key) else {
                return Ok(false);
            };
            let at = located(key, &obj)?;
            out.push(BlobEntry {
                digest,
                info: BlobInfo {
                    size: at.size,
                    modified: Some(at.modified),
                },
            });
            Ok(true)
        })
        .await?;
        Ok(out)
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
        let obj = self.get(&k, None).await?;
        if retired(&obj) {
            return Err(StorageError::NotFound);
        }
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
            // A retired document counts as absent: Create may take its place.
            None if mode == PutMode::Create => self.revive(&k, &value).await?.ok_or(refused),
            None => Err(refused),
        }
    }

    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        let k = meta_key(key);
        let obj = self.head(&k).await?;
        if retired(&obj) {
            return Err(StorageError::NotFound);
        }
        let Some(want) = expected else {
            return self
                .bucket
                .delete(&k)
                .await
                .map_err(|e| r2_err("delete", &k, e));
        };
        // Retire it, if it is still at the version asked: a unique body, so that the marker's
        // own etag names this retirement and no other.
        let marker = format!("retired {}", js::random_hex(8));
        let put = self
            .bucket
            .put(&k, Data::Bytes(marker.into_bytes()))
            .custom_metadata(HashMap::from([(RETIRED.to_owned(), "1".to_owned())]))
            .only_if(etag_is(want.0.clone()));
        match put.execute().await.map_err(|e| r2_err("put", &k, e))? {
            Some(_) => Ok(()),
            None => Err(StorageError::Precondition),
        }
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        let full = meta_key(prefix);
        let start_after = options.after.map(|a| format!("{full}{a}"));
        let mut keys = Vec::new();
        self.list(&full, start_after, options.limit, |obj| {
            if retired(&obj) {
                return Ok(false);
            }
            let Some(rel) = obj.key().strip_prefix(&full).map(str::to_owned) else {
                return Ok(false);
            };
            keys.push(rel);
            Ok(true)
        })
        .await?;
        Ok(keys)
    }
}
