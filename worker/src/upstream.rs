//! The mirror's upstream requests ([`berth::mirror::Upstream`]) over the Workers `fetch`.
//!
//! A request goes to the upstream's base URL with the core's path and query and `Accept`, and
//! nothing of the client's (its `Authorization` never leaves the Worker). A 401 is answered
//! once: a `Bearer` challenge with a token from its realm (anonymous, or with the upstream's
//! Basic credentials from `BERTH_UPSTREAM_AUTH`), a `Basic` challenge with those credentials.
//! What worked is kept per upstream and scope for the isolate's life, tokens until their
//! `expires_in`. Redirects (blob GETs to a CDN) are followed here, with the credentials only on
//! the upstream's own origin. A response body stays the platform's stream ([`JsBody`]): the core
//! reads every byte of it through its digest check, in large chunks.

use std::cell::RefCell;
use std::collections::HashMap;

use http::{HeaderMap, Request, Response, StatusCode, header};
use js_sys::futures::JsFuture;
use wasm_bindgen::JsCast;

use berth::Body;
use berth::auth::Challenge;
use berth::mirror::Upstream;

use crate::body::JsBody;
use crate::config::MirrorSettings;
use crate::js;
use crate::text;

/// How long an upstream may take to answer with its response head (the body is not bounded:
/// a large blob streams for as long as it takes).
const ANSWER_MS: u32 = 30_000;
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// How long a `Basic` scheme that worked is sent without asking again.
const BASIC_SECS: f64 = 3600.0;

thread_local! {
    /// `Authorization` values that worked, by (upstream, scope), with when they expire
    /// (milliseconds, `Date.now()`).
    static TOKENS: RefCell<HashMap<(String, String), (String, f64)>> = RefCell::new(HashMap::new());
}

fn cached(key: &(String, String)) -> Option<String> {
    TOKENS.with(|t| {
        let mut t = t.borrow_mut();
        let now = js_sys::Date::now();
        t.retain(|_, (_, until)| *until > now);
        t.get(key).map(|(v, _)| v.clone())
    })
}

fn remember(key: (String, String), value: String, secs: f64) {
    let until = js_sys::Date::now() + secs * 1000.0;
    TOKENS.with(|t| t.borrow_mut().insert(key, (value, until)));
}

fn forget(key: &(String, String)) {
    TOKENS.with(|t| t.borrow_mut().remove(key));
}

/// One upstream: where it is and what it logs in with.
struct Site {
    ns: String,
    base: String,
    /// `base64(user:password)`.
    basic: Option<String>,
}

/// The upstreams of the mirror, as [`MirrorSettings`] give them.
pub struct WorkerUpstream {
    sites: Vec<Site>,
}

impl WorkerUpstream {
    pub fn new(settings: &MirrorSettings) -> WorkerUpstream {
        let sites = settings
            .config
            .upstreams
            .iter()
            .map(|u| Site {
                ns: u.ns.clone(),
                base: u.url.clone(),
                basic: settings
                    .credentials
                    .iter()
                    .find(|(ns, _)| *ns == u.ns)
                    .map(|(_, b)| b.clone()),
            })
            .collect();
        WorkerUpstream { sites }
    }
}

impl Upstream for WorkerUpstream {
    async fn send(&self, ns: &str, req: Request<()>) -> Result<Response<Body>, String> {
        let site = self
            .sites
            .iter()
            .find(|s| s.ns == ns)
            .ok_or_else(|| format!("no upstream {ns}"))?;
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{path}", site.base);
        let method = req.method().as_str();
        let head = req.method() == http::Method::HEAD;
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The scope the registry will most likely ask for: what a token is kept under.
        let key = (
            site.ns.clone(),
            format!("repository:{}:pull", text::repository(path)),
        );
        let known = cached(&key);
        let first = fetch(&url, method, accept, known.as_deref()).await?;
        if first.status() != 401 {
            return Ok(response(first, head));
        }
        if known.is_some() {
            forget(&key);
        }
        let challenge = first
            .headers()
            .get("www-authenticate")
            .ok()
            .flatten()
            .and_then(|h| Challenge::parse(&h));
        let (auth, secs) = match challenge {
            Some(Challenge::Basic) => match &site.basic {
                Some(b) => (format!("Basic {b}"), BASIC_SECS),
                None => return Ok(response(first, head)),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scopes,
            }) => match token(site, &realm, service.as_deref(), &scopes).await {
                Ok((token, secs)) => (format!("Bearer {token}"), secs),
                Err(e) => {
                    worker::console_warn!("berth: upstream {ns}: no token: {e}");
                    return Ok(response(first, head));
                }
            },
            None => return Ok(response(first, head)),
        };
        discard(&first);
        let second = fetch(&url, method, accept, Some(&auth)).await?;
        if second.status() != 401 {
            remember(key, auth, secs);
        }
        Ok(response(second, head))
    }
}

