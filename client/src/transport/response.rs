//! Reading a registry's answers: errors from statuses and from broken connections,
//! `Retry-After`, and bodies read whole within a bound.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, HeaderMap, RETRY_AFTER};
use reqwest::{Method, Response};

use crate::error::{Error, ErrorKind, Result};

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

pub(super) fn is_tls(e: &reqwest::Error) -> bool {
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

pub(crate) fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The body, whole, failing past `limit` bytes (before reading, when the length says so).
pub(crate) async fn read_limited(resp: Response, limit: usize) -> Result<Bytes> {
    let too_large = || {
        Error::new(
            ErrorKind::Registry,
            format!("response larger than {limit} bytes"),
        )
    };
    if content_length(&resp).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Error::new(ErrorKind::Network, format!("reading the response: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}
