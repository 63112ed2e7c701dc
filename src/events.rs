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

/// `2026-12-01T22:46:05Z` (CloudEvents, tokens) from seconds since the epoch (Hinnant's days-to-civil).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_733_165), "2026-11-26T22:46:05Z");
        assert_eq!(rfc3339(1_796_363_601), "2026-12-04T05:53:21Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
