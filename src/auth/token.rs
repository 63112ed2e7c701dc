//! The built-in issuer: `GET /token?service=...&scope=...` (Docker token authentication).
//! Basic credentials or none; the token grants what was asked and is allowed, which may be
//! less than asked (not an error).

use std::collections::BTreeMap;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};

use super::jwt::{self, Access, Audience, Claims};
use super::scope::{self, Actions, Scope};
use super::{Auth, Caller};
use crate::body::Body;
use crate::error::{Code, RegistryError};
use crate::events::rfc3339;
use crate::names::RepoName;
use crate::query::Query;

/// More scopes than this in one request are ignored.
const MAX_SCOPES: usize = 64;

impl Auth {
    /// Answer a token request. `jti` is a fresh id for the token.
    pub(crate) fn token(&self, parts: &Parts, now: u64, jti: String) -> Response<Body> {
        match self.issue(parts, now, jti) {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    fn issue(&self, parts: &Parts, now: u64, jti: String) -> Result<Response<Body>, RegistryError> {
        let q = Query::parse(parts.uri.query());
        if q.get("service").is_some_and(|s| s != self.service) {
            return Err(RegistryError::new(Code::Denied, "unknown service")
                .with_status(StatusCode::BAD_REQUEST));
        }
        let caller = match self.identify(parts, now) {
            Ok(c @ (Caller::Nobody | Caller::Anonymous | Caller::User(_))) => c,
            // Refresh tokens are not issued, so a Bearer credential here is a mistake too.
            Err(super::Refused::Throttled) => return Err(super::throttled()),
            Ok(Caller::Token(_)) | Err(super::Refused::Invalid) => {
                let challenge = format!("Basic realm=\"{}\"", self.service);
                return Err(
                    RegistryError::new(Code::Unauthorized, "invalid credentials").with_header(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_str(&challenge)
                            .unwrap_or_else(|_| HeaderValue::from_static("Basic")),
                    ),
                );
            }
        };
        let mut repos: BTreeMap<RepoName, Actions> = BTreeMap::new();
        let mut catalog = false;
        let asked = q
            .all("scope")
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty())
            .take(MAX_SCOPES);
        for s in asked {
            match scope::parse_scope(s) {
                Some(Scope::Repo(name, want)) => {
                    let got = want.intersect(self.actions(&caller, name.as_str()));
                    let entry = repos.entry(name).or_default();
                    *entry = entry.union(got);
                }
                Some(Scope::Catalog) => catalog |= self.catalog(&caller),
                None => {}
            }
        }
        let mut access: Vec<Access> = repos
            .into_iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(name, a)| Access {
                kind: "repository".into(),
                name: name.to_string(),
                actions: a.names().into_iter().map(String::from).collect(),
            })
            .collect();
        if catalog {
            access.push(Access {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            });
        }
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: match caller {
                Caller::User(u) => u,
                _ => String::new(),
            },
            aud: Audience::One(self.service.clone()),
            exp: now + self.token_ttl,
            nbf: Some(now),
            iat: Some(now),
            jti: Some(jti),
            access,
        };
        let token = jwt::sign_hs256(&self.kid, &self.secret, &claims);
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": self.token_ttl,
            "issued_at": rfc3339(now),
        });
        let mut resp = Response::new(Body::from(body.to_string()));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }
}
