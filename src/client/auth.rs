//! Credentials and tokens: where a username and password come from (flags, environment,
//! docker and podman auth files, credential helpers), the `WWW-Authenticate` challenge, and
//! the Bearer token flow with a cache per host and scope.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::error::{Error, ErrorKind, Result};

/// A secret for one registry, and where it came from (for error messages).
#[derive(Clone)]
pub struct Credential {
    pub secret: Secret,
    /// "--username", "BERTH_USERNAME", "/root/.docker/config.json", ...
    pub source: String,
}

#[derive(Clone)]
pub enum Secret {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in docker's config), traded at the realm.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = match &self.secret {
            Secret::Basic { username, .. } => username.as_str(),
            Secret::IdentityToken(_) => "<identity token>",
        };
        write!(f, "Credential({user} from {})", self.source)
    }
}

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
            (Ok(username), Ok(password)) if !username.is_empty() => Some(Credential {
                secret: Secret::Basic { username, password },
                source: "BERTH_USERNAME and BERTH_PASSWORD".into(),
            }),
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
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
    fn find(&self, host: &str, file: &str) -> Result<Option<Credential>> {
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
                return Ok(Some(Credential {
                    secret: Secret::Basic {
                        username: u.to_owned(),
                        password: p.to_owned(),
                    },
                    source,
                }));
            }
            if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                return Ok(Some(Credential {
                    secret: Secret::Basic {
                        username: u.clone(),
                        password: p.clone(),
                    },
                    source,
                }));
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
    let source = program;
    Ok(Some(Credential {
        secret: if r.username == "<token>" {
            Secret::IdentityToken(r.secret)
        } else {
            Secret::Basic {
                username: r.username,
                password: r.secret,
            }
        },
        source,
    }))
}

/// A parsed `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scopes: Vec<String>,
    },
}

impl Challenge {
    /// `Bearer realm="...",service="...",scope="a b"` or `Basic realm="..."`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Some(Challenge::Bearer {
                realm: get("realm")?,
                service: get("service"),
                scopes: params
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("scope"))
                    .flat_map(|(_, v)| v.split(' ').map(str::to_owned))
                    .filter(|s| !s.is_empty())
                    .collect(),
            })
        } else {
            None
        }
    }
}

/// `k="v", k2=v2`, with backslash escapes inside quotes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

/// `repository:NAME:pull` or `repository:NAME:pull,push`.
pub fn scope(name: &str, push: bool) -> String {
    if push {
        format!("repository:{name}:pull,push")
    } else {
        format!("repository:{name}:pull")
    }
}

/// Merge scopes: one entry per resource, actions united, sorted (a stable cache key).
pub fn merge_scopes<'a>(scopes: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut by_resource: Vec<(String, Vec<String>)> = Vec::new();
    for s in scopes {
        let (resource, actions) = match s.rsplit_once(':') {
            Some((r, a)) => (r.to_owned(), a),
            None => (s.clone(), ""),
        };
        let entry = match by_resource.iter_mut().find(|(r, _)| *r == resource) {
            Some(e) => e,
            None => {
                by_resource.push((resource, Vec::new()));
                by_resource.last_mut().expect("just pushed")
            }
        };
        for a in actions.split(',').filter(|a| !a.is_empty()) {
            if !entry.1.iter().any(|x| x == a) {
                entry.1.push(a.to_owned());
            }
        }
    }
    let mut out: Vec<String> = by_resource
        .into_iter()
        .map(|(r, mut a)| {
            a.sort();
            format!("{r}:{}", a.join(","))
        })
        .collect();
    out.sort();
    out
}

/// What a host wants, learned from its first challenge.
#[derive(Clone, Debug)]
pub(crate) enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: String,
    expires: Instant,
}

/// Per-host schemes and the token cache, shared by every request of a [`super::Client`].
#[derive(Default)]
pub(crate) struct Tokens {
    schemes: Mutex<HashMap<String, Scheme>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
    /// How many tokens were fetched (tests read it).
    pub fetched: std::sync::atomic::AtomicU64,
    /// Held while a token is fetched.
    pub fetching: tokio::sync::Mutex<()>,
}

/// Tokens this close to expiry are renewed before use.
const EXPIRY_MARGIN: Duration = Duration::from_secs(20);

impl Tokens {
    pub fn scheme(&self, host: &str) -> Option<Scheme> {
        self.schemes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned()
    }

    pub fn set_scheme(&self, host: &str, scheme: Scheme) {
        self.schemes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_owned(), scheme);
    }

    pub fn cached(&self, host: &str, scopes: &[String]) -> Option<String> {
        let key = (host.to_owned(), scopes.join(" "));
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&key)
            .filter(|t| t.expires > Instant::now() + EXPIRY_MARGIN)
            .map(|t| t.value.clone())
    }

    pub fn store(&self, host: &str, scopes: &[String], value: String, lifetime: Duration) {
        let key = (host.to_owned(), scopes.join(" "));
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key,
                Token {
                    value,
                    expires: Instant::now() + lifetime,
                },
            );
    }

    /// Drop the cached token for the scopes if it is still `value` (another task may have
    /// replaced it already).
    pub fn forget_if(&self, host: &str, scopes: &[String], value: &str) {
        let key = (host.to_owned(), scopes.join(" "));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.get(&key).is_some_and(|t| t.value == value) {
            tokens.remove(&key);
        }
    }
}

/// The token endpoint's answer.
#[derive(Deserialize)]
pub(crate) struct TokenReply {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub expires_in: Option<u64>,
}

impl TokenReply {
    pub fn value(self) -> Option<(String, Duration)> {
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(30));
        self.token
            .or(self.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| (t, lifetime))
    }
}

pub(crate) fn basic_header(username: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{username}:{password}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push repository:c:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scopes: vec![
                    "repository:a/b:pull,push".into(),
                    "repository:c:pull".into()
                ],
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://x/t"),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: None,
                scopes: vec![]
            })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None, "no realm");
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn scopes_merge() {
        let s = [
            "repository:b:pull".to_owned(),
            "repository:a:push".to_owned(),
            "repository:a:pull".to_owned(),
            "repository:a:pull".to_owned(),
        ];
        assert_eq!(
            merge_scopes(&s),
            vec!["repository:a:pull,push", "repository:b:pull"]
        );
    }

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
