//! The adapter: the fetch event becomes an `http::Request<berth::Body>`, goes through
//! [`berth::Registry::handle`] over the R2 store, and comes back as a JS `Response`.

use std::cell::RefCell;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use wasm_bindgen::JsValue;
use worker::{console_error, console_log, event};

use berth::error::InternalError;
use berth::gc::ContentPolicy;
use berth::{Auth, Body, Registry};

use crate::body::JsBody;
use crate::budget::Counted;
use crate::config::Settings;
use crate::js;
use crate::r2::R2Store;
use crate::upstream::WorkerUpstream;

/// The R2 bucket binding's name in wrangler.toml.
const BUCKET: &str = "BUCKET";
/// Test routes, compiled only into test builds (the `contract` feature) and served only when
/// `BERTH_CONTRACT_TESTS` is set and no access policy is: the storage contract suite on the
/// bucket, and a listing of the bucket's keys under `?prefix=`.
#[cfg(feature = "contract")]
const CONTRACT_ROUTE: &str = "/_berth/contract";
#[cfg(feature = "contract")]
const KEYS_ROUTE: &str = "/_berth/keys";
/// The garbage collection contract: a pass over the whole bucket, so only on a bucket of its
/// own.
#[cfg(feature = "contract")]
const CONTRACT_GC_ROUTE: &str = "/_berth/contract-gc";

/// Time from `Date.now()`, ids from `crypto.getRandomValues`.
struct Platform;

impl berth::Env for Platform {
    fn now(&self) -> u64 {
        (js_sys::Date::now() / 1000.0) as u64
    }

    fn new_id(&self) -> String {
        js::random_hex(16)
    }
}

thread_local! {
    /// The parsed policy, kept while the isolate lives: parsing is cheap, but its memory of
    /// verified Basic logins saves a password hash per request.
    static AUTH: RefCell<Option<(String, String, Arc<Auth>)>> = const { RefCell::new(None) };
    /// The parsed content policy, while its text stays the same.
    static POLICY: RefCell<Option<(String, Arc<ContentPolicy>)>> = const { RefCell::new(None) };
}

fn content_policy(text: &str) -> Result<Arc<ContentPolicy>, String> {
    POLICY.with(|cell| {
        if let Some((t, p)) = &*cell.borrow()
            && t == text
        {
            return Ok(p.clone());
        }
        let p = Arc::new(ContentPolicy::parse(text).map_err(|e| e.to_string())?);
        *cell.borrow_mut() = Some((text.to_owned(), p.clone()));
        Ok(p)
    })
}

/// The policy from the secrets, parsed once per isolate and secret values.
fn auth(policy: &str, key: &str) -> Result<Arc<Auth>, berth::auth::PolicyError> {
    AUTH.with(|cell| {
        if let Some((p, k, auth)) = &*cell.borrow()
            && p == policy
            && k == key
        {
            return Ok(auth.clone());
        }
        let auth = Arc::new(Auth::new(policy, key.trim().as_bytes())?);
        *cell.borrow_mut() = Some((policy.to_owned(), key.to_owned(), auth.clone()));
        Ok(auth)
    })
}

fn registry(env: &worker::Env) -> worker::Result<(Registry<R2Store>, Settings)> {
    let settings = Settings::from_env(env);
    let store = R2Store::new(env.bucket(BUCKET)?, settings.part_size);
    let mut registry = configure(store, &settings)?;
    // The pull-through cache serves requests only (the cron's passes do not fetch). Settings
    // that do not hold shut the registry, as a bad policy does.
    match &settings.mirror {
        None => {}
        Some(Ok(m)) => registry = registry.with_mirror(m.config.clone(), WorkerUpstream::new(m)),
        Some(Err(e)) => return Err(worker::Error::RustError(e.clone())),
    }
    Ok((registry, settings))
}

