//! What an image is: its manifest, config, platforms and sizes, from any [`Location`].

use serde::Serialize;
use serde_json::Value;

use super::copy::Source;
use super::error::{Error, ErrorKind, Result};
use super::reference::Location;
use super::transport::Client;
use crate::digest::Digest;
use crate::manifest::{self, DOCKER_LIST, Descriptor, OCI_INDEX};

/// An inspected manifest: an index with its platforms, or an image (or artifact).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub name: String,
    pub digest: Digest,
    pub media_type: String,
    /// Of the manifest itself.
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, Value>>,
    /// An index's entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformImage>,
    /// An image's config and layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// The manifest's bytes, as served.
    #[serde(skip)]
    pub raw: bytes::Bytes,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformImage {
    /// `os/arch[/variant]`, or `unknown/unknown` (attestations).
    pub platform: String,
    pub digest: Digest,
    pub media_type: String,
    pub image: Option<Image>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub config: Descriptor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub layers: Vec<Descriptor>,
    /// Config and layers, in bytes.
    pub total_size: u64,
    /// The config, parsed.
    #[serde(skip)]
    pub config_json: Value,
}

/// Inspect the manifest at `loc`; for an index, every platform's image too.
pub async fn inspect(client: &Client, loc: &Location) -> Result<Inspection> {
    let (source, desc, bytes) = Source::open(client, loc).await?;
    let parsed = manifest::inspect(&bytes, Some(&desc.media_type))
        .map_err(|e| Error::new(ErrorKind::Unsupported, format!("{loc}: {e}")))?;
    let mut out = Inspection {
        name: loc.to_string(),
        digest: desc.digest.clone(),
        media_type: desc.media_type.clone(),
        size: bytes.len() as u64,
        artifact_type: parsed.artifact_type.clone(),
        subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
        annotations: parsed.annotations.clone(),
        platforms: Vec::new(),
        image: None,
        raw: bytes.clone(),
    };
    if desc.media_type == OCI_INDEX || desc.media_type == DOCKER_LIST {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let entries = v
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (entry, child) in entries.iter().zip(parsed.children.iter()) {
            let platform = entry
                .get("platform")
                .map(super::Platform::describe)
                .unwrap_or_else(|| "unknown/unknown".into());
            let child_bytes = source.manifest(child).await?;
            let image = image(&source, child, &child_bytes).await?;
            out.platforms.push(PlatformImage {
                platform,
                digest: child.digest.clone(),
                media_type: child.media_type.clone(),
                image,
            });
        }
    } else {
        out.image = image(&source, &desc, &bytes).await?;
    }
    Ok(out)
}

async fn image(source: &Source, desc: &Descriptor, bytes: &[u8]) -> Result<Option<Image>> {
    #[derive(serde::Deserialize)]
    struct Raw {
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    let Ok(raw) = serde_json::from_slice::<Raw>(bytes) else {
        return Ok(None);
    };
    let Some(config) = raw.config else {
        return Ok(None);
    };
    let _ = desc;
    // Configs are small; an artifact's "config" may be the empty descriptor, or anything.
    let config_json: Value = if config.size <= 4 << 20 {
        match source.small_blob(&config).await {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            Err(e) if e.kind() == ErrorKind::NotFound => Value::Null,
            Err(e) => return Err(e),
        }
    } else {
        Value::Null
    };
    let get = |k: &str| {
        config_json
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let platform = match (get("os"), get("architecture")) {
        (Some(os), Some(arch)) => Some(match get("variant") {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        }),
        _ => None,
    };
    let total_size = config.size + raw.layers.iter().map(|l| l.size).sum::<u64>();
    Ok(Some(Image {
        created: get("created"),
        platform,
        total_size,
        config,
        layers: raw.layers,
        config_json,
    }))
}

/// The manifests that refer to the one at `loc` (the registry's referrers API or its fallback
/// tag, or the subjects in an OCI layout's `index.json`), filtered by `artifact_type`.
pub async fn referrers(
    client: &Client,
    loc: &Location,
    artifact_type: Option<&str>,
) -> Result<(Digest, Vec<Descriptor>)> {
    if let Location::Registry(r) = loc {
        let repo = client.repository(&r.host, r.name.clone());
        let digest = match r.digest() {
            Some(d) => d.clone(),
            None => match repo.manifest_head(&r.reference).await? {
                Some(d) => d.digest,
                None => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("{loc}: no such manifest"),
                    )
                    .with_hint("check the tag with `berth tags HOST/NAME`"));
                }
            },
        };
        let list = repo.referrers(&digest, artifact_type).await?;
        return Ok((digest, list));
    }
    let (source, desc, _) = Source::open(client, loc).await?;
    let mut list = source.referrers(&desc.digest).await?;
    if let Some(t) = artifact_type {
        list.retain(|d| d.artifact_type.as_deref() == Some(t));
    }
    Ok((desc.digest, list))
}
