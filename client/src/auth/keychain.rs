//! Where credentials come from: explicit ones (flags, environment) and auth files.

use std::collections::HashMap;
use std::path::PathBuf;

use super::credential::Credential;
use super::files::AuthFile;
use crate::error::{Error, ErrorKind, Result};

/// Where to look for credentials, first match wins: the explicit ones, then each auth file.
#[derive(Clone, Debug, Default)]
pub struct Keychain {
    /// For every host (`--username`/`--password`, `BERTH_USERNAME`/`BERTH_PASSWORD`).
    pub everywhere: Option<Credential>,
    /// For one host each (`host[:port]` as in the reference).
    pub hosts: HashMap<String, Credential>,
    /// docker `config.json` or containers `auth.json` files, in order.
    pub files: Vec<PathBuf>,
}

impl Keychain {
    /// The auth files docker and podman use, in podman's order of preference:
    /// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/...`),
    /// `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`).
    pub fn default_files() -> Vec<PathBuf> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = env("HOME");
        let mut files = Vec::new();
        files.extend(env("REGISTRY_AUTH_FILE"));
        if let Some(d) = env("XDG_RUNTIME_DIR") {
            files.push(d.join("containers/auth.json"));
        }
        if let Some(d) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")))
        {
            files.push(d.join("containers/auth.json"))
        }
        if let Some(d) = env("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
            files.push(d.join("config.json"))
        }
        files
    }

    /// The default files, and `BERTH_USERNAME` with `BERTH_PASSWORD` for every host.
    pub fn from_env() -> Keychain {
        let everywhere = match (
            std::env::var("BERTH_USERNAME"),
            std::env::var("BERTH_PASSWORD"),
        ) {
            (Ok(username), Ok(password)) if !username.is_empty() => Some(Credential::basic(
                username,
                password,
                "BERTH_USERNAME and BERTH_PASSWORD",
            )),
            _ => None,
        };
        Keychain {
            everywhere,
            hosts: HashMap::new(),
            files: Keychain::default_files(),
        }
    }

    /// The credential for `host`, if any. A file that exists but cannot be read is an error.
    pub fn lookup(&self, host: &str) -> Result<Option<Credential>> {
        if let Some(c) = self.hosts.get(host) {
            return Ok(Some(c.clone()));
        }
        if let Some(c) = &self.everywhere {
            return Ok(Some(c.clone()));
        }
        for file in &self.files {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("reading {}", file.display()), e)),
            };
            let parsed: AuthFile = serde_json::from_str(&text).map_err(|e| {
                Error::new(
                    ErrorKind::Usage,
                    format!("{} is not a valid auth file: {e}", file.display()),
                )
                .with_hint("fix or remove it, or log in again with `docker login`")
            })?;
            if let Some(c) = parsed.find(host, &file.display().to_string())? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}
