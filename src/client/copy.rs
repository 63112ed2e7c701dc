//! Copying an image (or an index of images, or an artifact) from a [`Location`] to another:
//! manifests are read and verified, the blobs they name move concurrently (skipped when the
//! destination has them, mounted when both sides are repositories of one registry), then the
//! manifests are written children first, the top one last under its tag. Bytes stream from
//! source to destination; nothing is staged on disk.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::archive::Archive;
use super::error::{Error, ErrorKind, Result};
use super::layout::Layout;
use super::progress::{Outcome, Progress};
use super::reference::Location;
use super::registry::Repository;
use super::transport::Client;
use super::upload::UploadOptions;
use crate::body::ByteStream;
use crate::digest::Digest;
use crate::manifest::{self, DOCKER_LIST, Descriptor, OCI_INDEX};
use crate::names::{Reference, Tag};

/// `os/architecture[/variant]`, e.g. `linux/arm64` or `linux/arm/v7`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_owned(),
                architecture: arch.to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()),
            }),
            _ => Err(Error::usage(format!(
                "{s:?} is not a platform: write OS/ARCH[/VARIANT], e.g. linux/arm64"
            ))),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl Platform {
    /// Whether an index entry's `platform` object is this platform. A variant not asked for
    /// matches any; `arm64` without a variant is `v8`.
    pub fn matches(&self, p: &Value) -> bool {
        let get = |k: &str| p.get(k).and_then(Value::as_str);
        if get("os") != Some(self.os.as_str()) || get("architecture") != Some(&self.architecture) {
            return false;
        }
        match (&self.variant, get("variant")) {
            (None, _) => true,
            (Some(want), Some(v)) => want == v,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }

    /// The platform of an index entry, as text.
    pub fn describe(p: &Value) -> String {
        let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?");
        match p.get("variant").and_then(Value::as_str) {
            Some(v) => format!("{}/{}/{v}", get("os"), get("architecture")),
            None => format!("{}/{}", get("os"), get("architecture")),
        }
    }
}

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

/// Where a copy reads from.
pub(crate) enum Source {
    Registry(Repository),
    Layout(Layout),
    Archive(Box<Archive>),
}

impl Source {
    pub(crate) async fn open(
        client: &Client,
        loc: &Location,
    ) -> Result<(Source, Descriptor, Bytes)> {
        match loc {
            Location::Registry(r) => {
                let repo = client.repository(&r.host, r.name.clone());
                let m = repo.manifest(&r.reference).await?;
                Ok((Source::Registry(repo), m.descriptor(), m.bytes))
            }
            Location::Layout { dir, reference } => {
                let layout = Layout::open(dir).await?;
                let desc = layout.resolve(reference.as_ref()).await?;
                let bytes = layout.read_checked(&desc.digest, Some(desc.size)).await?;
                Ok((Source::Layout(layout), desc, bytes))
            }
            Location::DockerArchive { file, image } => {
                let archive = Archive::open(file, image.as_deref()).await?;
                let desc = archive.root().clone();
                let bytes = archive.read_checked(&desc).await?;
                Ok((Source::Archive(Box::new(archive)), desc, bytes))
            }
        }
    }

    pub(crate) async fn manifest(&self, desc: &Descriptor) -> Result<Bytes> {
        match self {
            Source::Registry(repo) => {
                let m = repo
                    .manifest(&Reference::Digest(desc.digest.clone()))
                    .await?;
                Ok(m.bytes)
            }
            Source::Layout(l) => l.read_checked(&desc.digest, Some(desc.size)).await,
            Source::Archive(a) => a.read_checked(desc).await,
        }
    }

    /// A small blob (a config), read whole and verified.
    pub(crate) async fn small_blob(&self, desc: &Descriptor) -> Result<Bytes> {
        use futures_util::StreamExt;
        let mut stream = self.blob(desc, &(Arc::new(()) as Arc<dyn Progress>));
        let mut buf = Vec::with_capacity(desc.size as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(
                &chunk.map_err(|e| Error::io(format!("blob {}", desc.digest), e))?,
            );
        }
        Ok(Bytes::from(buf))
    }

    fn blob(&self, desc: &Descriptor, progress: &Arc<dyn Progress>) -> ByteStream {
        let stream = match self {
            Source::Registry(repo) => {
                super::stream::fetch(repo.clone(), desc.clone(), Some(progress.clone()))
            }
            Source::Layout(l) => l.blob(desc),
            Source::Archive(a) => match a.blob(desc) {
                Ok(s) => s,
                Err(e) => Box::pin(futures_util::stream::once(async move {
                    Err(std::io::Error::other(e))
                })),
            },
        };
        super::stream::counted(stream, desc.digest.clone(), progress.clone())
    }

    pub(crate) async fn referrers(&self, d: &Digest) -> Result<Vec<Descriptor>> {
        match self {
            Source::Registry(repo) => repo.referrers(d, None).await,
            Source::Layout(l) => l.referrers(d).await,
            Source::Archive(_) => Ok(Vec::new()),
        }
    }
}

enum Dest {
    Registry(Repository, Reference),
    Layout(Layout, Option<Tag>),
}

impl Dest {
    async fn open(client: &Client, loc: &Location, src: &Location) -> Result<Dest> {
        match loc {
            Location::Registry(r) => Ok(Dest::Registry(
                client.repository(&r.host, r.name.clone()).for_push(),
                r.reference.clone(),
            )),
            Location::Layout { dir, reference } => {
                let layout = Layout::create(dir).await?;
                let tag = match reference {
                    Some(Reference::Tag(t)) => Some(t.clone()),
                    Some(Reference::Digest(_)) => None,
                    None => src.tag().cloned(),
                };
                Ok(Dest::Layout(layout, tag))
            }
            Location::DockerArchive { .. } => Err(Error::usage(
                "a docker archive can only be a source; copy to an OCI layout (oci:DIR:TAG) or \
                 a registry",
            )),
        }
    }

    fn describe(&self, desc: &Descriptor) -> String {
        match self {
            Dest::Registry(repo, r) => {
                let r = match r {
                    Reference::Tag(t) => format!(":{t}"),
                    Reference::Digest(_) => format!("@{}", desc.digest),
                };
                format!("{}/{}{r}", repo.host(), repo.name())
            }
            Dest::Layout(l, tag) => match tag {
                Some(t) => format!("oci:{}:{t}", l.dir().display()),
                None => format!("oci:{}@{}", l.dir().display(), desc.digest),
            },
        }
    }

    /// Write a manifest: the top one under the destination's reference, the others by
    /// digest. Also says whether the registry processed a `subject` (`OCI-Subject`).
    async fn put_manifest(
        &self,
        desc: &Descriptor,
        bytes: &Bytes,
        root: bool,
    ) -> Result<(String, bool)> {
        match self {
            Dest::Registry(repo, r) => {
                let reference = if root {
                    r.clone()
                } else {
                    Reference::Digest(desc.digest.clone())
                };
                let subject = repo
                    .put_manifest(&reference, &desc.media_type, bytes)
                    .await?;
                Ok((reference.to_string(), subject))
            }
            Dest::Layout(l, tag) => {
                l.write_bytes(&desc.digest, bytes).await?;
                if root {
                    l.add_to_index(desc, tag.as_ref()).await?;
                    let written = tag
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| desc.digest.to_string());
                    Ok((written, true))
                } else {
                    Ok((desc.digest.to_string(), true))
                }
            }
        }
    }
}

