//! Access control in front of [`crate::Registry::handle`]: who the caller is (Basic against the
//! policy's users, or a Bearer JWT), what the request needs (from its route), and the Docker
//! token endpoint that issues those JWTs.
//!
//! Decisions come from the policy and the token alone, before any storage is read, so answers
//! never depend on whether a repository exists.

pub mod jwt;
pub mod password;
pub mod policy;
pub mod scope;
mod token;

use std::collections::HashMap;
use std::sync::Mutex;

use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, Method};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};

use crate::error::{Code, RegistryError};
use crate::route::{self, Route};
use jwt::{Claims, Key};
use password::PasswordHash;
use policy::{Policy, PolicyFile, Subject};
use scope::{Actions, Need};

/// Seconds a verified Basic login is remembered, so that Basic-only clients do not pay the
/// password hash on every request.
const LOGIN_MEMORY: u64 = 300;
const LOGIN_MEMORY_ENTRIES: usize = 1024;

/// The policy, the keys, and the token settings.
pub struct Auth {
    policy: Policy,
    /// The built-in issuer's key first, then external issuers' keys.
    keys: Vec<Key>,
    secret: Vec<u8>,
    kid: String,
    service: String,
    issuer: String,
    realm: Option<String>,
    token_path: String,
    token_ttl: u64,
    skew: u64,
    basic_only: bool,
    /// Hashed against for unknown users, so that timing does not tell which users exist.
    dummy: PasswordHash,
    logins: Mutex<HashMap<[u8; 32], u64>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Auth(service {:?}, {} keys)",
            self.service,
            self.keys.len()
        )
    }
}

/// Who sent a request.
#[derive(Debug)]
enum Caller {
    /// No `Authorization` header.
    Nobody,
    /// Basic with an empty user and password, as some clients send when they have none.
    Anonymous,
    User(String),
    Token(Claims),
}

/// The `signing_key` must be at least this long; `berth auth gen-key` prints 64 hex digits.
pub const MIN_KEY_LEN: usize = 32;

impl Auth {
    /// Parse a policy file without building anything (the native server reads
    /// `signing_key_file` from it first).
    pub fn parse(text: &str) -> Result<PolicyFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The policy in `text`, with `signing_key` (at least 32 bytes) for the built-in issuer.
    pub fn new(text: &str, signing_key: &[u8]) -> Result<Auth, String> {
        Auth::from_file(Auth::parse(text)?, signing_key)
    }

