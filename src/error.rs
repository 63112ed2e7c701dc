//! OCI error codes and the one way an error becomes a response.

use http::{HeaderName, HeaderValue, Response, StatusCode, header};

use crate::body::Body;

/// The error codes of the distribution spec (plus UNKNOWN for the server's own failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Docker's code for an `n` that is not a count (400); the spec has none of its own.
    PaginationNumberInvalid,
    /// Docker's code for a registry that cannot serve now (its storage is down): 503.
    Unavailable,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// The status the code has unless the endpoint says otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error as the client will see it.
#[derive(Debug)]
pub struct RegistryError {
    pub code: Code,
    pub status: StatusCode,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong inside, for the log; never sent to the client.
    pub internal: Option<String>,
}

/// Attached to a response's extensions when the server failed, so adapters can log it.
#[derive(Clone, Debug)]
pub struct InternalError(pub String);

impl RegistryError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            status: code.status(),
            message: message.into(),
            headers: Vec::new(),
            internal: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A failure of the server, not the client: the detail goes to the log, not the response.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let mut e = RegistryError::new(Code::Unknown, "internal error");
        e.internal = Some(detail.to_string());
        e
    }

    /// The storage behind the registry failed in a way that may pass: 503 with `Retry-After`;
    /// the cause goes to the log.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        let mut e = RegistryError::new(Code::Unavailable, "storage is unavailable; try again")
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"));
        e.internal = Some(detail.to_string());
        e
    }

    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": null }]
        });
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            h.append(name, value);
        }
        if let Some(detail) = self.internal {
            resp.extensions_mut().insert(InternalError(detail));
        }
        resp
    }
}
