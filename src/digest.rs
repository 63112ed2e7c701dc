//! Digests (`algorithm:encoded`), streaming hashers whose state can be saved between requests,
//! and the checking stream that every pushed byte passes through.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

use crate::body::ByteStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            _ if is_algorithm_grammar(s) => Err(DigestError::Unsupported),
            _ => Err(DigestError::Malformed),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestError {
    /// Not `algorithm:encoded` by the grammar, or the wrong length for its algorithm.
    Malformed,
    /// Well formed, but an algorithm berth does not implement.
    Unsupported,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DigestError::Malformed => "malformed digest",
            DigestError::Unsupported => "unsupported digest algorithm (use sha256 or sha512)",
        })
    }
}

/// A validated digest of a registered algorithm, with lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part (lowercase hex).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `data` by `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }

    pub fn sha256(data: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, data)
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn is_algorithm_grammar(s: &str) -> bool {
    let mut prev_sep = true;
    for c in s.bytes() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'+' | b'.' | b'_' | b'-' if !prev_sep => prev_sep = true,
            _ => return false,
        }
    }
    !prev_sep
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::Malformed)?;
        if hex.is_empty()
            || !hex
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
        {
            return Err(DigestError::Malformed);
        }
        let algorithm: Algorithm = alg.parse()?;
        if hex.len() != algorithm.hex_len()
            || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::Malformed);
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A running hash whose state survives between requests ([`Hasher::save`]).
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

const STATE_VERSION: &str = "v1";

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => sha256_update(h, data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let hex = match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
        };
        Digest { algorithm, hex }
    }

    /// The state as text: `v1:<algorithm>:<hex of sha2's serialized state>`.
    pub fn save(&self) -> String {
        let state = match self {
            Hasher::Sha256(h) => hex(h.serialize().as_slice()),
            Hasher::Sha512(h) => hex(h.serialize().as_slice()),
        };
        format!("{STATE_VERSION}:{}:{state}", self.algorithm())
    }

    /// The inverse of [`Hasher::save`]; `None` for anything it did not write.
    pub fn restore(saved: &str) -> Option<Hasher> {
        let mut parts = saved.splitn(3, ':');
        if parts.next()? != STATE_VERSION {
            return None;
        }
        let algorithm: Algorithm = parts.next()?.parse().ok()?;
        let bytes = unhex(parts.next()?)?;
        Some(match algorithm {
            Algorithm::Sha256 => {
                let s = SerializedState::<sha2::Sha256>::try_from(bytes.as_slice()).ok()?;
                Hasher::Sha256(sha2::Sha256::deserialize(&s).ok()?)
            }
            Algorithm::Sha512 => {
                let s = SerializedState::<sha2::Sha512>::try_from(bytes.as_slice()).ok()?;
                Hasher::Sha512(sha2::Sha512::deserialize(&s).ok()?)
            }
        })
    }
}

/// A SHA-256 block function: compresses `data`, a whole number of 64-byte blocks, into
/// `state`, exactly as `sha2::block_api::compress256` does.
pub type Sha256Blocks = fn(state: &mut [u32; 8], data: &[u8]);

static SHA256_BLOCKS: OnceLock<Sha256Blocks> = OnceLock::new();

/// Have every SHA-256 hasher of this process compress its bulk data with `f` (the native
/// server installs an AVX2 one on CPUs without SHA-NI, where sha2 runs portable code). sha2
/// still does the buffering, the padding and the saved state, so states saved before and
/// after, or by another build, stay interchangeable. The first call wins; returns whether
/// this one did.
pub fn set_sha256_blocks(f: Sha256Blocks) -> bool {
    SHA256_BLOCKS.set(f).is_ok()
}

/// Below this, the hop through the serialized state costs more than it saves.
const SHA256_BULK: usize = 1024;

