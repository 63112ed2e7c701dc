//! `docker save` archives, read in place: the tar is scanned once for its entries, and every
//! blob is then read straight from its region of the file.
//!
//! Two shapes are understood. Archives from Docker 25 and later hold an OCI layout
//! (`index.json`, `blobs/sha256/...`): its manifests are copied as they are, digests
//! unchanged. Older ones hold only `manifest.json` with a config and `layer.tar` files: berth
//! then writes an OCI image manifest for them (layers as `tar`, `tar+gzip` or `tar+zstd` by
//! their first bytes), the way skopeo reads such archives.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, ErrorKind, Result};
use crate::layout::{REF_NAME, short_tag};
use crate::media::{Index, MAX_MANIFEST, descriptor};
use crate::stream::file_range;
use crate::verify;
use berth::body::ByteStream;
use berth::digest::{Algorithm, Digest, Hasher};
use berth::manifest::{Descriptor, OCI_MANIFEST};

mod tar;

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A docker archive opened as a source.
pub struct Archive {
    file: PathBuf,
    /// Tar entries: name → (offset of the data, size).
    entries: HashMap<String, (u64, u64)>,
    /// Blobs by digest → tar entry name.
    blobs: HashMap<Digest, String>,
    /// Manifests berth wrote for old-style archives, by digest.
    made: HashMap<Digest, Bytes>,
    root: Descriptor,
}

