//! The body type shared by requests, responses and storage.
//!
//! Blobs stream; they are never collected. A platform stream (an R2 object, a Workers request
//! body) can ride through the core untouched as a [`ForeignBody`]: the store or adapter that
//! understands it downcasts it, everyone else reads it as bytes.

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use http_body::{Frame, SizeHint};

use crate::MaybeSend;

/// A stream of byte chunks. An error ends it.
pub trait ByteSource: Stream<Item = io::Result<Bytes>> + MaybeSend {}
impl<T: Stream<Item = io::Result<Bytes>> + MaybeSend + ?Sized> ByteSource for T {}

pub type ByteStream = Pin<Box<dyn ByteSource>>;

/// A body owned by a platform adapter, passed through the core without copying.
#[allow(clippy::len_without_is_empty)] // an unknown length is not "empty"
pub trait ForeignBody: MaybeSend + 'static {
    /// Its length, when known.
    fn len(&self) -> Option<u64>;
    /// Read it as bytes (the slow path, for code that does not know the platform).
    fn into_stream(self: Box<Self>) -> ByteStream;
    /// Give it back to the code that knows its concrete type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

#[derive(Default)]
pub enum Body {
    #[default]
    Empty,
    Full(Bytes),
    Stream(ByteStream),
    /// A stream that brings exactly this many bytes or ends in an error (a body the core has
    /// checked against its `Content-Length`): a store may plan by its length.
    Exact(ByteStream, u64),
    Foreign(Box<dyn ForeignBody>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream"),
            Body::Exact(_, n) => write!(f, "Body::Exact({n} bytes)"),
            Body::Foreign(_) => f.write_str("Body::Foreign"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Full(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::Full(Bytes::from(b))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::Full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(b: &'static [u8]) -> Self {
        Body::Full(Bytes::from_static(b))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Full(Bytes::from(s))
    }
}

impl Body {
    pub fn stream(s: impl ByteSource + 'static) -> Self {
        Body::Stream(Box::pin(s))
    }

    /// A stream that brings exactly `len` bytes when `len` is known ([`Body::Exact`]): the
    /// caller has made sure it fails otherwise.
    pub fn exact(s: impl ByteSource + 'static, len: Option<u64>) -> Self {
        match len {
            Some(n) => Body::Exact(Box::pin(s), n),
            None => Body::Stream(Box::pin(s)),
        }
    }

    /// The exact length, when it is known without reading.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Full(b) => Some(b.len() as u64),
            Body::Stream(_) => None,
            Body::Exact(_, n) => Some(*n),
            Body::Foreign(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Every variant as a stream of chunks (foreign bodies take their slow path).
    pub fn into_stream(self) -> ByteStream {
        match self {
            Body::Empty => Box::pin(futures_util::stream::empty()),
            Body::Full(b) => Box::pin(futures_util::stream::once(async move { Ok(b) })),
            Body::Stream(s) | Body::Exact(s, _) => s,
            Body::Foreign(f) => f.into_stream(),
        }
    }

    /// Collect at most `limit` bytes. `Err(None)` means the body was longer than `limit`.
    pub async fn collect(self, limit: usize) -> Result<Bytes, Option<io::Error>> {
        use futures_util::StreamExt;
        if let Some(n) = self.len()
            && n > limit as u64
        {
            return Err(None);
        }
        if let Body::Full(b) = self {
            return Ok(b);
        }
        let mut stream = self.into_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(Some)?;
            if buf.len() + chunk.len() > limit {
                return Err(None);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            return match this {
                Body::Empty => Poll::Ready(None),
                Body::Full(b) => {
                    let b = std::mem::take(b);
                    *this = Body::Empty;
                    if b.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(b))))
                    }
                }
                Body::Stream(s) | Body::Exact(s, _) => match s.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => {
                        *this = Body::Empty;
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                },
                Body::Foreign(_) => {
                    let Body::Foreign(f) = std::mem::take(this) else {
                        unreachable!()
                    };
                    *this = Body::Stream(f.into_stream());
                    continue;
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Empty) || matches!(self, Body::Full(b) if b.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match self.len() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
