//! Reading just enough of a manifest to check it and index it. The bytes are stored as pushed;
//! this never rewrites them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// What the repository records of a manifest it holds; the bytes are a blob.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestLink {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// Seconds since the epoch when it was last pushed (0 for links written before berth kept
    /// the time): garbage collection's grace, and retention, read it.
    #[serde(default)]
    pub at: u64,
    /// A client pushed it (not a mirror's copy of an upstream's): a mirror's cache limit never
    /// evicts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pushed: bool,
}

/// A content descriptor, as far as berth needs it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
    #[serde(default, skip_serializing)]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// Layers whose bytes live elsewhere; a registry need not hold them.
    pub fn is_non_distributable(&self) -> bool {
        self.media_type.contains(".nondistributable.") || self.media_type.contains(".foreign.")
    }
}

/// The parts of a manifest or index that matter to the registry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<Map<String, Value>>,
}

#[derive(Debug)]
pub struct Manifest {
    /// The media type it is served with.
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Blobs that must be in the repository: config and distributable layers.
    pub blobs: Vec<Descriptor>,
    /// Manifests that must be in the repository (an index's children).
    pub children: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<Map<String, Value>>,
    config_media_type: Option<String>,
}

impl Manifest {
    /// The `artifactType` a referrers listing shows: the manifest's own, else its config's.
    pub fn referrer_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config_media_type.clone())
    }
}

/// Why a pushed manifest is refused (MANIFEST_INVALID, with this as the message).
#[derive(Debug)]
pub enum ManifestError {
    /// Not JSON, or not a manifest's shape.
    Json(serde_json::Error),
    /// `Content-Type` and the `mediaType` field disagree.
    TypeMismatch { header: String, field: String },
    /// Neither says what it is.
    NoMediaType,
    /// Docker schema 1, which berth does not store.
    Schema1,
    /// Not one of the manifest media types berth serves.
    NotAManifest(String),
    /// `schemaVersion` is not 2.
    SchemaVersion,
    /// An index or manifest list without `manifests`.
    NoManifests,
    /// An image manifest without `config` or `layers`.
    NoConfigOrLayers,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestError::Json(e) => write!(f, "not a valid manifest: {e}"),
            ManifestError::TypeMismatch { header, field } => write!(
                f,
                "Content-Type {header} does not match the manifest's mediaType {field}"
            ),
            ManifestError::NoMediaType => f.write_str("no Content-Type and no mediaType"),
            ManifestError::Schema1 => f.write_str("Docker schema 1 manifests are not supported"),
            ManifestError::NotAManifest(t) => write!(
                f,
                "{t} is not a manifest media type (expected {OCI_MANIFEST}, {OCI_INDEX}, \
                 {DOCKER_MANIFEST} or {DOCKER_LIST})"
            ),
            ManifestError::SchemaVersion => f.write_str("schemaVersion must be 2"),
            ManifestError::NoManifests => f.write_str("an index needs a manifests array"),
            ManifestError::NoConfigOrLayers => {
                f.write_str("an image manifest needs a config and layers")
            }
        }
    }
}