impl Archive {
    /// Scan `file` and pick its image: `image` (`NAME:TAG` as in `RepoTags`, or a tag), or
    /// the only one.
    pub async fn open(file: &Path, image: Option<&str>) -> Result<Archive> {
        let path = file.to_path_buf();
        let entries = tokio::task::spawn_blocking(move || tar::scan(&path))
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("scanning the archive: {e}")))?
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let mut a = Archive {
            file: file.to_path_buf(),
            entries,
            blobs: HashMap::new(),
            made: HashMap::new(),
            root: descriptor(String::new(), Digest::sha256(b""), 0),
        };
        for name in a.entries.keys() {
            if let Some(d) = digest_of_path(name) {
                a.blobs.insert(d, name.clone());
            }
        }
        if a.entries.contains_key("index.json")
            && let Some(root) = a.root_from_index(image).await?
        {
            a.root = root;
            return Ok(a);
        }
        if a.entries.contains_key("manifest.json") {
            a.root = a.root_from_manifest_json(image).await?;
            return Ok(a);
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{} is not a docker archive (no manifest.json or index.json)",
                file.display()
            ),
        )
        .with_hint("make one with `docker save IMAGE -o FILE`; a gzipped one must be gunzipped"))
    }

    /// The image's top manifest.
    pub fn root(&self) -> &Descriptor {
        &self.root
    }

    async fn entry_bytes(&self, name: &str, limit: u64) -> Result<Bytes> {
        let &(offset, size) = self.entries.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{}: no {name} in the archive", self.file.display()),
            )
        })?;
        if size > limit {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: {name} is too large ({size} bytes)",
                    self.file.display()
                ),
            ));
        }
        let path = self.file.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
            let mut f = std::fs::File::open(&path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0; size as usize];
            f.read_exact(&mut buf)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?
        .map_err(|e| Error::io(format!("reading {name} in {}", self.file.display()), e))
    }

    /// A manifest or config, checked against its descriptor.
    pub async fn read_checked(&self, desc: &Descriptor) -> Result<Bytes> {
        if let Some(b) = self.made.get(&desc.digest) {
            return Ok(b.clone());
        }
        let name = self
            .blobs
            .get(&desc.digest)
            .ok_or_else(|| self.no_blob(&desc.digest))?;
        let bytes = self.entry_bytes(name, MAX_MANIFEST as u64).await?;
        let what = format!("{} {name}", self.file.display());
        verify::bytes(&what, &bytes, &desc.digest, None)?;
        Ok(bytes)
    }

    /// A blob as a stream from its region of the tar, checked as it is read.
    pub fn blob(&self, desc: &Descriptor) -> Result<ByteStream> {
        let region = self
            .blobs
            .get(&desc.digest)
            .and_then(|n| self.entries.get(n));
        let Some(&(offset, size)) = region else {
            return Err(self.no_blob(&desc.digest));
        };
        let raw = file_range(self.file.clone(), offset, size);
        Ok(verify::stream(raw, desc))
    }

    fn no_blob(&self, d: &Digest) -> Error {
        let file = self.file.display();
        Error::new(
            ErrorKind::NotFound,
            format!("{file}: no blob {d} in the archive"),
        )
    }

    /// Docker 25+: `index.json` names the images; pick one.
    async fn root_from_index(&self, image: Option<&str>) -> Result<Option<Descriptor>> {
        let bytes = self.entry_bytes("index.json", MAX_MANIFEST as u64).await?;
        let Ok(index) = serde_json::from_slice::<Index>(&bytes) else {
            return Ok(None);
        };
        let present: Vec<Descriptor> = index
            .manifests
            .into_iter()
            .filter(|d| self.blobs.contains_key(&d.digest))
            .collect();
        let names = |d: &Descriptor| -> Vec<String> {
            let a = d.annotations.as_ref();
            ["io.containerd.image.name", REF_NAME]
                .iter()
                .filter_map(|k| a?.get(*k)?.as_str().map(str::to_owned))
                .collect()
        };
        let chosen = match image {
            Some(want) => present
                .iter()
                .find(|d| names(d).iter().any(|n| matches_image(n, want))),
            None if present.len() == 1 => present.first(),
            None => {
                if present.is_empty() {
                    return Ok(None);
                }
                let all: Vec<String> = present.iter().flat_map(names).collect();
                return Err(several(&self.file, &all));
            }
        };
        Ok(chosen.cloned())
    }

    /// Before Docker 25: `manifest.json` lists config and layer files; write a manifest.
    async fn root_from_manifest_json(&mut self, image: Option<&str>) -> Result<Descriptor> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let bytes = self
            .entry_bytes("manifest.json", MAX_MANIFEST as u64)
            .await?;
        let list: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Unsupported,
                format!("{}: unreadable manifest.json: {e}", self.file.display()),
            )
        })?;
        let entry = match image {
            Some(want) => list
                .iter()
                .find(|e| e.repo_tags.iter().flatten().any(|t| matches_image(t, want))),
            None if list.len() == 1 => list.first(),
            None => {
                let all: Vec<String> = list
                    .iter()
                    .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                    .collect();
                return Err(several(&self.file, &all));
            }
        };
        let Some(entry) = entry else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{}: no image {} in the archive",
                    self.file.display(),
                    image.unwrap_or("")
                ),
            ));
        };
        let config = self.entry_bytes(&entry.config, 64 << 20).await?;
        let config_digest = Digest::sha256(&config);
        self.blobs
            .insert(config_digest.clone(), entry.config.clone());
        #[derive(Deserialize)]
        struct Rootfs {
            #[serde(default)]
            diff_ids: Vec<Digest>,
        }
        #[derive(Deserialize)]
        struct Config {
            rootfs: Option<Rootfs>,
        }
        let diff_ids = serde_json::from_slice::<Config>(&config)
            .ok()
            .and_then(|c| c.rootfs)
            .map(|r| r.diff_ids)
            .unwrap_or_default();
        let mut layers = Vec::new();
        for (i, name) in entry.layers.iter().enumerate() {
            let &(offset, size) = self.entries.get(name.as_str()).ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{}: layer {name} missing from the archive",
                        self.file.display()
                    ),
                )
            })?;
            let magic = self.magic(offset, size).await?;
            let (media_type, compressed) = match magic {
                [0x1f, 0x8b, ..] => ("application/vnd.oci.image.layer.v1.tar+gzip", true),
                [0x28, 0xb5, 0x2f, 0xfd] => ("application/vnd.oci.image.layer.v1.tar+zstd", true),
                _ => ("application/vnd.oci.image.layer.v1.tar", false),
            };
            let digest = match (digest_of_path(name), diff_ids.get(i)) {
                (Some(d), _) => d,
                (None, Some(d)) if !compressed => d.clone(),
                // A compressed layer at a legacy path: its digest is only known by reading it.
                _ => self.hash_region(offset, size).await?,
            };
            self.blobs.insert(digest.clone(), name.clone());
            layers.push(json!({"mediaType": media_type, "digest": digest, "size": size}));
        }
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers,
        });
        if let Some(tag) = entry.repo_tags.iter().flatten().next() {
            manifest["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        }
        let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("serialisable"));
        let digest = Digest::sha256(&bytes);
        self.made.insert(digest.clone(), bytes.clone());
        Ok(descriptor(OCI_MANIFEST.into(), digest, bytes.len() as u64))
    }

    async fn magic(&self, offset: u64, size: u64) -> Result<[u8; 4]> {
        let path = self.file.clone();
        let n = size.min(4) as usize;
        tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 4]> {
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut m = [0u8; 4];
            f.read_exact(&mut m[..n])?;
            Ok(m)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?
        .map_err(|e| Error::io(format!("reading {}", self.file.display()), e))
    }

    async fn hash_region(&self, offset: u64, size: u64) -> Result<Digest> {
        let path = self.file.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<Digest> {
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut h = Hasher::new(Algorithm::Sha256);
            let mut left = size;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let n = f.read(&mut buf[..left.min(1 << 20) as usize])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                h.update(&buf[..n]);
                left -= n as u64;
            }
            Ok(h.finish())
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?
        .map_err(|e| Error::io(format!("reading {}", self.file.display()), e))
    }
}

fn several(file: &Path, names: &[String]) -> Error {
    Error::usage(format!(
        "{} holds several images: say which, as docker-archive:FILE:NAME:TAG",
        file.display()
    ))
    .with_hint(format!("its images: {}", names.join(", ")))
}

/// `docker.io/library/alpine:latest` matches `alpine:latest`, `library/alpine:latest`, the
/// whole name, or (as a tag alone) `latest`.
fn matches_image(name: &str, want: &str) -> bool {
    name == want
        || name.ends_with(&format!("/{want}"))
        || (!want.contains(':') && short_tag(name) == want)
}

/// `blobs/sha256/<hex>` → the digest.
fn digest_of_path(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches_image(
            "docker.io/library/alpine:latest",
            "alpine:latest"
        ));
        assert!(matches_image("alpine:latest", "latest"));
        assert!(!matches_image("alpine:latest", "busybox:latest"));
        let hex = "a".repeat(64);
        assert!(digest_of_path(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_of_path("abc/layer.tar").is_none());
    }
}
