//! The mark of a garbage collection pass: a Bloom filter of every digest some manifest
//! references. Fixed size whatever the registry holds; a digest it says is absent is certainly
//! unreferenced, and one it wrongly says is present merely survives this pass. Each pass salts
//! its hashes differently, so no unreferenced blob survives two passes by the same accident.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// 8 Mi bits (1 MiB): with 7 probes, one wrong "present" in a million at 100,000 digests, one
/// in a hundred at 800,000.
const BITS: usize = 8 << 20;
const PROBES: usize = 7;

#[derive(Clone, Serialize, Deserialize)]
pub struct Filter {
    salt: String,
    #[serde(with = "bits")]
    bits: Vec<u64>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({} bits set)", self.count())
    }
}

impl Filter {
    pub fn new(salt: &str) -> Filter {
        Filter {
            salt: salt.to_owned(),
            bits: vec![0; BITS / 64],
        }
    }

    fn probes(&self, d: &Digest) -> [usize; PROBES] {
        // Digests are uniform already; the salt decides which of their bits this pass uses.
        let h = Sha256::new()
            .chain_update(self.salt.as_bytes())
            .chain_update([0])
            .chain_update(d.to_string().as_bytes())
            .finalize();
        let a = u64::from_le_bytes(h[..8].try_into().unwrap_or_default());
        let b = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default()) | 1;
        let mut out = [0; PROBES];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = (a.wrapping_add((i as u64).wrapping_mul(b)) % BITS as u64) as usize;
        }
        out
    }

    pub fn insert(&mut self, d: &Digest) {
        for p in self.probes(d) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.probes(d)
            .iter()
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    fn count(&self) -> u32 {
        self.bits.iter().map(|w| w.count_ones()).sum()
    }
}

/// The bits as base64 of their little-endian bytes (the Worker keeps a pass's filter in R2).
mod bits {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bits: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = B64.decode(text).map_err(serde::de::Error::custom)?;
        if bytes.len() != BITS / 8 {
            return Err(serde::de::Error::custom("a filter of the wrong size"));
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut f = Filter::new("pass-1");
        let ins: Vec<Digest> = (0..10_000u32)
            .map(|i| Digest::sha256(&i.to_le_bytes()))
            .collect();
        for d in &ins {
            f.insert(d);
        }
        assert!(ins.iter().all(|d| f.contains(d)));
        let wrong = (10_000..110_000u32)
            .filter(|i| f.contains(&Digest::sha256(&i.to_le_bytes())))
            .count();
        assert_eq!(
            wrong, 0,
            "at 10,000 digests, no false positive in 100,000 tries"
        );
        let back: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert!(ins.iter().all(|d| back.contains(d)));
    }
}
