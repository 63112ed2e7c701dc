//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) served
//! read-only as one repository, without copying it.
//!
//! The layout's `index.json` is read again whenever it changes, so an image rebuilt into the
//! directory is served at once. Tags come from `org.opencontainers.image.ref.name` annotations;
//! the repository holds every manifest reachable from `index.json` (with the media type of the
//! descriptor naming it) and every blob in the directory. Layouts are small: the manifests are
//! read once per change of `index.json`, to find children and `subject`s for the referrers API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use serde::Deserialize;

use super::files::{blocking, io_err, other, read_range, read_small};
use berth::body::Body;
use berth::digest::Digest;
use berth::keys::{self, Key};
use berth::manifest::{self, Descriptor, ManifestLink};
use berth::names::{RepoName, Tag};
use berth::storage::{
    BlobEntry, BlobInfo, BlobRead, ListOptions, PutMode, RangeSpec, Result, Storage, StorageError,
    Stored, Version, resolve_range,
};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Bounds on what a layout may make us read.
const MAX_MANIFEST: u64 = 16 << 20;
const MAX_INDEX: u64 = 64 << 20;
const MAX_MANIFESTS: usize = 100_000;

pub struct LayoutStore {
    name: RepoName,
    dir: PathBuf,
    index: Mutex<Arc<Index>>,
    /// The layout's own directory, resolved: blob files must resolve inside it.
    real: PathBuf,
    /// Blobs whose bytes were hashed and matched their name, with the file as it was then
    /// (inode, size, modified): a file replaced since is hashed again.
    verified: Mutex<HashMap<Digest, FileStamp>>,
}

type FileStamp = (u64, u64, Option<SystemTime>);

/// `index.json` and the manifests it reaches, as berth's metadata.
#[derive(Default)]
struct Index {
    /// `index.json`'s modification time and size when read.
    stamp: Option<(SystemTime, u64)>,
    tags: BTreeMap<String, Digest>,
    manifests: HashMap<Digest, Bytes>,
    /// subject → referrer digest → descriptor (JSON).
    referrers: HashMap<Digest, BTreeMap<String, Bytes>>,
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, serde_json::Value>,
}

