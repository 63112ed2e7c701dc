//! Upload sessions: what the core remembers between the requests of one upload. It lives in
//! storage, so the next PATCH may reach another process or Worker isolate.

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Hasher};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The repository the upload belongs to.
    pub name: String,
    /// Bytes received so far.
    pub offset: u64,
    /// The running hash of those bytes ([`Hasher::save`]).
    pub hash: String,
    /// Whether the client chose the algorithm (`?digest-algorithm=`); if not, and nothing has
    /// been received yet, the closing PUT's digest may still pick it.
    pub algorithm_fixed: bool,
    /// Seconds since the epoch when the session last moved; it expires after a quiet period.
    pub touched: u64,
    /// The store's own state for this upload (multipart ids, parts...).
    pub store: String,
}

impl Session {
    pub fn new(name: &str, algorithm: Algorithm, fixed: bool, now: u64, store: String) -> Session {
        Session {
            name: name.to_owned(),
            offset: 0,
            hash: Hasher::new(algorithm).save(),
            algorithm_fixed: fixed,
            touched: now,
            store,
        }
    }

    pub fn hasher(&self) -> Option<Hasher> {
        Hasher::restore(&self.hash)
    }

    pub fn expired(&self, now: u64, expiry: u64) -> bool {
        now.saturating_sub(self.touched) > expiry
    }
}
