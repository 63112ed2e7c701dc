//! Where images are: `HOST/NAME:TAG`, `HOST/NAME@DIGEST`, `oci:DIR[:TAG]`,
//! `docker-archive:FILE[:NAME:TAG]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use berth::digest::Digest;
use berth::names::{Reference, RepoName, Tag};

/// Docker Hub, for names without a host (`alpine` is `docker.io/library/alpine`).
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A manifest in a registry: `HOST/NAME:TAG` or `HOST/NAME@DIGEST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub host: String,
    pub name: RepoName,
    pub reference: Reference,
}

impl ImageRef {
    /// The host to send requests to (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        api_host(&self.host)
    }

    pub fn tag(&self) -> Option<&Tag> {
        match &self.reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        match &self.reference {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }
}

pub(crate) fn api_host(host: &str) -> &str {
    if host == DOCKER_HUB || host == "index.docker.io" {
        DOCKER_HUB_API
    } else {
        host
    }
}

/// A repository without a reference: `HOST/NAME`.
pub fn parse_repository(s: &str) -> Result<(String, RepoName)> {
    let s = s.strip_prefix("docker://").unwrap_or(s);
    let (host, rest) = split_host(s);
    let name = qualify(&host, rest);
    let name = name.parse::<RepoName>().map_err(|()| {
        Error::usage(format!("{name:?} is not a valid repository name")).with_hint(
            "names are lowercase letters, digits and separators (. _ __ -), components split by /",
        )
    })?;
    Ok((host, name))
}

fn split_host(s: &str) -> (String, &str) {
    match s.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_owned(), rest)
        }
        _ => (DOCKER_HUB.to_owned(), s),
    }
}

fn qualify(host: &str, name: &str) -> String {
    if host == DOCKER_HUB && !name.contains('/') {
        format!("library/{name}")
    } else {
        name.to_owned()
    }
}

impl FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<ImageRef> {
        let s = s.strip_prefix("docker://").unwrap_or(s);
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let d = d.parse::<Digest>().map_err(|e| {
                    Error::usage(format!("{d:?} in {s:?}: {e}"))
                        .with_hint("a digest looks like sha256: followed by 64 hex digits")
                })?;
                (r, Some(d))
            }
            None => (s, None),
        };
        let (host, path) = split_host(rest);
        // A tag follows the last `:` of the last path component.
        let last = path.rsplit('/').next().unwrap_or(path);
        let (name, tag) = match last.rfind(':') {
            Some(i) => {
                let cut = path.len() - last.len() + i;
                (&path[..cut], Some(&path[cut + 1..]))
            }
            None => (path, None),
        };
        let name = qualify(&host, name);
        let name = name.parse::<RepoName>().map_err(|()| {
            Error::usage(format!("{name:?} in {s:?} is not a valid repository name")).with_hint(
                "write HOST/NAME:TAG or HOST/NAME@DIGEST with a lowercase NAME, e.g. \
                 127.0.0.1:5000/team/app:v1",
            )
        })?;
        let reference = match (digest, tag) {
            (Some(d), _) => Reference::Digest(d),
            (None, Some(t)) => Reference::Tag(t.parse::<Tag>().map_err(|()| {
                Error::usage(format!("{t:?} in {s:?} is not a valid tag"))
                    .with_hint("tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -")
            })?),
            (None, None) => Reference::Tag("latest".parse().expect("a valid tag")),
        };
        Ok(ImageRef {
            host,
            name,
            reference,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(t) => write!(f, "{}/{}:{t}", self.host, self.name),
            Reference::Digest(d) => write!(f, "{}/{}@{d}", self.host, self.name),
        }
    }
}

/// A source or destination of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A registry: `HOST/NAME:TAG`, `HOST/NAME@DIGEST` (`docker://` in front is accepted).
    Registry(ImageRef),
    /// An OCI image layout directory: `oci:DIR`, `oci:DIR:TAG`, `oci:DIR@DIGEST`. Without a
    /// reference, a source must hold exactly one manifest, and a destination takes the
    /// source's tag.
    Layout {
        dir: PathBuf,
        reference: Option<Reference>,
    },
    /// A `docker save` tarball (a source only): `docker-archive:FILE`, or
    /// `docker-archive:FILE:NAME:TAG` to pick one of several images.
    DockerArchive {
        file: PathBuf,
        image: Option<String>,
    },
}

impl Location {
    /// The tag, if the location names one.
    pub fn tag(&self) -> Option<&Tag> {
        match self {
            Location::Registry(r) => r.tag(),
            Location::Layout {
                reference: Some(Reference::Tag(t)),
                ..
            } => Some(t),
            _ => None,
        }
    }
}

impl FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Location> {
        if let Some(rest) = s.strip_prefix("oci:") {
            return parse_layout(rest);
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            return parse_archive(rest);
        }
        s.parse().map(Location::Registry)
    }
}

