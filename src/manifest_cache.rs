//! Manifest bytes by digest, kept in memory so that a pull does not fetch them from the store
//! again: on S3 or R2 that halves the trips of a manifest GET by digest.
//!
//! It cannot go stale, even with many instances over one store: the bytes under a digest never
//! change (they are checked against it before they enter), and every read checks the
//! repository's link in the store first, so a manifest deleted elsewhere is not served. Bounded
//! by total size; past the bound the oldest entries leave first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use crate::digest::Digest;

pub(crate) struct ManifestCache {
    inner: Mutex<Inner>,
    max_total: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Digest, Bytes>,
    order: VecDeque<Digest>,
    total: usize,
}

impl ManifestCache {
    /// Holds up to `max_total` bytes; 0 turns it off.
    pub fn new(max_total: usize) -> ManifestCache {
        ManifestCache {
            inner: Mutex::new(Inner::default()),
            max_total,
        }
    }

    /// Whether a manifest of `size` bytes would be kept: none larger than an eighth of the
    /// whole, so that one big index cannot empty it.
    pub fn takes(&self, size: u64) -> bool {
        size <= (self.max_total / 8) as u64
    }

    pub fn get(&self, d: &Digest) -> Option<Bytes> {
        self.lock().map.get(d).cloned()
    }

    /// Call only with bytes whose digest is `d`.
    pub fn put(&self, d: Digest, bytes: Bytes) {
        if !self.takes(bytes.len() as u64) {
            return;
        }
        let mut inner = self.lock();
        if inner.map.contains_key(&d) {
            return;
        }
        while inner.total + bytes.len() > self.max_total {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.map.remove(&old) {
                inner.total -= b.len();
            }
        }
        inner.total += bytes.len();
        inner.order.push_back(d.clone());
        inner.map.insert(d, bytes);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, len: usize) -> (Digest, Bytes) {
        let bytes = Bytes::from(vec![n; len]);
        (Digest::sha256(&bytes), bytes)
    }

    #[test]
    fn oldest_leave_first_and_the_total_stays_bounded() {
        let cache = ManifestCache::new(800);
        let entries: Vec<_> = (0..10).map(|n| entry(n, 100)).collect();
        for (d, b) in &entries {
            cache.put(d.clone(), b.clone());
        }
        assert!(cache.get(&entries[0].0).is_none());
        assert!(cache.get(&entries[1].0).is_none());
        for (d, b) in &entries[2..] {
            assert_eq!(cache.get(d).as_ref(), Some(b));
        }
        assert_eq!(cache.lock().total, 800);
    }

    #[test]
    fn large_manifests_and_a_zero_size_cache_keep_nothing() {
        let cache = ManifestCache::new(800);
        let (d, b) = entry(1, 101);
        assert!(!cache.takes(101));
        cache.put(d.clone(), b);
        assert!(cache.get(&d).is_none());
        let off = ManifestCache::new(0);
        let (d, b) = entry(2, 1);
        off.put(d.clone(), b);
        assert!(off.get(&d).is_none());
    }
}
