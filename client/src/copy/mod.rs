//! Copying an image (or an index of images, or an artifact) from a [`Location`] to another:
//! manifests are read and verified, the blobs they name move concurrently (skipped when the
//! destination has them, mounted when both sides are repositories of one registry), then the
//! manifests are written children first, the top one last under its tag. Bytes stream from
//! source to destination; nothing is staged on disk.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::media::is_index;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Location;
use crate::source::Source;
use crate::transport::Client;
use crate::upload::UploadOptions;
use berth::digest::Digest;
use berth::names::Reference;

mod blobs;
mod dest;
mod job;
mod referrers;
mod walk;

use dest::Dest;
use job::{Job, Stats};
use walk::walk;

/// How [`copy`] behaves.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// From an index, copy only this platform's image (the index itself is not copied).
    /// `None` copies the index and every platform, digests unchanged.
    pub platform: Option<Platform>,
    /// Also copy the manifests that refer to each copied manifest (signatures, SBOMs), and
    /// theirs in turn.
    pub referrers: bool,
    /// Blobs in flight at once.
    pub jobs: usize,
    pub upload: UploadOptions,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platform: None,
            referrers: false,
            jobs: 4,
            upload: UploadOptions::default(),
        }
    }
}

/// What a copy did.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    /// The top manifest written: its digest, media type and size.
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Where it was written (`HOST/NAME:TAG`, `oci:DIR:TAG`, ...).
    pub destination: String,
    pub manifests: usize,
    pub blobs: usize,
    pub copied: usize,
    pub skipped: usize,
    pub mounted: usize,
    /// Bytes of the blobs copied (not of those skipped or mounted).
    pub bytes: u64,
    pub referrers: usize,
}

/// Copy the image at `src` to `dst`. See the module documentation; blobs are verified as they
/// are read, so corrupt content fails the copy before anything refers to it.
pub async fn copy(
    client: &Client,
    src: &Location,
    dst: &Location,
    options: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<CopyReport> {
    let (source, mut root, mut root_bytes) = Source::open(client, src).await?;
    if let Some(platform) = &options.platform
        && is_index(&root.media_type)
    {
        root = platform
            .pick(&root_bytes)
            .map_err(|e| e.context(format!("{src}")))?;
        root_bytes = source.manifest(&root).await?;
    }
    let dest = Dest::open(client, dst, src).await?;
    if let Dest::Registry(_, Reference::Digest(d)) = &dest
        && *d != root.digest
    {
        return Err(Error::usage(format!(
            "the destination names digest {d}, but the manifest copied is {}",
            root.digest
        ))
        .with_hint("name the destination by tag, or by the digest of what is copied"));
    }
    let job = Arc::new(Job {
        source,
        dest,
        options: options.clone(),
        progress,
        stats: Stats::default(),
    });
    let mut nodes = Vec::new();
    let mut seen = HashSet::new();
    walk(
        &job.source,
        root.clone(),
        root_bytes,
        &mut nodes,
        &mut seen,
        0,
    )
    .await?;
    blobs::copy_blobs(&job, &nodes).await?;
    for (i, node) in nodes.iter().enumerate() {
        let is_root = i + 1 == nodes.len();
        let (written, _) = job
            .dest
            .put_manifest(&node.desc, &node.bytes, is_root)
            .await?;
        job.progress.manifest_done(&node.desc, &written);
    }
    let referrers = if options.referrers {
        referrers::copy_referrers(&job, &nodes, &mut seen).await?
    } else {
        0
    };
    let stats = &job.stats;
    Ok(CopyReport {
        destination: job.dest.describe(&root),
        digest: root.digest,
        media_type: root.media_type,
        size: root.size,
        manifests: nodes.len() + referrers,
        blobs: stats.blobs.load(Ordering::Relaxed),
        copied: stats.copied.load(Ordering::Relaxed),
        skipped: stats.skipped.load(Ordering::Relaxed),
        mounted: stats.mounted.load(Ordering::Relaxed),
        bytes: stats.bytes.load(Ordering::Relaxed),
        referrers,
    })
}
