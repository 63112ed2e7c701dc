//! The filesystem store.
//!
//! ```text
//! <root>/lock                        held (flock) by the one process serving this root
//! <root>/blobs/<alg>/<hex:2>/<hex>   blobs, content-addressed, one copy per digest
//! <root>/uploads/<id>/data           the bytes of an unfinished upload
//! <root>/meta/<key>~                 one small file per metadata key
//! <root>/tmp/                        files being written; emptied at open
//! ```
//! Every file appears by rename of a fsynced temporary file, and the directory holding it is
//! fsynced after, so a crash leaves the old state or the new one, never a partial file.
//!
//! - `meta`: metadata documents (striped locks, the in-memory cache, atomic writes, listing);
//! - `blobs`: blobs and uploads;
//! - this module: opening the root, and the [`Storage`] impl that joins the two.

mod blobs;
mod meta;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::cache::{BlobCache, MetaCache};
use super::files::make_dirs;
use berth::body::Body;
use berth::digest::Digest;
use berth::keys;
use berth::session::valid_id;
use berth::storage::{
    BlobEntry, BlobInfo, BlobRead, ListOptions, PutMode, RangeSpec, Result, Storage, StorageError,
    Stored, Version,
};

/// Metadata documents kept in memory: tags, links and sessions are tens to hundreds of bytes,
/// so a few MiB at most.
const META_CACHED: usize = 16 * 1024;
/// Blobs up to this size (manifests, configs, small artifacts) are kept in memory...
const BLOB_CACHED: u64 = 64 * 1024;
/// ...up to this many bytes in all.
const BLOBS_CACHED_TOTAL: usize = 4 << 20;

#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    locks: meta::Stripes,
    /// Distinguishes this process's temporary files from a previous one's.
    nonce: String,
    counter: AtomicU64,
    meta: MetaCache,
    blobs: BlobCache,
    _owner: File,
}

impl FsStore {
    /// Open (creating if needed) the store at `root`. Fails if another process serves it.
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        // Absolute, so that errors and logs say where, whatever the working directory.
        let root = std::path::absolute(root.into())?;
        tokio::task::spawn_blocking(move || open_blocking(root))
            .await
            .map_err(io::Error::other)?
    }

    /// Open the store at `root` beside the process serving it, without its lock and without
    /// the cleanup at start: for reading only (a dry-run garbage collection pass).
    pub async fn open_shared(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        let root = std::path::absolute(root.into())?;
        tokio::task::spawn_blocking(move || {
            if !root.join("blobs").is_dir() {
                return Err(io::Error::other(format!(
                    "{} holds no berth data",
                    root.display()
                )));
            }
            let owner = File::open(root.join("lock"))?;
            Ok(store(root, owner))
        })
        .await
        .map_err(io::Error::other)?
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.inner
            .root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_dir(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(StorageError::other(format!("invalid upload id {id:?}")));
        }
        Ok(self.inner.root.join("uploads").join(id))
    }
}

impl Inner {
    /// A fresh path under `tmp/` for a file being written.
    fn temp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!("{}-{n}", self.nonce))
    }
}

fn open_blocking(root: PathBuf) -> io::Result<FsStore> {
    for dir in ["blobs", "uploads", "meta", "tmp"] {
        make_dirs(&root.join(dir))?;
    }
    let owner = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("lock"))?;
    // File::try_lock is Rust 1.89; the native build needs the 1.95 toolchain the project uses.
    match owner.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(io::Error::other(format!(
                "another process serves {}",
                root.display()
            )));
        }
        Err(fs::TryLockError::Error(e)) => return Err(e),
    }
    // Leftovers of a crash: files half written, uploads whose session was never saved.
    for name in meta::dir_names(&root.join("tmp")).map_err(io::Error::other)? {
        let _ = fs::remove_file(root.join("tmp").join(name));
    }
    let uploads = root.join("uploads");
    for id in meta::dir_names(&uploads).map_err(io::Error::other)? {
        let session = root.join("meta").join(meta::leaf(&keys::upload(&id)));
        if !session.exists() {
            let _ = fs::remove_dir_all(uploads.join(&id));
        }
    }
    Ok(store(root, owner))
}

fn store(root: PathBuf, owner: File) -> FsStore {
    let mut nonce = [0u8; 8];
    // Only names this process's temporary files: any value keeps them apart well enough.
    let _ = getrandom::fill(&mut nonce);
    FsStore {
        inner: Arc::new(Inner {
            root,
            locks: meta::Stripes::new(),
            nonce: super::env::hex(&nonce),
            counter: AtomicU64::new(0),
            meta: MetaCache::new(META_CACHED),
            blobs: BlobCache::new(BLOB_CACHED, BLOBS_CACHED_TOTAL),
            _owner: owner,
        }),
    }
}

impl Storage for FsStore {
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        self.head(digest).await
    }

    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        self.get(digest, range).await
    }

    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        self.put(digest, body).await
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        self.delete(digest).await
    }

    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        self.list_blobs(options).await
    }

    async fn upload_start(&self, id: &str) -> Result<String> {
        self.start(id).await
    }

    async fn upload_append(
        &self,
        id: &str,
        _state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        self.append(id, offset, body).await
    }

    async fn upload_finish(
        &self,
        id: &str,
        _state: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        self.finish(id, digest, size).await
    }

    async fn upload_abort(&self, id: &str, _state: &str) -> Result<()> {
        self.abort(id).await
    }

    async fn meta_get(&self, key: &str) -> Result<Stored> {
        self.get_doc(key).await
    }

    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        self.put_doc(key, value, mode).await
    }

    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        self.delete_doc(key, expected).await
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        self.list_docs(prefix, options).await
    }
}
