//! A garbage collection pass, in steps that can stop and resume (the Worker runs a pass across
//! cron invocations, saving it in between): expired uploads, then the mark (one repository at a
//! time), then the sweep of unmarked blobs (a page at a time), then the tidying of old pins and
//! dying marks. What a pass holds in memory: its filter (1 MiB), one repository's tags and
//! parsed manifests while it marks that repository, one page of blobs while it sweeps.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::filter::Filter;
use super::policy::TagAge;
use super::{Dying, Timing, Usage};
use crate::digest::Digest;
use crate::keys;
use crate::links::{BlobLink, TagLink};
use crate::manifest::{self, ManifestLink};
use crate::names::RepoName;
use crate::registry::Ctx;
use crate::storage::{BlobEntry, ListOptions, PutMode, Storage, StorageError, Version};

/// Blobs (and pins) read per sweep or tidy step, by default.
const PAGE: usize = 200;
/// Deletions in flight at once in a sweep step.
const CONCURRENCY: usize = 16;
/// A dry run lists at most this many items (the counts cover the rest).
const MAX_ITEMS: usize = 10_000;

type Result<T> = std::result::Result<T, StorageError>;

/// One thing a pass removed (or, in a dry run, would remove), and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Item {
    /// `blob`, `link`, `manifest`, `tag`, `referrer` or `upload`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The digest, tag or upload id.
    pub name: String,
    pub bytes: u64,
    pub why: String,
}

/// What a pass did, or would do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub id: String,
    pub dry_run: bool,
    pub started: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    pub repositories: u64,
    pub manifests_marked: u64,
    pub blobs_seen: u64,
    pub uploads_dropped: u64,
    pub tags_deleted: u64,
    pub manifests_deleted: u64,
    pub referrers_deleted: u64,
    pub links_deleted: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    /// Unmarked blobs kept because a writer pinned them, or a pass was deleting them already.
    pub blobs_held: u64,
    /// Blobs whose stored bytes failed their digest (scrub).
    #[serde(default)]
    pub corrupt: Vec<String>,
    pub items: Vec<Item>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

impl Report {
    /// One line: what went, what was looked at.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would free" } else { "freed" };
        let mut line = format!(
            "{} blobs {verb} {}; {} links, {} manifests, {} referrers, {} tags, {} uploads; {} \
             repositories and {} blobs looked at, {} held by writers",
            self.blobs_deleted,
            super::limits::human(self.bytes_freed),
            self.links_deleted,
            self.manifests_deleted,
            self.referrers_deleted,
            self.tags_deleted,
            self.uploads_dropped,
            self.repositories,
            self.blobs_seen,
            self.blobs_held,
        );
        if let Some(why) = &self.aborted {
            line.push_str(&format!("; stopped: {why}"));
        }
        line
    }

    /// Whether it removed anything at all.
    pub fn removed(&self) -> bool {
        self.blobs_deleted
            + self.links_deleted
            + self.manifests_deleted
            + self.referrers_deleted
            + self.tags_deleted
            + self.uploads_dropped
            > 0
    }
}

/// Kept as `{"phase": "mark", "after": ...}`. Read through [`RawPhase`]: serde's derive for an
/// internally tagged enum buffers the value through its generic `Content` tree (kilobytes of
/// wasm).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "phase", rename_all = "lowercase")]
enum Phase {
    Uploads,
    Mark { after: Option<String> },
    Sweep { after: Option<String> },
    Tidy { after: Option<String> },
    Done,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum PhaseName {
    Uploads,
    Mark,
    Sweep,
    Tidy,
    Done,
}

#[derive(Deserialize)]
struct RawPhase {
    phase: PhaseName,
    #[serde(default)]
    after: Option<String>,
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Phase, D::Error> {
        let RawPhase { phase, after } = RawPhase::deserialize(d)?;
        Ok(match phase {
            PhaseName::Uploads => Phase::Uploads,
            PhaseName::Mark => Phase::Mark { after },
            PhaseName::Sweep => Phase::Sweep { after },
            PhaseName::Tidy => Phase::Tidy { after },
            PhaseName::Done => Phase::Done,
        })
    }
}

/// A pass in progress: where it is, its mark so far, its report so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pass {
    phase: Phase,
    filter: Filter,
    /// Blobs or pins a sweep or tidy step reads: smaller where a step must fit a budget.
    #[serde(default = "default_page")]
    page: usize,
    pub report: Report,
}

