//! What changed, for adapters to announce (webhooks, queues). The core stays pure: an endpoint
//! that changes a manifest or a tag puts an [`Event`] in its response's extensions, and the
//! adapter takes it from there (or ignores it).

use serde::Serialize;

/// One change to a repository's manifests or tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub action: Action,
    pub repository: String,
    /// The manifest's digest; `None` for a tag deleted by name.
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    /// The tags pushed with the manifest, or the tag deleted.
    pub tags: Vec<String>,
    /// Who did it, when access control knows (a user or a token's subject).
    pub actor: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A manifest stored (and its tags set).
    ManifestPushed,
    /// A manifest deleted by digest, with the tags that named it.
    ManifestDeleted,
    /// A tag deleted by name; the manifest stays.
    TagDeleted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ManifestPushed => "manifest.pushed",
            Action::ManifestDeleted => "manifest.deleted",
            Action::TagDeleted => "tag.deleted",
        }
    }
}

/// Who access control let in, in a request's extensions (for [`Event::actor`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);
