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
//! Metadata keys such as `catalog/a` and `catalog/a/b` are both leaves, so each leaf file gets a
//! `~` suffix, which no key segment contains, and a leaf never collides with a directory.
//!
//! A document's version is a hash of its bytes. Compare-and-set on content is sound: if the
//! bytes are what the writer read, its decision still holds. `Create`, `Update` and the writes
//! they race with run under a lock striped by key; one process owns the root (the `lock` file),
//! so an in-process lock is enough.

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher as _};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::cache::{BlobCache, MetaCache};
use super::files::{
    CopyError, Target, TempFile, blocking, copy, io_err, make_dirs, other, read_range, read_small,
    sync_dir,
};
use crate::body::Body;
use crate::digest::{Checked, Digest};
use crate::keys;
use crate::storage::{
    BlobRead, ByteRange, ListOptions, PutMode, Result, Storage, StorageError, Stored, Version,
};

const STRIPES: usize = 64;
/// Metadata documents are small; anything larger is corrupt.
const META_LIMIT: u64 = 16 << 20;
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
    locks: Vec<Mutex<()>>,
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

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Every blob's digest (for checks and garbage collection), in no particular order.
    pub async fn blobs(&self) -> Result<Vec<Digest>> {
        let root = self.inner.root.join("blobs");
        blocking(move || {
            let mut out = Vec::new();
            for alg in read_dir_names(&root)? {
                for shard in read_dir_names(&root.join(&alg))? {
                    for hex in read_dir_names(&root.join(&alg).join(&shard))? {
                        if let Ok(d) = format!("{alg}:{hex}").parse() {
                            out.push(d);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
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
        let valid = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !valid {
            return Err(StorageError::other(format!("invalid upload id {id:?}")));
        }
        Ok(self.inner.root.join("uploads").join(id))
    }
}

fn lock_stripe<'a>(inner: &'a Inner, key: &str) -> MutexGuard<'a, ()> {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    inner.locks[h.finish() as usize % STRIPES]
        .lock()
        .unwrap_or_else(|p| p.into_inner())
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
    let locked = owner.try_lock();
    match locked {
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
    for name in read_dir_names(&root.join("tmp")).map_err(io::Error::other)? {
        let _ = fs::remove_file(root.join("tmp").join(name));
    }
    let uploads = root.join("uploads");
    for id in read_dir_names(&uploads).map_err(io::Error::other)? {
        let session = root.join("meta").join(leaf(&keys::upload(&id)));
        if !session.exists() {
            let _ = fs::remove_dir_all(uploads.join(&id));
        }
    }
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(FsStore {
        inner: Arc::new(Inner {
            root,
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            nonce: super::env::hex(&nonce),
            counter: AtomicU64::new(0),
            meta: MetaCache::new(META_CACHED),
            blobs: BlobCache::new(BLOB_CACHED, BLOBS_CACHED_TOTAL),
            _owner: owner,
        }),
    })
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(other(e, dir)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| other(e, dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// The path of a key's leaf file, relative to `meta/`.
fn leaf(key: &str) -> String {
    format!("{key}~")
}

/// Keys come from the core's layout, but a path must never escape the root whatever it gets.
fn check_key(key: &str, prefix: bool) -> Result<()> {
    let body = if prefix {
        match key.strip_suffix('/') {
            Some(b) => b,
            None if key.is_empty() => return Ok(()),
            None => return Err(StorageError::other(format!("prefix without /: {key:?}"))),
        }
    } else {
        key
    };
    let ok = !body.contains(['~', '\0', '\\'])
        && body
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(StorageError::other(format!("invalid key {key:?}")))
    }
}

fn version_of(value: &[u8]) -> Version {
    Version(Digest::sha256(value).hex()[..32].to_owned())
}

fn stored(value: Vec<u8>) -> Stored {
    Stored {
        version: version_of(&value),
        value: Bytes::from(value),
    }
}

/// A blob opened for reading: small ones read whole (and cached), in the same trip.
enum Opened {
    Small(Bytes),
    File(File),
}

fn open_blob(inner: &Inner, path: &Path, digest: &Digest) -> Result<(Opened, u64)> {
    let generation = inner.blobs.generation();
    let mut file = File::open(path).map_err(|e| io_err(e, path))?;
    let size = file.metadata().map_err(|e| other(e, path))?.len();
    if size > inner.blobs.max_blob {
        return Ok((Opened::File(file), size));
    }
    let mut buf = Vec::with_capacity(size as usize);
    io::Read::read_to_end(&mut file, &mut buf).map_err(|e| other(e, path))?;
    if buf.len() as u64 != size {
        return Err(StorageError::other(format!(
            "{}: changed while read",
            path.display()
        )));
    }
    let bytes = Bytes::from(buf);
    inner.blobs.insert(digest, bytes.clone(), generation);
    Ok((Opened::Small(bytes), size))
}

impl Inner {
    fn meta_path(&self, key: &str) -> Result<PathBuf> {
        check_key(key, false)?;
        Ok(self.root.join("meta").join(leaf(key)))
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!("{}-{n}", self.nonce))
    }

    /// Write `value` to `path` by fsynced temporary file and rename.
    fn write_atomic(&self, path: &Path, value: &[u8]) -> Result<()> {
        let temp_path = self.temp_path();
        let temp = TempFile::new(temp_path.clone());
        let mut file = File::create(&temp_path).map_err(|e| other(e, &temp_path))?;
        io::Write::write_all(&mut file, value).map_err(|e| other(e, &temp_path))?;
        file.sync_all().map_err(|e| other(e, &temp_path))?;
        let dir = path
            .parent()
            .ok_or_else(|| StorageError::other("key without a directory"))?;
        // A delete may prune the directory between creating and renaming: try again.
        let mut tries = 0;
        loop {
            make_dirs(dir).map_err(|e| other(e, dir))?;
            match fs::rename(&temp_path, path) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
                Err(e) => return Err(other(e, path)),
            }
        }
        temp.keep();
        sync_dir(dir).map_err(|e| other(e, dir))
    }

    /// Remove empty directories from `dir` up to (not including) `meta/`.
    fn prune(&self, mut dir: &Path) {
        let top = self.root.join("meta");
        while dir != top && dir.starts_with(&top) {
            if fs::remove_dir(dir).is_err() {
                break;
            }
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
    }
}

/// Every key under `dir`, relative to it.
fn walk(dir: &Path, rel: &mut String, out: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // Pruned by a concurrent delete, or never created: nothing there.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(other(e, dir)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| other(e, dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let kind = entry.file_type().map_err(|e| other(e, dir))?;
        if kind.is_dir() {
            let len = rel.len();
            rel.push_str(&name);
            rel.push('/');
            walk(&entry.path(), rel, out)?;
            rel.truncate(len);
        } else if let Some(key) = name.strip_suffix('~') {
            out.push(format!("{rel}{key}"));
        }
    }
    Ok(())
}

impl Storage for FsStore {
    async fn blob_size(&self, digest: &Digest) -> Result<u64> {
        if let Some(bytes) = self.inner.blobs.get(digest) {
            return Ok(bytes.len() as u64);
        }
        let path = self.blob_path(digest);
        blocking(move || Ok(fs::metadata(&path).map_err(|e| io_err(e, &path))?.len())).await
    }

    async fn blob_get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        let (opened, size) = match self.inner.blobs.get(digest) {
            Some(bytes) => {
                let size = bytes.len() as u64;
                (Opened::Small(bytes), size)
            }
            None => {
                let path = self.blob_path(digest);
                let inner = self.inner.clone();
                let digest = digest.clone();
                blocking(move || open_blob(&inner, &path, &digest)).await?
            }
        };
        let (start, end) = match range {
            None => (0, size),
            Some(r) if r.start <= r.end && r.end <= size => (r.start, r.end),
            Some(_) => return Err(StorageError::other("range outside blob")),
        };
        let body = match opened {
            _ if start == end => Body::Empty,
            Opened::Small(bytes) => Body::Full(bytes.slice(start as usize..end as usize)),
            Opened::File(file) => Body::Stream(read_range(file, start, end)),
        };
        Ok(BlobRead { size, body })
    }

    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        let body = match body {
            Body::Foreign(f) => {
                Body::stream(Checked::digest(f.into_stream(), digest.clone(), None))
            }
            other => other,
        };
        let temp_path = self.inner.temp_path();
        let temp = TempFile::new(temp_path.clone());
        let create = temp_path.clone();
        let target =
            blocking(move || Target::open(&create, true, 0).map_err(|e| other(e, &create))).await?;
        let (file, size) = match copy(body.into_stream(), target).await {
            Ok(done) => done,
            Err((CopyError::Body(e), _)) => return Err(StorageError::Body(e)),
            Err((CopyError::Write(e), _)) => return Err(other(e, &temp_path)),
        };
        let dest = self.blob_path(digest);
        blocking(move || {
            file.sync_all().map_err(|e| other(e, &temp_path))?;
            drop(file);
            let dir = dest.parent().ok_or_else(|| StorageError::other("no dir"))?;
            make_dirs(dir).map_err(|e| other(e, dir))?;
            if dest.exists() {
                // Same digest, same bytes: the copy in place stays.
                return Ok(());
            }
            fs::rename(&temp_path, &dest).map_err(|e| other(e, &dest))?;
            temp.keep();
            sync_dir(dir).map_err(|e| other(e, dir))
        })
        .await?;
        Ok(size)
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        let removed = blocking(move || fs::remove_file(&path).map_err(|e| io_err(e, &path))).await;
        self.inner.blobs.remove(digest);
        removed
    }

    async fn upload_start(&self, id: &str) -> Result<String> {
        let dir = self.upload_dir(id)?;
        blocking(move || {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(StorageError::AlreadyExists);
                }
                Err(e) => return Err(other(e, &dir)),
            }
            let data = dir.join("data");
            File::create(&data).map_err(|e| other(e, &data))?;
            Ok(String::new())
        })
        .await
    }

    async fn upload_append(
        &self,
        id: &str,
        _state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        let path = self.upload_dir(id)?.join("data");
        let open = path.clone();
        let target = blocking(move || {
            let len = fs::metadata(&open).map_err(|e| io_err(e, &open))?.len();
            if len < offset {
                return Err(StorageError::Precondition);
            }
            if len > offset {
                // Leftovers of a failed append.
                let file = OpenOptions::new()
                    .write(true)
                    .open(&open)
                    .map_err(|e| io_err(e, &open))?;
                file.set_len(offset).map_err(|e| other(e, &open))?;
            }
            Target::open(&open, false, offset).map_err(|e| io_err(e, &open))
        })
        .await?;
        match copy(body.into_stream(), target).await {
            Ok((file, n)) => {
                blocking(move || file.sync_data().map_err(|e| other(e, &path))).await?;
                Ok(offset + n)
            }
            Err((e, file)) => {
                if let Some(file) = file {
                    // Back to how it was; if this fails, the next append truncates anyway.
                    let _ =
                        blocking(move || file.set_len(offset).map_err(|e| other(e, &path))).await;
                }
                Err(match e {
                    CopyError::Body(e) => StorageError::Body(e),
                    CopyError::Write(e) => StorageError::other(e),
                })
            }
        }
    }

    async fn upload_finish(
        &self,
        id: &str,
        _state: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let dir = self.upload_dir(id)?;
        let dest = self.blob_path(digest);
        blocking(move || {
            let data = dir.join("data");
            let file = match OpenOptions::new().write(true).open(&data) {
                Ok(f) => f,
                // A finish that crashed after its rename, perhaps after removing the upload's
                // directory too: the blob is there, and the core has checked its digest.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return match fs::metadata(&dest) {
                        Ok(m) if m.len() == size => {
                            let _ = fs::remove_dir_all(&dir);
                            Ok(())
                        }
                        _ => Err(StorageError::NotFound),
                    };
                }
                Err(e) => return Err(other(e, &data)),
            };
            let len = file.metadata().map_err(|e| other(e, &data))?.len();
            if len < size {
                return Err(StorageError::Precondition);
            }
            if len > size {
                file.set_len(size).map_err(|e| other(e, &data))?;
            }
            file.sync_all().map_err(|e| other(e, &data))?;
            drop(file);
            let shard = dest.parent().ok_or_else(|| StorageError::other("no dir"))?;
            make_dirs(shard).map_err(|e| other(e, shard))?;
            if !dest.exists() {
                fs::rename(&data, &dest).map_err(|e| other(e, &dest))?;
                sync_dir(shard).map_err(|e| other(e, shard))?;
            }
            let _ = fs::remove_dir_all(&dir);
            Ok(())
        })
        .await
    }

    async fn upload_abort(&self, id: &str, _state: &str) -> Result<()> {
        let dir = self.upload_dir(id)?;
        blocking(move || match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(other(e, &dir)),
        })
        .await
    }

    async fn meta_get(&self, key: &str) -> Result<Stored> {
        // Only valid keys are ever cached: a hit needs no check.
        if let Some(doc) = self.inner.meta.get(key) {
            return doc.ok_or(StorageError::NotFound);
        }
        let path = self.inner.meta_path(key)?;
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(move || {
            // Under the key's lock, so that a write cannot land between the read and the cache.
            let _guard = lock_stripe(&inner, &key);
            if let Some(doc) = inner.meta.get(&key) {
                return doc.ok_or(StorageError::NotFound);
            }
            let doc = match read_small(&path, META_LIMIT) {
                Ok(value) => Some(stored(value)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(other(e, &path)),
            };
            inner.meta.set(&key, doc.clone());
            doc.ok_or(StorageError::NotFound)
        })
        .await
    }

    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        let path = self.inner.meta_path(key)?;
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(move || {
            let _guard = lock_stripe(&inner, &key);
            let current = match inner.meta.get(&key) {
                Some(doc) => doc,
                None => match read_small(&path, META_LIMIT) {
                    Ok(v) => Some(stored(v)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(other(e, &path)),
                },
            };
            match (&mode, &current) {
                (PutMode::Create, Some(_)) => return Err(StorageError::AlreadyExists),
                (PutMode::Update(want), Some(have)) if *want != have.version => {
                    return Err(StorageError::Precondition);
                }
                (PutMode::Update(_), None) => return Err(StorageError::Precondition),
                _ => {}
            }
            // The same bytes again: nothing to write, and the version would not change.
            if current.as_ref().map(|c| &c.value[..]) != Some(&value[..])
                && let Err(e) = inner.write_atomic(&path, &value)
            {
                inner.meta.forget(&key);
                return Err(e);
            }
            let version = version_of(&value);
            inner.meta.set(
                &key,
                Some(Stored {
                    value,
                    version: version.clone(),
                }),
            );
            Ok(version)
        })
        .await
    }

    async fn meta_delete(&self, key: &str) -> Result<()> {
        let path = self.inner.meta_path(key)?;
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(move || {
            let _guard = lock_stripe(&inner, &key);
            match fs::remove_file(&path) {
                Ok(()) => inner.meta.set(&key, None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    inner.meta.set(&key, None);
                    return Err(StorageError::NotFound);
                }
                Err(e) => {
                    inner.meta.forget(&key);
                    return Err(other(e, &path));
                }
            }
            if let Some(dir) = path.parent() {
                inner.prune(dir);
            }
            Ok(())
        })
        .await
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        check_key(prefix, true)?;
        let dir = self.inner.root.join("meta").join(prefix);
        let mut keys = blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &mut String::new(), &mut out)?;
            Ok(out)
        })
        .await?;
        // readdir order is arbitrary; the contract is byte order.
        keys.sort_unstable();
        let keys = keys
            .into_iter()
            .filter(|k| options.after.is_none_or(|a| k.as_str() > a))
            .take(options.limit.unwrap_or(usize::MAX))
            .collect();
        Ok(keys)
    }
}
