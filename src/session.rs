//! Upload sessions: what the core remembers between the requests of one upload. It lives in
//! storage, so the next PATCH may reach another process or Worker isolate.

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Hasher};

/// Whether `id` can be an upload id ([`crate::Env::new_id`]'s alphabet and length). Ids arrive
/// in paths: anything else cannot be one, and must never reach a store.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Chunks shorter than the advertised minimum one upload may have. Only the last should be,
/// but a client resuming a broken chunk sends its rest, and that is short too: a few are
/// allowed, and the bound keeps a client from growing a session (and an R2 upload's pending
/// objects) a byte at a time.
pub const SHORT_CHUNKS: u32 = 16;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

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
    /// Who started it (access control's principal), if anyone: only they may go on with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Chunks so far shorter than `OCI-Chunk-Min-Length` ([`SHORT_CHUNKS`] at most).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub short_chunks: u32,
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
            owner: None,
            short_chunks: 0,
        }
    }

    pub fn hasher(&self) -> Option<Hasher> {
        Hasher::restore(&self.hash)
    }

    pub fn expired(&self, now: u64, expiry: u64) -> bool {
        now.saturating_sub(self.touched) > expiry
    }
}

/// Why a chunk does not fit the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// `Content-Range` is not `<first>-<last>`.
    Malformed,
    /// The chunk does not start where the upload ends (416).
    WrongOffset { start: u64 },
    /// `Content-Length` disagrees with `Content-Range`.
    LengthMismatch,
}

/// The length a chunk must have, if the request says: from `Content-Range` (which must start
/// at `offset`) and `Content-Length` (which must agree with it).
pub fn chunk_length(
    offset: u64,
    content_range: Option<&str>,
    content_length: Option<u64>,
) -> Result<Option<u64>, ChunkError> {
    let Some(cr) = content_range else {
        return Ok(content_length);
    };
    let r = crate::range::parse_chunk_range(cr).ok_or(ChunkError::Malformed)?;
    if r.start != offset {
        return Err(ChunkError::WrongOffset { start: r.start });
    }
    if content_length.is_some_and(|l| l != r.len()) {
        return Err(ChunkError::LengthMismatch);
    }
    Ok(Some(r.len()))
}

impl Session {
    /// The hasher that closes the upload with a digest of `algorithm`: the running one, or, if
    /// nothing was received and the client did not fix the algorithm, a fresh one of the
    /// digest's algorithm. `None` when the bytes were hashed with another algorithm.
    /// Whether an upload whose bytes were hashed with another algorithm may still close with a
    /// digest of `algorithm`, by hashing the stored bytes again: only if the client did not choose
    /// the algorithm (clients SHOULD send `?digest-algorithm=`, and not all do).
    pub fn may_rehash(&self, algorithm: Algorithm) -> bool {
        !self.algorithm_fixed && self.hasher().is_some_and(|h| h.algorithm() != algorithm)
    }

    pub fn closing_hasher(&self, algorithm: Algorithm) -> Option<Hasher> {
        let running = self.hasher()?;
        if running.algorithm() == algorithm {
            Some(running)
        } else if self.offset == 0 && !self.algorithm_fixed {
            Some(Hasher::new(algorithm))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lengths() {
        use ChunkError::*;
        type Case<'a> = (
            u64,
            Option<&'a str>,
            Option<u64>,
            Result<Option<u64>, ChunkError>,
        );
        let cases: &[Case] = &[
            (0, None, None, Ok(None)),
            (0, None, Some(10), Ok(Some(10))),
            (0, Some("0-9"), None, Ok(Some(10))),
            (0, Some("0-9"), Some(10), Ok(Some(10))),
            (10, Some("10-10"), Some(1), Ok(Some(1))),
            (10, Some("0-9"), None, Err(WrongOffset { start: 0 })),
            (10, Some("11-20"), None, Err(WrongOffset { start: 11 })),
            (0, Some("0-9"), Some(9), Err(LengthMismatch)),
            (0, Some("9-0"), None, Err(Malformed)),
            (0, Some("junk"), None, Err(Malformed)),
        ];
        for (offset, cr, cl, want) in cases {
            assert_eq!(
                chunk_length(*offset, *cr, *cl),
                *want,
                "{offset} {cr:?} {cl:?}"
            );
        }
    }

    #[test]
    fn closing_algorithm() {
        let fresh = Session::new("a", Algorithm::Sha256, false, 0, String::new());
        assert_eq!(
            fresh
                .closing_hasher(Algorithm::Sha256)
                .map(|h| h.algorithm()),
            Some(Algorithm::Sha256)
        );
        assert_eq!(
            fresh
                .closing_hasher(Algorithm::Sha512)
                .map(|h| h.algorithm()),
            Some(Algorithm::Sha512)
        );
        let started = Session {
            offset: 3,
            ..fresh.clone()
        };
        assert!(started.closing_hasher(Algorithm::Sha512).is_none());
        assert!(started.may_rehash(Algorithm::Sha512));
        assert!(!started.may_rehash(Algorithm::Sha256));
        let fixed = Session::new("a", Algorithm::Sha512, true, 0, String::new());
        assert!(fixed.closing_hasher(Algorithm::Sha256).is_none());
        assert!(fixed.closing_hasher(Algorithm::Sha512).is_some());
        assert!(!fixed.may_rehash(Algorithm::Sha256));
        let corrupt = Session {
            hash: "garbage".into(),
            ..fresh
        };
        assert!(corrupt.closing_hasher(Algorithm::Sha256).is_none());
        assert!(!corrupt.may_rehash(Algorithm::Sha512));
    }

    #[test]
    fn expiry() {
        let s = Session::new("a", Algorithm::Sha256, false, 100, String::new());
        assert!(!s.expired(160, 60));
        assert!(s.expired(161, 60));
        assert!(
            !s.expired(50, 60),
            "a clock that went backwards does not expire sessions"
        );
    }
}