/// A manifest to copy, with what it names.
struct Node {
    desc: Descriptor,
    bytes: Bytes,
    blobs: Vec<Descriptor>,
    subject: Option<Digest>,
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
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
        root = pick_platform(&root_bytes, platform).map_err(|e| e.context(format!("{src}")))?;
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
    let source = Arc::new(source);
    let dest = Arc::new(dest);
    let mut nodes = Vec::new();
    let mut seen = HashSet::new();
    walk(&source, root.clone(), root_bytes, &mut nodes, &mut seen, 0).await?;
    let stats = Arc::new(Stats::default());
    copy_blobs(&source, &dest, &nodes, options, &progress, &stats).await?;
    let mut manifests = 0;
    for (i, node) in nodes.iter().enumerate() {
        let is_root = i + 1 == nodes.len();
        let (written, _) = dest.put_manifest(&node.desc, &node.bytes, is_root).await?;
        progress.manifest_done(&node.desc, &written);
        manifests += 1;
    }
    let mut referrers = 0;
    if options.referrers {
        let mut queue: Vec<Digest> = nodes.iter().map(|n| n.desc.digest.clone()).collect();
        let mut rounds = 0;
        while let Some(subject) = queue.pop() {
            rounds += 1;
            if rounds > 10_000 {
                break;
            }
            for r in source.referrers(&subject).await? {
                if seen.contains(&r.digest) {
                    continue;
                }
                let bytes = source.manifest(&r).await?;
                let mut refs = Vec::new();
                walk(&source, r.clone(), bytes, &mut refs, &mut seen, 0).await?;
                copy_blobs(&source, &dest, &refs, options, &progress, &stats).await?;
                for node in &refs {
                    let (written, subject_seen) =
                        dest.put_manifest(&node.desc, &node.bytes, false).await?;
                    if let Dest::Layout(l, _) = &*dest {
                        l.add_to_index(&node.desc, None).await?;
                    }
                    if let (Dest::Registry(repo, _), Some(s), false) =
                        (&*dest, &node.subject, subject_seen)
                    {
                        fallback_referrer(repo, s, node, &progress).await?;
                    }
                    progress.manifest_done(&node.desc, &written);
                    queue.push(node.desc.digest.clone());
                    referrers += 1;
                    manifests += 1;
                }
            }
        }
    }
    Ok(CopyReport {
        destination: dest.describe(&root),
        digest: root.digest,
        media_type: root.media_type,
        size: root.size,
        manifests,
        blobs: stats.blobs.load(Ordering::Relaxed),
        copied: stats.copied.load(Ordering::Relaxed),
        skipped: stats.skipped.load(Ordering::Relaxed),
        mounted: stats.mounted.load(Ordering::Relaxed),
        bytes: stats.bytes.load(Ordering::Relaxed),
        referrers,
    })
}

