//! Where a copy writes to: a registry repository under a reference, or an OCI layout with
//! an optional tag.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::reference::Location;
use crate::registry::Repository;
use crate::transport::Client;
use berth::manifest::Descriptor;
use berth::names::{Reference, Tag};

pub(super) enum Dest {
    Registry(Repository, Reference),
    Layout(Layout, Option<Tag>),
}

impl Dest {
    pub(super) async fn open(client: &Client, loc: &Location, src: &Location) -> Result<Dest> {
        match loc {
            Location::Registry(r) => Ok(Dest::Registry(
                client.repository(&r.host, r.name.clone()).for_push(),
                r.reference.clone(),
            )),
            Location::Layout { dir, reference } => {
                let layout = Layout::create(dir).await?;
                let tag = match reference {
                    Some(Reference::Tag(t)) => Some(t.clone()),
                    Some(Reference::Digest(_)) => None,
                    None => src.tag().cloned(),
                };
                Ok(Dest::Layout(layout, tag))
            }
            Location::DockerArchive { .. } => Err(Error::usage(
                "a docker archive can only be a source; copy to an OCI layout (oci:DIR:TAG) or \
                 a registry",
            )),
        }
    }

    pub(super) fn describe(&self, desc: &Descriptor) -> String {
        match self {
            Dest::Registry(repo, r) => {
                let r = match r {
                    Reference::Tag(t) => format!(":{t}"),
                    Reference::Digest(_) => format!("@{}", desc.digest),
                };
                format!("{}/{}{r}", repo.host(), repo.name())
            }
            Dest::Layout(l, tag) => match tag {
                Some(t) => format!("oci:{}:{t}", l.dir().display()),
                None => format!("oci:{}@{}", l.dir().display(), desc.digest),
            },
        }
    }

    /// Write a manifest: the top one under the destination's reference, the others by
    /// digest. Also says whether the registry processed a `subject` (`OCI-Subject`).
    pub(super) async fn put_manifest(
        &self,
        desc: &Descriptor,
        bytes: &Bytes,
        root: bool,
    ) -> Result<(String, bool)> {
        match self {
            Dest::Registry(repo, r) => {
                let reference = if root {
                    r.clone()
                } else {
                    Reference::Digest(desc.digest.clone())
                };
                let subject = repo
                    .put_manifest(&reference, &desc.media_type, bytes)
                    .await?;
                Ok((reference.to_string(), subject))
            }
            Dest::Layout(l, tag) => {
                l.write_bytes(&desc.digest, bytes).await?;
                if root {
                    l.add_to_index(desc, tag.as_ref()).await?;
                    let written = tag
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| desc.digest.to_string());
                    Ok((written, true))
                } else {
                    Ok((desc.digest.to_string(), true))
                }
            }
        }
    }
}
