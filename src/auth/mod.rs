//! Access control in front of [`crate::Registry::handle`]: who the caller is (Basic against the
//! policy's users, or a Bearer JWT), what the request needs (from its route), and the Docker
//! token endpoint that issues those JWTs.
//!
//! Decisions come from the policy and the token alone, before any storage is read, so answers
//! never depend on whether a repository exists.

pub mod challenge;
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
pub use challenge::Challenge;
use jwt::{Claims, Key};
use password::PasswordHash;
pub use policy::PolicyError;
use policy::{Policy, PolicyFile, Subject};
use scope::{Actions, Need};

/// Seconds a verified Basic login is remembered, so that Basic-only clients do not pay the
/// password hash on every request.
const LOGIN_MEMORY: u64 = 300;
const LOGIN_MEMORY_ENTRIES: usize = 1024;
/// Failed logins one client address, or one user name, may make in `FAILURE_WINDOW` seconds;
/// past it, Basic credentials are refused (429) without hashing until the window ends.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: u64 = 60;
const FAILURE_ENTRIES: usize = 4096;

/// The client's address: adapters put it in the request's extensions, so that failed logins
/// are counted per address. A request without it is counted per user only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub std::net::IpAddr);

/// A Basic login the adapter has already checked off its reactor ([`Auth::verify_basic`]); it
/// goes in the request's extensions, and only this module can make one.
#[derive(Clone, Debug)]
pub struct Verified {
    memo: [u8; 32],
    ok: bool,
}

/// Who the request is from, as access control identified it: `Auth::check` puts it in the
/// request's extensions, and upload sessions are bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(pub String);

/// Why a caller could not be identified.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// Bad credentials.
    Invalid,
    /// Too many failed logins lately, from this address or for this user.
    Throttled,
}

fn throttled() -> RegistryError {
    RegistryError::new(
        Code::TooManyRequests,
        "too many failed logins; try again later",
    )
    .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("60"))
}

/// The remembered-login key: the user's length first, so that no two (user, password) pairs
/// share the hashed text, whatever bytes the name holds.
fn memo_key(user: &str, pass: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((user.len() as u64).to_be_bytes());
    h.update(user.as_bytes());
    h.update(pass.as_bytes());
    h.finalize().into()
}

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
    /// Failed logins by `ip:ADDR` and `user:NAME`: the window's start and the count in it.
    failures: Mutex<HashMap<String, (u64, u32)>>,
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
#[derive(Debug, Clone)]
enum Caller {
    /// No `Authorization` header.
    Nobody,
    /// Basic with an empty user and password, as some clients send when they have none.
    Anonymous,
    User(String),
    Token(Claims),
}

/// The caller of an extension request, as the check identified it, for the endpoint to filter
/// what it shows (a request extension).
#[derive(Debug, Clone)]
pub(crate) struct Visitor(Caller);

/// The `signing_key` must be at least this long; `berth auth gen-key` prints 64 hex digits.
pub const MIN_KEY_LEN: usize = 32;

impl Auth {
    /// Parse a policy file without building anything (the native server reads
    /// `signing_key_file` from it first).
    pub fn parse(text: &str) -> Result<PolicyFile, PolicyError> {
        PolicyFile::parse(text).map_err(PolicyError::Syntax)
    }

    /// The policy in `text`, with `signing_key` (at least 32 bytes) for the built-in issuer.
    pub fn new(text: &str, signing_key: &[u8]) -> Result<Auth, PolicyError> {
        Auth::from_file(Auth::parse(text)?, signing_key)
    }

