//! Metadata documents: one small file per key under `meta/`.
//!
//! Keys such as `catalog/a` and `catalog/a/b` are both leaves, so each leaf file gets a `~`
//! suffix, which no key segment contains, and a leaf never collides with a directory.
//!
//! A document's version is a hash of its bytes. Compare-and-set on content is sound: if the
//! bytes are what the writer read, its decision still holds. `Create`, `Update`, conditional
//! deletes and the writes they race with run under a lock striped by key; one process owns the
//! root (the `lock` file), so an in-process lock is enough. Documents are cached in memory
//! exactly: every write goes through here and updates the cache under the same lock.

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File};
use std::hash::{Hash, Hasher as _};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use super::{FsStore, Inner};
use crate::files::{TempFile, blocking, make_dirs, other, read_small, sync_dir};
use berth::digest::Digest;
use berth::storage::{ListOptions, PutMode, Result, StorageError, Stored, Version};

const STRIPES: usize = 64;
/// Metadata documents are small; anything larger is corrupt.
const META_LIMIT: u64 = 16 << 20;

/// Locks striped by key.
pub(super) struct Stripes(Vec<Mutex<()>>);

impl Stripes {
    pub fn new() -> Stripes {
        Stripes((0..STRIPES).map(|_| Mutex::new(())).collect())
    }

    fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        self.0[h.finish() as usize % STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// The names in a directory; none if it does not exist.
pub(super) fn dir_names(dir: &Path) -> Result<Vec<String>> {
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
pub(super) fn leaf(key: &str) -> String {
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

impl Inner {
    fn meta_path(&self, key: &str) -> Result<PathBuf> {
        check_key(key, false)?;
        Ok(self.root.join("meta").join(leaf(key)))
    }

    /// The document as it is now: from the cache, else from its file. Under the key's lock.
    fn current(&self, key: &str, path: &Path) -> Result<Option<Stored>> {
        if let Some(doc) = self.meta.get(key) {
            return Ok(doc);
        }
        match read_small(path, META_LIMIT) {
            Ok(value) => Ok(Some(stored(value))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(other(e, path)),
        }
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
        // A delete of the directory's last document prunes it, and may do so between our
        // mkdir of a parent and of its child, or between mkdir and rename: start again. Each
        // try loses only to a prune that completed, so a few suffice.
        let mut tries = 0;
        loop {
            match make_dirs(dir).and_then(|()| fs::rename(&temp_path, path)) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 16 => tries += 1,
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

/// Keys under `dir` (relative to it, prefixed with `rel`) after `after`, in byte order, until
/// `out` holds `limit`. Each directory is read and sorted on its own level, and subtrees wholly
/// at or before `after` are never entered: a page costs the directories it passes through, not
/// the whole tree (a flat directory is still read whole: readdir has no order).
fn walk(
    dir: &Path,
    rel: &mut String,
    after: Option<&str>,
    limit: usize,
    out: &mut Vec<String>,
) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // Pruned by a concurrent delete, or never created: nothing there.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(other(e, dir)),
    };
    // Sorted by what the entry contributes to a key: `name` for a key, `name/` for a directory,
    // so that the level's order is the keys' byte order ("a" < "a-b" < "a/x").
    let mut level = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| other(e, dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let kind = entry.file_type().map_err(|e| other(e, dir))?;
        let part = if kind.is_dir() {
            format!("{name}/")
        } else if let Some(key) = name.strip_suffix('~') {
            key.to_owned()
        } else {
            continue;
        };
        let full = format!("{rel}{part}");
        let wanted = match after {
            None => true,
            // A directory is entered if some key under it can come after `after`.
            Some(a) if kind.is_dir() => full.as_str() > a || a.starts_with(full.as_str()),
            Some(a) => full.as_str() > a,
        };
        if wanted {
            level.push((part, kind.is_dir()));
        }
    }
    level.sort_unstable();
    for (part, is_dir) in level {
        if out.len() >= limit {
            break;
        }
        let len = rel.len();
        rel.push_str(&part);
        if is_dir {
            walk(
                &dir.join(part.trim_end_matches('/')),
                rel,
                after,
                limit,
                out,
            )?;
        } else {
            out.push(rel.clone());
        }
        rel.truncate(len);
    }
    Ok(())
}

impl FsStore {
    pub(super) async fn get_doc(&self, key: &str) -> Result<Stored> {
        // Only valid keys are ever cached: a hit needs no check.
        if let Some(doc) = self.inner.meta.get(key) {
            return doc.ok_or(StorageError::NotFound);
        }
        let path = self.inner.meta_path(key)?;
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(move || {
            // Under the key's lock, so that a write cannot land between the read and the cache.
            let _guard = inner.locks.lock(&key);
            let doc = inner.current(&key, &path)?;
            inner.meta.set(&key, doc.clone());
            doc.ok_or(StorageError::NotFound)
        })
        .await
    }

    pub(super) async fn put_doc(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        let path = self.inner.meta_path(key)?;
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(move || {
            let _guard = inner.locks.lock(&key);
            let current = inner.current(&key, &path)?;
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

    pub(super) async fn delete_doc(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        let path = self.inner.meta_path(key)?;
        let inner = self.inner.clone();
        let key = key.to_owned();
        let expected = expected.cloned();
        blocking(move || {
            let _guard = inner.locks.lock(&key);
            if let Some(want) = &expected {
                match inner.current(&key, &path)? {
                    None => return Err(StorageError::NotFound),
                    Some(have) if have.version != *want => return Err(StorageError::Precondition),
                    Some(_) => {}
                }
            }
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

    pub(super) async fn list_docs(
        &self,
        prefix: &str,
        options: ListOptions<'_>,
    ) -> Result<Vec<String>> {
        check_key(prefix, true)?;
        let dir = self.inner.root.join("meta").join(prefix);
        let after = options.after.map(str::to_owned);
        let limit = options.limit.unwrap_or(usize::MAX);
        blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &mut String::new(), after.as_deref(), limit, &mut out)?;
            Ok(out)
        })
        .await
    }
}