impl LayoutStore {
    /// Open the layout at `dir` as repository `name`; fails unless it is an OCI image layout.
    pub async fn open(name: RepoName, dir: impl Into<PathBuf>) -> io::Result<LayoutStore> {
        let dir = dir.into();
        let load_dir = dir.clone();
        let index = tokio::task::spawn_blocking(move || {
            let marker = load_dir.join("oci-layout");
            let text = read_small(&marker, 1 << 20)?;
            let marker: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if marker.get("imageLayoutVersion").is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "oci-layout has no imageLayoutVersion",
                ));
            }
            load(&load_dir)
        })
        .await
        .map_err(io::Error::other)??;
        let real = fs::canonicalize(&dir)?;
        Ok(LayoutStore {
            name,
            dir,
            index: Mutex::new(Arc::new(index)),
            real,
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn name(&self) -> &RepoName {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index, read again if `index.json` changed since.
    async fn index(&self) -> Result<Arc<Index>> {
        let current = self.index.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let dir = self.dir.clone();
        let fresh = blocking(move || {
            let now = stamp(&dir).ok();
            if now.is_some() && now == current.stamp {
                return Ok(current);
            }
            match load(&dir) {
                Ok(index) => Ok(Arc::new(index)),
                Err(e) => {
                    // Mid-rewrite or broken: keep serving what was there.
                    tracing::warn!(dir = %dir.display(), "reading the layout's index.json: {e}");
                    Ok(current)
                }
            }
        })
        .await?;
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// The blob's file, opened only if it resolves inside the layout and its bytes hash to
    /// its name (hashed once per version of the file). Anything else is not there: a symlink
    /// out of the layout, or bytes under a digest they do not have, never leave the server.
    async fn checked(&self, d: &Digest) -> Result<(File, u64)> {
        let path = self.blob_path(d);
        let real = self.real.clone();
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(d)
            .copied();
        let d2 = d.clone();
        let (file, size, stamp) = blocking(move || {
            let resolved = fs::canonicalize(&path).map_err(|e| io_err(e, &path))?;
            if !resolved.starts_with(&real) {
                tracing::warn!(path = %path.display(), "layout blob resolves outside the layout; not served");
                return Err(StorageError::NotFound);
            }
            let mut file = File::open(&resolved).map_err(|e| io_err(e, &path))?;
            let m = file.metadata().map_err(|e| other(e, &path))?;
            if !m.is_file() {
                return Err(StorageError::NotFound);
            }
            use std::os::unix::fs::MetadataExt;
            let stamp = (m.ino(), m.len(), m.modified().ok());
            if known != Some(stamp) {
                let mut h = berth::Hasher::new(d2.algorithm());
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = io::Read::read(&mut file, &mut buf).map_err(|e| other(e, &path))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                if h.finish() != d2 {
                    tracing::warn!(path = %path.display(), "layout blob does not match its digest; not served");
                    return Err(StorageError::NotFound);
                }
                io::Seek::seek(&mut file, io::SeekFrom::Start(0)).map_err(|e| other(e, &path))?;
            }
            Ok((file, m.len(), stamp))
        })
        .await?;
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d.clone(), stamp);
        Ok((file, size))
    }

    fn ours(&self, name: &RepoName) -> bool {
        *name == self.name
    }
}

fn stamp(dir: &Path) -> io::Result<(SystemTime, u64)> {
    let m = fs::metadata(dir.join("index.json"))?;
    Ok((m.modified()?, m.len()))
}

/// A tag from a `ref.name` annotation: a bare tag, or the tag of a full reference.
fn tag_of(ref_name: &str) -> Option<Tag> {
    if let Ok(t) = ref_name.parse() {
        return Some(t);
    }
    let (_, tag) = ref_name.rsplit_once(':')?;
    if tag.contains('/') {
        return None;
    }
    tag.parse().ok()
}

fn load(dir: &Path) -> io::Result<Index> {
    let stamp = stamp(dir)?;
    let bytes = read_small(&dir.join("index.json"), MAX_INDEX)?;
    let raw: RawIndex = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut index = Index {
        stamp: Some(stamp),
        ..Index::default()
    };
    let mut queue: Vec<(String, Option<String>)> = Vec::new();
    for d in raw.manifests.iter().rev() {
        queue.push((d.digest.clone(), d.media_type.clone()));
    }
    let mut seen = HashSet::new();
    while let Some((digest, media_type)) = queue.pop() {
        if seen.len() >= MAX_MANIFESTS {
            break;
        }
        let Ok(digest) = digest.parse::<Digest>() else {
            continue;
        };
        if !seen.insert(digest.clone()) {
            continue;
        }
        let path = dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex());
        let bytes = match read_small(&path, MAX_MANIFEST) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), "layout manifest unreadable: {e}");
                continue;
            }
        };
        let size = bytes.len() as u64;
        let parsed = manifest::inspect(&bytes, None).ok();
        let Some(media_type) = media_type.or_else(|| parsed.as_ref().map(|m| m.media_type.clone()))
        else {
            continue;
        };
        let subject = parsed.as_ref().and_then(|m| m.subject.clone());
        if let (Some(m), Some(s)) = (&parsed, &subject) {
            let entry = Descriptor {
                media_type: media_type.clone(),
                digest: digest.clone(),
                size,
                artifact_type: m.referrer_artifact_type(),
                annotations: m.annotations.clone(),
                urls: None,
            };
            let json = serde_json::to_vec(&entry).map_err(io::Error::other)?;
            index
                .referrers
                .entry(s.digest.clone())
                .or_default()
                .insert(digest.to_string(), Bytes::from(json));
        }
        if let Some(m) = parsed {
            for child in m.children.iter().rev() {
                queue.push((child.digest.to_string(), Some(child.media_type.clone())));
            }
        }
        let link = ManifestLink {
            media_type,
            size,
            subject: subject.map(|s| s.digest),
            at: 0,
            pushed: false,
        };
        let json = serde_json::to_vec(&link).map_err(io::Error::other)?;
        index.manifests.insert(digest, Bytes::from(json));
    }
    for d in &raw.manifests {
        let Ok(digest) = d.digest.parse::<Digest>() else {
            continue;
        };
        let tag = d.annotations.get(REF_NAME).and_then(|v| v.as_str());
        // The first descriptor with a name keeps it.
        if let Some(tag) = tag.and_then(tag_of)
            && index.manifests.contains_key(&digest)
        {
            index.tags.entry(tag.as_str().to_owned()).or_insert(digest);
        }
    }
    Ok(index)
}

fn stored(value: Bytes) -> Stored {
    let version = Version(Digest::sha256(&value).hex()[..32].to_owned());
    Stored { value, version }
}