    pub fn from_file(file: PolicyFile, signing_key: &[u8]) -> Result<Auth, PolicyError> {
        if signing_key.len() < MIN_KEY_LEN {
            return Err(PolicyError::ShortKey { min: MIN_KEY_LEN });
        }
        let policy = Policy::from_file(&file)?;
        let plain = |what: &str, v: &str| {
            if v.is_empty() || v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
                Err(PolicyError::invalid(
                    format!("{what} {v:?}"),
                    "empty, or has quotes or control characters",
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
            return Err(PolicyError::invalid(
                format!("token_path {token_path:?}"),
                "must start with / and not with /v2",
            ));
        }
        plain("token_path", &token_path)?;
        let basic_only = match file.challenge.as_deref().unwrap_or("bearer") {
            "bearer" => false,
            "basic" => true,
            other => {
                return Err(PolicyError::invalid(
                    format!("challenge = {other:?}"),
                    "expected bearer or basic",
                ));
            }
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
                return Err(PolicyError::invalid(
                    format!("key {}", k.kid),
                    format!("alg {:?} (only ES256)", k.alg),
                ));
            }
            if keys.iter().any(|have| have.kid() == k.kid) {
                return Err(PolicyError::invalid(
                    format!("key {}", k.kid),
                    "another key has this kid",
                ));
            }
            keys.push(Key::es256_pem(&k.kid, &k.issuer, &k.public_key)?);
        }
        Ok(Auth {
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
            dummy: PasswordHash::new(
                "",
                b"berth-dummy-salt",
                policy
                    .max_iterations()
                    .unwrap_or(password::DEFAULT_ITERATIONS),
            ),
            policy,
            logins: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the policy names the token endpoint's URL (`realm`); without it, challenges
    /// build it from each request's `Host`.
    pub fn realm_configured(&self) -> bool {
        self.realm.is_some()
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
            Err(Refused::Throttled) => return Err(throttled()),
            Err(Refused::Invalid) => {
                return Err(self.challenge(parts, &need, Some("invalid_token")));
            }
        };
        let principal = match &caller {
            Caller::User(u) => Some(format!("{}:{u}", self.issuer)),
            Caller::Token(c) if !c.sub.is_empty() => Some(format!("{}:{}", c.iss, c.sub)),
            _ => None,
        };
        parts.extensions.remove::<Principal>();
        if let Some(p) = principal {
            parts.extensions.insert(Principal(p));
        }
        let allowed = match &need {
            Need::Nothing => true,
            Need::Login => !matches!(caller, Caller::Nobody),
            Need::Browse => true,
            Need::Catalog => self.catalog(&caller),
            Need::Repo { name, actions } => self.actions(&caller, name.as_str()).contains(*actions),
        };
        if allowed {
            if let Caller::User(n) | Caller::Token(Claims { sub: n, .. }) = &caller
                && !n.is_empty()
            {
                parts.extensions.insert(crate::events::Actor(n.clone()));
            }
            let (uploads, berth) = (
                matches!(route, Route::Uploads { .. }),
                matches!(route, Route::Berth(_)),
            );
            if uploads && parts.method == Method::POST {
                self.limit_mount(parts, &caller);
            }
            if berth {
                parts.extensions.insert(Visitor(caller));
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

    /// What a visitor the check let through may do to `name`: the same answer the API's
    /// check gives for each action.
    pub(crate) fn visitor_actions(&self, visitor: &Visitor, name: &str) -> Actions {
        self.actions(&visitor.0, name)
    }

    fn identify(&self, parts: &Parts, now: u64) -> Result<Caller, Refused> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(Caller::Nobody);
        };
        let bad = |()| Refused::Invalid;
        let value = value.to_str().map_err(|_| Refused::Invalid)?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or(()).map_err(bad)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, pass) = basic(rest).ok_or(()).map_err(bad)?;
            if user.is_empty() && pass.is_empty() {
                return Ok(Caller::Anonymous);
            }
            let peer = parts.extensions.get::<Peer>().copied();
            let verified = parts.extensions.get::<Verified>();
            self.login(&user, &pass, now, peer, verified)?;
            Ok(Caller::User(user))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            jwt::verify(rest, &self.keys, &self.service, now, self.skew)
                .map(Caller::Token)
                .map_err(|_| Refused::Invalid)
        } else {
            Err(Refused::Invalid)
        }
    }

    /// Whether the login `(user, pass)` was verified within the last few minutes.
    fn remembered(&self, memo: &[u8; 32], now: u64) -> bool {
        let logins = self.logins.lock().unwrap_or_else(|p| p.into_inner());
        logins.get(memo).is_some_and(|&until| now < until)
    }

    /// The password check itself: the user's hash, or for an unknown user a dummy hash of the
    /// same cost.
    fn check_password(&self, user: &str, pass: &str) -> bool {
        match self.policy.password_hash(user) {
            Some(hash) => hash.verify(pass),
            None => {
                let _ = self.dummy.verify(pass);
                false
            }
        }
    }

    /// For adapters with a thread pool: check a request's Basic login there, so that the hash
    /// does not hold up the reactor; put the result in the request's extensions. `None` when
    /// there is nothing to hash (no Basic login, an anonymous one, one remembered, or one that
    /// will be refused unhashed because of throttling).
    pub fn verify_basic(
        &self,
        headers: &http::HeaderMap,
        peer: Option<Peer>,
        now: u64,
    ) -> Option<Verified> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
        let (scheme, rest) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let (user, pass) = basic(rest.trim())?;
        let memo = memo_key(&user, &pass);
        if (user.is_empty() && pass.is_empty())
            || self.remembered(&memo, now)
            || self.is_throttled(&user, peer, now)
        {
            return None;
        }
        let ok = self.check_password(&user, &pass);
        Some(Verified { memo, ok })
    }

    fn failure_keys(user: &str, peer: Option<Peer>) -> impl Iterator<Item = String> {
        std::iter::once(format!("user:{user}")).chain(peer.map(|p| format!("ip:{}", p.0)))
    }

    fn is_throttled(&self, user: &str, peer: Option<Peer>, now: u64) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        Self::failure_keys(user, peer).any(|k| {
            failures
                .get(&k)
                .is_some_and(|&(start, n)| now < start + FAILURE_WINDOW && n >= MAX_FAILURES)
        })
    }

    fn record_failure(&self, user: &str, peer: Option<Peer>, now: u64) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= FAILURE_ENTRIES {
            failures.retain(|_, (start, _)| now < *start + FAILURE_WINDOW);
            if failures.len() >= FAILURE_ENTRIES {
                failures.clear();
            }
        }
        for k in Self::failure_keys(user, peer) {
            let e = failures.entry(k).or_insert((now, 0));
            if now >= e.0 + FAILURE_WINDOW {
                *e = (now, 0);
            }
            e.1 = e.1.saturating_add(1);
        }
    }

    /// Check a password, remembering success for a few minutes and counting failures.
    fn login(
        &self,
        user: &str,
        pass: &str,
        now: u64,
        peer: Option<Peer>,
        verified: Option<&Verified>,
    ) -> Result<(), Refused> {
        let memo = memo_key(user, pass);
        if self.remembered(&memo, now) {
            return Ok(());
        }
        if self.is_throttled(user, peer, now) {
            return Err(Refused::Throttled);
        }
        let ok = match verified {
            Some(v) if v.memo == memo => v.ok,
            _ => self.check_password(user, pass),
        };
        if !ok {
            self.record_failure(user, peer, now);
            return Err(Refused::Invalid);
        }
        let mut logins = self.logins.lock().unwrap_or_else(|p| p.into_inner());
        if logins.len() >= LOGIN_MEMORY_ENTRIES {
            logins.retain(|_, until| now < *until);
            if logins.len() >= LOGIN_MEMORY_ENTRIES {
                logins.clear();
            }
        }
        logins.insert(memo, now + LOGIN_MEMORY);
        Ok(())
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
