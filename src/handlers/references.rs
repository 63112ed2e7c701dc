//! What a manifest push checks and holds before it commits: every blob and child manifest it
//! names is in the repository and stays there (GC.md): the bytes are held against garbage
//! collection, and the repository's links to them are rewritten with a fresh time, so that a
//! pass that read them before cannot delete them after.

use bytes::Bytes;
use futures_util::future::try_join_all;

use super::store_err;
use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::gc::hold::Held;
use crate::keys;
use crate::links::BlobLink;
use crate::manifest::{Manifest, ManifestLink};
use crate::names::RepoName;
use crate::registry::{Ctx, Result};
use crate::storage::{PutMode, Storage, StorageError, Stored};

fn missing(what: &str, d: &Digest, name: &RepoName, why: &str) -> RegistryError {
    RegistryError::new(
        Code::ManifestBlobUnknown,
        format!("{what} {d} is not in repository {name}{why}"),
    )
}

/// Blob and child lookups one manifest push runs at once.
const HOLD_CONCURRENCY: usize = 16;

impl<S: Storage> Ctx<'_, S> {
    /// The repository's link to `d` (a blob link, or a manifest link when `d` is a manifest).
    pub(crate) async fn link(
        &self,
        name: &RepoName,
        d: &Digest,
    ) -> Result<Option<(String, Stored)>> {
        for key in [keys::blob(name, d), keys::manifest(name, d)] {
            match self.store.meta_get(&key).await {
                Ok(s) => return Ok(Some((key, s))),
                Err(StorageError::NotFound) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(None)
    }

    /// Check and hold every blob and child manifest `m` names (its subject and
    /// non-distributable layers excepted), a few at a time: a manifest naming 80,000 blobs
    /// must not start 80,000 lookups at once.
    pub(crate) async fn hold_references(&self, name: &RepoName, m: &Manifest) -> Result<()> {
        let blobs = m.blobs.iter().map(|b| (b, false));
        let children = m.children.iter().map(|c| (c, true));
        let all: Vec<_> = blobs.chain(children).collect();
        for batch in all.chunks(HOLD_CONCURRENCY) {
            try_join_all(
                batch
                    .iter()
                    .map(|(d, manifest)| self.hold_linked(name, &d.digest, d.size, *manifest)),
            )
            .await?;
        }
        Ok(())
    }

    /// One blob (or, with `manifest`, one child manifest) of `size` bytes: linked in the
    /// repository, its bytes held, its link fresh.
    async fn hold_linked(
        &self,
        name: &RepoName,
        d: &Digest,
        size: u64,
        manifest: bool,
    ) -> Result<()> {
        let what = if manifest { "manifest" } else { "blob" };
        let link = if manifest {
            match self.store.meta_get(&keys::manifest(name, d)).await {
                Ok(s) => Some((keys::manifest(name, d), s)),
                Err(StorageError::NotFound) => None,
                Err(e) => return Err(store_err(e)),
            }
        } else {
            self.link(name, d).await?
        };
        let Some((key, stored)) = link else {
            return Err(missing(what, d, name, ""));
        };
        match self.hold(d).await? {
            Held::Present(info) if info.size != size => Err(RegistryError::new(
                Code::ManifestInvalid,
                format!(
                    "descriptor of {what} {d} says {size} bytes; the {what} has {}",
                    info.size
                ),
            )),
            Held::Present(info) => self.refresh(&key, &stored, info.size).await,
            Held::Absent => Err(missing(what, d, name, " (its bytes are gone)")),
            Held::Dying => Err(missing(
                what,
                d,
                name,
                " (it is being garbage-collected: push it again)",
            )),
        }
    }

    /// Rewrite a link with the time now, unless it is young: a pass that read it older cannot
    /// delete it (its delete is conditional on the version it read).
    async fn refresh(&self, key: &str, stored: &Stored, size: u64) -> Result<()> {
        let now = self.env.now();
        let young = self.timing().young();
        let value = if key.contains("/_manifests/") {
            let Ok(mut link) = serde_json::from_slice::<ManifestLink>(&stored.value) else {
                return Ok(());
            };
            if link.at + young > now {
                return Ok(());
            }
            link.at = now;
            serde_json::to_vec(&link).map_err(RegistryError::internal)?
        } else {
            let link = BlobLink::parse(&stored.value);
            if link.at + young > now {
                return Ok(());
            }
            BlobLink { at: now, size }.to_bytes()
        };
        self.store
            .meta_put(key, Bytes::from(value), PutMode::Overwrite)
            .await
            .map(|_| ())
            .map_err(store_err)
    }
}
