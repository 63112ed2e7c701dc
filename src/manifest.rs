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

/// Check a pushed manifest. `content_type` is the request's header, if any. The error says
/// what is wrong, for MANIFEST_INVALID.
pub fn inspect(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    let raw: Raw =
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid manifest: {e}"))?;
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty());
    if let (Some(h), Some(body)) = (header, raw.media_type.as_deref())
        && h != body
    {
        return Err(format!(
            "Content-Type {h} does not match the manifest's mediaType {body}"
        ));
    }
    let media_type = match header.or(raw.media_type.as_deref()) {
        Some(t) => t.to_owned(),
        None if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        None if raw.config.is_some() => OCI_MANIFEST.to_owned(),
        None => return Err("no Content-Type and no mediaType".into()),
    };
    if DOCKER_SCHEMA1.contains(&media_type.as_str()) {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    match raw.schema_version {
        Some(Value::Number(ref n)) if n.as_u64() == Some(2) => {}
        None if !is_known(&media_type) => {}
        _ => return Err("schemaVersion must be 2".into()),
    }
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    let is_image = media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST;
    if is_index && raw.manifests.is_none() {
        return Err("an index needs a manifests array".into());
    }
    if is_image && (raw.config.is_none() || raw.layers.is_none() && media_type == DOCKER_MANIFEST) {
        return Err("an image manifest needs a config and layers".into());
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
        let deep = "[".repeat(100_000);
        assert!(inspect(deep.as_bytes(), Some(OCI_MANIFEST)).is_err());
    }
}