#[derive(Default)]
struct Stats {
    blobs: AtomicUsize,
    copied: AtomicUsize,
    skipped: AtomicUsize,
    mounted: AtomicUsize,
    bytes: AtomicU64,
}

/// The entry of an index for `platform`.
fn pick_platform(index: &[u8], platform: &Platform) -> Result<Descriptor> {
    let v: Value = serde_json::from_slice(index)
        .map_err(|e| Error::new(ErrorKind::Unsupported, format!("unreadable index: {e}")))?;
    let list = v
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let found = list
        .iter()
        .find(|m| m.get("platform").is_some_and(|p| platform.matches(p)));
    match found {
        Some(m) => serde_json::from_value(m.clone())
            .map_err(|e| Error::new(ErrorKind::Unsupported, format!("index entry: {e}"))),
        None => {
            let have: Vec<String> = list
                .iter()
                .filter_map(|m| m.get("platform"))
                .map(Platform::describe)
                .collect();
            Err(Error::new(
                ErrorKind::NotFound,
                format!("no image for platform {platform} in the index"),
            )
            .with_hint(format!("its platforms: {}", have.join(", "))))
        }
    }
}

/// Read the manifest tree under `desc` into `out`, children before parents.
async fn walk(
    source: &Source,
    desc: Descriptor,
    bytes: Bytes,
    out: &mut Vec<Node>,
    seen: &mut HashSet<Digest>,
    depth: usize,
) -> Result<()> {
    if depth > 8 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "indexes nested more than 8 deep",
        ));
    }
    if !seen.insert(desc.digest.clone()) {
        return Ok(());
    }
    let parsed = manifest::inspect(&bytes, Some(&desc.media_type)).map_err(|e| {
        Error::new(
            ErrorKind::Unsupported,
            format!("manifest {} ({}): {e}", desc.digest, desc.media_type),
        )
    })?;
    for child in &parsed.children {
        let child_bytes = source.manifest(child).await?;
        Box::pin(walk(
            source,
            child.clone(),
            child_bytes,
            out,
            seen,
            depth + 1,
        ))
        .await?;
    }
    out.push(Node {
        subject: parsed.subject.map(|s| s.digest),
        desc,
        bytes,
        blobs: parsed.blobs,
    });
    Ok(())
}

