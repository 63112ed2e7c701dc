//! What `berth serve` does besides answering requests: garbage collection passes every
//! `--gc-interval` (which drop expired uploads too), or, with collection off, the upload purge
//! alone; and scrubbing every `--scrub-interval`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::gc::Report;
use berth::gc::limits::human;
use berth::{Registry, Storage};

/// How often each task runs; `None` is never.
pub struct Schedule {
    pub gc: Option<Duration>,
    pub scrub: Option<Duration>,
    /// The upload purge when collection is off.
    pub purge: Duration,
    /// Where passes are counted, if anywhere.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Run the tasks for as long as the server runs.
pub async fn run<S: Storage>(registry: Arc<Registry<S>>, schedule: Schedule) {
    let scrub = schedule
        .scrub
        .map(|every| tokio::spawn(scrub(registry.clone(), every)));
    match schedule.gc {
        Some(every) => collect(registry, every, schedule.metrics).await,
        None => purge(registry, schedule.purge).await,
    }
    if let Some(s) = scrub {
        s.abort();
    }
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

async fn collect<S: Storage>(
    registry: Arc<Registry<S>>,
    every: Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) {
    let mut tick = ticker(every);
    loop {
        tick.tick().await;
        let start = Instant::now();
        match registry.evict_mirror().await {
            Ok(Some(e)) if e.manifests > 0 => tracing::info!(
                "mirror: cache held {}; dropped {} least recently used manifests ({})",
                human(e.cached),
                e.manifests,
                human(e.bytes)
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("mirror cache eviction: {e}"),
        }
        let done = registry.collect_garbage(false).await;
        if let Some(m) = &metrics {
            m.gc_pass(done.as_ref().ok());
        }
        match done {
            Ok(report) => log_pass(&report, start.elapsed()),
            Err(e) => tracing::warn!("garbage collection: {e}"),
        }
    }
}

/// One line per pass, and one per item removed at debug level.
pub fn log_pass(r: &Report, took: Duration) {
    for item in &r.items {
        tracing::debug!(
            "gc: {} {}{} ({}): {}",
            item.kind,
            item.repository
                .as_deref()
                .map(|n| format!("{n} "))
                .unwrap_or_default(),
            item.name,
            human(item.bytes),
            item.why
        );
    }
    let summary = format!("gc: {}; {:.2} s", r.summary(), took.as_secs_f64());
    match &r.aborted {
        Some(_) => tracing::warn!("{summary}"),
        None if r.removed() => tracing::info!("{summary}"),
        None => tracing::debug!("{summary}"),
    }
}

async fn purge<S: Storage>(registry: Arc<Registry<S>>, every: Duration) {
    let mut tick = ticker(every);
    loop {
        tick.tick().await;
        match registry.purge_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("dropped {n} expired uploads"),
            Err(e) => tracing::warn!("purging uploads: {e}"),
        }
    }
}

async fn scrub<S: Storage>(registry: Arc<Registry<S>>, every: Duration) {
    let mut tick = ticker(every);
    // The first tick fires at once: a scrub at start would read every blob right then.
    tick.tick().await;
    loop {
        tick.tick().await;
        match registry.scrub(None, None).await {
            Ok(r) => {
                for d in &r.corrupt {
                    tracing::error!("scrub: blob {d} did not match its digest; removed");
                }
                tracing::info!(
                    "scrub: {} blobs ({}) checked, {} corrupt",
                    r.checked,
                    human(r.bytes),
                    r.corrupt.len()
                );
            }
            Err(e) => tracing::warn!("scrub: {e}"),
        }
    }
}
