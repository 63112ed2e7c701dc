//! Moving the blobs of a copy: concurrently, largest first, each skipped when the
//! destination has it, mounted when it can be, or streamed across.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::dest::Dest;
use super::job::Job;
use super::walk::Node;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Outcome;
use crate::source::Source;
use berth::manifest::Descriptor;

/// Copy every blob the nodes name, each once.
pub(super) async fn copy_blobs(job: &Arc<Job>, nodes: &[Node]) -> Result<()> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = HashSet::new();
    for b in nodes.iter().flat_map(|n| n.blobs.iter()) {
        if seen.insert(b.digest.clone()) {
            blobs.push(b.clone());
        }
    }
    // Largest first: the long transfers start early and the small ones fill in around them.
    blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    job.progress
        .plan(blobs.len(), blobs.iter().map(|b| b.size).sum());
    let permits = Arc::new(Semaphore::new(job.options.jobs.max(1)));
    let mut tasks = JoinSet::new();
    for desc in blobs {
        let (job, permits) = (job.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let outcome = copy_blob(&job, &desc).await?;
            job.stats.count(&desc, outcome);
            job.progress.blob_done(&desc, outcome);
            Ok::<_, Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("a blob task failed: {e}"),
                ));
            }
        }
    }
    Ok(())
}

async fn copy_blob(job: &Job, desc: &Descriptor) -> Result<Outcome> {
    let progress = &job.progress;
    match &job.dest {
        Dest::Layout(l, _) => {
            if l.has_blob(desc).await {
                return Ok(Outcome::Skipped);
            }
            progress.blob_start(desc);
            l.write_blob(desc, job.source.blob(desc, progress)).await?;
            Ok(Outcome::Copied)
        }
        Dest::Registry(repo, _) => {
            if repo.blob_size(&desc.digest).await?.is_some() {
                return Ok(Outcome::Skipped);
            }
            let mut session = None;
            if let Source::Registry(from) = &job.source
                && from.host() == repo.host()
                && from.name() != repo.name()
            {
                match repo.start_upload(Some((&desc.digest, from.name()))).await? {
                    None => return Ok(Outcome::Mounted),
                    Some(s) => session = Some(s),
                }
            }
            progress.blob_start(desc);
            let open = || job.source.blob(desc, progress);
            repo.upload(desc, session, &open, &job.options.upload)
                .await
                .map_err(|e| e.context(format!("pushing blob {}", desc.digest)))?;
            Ok(Outcome::Copied)
        }
    }
}
