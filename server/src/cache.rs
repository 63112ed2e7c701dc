//! In-memory caches for the filesystem store, so that pulling a manifest or a small blob
//! touches no file and takes no trip to the blocking pool.
//!
//! They are exact, not merely fresh enough: one process owns a root (the lock file), every
//! change goes through its [`super::fs::FsStore`], and the store updates a cache under the same
//! stripe lock as the file (metadata) or invalidates it with a generation count (blobs). Both
//! are bounded; past the bound, entries leave in no particular order, which only costs a
//! read from disk later.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use berth::digest::Digest;
use berth::storage::Stored;

/// Metadata documents by key, and keys known to be absent.
pub(crate) struct MetaCache {
    map: Mutex<HashMap<String, Option<Stored>>>,
    capacity: usize,
}

impl MetaCache {
    pub fn new(capacity: usize) -> MetaCache {
        MetaCache {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// `Some(None)`: known to be absent; `None`: not cached.
    pub fn get(&self, key: &str) -> Option<Option<Stored>> {
        lock(&self.map).get(key).cloned()
    }

    /// Call with the key's stripe lock held, after reading or writing the file.
    pub fn set(&self, key: &str, doc: Option<Stored>) {
        let mut map = lock(&self.map);
        if let Some(slot) = map.get_mut(key) {
            *slot = doc;
            return;
        }
        if map.len() >= self.capacity {
            evict_one(&mut map);
        }
        map.insert(key.to_owned(), doc);
    }

    /// Forget a key whose file is in an unknown state (a write failed half way).
    pub fn forget(&self, key: &str) {
        lock(&self.map).remove(key);
    }
}

/// Small blobs (manifests, configs) by digest. Blobs never change, but one can be deleted and
/// pushed again: a delete bumps the generation, and a read started before it does not cache.
pub(crate) struct BlobCache {
    inner: Mutex<Blobs>,
    /// Blobs up to this size are cached.
    pub max_blob: u64,
    max_total: usize,
}

/// A small blob held in memory, with its file's modification time.
#[derive(Clone)]
pub(crate) struct Cached {
    pub bytes: Bytes,
    pub modified: Option<u64>,
}

struct Blobs {
    map: HashMap<Digest, Cached>,
    total: usize,
    generation: u64,
}

impl BlobCache {
    pub fn new(max_blob: u64, max_total: usize) -> BlobCache {
        BlobCache {
            inner: Mutex::new(Blobs {
                map: HashMap::new(),
                total: 0,
                generation: 0,
            }),
            max_blob,
            max_total,
        }
    }

    pub fn get(&self, d: &Digest) -> Option<Cached> {
        lock(&self.inner).map.get(d).cloned()
    }

    /// Take before reading a blob's file; hand back to [`BlobCache::insert`].
    pub fn generation(&self) -> u64 {
        lock(&self.inner).generation
    }

    pub fn insert(&self, d: &Digest, blob: Cached, generation: u64) {
        let len = blob.bytes.len();
        let mut c = lock(&self.inner);
        if c.generation != generation || len > self.max_total || c.map.contains_key(d) {
            return;
        }
        while c.total + len > self.max_total {
            let Some(k) = c.map.keys().next().cloned() else {
                break;
            };
            if let Some(b) = c.map.remove(&k) {
                c.total -= b.bytes.len();
            }
        }
        c.total += len;
        c.map.insert(d.clone(), blob);
    }

    /// Call after the blob's file is gone.
    pub fn remove(&self, d: &Digest) {
        let mut c = lock(&self.inner);
        c.generation += 1;
        if let Some(b) = c.map.remove(d) {
            c.total -= b.bytes.len();
        }
    }
}

fn evict_one<V>(map: &mut HashMap<String, V>) {
    if let Some(k) = map.keys().next().cloned() {
        map.remove(&k);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
