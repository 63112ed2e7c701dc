//! The HTTP side: one pooled reqwest client (rustls for HTTPS, plain HTTP for the hosts
//! allowed it), authentication on challenge, and retries with backoff on 429 and 5xx.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::auth::{self, Challenge, Keychain, Scheme, Secret, Tokens};
use super::error::{Error, ErrorKind, Result};
use super::reference::api_host;
use super::registry::Repository;
use crate::names::RepoName;

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

    /// A repository on a registry: `host` is `host[:port]` as in a reference.
    pub fn repository(&self, host: &str, name: RepoName) -> Repository {
        Repository::new(self.clone(), host.to_owned(), name)
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
            if let Some(a) = &authorization {
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

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.inner.options.backoff;
        base.saturating_mul(1 << attempt.min(6))
            .min(Duration::from_secs(30))
    }

    /// The `Authorization` value for a request to `host` with `scopes`: a cached token, a new
    /// one (`fetch`, or whenever the host is known to want Bearer), or Basic credentials.
    async fn authorization(&self, host: &str, scopes: &[String]) -> Result<Option<String>> {
        let tokens = &self.inner.tokens;
        match tokens.scheme(host) {
            None => Ok(None),
            Some(Scheme::Basic) => {
                Ok(self
                    .inner
                    .options
                    .keychain
                    .lookup(host)?
                    .and_then(|c| match c.secret {
                        Secret::Basic { username, password } => {
                            Some(auth::basic_header(&username, &password))
                        }
                        Secret::IdentityToken(_) => None,
                    }))
            }
            Some(Scheme::Bearer { realm, service }) => {
                if let Some(t) = tokens.cached(host, scopes) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                // One fetch at a time: blobs in flight that all met the same challenge wait
                // for the first one's token instead of each asking for their own.
                let _one = tokens.fetching.lock().await;
                if let Some(t) = tokens.cached(host, scopes) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self
                    .fetch_token(host, &realm, service.as_deref(), scopes)
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// The token flow: GET the realm with the service and scopes (Basic credentials if any),
    /// or POST a refresh token for an identity token.
    async fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String> {
        let credential = self.inner.options.keychain.lookup(host)?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        let joined = scopes.join(" ");
        let mut attempt = 0;
        let resp = loop {
            let rb = match credential.as_ref().map(|c| &c.secret) {
                Some(Secret::IdentityToken(t)) => {
                    let mut form = vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", t.as_str()),
                        ("client_id", "berth"),
                        ("scope", joined.as_str()),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s));
                    }
                    self.inner.http.post(realm).form(&form)
                }
                Some(Secret::Basic { username, password }) => self
                    .inner
                    .http
                    .get(realm)
                    .query(&query)
                    .basic_auth(username, Some(password)),
                None => self.inner.http.get(realm).query(&query),
            };
            match rb.send().await {
                Ok(r)
                    if (r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error())
                        && attempt < self.inner.options.retries =>
                {
                    let wait = retry_after(r.headers()).unwrap_or_else(|| self.backoff(attempt));
                    tokio::time::sleep(wait.min(self.inner.options.max_retry_after)).await;
                    attempt += 1;
                }
                Ok(r) => break r,
                Err(e) if attempt < self.inner.options.retries => {
                    let _ = e;
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(network_error(host, &Method::GET, realm, &e)),
            }
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(match &credential {
                Some(c) => Error::new(
                    ErrorKind::Auth,
                    format!(
                        "{host}'s token service refused the credentials from {} ({status})",
                        c.source
                    ),
                )
                .with_hint(format!(
                    "check the username and password, or log in again: docker login {host}"
                )),
                None => Error::new(
                    ErrorKind::Auth,
                    format!("{host}'s token service refused an anonymous token ({status})"),
                )
                .with_hint(login_hint(host)),
            }
            .with_status(status.as_u16(), None));
        }
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::Auth,
                format!("{host}'s token service at {realm} answered {status}"),
            )
            .with_status(status.as_u16(), None));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| network_error(host, &Method::GET, realm, &e))?;
        let reply: auth::TokenReply = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::Auth,
                format!("{host}'s token service answered something unreadable: {e}"),
            )
        })?;
        let (token, lifetime) = reply.value().ok_or_else(|| {
            Error::new(
                ErrorKind::Auth,
                format!("{host}'s token service answered without a token"),
            )
        })?;
        self.inner.tokens.fetched.fetch_add(1, Ordering::Relaxed);
        self.inner
            .tokens
            .store(host, scopes, token.clone(), lifetime);
        Ok(token)
    }

    fn unauthorized(&self, host: &str, url: &str, sent: bool) -> Error {
        let has_credential = matches!(self.inner.options.keychain.lookup(host), Ok(Some(_)));
        let e = if sent && has_credential {
            Error::new(
                ErrorKind::Auth,
                format!("{host} refused the credentials for {}", path_of(url)),
            )
            .with_hint("the account may lack access to this repository; check its permissions")
        } else {
            Error::new(
                ErrorKind::Auth,
                format!("{host} requires authentication for {}", path_of(url)),
            )
            .with_hint(login_hint(host))
        };
        e.with_status(401, Some("UNAUTHORIZED".into()))
    }
}

