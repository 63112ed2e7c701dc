//! The store `berth serve` runs on: a writable root ([`FsStore`] or [`S3Store`]), with
//! read-only OCI layouts beside it as repositories of their own.
//!
//! Metadata keys go to the layout whose repository they name (read with [`keys::parse`]), and
//! to the root otherwise; the catalog merges both. Blobs are read from the root first, then from
//! each layout in order; every write goes to the root. A blob mounted from a layout repository
//! into a root repository is linked, not copied: it is served from the layout while the layout
//! is there.

use bytes::Bytes;

use super::fs::FsStore;
use super::layout::LayoutStore;
use super::s3::S3Store;
use berth::body::Body;
use berth::digest::Digest;
use berth::keys::{self, Key};
use berth::names::RepoName;
use berth::storage::{
    BlobEntry, BlobInfo, BlobRead, ListOptions, PutMode, RangeSpec, Result, Storage, StorageError,
    Stored, Version,
};

pub struct NativeStore {
    fs: Root,
    layouts: Vec<LayoutStore>,
}

/// The writable store: a directory, or a bucket.
pub enum Root {
    Fs(FsStore),
    S3(S3Store),
}

impl From<FsStore> for Root {
    fn from(fs: FsStore) -> Root {
        Root::Fs(fs)
    }
}

impl From<S3Store> for Root {
    fn from(s3: S3Store) -> Root {
        Root::S3(s3)
    }
}

impl NativeStore {
    pub fn new(root: impl Into<Root>, layouts: Vec<LayoutStore>) -> NativeStore {
        NativeStore {
            fs: root.into(),
            layouts,
        }
    }

    /// The filesystem root, if the root is one.
    pub fn fs(&self) -> Option<&FsStore> {
        match &self.fs {
            Root::Fs(fs) => Some(fs),
            Root::S3(_) => None,
        }
    }

    pub fn layouts(&self) -> &[LayoutStore] {
        &self.layouts
    }

    fn layout_named(&self, name: &RepoName) -> Option<&LayoutStore> {
        self.layouts.iter().find(|l| l.name() == name)
    }

    /// The layout that answers for a key (or listing prefix), if any.
    fn layout_for(&self, key: &str) -> Option<&LayoutStore> {
        match keys::parse(key)? {
            Key::Catalog(n)
            | Key::Tags(n)
            | Key::Tag(n, _)
            | Key::Manifests(n)
            | Key::Blobs(n)
            | Key::Manifest(n, _)
            | Key::Blob(n, _)
            | Key::Referrers(n, _)
            | Key::Referrer(n, _, _) => self.layout_named(&n),
            Key::Upload(_) => None,
        }
    }
}

impl Storage for NativeStore {
    /// The root's; a blob only a layout holds is served by berth.
    async fn blob_location(&self, digest: &Digest) -> Result<Option<String>> {
        match self.fs.blob_location(digest).await {
            Err(StorageError::NotFound) => Ok(None),
            other => other,
        }
    }

    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        match self.fs.blob_head(digest).await {
            Err(StorageError::NotFound) => {}
            other => return other,
        }
        for layout in &self.layouts {
            match layout.blob_head(digest).await {
                Err(StorageError::NotFound) => {}
                other => return other,
            }
        }
        Err(StorageError::NotFound)
    }

    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        match self.fs.blob_get(digest, range).await {
            Err(StorageError::NotFound) => {}
            other => return other,
        }
        for layout in &self.layouts {
            match layout.blob_get(digest, range).await {
                Err(StorageError::NotFound) => {}
                other => return other,
            }
        }
        Err(StorageError::NotFound)
    }

    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        self.fs.blob_put(digest, body).await
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        self.fs.blob_delete(digest).await
    }

    /// The root's blobs only: layouts are never collected.
    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        self.fs.blob_list(options).await
    }

    async fn upload_start(&self, id: &str) -> Result<String> {
        self.fs.upload_start(id).await
    }

    async fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        self.fs.upload_append(id, state, offset, body).await
    }

    async fn upload_finish(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        self.fs.upload_finish(id, state, digest, size).await
    }

    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        self.fs.upload_abort(id, state).await
    }

    async fn meta_get(&self, key: &str) -> Result<Stored> {
        match self.layout_for(key) {
            Some(layout) => layout.meta_get(key).await,
            None => self.fs.meta_get(key).await,
        }
    }

    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        match self.layout_for(key) {
            Some(_) => Err(StorageError::ReadOnly),
            None => self.fs.meta_put(key, value, mode).await,
        }
    }

    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        match self.layout_for(key) {
            Some(_) => Err(StorageError::ReadOnly),
            None => self.fs.meta_delete(key, expected).await,
        }
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        if prefix != keys::CATALOG {
            return match self.layout_for(prefix) {
                Some(layout) => layout.meta_list(prefix, options).await,
                None => self.fs.meta_list(prefix, options).await,
            };
        }
        // The first `limit` names after `after` of the union are among the first `limit` of
        // each part.
        let mut names = self.fs.meta_list(prefix, options).await?;
        for layout in &self.layouts {
            names.extend(layout.meta_list(prefix, options).await?);
        }
        names.sort_unstable();
        names.dedup();
        names.truncate(options.limit.unwrap_or(usize::MAX));
        Ok(names)
    }

    fn writable(&self, name: &RepoName) -> bool {
        self.layout_named(name).is_none()
    }
}

/// Each call goes to whichever store the root is.
macro_rules! either {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Root::Fs($s) => $call,
            Root::S3($s) => $call,
        }
    };
}

impl Storage for Root {
    async fn blob_location(&self, digest: &Digest) -> Result<Option<String>> {
        either!(self, s => s.blob_location(digest).await)
    }
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        either!(self, s => s.blob_head(digest).await)
    }
    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        either!(self, s => s.blob_get(digest, range).await)
    }
    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        either!(self, s => s.blob_put(digest, body).await)
    }
    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        either!(self, s => s.blob_delete(digest).await)
    }
    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        either!(self, s => s.blob_list(options).await)
    }
    async fn upload_start(&self, id: &str) -> Result<String> {
        either!(self, s => s.upload_start(id).await)
    }
    async fn upload_append(
        &self,
        id: &str,
        state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        either!(self, s => s.upload_append(id, state, offset, body).await)
    }
    async fn upload_finish(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        either!(self, s => s.upload_finish(id, state, digest, size).await)
    }
    async fn upload_abort(&self, id: &str, state: &str) -> Result<()> {
        either!(self, s => s.upload_abort(id, state).await)
    }
    async fn meta_get(&self, key: &str) -> Result<Stored> {
        either!(self, s => s.meta_get(key).await)
    }
    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        either!(self, s => s.meta_put(key, value, mode).await)
    }
    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        either!(self, s => s.meta_delete(key, expected).await)
    }
    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        either!(self, s => s.meta_list(prefix, options).await)
    }
}
