//! The manifest graph of a copy: every manifest under the top one, read and verified,
//! children before parents.

use std::collections::HashSet;

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::source::Source;
use berth::digest::Digest;
use berth::manifest::{self, Descriptor};

/// A manifest to copy, with what it names.
pub(super) struct Node {
    pub desc: Descriptor,
    pub bytes: Bytes,
    pub blobs: Vec<Descriptor>,
    pub subject: Option<Digest>,
}

/// Read the manifest tree under `desc` into `out`, children before parents.
pub(super) async fn walk(
    source: &Source,
    desc: Descriptor,
    bytes: Bytes,
    out: &mut Vec<Node>,
    seen: &mut HashSet<Digest>,
    depth: usize,
) -> Result<()> {
    if depth > 8 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "indexes nested more than 8 deep",
        ));
    }
    if !seen.insert(desc.digest.clone()) {
        return Ok(());
    }
    let parsed = manifest::inspect(&bytes, Some(&desc.media_type)).map_err(|e| {
        Error::new(
            ErrorKind::Unsupported,
            format!("manifest {} ({}): {e}", desc.digest, desc.media_type),
        )
    })?;
    for child in &parsed.children {
        let child_bytes = source.manifest(child).await?;
        Box::pin(walk(
            source,
            child.clone(),
            child_bytes,
            out,
            seen,
            depth + 1,
        ))
        .await?;
    }
    out.push(Node {
        subject: parsed.subject.map(|s| s.digest),
        desc,
        bytes,
        blobs: parsed.blobs,
    });
    Ok(())
}
