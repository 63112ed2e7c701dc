//! [`Storage`] over an S3-compatible bucket (AWS S3, R2's S3 API, SeaweedFS, MinIO, Ceph...),
//! shared by any number of `berth serve` instances with no lock and no cache that can go stale.
//!
//! ```text
//! <prefix>blobs/<alg>/<hex>      a blob's bytes, or a pointer to them: an empty object whose
//!                                metadata (x-amz-meta-berth-target, -berth-size) names the
//!                                object holding the bytes and their size
//! <prefix>chunked/<id>           a chunked upload's multipart object; once complete, what a
//!                                pointer names (the bytes are never copied)
//! <prefix>uploads/<id>/open      marker: the upload is open
//! <prefix>uploads/<id>/p-<nonce> bytes of an upload that do not fill a part yet
//! <prefix>meta/<encoded key>     the core's metadata documents, one byte `v` then the value
//! ```
//!
//! This is the native twin of the Worker's R2 store (`worker/src/r2`): the same pointers, parts
//! and pending objects, and the same *retired* markers. S3 has no reliable conditional DELETE,
//! so a delete that must not undo a newer write (`meta_delete` with a version) replaces the
//! document, by a conditional put, with an empty object: reads and listings treat an empty
//! object as absent (a live document is never empty: it starts with `v`), and a `Create` may
//! replace it. A marker is never removed; it costs one small object per such key.
//!
//! Listing order: S3 lists keys in byte order, but stores built on a directory tree (SeaweedFS)
//! walk it depth first, so `a/b` comes before `a-b`. Metadata keys are therefore stored flat in
//! one directory, `.` and `/` written as `.0` and `.1`: no `/` is left, and byte order is kept
//! (nothing sorts between `.` and `/`). Blob keys are fixed-length hex in two directories and
//! sort alike either way.
//!
//! With redirects on (`--redirect`), a blob GET is answered with a presigned URL of the object
//! holding its bytes, and the client fetches them from the bucket; HEAD is still answered here.
//!
//! A blob is never collected in memory: a put whose length is known streams as one PUT (see
//! `single`); otherwise at most one part (the part size, 16 MiB by default) is in flight per
//! upload or put. Every request goes to the bucket: only digest-addressed facts
//! could be cached, and none are.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, GetRange, GetResult, ObjectStore, PutOptions,
    PutPayload, RetryConfig, UpdateVersion,
};

use berth::storage::{BlobEntry, BlobInfo, RangeSpec, resolve_range};
use berth::{BlobRead, Body, Digest, ListOptions, PutMode, Storage, StorageError, Stored, Version};

mod creds;
mod open;
mod single;
mod upload;

pub use open::{OpenError, S3Config};

type Result<T, E = StorageError> = std::result::Result<T, E>;

/// S3's floor for every part but the last.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's ceiling on the number of parts.
pub const MAX_PARTS: u64 = 10_000;
/// 16 MiB parts: 10,000 of them make 156 GiB, and one part is what an upload holds in memory.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;

const TARGET: &str = "berth-target";
const SIZE: &str = "berth-size";
/// A random tag on each conditional write (user metadata), to know our own object when a
/// retried write is refused.
const WRITE: &str = "berth-write";
/// The first byte of every live metadata document (an empty object is a retired one).
const LIVE: u8 = b'v';

pub struct S3Store {
    s3: Arc<AmazonS3>,
    /// Sends the presigned PUTs that stream a blob (see `single`).
    http: reqwest::Client,
    /// Prepended to every key: empty, or ending in `/`.
    prefix: String,
    part_size: u64,
    /// For messages: `s3://bucket/prefix`.
    url: String,
    /// How long the presigned URLs blob GETs are redirected to stay valid; `None`: no
    /// redirects.
    redirect: Option<Duration>,
}

/// Where a blob's bytes are: its own object, or the one its pointer names.
struct Located {
    /// Relative to the prefix.
    key: String,
    size: u64,
    modified: u64,
}

