//! File work for the stores: blocking calls moved off the runtime, and streams in large chunks
//! so that memory stays flat whatever the blob size.

use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::direct::{self, DirectSink};
use berth::body::ByteStream;
use berth::storage::{Result, StorageError};

/// Bytes per read or write call: large enough to amortise the hop to a blocking thread.
pub(crate) const CHUNK: usize = 1 << 20;
/// While a file is written, a data sync starts in the background after this many bytes, so
/// that the disk keeps pace and the fsync that ends the write finds little left to do.
const SYNC_EVERY: u64 = 32 << 20;

/// Run blocking file work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::other(format!("blocking task: {e}")))?
}

/// An I/O error and the path it happened on: the cause the log shows.
#[derive(Debug)]
pub(crate) struct PathError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// An I/O failure as a store error, with the path it concerns. NotFound stays NotFound.
pub(crate) fn io_err(e: io::Error, path: &Path) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound
    } else {
        other(e, path)
    }
}

/// An I/O failure whatever its kind: the disk is failing or full, or the root is not ours to
/// write. It may pass, so clients are told to try again (503).
pub(crate) fn other(e: io::Error, path: &Path) -> StorageError {
    StorageError::unavailable(PathError {
        path: path.to_owned(),
        source: e,
    })
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
        seeked: false,
    })
}

type ReadResult = (File, io::Result<Bytes>);

struct FileRead {
    file: Option<File>,
    pending: Option<JoinHandle<ReadResult>>,
    position: u64,
    end: u64,
    /// The file's cursor is at `position` (it is ours alone: reads go in order).
    seeked: bool,
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
        let seek = (!self.seeked).then_some(self.position);
        self.seeked = true;
        self.position += n as u64;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let r = read_next(&file, seek, n);
            (file, r)
        }));
    }
}

/// The next `n` bytes from the file's cursor (moved to `seek` first, if given), into memory
/// that is not zeroed first: read_to_end fills spare capacity directly.
fn read_next(mut file: &File, seek: Option<u64>, n: usize) -> io::Result<Bytes> {
    if let Some(at) = seek {
        file.seek(io::SeekFrom::Start(at))?;
    }
    let mut buf = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut buf)?;
    if buf.len() != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
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

/// Where [`copy`] writes.
pub(crate) enum Target {
    /// A file, at its current position.
    Plain(File),
    /// A file opened by [`direct::open`] with `O_DIRECT`, at an aligned `position`.
    Direct {
        file: File,
        path: PathBuf,
        position: u64,
    },
}

impl Target {
    /// The file at `path`, opened for writing at `position`: direct where the filesystem
    /// allows it and the position is aligned.
    pub fn open(path: &Path, create: bool, position: u64) -> io::Result<Target> {
        if position.is_multiple_of(direct::ALIGN as u64) {
            let (file, is_direct) = direct::open(path, create)?;
            if is_direct {
                return Ok(Target::Direct {
                    file,
                    path: path.to_owned(),
                    position,
                });
            }
            return Target::plain(file, position);
        }
        let file = if create {
            File::create_new(path)?
        } else {
            std::fs::OpenOptions::new().write(true).open(path)?
        };
        Target::plain(file, position)
    }

    fn plain(mut file: File, position: u64) -> io::Result<Target> {
        file.seek(io::SeekFrom::Start(position))?;
        Ok(Target::Plain(file))
    }
}

enum AnySink {
    Plain(Sink),
    Direct(DirectSink),
}

impl AnySink {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            AnySink::Plain(s) => s.write(data).await,
            AnySink::Direct(s) => s.write(&data).await,
        }
    }

    async fn finish(self) -> io::Result<File> {
        match self {
            AnySink::Plain(s) => s.finish().await,
            AnySink::Direct(s) => s.finish().await,
        }
    }

    async fn settle(self) -> Option<File> {
        match self {
            AnySink::Plain(s) => s.settle().await,
            AnySink::Direct(s) => s.settle().await,
        }
    }
}

/// Stream `body` into `target`. Returns the file and the byte count; on failure the file too
/// (when it survived), with no write still in flight.
pub(crate) async fn copy(
    mut body: ByteStream,
    target: Target,
) -> std::result::Result<(File, u64), (CopyError, Option<File>)> {
    let mut sink = match target {
        Target::Plain(file) => AnySink::Plain(Sink::new(file)),
        Target::Direct {
            file,
            path,
            position,
        } => AnySink::Direct(DirectSink::new(file, path, position)),
    };
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let step = match chunk {
            Ok(chunk) => {
                written += chunk.len() as u64;
                sink.write(chunk).await.map_err(CopyError::Write)
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

type WriteResult = (File, Vec<Bytes>, io::Result<()>);

/// Writes to a file off the runtime: one batch being written while the next fills. A batch is
/// the body's own chunks, written with one writev, so the bytes are not copied on the way.
/// Every [`SYNC_EVERY`] bytes a data sync starts in the background.
struct Sink {
    file: Option<File>,
    pending: Option<JoinHandle<WriteResult>>,
    batch: Vec<Bytes>,
    batched: usize,
    spare: Option<Vec<Bytes>>,
    unsynced: u64,
    syncing: Option<JoinHandle<()>>,
}

impl Sink {
    fn new(file: File) -> Sink {
        Sink {
            file: Some(file),
            pending: None,
            batch: Vec::new(),
            batched: 0,
            spare: None,
            unsynced: 0,
            syncing: None,
        }
    }

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        // An empty slice would make writev report 0 bytes, which reads as a failed write.
        if data.is_empty() {
            return Ok(());
        }
        self.batched += data.len();
        self.batch.push(data);
        if self.batched >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Wait for the write in flight, if any.
    async fn wait(&mut self) -> io::Result<()> {
        if let Some(pending) = self.pending.take() {
            let (file, mut batch, r) = pending.await.map_err(io::Error::other)?;
            batch.clear();
            self.spare = Some(batch);
            let dup = (self.unsynced >= SYNC_EVERY
                && self.syncing.as_ref().is_none_or(|s| s.is_finished()))
            .then(|| file.try_clone().ok())
            .flatten();
            self.file = Some(file);
            r?;
            if let Some(dup) = dup {
                self.unsynced = 0;
                // Errors surface in the fsync that ends the write; this one only gets ahead.
                self.syncing = Some(tokio::task::spawn_blocking(move || {
                    let _ = dup.sync_data();
                }));
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.wait().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("file lost"))?;
        let next = self.spare.take().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batch, next);
        self.unsynced += self.batched as u64;
        self.batched = 0;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let r = write_all(&mut file, &batch);
            (file, batch, r)
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

/// Write every chunk, in order, with as few writev calls as the kernel allows.
fn write_all(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