/// A token from the realm of a `Bearer` challenge, and how many seconds to keep it.
async fn token(
    site: &Site,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
) -> Result<(String, f64), String> {
    let mut url = realm.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    if let Some(s) = service {
        url.push_str(&format!("{sep}service={}", berth::query::encode(s)));
        sep = '&';
    }
    for s in scopes {
        url.push_str(&format!("{sep}scope={}", berth::query::encode(s)));
        sep = '&';
    }
    let basic = site.basic.as_ref().map(|b| format!("Basic {b}"));
    // The realm is on another origin more often than not: credentials go to it as they
    // would from docker, and to nowhere it redirects.
    let resp = fetch(&url, "GET", "application/json", basic.as_deref()).await?;
    let status = resp.status();
    let body = resp.body();
    let bytes = match body {
        Some(stream) => Body::Stream(js::read_stream(&stream))
            .collect(64 << 10)
            .await
            .map_err(|e| match e {
                Some(e) => format!("reading the token: {e}"),
                None => "the token answer is too large".to_owned(),
            })?,
        None => Default::default(),
    };
    if !(200..300).contains(&status) {
        return Err(format!("the token endpoint answered {status}"));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| "the token answer is not JSON".to_owned())?;
    let token = ["token", "access_token"]
        .iter()
        .find_map(|k| {
            doc.get(k)
                .and_then(|v| v.as_str())
                .filter(|t| !t.is_empty())
        })
        .ok_or("the token answer holds no token")?;
    let lifetime = doc
        .get("expires_in")
        .and_then(|v| v.as_u64())
        .unwrap_or(60)
        .max(30) as f64;
    // A little early, so that a token never expires between the check and its use.
    Ok((token.to_owned(), lifetime - 10.0))
}

/// One request, following redirects; `authorization` only on the first URL's origin.
async fn fetch(
    url: &str,
    method: &str,
    accept: &str,
    authorization: Option<&str>,
) -> Result<web_sys::Response, String> {
    let home = text::origin(url).to_owned();
    let mut url = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let auth = authorization.filter(|_| text::origin(&url) == home);
        let promise = js::upstream_fetch(&url, method, accept, auth.unwrap_or(""), ANSWER_MS);
        let resp: web_sys::Response = JsFuture::from(promise)
            .await
            .map_err(|e| js::error_text(&e))?
            .dyn_into()
            .map_err(|_| "fetch gave no Response".to_owned())?;
        let location = match resp.status() {
            301 | 302 | 303 | 307 | 308 => resp.headers().get("location").ok().flatten(),
            _ => None,
        };
        let Some(location) = location else {
            return Ok(resp);
        };
        discard(&resp);
        url = text::resolve(&url, &location);
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// Let go of a response body no one will read.
fn discard(resp: &web_sys::Response) {
    if let Some(body) = resp.body() {
        let _ = body.cancel();
    }
}

/// The platform response as the core's: the body stays a platform stream.
fn response(resp: web_sys::Response, head: bool) -> Response<Body> {
    let mut headers = HeaderMap::from(&worker::Headers(resp.headers()));
    // fetch decodes a compressed body: its length is no longer the one announced.
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    if encoded && !head {
        headers.remove(header::CONTENT_ENCODING);
        headers.remove(header::CONTENT_LENGTH);
    }
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = match resp.body() {
        Some(stream) if head => {
            let _ = stream.cancel();
            Body::Empty
        }
        Some(stream) => JsBody::body(stream, len),
        None => Body::Empty,
    };
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::from_u16(resp.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    *out.headers_mut() = headers;
    out
}
