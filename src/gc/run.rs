//! Running passes: to the end at once (natively), or a few steps at a time with the pass saved
//! in between (the Worker), and the last report.

use bytes::Bytes;

use super::pass::{Pass, Report};
use crate::keys;
use crate::registry::Ctx;
use crate::storage::{PutMode, Storage, StorageError};

/// How far instances' clocks may disagree (GC.md, assumptions).
const CLOCK_SKEW: u64 = 60;

type Result<T> = std::result::Result<T, StorageError>;

impl<S: Storage> Ctx<'_, S> {
    pub(crate) async fn save_report(&self, report: &Report) -> Result<()> {
        let json = serde_json::to_vec(report).map_err(StorageError::other)?;
        self.store
            .meta_put(keys::GC_LAST, Bytes::from(json), PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    pub(crate) async fn last_report(&self) -> Result<Option<Report>> {
        match self.store.meta_get(keys::GC_LAST).await {
            Ok(s) => Ok(serde_json::from_slice(&s.value).ok()),
            Err(StorageError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn gc_steps(
        &self,
        interval: u64,
        page: usize,
        mut more: impl FnMut() -> bool,
    ) -> Result<Option<Report>> {
        let now = self.env.now();
        let fresh = || Pass::new(format!("gc-{}", self.env.new_id()), now, false).with_page(page);
        let (mut pass, version) = match self.store.meta_get(keys::GC_STATE).await {
            // An unreadable state (another version of berth wrote it): start over.
            Ok(s) => (
                serde_json::from_slice::<Pass>(&s.value).unwrap_or_else(|_| fresh()),
                Some(s.version),
            ),
            Err(StorageError::NotFound) => {
                // No pass in progress: start one if the last is `interval` old.
                // A report from the future (a clock that ran ahead, on this instance or
                // another) must not hold collection off until that time comes.
                let due = match self.last_report().await? {
                    Some(last) => {
                        let at = last.finished.unwrap_or(last.started);
                        at.saturating_add(interval) <= now || at > now.saturating_add(CLOCK_SKEW)
                    }
                    None => true,
                };
                if !due {
                    return Ok(None);
                }
                (fresh(), None)
            }
            Err(e) => return Err(e),
        };
        while more() {
            if pass.step(self).await? {
                break;
            }
        }
        if pass.done() {
            self.save_report(&pass.report).await?;
            if let Some(v) = &version {
                match self.store.meta_delete(keys::GC_STATE, Some(v)).await {
                    Ok(()) | Err(StorageError::NotFound | StorageError::Precondition) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Some(pass.report));
        }
        let json = serde_json::to_vec(&pass).map_err(StorageError::other)?;
        let mode = match version {
            Some(v) => PutMode::Update(v),
            None => PutMode::Create,
        };
        match self
            .store
            .meta_put(keys::GC_STATE, Bytes::from(json), mode)
            .await
        {
            // Another caller saved first: its progress stands, ours is dropped (what our steps
            // deleted was theirs to delete as well).
            Ok(_) | Err(StorageError::Precondition | StorageError::AlreadyExists) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
