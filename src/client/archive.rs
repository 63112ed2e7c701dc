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

use super::error::{Error, ErrorKind, Result};
use super::registry::mismatch;
use crate::body::ByteStream;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::manifest::{Descriptor, OCI_MANIFEST};

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
        let entries = tokio::task::spawn_blocking(move || scan(&path))
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("scanning the archive: {e}")))?
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let mut a = Archive {
            file: file.to_path_buf(),
            entries,
            blobs: HashMap::new(),
            made: HashMap::new(),
            root: Descriptor {
                media_type: String::new(),
                digest: Digest::sha256(b""),
                size: 0,
                artifact_type: None,
                annotations: None,
                urls: None,
            },
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
        let name = self.blobs.get(&desc.digest).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "{}: no blob {} in the archive",
                    self.file.display(),
                    desc.digest
                ),
            )
        })?;
        let bytes = self.entry_bytes(name, super::MAX_MANIFEST as u64).await?;
        let actual = Digest::of(desc.digest.algorithm(), &bytes);
        if actual != desc.digest {
            return Err(mismatch(
                &format!("{} {name}", self.file.display()),
                &desc.digest,
                &actual,
            ));
        }
        Ok(bytes)
    }

    /// A blob as a stream from its region of the tar, checked as it is read.
    pub fn blob(&self, desc: &Descriptor) -> Result<ByteStream> {
        let region = self
            .blobs
            .get(&desc.digest)
            .and_then(|n| self.entries.get(n));
        let Some(&(offset, size)) = region else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{}: no blob {} in the archive",
                    self.file.display(),
                    desc.digest
                ),
            ));
        };
        let raw = super::stream::file_range(self.file.clone(), offset, size);
        Ok(super::stream::verified(raw, desc))
    }

    /// Docker 25+: `index.json` names the images; pick one.
    async fn root_from_index(&self, image: Option<&str>) -> Result<Option<Descriptor>> {
        let bytes = self
            .entry_bytes("index.json", super::MAX_MANIFEST as u64)
            .await?;
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
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
            ["io.containerd.image.name", super::layout::REF_NAME]
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
            .entry_bytes("manifest.json", super::MAX_MANIFEST as u64)
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
        Ok(Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest,
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: None,
            urls: None,
        })
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
        || (!want.contains(':') && super::layout::short_tag(name) == want)
}

/// `blobs/sha256/<hex>` → the digest.
fn digest_of_path(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// The regular files of a tar: name → (data offset, size). Understands ustar prefixes, GNU
/// long names and PAX `path` records.
fn scan(path: &Path) -> std::io::Result<HashMap<String, (u64, u64)>> {
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata()?.len();
    let mut entries = HashMap::new();
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    let mut header = [0u8; 512];
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    while pos + 512 <= total {
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut header)?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = parse_size(&header[124..136]).ok_or_else(|| bad("not a tar file"))?;
        let data = pos + 512;
        let next = data
            .checked_add(size.div_ceil(512) * 512)
            .ok_or_else(|| bad("not a tar file"))?;
        let kind = header[156];
        let field = |r: std::ops::Range<usize>| {
            let b = &header[r];
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        match kind {
            b'L' | b'x' if size <= 1 << 20 => {
                let mut buf = vec![0; size as usize];
                f.read_exact(&mut buf)?;
                long_name = if kind == b'L' {
                    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
                    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
                } else {
                    pax_path(&buf).or(long_name)
                };
            }
            b'0' | 0 | b'7' => {
                let name = long_name.take().unwrap_or_else(|| {
                    let name = field(0..100);
                    let prefix = if &header[257..262] == b"ustar" {
                        field(345..500)
                    } else {
                        String::new()
                    };
                    if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}/{name}")
                    }
                });
                let name = name.trim_start_matches("./").to_owned();
                entries.insert(name, (data, size));
            }
            _ => long_name = None,
        }
        pos = next;
    }
    if entries.is_empty() {
        return Err(bad("not a tar file, or an empty one"));
    }
    Ok(entries)
}

/// Octal, or base-256 with the high bit set.
fn parse_size(b: &[u8]) -> Option<u64> {
    if b[0] & 0x80 != 0 {
        let mut v = 0u64;
        for &c in &b[1..] {
            v = v.checked_mul(256)?.checked_add(c as u64)?;
        }
        return Some(v);
    }
    let s: String = b
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// The `path` record of a PAX header: `"<len> path=<value>\n"` records.
fn pax_path(buf: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(buf);
    text.split('\n')
        .filter_map(|rec| rec.split_once(' ').map(|(_, kv)| kv))
        .find_map(|kv| kv.strip_prefix("path=").map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(
            parse_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_size(b"xyz\0\0\0\0\0\0\0\0\0"), None);
        assert!(matches_image(
            "docker.io/library/alpine:latest",
            "alpine:latest"
        ));
        assert!(matches_image("alpine:latest", "latest"));
        assert!(!matches_image("alpine:latest", "busybox:latest"));
        assert_eq!(
            pax_path(b"30 mtime=1700000000.000000\n16 path=a/b/c\n").as_deref(),
            Some("a/b/c")
        );
        let hex = "a".repeat(64);
        assert!(digest_of_path(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_of_path("abc/layer.tar").is_none());
    }
}
