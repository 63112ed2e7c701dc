//! The registry: configuration, the injected environment, and `handle`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use http::{HeaderValue, Method, Request, Response};

use crate::auth::Auth;
use crate::auth::scope::{Actions, Need, need};
use crate::body::Body;
use crate::error::{Code, RegistryError};
use crate::gc::{ContentPolicy, Pass, Report, ScrubReport, Usage};
use crate::manifest_cache::ManifestCache;
use crate::mirror::{Mirror, MirrorConfig, Target, Upstream};
use crate::names::RepoName;
use crate::route::{self, Route};
use crate::storage::{Storage, StorageError};
use crate::{MaybeSend, MaybeSync};

/// What the core needs from the world and cannot take itself: the time and fresh ids.
pub trait Env: MaybeSend + MaybeSync + 'static {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// A fresh, unguessable upload id of `[A-Za-z0-9_-]`, at most 128 characters.
    fn new_id(&self) -> String;
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
    /// The largest blob accepted, in bytes (413 SIZE_INVALID past it); `None`: no limit.
    pub max_blob_size: Option<u64>,
    /// Upload sessions one repository may hold open (429 TOOMANYREQUESTS past it); `None`: no
    /// limit. Concurrent POSTs may pass it by their number: a bound, not an exact count.
    pub max_uploads: Option<usize>,
    /// Seconds garbage collection leaves unreferenced content alone (GC.md); every instance
    /// sharing a store must agree on it, whether or not it runs passes itself.
    pub gc_grace: u64,
    /// Bytes of manifests kept in memory by digest (0: none); see `manifest_cache`.
    pub manifest_cache: usize,
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
            max_blob_size: None,
            max_uploads: Some(1000),
            gc_grace: 24 * 3600,
            manifest_cache: 8 << 20,
        }
    }
}

pub struct Registry<S> {
    store: S,
    env: Box<dyn Env>,
    config: Config,
    /// Access control; `None` is an open registry.
    auth: Option<Arc<Auth>>,
    /// Retention, immutable tags and quotas; `None`: none of them.
    policy: Option<Arc<ContentPolicy>>,
    /// Repositories pulled through from other registries; `None`: no mirroring.
    mirror: Option<Mirror>,
    uploads: InFlight,
    manifests: ManifestCache,
}

/// Uploads with a request in flight in this process: a second request for the same upload is
/// refused rather than interleaved.
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashSet<String>>);

impl InFlight {
    /// Claim an upload for one request; `None` if another request holds it.
    pub(crate) fn claim(&self, id: &str) -> Option<Claim<'_>> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_owned()).then(|| Claim {
            set: &self.0,
            id: id.to_owned(),
        })
    }
}

