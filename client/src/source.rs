//! Where a copy (or an inspection) reads from: a registry repository, an OCI layout or a
//! docker archive. Every manifest and blob read is verified.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::archive::Archive;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::progress::Progress;
use crate::reference::Location;
use crate::registry::Repository;
use crate::stream::counted;
use crate::transport::Client;
use berth::body::ByteStream;
use berth::digest::Digest;
use berth::manifest::Descriptor;
use berth::names::Reference;

pub(crate) enum Source {
    Registry(Repository),
    Layout(Layout),
    Archive(Box<Archive>),
}

impl Source {
    /// Open `loc` and read its top manifest.
    pub(crate) async fn open(
        client: &Client,
        loc: &Location,
    ) -> Result<(Source, Descriptor, Bytes)> {
        match loc {
            Location::Registry(r) => {
                let repo = client.repository(&r.host, r.name.clone());
                let m = repo.manifest(&r.reference).await?;
                Ok((Source::Registry(repo), m.descriptor(), m.bytes))
            }
            Location::Layout { dir, reference } => {
                let layout = Layout::open(dir).await?;
                let desc = layout.resolve(reference.as_ref()).await?;
                let bytes = layout.read_checked(&desc.digest, Some(desc.size)).await?;
                Ok((Source::Layout(layout), desc, bytes))
            }
            Location::DockerArchive { file, image } => {
                let archive = Archive::open(file, image.as_deref()).await?;
                let desc = archive.root().clone();
                let bytes = archive.read_checked(&desc).await?;
                Ok((Source::Archive(Box::new(archive)), desc, bytes))
            }
        }
    }

    pub(crate) async fn manifest(&self, desc: &Descriptor) -> Result<Bytes> {
        match self {
            Source::Registry(repo) => {
                let m = repo
                    .manifest(&Reference::Digest(desc.digest.clone()))
                    .await?;
                Ok(m.bytes)
            }
            Source::Layout(l) => l.read_checked(&desc.digest, Some(desc.size)).await,
            Source::Archive(a) => a.read_checked(desc).await,
        }
    }

    /// A small blob (a config), read whole and verified.
    pub(crate) async fn small_blob(&self, desc: &Descriptor) -> Result<Bytes> {
        let mut stream = self.blob(desc, &(Arc::new(()) as Arc<dyn Progress>));
        let mut buf = Vec::with_capacity(desc.size as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(
                &chunk.map_err(|e| Error::io(format!("blob {}", desc.digest), e))?,
            );
        }
        Ok(Bytes::from(buf))
    }

    /// A blob's bytes, verified as they are read and counted to `progress`.
    pub(crate) fn blob(&self, desc: &Descriptor, progress: &Arc<dyn Progress>) -> ByteStream {
        let stream = match self {
            Source::Registry(repo) => repo.blob_reporting(desc, Some(progress.clone())),
            Source::Layout(l) => l.blob(desc),
            Source::Archive(a) => match a.blob(desc) {
                Ok(s) => s,
                Err(e) => Box::pin(futures_util::stream::once(async move {
                    Err(std::io::Error::other(e))
                })),
            },
        };
        counted(stream, desc.digest.clone(), progress.clone())
    }

    pub(crate) async fn referrers(&self, d: &Digest) -> Result<Vec<Descriptor>> {
        match self {
            Source::Registry(repo) => repo.referrers(d, None).await,
            Source::Layout(l) => l.referrers(d).await,
            Source::Archive(_) => Ok(Vec::new()),
        }
    }
}
