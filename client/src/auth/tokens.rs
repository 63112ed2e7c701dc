//! What each host wants (Basic or Bearer) and the Bearer token cache, per host and scope.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;

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

/// Per-host schemes and the token cache, shared by every request of a client.
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
        lock(&self.schemes).get(host).cloned()
    }

    pub fn set_scheme(&self, host: &str, scheme: Scheme) {
        lock(&self.schemes).insert(host.to_owned(), scheme);
    }

    pub fn cached(&self, host: &str, scopes: &[String]) -> Option<String> {
        lock(&self.tokens)
            .get(&key(host, scopes))
            .filter(|t| t.expires > Instant::now() + EXPIRY_MARGIN)
            .map(|t| t.value.clone())
    }

    pub fn store(&self, host: &str, scopes: &[String], value: String, lifetime: Duration) {
        let expires = Instant::now() + lifetime;
        lock(&self.tokens).insert(key(host, scopes), Token { value, expires });
    }

    /// Drop the cached token for the scopes if it is still `value` (another task may have
    /// replaced it already).
    pub fn forget_if(&self, host: &str, scopes: &[String], value: &str) {
        let key = key(host, scopes);
        let mut tokens = lock(&self.tokens);
        if tokens.get(&key).is_some_and(|t| t.value == value) {
            tokens.remove(&key);
        }
    }
}

fn key(host: &str, scopes: &[String]) -> (String, String) {
    (host.to_owned(), scopes.join(" "))
}

/// A poisoned map is still a good cache: a panic elsewhere leaves no half-written entry.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