fn default_page() -> usize {
    PAGE
}

impl Pass {
    pub fn new(id: String, now: u64, dry_run: bool) -> Pass {
        Pass {
            phase: Phase::Uploads,
            page: PAGE,
            filter: Filter::new(&id),
            report: Report {
                id,
                dry_run,
                started: now,
                ..Report::default()
            },
        }
    }

    /// Read at most `page` blobs or pins per step.
    pub fn with_page(mut self, page: usize) -> Pass {
        self.page = page.max(1);
        self
    }

    pub fn done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn record(&mut self, item: Item) {
        if self.report.items.len() < MAX_ITEMS {
            self.report.items.push(item);
        }
    }

    /// Take the next step; `Ok(true)` once the pass is done. A step is one page of uploads,
    /// one repository, or one page of blobs or pins.
    pub(crate) async fn step<S: Storage>(&mut self, cx: &Ctx<'_, S>) -> Result<bool> {
        let now = cx.env.now();
        let timing = Timing::new(cx.config.gc_grace);
        // Past its deadline a pass may not delete bytes: it stops, and the next starts over.
        if self.phase != Phase::Done
            && now.saturating_sub(self.report.started) > timing.pass_deadline()
        {
            self.report.aborted = Some(format!(
                "ran past its deadline ({} s after it started)",
                timing.pass_deadline()
            ));
            self.finish(now);
            return Ok(true);
        }
        match self.phase.clone() {
            Phase::Uploads => {
                if !self.report.dry_run {
                    self.report.uploads_dropped += cx.purge_uploads().await? as u64;
                }
                self.phase = Phase::Mark { after: None };
            }
            Phase::Mark { after } => {
                // The catalog and the repositories with links, in one order.
                let options = ListOptions {
                    after: after.as_deref(),
                    limit: Some(1),
                };
                let listed = cx.store.meta_list(keys::CATALOG, options).await?;
                let linked = cx.store.meta_list(keys::LINKED, options).await?;
                let next = listed.into_iter().chain(linked).min();
                match next {
                    Some(name) => {
                        if let Ok(repo) = name.parse::<RepoName>() {
                            self.mark(cx, &repo, now, timing).await?;
                        }
                        self.phase = Phase::Mark { after: Some(name) };
                    }
                    None => self.phase = Phase::Sweep { after: None },
                }
            }
            Phase::Sweep { after } => {
                let page = cx
                    .store
                    .blob_list(ListOptions {
                        after: after.as_deref(),
                        limit: Some(self.page),
                    })
                    .await?;
                let last = page.last().map(|e| e.digest.to_string());
                self.sweep(cx, page, now, timing).await?;
                self.phase = match last {
                    Some(last) => Phase::Sweep { after: Some(last) },
                    None => Phase::Tidy { after: None },
                };
            }
            Phase::Tidy { after } => {
                let last = self.tidy(cx, after.as_deref(), now, timing).await?;
                self.phase = match last {
                    Some(last) => Phase::Tidy { after: Some(last) },
                    None => {
                        self.finish(now);
                        Phase::Done
                    }
                };
            }
            Phase::Done => {}
        }
        Ok(self.done())
    }

    fn finish(&mut self, now: u64) {
        self.phase = Phase::Done;
        self.report.finished = Some(now);
    }

