//! Garbage collection, online and lock-free: a pass marks what every repository's manifests
//! reference, applies the content policy (retention, untagged manifests, orphan referrers),
//! drops repository links nothing references, and deletes the bytes of blobs nothing marks,
//! while pushes and pulls go on. Several passes may run at once (instances sharing a bucket,
//! overlapping Worker crons); none needs a lock. GC.md at the top of the repository has the
//! argument for why no acknowledged content is lost; the writer's half is in [`hold`].
//!
//! - [`filter`]: the pass's mark (fixed memory);
//! - [`pass`]: the pass, resumable step by step (the Worker runs it across cron invocations);
//! - [`policy`]: retention, immutable tags, quotas;
//! - [`hold`]: what requests do so that a pass never takes what they are committing.

pub mod filter;
pub(crate) mod hold;
pub mod limits;
pub mod pass;
pub mod policy;
mod run;
pub mod scrub;

use serde::{Deserialize, Serialize};

pub use pass::{Item, Pass, Report};
pub use policy::ContentPolicy;
pub use scrub::ScrubReport;

/// The grace period and the deadlines that follow from it (GC.md, "Timing").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Seconds: nothing younger goes, and a pin this fresh keeps a blob.
    pub grace: u64,
}

/// The shortest grace berth accepts: the deadlines below are fractions of it.
pub const MIN_GRACE: u64 = 4;

impl Timing {
    pub fn new(grace: u64) -> Timing {
        Timing {
            grace: grace.max(MIN_GRACE),
        }
    }

    /// Blobs written less than this long ago need no pin: no pass takes them before a request
    /// holding them must have committed.
    pub fn young(self) -> u64 {
        self.grace / 4
    }

    /// A request commits within this long of pinning, or not at all.
    pub fn writer_deadline(self) -> u64 {
        self.grace / 4
    }

    /// A pass deletes bytes only within this long of its start.
    pub fn pass_deadline(self) -> u64 {
        self.grace / 2
    }
}

/// `gc/dying/<digest>`: a pass is deleting the blob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dying {
    pub pass: String,
    pub at: u64,
}

impl Dying {
    pub fn parse(value: &[u8]) -> Option<Dying> {
        serde_json::from_slice(value).ok()
    }
}

/// `gc/usage/<name>`: what a repository holds, as its last pass counted.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the distinct blobs and manifests the repository holds.
    pub bytes: u64,
    /// When counted.
    pub at: u64,
}