fn parse_layout(rest: &str) -> Result<Location> {
    if rest.is_empty() {
        return Err(Error::usage("oci: needs a directory, e.g. oci:./images:v1"));
    }
    if let Some((dir, d)) = rest.rsplit_once('@')
        && let Ok(d) = d.parse::<Digest>()
    {
        return Ok(Location::Layout {
            dir: dir.into(),
            reference: Some(Reference::Digest(d)),
        });
    }
    // `DIR:TAG` when what follows the last `:` is a tag; otherwise the `:` is the directory's.
    if let Some((dir, t)) = rest.rsplit_once(':')
        && !dir.is_empty()
        && let Ok(tag) = t.parse::<Tag>()
    {
        return Ok(Location::Layout {
            dir: dir.into(),
            reference: Some(Reference::Tag(tag)),
        });
    }
    Ok(Location::Layout {
        dir: rest.into(),
        reference: None,
    })
}

fn parse_archive(rest: &str) -> Result<Location> {
    if rest.is_empty() {
        return Err(Error::usage(
            "docker-archive: needs a file, e.g. docker-archive:./app.tar",
        ));
    }
    // `FILE:NAME:TAG`: the file is the longest prefix that exists, else all of it.
    if !std::path::Path::new(rest).exists() {
        for (i, _) in rest.match_indices(':') {
            if std::path::Path::new(&rest[..i]).is_file() {
                return Ok(Location::DockerArchive {
                    file: rest[..i].into(),
                    image: Some(rest[i + 1..].to_owned()),
                });
            }
        }
    }
    Ok(Location::DockerArchive {
        file: rest.into(),
        image: None,
    })
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(r) => r.fmt(f),
            Location::Layout { dir, reference } => {
                write!(f, "oci:{}", dir.display())?;
                match reference {
                    Some(Reference::Tag(t)) => write!(f, ":{t}"),
                    Some(Reference::Digest(d)) => write!(f, "@{d}"),
                    None => Ok(()),
                }
            }
            Location::DockerArchive { file, image } => {
                write!(f, "docker-archive:{}", file.display())?;
                match image {
                    Some(i) => write!(f, ":{i}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references() {
        let d = format!("sha256:{}", "a".repeat(64));
        let table: &[(&str, Option<&str>)] = &[
            ("127.0.0.1:5000/app:v1", Some("127.0.0.1:5000/app:v1")),
            (
                "127.0.0.1:5000/team/app",
                Some("127.0.0.1:5000/team/app:latest"),
            ),
            ("localhost/app", Some("localhost/app:latest")),
            ("example.com/a/b/c:1.0", Some("example.com/a/b/c:1.0")),
            ("alpine", Some("docker.io/library/alpine:latest")),
            ("bitnami/redis:7", Some("docker.io/bitnami/redis:7")),
            ("docker://quay.io/x/y:z", Some("quay.io/x/y:z")),
            ("example.com:443/app", Some("example.com:443/app:latest")),
            ("Example.com/App:v1", None),
            ("example.com/app:", None),
            ("example.com/app:-x", None),
            ("example.com/app@sha256:abc", None),
            ("", None),
        ];
        for (input, want) in table {
            let got = input.parse::<ImageRef>().map(|r| r.to_string()).ok();
            assert_eq!(got.as_deref(), *want, "{input}");
        }
        let r: ImageRef = format!("h:1/app:v1@{d}").parse().unwrap();
        assert_eq!(
            r.digest().unwrap().to_string(),
            d,
            "the digest wins over the tag"
        );
        assert_eq!(r.host, "h:1");
        let hub: ImageRef = "alpine".parse().unwrap();
        assert_eq!(hub.api_host(), DOCKER_HUB_API);
    }

    #[test]
    fn locations() {
        let d = format!("sha256:{}", "b".repeat(64));
        let layout = |s: &str| s.parse::<Location>().unwrap();
        assert_eq!(
            layout("oci:./images:v1"),
            Location::Layout {
                dir: "./images".into(),
                reference: Some(Reference::Tag("v1".parse().unwrap()))
            }
        );
        assert_eq!(
            layout("oci:/tmp/x"),
            Location::Layout {
                dir: "/tmp/x".into(),
                reference: None
            }
        );
        assert_eq!(
            layout(&format!("oci:dir@{d}")),
            Location::Layout {
                dir: "dir".into(),
                reference: Some(Reference::Digest(d.parse().unwrap()))
            }
        );
        assert_eq!(layout("oci:dir:v1").to_string(), "oci:dir:v1");
        assert!(matches!(
            layout("docker-archive:/nonexistent/app.tar"),
            Location::DockerArchive { image: None, .. }
        ));
        assert!(matches!(layout("h:1/a:b"), Location::Registry(_)));
        assert!("oci:".parse::<Location>().is_err());
    }
}