fn blob_key(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

/// The digest a `blobs/<alg>/<hex>` key names.
fn blob_digest(key: &str) -> Option<Digest> {
    let (alg, hex) = key.strip_prefix("blobs/")?.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// A metadata key as stored: flat, in the same byte order (see the module's notes).
fn encode_meta(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for c in key.chars() {
        match c {
            '.' => out.push_str(".0"),
            '/' => out.push_str(".1"),
            c => out.push(c),
        }
    }
    out
}

fn decode_meta(stored: &str) -> Option<String> {
    let mut out = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => match chars.next()? {
                '0' => out.push('.'),
                '1' => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

fn meta_key(key: &str) -> String {
    format!("meta/{}", encode_meta(key))
}

/// The bucket failed or refused: the request may succeed later (503), and the log says why.
fn s3_err(op: &str, key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::unavailable(format!("s3 {op} {key}: {e}"))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // Only uniqueness matters here; fall back to the clock if the OS has no randomness.
    if getrandom::fill(&mut buf).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (t >> (8 * (i % 16))) as u8);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn update(version: &str) -> object_store::PutMode {
    object_store::PutMode::Update(UpdateVersion {
        e_tag: Some(version.to_owned()),
        version: None,
    })
}

fn is_empty_blob(d: &Digest) -> bool {
    *d == Digest::of(d.algorithm(), b"")
}

impl S3Store {
    /// The store over a client already built (see [`S3Config::open`] for the checked way in).
    fn new(
        s3: AmazonS3,
        http: reqwest::Client,
        prefix: String,
        part_size: u64,
        url: String,
    ) -> S3Store {
        S3Store {
            s3: Arc::new(s3),
            http,
            prefix,
            part_size: part_size.max(MIN_PART_SIZE),
            url,
            redirect: None,
        }
    }

    /// `s3://bucket/prefix`, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    /// A listed path relative to the prefix.
    fn relative<'a>(&self, p: &'a Path) -> Option<&'a str> {
        p.as_ref().strip_prefix(self.prefix.as_str())
    }

    /// The object's metadata and attributes, without its bytes; `NotFound` when absent.
    async fn head(&self, key: &str) -> Result<GetResult> {
        let options = GetOptions {
            head: true,
            ..Default::default()
        };
        match self.s3.get_opts(&self.path(key), options).await {
            Ok(r) => Ok(r),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
            Err(e) => Err(s3_err("head", key, e)),
        }
    }

    async fn get(&self, key: &str, range: Option<GetRange>) -> Result<GetResult> {
        let options = GetOptions {
            range,
            ..Default::default()
        };
        match self.s3.get_opts(&self.path(key), options).await {
            Ok(r) => Ok(r),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
            Err(e) => Err(s3_err("get", key, e)),
        }
    }

    /// A conditional write that reached the bucket but whose answer was lost (a 5xx on the way
    /// back) is sent again by the client and refused: the write's tag tells that refusal from
    /// another writer's, so a write that happened is never reported as lost.
    async fn put(&self, key: &str, payload: PutPayload, mut options: PutOptions) -> Result<String> {
        let tag = match options.mode {
            object_store::PutMode::Overwrite => None,
            _ => Some(random_hex(12)),
        };
        if let Some(tag) = &tag {
            let name = Attribute::Metadata(WRITE.into());
            options.attributes.insert(name, tag.clone().into());
        }
        let refused = match self.s3.put_opts(&self.path(key), payload, options).await {
            Ok(r) => {
                return r
                    .e_tag
                    .ok_or_else(|| s3_err("put", key, "no ETag in the answer"));
            }
            Err(object_store::Error::AlreadyExists { .. }) => StorageError::AlreadyExists,
            // Some servers answer 404 to If-Match on a missing key.
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => StorageError::Precondition,
            Err(e) => return Err(s3_err("put", key, e)),
        };
        let Some(tag) = tag else {
            return Err(refused);
        };
        match self.head(key).await {
            Ok(h)
                if h.attributes
                    .get(&Attribute::Metadata(WRITE.into()))
                    .map(|v| v.as_ref())
                    == Some(tag.as_str()) =>
            {
                h.meta
                    .e_tag
                    .ok_or_else(|| s3_err("head", key, "no ETag in the answer"))
            }
            Ok(_) | Err(StorageError::NotFound) => Err(refused),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.s3.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_err("delete", key, e)),
        }
    }

    /// Keys (relative to the prefix) and metadata under `dir/` (a directory, no trailing `/`),
    /// after `start_after` (relative), handed to `take` in order until it answers `false`.
    async fn list(
        &self,
        dir: &str,
        start_after: Option<&str>,
        mut take: impl FnMut(&str, &object_store::ObjectMeta) -> Result<bool>,
    ) -> Result<()> {
        let dir_path = self.path(dir);
        let mut stream = match start_after {
            Some(a) => self.s3.list_with_offset(Some(&dir_path), &self.path(a)),
            None => self.s3.list(Some(&dir_path)),
        };
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| s3_err("list", dir, e))?;
            let Some(rel) = self.relative(&meta.location) else {
                continue;
            };
            if !take(rel, &meta)? {
                break;
            }
        }
        Ok(())
    }

    /// Where a blob's bytes are, following a pointer.
    async fn locate(&self, d: &Digest) -> Result<Located> {
        let key = blob_key(d);
        let head = self.head(&key).await?;
        located(d, key, &head.meta, &head.attributes)
    }

    /// Bytes already in hand (and checked) as the blob `d`, in one put. Never conditional on
    /// the blob being absent: the bytes were checked, so writing them again is harmless, and it
    /// refreshes the blob's age for garbage collection as a new upload should.
    async fn put_blob(&self, d: &Digest, payload: PutPayload) -> Result<u64> {
        let size = payload.content_length() as u64;
        self.put(&blob_key(d), payload, PutOptions::default())
            .await?;
        Ok(size)
    }

    /// Replace a retired marker at `k` with `value`, if there is one.
    async fn revive(&self, k: &str, value: PutPayload) -> Result<Option<Version>> {
        let head = match self.head(k).await {
            Ok(h) if h.meta.size == 0 => h,
            Ok(_) | Err(StorageError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(etag) = head.meta.e_tag else {
            return Err(s3_err("head", k, "no ETag"));
        };
        let options = PutOptions {
            mode: update(&etag),
            ..Default::default()
        };
        match self.put(k, value, options).await {
            Ok(v) => Ok(Some(Version(v))),
            Err(StorageError::Precondition) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The ETag of the object at `key` (relative), `None` when absent: for tests that tell a
    /// multipart object (its ETag ends in `-<parts>`) from one PUT.
    pub async fn etag(&self, key: &str) -> Result<Option<String>> {
        match self.head(key).await {
            Ok(h) => Ok(h.meta.e_tag),
            Err(StorageError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object key (relative) under `dir/`: for tests that check what is left.
    pub async fn keys(&self, dir: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        self.list(dir, None, |k, _| {
            keys.push(k.to_owned());
            Ok(true)
        })
        .await?;
        Ok(keys)
    }
}

fn located(
    d: &Digest,
    key: String,
    meta: &object_store::ObjectMeta,
    attributes: &Attributes,
) -> Result<Located> {
    let modified = meta.last_modified.timestamp().max(0) as u64;
    // Only the empty blob is empty: any other empty object under blobs/ is a pointer.
    if meta.size > 0 || is_empty_blob(d) {
        return Ok(Located {
            key,
            size: meta.size,
            modified,
        });
    }
    let attr = |name: &'static str| attributes.get(&Attribute::Metadata(name.into()));
    let target = attr(TARGET).map(|v| v.as_ref().to_owned());
    let size = attr(SIZE).and_then(|v| v.as_ref().parse().ok());
    match (target, size) {
        (Some(key), Some(size)) => Ok(Located {
            key,
            size,
            modified,
        }),
        _ => Err(StorageError::other(format!(
            "s3 {key}: an empty object that is not a pointer"
        ))),
    }
}

fn body_of(result: GetResult, len: u64) -> Body {
    if len == 0 {
        return Body::Empty;
    }
    Body::stream(result.into_stream().map_err(io::Error::other))
}

impl Storage for S3Store {
    /// A presigned GET of the object holding the bytes (a pointer's target, not the pointer),
    /// when redirects are on. The client's `Range` goes to the bucket with it.
    async fn blob_location(&self, digest: &Digest) -> Result<Option<String>> {
        let Some(expires) = self.redirect else {
            return Ok(None);
        };
        let at = self.locate(digest).await?;
        if at.size == 0 {
            return Ok(None); // nothing to fetch: not worth a second trip
        }
        let url = self
            .s3
            .signed_url(http::Method::GET, &self.path(&at.key), expires)
            .await
            .map_err(|e| s3_err("presign", &at.key, e))?;
        Ok(Some(url.into()))
    }

    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        let at = self.locate(digest).await?;
        Ok(BlobInfo {
            size: at.size,
            modified: Some(at.modified),
        })
    }

    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        let Some(spec) = range else {
            // Most blobs are not pointers: one get, and a second only for a pointer.
            let key = blob_key(digest);
            let got = self.get(&key, None).await?;
            let at = located(digest, key.clone(), &got.meta, &got.attributes)?;
            let got = if at.key == key {
                got
            } else {
                self.get(&at.key, None)
                    .await
                    .map_err(|_| StorageError::other(format!("s3 {key}: pointer to nothing")))?
            };
            return Ok(BlobRead {
                size: at.size,
                range: resolve_range(at.size, None)?,
                body: body_of(got, at.size),
            });
        };
        // A range needs the size first: where the bytes are and how many, then them.
        let at = self.locate(digest).await?;
        let r = resolve_range(at.size, Some(spec))?;
        let got = self
            .get(&at.key, Some(GetRange::Bounded(r.start..r.end)))
            .await?;
        Ok(BlobRead {
            size: at.size,
            range: r,
            body: body_of(got, r.len()),
        })
    }

    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        // The core hands over a `Checked` stream: it ends in an error unless the bytes match.
        if let Some(len) = body.len()
            && (self.part_size..=single::SINGLE_PUT_MAX).contains(&len)
        {
            return self.put_single(digest, len, body.into_stream()).await;
        }
        let mut stream = body.into_stream();
        let mut head: Vec<Bytes> = Vec::new();
        let mut len = 0u64;
        while len < self.part_size {
            match stream.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(StorageError::Body)?;
                    len += chunk.len() as u64;
                    head.push(chunk);
                }
                // Less than a part: one put.
                None => return self.put_blob(digest, head.into_iter().collect()).await,
            }
        }
        self.put_stream(digest, head, stream).await
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        let at = self.locate(digest).await?;
        let key = blob_key(digest);
        // The pointer first, so that no pointer is ever left naming deleted bytes.
        self.delete(&key).await?;
        if at.key != key {
            self.delete(&at.key).await?;
        }
        Ok(())
    }

    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        let want = options.limit.unwrap_or(usize::MAX);
        if want == 0 {
            return Ok(Vec::new());
        }
        // `blobs/<alg>/<hex>` sorts as `<alg>:<hex>` does.
        let start_after = options
            .after
            .map(|a| format!("blobs/{}", a.replacen(':', "/", 1)));
        let mut found = Vec::new();
        self.list("blobs", start_after.as_deref(), |k, meta| {
            if let Some(d) = blob_digest(k) {
                found.push((d, meta.clone()));
            }
            Ok(found.len() < want)
        })
        .await?;
        let mut out = Vec::with_capacity(found.len());
        for (digest, meta) in found {
            let info = if meta.size > 0 || is_empty_blob(&digest) {
                BlobInfo {
                    size: meta.size,
                    modified: Some(meta.last_modified.timestamp().max(0) as u64),
                }
            } else {
                // A pointer: its size is in its metadata, which listings do not carry.
                match self.blob_head(&digest).await {
                    Ok(info) => info,
                    Err(StorageError::NotFound) => continue,
                    Err(e) => return Err(e),
                }
            };
            out.push(BlobEntry { digest, info });
        }
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
        let got = self.get(&k, None).await?;
        let version = got
            .meta
            .e_tag
            .clone()
            .ok_or_else(|| s3_err("get", &k, "no ETag"))?;
        let bytes = got.bytes().await.map_err(|e| s3_err("read", &k, e))?;
        match bytes.first() {
            None => Err(StorageError::NotFound),
            Some(&LIVE) => Ok(Stored {
                value: bytes.slice(1..),
                version: Version(version),
            }),
            Some(_) => Err(StorageError::other(format!(
                "s3 {k}: not a metadata document"
            ))),
        }
    }

    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        let k = meta_key(key);
        let payload = || PutPayload::from_iter([Bytes::from_static(&[LIVE]), value.clone()]);
        let (s3_mode, refused) = match &mode {
            PutMode::Overwrite => (object_store::PutMode::Overwrite, StorageError::Precondition),
            PutMode::Create => (object_store::PutMode::Create, StorageError::AlreadyExists),
            PutMode::Update(v) => (update(&v.0), StorageError::Precondition),
        };
        let options = PutOptions {
            mode: s3_mode,
            ..Default::default()
        };
        match self.put(&k, payload(), options).await {
            Ok(v) => Ok(Version(v)),
            // A retired document counts as absent: Create may take its place.
            Err(StorageError::AlreadyExists) if mode == PutMode::Create => {
                self.revive(&k, payload()).await?.ok_or(refused)
            }
            Err(StorageError::AlreadyExists | StorageError::Precondition) => Err(refused),
            Err(e) => Err(e),
        }
    }

    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        let k = meta_key(key);
        let Some(want) = expected else {
            let head = self.head(&k).await?;
            if head.meta.size == 0 {
                return Err(StorageError::NotFound);
            }
            return self.delete(&k).await;
        };
        // Retire it, if it is still at the version asked.
        let options = PutOptions {
            mode: update(&want.0),
            ..Default::default()
        };
        match self.put(&k, PutPayload::new(), options).await {
            Ok(_) => Ok(()),
            Err(StorageError::Precondition) => match self.head(&k).await {
                Ok(h) if h.meta.size > 0 => Err(StorageError::Precondition),
                Ok(_) | Err(StorageError::NotFound) => Err(StorageError::NotFound),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        let want = options.limit.unwrap_or(usize::MAX);
        if want == 0 {
            return Ok(Vec::new());
        }
        // Everything under the flat `meta/` directory from the prefix on, until a key no longer
        // starts with it. No stored key equals an encoded prefix (keys never end in `/`).
        let full = meta_key(prefix);
        let start = match options.after {
            Some(a) => format!("{full}{}", encode_meta(a)),
            None => full.clone(),
        };
        let mut keys = Vec::new();
        self.list("meta", Some(&start), |k, meta| {
            let Some(rest) = k.strip_prefix(full.as_str()) else {
                return Ok(false);
            };
            if meta.size > 0 {
                let rel = decode_meta(rest)
                    .ok_or_else(|| StorageError::other(format!("s3 {k}: not an encoded key")))?;
                keys.push(rel);
            }
            Ok(keys.len() < want)
        })
        .await?;
        Ok(keys)
    }
}

/// The client options every request uses: no overall timeout (a blob streams for as long as it
/// takes), a bounded connect and retry time so that a bucket that is down answers 503 soon.
fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(5))
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
        ..Default::default()
    }
}

fn builder() -> AmazonS3Builder {
    AmazonS3Builder::from_env()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_keep_byte_order_and_round_trip() {
        let mut keys = vec![
            "a",
            "a-b",
            "a.b",
            "a/b",
            "a/b/c",
            "b",
            "B",
            "sha256:00",
            "a.",
            "a/",
        ];
        keys.sort();
        let mut encoded: Vec<String> = keys.iter().map(|k| encode_meta(k)).collect();
        assert!(encoded.iter().all(|e| !e.contains('/')));
        let before = encoded.clone();
        encoded.sort();
        assert_eq!(encoded, before, "encoding keeps byte order");
        for k in keys {
            assert_eq!(decode_meta(&encode_meta(k)).as_deref(), Some(k));
        }
        assert_eq!(decode_meta("a.2"), None);
        assert_eq!(decode_meta("a."), None);
    }
}
