//! Manifest media types: the ones berth asks for, the read bound, and the media type of a
//! manifest that came without one.

use serde::Deserialize;
use serde_json::{Value, json};

use berth::digest::Digest;
use berth::manifest::Descriptor;

/// Every manifest media type berth asks for (`Accept`) and understands.
pub const MANIFEST_TYPES: &[&str] = &[
    berth::manifest::OCI_MANIFEST,
    berth::manifest::OCI_INDEX,
    berth::manifest::DOCKER_MANIFEST,
    berth::manifest::DOCKER_LIST,
];

/// The largest manifest read, in bytes (the spec asks registries to take at least 4 MiB).
pub const MAX_MANIFEST: usize = 8 << 20;

/// Whether a media type is an index (OCI) or a manifest list (docker).
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == berth::manifest::OCI_INDEX || media_type == berth::manifest::DOCKER_LIST
}

/// The media type from the header, or else from the manifest's own `mediaType`, or else
/// guessed from its shape.
pub(crate) fn media_type_of(bytes: &[u8], header: Option<&str>) -> String {
    let header = header.filter(|h| {
        !h.is_empty()
            && *h != "application/json"
            && *h != "application/octet-stream"
            && *h != "text/plain"
    });
    if let Some(h) = header {
        return h.to_owned();
    }
    berth::manifest::inspect(bytes, None)
        .map(|m| m.media_type)
        .unwrap_or_else(|_| berth::manifest::OCI_MANIFEST.to_owned())
}

/// An index's entries, as far as berth reads them.
#[derive(Deserialize)]
pub(crate) struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// The entries of an index as JSON, with every field they have (empty when unreadable).
pub(crate) fn index_entries(index: &Value) -> &[Value] {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// An OCI index with no entries.
pub(crate) fn empty_index() -> Value {
    json!({"schemaVersion": 2, "mediaType": berth::manifest::OCI_INDEX, "manifests": []})
}

/// A descriptor with nothing but media type, digest and size.
pub(crate) fn descriptor(media_type: String, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type,
        digest,
        size,
        artifact_type: None,
        annotations: None,
        urls: None,
    }
}
