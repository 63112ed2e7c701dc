//! Checking content against its digest and size. Streams pass through the core's
//! [`Checked`], which fails in place of the last chunk, so nothing reading them (a file, a
//! request body) ends without the verdict; bytes already in memory are hashed whole.

use berth::body::ByteStream;
use berth::digest::{Checked, Digest};
use berth::manifest::Descriptor;

use crate::error::{Error, ErrorKind, Result};

/// `inner`, failing unless it is exactly `desc.size` bytes of digest `desc.digest`.
pub(crate) fn stream(inner: ByteStream, desc: &Descriptor) -> ByteStream {
    Box::pin(Checked::digest(inner, desc.digest.clone(), Some(desc.size)))
}

/// Check bytes read whole: their digest, and their length when `size` is known.
pub(crate) fn bytes(what: &str, bytes: &[u8], expected: &Digest, size: Option<u64>) -> Result<()> {
    let actual = Digest::of(expected.algorithm(), bytes);
    if &actual != expected {
        return Err(mismatch(what, expected, &actual));
    }
    match size {
        Some(size) if size != bytes.len() as u64 => Err(Error::new(
            ErrorKind::Digest,
            format!("{what}: {} bytes, expected {size}", bytes.len()),
        )
        .with_hint(CORRUPT)),
        _ => Ok(()),
    }
}

const CORRUPT: &str = "the source served corrupt or different content; nothing was written for it";

pub(crate) fn mismatch(what: &str, expected: &Digest, actual: &Digest) -> Error {
    Error::new(
        ErrorKind::Digest,
        format!("{what}: content has digest {actual}, expected {expected}"),
    )
    .with_hint(CORRUPT)
}
