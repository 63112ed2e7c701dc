//! The HTTP side: one pooled reqwest client (rustls for HTTPS, plain HTTP for the hosts
//! allowed it), authentication on challenge ([`token`]), and retries with backoff on 429 and
//! 5xx. Knows hosts and URLs, not repositories.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use crate::auth::{self, Challenge, Keychain, Scheme, Tokens};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::api_host;

mod response;
mod token;

pub(crate) use response::{content_length, network_error, read_limited, status_error};
use response::{is_tls, retry_after};

/// How a [`Client`] connects and authenticates.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Plain HTTP for every registry (loopback and test registries).
    pub insecure: bool,
    /// Plain HTTP for these hosts (`host[:port]`) only.
    pub insecure_hosts: HashSet<String>,
    /// Where credentials come from.
    pub keychain: Keychain,
    /// Attempts after the first, for connection errors, 429 and 5xx.
    pub retries: u32,
    /// The first backoff; it doubles per attempt, up to 30 s, when no `Retry-After` says.
    pub backoff: Duration,
    /// The longest `Retry-After` honoured; longer ones fail instead of waiting.
    pub max_retry_after: Duration,
    pub connect_timeout: Duration,
    /// A read that stalls this long fails the request (and a pull resumes it).
    pub read_timeout: Duration,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            insecure_hosts: HashSet::new(),
            keychain: Keychain::default(),
            retries: 4,
            backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// A registry client: cheap to clone, shared by every repository and copy.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    options: ClientOptions,
    tokens: Tokens,
}

/// A body that can be made again for a retry.
pub(crate) type MakeBody<'a> = &'a (dyn Fn() -> reqwest::Body + Send + Sync);