fn page(keys: impl Iterator<Item = String>, options: ListOptions<'_>) -> Vec<String> {
    let mut keys: Vec<String> = keys
        .filter(|k| options.after.is_none_or(|a| k.as_str() > a))
        .collect();
    keys.sort_unstable();
    keys.truncate(options.limit.unwrap_or(usize::MAX));
    keys
}

impl Storage for LayoutStore {
    async fn blob_head(&self, digest: &Digest) -> Result<BlobInfo> {
        let (_, size) = self.checked(digest).await?;
        Ok(BlobInfo {
            size,
            // The layout's own: never collected, so its age does not matter.
            modified: None,
        })
    }

    async fn blob_get(&self, digest: &Digest, range: Option<RangeSpec>) -> Result<BlobRead> {
        let (file, size) = self.checked(digest).await?;
        let range = resolve_range(size, range)?;
        let body = if range.is_empty() {
            Body::Empty
        } else {
            Body::Stream(read_range(file, range.start, range.end))
        };
        Ok(BlobRead { size, range, body })
    }

    async fn blob_put(&self, _digest: &Digest, _body: Body) -> Result<u64> {
        Err(StorageError::ReadOnly)
    }

    async fn blob_delete(&self, _digest: &Digest) -> Result<()> {
        Err(StorageError::ReadOnly)
    }

    /// None: a layout's blobs are its own, never garbage collected.
    async fn blob_list(&self, _options: ListOptions<'_>) -> Result<Vec<BlobEntry>> {
        Ok(Vec::new())
    }

    async fn upload_start(&self, _id: &str) -> Result<String> {
        Err(StorageError::ReadOnly)
    }

    async fn upload_append(
        &self,
        _id: &str,
        _state: &mut String,
        _offset: u64,
        _body: Body,
    ) -> Result<u64> {
        Err(StorageError::ReadOnly)
    }

    async fn upload_finish(
        &self,
        _id: &str,
        _state: &str,
        _digest: &Digest,
        _size: u64,
    ) -> Result<()> {
        Err(StorageError::ReadOnly)
    }

    async fn upload_abort(&self, _id: &str, _state: &str) -> Result<()> {
        Ok(())
    }

    async fn meta_get(&self, key: &str) -> Result<Stored> {
        let Some(key) = keys::parse(key) else {
            return Err(StorageError::NotFound);
        };
        let found = match key {
            Key::Catalog(n) if self.ours(&n) => Some(Bytes::new()),
            Key::Tag(n, t) if self.ours(&n) => {
                let index = self.index().await?;
                index
                    .tags
                    .get(t.as_str())
                    .map(|d| Bytes::from(d.to_string()))
            }
            Key::Manifest(n, d) if self.ours(&n) => self.index().await?.manifests.get(&d).cloned(),
            Key::Blob(n, d) if self.ours(&n) => match self.blob_head(&d).await {
                Ok(_) => Some(Bytes::new()),
                Err(StorageError::NotFound) => None,
                Err(e) => return Err(e),
            },
            Key::Referrer(n, s, r) if self.ours(&n) => self
                .index()
                .await?
                .referrers
                .get(&s)
                .and_then(|m| m.get(&r.to_string()))
                .cloned(),
            _ => None,
        };
        found.map(stored).ok_or(StorageError::NotFound)
    }

    async fn meta_put(&self, _key: &str, _value: Bytes, _mode: PutMode) -> Result<Version> {
        Err(StorageError::ReadOnly)
    }

    async fn meta_delete(&self, _key: &str, _expected: Option<&Version>) -> Result<()> {
        Err(StorageError::ReadOnly)
    }

    async fn meta_list(&self, prefix: &str, options: ListOptions<'_>) -> Result<Vec<String>> {
        if prefix == keys::CATALOG {
            return Ok(page(std::iter::once(self.name.to_string()), options));
        }
        Ok(match keys::parse(prefix) {
            Some(Key::Tags(n)) if self.ours(&n) => {
                page(self.index().await?.tags.keys().cloned(), options)
            }
            Some(Key::Manifests(n)) if self.ours(&n) => {
                let index = self.index().await?;
                let listed = index
                    .manifests
                    .keys()
                    .map(|d| format!("{}/{}", d.algorithm(), d.hex()));
                page(listed, options)
            }
            Some(Key::Referrers(n, s)) if self.ours(&n) => {
                let index = self.index().await?;
                let referrers = index.referrers.get(&s).into_iter().flat_map(|m| m.keys());
                page(referrers.cloned(), options)
            }
            _ => Vec::new(),
        })
    }

    fn writable(&self, _name: &RepoName) -> bool {
        false
    }
}