fn sha256_update(h: &mut sha2::Sha256, mut data: &[u8]) {
    let Some(blocks) = SHA256_BLOCKS.get() else {
        return h.update(data);
    };
    if data.len() < SHA256_BULK {
        return h.update(data);
    }
    // sha2's state is 8 words and a block count, then its buffer: length byte, bytes. Fill
    // the buffer until sha2 compresses it, so that the bulk starts on a block boundary.
    let buffered = usize::from(h.serialize()[40]);
    if buffered != 0 {
        let (head, rest) = data.split_at(64 - buffered);
        h.update(head);
        data = rest;
    }
    let (bulk, tail) = data.split_at(data.len() / 64 * 64);
    let mut saved = h.serialize();
    let mut state = [0u32; 8];
    for (word, bytes) in state.iter_mut().zip(saved[..32].chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    blocks(&mut state, bulk);
    for (word, bytes) in state.iter().zip(saved[..32].chunks_exact_mut(4)) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&saved[32..40]);
    let count = u64::from_le_bytes(count) + (bulk.len() / 64) as u64;
    saved[32..40].copy_from_slice(&count.to_le_bytes());
    // A state sha2 itself wrote, with new words and count: it always reads back.
    *h = sha2::Sha256::deserialize(&saved).expect("a SHA-256 state sha2 wrote");
    h.update(tail);
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why a checked stream failed. It travels inside an `io::Error` of kind `InvalidData`, so a
/// store sees an ordinary body error and discards what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyCheck {
    DigestMismatch {
        expected: Digest,
        actual: Digest,
    },
    /// More bytes than announced.
    TooLong {
        expected: u64,
    },
    /// Fewer bytes than announced.
    TooShort {
        expected: u64,
        got: u64,
    },
    /// Past the registry's largest blob (bytes before this body included).
    TooLarge {
        limit: u64,
    },
}

impl fmt::Display for BodyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyCheck::DigestMismatch { expected, actual } => {
                write!(f, "content digest {actual} does not match {expected}")
            }
            BodyCheck::TooLong { expected } => write!(f, "body longer than {expected} bytes"),
            BodyCheck::TooShort { expected, got } => {
                write!(f, "body of {got} bytes, expected {expected}")
            }
            BodyCheck::TooLarge { limit } => {
                write!(f, "blob larger than this registry's limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for BodyCheck {}

impl BodyCheck {
    /// The check inside an error returned by a store or a stream, if that is what it was.
    pub fn find(err: &io::Error) -> Option<&BodyCheck> {
        err.get_ref()?.downcast_ref::<BodyCheck>()
    }
}

/// Hashes bytes as they pass, counts them, and turns the end of the stream into an error when
/// the length or digest is not what was expected.
pub struct Checked {
    inner: ByteStream,
    hasher: Arc<Mutex<Option<Hasher>>>,
    seen: u64,
    exact_len: Option<u64>,
    /// At most this many bytes may pass.
    max: Option<u64>,
    digest: Option<Digest>,
    done: bool,
}

impl Checked {
    /// Verify against `digest` at the end (hashing with its algorithm).
    pub fn digest(inner: ByteStream, digest: Digest, exact_len: Option<u64>) -> Checked {
        let hasher = Arc::new(Mutex::new(Some(Hasher::new(digest.algorithm()))));
        Checked {
            inner,
            hasher,
            seen: 0,
            exact_len,
            max: None,
            digest: Some(digest),
            done: false,
        }
    }

    /// Fail once more than `max` bytes have passed (`None`: no limit).
    pub fn at_most(mut self, max: Option<u64>) -> Checked {
        self.max = max;
        self
    }

    /// Feed `hasher` (shared, so the caller can save it afterwards) and check only the length.
    pub fn feeding(
        inner: ByteStream,
        hasher: Arc<Mutex<Option<Hasher>>>,
        exact_len: Option<u64>,
    ) -> Checked {
        Checked {
            inner,
            hasher,
            seen: 0,
            exact_len,
            max: None,
            digest: None,
            done: false,
        }
    }

    /// Compare the digest, once; a no-op when feeding or already compared.
    fn check_digest(&mut self) -> Result<(), BodyCheck> {
        let Some(expected) = self.digest.take() else {
            return Ok(());
        };
        let hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner()).take();
        match hasher.map(Hasher::finish) {
            Some(actual) if actual != expected => {
                Err(BodyCheck::DigestMismatch { expected, actual })
            }
            _ => Ok(()),
        }
    }

    fn fail(&mut self, check: BodyCheck) -> Poll<Option<io::Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, check))))
    }
}

