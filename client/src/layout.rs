//! OCI image layout directories: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`. Read as a
//! source, written as a destination (blobs by temp file and rename, so a reader never sees
//! half a blob; `index.json` the same way).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, ErrorKind, Result};
use crate::media::{MANIFEST_TYPES, descriptor, empty_index, media_type_of};
use crate::stream::file_range;
use crate::verify;
use berth::body::ByteStream;
use berth::digest::Digest;
use berth::manifest::Descriptor;
use berth::names::{Reference, Tag};

/// The annotation that tags a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
#[derive(Clone)]
pub struct Layout {
    dir: PathBuf,
    /// Serialises `index.json` updates within this process.
    index_lock: Arc<tokio::sync::Mutex<()>>,
}

static TEMP: AtomicU64 = AtomicU64::new(0);

impl Layout {
    /// An existing layout (it must have `index.json`).
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Layout> {
        let dir = dir.into();
        match tokio::fs::metadata(dir.join("index.json")).await {
            Ok(_) => Ok(Layout::at(dir)),
            Err(e) => Err(Error::io(
                format!(
                    "{} is not an OCI image layout (no index.json)",
                    dir.display()
                ),
                e,
            )
            .with_hint("give the directory that holds oci-layout, index.json and blobs/")),
        }
    }

    /// A layout to write into, created if missing.
    pub async fn create(dir: impl Into<PathBuf>) -> Result<Layout> {
        let dir = dir.into();
        let io = |what: &str, e| Error::io(format!("{what} {}", dir.display()), e);
        tokio::fs::create_dir_all(dir.join("blobs"))
            .await
            .map_err(|e| io("creating", e))?;
        let files = [
            ("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#.to_owned()),
            ("index.json", empty_index().to_string()),
        ];
        for (name, content) in files {
            let path = dir.join(name);
            if tokio::fs::metadata(&path).await.is_err() {
                write_atomic(&path, content.as_bytes())
                    .await
                    .map_err(|e| io(&format!("writing {name} in"), e))?;
            }
        }
        Ok(Layout::at(dir))
    }

    fn at(dir: PathBuf) -> Layout {
        Layout {
            dir,
            index_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    async fn read_index(&self) -> Result<Value> {
        let path = self.dir.join("index.json");
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("{} is not valid JSON: {e}", path.display()),
            )
        })?;
        Ok(v)
    }

    /// The descriptors in `index.json`.
    pub async fn entries(&self) -> Result<Vec<Descriptor>> {
        let index = self.read_index().await?;
        let list = index.get("manifests").cloned().unwrap_or(Value::Null);
        let list: Vec<Descriptor> = serde_json::from_value(list).unwrap_or_default();
        Ok(list)
    }

    /// The tags in `index.json`.
    pub async fn tags(&self) -> Result<Vec<String>> {
        Ok(self
            .entries()
            .await?
            .iter()
            .filter_map(ref_name)
            .map(|n| short_tag(&n).to_owned())
            .collect())
    }

