//! The endpoints. Each is a method on `Registry` named after what it does, with its spec id.

mod blobs;
mod browse;
mod lists;
mod manifests;
mod mirror;
mod references;
mod uploads;

pub(crate) use browse::Viewer;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};

use crate::body::Body;
use crate::digest::{BodyCheck, Digest, DigestError};
use crate::error::{Code, RegistryError};
use crate::names::RepoName;
use crate::registry::Result;
use crate::storage::StorageError;

pub(crate) fn repo(name: &str) -> Result<RepoName> {
    name.parse()
        .map_err(|()| RegistryError::new(Code::NameInvalid, "invalid repository name"))
}

pub(crate) fn digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e: DigestError| RegistryError::new(Code::DigestInvalid, e.to_string()))
}

pub(crate) fn header(req: &Parts, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's `Content-Length`, if it sent a valid one.
pub(crate) fn content_length(req: &Parts) -> Result<Option<u64>> {
    match header(req, http::header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| RegistryError::new(Code::SizeInvalid, "invalid Content-Length")),
    }
}

/// Map a store's error where the endpoint gave it no meaning of its own.
pub(crate) fn store_err(e: StorageError) -> RegistryError {
    match e {
        StorageError::ReadOnly => {
            RegistryError::new(Code::Unsupported, "this repository is read-only")
        }
        StorageError::Body(e) => body_err(&e),
        e @ StorageError::Unavailable(_) => RegistryError::unavailable(e),
        other => RegistryError::internal(other),
    }
}

/// A request body that failed on its way to the store.
pub(crate) fn body_err(e: &std::io::Error) -> RegistryError {
    match BodyCheck::find(e) {
        Some(c @ BodyCheck::DigestMismatch { .. }) => {
            RegistryError::new(Code::DigestInvalid, c.to_string())
        }
        Some(c @ BodyCheck::TooLarge { .. }) => {
            RegistryError::new(Code::SizeInvalid, c.to_string())
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        }
        Some(c) => RegistryError::new(Code::SizeInvalid, c.to_string()),
        None => RegistryError::new(
            Code::BlobUploadInvalid,
            format!("reading the request body failed: {e}"),
        ),
    }
}

/// A response under construction. Header values come from validated input, so an invalid one
/// is dropped rather than allowed to panic.
pub(crate) struct Reply(Response<Body>);

impl Reply {
    pub fn new(status: StatusCode) -> Reply {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = status;
        Reply(r)
    }

    pub fn header(
        mut self,
        name: impl http::header::IntoHeaderName,
        value: impl AsRef<str>,
    ) -> Reply {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.0.headers_mut().append(name, v);
        }
        self
    }

    /// An empty body with `Content-Length: 0`.
    pub fn empty(self) -> Response<Body> {
        self.header(http::header::CONTENT_LENGTH, "0").0
    }

    pub fn body(mut self, body: Body) -> Response<Body> {
        *self.0.body_mut() = body;
        self.0
    }

    pub fn json(self, value: &serde_json::Value) -> Response<Body> {
        let text = value.to_string();
        self.header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, text.len().to_string())
            .body(Body::from(text))
    }
}

/// Whether `If-None-Match` names this entity tag.
pub(crate) fn not_modified(req: &Parts, etag: &str) -> bool {
    req.headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .map(str::trim)
                    .any(|t| t == etag || t == "*" || t.strip_prefix("W/") == Some(etag))
            })
        })
}
