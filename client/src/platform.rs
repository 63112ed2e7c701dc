//! Platforms (`os/architecture[/variant]`) and picking one image from an index.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::media::index_entries;
use berth::manifest::Descriptor;

/// `os/architecture[/variant]`, e.g. `linux/arm64` or `linux/arm/v7`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_owned(),
                architecture: arch.to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()),
            }),
            _ => Err(Error::usage(format!(
                "{s:?} is not a platform: write OS/ARCH[/VARIANT], e.g. linux/arm64"
            ))),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl Platform {
    /// Whether an index entry's `platform` object is this platform. A variant not asked for
    /// matches any; `arm64` without a variant is `v8`.
    pub fn matches(&self, p: &Value) -> bool {
        let get = |k: &str| p.get(k).and_then(Value::as_str);
        if get("os") != Some(self.os.as_str()) || get("architecture") != Some(&self.architecture) {
            return false;
        }
        match (&self.variant, get("variant")) {
            (None, _) => true,
            (Some(want), Some(v)) => want == v,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }

    /// The platform of an index entry (or an image config), as text.
    pub fn describe(p: &Value) -> String {
        let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?");
        match p.get("variant").and_then(Value::as_str) {
            Some(v) => format!("{}/{}/{v}", get("os"), get("architecture")),
            None => format!("{}/{}", get("os"), get("architecture")),
        }
    }

    /// The entry of an index for this platform.
    pub(crate) fn pick(&self, index: &[u8]) -> Result<Descriptor> {
        let v: Value = serde_json::from_slice(index)
            .map_err(|e| Error::new(ErrorKind::Unsupported, format!("unreadable index: {e}")))?;
        let list = index_entries(&v);
        let found = list
            .iter()
            .find(|m| m.get("platform").is_some_and(|p| self.matches(p)));
        match found {
            Some(m) => serde_json::from_value(m.clone())
                .map_err(|e| Error::new(ErrorKind::Unsupported, format!("index entry: {e}"))),
            None => {
                let have: Vec<String> = list
                    .iter()
                    .filter_map(|m| m.get("platform"))
                    .map(Platform::describe)
                    .collect();
                Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no image for platform {self} in the index"),
                )
                .with_hint(format!("its platforms: {}", have.join(", "))))
            }
        }
    }
}
