//! Blobs (`blobs/<alg>/<hex:2>/<hex>`) and uploads (`uploads/<id>/data`).
//!
//! A blob is written to a temporary file, fsynced, renamed into place and its directory
//! fsynced; an upload's bytes are appended to its own file, synced before each append is
//! acknowledged, and renamed into place when the upload finishes.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::meta::dir_names;
use super::{FsStore, Inner};
use crate::cache::Cached;
use crate::files::{
    CopyError, Target, TempFile, blocking, copy, io_err, make_dirs, other, read_range, sync_dir,
};
use berth::body::Body;
use berth::digest::{Checked, Digest};
use berth::storage::{
    BlobEntry, BlobInfo, BlobRead, ListOptions, RangeSpec, Result, StorageError, resolve_range,
};

/// A file's modification time in seconds since the epoch.
fn modified(m: &Metadata) -> Option<u64> {
    m.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

fn info(m: &Metadata) -> BlobInfo {
    BlobInfo {
        size: m.len(),
        modified: modified(m),
    }
}

/// A blob opened for reading: small ones read whole (and cached), in the same trip.
enum Opened {
    Small(Cached),
    File(File, BlobInfo),
}

fn open_blob(inner: &Inner, path: &Path, digest: &Digest) -> Result<Opened> {
    let generation = inner.blobs.generation();
    let mut file = File::open(path).map_err(|e| io_err(e, path))?;
    let info = info(&file.metadata().map_err(|e| other(e, path))?);
    if info.size > inner.blobs.max_blob {
        return Ok(Opened::File(file, info));
    }
    let mut buf = Vec::with_capacity(info.size as usize);
    io::Read::read_to_end(&mut file, &mut buf).map_err(|e| other(e, path))?;
    if buf.len() as u64 != info.size {
        return Err(StorageError::other(format!(
            "{}: changed while read",
            path.display()
        )));
    }
    let blob = Cached {
        bytes: buf.into(),
        modified: info.modified,
    };
    inner.blobs.insert(digest, blob.clone(), generation);
    Ok(Opened::Small(blob))
}

impl FsStore {
    pub(super) async fn head(&self, digest: &Digest) -> Result<BlobInfo> {
        if let Some(blob) = self.inner.blobs.get(digest) {
            return Ok(BlobInfo {
                size: blob.bytes.len() as u64,
                modified: blob.modified,
            });
        }
        let path = self.blob_path(digest);
        blocking(move || Ok(info(&fs::metadata(&path).map_err(|e| io_err(e, &path))?))).await
    }

    pub(super) async fn get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        let opened = match self.inner.blobs.get(digest) {
            Some(blob) => Opened::Small(blob),
            None => {
                let path = self.blob_path(digest);
                let inner = self.inner.clone();
                let digest = digest.clone();
                blocking(move || open_blob(&inner, &path, &digest)).await?
            }
        };
        let size = match &opened {
            Opened::Small(blob) => blob.bytes.len() as u64,
            Opened::File(_, info) => info.size,
        };
        let range = resolve_range(size, range)?;
        let body = match opened {
            _ if range.is_empty() => Body::Empty,
            Opened::Small(blob) => {
                Body::Full(blob.bytes.slice(range.start as usize..range.end as usize))
            }
            Opened::File(file, _) => Body::Stream(read_range(file, range.start, range.end)),
        };
        Ok(BlobRead { size, range, body })
    }

    pub(super) async fn put(&self, digest: &Digest, body: Body) -> Result<u64> {
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

    pub(super) async fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        let removed = blocking(move || fs::remove_file(&path).map_err(|e| io_err(e, &path))).await;
        self.inner.blobs.remove(digest);
        removed
    }

    /// A page of blobs in digest order: algorithms, then shards, then names, each sorted, so
    /// a page reads only the shards it reaches.
    pub(super) async fn list_blobs(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        let root = self.inner.root.join("blobs");
        let after = options.after.map(str::to_owned);
        let limit = options.limit.unwrap_or(usize::MAX);
        blocking(move || {
            let mut out = Vec::new();
            let mut algs = dir_names(&root)?;
            algs.sort_unstable();
            for alg in algs {
                let dir = root.join(&alg);
                let mut shards = dir_names(&dir)?;
                shards.sort_unstable();
                for shard in shards {
                    // Every digest in this shard sorts below `after`: skip it unread.
                    let last_here = format!("{alg}:{shard}\u{7f}");
                    if after.as_deref().is_some_and(|a| last_here.as_str() <= a) {
                        continue;
                    }
                    let mut names = dir_names(&dir.join(&shard))?;
                    names.sort_unstable();
                    for hex in names {
                        if out.len() >= limit {
                            return Ok(out);
                        }
                        let text = format!("{alg}:{hex}");
                        if after.as_deref().is_some_and(|a| text.as_str() <= a) {
                            continue;
                        }
                        let Ok(digest) = text.parse::<Digest>() else {
                            continue;
                        };
                        let path = dir.join(&shard).join(&hex);
                        match fs::metadata(&path) {
                            Ok(m) => out.push(BlobEntry {
                                digest,
                                info: info(&m),
                            }),
                            // Deleted since the directory was read.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(other(e, &path)),
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn start(&self, id: &str) -> Result<String> {
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
            // The session saved next names this directory: make it, and its file, durable first.
            sync_dir(&dir).map_err(|e| other(e, &dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent).map_err(|e| other(e, parent))?;
            }
            Ok(String::new())
        })
        .await
    }

    pub(super) async fn append(&self, id: &str, offset: u64, body: Body) -> Result<u64> {
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
                    CopyError::Write(e) => StorageError::unavailable(e),
                })
            }
        }
    }

    pub(super) async fn finish(&self, id: &str, digest: &Digest, size: u64) -> Result<()> {
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

    pub(super) async fn abort(&self, id: &str) -> Result<()> {
        let dir = self.upload_dir(id)?;
        blocking(move || match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(other(e, &dir)),
        })
        .await
    }
}
