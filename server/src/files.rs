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

use berth::body::ByteStream;
use berth::storage::{Result, StorageError};

/// Bytes per read or write call: large enough to amortise the hop to a blocking thread.
pub(crate) const CHUNK: usize = 1 << 20;
/// While a file is written, writeback of what was written starts after this many bytes
/// (`sync_file_range`, which commits no metadata, unlike a data sync), so that the disk keeps
/// pace and the fsync that ends the write finds little left to do. The pages stay cached: a
/// blob pulled right after its push is read from memory.
const WRITEBACK_EVERY: u64 = 8 << 20;

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

/// Where [`copy`] writes: a file, at a position.
pub(crate) struct Target {
    file: File,
    position: u64,
}

impl Target {
    /// The file at `path` (created if `create`, else existing), opened for writing at
    /// `position`.
    pub fn open(path: &Path, create: bool, position: u64) -> io::Result<Target> {
        let mut file = if create {
            File::create_new(path)?
        } else {
            std::fs::OpenOptions::new().write(true).open(path)?
        };
        file.seek(io::SeekFrom::Start(position))?;
        Ok(Target { file, position })
    }
}

/// Stream `body` into `target`. Returns the file and the byte count; on failure the file too
/// (when it survived), with no write still in flight.
pub(crate) async fn copy(
    mut body: ByteStream,
    target: Target,
) -> std::result::Result<(File, u64), (CopyError, Option<File>)> {
    let mut sink = Sink::new(target.file, target.position);
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
/// the body's own chunks, written with one writev, so the bytes are not copied on the way (and
/// a small body costs no buffer of its own). Every [`WRITEBACK_EVERY`] bytes, writeback starts.
struct Sink {
    file: Option<File>,
    pending: Option<JoinHandle<WriteResult>>,
    batch: Vec<Bytes>,
    batched: usize,
    spare: Option<Vec<Bytes>>,
    /// The file offset where the batch goes.
    position: u64,
    /// Writeback has been started for the bytes before this offset.
    written_back: u64,
}

impl Sink {
    fn new(file: File, position: u64) -> Sink {
        Sink {
            file: Some(file),
            pending: None,
            batch: Vec::new(),
            batched: 0,
            spare: None,
            position,
            written_back: position,
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
            self.file = Some(file);
            r?;
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
        self.position += self.batched as u64;
        self.batched = 0;
        let mut writeback = None;
        if self.position - self.written_back >= WRITEBACK_EVERY {
            writeback = Some((self.written_back, self.position));
            self.written_back = self.position;
        }
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let r = write_all(&mut file, &batch);
            if let (Ok(()), Some((from, to))) = (&r, writeback) {
                start_writeback(&file, from, to);
            }
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

/// Start writing `[from, to)` of `file` to the disk, without waiting for it and without
/// evicting it from the page cache. Errors are left to the fsync that ends the write.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return;
    };
    // SAFETY: a plain system call on a descriptor that `file` keeps open for its duration; it
    // touches no memory of ours.
    let _ =
        unsafe { libc::sync_file_range(file.as_raw_fd(), from, len, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _from: u64, _to: u64) {}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies in uneven pieces, past several writeback points, at offset 0 and after a prefix,
    /// read back exactly.
    #[tokio::test]
    async fn copies_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * WRITEBACK_EVERY as usize + 5000)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for (i, len) in [0, 1, CHUNK - 1, CHUNK + 1, data.len()]
            .into_iter()
            .enumerate()
        {
            for prefix in [0usize, 4097] {
                let path = dir.path().join(format!("f{i}-{prefix}"));
                std::fs::write(&path, vec![9u8; prefix]).unwrap();
                let pieces: Vec<io::Result<Bytes>> = data[..len]
                    .chunks(70_001)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                let body: ByteStream = Box::pin(futures_util::stream::iter(pieces));
                let target = Target::open(&path, false, prefix as u64).unwrap();
                let (file, n) = copy(body, target).await.ok().unwrap();
                file.sync_all().unwrap();
                assert_eq!(n, len as u64);
                let got = std::fs::read(&path).unwrap();
                assert_eq!(got.len(), prefix + len, "{len} after {prefix}");
                assert!(got[..prefix].iter().all(|&b| b == 9));
                assert!(got[prefix..] == data[..len], "{len} after {prefix}");
            }
        }
    }
}