    /// Mark one repository: apply the content policy to its tags and manifests, add what its
    /// surviving manifests name to the filter, drop the links nothing names, count its usage.
    async fn mark<S: Storage>(
        &mut self,
        cx: &Ctx<'_, S>,
        name: &RepoName,
        now: u64,
        timing: Timing,
    ) -> Result<()> {
        self.report.repositories += 1;
        let writable = cx.store.writable(name);
        // Read first: a link made after this read rewrites it, and the delete below then fails.
        let linked = match cx.store.meta_get(&keys::linked(name)).await {
            Ok(s) => Some(s.version),
            Err(StorageError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let dry = self.report.dry_run;
        let policy = cx.policy;

        // Tags, and retention.
        let mut tags: BTreeMap<String, (TagLink, Version)> = BTreeMap::new();
        for t in list_all(cx.store, &keys::tags(name)).await? {
            match cx.store.meta_get(&format!("{}{t}", keys::tags(name))).await {
                Ok(s) => {
                    if let Some(link) = TagLink::parse(&s.value) {
                        tags.insert(t, (link, s.version));
                    }
                }
                Err(StorageError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if let (Some(policy), true) = (policy, writable) {
            let ages: Vec<TagAge> = tags
                .iter()
                .map(|(t, (l, _))| TagAge {
                    tag: t.clone(),
                    pushed: l.at,
                })
                .collect();
            for (t, rule) in policy.expired(name, &ages, now) {
                let Some((_, version)) = tags.get(&t.tag) else {
                    continue;
                };
                let key = format!("{}{}", keys::tags(name), t.tag);
                if dry || gone(cx.store.meta_delete(&key, Some(version)).await)? {
                    self.report.tags_deleted += 1;
                    tags.remove(&t.tag);
                    self.record(Item {
                        kind: "tag".into(),
                        repository: Some(name.to_string()),
                        name: t.tag,
                        bytes: 0,
                        why: format!("retention, [[repos]] rule {}", rule.index),
                    });
                }
            }
        }

        // Manifests: what each names.
        let mut manifests: HashMap<Digest, Parsed> = HashMap::new();
        for rel in list_all(cx.store, &keys::manifests(name)).await? {
            let Some(d) = keys::digest_of(&rel) else {
                continue;
            };
            let stored = match cx.store.meta_get(&keys::manifest(name, &d)).await {
                Ok(s) => s,
                Err(StorageError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let link: ManifestLink = serde_json::from_slice(&stored.value)
                .map_err(|e| StorageError::other(format!("manifest link {name}@{d}: {e}")))?;
            // Its bytes gone, it names nothing any more.
            let parsed = read_manifest(cx.store, &d, &link)
                .await?
                .unwrap_or_default();
            manifests.insert(
                d,
                Parsed {
                    link: Some((link, stored.version)),
                    ..parsed
                },
            );
        }
        self.report.manifests_marked += manifests.len() as u64;

        // Which manifests live: tagged, an index's children, referrers of live ones.
        let untagged = policy.and_then(|p| p.untagged(name));
        let orphans = policy.is_some_and(|p| p.orphan_referrers);
        let mut live: BTreeSet<Digest> = BTreeSet::new();
        if writable && (untagged.is_some() || orphans) {
            let mut stack: Vec<Digest> = tags.values().map(|(l, _)| l.digest.clone()).collect();
            if untagged.is_none() {
                // Untagged manifests stay: only orphaned referrers may go.
                stack.extend(
                    manifests
                        .iter()
                        .filter(|(_, p)| {
                            p.subject.as_ref().is_none_or(|s| manifests.contains_key(s))
                        })
                        .map(|(d, _)| d.clone()),
                );
            }
            loop {
                while let Some(d) = stack.pop() {
                    if live.insert(d.clone())
                        && let Some(p) = manifests.get(&d)
                    {
                        stack.extend(p.children.iter().cloned());
                    }
                }
                // Referrers of live manifests live too (subject before referrer, repeatedly).
                stack.extend(
                    manifests
                        .iter()
                        .filter(|(d, p)| {
                            !live.contains(*d)
                                && p.subject.as_ref().is_some_and(|s| live.contains(s))
                        })
                        .map(|(d, _)| d.clone()),
                );
                if stack.is_empty() {
                    break;
                }
            }
            let doomed: Vec<Digest> = manifests
                .iter()
                .filter(|(d, p)| {
                    let Some((link, _)) = &p.link else {
                        return false;
                    };
                    let orphan = p
                        .subject
                        .as_ref()
                        .is_some_and(|s| !manifests.contains_key(s));
                    // Young manifests may be an index's children pushed before the index.
                    let old = |keep: u64| link.at.saturating_add(keep.max(timing.grace)) < now;
                    !live.contains(*d)
                        && ((orphan && orphans && old(0)) || untagged.is_some_and(old))
                })
                .map(|(d, _)| d.clone())
                .collect();
            for d in doomed {
                let Some(p) = manifests.get(&d) else { continue };
                let Some((link, version)) = &p.link else {
                    continue;
                };
                let key = keys::manifest(name, &d);
                if !(dry || gone(cx.store.meta_delete(&key, Some(version)).await)?) {
                    continue;
                }
                let orphan = p
                    .subject
                    .as_ref()
                    .is_some_and(|s| !manifests.contains_key(s));
                if let Some(s) = &link.subject
                    && !dry
                {
                    let entry = keys::referrer(name, s, &d);
                    match cx.store.meta_get(&entry).await {
                        Ok(e) => {
                            gone(cx.store.meta_delete(&entry, Some(&e.version)).await)?;
                        }
                        Err(StorageError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                if orphan {
                    self.report.referrers_deleted += 1;
                } else {
                    self.report.manifests_deleted += 1;
                }
                self.record(Item {
                    kind: if orphan { "referrer" } else { "manifest" }.into(),
                    repository: Some(name.to_string()),
                    name: d.to_string(),
                    bytes: link.size,
                    why: if orphan {
                        "its subject is gone".into()
                    } else {
                        "untagged, and nothing keeps it".into()
                    },
                });
                manifests.remove(&d);
            }
        }

        // The mark: every surviving manifest and what it names.
        let mut named: BTreeSet<Digest> = BTreeSet::new();
        let mut usage = 0u64;
        let mut held = manifests.len() + tags.len();
        for (d, p) in &manifests {
            self.filter.insert(d);
            usage += p.link.as_ref().map_or(0, |(l, _)| l.size);
            for b in p.blobs.iter().chain(&p.children) {
                self.filter.insert(b);
                named.insert(b.clone());
            }
        }
        drop(manifests);
        if !writable {
            return Ok(());
        }

        // Links nothing names go once past the grace; the rest count towards usage.
        for rel in list_all(cx.store, &keys::blobs(name)).await? {
            let Some(d) = keys::digest_of(&rel) else {
                continue;
            };
            let key = keys::blob(name, &d);
            let stored = match cx.store.meta_get(&key).await {
                Ok(s) => s,
                Err(StorageError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let link = BlobLink::parse(&stored.value);
            if named.contains(&d) || link.at.saturating_add(timing.grace) > now {
                usage += link.size;
                held += 1;
                continue;
            }
            if dry || gone(cx.store.meta_delete(&key, Some(&stored.version)).await)? {
                self.report.links_deleted += 1;
                self.record(Item {
                    kind: "link".into(),
                    repository: Some(name.to_string()),
                    name: d.to_string(),
                    bytes: link.size,
                    why: "no manifest of the repository names it".into(),
                });
            }
        }
        if let Some(version) = linked.filter(|_| held == 0 && !dry) {
            gone(
                cx.store
                    .meta_delete(&keys::linked(name), Some(&version))
                    .await,
            )?;
        }
        if !dry {
            let usage = Usage {
                bytes: usage,
                at: now,
            };
            let value = Bytes::from(serde_json::to_vec(&usage).unwrap_or_default());
            cx.store
                .meta_put(&keys::usage(name), value, PutMode::Overwrite)
                .await?;
        }
        Ok(())
    }

    /// Delete the blobs of one page that nothing marked, that are past the grace, and that no
    /// writer holds.
    async fn sweep<S: Storage>(
        &mut self,
        cx: &Ctx<'_, S>,
        page: Vec<BlobEntry>,
        now: u64,
        timing: Timing,
    ) -> Result<()> {
        self.report.blobs_seen += page.len() as u64;
        let candidates: Vec<BlobEntry> = page
            .into_iter()
            .filter(|e| !self.filter.contains(&e.digest))
            .filter(|e| {
                e.info
                    .modified
                    .is_some_and(|m| m.saturating_add(timing.grace) <= now)
            })
            .collect();
        let id = self.report.id.clone();
        let dry = self.report.dry_run;
        let started = self.report.started;
        let outcomes: Vec<(BlobEntry, Result<Outcome>)> =
            futures_util::stream::iter(candidates.into_iter().map(|e| {
                let id = &id;
                async move {
                    let outcome = collect(cx, &e.digest, id, started, now, timing, dry).await;
                    (e, outcome)
                }
            }))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (e, outcome) in outcomes {
            match outcome? {
                Outcome::Deleted => {
                    self.report.blobs_deleted += 1;
                    self.report.bytes_freed += e.info.size;
                    self.record(Item {
                        kind: "blob".into(),
                        repository: None,
                        name: e.digest.to_string(),
                        bytes: e.info.size,
                        why: "no manifest names it".into(),
                    });
                }
                Outcome::Held => self.report.blobs_held += 1,
            }
        }
        Ok(())
    }

    /// Drop pins and dying marks older than the grace (a pin that old keeps nothing; a mark
    /// that old belongs to a pass that stopped). One page of each kind; the last key seen.
    async fn tidy<S: Storage>(
        &mut self,
        cx: &Ctx<'_, S>,
        after: Option<&str>,
        now: u64,
        timing: Timing,
    ) -> Result<Option<String>> {
        if self.report.dry_run {
            return Ok(None);
        }
        // Both prefixes in one listing order: pins, then marks.
        let (prefix, after) = match after {
            Some(a) if a.starts_with(keys::DYING) => (keys::DYING, Some(&a[keys::DYING.len()..])),
            Some(a) => (keys::PINS, Some(&a[keys::PINS.len()..])),
            None => (keys::PINS, None),
        };
        let page = cx
            .store
            .meta_list(
                prefix,
                ListOptions {
                    after,
                    limit: Some(self.page),
                },
            )
            .await?;
        for rel in &page {
            let key = format!("{prefix}{rel}");
            let stored = match cx.store.meta_get(&key).await {
                Ok(s) => s,
                Err(StorageError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let at = if prefix == keys::PINS {
                std::str::from_utf8(&stored.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            } else {
                Dying::parse(&stored.value).map_or(0, |m| m.at)
            };
            if at.saturating_add(timing.grace) < now {
                gone(cx.store.meta_delete(&key, Some(&stored.version)).await)?;
            }
        }
        Ok(match page.last() {
            Some(last) => Some(format!("{prefix}{last}")),
            None if prefix == keys::PINS => Some(keys::DYING.to_owned()),
            None => None,
        })
    }
}

/// What one manifest names, as the mark needs it.
#[derive(Default)]
struct Parsed {
    link: Option<(ManifestLink, Version)>,
    blobs: Vec<Digest>,
    children: Vec<Digest>,
    subject: Option<Digest>,
}

/// Read and parse a manifest; `None` if its bytes are gone. Bytes that do not parse stop the
/// pass: not knowing what a manifest names, it may not delete anything.
async fn read_manifest<S: Storage>(
    store: &S,
    d: &Digest,
    link: &ManifestLink,
) -> Result<Option<Parsed>> {
    let blob = match store.blob_get(d, None).await {
        Ok(b) => b,
        Err(StorageError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let bytes = blob
        .body
        .collect(64 << 20)
        .await
        .map_err(|e| StorageError::other(format!("reading manifest {d}: {e:?}")))?;
    let m = manifest::inspect(&bytes, Some(&link.media_type))
        .map_err(|e| StorageError::other(format!("manifest {d} does not parse: {e}")))?;
    Ok(Some(Parsed {
        link: None,
        blobs: m.blobs.into_iter().map(|b| b.digest).collect(),
        children: m.children.into_iter().map(|c| c.digest).collect(),
        subject: m.subject.map(|s| s.digest),
    }))
}

/// Every key under `prefix`, a page at a time.
async fn list_all<S: Storage>(store: &S, prefix: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    loop {
        let page = store
            .meta_list(
                prefix,
                ListOptions {
                    after: out.last().map(String::as_str),
                    limit: Some(1000),
                },
            )
            .await?;
        let n = page.len();
        out.extend(page);
        if n < 1000 {
            return Ok(out);
        }
    }
}

/// A conditional delete's outcome: `true` if it deleted, `false` if the document changed or
/// went meanwhile (someone wrote it: it stays).
fn gone(r: Result<()>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(StorageError::Precondition | StorageError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

enum Outcome {
    Deleted,
    Held,
}

/// Delete one unmarked blob past its grace, unless a writer holds it: the pass's half of the
/// protocol in [`super::hold`]. Mark dying, **then** read the pin.
async fn collect<S: Storage>(
    cx: &Ctx<'_, S>,
    d: &Digest,
    pass: &str,
    started: u64,
    now: u64,
    timing: Timing,
    dry: bool,
) -> Result<Outcome> {
    let fresh_pin = |value: &[u8]| {
        std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|at| at.saturating_add(timing.grace) > now)
    };
    let pin = match cx.store.meta_get(&keys::pin(d)).await {
        Ok(s) => Some(s),
        Err(StorageError::NotFound) => None,
        Err(e) => return Err(e),
    };
    if pin.as_ref().is_some_and(|p| fresh_pin(&p.value)) {
        return Ok(Outcome::Held);
    }
    if dry {
        return Ok(Outcome::Deleted);
    }
    let mark = Dying {
        pass: pass.to_owned(),
        at: now,
    };
    let mark_key = keys::dying(d);
    let value = Bytes::from(serde_json::to_vec(&mark).unwrap_or_default());
    let version = match cx.store.meta_put(&mark_key, value, PutMode::Create).await {
        Ok(v) => v,
        // Another pass is on it: it decides.
        Err(StorageError::AlreadyExists) => return Ok(Outcome::Held),
        Err(e) => return Err(e),
    };
    let pin = match cx.store.meta_get(&keys::pin(d)).await {
        Ok(s) => Some(s),
        Err(StorageError::NotFound) => None,
        Err(e) => {
            let _ = cx.store.meta_delete(&mark_key, Some(&version)).await;
            return Err(e);
        }
    };
    let late = cx.env.now().saturating_sub(started) > timing.pass_deadline();
    let outcome = if pin.as_ref().is_some_and(|p| fresh_pin(&p.value)) || late {
        Outcome::Held
    } else {
        match cx.store.blob_delete(d).await {
            Ok(()) | Err(StorageError::NotFound) => {}
            Err(e) => {
                let _ = cx.store.meta_delete(&mark_key, Some(&version)).await;
                return Err(e);
            }
        }
        // The blob is gone: its stale pin with it (only if no writer rewrote it meanwhile).
        if let Some(p) = &pin {
            gone(cx.store.meta_delete(&keys::pin(d), Some(&p.version)).await)?;
        }
        Outcome::Deleted
    };
    gone(cx.store.meta_delete(&mark_key, Some(&version)).await)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::Phase;

    #[test]
    fn phases_round_trip() {
        let cases = [
            (Phase::Uploads, r#"{"phase":"uploads"}"#),
            (
                Phase::Mark { after: None },
                r#"{"phase":"mark","after":null}"#,
            ),
            (
                Phase::Sweep {
                    after: Some("sha256:ab".into()),
                },
                r#"{"phase":"sweep","after":"sha256:ab"}"#,
            ),
            (
                Phase::Tidy { after: None },
                r#"{"phase":"tidy","after":null}"#,
            ),
            (Phase::Done, r#"{"phase":"done"}"#),
        ];
        for (phase, json) in cases {
            assert_eq!(serde_json::to_string(&phase).unwrap(), json);
            assert_eq!(
                serde_json::from_str::<Phase>(json).unwrap(),
                phase,
                "{json}"
            );
        }
        let p: Phase = serde_json::from_str(r#"{"after":"x","phase":"mark"}"#).unwrap();
        assert_eq!(
            p,
            Phase::Mark {
                after: Some("x".into())
            }
        );
        let p: Phase = serde_json::from_str(r#"{"phase":"tidy"}"#).unwrap();
        assert_eq!(p, Phase::Tidy { after: None });
        assert!(serde_json::from_str::<Phase>(r#"{"phase":"other"}"#).is_err());
        assert!(serde_json::from_str::<Phase>(r#"{"after":"x"}"#).is_err());
    }
}