    /// The manifest a reference names: a tag in `index.json`; a digest in `index.json` or
    /// among the blobs; no reference: the only manifest in `index.json`.
    pub async fn resolve(&self, reference: Option<&Reference>) -> Result<Descriptor> {
        let entries = self.entries().await?;
        let dir = self.dir.display();
        match reference {
            Some(Reference::Tag(t)) => entries
                .into_iter()
                .rev()
                .find(|e| ref_name(e).is_some_and(|n| short_tag(&n) == t.as_str()))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("no tag {t} in {dir}/index.json"),
                    )
                    .with_hint("list the tags with `berth tags oci:DIR`")
                }),
            Some(Reference::Digest(d)) => {
                if let Some(e) = entries.into_iter().find(|e| &e.digest == d) {
                    return Ok(e);
                }
                // A manifest below an index: read it to learn its media type.
                let bytes = self.read_checked(d, None).await?;
                let media_type = media_type_of(&bytes, None);
                Ok(descriptor(media_type, d.clone(), bytes.len() as u64))
            }
            None => {
                let tagged: Vec<_> = entries.iter().filter(|e| ref_name(e).is_some()).collect();
                match (entries.len(), tagged.len()) {
                    (1, _) => Ok(entries.into_iter().next().expect("one")),
                    (_, 1) => Ok(tagged[0].clone()),
                    (0, _) => Err(Error::new(
                        ErrorKind::NotFound,
                        format!("{dir} holds no image"),
                    )),
                    _ => Err(Error::usage(format!(
                        "{dir} holds {} manifests: say which, as oci:{dir}:TAG",
                        entries.len()
                    ))
                    .with_hint(format!(
                        "its tags: {}",
                        tagged
                            .iter()
                            .filter_map(|e| ref_name(e))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
        }
    }

    /// A small blob (a manifest or config), read whole and checked against `d`.
    pub async fn read_checked(&self, d: &Digest, size: Option<u64>) -> Result<Bytes> {
        let path = self.blob_path(d);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        verify::bytes(&path.display().to_string(), &bytes, d, size)?;
        Ok(Bytes::from(bytes))
    }

    /// A blob as a stream, checked against the descriptor as it is read.
    pub fn blob(&self, desc: &Descriptor) -> ByteStream {
        let raw = file_range(self.blob_path(&desc.digest), 0, desc.size);
        verify::stream(raw, desc)
    }

    /// Whether the blob is there with the expected size.
    pub async fn has_blob(&self, desc: &Descriptor) -> bool {
        tokio::fs::metadata(self.blob_path(&desc.digest))
            .await
            .is_ok_and(|m| m.len() == desc.size)
    }

    /// Write a blob from a stream that verifies itself: into a temp file, renamed into place
    /// only when the stream ended without error.
    pub async fn write_blob(&self, desc: &Descriptor, mut body: ByteStream) -> Result<()> {
        let path = self.new_blob_path(&desc.digest).await?;
        let tmp = temp_path(&path);
        let result: Result<()> = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Error::io(format!("blob {}", desc.digest), e))?;
                f.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            }
            f.flush()
                .await
                .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            drop(f);
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| Error::io(format!("renaming into {}", path.display()), e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Write small content (a manifest) already in memory.
    pub async fn write_bytes(&self, d: &Digest, bytes: &Bytes) -> Result<()> {
        let path = self.blob_path(d);
        if tokio::fs::metadata(&path)
            .await
            .is_ok_and(|m| m.len() == bytes.len() as u64)
        {
            return Ok(());
        }
        let path = self.new_blob_path(d).await?;
        write_atomic(&path, bytes)
            .await
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Where a blob goes, its directory created.
    async fn new_blob_path(&self, d: &Digest) -> Result<PathBuf> {
        let path = self.blob_path(d);
        let parent = path.parent().expect("blobs/<alg>");
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        Ok(path)
    }

    /// Record a manifest in `index.json`: under `tag` (replacing what had that tag), or, with
    /// no tag, untagged unless it is listed already.
    pub async fn add_to_index(&self, desc: &Descriptor, tag: Option<&Tag>) -> Result<()> {
        let _guard = self.index_lock.lock().await;
        let mut index = self.read_index().await?;
        let obj = index.as_object_mut().ok_or_else(|| {
            Error::new(
                ErrorKind::Io,
                format!("{}/index.json is not an object", self.dir.display()),
            )
        })?;
        let manifests = obj
            .entry("manifests")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = manifests else {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{}/index.json: manifests is not an array",
                    self.dir.display()
                ),
            ));
        };
        let mut entry = Map::new();
        entry.insert("mediaType".into(), json!(desc.media_type));
        entry.insert("digest".into(), json!(desc.digest));
        entry.insert("size".into(), json!(desc.size));
        if let Some(t) = &desc.artifact_type {
            entry.insert("artifactType".into(), json!(t));
        }
        match tag {
            Some(t) => {
                list.retain(|e| {
                    e.pointer("/annotations/org.opencontainers.image.ref.name")
                        .and_then(Value::as_str)
                        .is_none_or(|n| short_tag(n) != t.as_str())
                });
                entry.insert("annotations".into(), json!({ REF_NAME: t.as_str() }));
            }
            None => {
                let digest = desc.digest.to_string();
                if list
                    .iter()
                    .any(|e| e.get("digest").and_then(Value::as_str) == Some(digest.as_str()))
                {
                    return Ok(());
                }
            }
        }
        list.push(Value::Object(entry));
        let path = self.dir.join("index.json");
        write_atomic(&path, index.to_string().as_bytes())
            .await
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Manifests in `index.json` whose `subject` is `digest` (how oras and skopeo keep
    /// referrers in a layout).
    pub async fn referrers(&self, digest: &Digest) -> Result<Vec<Descriptor>> {
        let mut out = Vec::new();
        for e in self.entries().await? {
            if !MANIFEST_TYPES.contains(&e.media_type.as_str()) {
                continue;
            }
            let Ok(bytes) = self.read_checked(&e.digest, Some(e.size)).await else {
                continue;
            };
            let Ok(m) = berth::manifest::inspect(&bytes, Some(&e.media_type)) else {
                continue;
            };
            if m.subject.as_ref().is_some_and(|s| &s.digest == digest) {
                let mut d = e.clone();
                d.artifact_type = m.referrer_artifact_type();
                d.annotations = m.annotations;
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// The tag annotation of an index entry (`org.opencontainers.image.ref.name`, or containerd's
/// `io.containerd.image.name` in `docker save` archives).
pub(crate) fn ref_name(d: &Descriptor) -> Option<String> {
    let a = d.annotations.as_ref()?;
    a.get(REF_NAME)
        .or_else(|| a.get("io.containerd.image.name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `example.com/app:v1` counts as tag `v1`, as berth serve reads layouts.
pub(crate) fn short_tag(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, t)) => t,
        None => name,
    }
}

/// A name beside `path` that no other writer (of this process or another) uses.
fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        std::process::id(),
        TEMP.fetch_add(1, Ordering::Relaxed)
    ))
}

async fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    tokio::fs::write(&tmp, bytes).await?;
    match tokio::fs::rename(&tmp, path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}