impl Stream for Checked {
    type Item = io::Result<Bytes>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if let Some(expected) = self.exact_len
                    && self.seen > expected
                {
                    return self.fail(BodyCheck::TooLong { expected });
                }
                if let Some(limit) = self.max
                    && self.seen > limit
                {
                    return self.fail(BodyCheck::TooLarge { limit });
                }
                if let Some(h) = self
                    .hasher
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    h.update(&chunk);
                }
                // With the length known, check at the last byte rather than after it: a
                // consumer that stops at the length (an HTTP body with Content-Length) still
                // sees a mismatch, in place of the last chunk.
                if self.exact_len == Some(self.seen)
                    && let Err(check) = self.check_digest()
                {
                    return self.fail(check);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(expected) = self.exact_len
                    && self.seen != expected
                {
                    let got = self.seen;
                    return self.fail(BodyCheck::TooShort { expected, got });
                }
                if let Err(check) = self.check_digest() {
                    return self.fail(check);
                }
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let good = format!("sha256:{}", "a".repeat(64));
        let good512 = format!("sha512:{}", "0".repeat(128));
        let cases: &[(&str, Result<(), DigestError>)] = &[
            (&good, Ok(())),
            (&good512, Ok(())),
            ("sha256:abc", Err(DigestError::Malformed)),
            ("sha256", Err(DigestError::Malformed)),
            ("sha256:", Err(DigestError::Malformed)),
            (":abc", Err(DigestError::Malformed)),
            ("SHA256:abc", Err(DigestError::Malformed)),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                Err(DigestError::Unsupported),
            ),
            (
                "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
                Err(DigestError::Unsupported),
            ),
            ("sha256:../../etc/passwd", Err(DigestError::Malformed)),
            ("sha256:%2e%2e", Err(DigestError::Malformed)),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Digest>().map(|_| ()), *want, "{input}");
        }
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(upper.parse::<Digest>(), Err(DigestError::Malformed));
    }

    #[test]
    fn known_digests() {
        assert_eq!(
            Digest::sha256(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(
            Digest::of(Algorithm::Sha512, b"")
                .to_string()
                .starts_with("sha512:cf83e1357eefb8bd")
        );
    }

    /// The bulk path gives sha2's digests and saved states for every split, whichever block
    /// function is installed (here sha2's own, through the bulk path).
    #[test]
    fn bulk_updates_match_sha2() {
        fn reference(state: &mut [u32; 8], data: &[u8]) {
            let blocks: Vec<[u8; 64]> = data
                .chunks_exact(64)
                .map(|c| c.try_into().unwrap())
                .collect();
            sha2::block_api::compress256(state, &blocks);
        }
        // Another test binary may have installed another function first; either must agree.
        set_sha256_blocks(reference);
        assert_eq!(h_len(), 104);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for split in [0, 1, 63, 64, 65, 1000, 1023, 1024, 1025, 4096 + 17, 19_999] {
            for second in [0, 1, 1024, 5000] {
                let mut ours = Hasher::new(Algorithm::Sha256);
                let mut plain = sha2::Sha256::new();
                let end = (split + second).min(data.len());
                for part in [&data[..split], &data[split..end], &data[end..]] {
                    ours.update(part);
                    plain.update(part);
                    let Hasher::Sha256(h) = &ours else {
                        unreachable!()
                    };
                    assert_eq!(h.serialize(), plain.serialize(), "{split} {second}");
                }
                assert_eq!(ours.finish().hex(), hex(&plain.finalize()));
            }
        }
    }

    fn h_len() -> usize {
        sha2::Sha256::new().serialize().len()
    }

    /// The bulk path edits sha2's serialized state by offset: 8 state words (little-endian),
    /// the block count (u64, little-endian), the buffered length, then the buffered bytes. If a
    /// sha2 release changes that layout, this fails before any hash goes wrong.
    #[test]
    fn sha2_state_layout() {
        const IV: [u32; 8] = [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
            0x5be0cd19,
        ];
        let data: Vec<u8> = (0..200u32).map(|i| (i * 13) as u8).collect();
        let mut h = sha2::Sha256::new();
        h.update(&data);
        let saved = h.serialize();
        assert_eq!(
            saved.len(),
            104,
            "8 words, a count, a length and a 63-byte buffer"
        );
        let mut state = IV;
        let blocks: Vec<[u8; 64]> = data[..192]
            .chunks_exact(64)
            .map(|c| c.try_into().unwrap())
            .collect();
        sha2::block_api::compress256(&mut state, &blocks);
        for (i, word) in state.iter().enumerate() {
            assert_eq!(saved[i * 4..i * 4 + 4], word.to_le_bytes(), "word {i}");
        }
        assert_eq!(saved[32..40], 3u64.to_le_bytes(), "blocks compressed");
        assert_eq!(saved[40], 8, "bytes buffered");
        assert_eq!(saved[41..49], data[192..], "the buffered bytes");
    }

    /// A consumer that stops at the announced length (as an HTTP body does) still sees a
    /// mismatch: it replaces the last chunk.
    #[test]
    fn checked_fails_at_the_last_byte() {
        use futures_util::{FutureExt, StreamExt};
        let run = |chunks: &[&'static [u8]], digest: Digest, len: Option<u64>| {
            let inner = futures_util::stream::iter(
                chunks
                    .iter()
                    .map(|c| Ok(Bytes::from_static(c)))
                    .collect::<Vec<_>>(),
            );
            let mut s = Checked::digest(Box::pin(inner), digest, len);
            let mut out = Vec::new();
            while let Some(item) = s.next().now_or_never().expect("ready") {
                out.push(item.map_err(|e| BodyCheck::find(&e).cloned()));
            }
            out
        };
        let good = Digest::sha256(b"hello world");
        let bad = Digest::sha256(b"other");
        let got = run(&[b"hello ", b"world"], bad.clone(), Some(11));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(
            got[1],
            Err(Some(BodyCheck::DigestMismatch { .. }))
        ));
        let got = run(&[b"hello ", b"world"], good.clone(), Some(11));
        assert!(got.iter().all(Result::is_ok), "{got:?}");
        let got = run(&[b"hello ", b"world"], bad, None);
        assert_eq!(got.len(), 3, "without a length, at the end");
        assert!(matches!(
            got[2],
            Err(Some(BodyCheck::DigestMismatch { .. }))
        ));
        let got = run(&[b"hello ", b"world", b"!"], good.clone(), Some(11));
        assert!(
            matches!(got[2], Err(Some(BodyCheck::TooLong { .. }))),
            "{got:?}"
        );
        let got = run(&[b"hello "], good, Some(11));
        assert!(
            matches!(got[1], Err(Some(BodyCheck::TooShort { .. }))),
            "{got:?}"
        );
        let empty = run(&[], Digest::sha256(b""), Some(0));
        assert!(empty.is_empty(), "{empty:?}");
    }

    #[test]
    fn hasher_state_survives_save_and_restore() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = Hasher::new(alg);
            h.update(b"hello ");
            let saved = h.save();
            let mut back = Hasher::restore(&saved).expect("restore");
            back.update(b"world");
            assert_eq!(back.finish(), Digest::of(alg, b"hello world"));
        }
        assert!(Hasher::restore("v0:sha256:00").is_none());
        assert!(Hasher::restore("v1:sha256:zz").is_none());
        assert!(Hasher::restore("v1:sha256:00").is_none());
    }
}
