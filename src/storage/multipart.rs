//! The upload session state of a store that keeps chunked uploads as multipart objects (S3,
//! R2): parts of one size, the bytes after the last part in small pending objects. The state
//! travels as JSON in the session, so any instance can continue the upload.

use serde::{Deserialize, Serialize};

use super::StorageError;

/// The store's part of an upload session.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct UploadState {
    /// The part size the upload started with: every part but the last has it.
    pub part: u64,
    /// Bytes appended: `parts.len() * part` plus the pending bytes.
    pub len: u64,
    /// The multipart upload of the chunked object, once a part was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mp: Option<String>,
    /// ETags of parts 1..=n.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// The bytes after the last part, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// Pending objects copied into a part by the append that wrote this state: the next append
    /// deletes them (this state being saved by then, nothing refers to them any more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// A pending object: bytes after the last full part.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Pending {
    /// The nonce in its key.
    pub k: String,
    /// Its length.
    pub n: u64,
    /// Its ETag, checked when it is read back.
    pub e: String,
}

impl UploadState {
    pub fn pending_len(&self) -> u64 {
        self.pending.iter().map(|p| p.n).sum()
    }

    pub fn read(state: &str) -> Result<UploadState, StorageError> {
        // from_slice, as everywhere else: from_str would compile serde_json's parser twice.
        serde_json::from_slice(state.as_bytes())
            .map_err(|e| StorageError::other(format!("upload state: {e}")))
    }

    pub fn write(&self) -> Result<String, StorageError> {
        serde_json::to_string(self).map_err(StorageError::other)
    }
}
