//! Where the core keeps its metadata: one key layout for every store.
//!
//! ```text
//! catalog/<name>                                   a repository exists (empty value)
//! repos/<name>/_tags/<tag>                         the digest the tag points to
//! repos/<name>/_manifests/<alg>/<hex>              manifest link (JSON ManifestLink)
//! repos/<name>/_blobs/<alg>/<hex>                  blob link (empty value)
//! repos/<name>/_referrers/<alg>/<hex>/<alg>:<hex>  subject -> referrer descriptor (JSON)
//! repos/<name>/_uploads/<id>                       an open upload of the repository (empty
//!                                                  value), to count them
//! uploads/<id>                                     upload session (JSON)
//! gc/pins/<alg>/<hex>                              when a writer last relied on the blob (secs)
//! gc/dying/<alg>/<hex>                             a garbage collection pass is deleting it
//! gc/usage/<name>                                  the repository's usage (JSON)
//! gc/repos/<name>                                  the repository holds blob links (the time
//!                                                  of the latest new link), for passes to visit
//!                                                  repositories the catalog does not list yet
//! gc/state                                         an incremental pass in progress (the Worker)
//! gc/last                                          the last pass's report (JSON)
//! ```
//! Name components never start with `_`, so `_tags` and friends cannot collide with a name.
//! Stores that present foreign data as berth's (the OCI layout store) read keys with [`parse`].

use crate::digest::Digest;
use crate::names::{RepoName, Tag};

pub const CATALOG: &str = "catalog/";
pub const UPLOADS: &str = "uploads/";
pub const PINS: &str = "gc/pins/";
pub const DYING: &str = "gc/dying/";
pub const LINKED: &str = "gc/repos/";
pub const GC_STATE: &str = "gc/state";
pub const GC_LAST: &str = "gc/last";

pub fn catalog(name: &RepoName) -> String {
    format!("catalog/{name}")
}

pub fn tags(name: &RepoName) -> String {
    format!("repos/{name}/_tags/")
}

pub fn tag(name: &RepoName, tag: &Tag) -> String {
    format!("repos/{name}/_tags/{tag}")
}

pub fn manifest(name: &RepoName, digest: &Digest) -> String {
    format!(
        "repos/{name}/_manifests/{}/{}",
        digest.algorithm(),
        digest.hex()
    )
}

pub fn blob(name: &RepoName, digest: &Digest) -> String {
    format!(
        "repos/{name}/_blobs/{}/{}",
        digest.algorithm(),
        digest.hex()
    )
}

pub fn referrers(name: &RepoName, subject: &Digest) -> String {
    format!(
        "repos/{name}/_referrers/{}/{}/",
        subject.algorithm(),
        subject.hex()
    )
}

pub fn referrer(name: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!("{}{referrer}", referrers(name, subject))
}

pub fn upload(id: &str) -> String {
    format!("uploads/{id}")
}

pub fn open_uploads(name: &RepoName) -> String {
    format!("repos/{name}/_uploads/")
}

pub fn open_upload(name: &RepoName, id: &str) -> String {
    format!("repos/{name}/_uploads/{id}")
}

pub fn pin(d: &Digest) -> String {
    format!("{PINS}{}/{}", d.algorithm(), d.hex())
}

pub fn dying(d: &Digest) -> String {
    format!("{DYING}{}/{}", d.algorithm(), d.hex())
}

pub fn linked(name: &RepoName) -> String {
    format!("{LINKED}{name}")
}

pub fn usage(name: &RepoName) -> String {
    format!("gc/usage/{name}")
}

/// A key listed under [`manifests`], [`blobs`], [`PINS`] or [`DYING`] (`<alg>/<hex>`), as the
/// digest it names.
pub fn digest_of(rel: &str) -> Option<Digest> {
    let (alg, hex) = rel.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

pub fn manifests(name: &RepoName) -> String {
    format!("repos/{name}/_manifests/")
}

pub fn blobs(name: &RepoName) -> String {
    format!("repos/{name}/_blobs/")
}

/// A key of the layout above, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Catalog(RepoName),
    Tags(RepoName),
    Tag(RepoName, Tag),
    Manifests(RepoName),
    Blobs(RepoName),
    Manifest(RepoName, Digest),
    Blob(RepoName, Digest),
    Referrers(RepoName, Digest),
    Referrer(RepoName, Digest, Digest),
    Upload(String),
}

/// Read a key (or a listing prefix) of the layout; `None` for anything else.
pub fn parse(key: &str) -> Option<Key> {
    if let Some(name) = key.strip_prefix(CATALOG) {
        return Some(Key::Catalog(name.parse().ok()?));
    }
    if let Some(id) = key.strip_prefix(UPLOADS) {
        return Some(Key::Upload(id.to_owned()));
    }
    let rest = key.strip_prefix("repos/")?;
    let at = rest.find("/_")?;
    let name: RepoName = rest[..at].parse().ok()?;
    let rest = &rest[at + 1..];
    let digest = |alg: &str, hex: &str| format!("{alg}:{hex}").parse::<Digest>().ok();
    let parts: Vec<&str> = rest.split('/').collect();
    Some(match parts.as_slice() {
        ["_tags", ""] => Key::Tags(name),
        ["_tags", tag] => Key::Tag(name, tag.parse().ok()?),
        ["_manifests", ""] => Key::Manifests(name),
        ["_blobs", ""] => Key::Blobs(name),
        ["_manifests", alg, hex] => Key::Manifest(name, digest(alg, hex)?),
        ["_blobs", alg, hex] => Key::Blob(name, digest(alg, hex)?),
        ["_referrers", alg, hex, ""] => Key::Referrers(name, digest(alg, hex)?),
        ["_referrers", alg, hex, r] => Key::Referrer(name, digest(alg, hex)?, r.parse().ok()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let n: RepoName = "a/b-c".parse().unwrap();
        let t: Tag = "v1".parse().unwrap();
        let d = Digest::sha256(b"x");
        let e = Digest::sha256(b"y");
        let cases = [
            (catalog(&n), Key::Catalog(n.clone())),
            (tags(&n), Key::Tags(n.clone())),
            (manifests(&n), Key::Manifests(n.clone())),
            (blobs(&n), Key::Blobs(n.clone())),
            (tag(&n, &t), Key::Tag(n.clone(), t.clone())),
            (manifest(&n, &d), Key::Manifest(n.clone(), d.clone())),
            (blob(&n, &d), Key::Blob(n.clone(), d.clone())),
            (referrers(&n, &d), Key::Referrers(n.clone(), d.clone())),
            (
                referrer(&n, &d, &e),
                Key::Referrer(n.clone(), d.clone(), e.clone()),
            ),
            (upload("abc"), Key::Upload("abc".into())),
        ];
        for (key, want) in cases {
            assert_eq!(parse(&key), Some(want), "{key}");
        }
        assert_eq!(parse("repos/a/_nope/x"), None);
        assert_eq!(parse("other"), None);
    }
}
