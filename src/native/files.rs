//! File work for the stores: blocking calls moved off the runtime, and streams in large chunks
//! so that memory stays flat whatever the blob size.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::body::ByteStream;
use crate::storage::{Result, StorageError};

/// Bytes per read or write call: large enough to amortise the hop to a blocking thread.
pub(crate) const CHUNK: usize = 1 << 20;

/// Run blocking file work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::other(format!("blocking task: {e}")))?
}

/// An I/O failure as a store error, with the path it concerns. NotFound stays NotFound.
pub(crate) fn io_err(e: io::Error, path: &Path) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound
    } else {
        other(e, path)
    }
}

/// An I/O failure that is the store's fault whatever its kind.
pub(crate) fn other(e: io::Error, path: &Path) -> StorageError {
    StorageError::Other(format!("{}: {e}", path.display()))
}

/// Make a directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `dir` and any missing parents, making each new entry durable in its parent.
pub(crate) fn make_dirs(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        make_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent.unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a temporary file when dropped, unless kept: a failed or cancelled write leaves
/// nothing behind.
pub(crate) struct TempFile(Option<PathBuf>);

impl TempFile {
    pub fn new(path: PathBuf) -> TempFile {
        TempFile(Some(path))
    }

    /// The file was renamed into place (or removed): nothing to clean up.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // A single unlink; not worth a trip to the blocking pool.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Reads `[start, end)` of a file in chunks, one chunk read ahead while the last is sent.
pub(crate) fn read_range(file: File, start: u64, end: u64) -> ByteStream {
    Box::pin(FileRead {
        file: Some(file),
        pending: None,
        position: start,
        end,
    })
}

type ReadResult = (File, io::Result<Bytes>);

struct FileRead {
    file: Option<File>,
    pending: Option<JoinHandle<ReadResult>>,
    position: u64,
    end: u64,
}

impl FileRead {
    fn start_read(&mut self) {
        if self.position >= self.end {
            return;
        }
        let Some(file) = self.file.take() else {
            return;
        };
        let n = (self.end - self.position).min(CHUNK as u64) as usize;
        let at = self.position;
        self.position += n as u64;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let r = read_at(&file, at, n);
            (file, r)
        }));
    }
}

fn read_at(file: &File, at: u64, n: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, at)?;
    Ok(Bytes::from(buf))
}

impl Stream for FileRead {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            this.start_read();
        }
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let joined = ready!(Pin::new(pending).poll(cx));
        this.pending = None;
        match joined {
            Ok((file, Ok(bytes))) => {
                this.file = Some(file);
                this.start_read();
                Poll::Ready(Some(Ok(bytes)))
            }
            Ok((_, Err(e))) => {
                this.position = this.end;
                Poll::Ready(Some(Err(e)))
            }
            Err(e) => {
                this.position = this.end;
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
        }
    }
}

/// Read a whole small file (metadata, manifests), off the runtime.
pub(crate) fn read_small(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(buf)
}

/// Why a copy into a file stopped.
pub(crate) enum CopyError {
    /// The body failed: its error, passed through unchanged.
    Body(io::Error),
    /// Writing the file failed.
    Write(io::Error),
}

/// Stream `body` into `file` at its current position. Returns the file and the byte count; on
/// failure the file too (when it survived), with no write still in flight.
pub(crate) async fn copy(
    mut body: ByteStream,
    file: File,
) -> std::result::Result<(File, u64), (CopyError, Option<File>)> {
    let mut sink = Sink::new(file);
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let step = match chunk {
            Ok(chunk) => {
                written += chunk.len() as u64;
                sink.write(&chunk).await.map_err(CopyError::Write)
            }
            Err(e) => Err(CopyError::Body(e)),
        };
        if let Err(e) = step {
            return Err((e, sink.settle().await));
        }
    }
    match sink.finish().await {
        Ok(file) => Ok((file, written)),
        Err(e) => Err((CopyError::Write(e), None)),
    }
}

type WriteResult = (File, Vec<u8>, io::Result<()>);

/// Writes to a file off the runtime: one buffer being written while the next fills.
struct Sink {
    file: Option<File>,
    pending: Option<JoinHandle<WriteResult>>,
    buf: Vec<u8>,
    spare: Option<Vec<u8>>,
}

impl Sink {
    fn new(file: File) -> Sink {
        Sink {
            file: Some(file),
            pending: None,
            buf: Vec::with_capacity(CHUNK),
            spare: None,
        }
    }

    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Wait for the write in flight, if any.
    async fn wait(&mut self) -> io::Result<()> {
        if let Some(pending) = self.pending.take() {
            let (file, mut buf, r) = pending.await.map_err(io::Error::other)?;
            self.file = Some(file);
            buf.clear();
            self.spare = Some(buf);
            r?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.wait().await?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("file lost"))?;
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK));
        let buf = std::mem::replace(&mut self.buf, next);
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let r = file.write_all(&buf);
            (file, buf, r)
        }));
        Ok(())
    }

    async fn finish(mut self) -> io::Result<File> {
        self.flush().await?;
        self.wait().await?;
        self.file.ok_or_else(|| io::Error::other("file lost"))
    }

    /// After a failure: let the write in flight land, and give the file back.
    async fn settle(mut self) -> Option<File> {
        let _ = self.wait().await;
        self.file
    }
}
