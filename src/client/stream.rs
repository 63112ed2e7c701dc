//! Byte streams of blobs: from a registry (verified, resumed with `Range` when the connection
//! breaks), from a region of a file, and counted for progress.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::{Error, ErrorKind};
use super::progress::Progress;
use super::registry::Repository;
use crate::body::ByteStream;
use crate::digest::{BodyCheck, Digest, Hasher};
use crate::manifest::Descriptor;

/// Resumes without progress in between before a pull gives up.
const MAX_RESUMES: u32 = 8;

struct Fetch {
    repo: Repository,
    desc: Descriptor,
    offset: u64,
    /// Bytes still to drop from a response that ignored `Range` and started over.
    skip: u64,
    hasher: Option<Hasher>,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    failures: u32,
    done: bool,
    progress: Option<Arc<dyn Progress>>,
}

fn fail(e: Error) -> io::Error {
    io::Error::other(e)
}

/// A registry blob as a stream that ends in an error unless every byte arrived and the digest
/// and size match `desc`. A connection that breaks mid-blob is resumed from the last byte
/// received with `Range: bytes=N-`; the hash carries on across the break.
pub(crate) fn fetch(
    repo: Repository,
    desc: Descriptor,
    progress: Option<Arc<dyn Progress>>,
) -> ByteStream {
    let state = Fetch {
        hasher: Some(Hasher::new(desc.digest.algorithm())),
        repo,
        desc,
        offset: 0,
        skip: 0,
        body: None,
        failures: 0,
        done: false,
        progress,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let item = st.next().await;
        if !matches!(item, Some(Ok(_))) {
            st.done = true;
        }
        item.map(|i| (i, st))
    }))
}

impl Fetch {
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.body.is_none() {
                if self.offset >= self.desc.size {
                    return self.finish();
                }
                match self
                    .repo
                    .blob_response(&self.desc.digest, self.offset)
                    .await
                {
                    Ok(resp) => {
                        if self.offset > 0 && resp.status() != reqwest::StatusCode::PARTIAL_CONTENT
                        {
                            self.skip = self.offset;
                        }
                        self.body = Some(resp.bytes_stream().boxed());
                    }
                    Err(e) if e.kind() == ErrorKind::Network && self.failures < MAX_RESUMES => {
                        self.backoff().await;
                    }
                    Err(e) => return Some(Err(fail(e))),
                }
                continue;
            }
            let next = self.body.as_mut().expect("checked").next().await;
            match next {
                Some(Ok(mut b)) => {
                    if self.skip > 0 {
                        let n = self.skip.min(b.len() as u64);
                        self.skip -= n;
                        b = b.slice(n as usize..);
                        if b.is_empty() {
                            continue;
                        }
                    }
                    let len = b.len() as u64;
                    if self.offset + len > self.desc.size {
                        let check = BodyCheck::TooLong {
                            expected: self.desc.size,
                        };
                        return Some(Err(io::Error::new(io::ErrorKind::InvalidData, check)));
                    }
                    self.failures = 0;
                    self.offset += len;
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&b);
                    }
                    // Check at the last byte, not after it: an HTTP client stops reading a
                    // body at its Content-Length and would never ask for the end.
                    if self.offset == self.desc.size
                        && let Some(err) = self.finish()
                    {
                        return Some(err);
                    }
                    return Some(Ok(b));
                }
                Some(Err(e)) => {
                    self.body = None;
                    if self.failures >= MAX_RESUMES {
                        let e = super::transport::network_error(
                            self.repo.host(),
                            &reqwest::Method::GET,
                            &self.repo.url(&format!("blobs/{}", self.desc.digest)),
                            &e,
                        );
                        return Some(Err(fail(e)));
                    }
                    self.resumed(&e.to_string());
                    self.backoff().await;
                }
                None => {
                    self.body = None;
                    if self.offset < self.desc.size {
                        if self.failures >= MAX_RESUMES {
                            let check = BodyCheck::TooShort {
                                expected: self.desc.size,
                                got: self.offset,
                            };
                            return Some(Err(io::Error::new(io::ErrorKind::InvalidData, check)));
                        }
                        self.resumed("the response ended early");
                        self.backoff().await;
                    }
                }
            }
        }
    }

    fn resumed(&self, why: &str) {
        if let Some(p) = &self.progress {
            p.note(&format!(
                "{}: {why}; resuming at byte {}",
                short(&self.desc.digest),
                self.offset
            ));
        }
    }

    async fn backoff(&mut self) {
        let ms = 100u64 << self.failures.min(6);
        self.failures += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn finish(&mut self) -> Option<io::Result<Bytes>> {
        let actual = self.hasher.take()?.finish();
        if actual != self.desc.digest {
            let check = BodyCheck::DigestMismatch {
                expected: self.desc.digest.clone(),
                actual,
            };
            return Some(Err(io::Error::new(io::ErrorKind::InvalidData, check)));
        }
        None
    }
}

/// `sha256:0123456789ab`, for messages and bars.
pub fn short(d: &Digest) -> String {
    let hex = d.hex();
    format!("{}:{}", d.algorithm(), &hex[..hex.len().min(12)])
}

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

/// Check a stream against a descriptor. The digest is checked when the last byte arrives, and
/// a mismatch replaces that chunk with an error: a consumer that stops at the expected length
/// still sees it.
pub(crate) fn verified(inner: ByteStream, desc: &Descriptor) -> ByteStream {
    struct St {
        inner: ByteStream,
        hasher: Option<Hasher>,
        digest: Digest,
        size: u64,
        seen: u64,
    }
    let st = St {
        inner,
        hasher: Some(Hasher::new(desc.digest.algorithm())),
        digest: desc.digest.clone(),
        size: desc.size,
        seen: 0,
    };
    let invalid = |c: BodyCheck| io::Error::new(io::ErrorKind::InvalidData, c);
    Box::pin(stream::unfold(Some(st), move |st| async move {
        let mut st = st?;
        match st.inner.next().await {
            Some(Ok(b)) => {
                st.seen += b.len() as u64;
                if st.seen > st.size {
                    let check = BodyCheck::TooLong { expected: st.size };
                    return Some((Err(invalid(check)), None));
                }
                if let Some(h) = st.hasher.as_mut() {
                    h.update(&b);
                }
                if st.seen == st.size {
                    let actual = st.hasher.take().expect("once").finish();
                    if actual != st.digest {
                        let check = BodyCheck::DigestMismatch {
                            expected: st.digest.clone(),
                            actual,
                        };
                        return Some((Err(invalid(check)), None));
                    }
                }
                Some((Ok(b), Some(st)))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None if st.seen < st.size || st.hasher.is_some() && st.size == 0 => {
                if st.size == 0 {
                    let actual = st.hasher.take().expect("once").finish();
                    if actual != st.digest {
                        let check = BodyCheck::DigestMismatch {
                            expected: st.digest.clone(),
                            actual,
                        };
                        return Some((Err(invalid(check)), None));
                    }
                    return None;
                }
                let check = BodyCheck::TooShort {
                    expected: st.size,
                    got: st.seen,
                };
                Some((Err(invalid(check)), None))
            }
            None => None,
        }
    }))
}
