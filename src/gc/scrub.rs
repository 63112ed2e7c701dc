//! Scrubbing: read every stored blob back, hash it, and take out of service any whose bytes no
//! longer match their digest (a disk that rotted, an object edited behind berth's back). A
//! corrupt blob is deleted, so that it is never served under its digest again: pulls then get
//! `BLOB_UNKNOWN` rather than wrong bytes, and a push of the image heals it.

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::Dying;
use crate::digest::{Digest, Hasher};
use crate::keys;
use crate::registry::Ctx;
use crate::storage::{ListOptions, PutMode, Storage, StorageError};

type Result<T> = std::result::Result<T, StorageError>;

/// What a scrub found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScrubReport {
    pub checked: u64,
    pub bytes: u64,
    /// Blobs whose bytes did not match their digest, now deleted.
    pub corrupt: Vec<Digest>,
    /// The last blob checked: where the next call goes on from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

impl<S: Storage> Ctx<'_, S> {
    /// Check up to `limit` blobs after `after` (all of them with `None`).
    pub(crate) async fn scrub(
        &self,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        let mut cursor = after.map(str::to_owned);
        let mut left = limit.unwrap_or(usize::MAX);
        while left > 0 {
            let page = self
                .store
                .blob_list(ListOptions {
                    after: cursor.as_deref(),
                    limit: Some(left.min(100)),
                })
                .await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.digest.to_string());
            for e in page {
                left -= 1;
                let Some(actual) = self.rehash(&e.digest).await? else {
                    continue;
                };
                report.checked += 1;
                report.bytes += e.info.size;
                if actual != e.digest {
                    self.take_out(&e.digest).await?;
                    report.corrupt.push(e.digest);
                }
            }
        }
        report.last = cursor;
        Ok(report)
    }

    /// The digest of what is stored under `d`, with `d`'s algorithm; `None` if it is gone.
    async fn rehash(&self, d: &Digest) -> Result<Option<Digest>> {
        let blob = match self.store.blob_get(d, None).await {
            Ok(b) => b,
            Err(StorageError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut h = Hasher::new(d.algorithm());
        let mut stream = blob.body.into_stream();
        while let Some(chunk) = stream.next().await {
            h.update(&chunk.map_err(StorageError::Body)?);
        }
        Ok(Some(h.finish()))
    }

    /// Delete corrupt bytes the way a pass deletes garbage, so that an upload writing good
    /// bytes at the same moment is asked to retry rather than lose them to this delete. Pins
    /// do not keep corrupt bytes: nobody can use them.
    async fn take_out(&self, d: &Digest) -> Result<()> {
        let mark = Dying {
            pass: "scrub".into(),
            at: self.env.now(),
        };
        let key = keys::dying(d);
        let value = Bytes::from(serde_json::to_vec(&mark).unwrap_or_default());
        let version = match self.store.meta_put(&key, value, PutMode::Create).await {
            Ok(v) => v,
            // A pass is deleting it already.
            Err(StorageError::AlreadyExists) => return Ok(()),
            Err(e) => return Err(e),
        };
        let deleted = match self.store.blob_delete(d).await {
            Ok(()) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        };
        match self.store.meta_delete(&key, Some(&version)).await {
            Ok(()) | Err(StorageError::NotFound | StorageError::Precondition) => {}
            Err(e) => return Err(e),
        }
        deleted
    }
}
