//! What an image is: its manifest, config, platforms and sizes, from any [`Location`].

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::media::{index_entries, is_index};
use crate::platform::Platform;
use crate::reference::Location;
use crate::registry::retain_artifact_type;
use crate::source::Source;
use crate::transport::Client;
use berth::digest::Digest;
use berth::manifest::{self, Descriptor};

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
    if is_index(&desc.media_type) {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        for (entry, child) in index_entries(&v).iter().zip(parsed.children.iter()) {
            let platform = entry
                .get("platform")
                .map(Platform::describe)
                .unwrap_or_else(|| "unknown/unknown".into());
            let child_bytes = source.manifest(child).await?;
            let image = image(&source, &child_bytes).await?;
            out.platforms.push(PlatformImage {
                platform,
                digest: child.digest.clone(),
                media_type: child.media_type.clone(),
                image,
            });
        }
    } else {
        out.image = image(&source, &bytes).await?;
    }
    Ok(out)
}

async fn image(source: &Source, bytes: &[u8]) -> Result<Option<Image>> {
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
    let platform = (get("os").is_some() && get("architecture").is_some())
        .then(|| Platform::describe(&config_json));
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
    retain_artifact_type(&mut list, artifact_type);
    Ok((desc.digest, list))
}
