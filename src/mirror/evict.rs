//! Keeping a mirror's cache under its size limit: the manifests used least recently go, and
//! garbage collection frees the blobs no remaining manifest references.
//!
//! Only copies of upstream content count: manifests clients pushed (with `--upstream-push`)
//! stay whatever their age.
//!
//! "Used" is what the cache records without a write per pull: when a manifest was fetched,
//! and for a tag, when it was last revalidated (a pull past the TTL rewrites the tag). A blob
//! shared by several manifests counts once and goes only with the last of them.

use std::collections::HashMap;

use crate::digest::Digest;
use crate::keys;
use crate::links::TagLink;
use crate::manifest::{self, ManifestLink};
use crate::names::RepoName;
use crate::registry::Ctx;
use crate::storage::{ListOptions, Storage, StorageError};

type Result<T> = std::result::Result<T, StorageError>;

/// What one eviction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// Bytes the cached manifests and their blobs took, before.
    pub cached: u64,
    /// Manifests dropped from the cache.
    pub manifests: usize,
    /// Bytes the next garbage collection pass frees (less what other repositories share).
    pub bytes: u64,
}

struct Entry {
    repo: RepoName,
    digest: Digest,
    size: u64,
    used: u64,
    blobs: Vec<(Digest, u64)>,
}

const PAGE: usize = 1000;

impl<S: Storage> Ctx<'_, S> {
    /// Every key under `prefix`, page by page.
    async fn all_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let after = out.last().cloned();
            let page = self
                .store
                .meta_list(
                    prefix,
                    ListOptions {
                        after: after.as_deref(),
                        limit: Some(PAGE),
                    },
                )
                .await?;
            let n = page.len();
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// The cached manifests of one mirrored repository, each with when it was last used.
    async fn cached(&self, repo: &RepoName, out: &mut Vec<Entry>) -> Result<()> {
        let mut used: HashMap<Digest, u64> = HashMap::new();
        for t in self.all_keys(&keys::tags(repo)).await? {
            let Ok(tag) = t.parse() else { continue };
            match self.store.meta_get(&keys::tag(repo, &tag)).await {
                Ok(s) => {
                    if let Some(l) = TagLink::parse(&s.value) {
                        let e = used.entry(l.digest).or_default();
                        *e = (*e).max(l.at);
                    }
                }
                Err(StorageError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        for rel in self.all_keys(&keys::manifests(repo)).await? {
            let Some(d) = keys::digest_of(&rel) else {
                continue;
            };
            let link: ManifestLink = match self.store.meta_get(&keys::manifest(repo, &d)).await {
                Ok(s) => match serde_json::from_slice(&s.value) {
                    Ok(l) => l,
                    Err(_) => continue,
                },
                Err(StorageError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            if link.pushed {
                continue;
            }
            let bytes = match self.store.blob_get(&d, None).await {
                Ok(b) => b.body.collect(self.config.max_manifest_size).await.ok(),
                Err(StorageError::NotFound) => None,
                Err(e) => return Err(e),
            };
            let blobs = bytes
                .and_then(|b| manifest::inspect(&b, Some(&link.media_type)).ok())
                .map(|m| m.blobs.iter().map(|b| (b.digest.clone(), b.size)).collect())
                .unwrap_or_default();
            let used = used.get(&d).copied().unwrap_or(0).max(link.at);
            out.push(Entry {
                repo: repo.clone(),
                digest: d,
                size: link.size,
                used,
                blobs,
            });
        }
        Ok(())
    }

    /// Drop least recently used manifests of mirrored repositories until what stays fits in
    /// `limit` bytes. The bytes go with the next garbage collection pass.
    pub(crate) async fn evict_mirror(&self, limit: u64) -> Result<Evicted> {
        let Some(mirror) = self.mirror else {
            return Ok(Evicted::default());
        };
        let mut entries = Vec::new();
        for name in self.all_keys(keys::CATALOG).await? {
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            if mirror.config.keeps(&repo) {
                self.cached(&repo, &mut entries).await?;
            }
        }
        // Blobs counted once, however many manifests share them.
        let mut refs: HashMap<&Digest, (u64, usize)> = HashMap::new();
        let mut total: u64 = 0;
        for e in &entries {
            total += e.size;
            for (d, size) in &e.blobs {
                let r = refs.entry(d).or_insert((*size, 0));
                if r.1 == 0 {
                    total += size;
                }
                r.1 += 1;
            }
        }
        let mut report = Evicted {
            cached: total,
            ..Evicted::default()
        };
        let mut order: Vec<&Entry> = entries.iter().collect();
        order.sort_by_key(|e| e.used);
        for e in order {
            if total <= limit {
                break;
            }
            match self
                .manifest_delete(e.repo.as_str(), &e.digest.to_string())
                .await
            {
                Ok(_) => {}
                Err(err) if err.code == crate::error::Code::ManifestUnknown => continue,
                Err(err) => return Err(StorageError::other(err.message)),
            }
            report.manifests += 1;
            let mut freed = e.size;
            for (d, _) in &e.blobs {
                if let Some(r) = refs.get_mut(d) {
                    r.1 -= 1;
                    if r.1 == 0 {
                        freed += r.0;
                    }
                }
            }
            total = total.saturating_sub(freed);
            report.bytes += freed;
        }
        Ok(report)
    }
}
