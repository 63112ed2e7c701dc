//! Everything in process memory: for tests, and for a throwaway registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{
    BlobRead, ByteRange, ListOptions, PutMode, Result, Storage, StorageError, Stored, Version,
};
use crate::body::Body;
use crate::digest::{Checked, Digest};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<Digest, Bytes>,
    uploads: HashMap<String, Vec<u8>>,
    meta: BTreeMap<String, (Bytes, u64)>,
    writes: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
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
    async fn blob_size(&self, digest: &Digest) -> Result<u64> {
        self.lock()
            .blobs
            .get(digest)
            .map(|b| b.len() as u64)
            .ok_or(StorageError::NotFound)
    }

    async fn blob_get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobRead> {
        let blob = self
            .lock()
            .blobs
            .get(digest)
            .cloned()
            .ok_or(StorageError::NotFound)?;
        let size = blob.len() as u64;
        let bytes = match range {
            Some(r) if r.end <= size && r.start <= r.end => {
                blob.slice(r.start as usize..r.end as usize)
            }
            Some(_) => return Err(StorageError::other("range outside blob")),
            None => blob,
        };
        Ok(BlobRead {
            size,
            body: Body::Full(bytes),
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
        self.lock()
            .blobs
            .entry(digest.clone())
            .or_insert_with(|| Bytes::from(bytes));
        Ok(size)
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<()> {
        self.lock()
            .blobs
            .remove(digest)
            .map(|_| ())
            .ok_or(StorageError::NotFound)
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
        let mut inner = self.lock();
        let mut data = inner.uploads.remove(id).ok_or(StorageError::NotFound)?;
        if (data.len() as u64) < size {
            return Err(StorageError::Precondition);
        }
        data.truncate(size as usize);
        inner
            .blobs
            .entry(digest.clone())
            .or_insert_with(|| Bytes::from(data));
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

    async fn meta_delete(&self, key: &str) -> Result<()> {
        self.lock()
            .meta
            .remove(key)
            .map(|_| ())
            .ok_or(StorageError::NotFound)
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

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn contract() {
        let store = super::MemoryStore::new();
        super::super::contract::run(&store, "mem").await.unwrap();
    }
}