impl std::error::Error for ManifestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManifestError::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// Check a pushed manifest. `content_type` is the request's header, if any.
pub fn inspect(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty());
    if let (Some(h), Some(body)) = (header, raw.media_type.as_deref())
        && h != body
    {
        return Err(ManifestError::TypeMismatch {
            header: h.to_owned(),
            field: body.to_owned(),
        });
    }
    let media_type = match header.or(raw.media_type.as_deref()) {
        Some(t) => t.to_owned(),
        None if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        None if raw.config.is_some() => OCI_MANIFEST.to_owned(),
        None => return Err(ManifestError::NoMediaType),
    };
    if DOCKER_SCHEMA1.contains(&media_type.as_str()) {
        return Err(ManifestError::Schema1);
    }
    // Served back with this type: anything else (text/html...) would let a push plant a page.
    // Artifacts are OCI image manifests whatever their artifactType.
    if !is_known(&media_type) {
        return Err(ManifestError::NotAManifest(media_type));
    }
    match raw.schema_version {
        Some(Value::Number(ref n)) if n.as_u64() == Some(2) => {}
        _ => return Err(ManifestError::SchemaVersion),
    }
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    let is_image = media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST;
    if is_index && raw.manifests.is_none() {
        return Err(ManifestError::NoManifests);
    }
    // `"layers": null` reads as absent: refused too.
    if is_image && (raw.config.is_none() || raw.layers.is_none()) {
        return Err(ManifestError::NoConfigOrLayers);
    }
    let config_media_type = raw.config.as_ref().map(|c| c.media_type.clone());
    let mut blobs: Vec<Descriptor> = raw.config.into_iter().collect();
    blobs.extend(
        raw.layers
            .unwrap_or_default()
            .into_iter()
            .filter(|l| !l.is_non_distributable()),
    );
    blobs.extend(raw.blobs.unwrap_or_default());
    Ok(Manifest {
        media_type,
        artifact_type: raw.artifact_type,
        blobs,
        children: raw.manifests.unwrap_or_default(),
        subject: raw.subject,
        annotations: raw.annotations,
        config_media_type,
    })
}

fn is_known(media_type: &str) -> bool {
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::sha256(&[n]).to_string()
    }

    #[test]
    fn image_and_index() {
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":1}},{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{}","size":1,"urls":["https://x"]}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3}},"annotations":{{"a":"b"}}}}"#,
            d(1),
            d(2),
            d(3),
            d(4)
        );
        let m = inspect(image.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.blobs.len(), 2, "config and one distributable layer");
        assert_eq!(m.subject.unwrap().digest.to_string(), d(4));
        let m = inspect(image.as_bytes(), None).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(
            m.referrer_artifact_type().as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(
            inspect(image.as_bytes(), Some(OCI_INDEX))
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );

        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux"}}}}]}}"#,
            d(5)
        );
        let m = inspect(index.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(m.children.len(), 1);
        assert_eq!(
            inspect(index.as_bytes(), None).unwrap().media_type,
            OCI_INDEX
        );
    }

    #[test]
    fn invalid() {
        let cases = [
            "",
            "{",
            "[]",
            "{}",
            r#"{"schemaVersion":1,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:00","size":1}}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:bad","size":1},"layers":[]}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":-1},"layers":[]}"#,
            r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#,
        ];
        for c in cases {
            assert!(inspect(c.as_bytes(), None).is_err(), "{c}");
        }
        let config = format!(
            r#""config":{{"mediaType":"x","digest":"{}","size":1}}"#,
            d(1)
        );
        for (body, content_type) in [
            // Not a manifest type, by header or by field.
            (
                format!(r#"{{"schemaVersion":2,{config},"layers":[],"x":"<script>"}}"#),
                Some("text/html"),
            ),
            (
                format!(r#"{{"schemaVersion":2,"mediaType":"text/html",{config},"layers":[]}}"#),
                None,
            ),
            (
                format!(r#"{{"schemaVersion":2,{config},"layers":[]}}"#),
                Some("application/json"),
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.example.thing",{config},"layers":[]}}"#
                ),
                Some("application/vnd.example.thing"),
            ),
            // An image manifest without layers, or with null layers.
            (
                format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",{config}}}"#),
                Some(OCI_MANIFEST),
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",{config},"layers":null}}"#
                ),
                Some(OCI_MANIFEST),
            ),
            (
                format!(r#"{{"schemaVersion":2,{config},"layers":null}}"#),
                None,
            ),
        ] {
            assert!(
                inspect(body.as_bytes(), content_type).is_err(),
                "{body} as {content_type:?}"
            );
        }
        let deep = "[".repeat(100_000);
        assert!(inspect(deep.as_bytes(), Some(OCI_MANIFEST)).is_err());
    }
}
