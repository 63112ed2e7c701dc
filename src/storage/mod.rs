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

pub mod contract;
pub mod memory;

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

/// A blob being read: its whole size, and a body with the bytes asked for.
pub struct BlobRead {
    pub size: u64,
    pub body: Body,
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
    /// The body being written failed: the client went away, or a check in the stream
    /// ([`crate::digest::BodyCheck`]) failed. Stores pass the stream's error through unchanged.
    Body(io::Error),
    /// Anything else: I/O, the backend, corrupt state. Logged, never shown to clients.
    Other(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("not found"),
            StorageError::AlreadyExists => f.write_str("already exists"),
            StorageError::Precondition => f.write_str("precondition failed"),
            StorageError::ReadOnly => f.write_str("read-only"),
            StorageError::Body(e) => write!(f, "body: {e}"),
            StorageError::Other(e) => write!(f, "storage: {e}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    pub fn other(e: impl fmt::Display) -> StorageError {
        StorageError::Other(e.to_string())
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
    /// The size of a blob; `NotFound` if absent.
    fn blob_size(&self, digest: &Digest) -> impl Future<Output = Result<u64>> + MaybeSend;

    /// Read a blob, or the range of it (checked against its size by the caller).
    fn blob_get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<BlobRead>> + MaybeSend;

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
    fn blob_delete(&self, digest: &Digest) -> impl Future<Output = Result<()>> + MaybeSend;

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

    /// Remove a metadata document; `NotFound` if absent.
    fn meta_delete(&self, key: &str) -> impl Future<Output = Result<()>> + MaybeSend;

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
