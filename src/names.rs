//! The spec's grammar for repository names, tags and references, checked once at the edge.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (clients cap host + `/` + name at 255).
pub const MAX_NAME_LEN: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

fn is_component(c: &str) -> bool {
    let b = c.as_bytes();
    let mut i = 0;
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    loop {
        // a run of [a-z0-9]+
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // a separator: `.`, `_`, `__` or `-+`
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

impl FromStr for RepoName {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(is_component) {
            return Err(());
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl FromStr for Tag {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok { Ok(Tag(s.to_owned())) } else { Err(()) }
    }
}

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceError {
    /// Neither a tag nor anything with a `:`.
    Tag,
    /// It has a `:`, so it meant to be a digest, and is not a valid one.
    Digest(DigestError),
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            s.parse()
                .map(Reference::Digest)
                .map_err(ReferenceError::Digest)
        } else {
            s.parse()
                .map(Reference::Tag)
                .map_err(|()| ReferenceError::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let long = "a".repeat(256);
        let table: &[(&str, bool)] = &[
            ("a", true),
            ("library/alpine", true),
            ("a/b/c/d", true),
            ("a.b_c__d-e---f", true),
            ("a0/9z", true),
            ("", false),
            ("A", false),
            ("a/", false),
            ("/a", false),
            ("a//b", false),
            ("a___b", false),
            ("a.-b", false),
            ("-a", false),
            ("a-", false),
            (".", false),
            ("..", false),
            ("a/../b", false),
            ("a/%2e%2e/b", false),
            ("a%2Fb", false),
            ("a\\b", false),
            ("a\0b", false),
            ("_a", false),
            (&long, false),
        ];
        for (s, ok) in table {
            assert_eq!(s.parse::<RepoName>().is_ok(), *ok, "{s:?}");
        }
        assert!("a".repeat(255).parse::<RepoName>().is_ok());
    }

    #[test]
    fn tags() {
        let t128 = format!("a{}", "b".repeat(127));
        let t129 = format!("a{}", "b".repeat(128));
        let table: &[(&str, bool)] = &[
            ("latest", true),
            ("v1.2.3-rc_1", true),
            ("_x", true),
            ("A", true),
            (&t128, true),
            (&t129, false),
            ("", false),
            (".x", false),
            ("-x", false),
            ("x/y", false),
            ("x:y", false),
            ("..", false),
        ];
        for (s, ok) in table {
            assert_eq!(s.parse::<Tag>().is_ok(), *ok, "{s:?}");
        }
    }

    #[test]
    fn references() {
        assert!(matches!(
            "latest".parse::<Reference>(),
            Ok(Reference::Tag(_))
        ));
        let d = format!("sha256:{}", "1".repeat(64));
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert_eq!(
            "sha256:zz".parse::<Reference>(),
            Err(ReferenceError::Digest(DigestError::Malformed))
        );
        assert_eq!("bad/tag".parse::<Reference>(), Err(ReferenceError::Tag));
    }
}
