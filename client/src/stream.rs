//! Byte streams of local blobs: a region of a file, and any stream counted for progress.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::progress::Progress;
use berth::body::ByteStream;
use berth::digest::Digest;

const READ_SIZE: usize = 256 * 1024;

/// `len` bytes of `path` from `offset` on. Fewer bytes than that is an error.
pub(crate) fn file_range(path: PathBuf, offset: u64, len: u64) -> ByteStream {
    struct St {
        path: PathBuf,
        file: Option<tokio::fs::File>,
        offset: u64,
        left: u64,
    }
    let st = St {
        path,
        file: None,
        offset,
        left: len,
    };
    Box::pin(stream::unfold(Some(st), |st| async move {
        let mut st = st?;
        if st.left == 0 {
            return None;
        }
        let result: io::Result<Bytes> = async {
            if st.file.is_none() {
                let mut f = tokio::fs::File::open(&st.path).await?;
                if st.offset > 0 {
                    f.seek(io::SeekFrom::Start(st.offset)).await?;
                }
                st.file = Some(f);
            }
            let f = st.file.as_mut().expect("opened");
            let want = (st.left as usize).min(READ_SIZE);
            let mut buf = BytesMut::zeroed(want);
            let n = f.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended early", st.path.display()),
                ));
            }
            buf.truncate(n);
            st.left -= n as u64;
            Ok(buf.freeze())
        }
        .await;
        match result {
            Ok(b) => Some((Ok(b), Some(st))),
            Err(e) => Some((Err(e), None)),
        }
    }))
}

/// Report every chunk that passes to `progress`.
pub(crate) fn counted(
    inner: ByteStream,
    digest: Digest,
    progress: Arc<dyn Progress>,
) -> ByteStream {
    Box::pin(inner.map(move |r| {
        if let Ok(b) = &r {
            progress.blob_bytes(&digest, b.len() as u64);
        }
        r
    }))
}
