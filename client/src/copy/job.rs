//! One copy's two ends, settings and tallies, shared by its blob tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::CopyOptions;
use super::dest::Dest;
use crate::progress::{Outcome, Progress};
use crate::source::Source;
use berth::manifest::Descriptor;

/// A copy in progress.
pub(super) struct Job {
    pub source: Source,
    pub dest: Dest,
    pub options: CopyOptions,
    pub progress: Arc<dyn Progress>,
    pub stats: Stats,
}

/// What happened to the blobs, for the report.
#[derive(Default)]
pub(super) struct Stats {
    pub blobs: AtomicUsize,
    pub copied: AtomicUsize,
    pub skipped: AtomicUsize,
    pub mounted: AtomicUsize,
    pub bytes: AtomicU64,
}

impl Stats {
    pub fn count(&self, desc: &Descriptor, outcome: Outcome) {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Copied => {
                self.bytes.fetch_add(desc.size, Ordering::Relaxed);
                &self.copied
            }
            Outcome::Skipped => &self.skipped,
            Outcome::Mounted => &self.mounted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