/// An upload claimed by one request, released when dropped.
pub(crate) struct Claim<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// What an endpoint works with: the store, the clock and ids, the settings, and the uploads
/// in flight. Built per request by [`Registry`]; endpoints are its methods (`handlers/`).
pub(crate) struct Ctx<'a, S> {
    pub store: &'a S,
    pub env: &'a dyn Env,
    pub config: &'a Config,
    pub policy: Option<&'a ContentPolicy>,
    pub uploads: &'a InFlight,
    pub manifests: &'a ManifestCache,
    pub mirror: Option<&'a Mirror>,
    /// Storing content fetched from a mirror's upstream, not a client's push: no reference,
    /// quota or immutability checks, no event.
    pub pull_through: bool,
    /// Who made the request, when access control says (upload sessions are bound to it).
    pub principal: Option<String>,
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl<S: Storage> Registry<S> {
    pub fn new(store: S, env: impl Env, config: Config) -> Self {
        Registry {
            store,
            env: Box::new(env),
            manifests: ManifestCache::new(config.manifest_cache),
            config,
            auth: None,
            policy: None,
            mirror: None,
            uploads: InFlight::default(),
        }
    }

    /// Serve the configured repositories from upstream registries, caching what passes.
    /// The store is cloned for the writes that outlive a request (a shared blob fetch).
    pub fn with_mirror<U: Upstream>(mut self, config: MirrorConfig, upstream: U) -> Self
    where
        S: Clone + 'static,
    {
        self.mirror = Some(Mirror::new(config, upstream, self.store.clone()));
        self
    }

    pub fn mirror(&self) -> Option<&MirrorConfig> {
        self.mirror.as_ref().map(|m| &m.config)
    }

    /// Apply a content policy: retention (by garbage collection), immutable tags, quotas.
    pub fn with_policy(mut self, policy: Arc<ContentPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    pub fn policy(&self) -> Option<&ContentPolicy> {
        self.policy.as_deref()
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

    pub(crate) fn ctx(&self) -> Ctx<'_, S> {
        Ctx {
            store: &self.store,
            env: self.env.as_ref(),
            config: &self.config,
            policy: self.policy.as_deref(),
            uploads: &self.uploads,
            manifests: &self.manifests,
            mirror: self.mirror.as_ref(),
            pull_through: false,
            principal: None,
        }
    }

    /// Answer one request. Never fails: errors become OCI error responses.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        let mut resp = match self.admit(req) {
            Ok(req) => {
                let actor = req.extensions().get::<crate::events::Actor>().cloned();
                let mut resp = match self.dispatch(req).await {
                    Ok(resp) => resp,
                    Err(e) => e.into_response(),
                };
                if let Some(event) = resp.extensions_mut().get_mut::<crate::events::Event>() {
                    event.actor = actor.map(|a| a.0);
                }
                resp
            }
            Err(resp) => *resp,
        };
        if head {
            // Headers (Content-Length included) describe what a GET would send; the body never goes.
            *resp.body_mut() = Body::Empty;
        }
        let headers = resp.headers_mut();
        headers.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        // Never let a browser guess a type: content is served as pushed.
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
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

    /// Whether this registry lets the request change anything it would change: read-only
    /// registries and repositories take no writes, and deletes may be off. One place for every
    /// endpoint, decided by what the request needs (the same as access control's).
    fn permits(&self, route: Route<'_>, method: &Method) -> Result<()> {
        let reading = method == Method::GET || method == Method::HEAD;
        if reading || route == Route::Unknown {
            return Ok(());
        }
        if self.config.read_only {
            return Err(
                RegistryError::new(Code::Unsupported, "this registry is read-only")
                    .with_header(http::header::ALLOW, HeaderValue::from_static("GET, HEAD")),
            );
        }
        let Need::Repo { name, actions } = need(route, method) else {
            return Ok(());
        };
        if actions.contains(Actions::DELETE) && !self.config.deletes {
            return Err(RegistryError::new(
                Code::Unsupported,
                "deletes are disabled on this registry",
            ));
        }
        if !self.store.writable(&name) {
            return Err(RegistryError::new(
                Code::Unsupported,
                format!("repository {name} is read-only"),
            ));
        }
        Ok(())
    }

    async fn dispatch(&self, req: Request<Body>) -> Result<Response<Body>> {
        let (parts, body) = req.into_parts();
        let req = &parts;
        let method = req.method.clone();
        let path = req.uri.path().to_owned();
        let route = route::parse(&path);
        self.permits(route, &method)?;
        let head = method == Method::HEAD;
        let mut cx = self.ctx();
        cx.principal = req
            .extensions
            .get::<crate::auth::Principal>()
            .map(|p| p.0.clone());
        if let Some(t) = self.mirrored(route, req) {
            let mut resp = self.mirror_dispatch(&cx, &t, route, &method, req).await?;
            if t.echo
                && let Ok(v) = HeaderValue::from_str(&t.ns)
            {
                resp.headers_mut().insert("oci-namespace", v);
            }
            return Ok(resp);
        }
        match (route, method) {
            (Route::Base, Method::GET | Method::HEAD) => Ok(cx.base()),
            (Route::Catalog, Method::GET | Method::HEAD) => cx.catalog(req).await,
            (Route::Tags { name }, Method::GET | Method::HEAD) => cx.tags_list(name, req).await,
            (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
                cx.manifest_get(name, reference, head, req).await
            }
            (Route::Manifest { name, reference }, Method::PUT) => {
                cx.manifest_put(name, reference, req, body).await
            }
            (Route::Manifest { name, reference }, Method::DELETE) => {
                cx.manifest_delete(name, reference).await
            }
            (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
                cx.blob_get(name, digest, head, req).await
            }
            (Route::Blob { name, digest }, Method::DELETE) => cx.blob_delete(name, digest).await,
            (Route::Uploads { name }, Method::POST) => cx.upload_post(name, req, body).await,
            (Route::Upload { name, id }, Method::GET | Method::HEAD) => {
                cx.upload_status(name, id).await
            }
            (Route::Upload { name, id }, Method::PATCH) => {
                cx.upload_patch(name, id, req, body).await
            }
            (Route::Upload { name, id }, Method::PUT) => cx.upload_put(name, id, req, body).await,
            (Route::Upload { name, id }, Method::DELETE) => cx.upload_cancel(name, id).await,
            (Route::Referrers { name, digest }, Method::GET | Method::HEAD) => {
                cx.referrers(name, digest, req).await
            }
            (Route::Berth(ext), Method::GET | Method::HEAD) => {
                let viewer = crate::handlers::Viewer {
                    auth: self.auth.as_deref(),
                    visitor: req.extensions.get(),
                };
                cx.browse(ext, req, &viewer).await
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

    /// The upstream a request's repository comes from, if it is mirrored and the request is
    /// the mirror's to answer: a read of content, or a write the mirror refuses.
    fn mirrored(&self, route: Route<'_>, req: &http::request::Parts) -> Option<Target> {
        let mirror = self.mirror.as_ref()?;
        let reading = req.method == Method::GET || req.method == Method::HEAD;
        let name = match route {
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::Referrers { name, .. }
            | Route::Tags { name }
                if reading =>
            {
                name
            }
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::Uploads { name }
            | Route::Upload { name, .. }
                if !mirror.config.allow_push =>
            {
                name
            }
            _ => return None,
        };
        let q = crate::query::Query::parse(req.uri.query());
        mirror.config.target(name, q.get("ns"))
    }

    /// A request to a mirrored repository (see [`Self::mirrored`]).
    async fn mirror_dispatch(
        &self,
        cx: &Ctx<'_, S>,
        t: &Target,
        route: Route<'_>,
        method: &Method,
        req: &http::request::Parts,
    ) -> Result<Response<Body>> {
        let head = method == Method::HEAD;
        let reading = head || method == Method::GET;
        match route {
            Route::Manifest { reference, .. } if reading => {
                cx.mirror_manifest(t, reference, head, req).await
            }
            Route::Blob { digest, .. } if reading => cx.mirror_blob(t, digest, head, req).await,
            Route::Referrers { digest, .. } if reading => cx.mirror_referrers(t, digest, req).await,
            Route::Tags { .. } if reading => cx.tags_list(t.local.as_str(), req).await,
            _ => Err(RegistryError::new(
                Code::Unsupported,
                format!(
                    "{} is a mirror of {}: pushes are not allowed",
                    t.local, t.ns
                ),
            )),
        }
    }

    /// Run a garbage collection pass to its end (or its deadline), and keep its report as
    /// the last one (unless a dry run).
    pub async fn collect_garbage(&self, dry_run: bool) -> Result<Report, StorageError> {
        let cx = self.ctx();
        let mut pass = Pass::new(format!("gc-{}", self.env.new_id()), self.env.now(), dry_run);
        while !pass.step(&cx).await? {}
        if !dry_run {
            cx.save_report(&pass.report).await?;
        }
        Ok(pass.report)
    }

    /// Run the pass in progress (saved in the store), or a new one if the last finished
    /// `interval` seconds ago, step by step while `more()` says there is time, reading `page`
    /// blobs per sweep step; then save where it stopped. For platforms that give a pass little
    /// time at once (the Worker's cron). Several callers at once are fine: each saves with a
    /// compare-and-set, and one that loses gives up (what it did was safe to do). The report,
    /// once the pass is done.
    pub async fn collect_garbage_steps(
        &self,
        interval: u64,
        page: usize,
        more: impl FnMut() -> bool,
    ) -> Result<Option<Report>, StorageError> {
        self.ctx().gc_steps(interval, page, more).await
    }

    /// Keep a mirror's cache under its size limit (before a garbage collection pass, which
    /// frees the bytes); `None` without a mirror or a limit.
    pub async fn evict_mirror(&self) -> Result<Option<crate::mirror::Evicted>, StorageError> {
        let Some(limit) = self.mirror.as_ref().and_then(|m| m.config.cache_size) else {
            return Ok(None);
        };
        self.ctx().evict_mirror(limit).await.map(Some)
    }

    /// Re-hash up to `limit` stored blobs after `after` (every one with `None`); corrupt ones are
    /// deleted and listed.
    pub async fn scrub(
        &self,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ScrubReport, StorageError> {
        self.ctx().scrub(after, limit).await
    }

    /// What a repository holds, as last counted (a pass counts afresh; pushes add between).
    pub async fn usage(&self, name: &RepoName) -> Result<Usage> {
        self.ctx().usage(name).await
    }

    /// The last finished pass's report, if any.
    pub async fn last_gc(&self) -> Result<Option<Report>, StorageError> {
        self.ctx().last_report().await
    }

    /// Drop upload sessions idle for longer than the configured expiry, with their bytes.
    /// Returns how many were dropped. Adapters call it now and then.
    pub async fn purge_uploads(&self) -> Result<usize, StorageError> {
        self.ctx().purge_uploads().await
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
