//! The web page (`ui/` at the top of the repository), built into the binary and served at `/`
//! unless `--no-ui`. The page reads the registry's own API, so it needs nothing else here.

use std::sync::OnceLock;

use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode, header};

use berth::Digest;
use berth::body::Body;

/// No inline script or style, nothing from another origin, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const FILES: [(&str, &[u8], &str); 3] = [
    (
        "/index.html",
        include_bytes!("../../ui/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/app.js",
        include_bytes!("../../ui/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/style.css",
        include_bytes!("../../ui/style.css"),
        "text/css; charset=utf-8",
    ),
];

/// The bytes every file adds to the binary.
pub fn size() -> usize {
    FILES.iter().map(|(_, b, _)| b.len()).sum()
}

fn etags() -> &'static [String; 3] {
    static TAGS: OnceLock<[String; 3]> = OnceLock::new();
    TAGS.get_or_init(|| FILES.map(|(_, b, _)| format!("\"{}\"", &Digest::sha256(b).hex()[..32])))
}

/// The page's answer to `req`, or `None` when the path is not one of its files (the registry
/// answers those).
pub fn serve<B>(req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let path = match req.uri().path() {
        "/" => "/index.html",
        p => p,
    };
    let i = FILES.iter().position(|(p, _, _)| *p == path)?;
    let (_, bytes, content_type) = FILES[i];
    let etag = &etags()[i];
    let fresh = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == etag || t.trim() == "*");
    let mut resp = if fresh {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if req.method() == Method::HEAD {
        Response::new(Body::Empty)
    } else {
        Response::new(Body::from(bytes::Bytes::from_static(bytes)))
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if !fresh {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time: the names are not versioned, the ETag makes it cheap.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Some(resp)
}
