//! One error type for the client: what failed, of which kind, and what to do about it.

use std::fmt;

/// What kind of failure, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A reference, option or argument that cannot work; nothing was sent.
    Usage,
    /// The registry could not be reached, or the connection broke (after retries).
    Network,
    /// Authentication failed or is needed (401).
    Auth,
    /// Authenticated, but not allowed (403).
    Denied,
    /// The manifest, blob, repository or file does not exist.
    NotFound,
    /// Content did not match its digest or size.
    Digest,
    /// The registry answered with an error not covered above.
    Registry,
    /// The registry or source cannot do what was asked (e.g. a media type berth cannot copy).
    Unsupported,
    /// A local file or directory could not be read or written.
    Io,
}

/// A client error. `Display` gives what failed; [`Error::hint`] what to try.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    status: Option<u16>,
    code: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            hint: None,
            status: None,
            code: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, message)
    }

    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Error {
        // A client error that travelled inside a byte stream comes out as it went in.
        if e.get_ref().is_some_and(|i| i.is::<Error>()) {
            if let Ok(inner) = e.into_inner().expect("checked").downcast::<Error>() {
                return *inner;
            }
            unreachable!("checked the type");
        }
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else if let Some(check) = berth::digest::BodyCheck::find(&e) {
            return Error::new(ErrorKind::Digest, format!("{what}: {check}")).with_hint(
                "the source holds corrupt or truncated content; nothing was written for it",
            );
        } else {
            ErrorKind::Io
        };
        Error::new(kind, format!("{what}: {e}"))
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn with_status(mut self, status: u16, code: Option<String>) -> Error {
        self.status = Some(status);
        self.code = code;
        self
    }

    /// Prefix the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The HTTP status the registry answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The OCI error code (`MANIFEST_UNKNOWN`, `DENIED`, ...) from the registry's body, if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