/// One request as [`Client::send`] takes it.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: String,
    /// The registry host the request is for (auth is per host).
    pub host: &'a str,
    /// The token scopes the request needs.
    pub scopes: &'a [String],
    pub headers: HeaderMap,
    pub body: Option<MakeBody<'a>>,
    /// Whether sending it twice is harmless (retry on connection errors and 5xx).
    pub idempotent: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: String, host: &'a str, scopes: &'a [String]) -> Self {
        let idempotent = method != Method::POST && method != Method::PATCH;
        Request {
            method,
            url,
            host,
            scopes,
            headers: HeaderMap::new(),
            body: None,
            idempotent,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: MakeBody<'a>) -> Self {
        self.body = Some(body);
        self
    }
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(&options.user_agent)
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::new(ErrorKind::Usage, format!("setting up HTTPS: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                options,
                tokens: Tokens::default(),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// `http://host` when the host is allowed plain HTTP, else `https://host`.
    pub fn base_url(&self, host: &str) -> String {
        let o = &self.inner.options;
        if o.insecure || o.insecure_hosts.contains(host) {
            format!("http://{}", api_host(host))
        } else {
            format!("https://{}", api_host(host))
        }
    }

    /// How many tokens were fetched from token endpoints so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.inner.tokens.fetched.load(Ordering::Relaxed)
    }

    /// Send, authenticating on challenge and retrying what may be retried. Any status comes
    /// back except a 401 that credentials could not cure, which is an [`ErrorKind::Auth`].
    pub(crate) async fn send(&self, req: Request<'_>) -> Result<Response> {
        let o = &self.inner.options;
        let mut attempt = 0u32;
        let mut auth_rounds = 0u32;
        let mut scopes: Vec<String> = auth::merge_scopes(req.scopes);
        loop {
            let authorization = self.authorization(req.host, &scopes).await?;
            let mut rb = self
                .inner
                .http
                .request(req.method.clone(), &req.url)
                .headers(req.headers.clone());
            // Credentials go only to the registry itself: never to another host an upload
            // Location names, nor over plain HTTP when the registry speaks HTTPS.
            if let Some(a) = &authorization
                && same_origin(&self.base_url(req.host), &req.url)
            {
                rb = rb.header(AUTHORIZATION, a);
            }
            if let Some(make) = req.body {
                rb = rb.body(make());
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    // A refused connection never reached the server: always safe to repeat.
                    // A TLS failure will fail the same way again.
                    let safe = (req.idempotent || e.is_connect()) && !is_tls(&e);
                    if safe && attempt < o.retries {
                        tokio::time::sleep(self.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(network_error(req.host, &req.method, &req.url, &e));
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && auth_rounds < 2 {
                auth_rounds += 1;
                let challenge = resp
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(Challenge::parse)
                    // Bearer first when a registry offers both.
                    .max_by_key(|c| matches!(c, Challenge::Bearer { .. }));
                match challenge {
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scopes: wanted,
                    }) => {
                        self.inner
                            .tokens
                            .set_scheme(req.host, Scheme::Bearer { realm, service });
                        if let Some(sent) = &authorization {
                            // The token we sent was refused: maybe it expired, maybe the
                            // registry wants more scope. Fetch anew with its scopes too.
                            let sent = sent.strip_prefix("Bearer ").unwrap_or(sent);
                            self.inner.tokens.forget_if(req.host, &scopes, sent);
                        }
                        scopes = auth::merge_scopes(scopes.iter().chain(wanted.iter()));
                        continue;
                    }
                    Some(Challenge::Basic) if authorization.is_none() => {
                        self.inner.tokens.set_scheme(req.host, Scheme::Basic);
                        if self.authorization(req.host, &scopes).await?.is_some() {
                            continue;
                        }
                    }
                    _ => {}
                }
                return Err(self.unauthorized(req.host, &req.url, authorization.is_some()));
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(self.unauthorized(req.host, &req.url, true));
            }
            // 429 says the request was not processed; a 5xx may have been half done, which
            // only an idempotent request survives (uploads recover by asking the registry).
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || (req.idempotent && status.is_server_error() && status != 501);
            if retryable && attempt < o.retries {
                let wait = match retry_after(resp.headers()) {
                    Some(w) if w > o.max_retry_after => return Ok(resp),
                    Some(w) => w,
                    None => self.backoff(attempt),
                };
                drop(resp);
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Ok(resp);
        }
    }

    /// One read of `url` on the registry at `host` (`host[:port]`, the key for credentials and
    /// tokens) for a pull from `repo`, authenticated as any other; any status comes back.
    /// For code that speaks the protocol itself, such as a pull-through cache.
    pub async fn read(
        &self,
        method: Method,
        url: String,
        host: &str,
        repo: &str,
        accept: Option<&str>,
    ) -> Result<Response> {
        let scopes = [auth::scope(repo, false)];
        let mut req = Request::new(method, url, host, &scopes);
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        self.send(req).await
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.options.backoff;
        base.saturating_mul(1 << attempt.min(6))
            .min(Duration::from_secs(30))
    }
}

/// Whether `url` is on the registry at `base` (`scheme://host[:port]`): the same host and
/// port, and HTTPS unless the registry itself is plain HTTP.
fn same_origin(base: &str, url: &str) -> bool {
    let (Ok(base), Ok(url)) = (reqwest::Url::parse(base), reqwest::Url::parse(url)) else {
        return false;
    };
    let scheme_ok = url.scheme() == base.scheme() || url.scheme() == "https";
    scheme_ok
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
}

#[cfg(test)]
mod origin_tests {
    use super::same_origin;

    #[test]
    fn credentials_stay_on_the_registry() {
        let b = "https://reg.example";
        assert!(same_origin(
            b,
            "https://reg.example/v2/a/blobs/uploads/x?y=1"
        ));
        assert!(same_origin(b, "https://reg.example:443/v2/"));
        assert!(
            !same_origin(b, "http://reg.example/v2/a/blobs/uploads/x"),
            "downgrade"
        );
        assert!(!same_origin(
            b,
            "https://other.example/v2/a/blobs/uploads/x"
        ));
        assert!(!same_origin(b, "https://reg.example:8443/v2/"));
        assert!(!same_origin(b, "https://reg.example.evil/v2/"));
        assert!(!same_origin(b, "not a url"));
        let plain = "http://127.0.0.1:5000";
        assert!(same_origin(plain, "http://127.0.0.1:5000/v2/x"));
        assert!(!same_origin(plain, "http://127.0.0.1:5001/v2/x"));
        // An upgrade to HTTPS on the same host and port keeps them safe.
        assert!(same_origin(plain, "https://127.0.0.1:5000/v2/x"));
        assert!(
            !same_origin(plain, "https://127.0.0.1/v2/x"),
            "another port"
        );
    }
}
