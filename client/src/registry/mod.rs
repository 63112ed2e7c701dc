//! One repository on a registry: manifests, blobs, tags, referrers, deletes. Pushing blobs
//! is the `upload` module's, above this one.

use std::sync::Arc;

use reqwest::{Method, Response};

use crate::auth::scope;
use crate::error::{Error, ErrorKind, Result};
use crate::transport::{Client, Request, status_error};
use berth::names::RepoName;

mod blobs;
mod manifests;
mod referrers;
mod tags;

pub use manifests::Manifest;
pub(crate) use referrers::{fallback_tag, retain_artifact_type};
pub use tags::TagPage;

/// A repository on a registry, e.g. `127.0.0.1:5000` + `team/app`. Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    pub(crate) client: Client,
    inner: Arc<RepoInner>,
}

struct RepoInner {
    host: String,
    name: RepoName,
    base: String,
    pull: [String; 1],
    push: [String; 1],
}

impl Client {
    /// A repository on a registry: `host` is `host[:port]` as in a reference.
    pub fn repository(&self, host: &str, name: RepoName) -> Repository {
        let base = self.base_url(host);
        let pull = [scope(name.as_str(), false)];
        let push = [scope(name.as_str(), true)];
        Repository {
            client: self.clone(),
            inner: Arc::new(RepoInner {
                host: host.to_owned(),
                name,
                base,
                pull,
                push,
            }),
        }
    }
}

impl Repository {
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    pub fn name(&self) -> &RepoName {
        &self.inner.name
    }

    /// `https://host/v2/<name>/<rest>`.
    pub(crate) fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.inner.base, self.inner.name)
    }

    /// A `Location` header or `Link` target made absolute.
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.inner.base)
        } else {
            format!("{}/{location}", self.inner.base)
        }
    }

    fn scopes(&self, push: bool) -> &[String] {
        if push {
            &self.inner.push
        } else {
            &self.inner.pull
        }
    }

    /// The same repository, asking for push access with every request: one token then
    /// serves the HEADs and GETs of a push as well as its uploads.
    pub fn for_push(mut self) -> Repository {
        let inner = RepoInner {
            host: self.inner.host.clone(),
            name: self.inner.name.clone(),
            base: self.inner.base.clone(),
            pull: self.inner.push.clone(),
            push: self.inner.push.clone(),
        };
        self.inner = Arc::new(inner);
        self
    }

    pub(crate) fn request(&self, method: Method, url: String, push: bool) -> Request<'_> {
        Request::new(method, url, self.host(), self.scopes(push))
    }

    /// Send a request without headers or body.
    pub(crate) async fn send(&self, method: Method, url: String, push: bool) -> Result<Response> {
        self.client.send(self.request(method, url, push)).await
    }

    /// `host/name <thing>`, for messages.
    pub(crate) fn what(&self, thing: impl std::fmt::Display) -> String {
        format!("{}/{} {thing}", self.host(), self.name())
    }

    /// DELETE `<rest>` (`manifests/<reference>` or `blobs/<digest>`), which takes a token
    /// with the `delete` action where the registry distinguishes it.
    async fn delete(&self, rest: &str, thing: impl std::fmt::Display) -> Result<()> {
        let scopes = [format!("{},delete", scope(self.name().as_str(), true))];
        let req = Request::new(Method::DELETE, self.url(rest), self.host(), &scopes);
        let resp = self.client.send(req).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what(format_args!("DELETE {thing}"))).await);
        }
        Ok(())
    }
}

/// A JSON answer of the registry; `what` names it for the error.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::new(ErrorKind::Registry, format!("{what}: unreadable: {e}")))
}