fn login_hint(host: &str) -> String {
    format!(
        "log in with `docker login {host}` or `podman login {host}`, or pass --username and \
         --password (or BERTH_USERNAME and BERTH_PASSWORD)"
    )
}

fn path_of(url: &str) -> &str {
    url.find("/v2/").map(|i| &url[i..]).unwrap_or(url)
}

/// `Retry-After`: seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn is_tls(e: &reqwest::Error) -> bool {
    let d = chain(e).to_ascii_lowercase();
    [
        "invalidcontenttype",
        "corrupt message",
        "certificate",
        "unknownissuer",
        "handshake",
    ]
    .iter()
    .any(|w| d.contains(w))
}

/// Every cause in the chain, for messages: reqwest's own text is terse, and its "error
/// sending request for url (...)" repeats the URL the caller prints.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let top = e.to_string();
    let (mut s, mut cur) = match e.source() {
        Some(src) if top.starts_with("error sending request") => (src.to_string(), src.source()),
        _ => (top, e.source()),
    };
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

pub(crate) fn network_error(host: &str, method: &Method, url: &str, e: &reqwest::Error) -> Error {
    let detail = chain(e);
    let lower = detail.to_ascii_lowercase();
    let what = format!("{method} {url}");
    let err = Error::new(ErrorKind::Network, format!("{what}: {detail}"));
    if url.starts_with("https:")
        && (lower.contains("invalidcontenttype")
            || lower.contains("corrupt message")
            || lower.contains("wrong version number")
            || lower.contains("received corrupt")
            || lower.contains("invalid message"))
    {
        err.with_hint(format!(
            "{host} does not seem to speak TLS; if it serves plain HTTP, add --insecure \
             (or --insecure-host {host})"
        ))
    } else if lower.contains("certificate") || lower.contains("unknownissuer") {
        err.with_hint(format!(
            "the TLS certificate of {host} is not trusted by the system's web roots"
        ))
    } else if e.is_connect() {
        err.with_hint(format!(
            "is a registry running at {host}? check the host and port, and the network"
        ))
    } else if e.is_timeout() {
        err.with_hint("the registry stopped answering; try again, or with fewer --jobs")
    } else {
        err.with_hint("the connection broke; running the same command again resumes cheaply")
    }
}

/// The registry's error body (`{"errors":[{"code","message"}]}`) as an [`Error`].
pub(crate) async fn status_error(resp: Response, what: &str) -> Error {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<One>,
    }
    #[derive(serde::Deserialize)]
    struct One {
        code: Option<String>,
        message: Option<String>,
    }
    let parsed: Option<Errors> = serde_json::from_slice(&body).ok();
    let first = parsed.and_then(|p| p.errors.into_iter().next());
    let code = first.as_ref().and_then(|f| f.code.clone());
    let message = first
        .and_then(|f| f.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned();
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        });
    let label = match &code {
        Some(c) => format!("{status} {c}"),
        None => status.to_string(),
    };
    let (kind, hint) = match status.as_u16() {
        404 => (
            ErrorKind::NotFound,
            Some("check the name, the tag or digest, and the host"),
        ),
        403 => (
            ErrorKind::Denied,
            Some("the credentials are valid but lack access; ask for pull or push rights"),
        ),
        405 | 501 => (
            ErrorKind::Unsupported,
            Some("the registry does not allow this operation (read-only, or deletes disabled)"),
        ),
        413 => (
            ErrorKind::Registry,
            Some("the request was too large for the registry: lower --max-chunk-size"),
        ),
        429 => (
            ErrorKind::Registry,
            Some("rate limited after retries: wait, log in for a higher limit, or lower --jobs"),
        ),
        s if s >= 500 => (
            ErrorKind::Registry,
            Some("the registry failed after retries; try again later"),
        ),
        _ => (ErrorKind::Registry, None),
    };
    let mut e =
        Error::new(kind, format!("{what}: {label}: {message}")).with_status(status.as_u16(), code);
    if let Some(h) = hint {
        e = e.with_hint(h);
    }
    e
}
