//! The registry: configuration, the injected environment, and `handle`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{HeaderValue, Method, Request, Response};

use crate::auth::Auth;
use crate::body::Body;
use crate::error::{Code, RegistryError};
use crate::route::{self, Route};
use crate::storage::Storage;
use crate::{MaybeSend, MaybeSync};

/// What the core needs from the world and cannot take itself: the time and fresh ids.
pub trait Env: MaybeSend + MaybeSync + 'static {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// A fresh, unguessable upload id of `[A-Za-z0-9_-]`, at most 128 characters.
    fn new_id(&self) -> String;
}

/// A deterministic environment for tests: time stands still until moved, ids count up.
#[derive(Default)]
pub struct ManualEnv {
    pub now: AtomicU64,
    next: AtomicU64,
}

impl ManualEnv {
    pub fn at(now: u64) -> Self {
        ManualEnv {
            now: AtomicU64::new(now),
            next: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, secs: u64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Env for ManualEnv {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn new_id(&self) -> String {
        format!("upload-{}", self.next.fetch_add(1, Ordering::SeqCst))
    }
}

impl<E: Env> Env for std::sync::Arc<E> {
    fn now(&self) -> u64 {
        (**self).now()
    }
    fn new_id(&self) -> String {
        (**self).new_id()
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Answer only GET and HEAD.
    pub read_only: bool,
    /// Allow DELETE of manifests, tags and blobs (405 UNSUPPORTED otherwise).
    pub deletes: bool,
    /// The largest manifest accepted, in bytes (413 past it). At least 4 MiB per the spec.
    pub max_manifest_size: usize,
    /// Seconds an upload session may sit idle before it is dropped.
    pub upload_expiry: u64,
    /// Advertised as `OCI-Chunk-Min-Length` on upload sessions, when set.
    pub chunk_min_length: Option<u64>,
    /// The most entries one page of tags or catalog returns, whatever `n` asks.
    pub max_page_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            read_only: false,
            deletes: true,
            max_manifest_size: 4 << 20,
            upload_expiry: 24 * 3600,
            chunk_min_length: None,
            max_page_size: 10_000,
        }
    }
}

pub struct Registry<S> {
    pub(crate) store: S,
    pub(crate) env: Box<dyn Env>,
    pub(crate) config: Config,
    /// Access control; `None` is an open registry.
    auth: Option<Arc<Auth>>,
    /// Uploads with a request in flight in this process: a second request for the same upload
    /// is refused rather than interleaved.
    busy: Mutex<HashSet<String>>,
}

pub(crate) struct Busy<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl<S: Storage> Registry<S> {
    pub fn new(store: S, env: impl Env, config: Config) -> Self {
        Registry {
            store,
            env: Box::new(env),
            config,
            auth: None,
            busy: Mutex::new(HashSet::new()),
        }
    }

    /// Put access control in front of every endpoint, and serve the token endpoint.
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn auth(&self) -> Option<&Auth> {
        self.auth.as_deref()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answer one request. Never fails: errors become OCI error responses.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        let mut resp = match self.admit(req) {
            Ok(req) => match self.dispatch(req).await {
                Ok(resp) => resp,
                Err(e) => e.into_response(),
            },
            Err(resp) => *resp,
        };
        if head {
            // Headers (Content-Length included) describe what a GET would send; the body never goes.
            *resp.body_mut() = Body::Empty;
        }
        resp.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        resp
    }

    /// The request if the caller may make it; otherwise the 401 or 403, or the token
    /// endpoint's answer.
    fn admit(&self, req: Request<Body>) -> Result<Request<Body>, Box<Response<Body>>> {
        let Some(auth) = &self.auth else {
            return Ok(req);
        };
        let (mut parts, body) = req.into_parts();
        let now = self.env.now();
        let reading = parts.method == Method::GET || parts.method == Method::HEAD;
        if reading && parts.uri.path() == auth.token_path() {
            return Err(Box::new(auth.token(&parts, now, self.env.new_id())));
        }
        match auth.check(&mut parts, now) {
            Ok(()) => Ok(Request::from_parts(parts, body)),
            Err(e) => Err(Box::new(e.into_response())),
        }
    }

    async fn dispatch(&self, req: Request<Body>) -> Result<Response<Body>> {
        let (parts, body) = req.into_parts();
        let req = &parts;
        let method = req.method.clone();
        let path = req.uri.path().to_owned();
        let route = route::parse(&path);
        let reading = method == Method::GET || method == Method::HEAD;
        if self.config.read_only && !reading && route != Route::Unknown {
            return Err(
                RegistryError::new(Code::Unsupported, "this registry is read-only")
                    .with_header(http::header::ALLOW, HeaderValue::from_static("GET, HEAD")),
            );
        }
        let head = method == Method::HEAD;
        match (route, method) {
            (Route::Base, Method::GET | Method::HEAD) => Ok(self.base()),
            (Route::Catalog, Method::GET | Method::HEAD) => self.catalog(req).await,
            (Route::Tags { name }, Method::GET | Method::HEAD) => self.tags_list(name, req).await,
            (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
                self.manifest_get(name, reference, head, req).await
            }
            (Route::Manifest { name, reference }, Method::PUT) => {
                self.manifest_put(name, reference, req, body).await
            }
            (Route::Manifest { name, reference }, Method::DELETE) => {
                self.manifest_delete(name, reference).await
            }
            (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
                self.blob_get(name, digest, head, req).await
            }
            (Route::Blob { name, digest }, Method::DELETE) => self.blob_delete(name, digest).await,
            (Route::Uploads { name }, Method::POST) => self.upload_post(name, req, body).await,
            (Route::Upload { name, id }, Method::GET | Method::HEAD) => {
                self.upload_status(name, id).await
            }
            (Route::Upload { name, id }, Method::PATCH) => {
                self.upload_patch(name, id, req, body).await
            }
            (Route::Upload { name, id }, Method::PUT) => self.upload_put(name, id, req, body).await,
            (Route::Upload { name, id }, Method::DELETE) => self.upload_cancel(name, id).await,
            (Route::Referrers { name, digest }, Method::GET | Method::HEAD) => {
                self.referrers(name, digest, req).await
            }
            (Route::Unknown, _) => Err(RegistryError::new(Code::Unsupported, "no such endpoint")
                .with_status(http::StatusCode::NOT_FOUND)),
            (route, _) => Err(
                RegistryError::new(Code::Unsupported, "method not allowed here").with_header(
                    http::header::ALLOW,
                    HeaderValue::from_static(allowed(route)),
                ),
            ),
        }
    }

    /// Claim an upload for one request; `None` if another request holds it.
    pub(crate) fn claim(&self, id: &str) -> Option<Busy<'_>> {
        let mut set = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_owned()).then(|| Busy {
            set: &self.busy,
            id: id.to_owned(),
        })
    }
}

fn allowed(route: Route<'_>) -> &'static str {
    match route {
        Route::Manifest { .. } => "GET, HEAD, PUT, DELETE",
        Route::Blob { .. } => "GET, HEAD, DELETE",
        Route::Uploads { .. } => "POST",
        Route::Upload { .. } => "GET, HEAD, PATCH, PUT, DELETE",
        _ => "GET, HEAD",
    }
}
