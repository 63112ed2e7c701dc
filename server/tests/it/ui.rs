//! The web page as `berth serve` serves it: its files at `/` with their types, validators and
//! security headers, and nothing of it with `--no-ui`.

use std::process::Command;

use crate::server::client::Conn;
use crate::server::spawn_berth;

fn stop(child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut child = child;
    let _ = child.wait();
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_with_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = spawn_berth(&["--root", "data"], dir.path());
    let mut c = Conn::connect(addr).await.unwrap();
    for (path, ty, needle) in [
        ("/", "text/html; charset=utf-8", "<script src=\"app.js\""),
        (
            "/index.html",
            "text/html; charset=utf-8",
            "<title>berth</title>",
        ),
        ("/app.js", "text/javascript; charset=utf-8", "textContent"),
        ("/style.css", "text/css; charset=utf-8", "@media"),
    ] {
        let r = c.request("GET", path, &[], b"").await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        assert!(String::from_utf8_lossy(&r.body).contains(needle), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("default-src 'none'"));
        let etag = r.header("etag").unwrap().to_owned();
        let again = c
            .request("GET", path, &[("if-none-match", &etag)], b"")
            .await
            .unwrap();
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        let head = c.request("HEAD", path, &[], b"").await.unwrap();
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
    // No inline script in the page itself.
    let page = c.request("GET", "/", &[], b"").await.unwrap();
    let html = String::from_utf8_lossy(&page.body).to_string();
    assert_eq!(html.matches("<script").count(), 1);
    assert!(
        !html.contains("<script>") && !html.contains(" on"),
        "{html}"
    );
    // Other paths, and other methods, are the registry's.
    let r = c.request("GET", "/other.js", &[], b"").await.unwrap();
    assert_eq!(r.status, 404);
    let r = c.request("POST", "/", &[], b"").await.unwrap();
    assert_eq!(r.status, 404);
    let r = c.request("GET", "/v2/", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    stop(child);
}

#[tokio::test]
async fn no_ui_turns_the_page_off() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = spawn_berth(&["--root", "data", "--no-ui"], dir.path());
    let mut c = Conn::connect(addr).await.unwrap();
    for path in ["/", "/app.js", "/index.html"] {
        let r = c.request("GET", path, &[], b"").await.unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert!(r.header("content-security-policy").is_none());
    }
    let r = c
        .request("GET", "/v2/_berth/repositories", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "the extension is the API's, not the page's");
    stop(child);
}
