//! The token flow: what `Authorization` a request carries, fetching Bearer tokens from a
//! realm, and the errors that say why authentication failed.

use std::sync::atomic::Ordering;

use reqwest::{Method, StatusCode};

use super::Client;
use super::response::{network_error, retry_after};
use crate::auth::{self, Scheme, Secret};
use crate::error::{Error, ErrorKind, Result};

impl Client {
    /// The `Authorization` value for a request to `host` with `scopes`: a cached token, a new
    /// one (`fetch`, or whenever the host is known to want Bearer), or Basic credentials.
    pub(super) async fn authorization(
        &self,
        host: &str,
        scopes: &[String],
    ) -> Result<Option<String>> {
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
                Err(_) if attempt < self.inner.options.retries => {
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

    pub(super) fn unauthorized(&self, host: &str, url: &str, sent: bool) -> Error {
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
