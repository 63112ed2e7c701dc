//! Platform streams riding through the core untouched.

use std::any::Any;

use berth::{Body, ByteStream, ForeignBody};

/// A JavaScript `ReadableStream` (a request body, an R2 object body) as a [`Body::Foreign`].
/// The R2 store puts it into R2 as it is; the adapter hands it to the `Response` as it is.
/// Anything else reads it through [`crate::js::read_stream`], in large chunks.
pub struct JsBody {
    pub stream: web_sys::ReadableStream,
    /// Known for request bodies with a `Content-Length` and for R2 objects. R2 refuses a stream
    /// of unknown length, so only a body with a length is handed to it directly.
    pub len: Option<u64>,
}

impl ForeignBody for JsBody {
    fn len(&self) -> Option<u64> {
        self.len
    }

    fn into_stream(self: Box<Self>) -> ByteStream {
        crate::js::read_stream(&self.stream)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl JsBody {
    pub fn body(stream: web_sys::ReadableStream, len: Option<u64>) -> Body {
        Body::Foreign(Box::new(JsBody { stream, len }))
    }

    /// The platform stream inside `body`, if it is one; the body back otherwise.
    pub fn take(body: Body) -> Result<JsBody, Body> {
        match body {
            Body::Foreign(f) => f
                .into_any()
                .downcast::<JsBody>()
                .map(|js| *js)
                .map_err(|_| {
                    // Only this adapter makes foreign bodies, and only `JsBody`s; another kind cannot
                    // be read once `into_any` has consumed it.
                    let err = std::io::Error::other("a foreign body of an unknown kind");
                    Body::stream(futures_util::stream::iter([Err(err)]))
                }),
            other => Err(other),
        }
    }
}
