//! Password hashes: PBKDF2-HMAC-SHA256 in the PHC string format,
//! `$pbkdf2-sha256$i=ITERATIONS$SALT$HASH` (salt and hash in unpadded standard base64).
//!
//! PBKDF2 rather than bcrypt or argon2: it needs nothing beyond HMAC-SHA256 (already here for
//! tokens), and its cost is one knob that can be sized to a Worker's CPU budget. Only the token
//! endpoint and Basic requests hash, and verified logins are remembered for a few minutes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The Worker's cost: about 6 ms per login in wasm, inside a Worker's 10 ms CPU budget of the
/// free plan (the README has the measurements). Weaker than OWASP's figure; the Worker keeps
/// it because a login must fit its CPU limit.
pub const DEFAULT_ITERATIONS: u32 = 5_000;
/// The native default (`berth auth hash-password`): OWASP's figure for PBKDF2-HMAC-SHA256.
/// `berth serve` hashes off its reactor and throttles failed logins.
pub const NATIVE_ITERATIONS: u32 = 600_000;
/// Hashes with fewer rounds are refused: they are too cheap to guess.
pub const MIN_ITERATIONS: u32 = 1_000;
const MAX_ITERATIONS: u32 = 10_000_000;

/// A parsed password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// A password hash that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashError;

impl std::fmt::Display for HashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a password hash looks like $pbkdf2-sha256$i=N$SALT$HASH")
    }
}

impl std::error::Error for HashError {}

impl PasswordHash {
    pub fn parse(s: &str) -> Result<PasswordHash, HashError> {
        let bad = || HashError;
        let mut parts = s.trim().split('$');
        let (Some(""), Some("pbkdf2-sha256"), Some(i), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let iterations: u32 = i
            .strip_prefix("i=")
            .and_then(|n| n.parse().ok())
            .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
            .ok_or_else(bad)?;
        let salt = B64.decode(salt).map_err(|_| bad())?;
        let hash = B64.decode(hash).map_err(|_| bad())?;
        if salt.len() < 8 || hash.len() != 32 {
            return Err(bad());
        }
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Hash `password` with `salt` (at least 8 bytes; 16 random bytes are usual).
    pub fn new(password: &str, salt: &[u8], iterations: u32) -> PasswordHash {
        PasswordHash {
            iterations,
            salt: salt.to_vec(),
            hash: pbkdf2(password.as_bytes(), salt, iterations).to_vec(),
        }
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn verify(&self, password: &str) -> bool {
        let got = pbkdf2(password.as_bytes(), &self.salt, self.iterations);
        got.ct_eq(&self.hash[..]).into()
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$pbkdf2-sha256$i={}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.hash)
        )
    }
}

/// PBKDF2-HMAC-SHA256 (RFC 8018), one 32-byte block.
pub fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    // The keyed state is cloned, not rebuilt: two compressions per round instead of four.
    let keyed = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes any key length");
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn known_vectors() {
        // RFC 7914 section 11 (PBKDF2-HMAC-SHA256), first 32 bytes.
        assert_eq!(
            hex(&pbkdf2(b"passwd", b"salt", 1)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(
            hex(&pbkdf2(b"password", b"salt", 4096)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn round_trip_and_rejects() {
        let h = PasswordHash::new("s3cret", b"0123456789abcdef", 1000);
        let text = h.to_string();
        assert!(text.starts_with("$pbkdf2-sha256$i=1000$"));
        // Under the floor: refused however well-formed.
        let weak = PasswordHash::new("s3cret", b"0123456789abcdef", 999).to_string();
        assert!(PasswordHash::parse(&weak).is_err());
        let one = PasswordHash::new("s3cret", b"0123456789abcdef", 1).to_string();
        assert!(PasswordHash::parse(&one).is_err());
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.verify("s3cret"));
        assert!(!parsed.verify("s3cret "));
        assert!(!parsed.verify(""));
        for bad in [
            "",
            "s3cret",
            "$pbkdf2-sha256$i=0$MDEyMzQ1Njc$AAAA",
            "$pbkdf2-sha512$i=10$MDEyMzQ1Njc4OWFiY2RlZg$AAAA",
            "$pbkdf2-sha256$10$MDEyMzQ1Njc4OWFiY2RlZg$AAAA",
            "$pbkdf2-sha256$i=10$!!$AAAA",
            "$pbkdf2-sha256$i=10$MDEyMzQ1Njc4OWFiY2RlZg$AAAA",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
        let extra = format!("{text}$x");
        assert!(PasswordHash::parse(&extra).is_err());
    }
}
