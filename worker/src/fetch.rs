//! The adapter: the fetch event becomes an `http::Request<berth::Body>`, goes through
//! [`berth::Registry::handle`] over the R2 store, and comes back as a JS `Response`.

use std::cell::RefCell;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use wasm_bindgen::JsValue;
use worker::{console_error, event};

use berth::error::InternalError;
use berth::{Auth, Body, Registry};

use crate::body::JsBody;
use crate::config::Settings;
use crate::js;
use crate::r2::R2Store;

/// The R2 bucket binding's name in wrangler.toml.
const BUCKET: &str = "BUCKET";
/// Test routes, served only when `BERTH_CONTRACT_TESTS` is set: the storage contract suite on
/// the bucket, and a listing of the bucket's keys under `?prefix=`.
const CONTRACT_ROUTE: &str = "/_berth/contract";
const KEYS_ROUTE: &str = "/_berth/keys";

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
}

/// The policy from the secrets, parsed once per isolate and secret values.
fn auth(policy: &str, key: &str) -> Result<Arc<Auth>, String> {
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
    let mut registry = Registry::new(store, Platform, settings.config.clone());
    if let Some((policy, key)) = &settings.auth {
        // A policy that does not load shuts the registry rather than opening it.
        let auth = auth(policy, key)
            .map_err(|e| worker::Error::RustError(format!("BERTH_AUTH_POLICY: {e}")))?;
        registry = registry.with_auth(auth);
    }
    Ok((registry, settings))
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
    let req = request(&req)?;
    if settings.contract_tests {
        match req.uri().path() {
            CONTRACT_ROUTE => return contract(registry.store()).await,
            KEYS_ROUTE => return keys(registry.store(), req.uri().query()).await,
            _ => {}
        }
    }
    let resp = registry.handle(req).await;
    if let Some(InternalError(detail)) = resp.extensions().get::<InternalError>() {
        console_error!("berth: {detail}");
    }
    response(resp)
}

/// Drop upload sessions idle past `BERTH_UPLOAD_EXPIRY`, with their R2 objects and multipart
/// uploads (wrangler.toml's cron trigger).
#[event(scheduled)]
async fn scheduled(
    _event: worker::ScheduledEvent,
    env: worker::Env,
    _ctx: worker::ScheduleContext,
) {
    match registry(&env) {
        Ok((registry, _)) => {
            if let Err(e) = registry.purge_uploads().await {
                console_error!("berth: purging uploads: {e}");
            }
        }
        Err(e) => console_error!("berth: {e}"),
    }
}

async fn contract(store: &R2Store) -> worker::Result<web_sys::Response> {
    let tag = js::random_hex(8);
    let (status, text) = match berth::storage::contract::run(store, &tag).await {
        Ok(()) => (200, "ok\n".to_owned()),
        Err(e) => (500, format!("contract failed: {e}\n")),
    };
    let mut resp = http::Response::new(Body::from(text));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response(resp)
}

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
    let mut out = http::Request::builder()
        .method(req.method().as_str())
        .uri(req.url())
        .body(body)?;
    *out.headers_mut() = headers;
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
