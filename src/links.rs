//! What a repository records of what it holds, as stored under [`crate::keys`]: a tag's target,
//! a blob link. Each carries the time it was last written, which garbage collection's grace
//! and retention read, and which makes every rewrite a new version (so a conditional delete
//! never undoes a newer write of the same content).
//!
//! Older documents (a tag holding only its digest, an empty blob link) still read: with time 0.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// `repos/<name>/_tags/<tag>`: the manifest a tag names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagLink {
    pub digest: Digest,
    /// Seconds since the epoch when the tag was last pushed.
    #[serde(default)]
    pub at: u64,
}

impl TagLink {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored tag: JSON, or (as berth wrote them before, and as OCI layouts are served) the
    /// bare digest.
    pub fn parse(value: &[u8]) -> Option<TagLink> {
        if let Ok(link) = serde_json::from_slice(value) {
            return Some(link);
        }
        let digest = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
        Some(TagLink { digest, at: 0 })
    }
}

/// `repos/<name>/_blobs/<alg>/<hex>`: the repository holds the blob (pushed, mounted, or named
/// by one of its manifests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BlobLink {
    /// Seconds since the epoch when the link was last written.
    #[serde(default)]
    pub at: u64,
    /// The blob's size, for usage and quotas; 0 when unknown (older links).
    #[serde(default)]
    pub size: u64,
}

impl BlobLink {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A stored link; an empty one (as berth wrote them before) has time 0 and no size.
    pub fn parse(value: &[u8]) -> BlobLink {
        serde_json::from_slice(value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_forms_read() {
        let d = Digest::sha256(b"x");
        let new = TagLink {
            digest: d.clone(),
            at: 7,
        };
        assert_eq!(TagLink::parse(&new.to_bytes()), Some(new));
        assert_eq!(
            TagLink::parse(d.to_string().as_bytes()),
            Some(TagLink { digest: d, at: 0 })
        );
        assert_eq!(TagLink::parse(b"junk"), None);
        let link = BlobLink { at: 3, size: 9 };
        assert_eq!(BlobLink::parse(&link.to_bytes()), link);
        assert_eq!(BlobLink::parse(b""), BlobLink::default());
    }
}
