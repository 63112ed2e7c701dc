//! The storage trait: everything the core stores or reads goes through it.
//!
//! Three kinds of things are stored:
//! - **blobs**, content-addressed and shared by every repository, streamed in and out;
//! - **uploads**, the bytes of an unfinished blob, appended over several requests and then made
//!   visible as a blob in one step;
//! - **metadata**, small documents under `/`-separated keys (tags, manifest links, referrer
//!   entries, upload sessions) whose layout is the core's ([`crate::keys`]), with conditional
//!   writes and ordered listing.
//!
//! Every store runs the same contract suite ([`contract`]).

use std::fmt;
use std::future::Future;
use std::io;

use bytes::Bytes;

use crate::body::Body;
use crate::digest::Digest;
use crate::names::RepoName;
use crate::{MaybeSend, MaybeSync};

#[cfg(feature = "contract")]
pub mod contract;
#[cfg(feature = "contract")]
pub mod contract_gc;
pub mod memory;
pub mod multipart;

/// A byte range `[start, end)` of a blob, already checked against its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A part of a blob as a client asks for it (`Range: bytes=...`), before anyone knows the
/// blob's size; the store resolves it ([`RangeSpec::resolve`]) as it opens the blob, so a ranged
/// read costs one trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// From `first` to `last` inclusive (to the end when `last` is `None`).
    From { first: u64, last: Option<u64> },
    /// The last `n` bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// The bytes it names of a blob of `size` bytes; `None` if it names none (416).
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        match self {
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(_) if size == 0 => None,
            RangeSpec::Suffix(n) => Some(ByteRange {
                start: size.saturating_sub(n),
                end: size,
            }),
            RangeSpec::From { first, .. } if first >= size => None,
            RangeSpec::From { first, last } => Some(ByteRange {
                start: first,
                end: last.map_or(size, |l| l.saturating_add(1).min(size)),
            }),
        }
    }
}

/// The bytes a read of a blob of `size` bytes sends: all of them, or the range asked for.
pub fn resolve_range(size: u64, range: Option<RangeSpec>) -> Result<ByteRange> {
    match range {
        None => Ok(ByteRange {
            start: 0,
            end: size,
        }),
        Some(spec) => spec
            .resolve(size)
            .ok_or(StorageError::RangeNotSatisfiable { size }),
    }
}

/// What a store knows of a blob without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    /// When its bytes were last written, in seconds since the Unix epoch by the store's clock;
    /// `None` if the store cannot tell (garbage collection then never takes it).
    pub modified: Option<u64>,
}

/// A blob being read: its whole size, the range being sent, and a body with those bytes.
pub struct BlobRead {
    pub size: u64,
    /// The bytes `body` holds: the whole blob unless a range was asked for.
    pub range: ByteRange,
    pub body: Body,
}

/// One blob of a listing ([`Storage::blob_list`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    pub digest: Digest,
    pub info: BlobInfo,
}

/// An opaque version of a metadata document, for conditional writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(pub String);

/// A metadata document and its version.
#[derive(Clone, Debug)]
pub struct Stored {
    pub value: Bytes,
    pub version: Version,
}

/// How a metadata write treats an existing document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Write whatever is there.
    Overwrite,
    /// Write only if there is nothing (`AlreadyExists` otherwise).
    Create,
    /// Write only if the document is still at this version (`Precondition` otherwise).
    Update(Version),
}

/// Options for [`Storage::meta_list`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ListOptions<'a> {
    /// Only keys (relative to the prefix) strictly after this one.
    pub after: Option<&'a str>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// The cause of a backend failure, kept whole for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in a store, by meaning. The core maps it to an OCI error where the meaning is