/// The registry over `store` as `settings` say: access control and the content policy. A
/// policy that does not load shuts the registry rather than opening it.
fn configure<S: berth::Storage>(store: S, settings: &Settings) -> worker::Result<Registry<S>> {
    let mut registry = Registry::new(store, Platform, settings.config.clone());
    if let Some((policy, key)) = &settings.auth {
        let auth = auth(policy, key)
            .map_err(|e| worker::Error::RustError(format!("BERTH_AUTH_POLICY: {e}")))?;
        registry = registry.with_auth(auth);
    }
    if let Some(text) = &settings.gc_policy {
        let policy = content_policy(text)
            .map_err(|e| worker::Error::RustError(format!("BERTH_GC_POLICY: {e}")))?;
        registry = registry.with_policy(policy);
    }
    Ok(registry)
}

/// Without an access policy the Worker takes writes only when `BERTH_OPEN` says so: a
/// deploy that forgot its policy must not publish a registry anyone can push to.
fn unlocked(settings: &Settings, method: &http::Method) -> Option<http::Response<Body>> {
    let reading = method == http::Method::GET || method == http::Method::HEAD;
    if reading || settings.auth.is_some() || settings.open {
        return None;
    }
    let mut resp = berth::RegistryError::new(
        berth::Code::Denied,
        "this registry takes no writes: it has no access policy (BERTH_AUTH_POLICY) and \
         BERTH_OPEN is not \"true\"; set one of them (README, \"The Worker\")",
    )
    .into_response();
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        http::HeaderValue::from_static("registry/2.0"),
    );
    Some(resp)
}

#[event(fetch)]
async fn fetch(
    req: web_sys::Request,
    env: worker::Env,
    _ctx: worker::Context,
) -> worker::Result<web_sys::Response> {
    let (registry, settings) = match registry(&env) {
        Ok(r) => r,
        Err(e) => {
            console_error!("berth: {e}");
            let mut resp = http::Response::new(Body::from("berth is misconfigured; see its log\n"));
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return response(resp);
        }
    };
    let web_req = req;
    let req = request(&web_req)?;
    if let Some(page) = crate::ui::serve(&web_req, req.method(), req.uri().path(), &env).await? {
        return Ok(page);
    }
    #[cfg(feature = "contract")]
    if settings.contract_tests && settings.auth.is_none() {
        match req.uri().path() {
            CONTRACT_ROUTE => return contract(registry.store()).await,
            CONTRACT_GC_ROUTE => {
                let store = R2Store::new(env.bucket(BUCKET)?, settings.part_size);
                return contract_gc(store).await;
            }
            KEYS_ROUTE => return keys(registry.store(), req.uri().query()).await,
            _ => {}
        }
    }
    if let Some(refused) = unlocked(&settings, req.method()) {
        return response(refused);
    }
    let resp = registry.handle(req).await;
    if let Some(InternalError(detail)) = resp.extensions().get::<InternalError>() {
        console_error!("berth: {detail}");
    }
    response(resp)
}

/// The cron trigger: expired upload sessions are dropped, then a garbage collection pass
/// (unless `BERTH_GC_INTERVAL = 0`) takes a few steps within `BERTH_GC_BUDGET` storage calls and
/// 20 seconds, resumed at the next.
#[event(scheduled)]
async fn scheduled(
    _event: worker::ScheduledEvent,
    env: worker::Env,
    _ctx: worker::ScheduleContext,
) {
    if let Err(e) = maintain(&env).await {
        console_error!("berth: {e}");
    }
}

async fn maintain(env: &worker::Env) -> Result<(), String> {
    let settings = Settings::from_env(env);
    let bucket = env.bucket(BUCKET).map_err(|e| e.to_string())?;
    let store = Counted::new(R2Store::new(bucket, settings.part_size));
    let registry = configure(store, &settings).map_err(|e| e.to_string())?;
    // Every run, not only when a pass is due: an upload expires whatever the GC interval.
    registry
        .purge_uploads()
        .await
        .map_err(|e| format!("purging uploads: {e}"))?;
    if settings.gc_interval == 0 {
        return Ok(());
    }
    let start = js_sys::Date::now();
    // A step makes up to about a page's worth of calls per blob: stop with room for one more.
    let budget = settings.gc_budget;
    let page = (budget / 16).clamp(4, 100) as usize;
    let more = || {
        registry.store().calls() + 4 * page as u32 + 16 <= budget
            && js_sys::Date::now() - start < 20_000.0
    };
    match registry
        .collect_garbage_steps(settings.gc_interval, page, more)
        .await
    {
        Ok(Some(r)) => console_log!("berth: gc pass {} done: {}", r.id, r.summary()),
        Ok(None) => {}
        Err(e) => return Err(format!("garbage collection: {e}")),
    }
    Ok(())
}

