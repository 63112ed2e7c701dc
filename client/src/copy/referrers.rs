//! Copying referrers along: the manifests whose subject is a copied manifest, and theirs in
//! turn, with their blobs. A registry without the referrers API gets the spec's fallback tag.

use std::collections::HashSet;
use std::sync::Arc;

use super::blobs;
use super::dest::Dest;
use super::job::Job;
use super::walk::{Node, walk};
use crate::error::Result;
use crate::progress::short;
use crate::registry::fallback_tag;
use berth::digest::Digest;

/// Copy the referrers of `nodes` (skipping what `seen` holds); returns how many.
pub(super) async fn copy_referrers(
    job: &Arc<Job>,
    nodes: &[Node],
    seen: &mut HashSet<Digest>,
) -> Result<usize> {
    let mut copied = 0;
    let mut queue: Vec<Digest> = nodes.iter().map(|n| n.desc.digest.clone()).collect();
    let mut rounds = 0;
    while let Some(subject) = queue.pop() {
        rounds += 1;
        if rounds > 10_000 {
            break;
        }
        for r in job.source.referrers(&subject).await? {
            if seen.contains(&r.digest) {
                continue;
            }
            let bytes = job.source.manifest(&r).await?;
            let mut refs = Vec::new();
            walk(&job.source, r.clone(), bytes, &mut refs, seen, 0).await?;
            blobs::copy_blobs(job, &refs).await?;
            for node in &refs {
                let written = put_referrer(job, node).await?;
                job.progress.manifest_done(&node.desc, &written);
                queue.push(node.desc.digest.clone());
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Write a referrer by digest where its subject's referrers will be found: in a layout's
/// `index.json`, or a registry's fallback index when the registry did not take the subject.
async fn put_referrer(job: &Job, node: &Node) -> Result<String> {
    let (written, subject_seen) = job
        .dest
        .put_manifest(&node.desc, &node.bytes, false)
        .await?;
    if let Dest::Layout(l, _) = &job.dest {
        l.add_to_index(&node.desc, None).await?;
    }
    if let (Dest::Registry(repo, _), Some(s), false) = (&job.dest, &node.subject, subject_seen)
        && repo
            .add_fallback_referrer(s, &node.desc, &node.bytes)
            .await?
    {
        job.progress.note(&format!(
            "{}/{} has no referrers API: listed {} under the tag {}",
            repo.host(),
            repo.name(),
            short(&node.desc.digest),
            fallback_tag(s)?,
        ));
    }
    Ok(written)
}