/// known (NotFound is BLOB_UNKNOWN in one place, MANIFEST_UNKNOWN in another).
#[derive(Debug)]
pub enum StorageError {
    NotFound,
    AlreadyExists,
    /// A conditional write lost to another writer, or an append was not at the upload's end.
    Precondition,
    /// This store (or this repository in it) does not take writes.
    ReadOnly,
    /// The range asked of a blob names none of its bytes.
    RangeNotSatisfiable {
        size: u64,
    },
    /// The body being written failed: the client went away, or a check in the stream
    /// ([`crate::digest::BodyCheck`]) failed. Stores pass the stream's error through unchanged.
    Body(io::Error),
    /// The backend failed or could not be reached (a disk error, a storage service down or
    /// refusing us): the request may succeed later. Clients see 503, the log sees the cause.
    Unavailable(Cause),
    /// Anything else: corrupt state, a broken invariant. Logged, never shown to clients.
    Other(Cause),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("not found"),
            StorageError::AlreadyExists => f.write_str("already exists"),
            StorageError::Precondition => f.write_str("precondition failed"),
            StorageError::ReadOnly => f.write_str("read-only"),
            StorageError::RangeNotSatisfiable { size } => {
                write!(f, "range not satisfiable (size {size})")
            }
            StorageError::Body(e) => write!(f, "body: {e}"),
            StorageError::Unavailable(e) => write!(f, "storage unavailable: {e}"),
            StorageError::Other(e) => write!(f, "storage: {e}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Body(e) => Some(e),
            StorageError::Unavailable(e) | StorageError::Other(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl StorageError {
    /// A broken invariant or corrupt state, with its cause.
    pub fn other(e: impl Into<Cause>) -> StorageError {
        StorageError::Other(e.into())
    }

    /// A backend failure that may pass, with its cause.
    pub fn unavailable(e: impl Into<Cause>) -> StorageError {
        StorageError::Unavailable(e.into())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A place to keep blobs, uploads and metadata. Implementors write plain `async fn`s.
///
/// Invariants every store keeps (and the contract suite checks):
/// - a blob is visible under its digest whole or not at all, whatever crashes or races;
/// - a failed append leaves an upload as it was before the call;
/// - metadata writes are atomic, and `Create`/`Update` are compare-and-set.
pub trait Storage: MaybeSend + MaybeSync + 'static {
    /// A blob's size and age; `NotFound` if absent.
    fn blob_head(&self, digest: &Digest) -> impl Future<Output = Result<BlobInfo>> + MaybeSend;

    /// Read a blob, or the part of it `range` names, with its size, in one trip.
    /// `RangeNotSatisfiable` when the range names no byte of it.
    fn blob_get(
        &self,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> impl Future<Output = Result<BlobRead>> + MaybeSend;

    /// Where a client may fetch the blob's bytes itself rather than through the registry: a
    /// URL (a presigned bucket URL) the core answers blob GETs with, as `307 Temporary
    /// Redirect`. `None`, the default: the registry serves the bytes. `NotFound` if absent.
    fn blob_location(
        &self,
        _digest: &Digest,
    ) -> impl Future<Output = Result<Option<String>>> + MaybeSend {
        async { Ok(None) }
    }

    /// Store `body` as the blob `digest` and return its size. Storing a blob that exists already
    /// is not an error. The core hands over stream bodies wrapped in a
    /// [`crate::digest::Checked`] stream that fails at its end unless the bytes match the
    /// digest, so a store must drop what it wrote when the stream fails. A `Body::Foreign`
    /// reaches the store unverified: the store checks it by the platform's own means or reads it
    /// through [`crate::digest::Checked::digest`].
    fn blob_put(
        &self,
        digest: &Digest,
        body: Body,
    ) -> impl Future<Output = Result<u64>> + MaybeSend;

    /// Remove a blob's bytes (garbage collection's job; repositories only drop links).
    /// `NotFound` if absent.
    fn blob_delete(&self, digest: &Digest) -> impl Future<Output = Result<()>> + MaybeSend;

    /// Blobs in digest order (`algorithm:hex` as text), after `options.after` if given, at most
    /// `options.limit`: for garbage collection and scrubbing, a page at a time.
    fn blob_list(
        &self,
        options: ListOptions<'_>,
    ) -> impl Future<Output = Result<Vec<BlobEntry>>> + MaybeSend;

    /// Begin an upload with a fresh id. Returns the store's own state for it, which the core
    /// keeps in the upload session and hands back on every later call.
    fn upload_start(&self, id: &str) -> impl Future<Output = Result<String>> + MaybeSend;

    /// Append `body` at `offset`, which the core guarantees is the length it has recorded. Bytes
    /// the store holds beyond `offset` are leftovers of a failed append: discard them. Returns
    /// the new length. On error, the upload stays as it was before the call.
    fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> impl Future<Output = Result<u64>> + MaybeSend;

    /// Make the upload's first `size` bytes visible as the blob `digest` (the core has checked
    /// the digest) and release the upload. Atomic: the blob is whole or absent.
    fn upload_finish(
        &self,
        id: &str,
        state: &str,
        digest: &Digest,
        size: u64,
    ) -> impl Future<Output = Result<()>> + MaybeSend;

    /// Drop an upload and its bytes. Absent is not an error.
    fn upload_abort(&self, id: &str, state: &str) -> impl Future<Output = Result<()>> + MaybeSend;

    /// Read a metadata document.
    fn meta_get(&self, key: &str) -> impl Future<Output = Result<Stored>> + MaybeSend;

    /// Write a metadata document; returns its new version.
    fn meta_put(
        &self,
        key: &str,
        value: Bytes,
        mode: PutMode,
    ) -> impl Future<Output = Result<Version>> + MaybeSend;

    /// Remove a metadata document; `NotFound` if absent. With `expected`, only if the document
    /// is still at that version (`Precondition` otherwise): a delete that cannot undo a newer
    /// write.
    fn meta_delete(
        &self,
        key: &str,
        expected: Option<&Version>,
    ) -> impl Future<Output = Result<()>> + MaybeSend;

    /// Every key under `prefix` (which ends in `/`), at any depth, relative to the prefix, in
    /// byte order.
    fn meta_list(
        &self,
        prefix: &str,
        options: ListOptions<'_>,
    ) -> impl Future<Output = Result<Vec<String>>> + MaybeSend;

    /// Whether pushes to this repository can succeed, so that the core refuses them before any
    /// bytes move. Layout directories served read-only answer false.
    fn writable(&self, _name: &RepoName) -> bool {
        true
    }
}

/// A shared store is a store: one instance behind several registries, or a registry and the
/// test that checks what it left.
impl<S: Storage> Storage for std::sync::Arc<S> {
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        (**self).blob_head(digest).await
    }
    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        (**self).blob_get(digest, range).await
    }
    async fn blob_location(&self, digest: &Digest) -> Result<Option<String>> {
        (**self).blob_location(digest).await
    }
    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        (**self).blob_put(digest, body).await
    }
    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        (**self).blob_delete(digest).await
    }
    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        (**self).blob_list(options).await
    }
    async fn upload_start(&self, id: &str) -> Result<String> {
        (**self).upload_start(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        (**self).upload_append(id, state, offset, body).await
    }
    async fn upload_finish(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        (**self).upload_finish(id, state, digest, size).await
    }
    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        (**self).upload_abort(id, state).await
    }
    async fn meta_get(&self, key: &str) -> Result<Stored> {
        (**self).meta_get(key).await
    }
    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        (**self).meta_put(key, value, mode).await
    }
    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        (**self).meta_delete(key, expected).await
    }
    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        (**self).meta_list(prefix, options).await
    }
    fn writable(&self, name: &RepoName) -> bool {
        (**self).writable(name)
    }
}
