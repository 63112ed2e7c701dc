//! Request bodies of a push. A chunk's bytes stream from the source into its PATCH and are
//! kept (reference-counted, not copied) until the registry accepts it, so a resend replays
//! them without reading the source again. A source error is remembered, to tell it from
//! the registry's.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use crate::error::{Error, ErrorKind};
use berth::body::ByteStream;

/// Where a body keeps the error that ended its source.
#[derive(Clone, Default)]
pub(super) struct SourceError(Arc<Mutex<Option<Error>>>);

impl SourceError {
    pub fn take(&self) -> Option<Error> {
        lock(&self.0).take()
    }

    /// Remember `err` and hand it on as the body's error.
    fn set(&self, err: Error) -> io::Error {
        *lock(&self.0) = Some(err.clone());
        io::Error::other(err)
    }
}

/// The whole blob as one body, its source error kept in `error`.
pub(super) fn whole(inner: ByteStream, error: SourceError) -> reqwest::Body {
    reqwest::Body::wrap_stream(Watched { inner, error })
}

struct Watched {
    inner: ByteStream,
    error: SourceError,
}

impl Stream for Watched {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) => {
                let err = Error::io("reading the source", e);
                Poll::Ready(Some(Err(self.error.set(err))))
            }
            other => other,
        }
    }
}

/// The source of a chunked upload: its stream and the bytes read past the last chunk.
pub(super) struct Pump {
    stream: ByteStream,
    leftover: Option<Bytes>,
}

impl Pump {
    pub fn new(stream: ByteStream) -> Pump {
        Pump {
            stream,
            leftover: None,
        }
    }
}

/// One chunk: `want` bytes of the source, kept as they are read.
pub(super) struct Chunk {
    state: Arc<Mutex<ChunkState>>,
    error: SourceError,
}

struct ChunkState {
    pump: Option<Pump>,
    retained: Vec<Bytes>,
    filled: u64,
    want: u64,
}

impl Chunk {
    pub fn new(pump: Option<Pump>, want: u64) -> Chunk {
        let state = ChunkState {
            pump,
            retained: Vec::new(),
            filled: 0,
            want,
        };
        Chunk {
            state: Arc::new(Mutex::new(state)),
            error: SourceError::default(),
        }
    }

    /// A PATCH body from `pos` within the chunk: kept bytes first, then fresh ones.
    pub fn body(&self, pos: u64) -> reqwest::Body {
        reqwest::Body::wrap_stream(ChunkBody {
            state: self.state.clone(),
            error: self.error.clone(),
            pos,
            cursor: (0, 0),
        })
    }

    pub fn want(&self) -> u64 {
        lock(&self.state).want
    }

    /// How many of its bytes were read from the source so far.
    pub fn filled(&self) -> u64 {
        lock(&self.state).filled
    }

    pub fn source_error(&self) -> Option<Error> {
        self.error.take()
    }

    /// The source, for the next chunk.
    pub fn into_pump(self) -> Option<Pump> {
        lock(&self.state).pump.take()
    }
}

struct ChunkBody {
    state: Arc<Mutex<ChunkState>>,
    error: SourceError,
    /// Position within the chunk.
    pos: u64,
    /// (index into `retained`, offset within it) matching `pos`, while replaying.
    cursor: (usize, u64),
}

impl Stream for ChunkBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut st = lock(&this.state);
        let st = &mut *st;
        if this.pos < st.filled {
            // Replay: find the kept piece holding `pos`.
            let (mut i, mut base) = this.cursor;
            while base + st.retained[i].len() as u64 <= this.pos {
                base += st.retained[i].len() as u64;
                i += 1;
            }
            let piece = st.retained[i].slice((this.pos - base) as usize..);
            this.cursor = (i + 1, base + st.retained[i].len() as u64);
            this.pos += piece.len() as u64;
            return Poll::Ready(Some(Ok(piece)));
        }
        if st.filled >= st.want {
            return Poll::Ready(None);
        }
        let Some(pump) = st.pump.as_mut() else {
            return Poll::Ready(Some(Err(io::Error::other("the source is gone"))));
        };
        let bytes = match pump.leftover.take() {
            Some(b) => b,
            None => match pump.stream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(b))) => b,
                Poll::Ready(Some(Err(e))) => {
                    let err = Error::io("reading the source", e);
                    return Poll::Ready(Some(Err(this.error.set(err))));
                }
                Poll::Ready(None) => {
                    let err = Error::new(
                        ErrorKind::Digest,
                        format!("the source ended {} bytes early", st.want - st.filled),
                    );
                    return Poll::Ready(Some(Err(this.error.set(err))));
                }
            },
        };
        let room = (st.want - st.filled) as usize;
        let piece = if bytes.len() > room {
            let mut b = bytes;
            pump.leftover = Some(b.split_off(room));
            b
        } else {
            bytes
        };
        st.filled += piece.len() as u64;
        st.retained.push(piece.clone());
        this.pos = st.filled;
        this.cursor = (st.retained.len(), st.filled);
        Poll::Ready(Some(Ok(piece)))
    }
}

/// A poisoned lock still holds whole bytes: pieces are pushed after they are complete.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
