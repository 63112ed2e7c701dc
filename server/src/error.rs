//! Why `berth serve` or `berth auth` cannot go on: said once, plainly, before exiting.

use std::fmt;
use std::io;
use std::path::PathBuf;

use berth::auth::PolicyError;

#[derive(Debug)]
pub enum Error {
    /// A setting that cannot be used: which one, and what is wrong with it.
    Setting { what: String, problem: String },
    /// A file, a socket or the OS failed us: what we were doing, and how it failed.
    Io { what: String, source: io::Error },
    /// The access policy does not load.
    Policy { path: PathBuf, source: PolicyError },
}

impl Error {
    pub fn setting(what: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::Setting {
            what: what.into(),
            problem: problem.into(),
        }
    }

    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Setting { what, problem } => write!(f, "{what}: {problem}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Policy { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Setting { .. } => None,
            Error::Io { source, .. } => Some(source),
            Error::Policy { source, .. } => Some(source),
        }
    }
}

/// A flag or setting value that does not parse: the value, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value {:?} (expected {})",
            self.value, self.expected
        )
    }
}

impl std::error::Error for BadValue {}