async fn copy_blobs(
    source: &Arc<Source>,
    dest: &Arc<Dest>,
    nodes: &[Node],
    options: &CopyOptions,
    progress: &Arc<dyn Progress>,
    stats: &Arc<Stats>,
) -> Result<()> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = HashSet::new();
    for b in nodes.iter().flat_map(|n| n.blobs.iter()) {
        if seen.insert(b.digest.clone()) {
            blobs.push(b.clone());
        }
    }
    // Largest first: the long transfers start early and the small ones fill in around them.
    blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    progress.plan(blobs.len(), blobs.iter().map(|b| b.size).sum());
    let permits = Arc::new(Semaphore::new(options.jobs.max(1)));
    let mut tasks = JoinSet::new();
    for desc in blobs {
        let (source, dest, progress, stats, permits) = (
            source.clone(),
            dest.clone(),
            progress.clone(),
            stats.clone(),
            permits.clone(),
        );
        let upload = options.upload.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let outcome = copy_blob(&source, &dest, &desc, &upload, &progress).await?;
            stats.blobs.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Outcome::Copied => {
                    stats.copied.fetch_add(1, Ordering::Relaxed);
                    stats.bytes.fetch_add(desc.size, Ordering::Relaxed);
                }
                Outcome::Skipped => {
                    stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Mounted => {
                    stats.mounted.fetch_add(1, Ordering::Relaxed);
                }
            }
            progress.blob_done(&desc, outcome);
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

async fn copy_blob(
    source: &Arc<Source>,
    dest: &Dest,
    desc: &Descriptor,
    upload: &UploadOptions,
    progress: &Arc<dyn Progress>,
) -> Result<Outcome> {
    match dest {
        Dest::Layout(l, _) => {
            if l.has_blob(desc).await {
                return Ok(Outcome::Skipped);
            }
            progress.blob_start(desc);
            l.write_blob(desc, source.blob(desc, progress)).await?;
            Ok(Outcome::Copied)
        }
        Dest::Registry(repo, _) => {
            if repo.blob_size(&desc.digest).await?.is_some() {
                return Ok(Outcome::Skipped);
            }
            let mut session = None;
            if let Source::Registry(from) = &**source
                && from.host() == repo.host()
                && from.name() != repo.name()
            {
                match repo.start_upload(Some((&desc.digest, from.name()))).await? {
                    None => return Ok(Outcome::Mounted),
                    Some(s) => session = Some(s),
                }
            }
            progress.blob_start(desc);
            let open = || source.blob(desc, progress);
            repo.upload(desc, session, &open, upload)
                .await
                .map_err(|e| e.context(format!("pushing blob {}", desc.digest)))?;
            Ok(Outcome::Copied)
        }
    }
}

/// For a registry without the referrers API (no `OCI-Subject` in its answers): keep the
/// subject's referrers in the index tagged `<alg>-<hex>`, as the spec's fallback says.
async fn fallback_referrer(
    repo: &Repository,
    subject: &Digest,
    node: &Node,
    progress: &Arc<dyn Progress>,
) -> Result<()> {
    let tag: Tag = format!("{}-{}", subject.algorithm(), subject.hex())
        .parse()
        .map_err(|()| Error::usage("digest too long for a fallback tag"))?;
    let reference = Reference::Tag(tag);
    let mut index: Value = match repo.manifest(&reference).await {
        Ok(m) => serde_json::from_slice(&m.bytes).unwrap_or(Value::Null),
        Err(e) if e.kind() == ErrorKind::NotFound => Value::Null,
        Err(e) => return Err(e),
    };
    if !index.get("manifests").is_some_and(Value::is_array) {
        index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
    }
    let parsed = manifest::inspect(&node.bytes, Some(&node.desc.media_type)).ok();
    let mut entry = serde_json::json!({
        "mediaType": node.desc.media_type,
        "digest": node.desc.digest,
        "size": node.desc.size,
    });
    if let Some(p) = &parsed {
        if let Some(t) = p.referrer_artifact_type() {
            entry["artifactType"] = Value::String(t);
        }
        if let Some(a) = &p.annotations {
            entry["annotations"] = Value::Object(a.clone());
        }
    }
    let list = index["manifests"].as_array_mut().expect("checked");
    let digest = node.desc.digest.to_string();
    if list
        .iter()
        .any(|e| e["digest"].as_str() == Some(digest.as_str()))
    {
        return Ok(());
    }
    list.push(entry);
    let bytes = Bytes::from(index.to_string());
    repo.put_manifest(&reference, OCI_INDEX, &bytes).await?;
    progress.note(&format!(
        "{}/{} has no referrers API: listed {} under the tag {reference}",
        repo.host(),
        repo.name(),
        super::stream::short(&node.desc.digest)
    ));
    Ok(())
}