    pub fn from_file(file: PolicyFile, signing_key: &[u8]) -> Result<Auth, String> {
        if signing_key.len() < MIN_KEY_LEN {
            return Err(format!(
                "the signing key must be at least {MIN_KEY_LEN} bytes (berth auth gen-key)"
            ));
        }
        let policy = Policy::from_file(&file)?;
        let plain = |what: &str, v: &str| {
            if v.is_empty() || v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
                Err(format!(
                    "{what} {v:?}: empty, or has quotes or control characters"
                ))
            } else {
                Ok(())
            }
        };
        let service = file.service.clone().unwrap_or_else(|| "berth".into());
        let issuer = file.issuer.clone().unwrap_or_else(|| "berth".into());
        plain("service", &service)?;
        plain("issuer", &issuer)?;
        if let Some(r) = &file.realm {
            plain("realm", r)?;
        }
        let token_path = file.token_path.clone().unwrap_or_else(|| "/token".into());
        if !token_path.starts_with('/') || token_path.starts_with("/v2") {
            return Err(format!(
                "token_path {token_path:?} must start with / and not with /v2"
            ));
        }
        plain("token_path", &token_path)?;
        let basic_only = match file.challenge.as_deref().unwrap_or("bearer") {
            "bearer" => false,
            "basic" => true,
            other => return Err(format!("challenge = {other:?}: expected bearer or basic")),
        };
        let digest = Sha256::digest(signing_key);
        let kid = format!(
            "berth-{}",
            digest[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let mut keys = vec![Key::Hs256 {
            kid: kid.clone(),
            issuer: issuer.clone(),
            secret: signing_key.to_vec(),
        }];
        for k in &file.keys {
            if k.alg != "ES256" {
                return Err(format!("key {}: alg {:?} (only ES256)", k.kid, k.alg));
            }
            if keys.iter().any(|have| have.kid() == k.kid) {
                return Err(format!("two keys with kid {:?}", k.kid));
            }
            keys.push(Key::es256_pem(&k.kid, &k.issuer, &k.public_key)?);
        }
        Ok(Auth {
            policy,
            keys,
            secret: signing_key.to_vec(),
            kid,
            service,
            issuer,
            realm: file.realm,
            token_path,
            token_ttl: file.token_ttl.unwrap_or(3600).max(60),
            skew: file.clock_skew.unwrap_or(60),
            basic_only,
            dummy: PasswordHash::new("", b"berth-dummy-salt", password::DEFAULT_ITERATIONS),
            logins: Mutex::new(HashMap::new()),
        })
    }

    pub fn token_path(&self) -> &str {
        &self.token_path
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// The `kid` of tokens this registry issues.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Let the request through, or say why not. A cross-repository mount from a repository the
    /// caller may not pull becomes a plain upload (the spec's fallback), so it neither leaks
    /// nor fails.
    pub(crate) fn check(&self, parts: &mut Parts, now: u64) -> Result<(), RegistryError> {
        let route = route::parse(parts.uri.path());
        let need = scope::need(route, &parts.method);
        if need == Need::Nothing {
            return Ok(());
        }
        let caller = match self.identify(parts, now) {
            Ok(c) => c,
            Err(()) => return Err(self.challenge(parts, &need, Some("invalid_token"))),
        };
        let allowed = match &need {
            Need::Nothing => true,
            Need::Login => !matches!(caller, Caller::Nobody),
            Need::Catalog => self.catalog(&caller),
            Need::Repo { name, actions } => self.actions(&caller, name.as_str()).contains(*actions),
        };
        if allowed {
            if matches!(route, Route::Uploads { .. }) && parts.method == Method::POST {
                self.limit_mount(parts, &caller);
            }
            return Ok(());
        }
        match &caller {
            Caller::Nobody | Caller::Anonymous => Err(self.challenge(parts, &need, None)),
            Caller::Token(c) if c.sub.is_empty() => Err(self.challenge(parts, &need, None)),
            // The user may do it but asked the token endpoint for less: ask again.
            Caller::Token(c)
                if c.iss == self.issuer && self.policy.has_user(&c.sub) && {
                    let user = Caller::User(c.sub.clone());
                    match &need {
                        Need::Catalog => self.catalog(&user),
                        Need::Repo { name, actions } => {
                            self.actions(&user, name.as_str()).contains(*actions)
                        }
                        _ => false,
                    }
                } =>
            {
                Err(self.challenge(parts, &need, Some("insufficient_scope")))
            }
            _ => Err(RegistryError::new(
                Code::Denied,
                "requested access to the resource is denied",
            )),
        }
    }

    fn identify(&self, parts: &Parts, now: u64) -> Result<Caller, ()> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(Caller::Nobody);
        };
        let value = value.to_str().map_err(|_| ())?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or(())?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, pass) = basic(rest).ok_or(())?;
            if user.is_empty() && pass.is_empty() {
                Ok(Caller::Anonymous)
            } else if self.login(&user, &pass, now) {
                Ok(Caller::User(user))
            } else {
                Err(())
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            jwt::verify(rest, &self.keys, &self.service, now, self.skew)
                .map(Caller::Token)
                .map_err(|_| ())
        } else {
            Err(())
        }
    }

    /// Check a password, remembering success for a few minutes.
    fn login(&self, user: &str, pass: &str, now: u64) -> bool {
        let mut h = Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(pass.as_bytes());
        let memo: [u8; 32] = h.finalize().into();
        {
            let logins = self.logins.lock().unwrap_or_else(|p| p.into_inner());
            if logins.get(&memo).is_some_and(|&until| now < until) {
                return true;
            }
        }
        let ok = match self.policy.password_hash(user) {
            Some(hash) => hash.verify(pass),
            None => {
                let _ = self.dummy.verify(pass);
                false
            }
        };
        if ok {
            let mut logins = self.logins.lock().unwrap_or_else(|p| p.into_inner());
            if logins.len() >= LOGIN_MEMORY_ENTRIES {
                logins.retain(|_, until| now < *until);
                if logins.len() >= LOGIN_MEMORY_ENTRIES {
                    logins.clear();
                }
            }
            logins.insert(memo, now + LOGIN_MEMORY);
        }
        ok
    }

    fn subject<'a>(caller: &'a Caller) -> Subject<'a> {
        match caller {
            Caller::User(u) => Subject::User(u),
            _ => Subject::Anonymous,
        }
    }

    fn actions(&self, caller: &Caller, name: &str) -> Actions {
        match caller {
            Caller::Token(c) => c
                .access
                .iter()
                .filter(|a| a.kind == "repository" && a.name == name)
                .flat_map(|a| a.actions.iter())
                .filter_map(|a| Actions::parse_one(a))
                .fold(Actions::NONE, Actions::union),
            other => self.policy.actions(Auth::subject(other), name),
        }
    }

    fn catalog(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Token(c) => c.access.iter().any(|a| {
                a.kind == "registry" && a.name == "catalog" && a.actions.iter().any(|x| x == "*")
            }),
            other => self.policy.catalog(Auth::subject(other)),
        }
    }

    /// Drop `mount` and `from` from an upload POST unless the caller may pull `from`. A mount
    /// with no `from` (from anywhere) is never honoured: it would reach other repositories.
    fn limit_mount(&self, parts: &mut Parts, caller: &Caller) {
        let Some(query) = parts.uri.query() else {
            return;
        };
        let q = crate::query::Query::parse(Some(query));
        if q.get("mount").is_none() {
            return;
        }
        let may = q
            .get("from")
            .filter(|f| f.parse::<crate::RepoName>().is_ok())
            .is_some_and(|from| self.actions(caller, from).contains(Actions::PULL));
        if may {
            return;
        }
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                !matches!(crate::query::decode(key).as_ref(), "mount" | "from")
            })
            .collect();
        let path = parts.uri.path();
        let pq = if kept.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query = pq.parse().ok();
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
    }

    /// 401 with the challenge for exactly `need`.
    fn challenge(&self, parts: &Parts, need: &Need, error: Option<&str>) -> RegistryError {
        let value = if self.basic_only {
            format!("Basic realm=\"{}\"", self.service)
        } else {
            let mut v = format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                self.realm(parts),
                self.service
            );
            if let Some(scope) = need.scope() {
                v.push_str(&format!(",scope=\"{scope}\""));
            }
            if let Some(e) = error {
                v.push_str(&format!(",error=\"{e}\""));
            }
            v
        };
        let value = HeaderValue::from_str(&value)
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"berth\""));
        RegistryError::new(Code::Unauthorized, "authentication required")
            .with_header(WWW_AUTHENTICATE, value)
    }

    /// The token endpoint's absolute URL: configured, or this request's scheme and host.
    fn realm(&self, parts: &Parts) -> String {
        if let Some(r) = &self.realm {
            return r.clone();
        }
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                let h = parts.headers.get(HOST)?.to_str().ok()?;
                Some(h.to_owned())
            })
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b".-:[]_".contains(&c))
            })
            .unwrap_or_else(|| "localhost".into());
        let https = parts.uri.scheme_str() == Some("https")
            || parts
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        let scheme = if https { "https" } else { "http" };
        format!("{scheme}://{host}{}", self.token_path)
    }
}

/// `base64(user:password)`.
fn basic(encoded: &str) -> Option<(String, String)> {
    let bytes = B64.decode(encoded).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}
