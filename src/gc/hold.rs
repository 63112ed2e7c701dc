//! The writer's half of garbage collection: a request that relies on a blob's bytes staying (a
//! manifest naming it, a mount, an upload finding it there) holds it first. GC.md has the
//! argument; in short:
//!
//! - a blob written less than [`Timing::young`] ago needs nothing: no pass may take it before
//!   this request's deadline;
//! - otherwise the writer **pins** it (`gc/pins/<digest>` = now), **then** looks for a pass's
//!   **dying mark** (`gc/dying/<digest>`); a pass writes its mark **then** reads the pin. Each
//!   side writes before it reads, so at least one of them sees the other: the pass backs off,
//!   or the writer treats the blob as gone (a manifest is refused with MANIFEST_BLOB_UNKNOWN, a
//!   mount falls back to an upload, an upload is asked to retry);
//! - the writer commits within [`Timing::writer_deadline`] of its pin, while the pin is fresh.

use bytes::Bytes;

use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::handlers::store_err;
use crate::keys;
use crate::registry::{Ctx, Result};
use crate::storage::{BlobInfo, PutMode, Storage, StorageError};

use super::{Dying, Timing};

/// What a writer found when it held a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// The bytes are there and stay while this request commits in time.
    Present(BlobInfo),
    /// No such blob.
    Absent,
    /// A garbage collection pass is deleting it.
    Dying,
}

impl<S: Storage> Ctx<'_, S> {
    pub(crate) fn timing(&self) -> Timing {
        Timing::new(self.config.gc_grace)
    }

    /// Hold blob `d` for a request that will commit something naming it.
    pub(crate) async fn hold(&self, d: &Digest) -> Result<Held> {
        let info = match self.store.blob_head(d).await {
            Ok(info) => info,
            Err(StorageError::NotFound) => return Ok(Held::Absent),
            Err(e) => return Err(store_err(e)),
        };
        let now = self.env.now();
        let timing = self.timing();
        // A store that cannot tell a blob's age never has it collected.
        if info.modified.is_none_or(|m| m + timing.young() > now) {
            return Ok(Held::Present(info));
        }
        self.pin(d, now).await?;
        if self.dying(d, now).await? {
            return Ok(Held::Dying);
        }
        // A pass that finished before the pin may have taken it.
        match self.store.blob_head(d).await {
            Ok(info) => Ok(Held::Present(info)),
            Err(StorageError::NotFound) => Ok(Held::Absent),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Hold blob `d` for an upload about to store it: pinned if it is there already, and never
    /// written while a pass is deleting it (the pass's delete could land after the write).
    pub(crate) async fn hold_for_upload(&self, d: &Digest) -> Result<()> {
        match self.hold(d).await? {
            Held::Present(_) => Ok(()),
            Held::Absent if !self.dying(d, self.env.now()).await? => Ok(()),
            Held::Absent | Held::Dying => Err(being_collected(d)),
        }
    }

    /// Refuse to commit if this request pinned its blobs longer ago than the writer deadline:
    /// the pins may no longer keep them.
    pub(crate) fn in_time(&self, since: u64) -> Result<()> {
        let late = self.env.now().saturating_sub(since) > self.timing().writer_deadline();
        if late {
            return Err(RegistryError::unavailable(
                "the request took longer than the garbage collector's writer deadline",
            ));
        }
        Ok(())
    }

    async fn pin(&self, d: &Digest, now: u64) -> Result<()> {
        self.store
            .meta_put(
                &keys::pin(d),
                Bytes::from(now.to_string()),
                PutMode::Overwrite,
            )
            .await
            .map(|_| ())
            .map_err(store_err)
    }

    /// Whether a pass has marked `d` dying, and not so long ago that the pass must have given
    /// up (a crashed pass leaves its mark behind).
    pub(crate) async fn dying(&self, d: &Digest, now: u64) -> Result<bool> {
        match self.store.meta_get(&keys::dying(d)).await {
            Ok(stored) => {
                Ok(Dying::parse(&stored.value).is_none_or(|m| m.at + self.timing().grace > now))
            }
            Err(StorageError::NotFound) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }
}

fn being_collected(d: &Digest) -> RegistryError {
    RegistryError::new(
        Code::Unavailable,
        format!("blob {d} is being garbage-collected; try again in a moment"),
    )
    .with_header(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("2"),
    )
}
