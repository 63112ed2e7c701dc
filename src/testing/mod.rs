//! Test support for the homes' test suites (the `contract` feature): a manual environment
//! whose clock stands still until moved, and a store whose operations a test can stop
//! ([`gate`]). Never part of a production build.

pub mod gate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::Env;
use crate::storage::memory::Clock;

/// A deterministic environment for tests: time stands still until moved, ids count up.
#[derive(Default)]
pub struct ManualEnv {
    pub now: AtomicU64,
    next: AtomicU64,
}

impl ManualEnv {
    pub fn at(now: u64) -> Self {
        ManualEnv {
            now: AtomicU64::new(now),
            next: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, secs: u64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Env for ManualEnv {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn new_id(&self) -> String {
        format!("upload-{}", self.next.fetch_add(1, Ordering::SeqCst))
    }
}

/// A clock for a [`crate::MemoryStore`] that reads the environment's time, so that blob ages
/// follow `advance`.
pub fn clock_of(env: &Arc<ManualEnv>) -> Clock {
    let env = env.clone();
    Arc::new(move || env.now())
}
