//! Everything in process memory: for tests, and for a throwaway registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;

use super::{
    BlobEntry, BlobInfo, BlobRead, ListOptions, PutMode, RangeSpec, Result, Storage, StorageError,
    Stored, Version, resolve_range,
};
use crate::body::Body;
use crate::digest::{Checked, Digest};

/// A clock for blob ages, in seconds since the epoch (the core has none of its own).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: Option<Clock>,
}

#[derive(Default)]
struct Inner {
    /// Each blob with the time it was written, when the store has a clock.
    blobs: BTreeMap<Digest, (Bytes, Option<u64>)>,
    uploads: HashMap<String, Vec<u8>>,
    meta: BTreeMap<String, (Bytes, u64)>,
    writes: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that knows when each blob was written (garbage collection needs blob ages):
    /// from `clock`, typically the registry's test environment.
    pub fn with_clock(clock: Clock) -> Self {
        MemoryStore {
            clock: Some(clock),
            ..Self::default()
        }
    }

    fn now(&self) -> Option<u64> {
        self.clock.as_ref().map(|c| c())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many uploads are open (for tests of cleanup).
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }
}

async fn read_all(body: Body) -> Result<Vec<u8>> {
    let mut stream = body.into_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(StorageError::Body)?);
    }
    Ok(buf)
}

impl Storage for MemoryStore {
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        self.lock()
            .blobs
            .get(digest)
            .map(|(b, modified)| BlobInfo {
                size: b.len() as u64,
                modified: *modified,
            })
            .ok_or(StorageError::NotFound)
    }

    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        let (blob, _) = self
            .lock()
            .blobs
            .get(digest)
            .cloned()
            .ok_or(StorageError::NotFound)?;
        let size = blob.len() as u64;
        let range = resolve_range(size, range)?;
        Ok(BlobRead {
            size,
            range,
            body: Body::Full(blob.slice(range.start as usize..range.end as usize)),
        })
    }

    async fn blob_put(&self, digest: &Digest, body: Body) -> Result<u64> {
        let body = match body {
            Body::Foreign(f) => {
                Body::stream(Checked::digest(f.into_stream(), digest.clone(), None))
            }
            other => other,
        };
        let bytes = read_all(body).await?;
        let size = bytes.len() as u64;
        let now = self.now();
        self.lock()
            .blobs
            .entry(digest.clone())
            .or_insert_with(|| (Bytes::from(bytes), now));
        Ok(size)
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        self.lock()
            .blobs
            .remove(digest)
            .map(|_| ())
            .ok_or(StorageError::NotFound)
    }

    async fn blob_list(&self, options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        let inner = self.lock();
        let mut entries: Vec<BlobEntry> = inner
            .blobs
            .iter()
            .map(|(d, (b, modified))| BlobEntry {
                digest: d.clone(),
                info: BlobInfo {
                    size: b.len() as u64,
                    modified: *modified,
                },
            })
            .filter(|e| {
                options
                    .after
                    .is_none_or(|a| e.digest.to_string().as_str() > a)
            })
            .collect();
        // Digest order is algorithm then hex, which is also the order of their text.
        entries.sort_by_key(|e| e.digest.to_string());
        entries.truncate(options.limit.unwrap_or(usize::MAX));
        Ok(entries)
    }

    async fn upload_start(&self, id: &str) -> Result<String> {
        let mut inner = self.lock();
        if inner.uploads.contains_key(id) {
            return Err(StorageError::AlreadyExists);
        }
        inner.uploads.insert(id.to_owned(), Vec::new());
        Ok(String::new())
    }

    async fn upload_append(
        &self,
        id: &str,
        _state: &mut String,
        offset: u64,
        body: Body,
    ) -> Result<u64> {
        if !self.lock().uploads.contains_key(id) {
            return Err(StorageError::NotFound);
        }
        let chunk = read_all(body).await?;
        let mut inner = self.lock();
        let data = inner.uploads.get_mut(id).ok_or(StorageError::NotFound)?;
        if (data.len() as u64) < offset {
            return Err(StorageError::Precondition);
        }
        data.truncate(offset as usize);
        data.extend_from_slice(&chunk);
        Ok(data.len() as u64)
    }

    async fn upload_finish(
        &self,
        id: &str,
        _state: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let now = self.now();
        let mut inner = self.lock();
        let mut data = inner.uploads.remove(id).ok_or(StorageError::NotFound)?;
        if (data.len() as u64) < size {
            return Err(StorageError::Precondition);
        }
        data.truncate(size as usize);
        inner
            .blobs
            .entry(digest.clone())
            .or_insert_with(|| (Bytes::from(data), now));
        Ok(())
    }

    async fn upload_abort(&self, id: &str, _state: &str) -> Result<()> {
        self.lock().uploads.remove(id);
        Ok(())
    }

    async fn meta_get(&self, key: &str) -> Result<Stored> {
        let inner = self.lock();
        let (value, v) = inner.meta.get(key).ok_or(StorageError::NotFound)?;
        Ok(Stored {
            value: value.clone(),
            version: Version(v.to_string()),
        })
    }

    async fn meta_put(&self, key: &str, value: Bytes, mode: PutMode) -> Result<Version> {
        let mut inner = self.lock();
        let current = inner.meta.get(key).map(|(_, v)| Version(v.to_string()));
        match (&mode, &current) {
            (PutMode::Create, Some(_)) => return Err(StorageError::AlreadyExists),
            (PutMode::Update(want), Some(have)) if want != have => {
                return Err(StorageError::Precondition);
            }
            (PutMode::Update(_), None) => return Err(StorageError::Precondition),
            _ => {}
        }
        inner.writes += 1;
        let v = inner.writes;
        inner.meta.insert(key.to_owned(), (value, v));
        Ok(Version(v.to_string()))
    }

    async fn meta_delete(&self, key: &str, expected: Option<&Version>) -> Result<()> {
        let mut inner = self.lock();
        let (_, v) = inner.meta.get(key).ok_or(StorageError::NotFound)?;
        if expected.is_some_and(|want| want.0 != v.to_string()) {
            return Err(StorageError::Precondition);
        }
        inner.meta.remove(key);
        Ok(())
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        let inner = self.lock();
        let keys = inner
            .meta
            .range(prefix.to_owned()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .map(|k| &k[prefix.len()..])
            .filter(|k| options.after.is_none_or(|a| *k > a))
            .take(options.limit.unwrap_or(usize::MAX))
            .map(str::to_owned)
            .collect();
        Ok(keys)
    }
}

#[cfg(all(test, feature = "contract"))]
mod tests {
    use std::sync::Arc;

    #[tokio::test]
    async fn contract() {
        let store = super::MemoryStore::new();
        super::super::contract::run(&store, "mem").await.unwrap();
    }

    #[tokio::test]
    async fn contract_gc() {
        let now = 1_700_000_000;
        let store = Arc::new(super::MemoryStore::with_clock(Arc::new(move || now)));
        super::super::contract_gc::gc(store, "mem", now)
            .await
            .unwrap();
    }
}
