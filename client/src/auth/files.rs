//! docker `config.json` and containers `auth.json` files, and the credential helpers they
//! name.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::credential::{Credential, Secret};
use crate::error::{Error, Result};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// `https://host/v1/`, `host`, `http://host` all name `host`; Docker Hub has aliases.
fn normalize_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    }
}

impl AuthFile {
    pub(super) fn find(&self, host: &str, file: &str) -> Result<Option<Credential>> {
        let wanted = normalize_key(host);
        if let Some(helper) = self
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_key(k) == wanted)
            .map(|(_, v)| v)
        {
            return helper_get(helper, host);
        }
        for (key, entry) in &self.auths {
            if normalize_key(key) != wanted {
                continue;
            }
            let source = file.to_owned();
            if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
                return Ok(Some(Credential {
                    secret: Secret::IdentityToken(token.clone()),
                    source,
                }));
            }
            if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
                let decoded = B64
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                    return Err(Error::usage(format!(
                        "the auth entry for {key} in {file} is not base64 of user:password"
                    ))
                    .with_hint(format!("log in again: docker login {host}")));
                };
                return Ok(Some(Credential::basic(u.into(), p.into(), source)));
            }
            if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                return Ok(Some(Credential::basic(u.clone(), p.clone(), source)));
            }
        }
        match &self.creds_store {
            Some(store) if !store.is_empty() => helper_get(store, host),
            _ => Ok(None),
        }
    }
}

/// Ask `docker-credential-<helper> get`; "not found" is no credential.
fn helper_get(helper: &str, host: &str) -> Result<Option<Credential>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let server = if normalize_key(host) == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    let child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child =
        match child {
            Ok(c) => c,
            Err(e) => {
                return Err(Error::io(format!("running {program}"), e).with_hint(format!(
                "the auth file names the credential helper {helper:?}: install {program} or \
                 remove it from the file"
            )));
            }
        };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("running {program}"), e))?;
    if !out.status.success() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Reply {
        username: String,
        secret: String,
    }
    let r: Reply = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::usage(format!("{program} answered something unreadable: {e}")))?;
    if r.username == "<token>" {
        let secret = Secret::IdentityToken(r.secret);
        let source = program;
        return Ok(Some(Credential { secret, source }));
    }
    Ok(Some(Credential::basic(r.username, r.secret, program)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_files() {
        let file: AuthFile = serde_json::from_str(
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},
                "127.0.0.1:5000":{"username":"x","password":"y"},
                "tok.example":{"auth":"","identitytoken":"rt"}}}"#,
        )
        .unwrap();
        let basic = |c: Option<Credential>| match c.map(|c| c.secret) {
            Some(Secret::Basic { username, password }) => Some((username, password)),
            _ => None,
        };
        assert_eq!(
            basic(file.find("docker.io", "f").unwrap()),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(
            basic(file.find("127.0.0.1:5000", "f").unwrap()),
            Some(("x".into(), "y".into()))
        );
        assert!(matches!(
            file.find("tok.example", "f").unwrap().map(|c| c.secret),
            Some(Secret::IdentityToken(t)) if t == "rt"
        ));
        assert!(file.find("other", "f").unwrap().is_none());
    }
}