#[cfg(feature = "contract")]
async fn contract(store: &R2Store) -> worker::Result<web_sys::Response> {
    let tag = js::random_hex(8);
    outcome(berth::storage::contract::run(store, &tag).await)
}

#[cfg(feature = "contract")]
async fn contract_gc(store: R2Store) -> worker::Result<web_sys::Response> {
    let tag = js::random_hex(8);
    let now = (js_sys::Date::now() / 1000.0) as u64;
    outcome(berth::storage::contract_gc::gc(Arc::new(store), &tag, now).await)
}

#[cfg(feature = "contract")]
fn outcome(result: Result<(), String>) -> worker::Result<web_sys::Response> {
    let (status, text) = match result {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("contract failed: {e}\n"),
        ),
    };
    let mut resp = http::Response::new(Body::from(text));
    *resp.status_mut() = status;
    response(resp)
}

#[cfg(feature = "contract")]
async fn keys(store: &R2Store, query: Option<&str>) -> worker::Result<web_sys::Response> {
    let prefix = query
        .and_then(|q| q.strip_prefix("prefix="))
        .and_then(crate::text::percent_decode)
        .unwrap_or_default();
    let text = match store.keys(&prefix).await {
        Ok(keys) => keys.iter().map(|k| format!("{k}\n")).collect::<String>(),
        Err(e) => format!("error: {e}\n"),
    };
    response(http::Response::new(Body::from(text)))
}

/// The platform request as the core's. A body with a `Content-Length` stays a platform stream;
/// one without (chunked transfer encoding) is read as bytes.
fn request(req: &web_sys::Request) -> worker::Result<http::Request<Body>> {
    let headers = HeaderMap::from(&worker::Headers(req.headers()));
    let len = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = match (req.body(), len) {
        (None, _) | (Some(_), Some(0)) => Body::Empty,
        (Some(stream), Some(n)) => JsBody::body(stream, Some(n)),
        (Some(stream), None) => Body::Stream(js::read_stream(&stream)),
    };
    // Cloudflare's own header: the client's address, for login throttling.
    let peer = headers
        .get("cf-connecting-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map(berth::auth::Peer);
    let mut out = http::Request::builder()
        .method(req.method().as_str())
        .uri(req.url())
        .body(body)?;
    *out.headers_mut() = headers;
    if let Some(peer) = peer {
        out.extensions_mut().insert(peer);
    }
    Ok(out)
}

/// The core's response as the platform's. A platform stream goes back untouched.
fn response(resp: http::Response<Body>) -> worker::Result<web_sys::Response> {
    let (parts, body) = resp.into_parts();
    let init = web_sys::ResponseInit::new();
    init.set_status(parts.status.as_u16());
    init.set_headers(&worker::Headers::from(&parts.headers).0);
    let null_body = matches!(parts.status.as_u16(), 101 | 204 | 205 | 304);
    let resp = match body {
        _ if null_body => web_sys::Response::new_with_opt_str_and_init(None, &init),
        Body::Empty => web_sys::Response::new_with_opt_str_and_init(None, &init),
        Body::Full(bytes) => {
            let array = js_sys::Uint8Array::from(bytes.as_ref());
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(&array), &init)
        }
        other => {
            let stream = match JsBody::take(other) {
                Ok(js) => js.stream,
                Err(body) => {
                    let rust = body.into_stream();
                    worker::Body::from_stream(rust)?
                        .into_inner()
                        .ok_or_else(|| worker::Error::RustError("empty stream".into()))?
                }
            };
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), &init)
        }
    };
    resp.map_err(|e: JsValue| worker::Error::JsError(js::error_text(&e)))
}
