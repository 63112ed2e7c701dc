//! The web page on the Worker: `ui/` is uploaded as Workers static assets (`[assets]` in
//! wrangler.toml, binding `ASSETS`), so the wasm does not carry it. The Worker runs first for
//! every path and hands the page's own paths to the binding, adding the security headers
//! `berth serve` sends, unless `BERTH_UI = "false"`.

use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;

/// The same policy as `berth serve`'s (server/src/ui.rs).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const PATHS: [&str; 4] = ["/", "/index.html", "/app.js", "/style.css"];

/// The page's answer to a request for one of its files; `None` for anything else, or when
/// the page is off or the binding missing.
pub async fn serve(
    req: &web_sys::Request,
    method: &http::Method,
    path: &str,
    env: &worker::Env,
) -> worker::Result<Option<web_sys::Response>> {
    if (method != http::Method::GET && method != http::Method::HEAD) || !PATHS.contains(&path) {
        return Ok(None);
    }
    if env
        .var("BERTH_UI")
        .is_ok_and(|v| v.to_string().trim() == "false")
    {
        return Ok(None);
    }
    let Ok(assets) = env.assets("ASSETS") else {
        return Ok(None);
    };
    let fetcher: worker::worker_sys::Fetcher = assets.into_rpc();
    let promise = fetcher.fetch(req)?;
    let resp: web_sys::Response = JsFuture::from(promise).await?.dyn_into()?;
    let headers = web_sys::Headers::new_with_headers(&resp.headers())?;
    headers.set("content-security-policy", CSP)?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("x-frame-options", "DENY")?;
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status());
    init.set_headers(&headers);
    let body = resp.body();
    Ok(Some(
        web_sys::Response::new_with_opt_readable_stream_and_init(body.as_ref(), &init)?,
    ))
}
