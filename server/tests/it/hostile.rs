//! Hostile input on a real socket: every attempt gets a clear 4xx, or a closed connection where
//! no request was completed; the server keeps serving everyone else, and nothing outside the
//! storage root is touched.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth::{Config, Digest, Registry};
use berth_server::env::SystemEnv;
use berth_server::fs::FsStore;
use berth_server::server::{self, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::server::client::{Conn, Reply, with_digest};

/// Short limits, so the slow-client tests finish quickly.
pub const LIMIT: Duration = Duration::from_secs(2);
/// Bounds a hung test; never a pass/fail threshold.
const HANG: Duration = Duration::from_secs(60);

pub struct Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// A server on `<tmp>/root`, with a file beside the root that must stay untouched.
pub async fn start() -> Server {
    start_with(LIMIT).await
}

/// [`start`] with `limit` as the header and stall timeouts.
pub async fn start_with(limit: Duration) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("outside"), b"keep").unwrap();
    let store = FsStore::open(dir.path().join("root")).await.unwrap();
    let registry = Arc::new(Registry::new(store, SystemEnv, Config::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = Options {
        header_timeout: limit,
        stall_timeout: limit,
        ..Options::default()
    };
    tokio::spawn(server::run(
        listener,
        registry,
        options,
        std::future::pending(),
    ));
    Server { addr, dir }
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            }
        }
    }
    out
}

/// Only `root/` and the untouched `outside` file sit in the test's directory.
fn nothing_outside(s: &Server) {
    let top: BTreeSet<PathBuf> = tree(s.dir.path())
        .into_iter()
        .filter(|p| p.components().count() == 1)
        .collect();
    let want: BTreeSet<PathBuf> = ["outside", "root"].iter().map(PathBuf::from).collect();
    assert_eq!(top, want);
    assert_eq!(
        std::fs::read(s.dir.path().join("outside")).unwrap(),
        b"keep"
    );
    for p in tree(&s.root()) {
        let name = p.to_string_lossy();
        assert!(!name.contains("..") && !name.contains('\\'), "{name}");
    }
}

/// The server still answers a well-behaved client.
async fn still_serving(addr: SocketAddr) {
    let mut c = Conn::connect(addr).await.unwrap();
    let r = timeout(HANG, c.request("GET", "/v2/", &[], b""))
        .await
        .expect("served in time")
        .unwrap();
    assert_eq!(r.status, 200);
}

/// One request on a fresh connection: its reply, or `None` if the server closed it unanswered.
async fn raw(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = timeout(HANG, async {
        let mut buf = [0; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    });
    read.await.expect("an answer or a close in time");
    let line = String::from_utf8_lossy(&out);
    line.split(' ').nth(1).and_then(|s| s.parse().ok())
}

async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut c = Conn::connect(addr).await.unwrap();
    timeout(HANG, c.request(method, path, &[], body))
        .await
        .expect("answered in time")
        .unwrap()
}

fn is_client_error(status: u16) -> bool {
    (400..500).contains(&status)
}

#[tokio::test]
async fn traversal_is_refused_and_touches_nothing() {
    let s = start().await;
    let d = Digest::sha256(b"x").to_string();
    let long = "a".repeat(256);
    let names = [
        "..",
        "a/..",
        "../../etc",
        "%2e%2e",
        "a/%2e%2e/b",
        "a%2Fb",
        "..%2F..%2Fetc",
        "a%5Cb",
        "a%00b",
        "/etc",
        "tmp/../../outside",
        long.as_str(),
    ];
    let refs = [
        "..",
        "..%2F..%2Foutside",
        "%2e%2e",
        "a%5C..%5Cb",
        "a%00",
        "sha256:..%2F..%2Foutside",
        "sha256:%2e%2e",
    ];
    let digests = [
        "sha256:..",
        "sha256:../../outside",
        "sha256:%2e%2e%2f%2e%2e",
        "sha256:abc",
        "sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256",
        ":",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000%00",
    ];
    let ids = [
        "..",
        "..%2F..%2Foutside",
        "%2e%2e%2f%2e%2e%2foutside",
        "..%5C..%5Coutside",
        "a%00",
        "%2Fetc%2Fpasswd",
    ];
    let mut paths = Vec::new();
    for n in names {
        paths.push(format!("/v2/{n}/manifests/latest"));
        paths.push(format!("/v2/{n}/blobs/{d}"));
        paths.push(format!("/v2/{n}/blobs/uploads/"));
        paths.push(format!("/v2/{n}/blobs/uploads/?digest={d}"));
        paths.push(format!("/v2/{n}/tags/list"));
    }
    for r in refs {
        paths.push(format!("/v2/r/manifests/{r}"));
    }
    for x in digests {
        paths.push(format!("/v2/r/blobs/{x}"));
        paths.push(format!("/v2/r/manifests/{x}"));
        paths.push(format!("/v2/r/blobs/uploads/?digest={x}"));
        paths.push(format!("/v2/r/referrers/{x}"));
    }
    for id in ids {
        paths.push(format!("/v2/r/blobs/uploads/{id}"));
        paths.push(format!("/v2/r/blobs/uploads/{id}?digest={d}"));
    }
    paths.push(format!(
        "/v2/r/blobs/uploads/?mount={d}&from=..%2F..%2Foutside"
    ));
    for path in &paths {
        for method in ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"] {
            let r = request(s.addr, method, path, b"x").await;
            assert!(
                is_client_error(r.status),
                "{method} {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    // Bytes that are not a valid request target at all: refused by the HTTP parser.
    for target in [
        &b"/v2/a\\..\\b/manifests/x"[..],
        b"/v2/a\0b/manifests/x",
        b"/v2/r/blobs/uploads/..\\..\\x",
        b"../../outside",
        b"/v2/r/manifests/a b",
    ] {
        let mut req = b"PUT ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx");
        let status = raw(s.addr, &req).await;
        assert!(
            status.is_none_or(is_client_error),
            "{}: {status:?}",
            String::from_utf8_lossy(target)
        );
    }
    nothing_outside(&s);
    still_serving(s.addr).await;
}

#[tokio::test]
async fn absurd_page_sizes_and_ranges() {
    let s = start().await;
    let data = vec![7u8; 1000];
    let d = Digest::sha256(&data).to_string();
    let r = request(
        s.addr,
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={d}"),
        &data,
    )
    .await;
    assert_eq!(r.status, 201);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":1000}},"layers":[]}}"#
    );
    let mut c = Conn::connect(s.addr).await.unwrap();
    let ct = [("content-type", "application/vnd.oci.image.manifest.v1+json")];
    let r = c
        .request("PUT", "/v2/r/manifests/t", &ct, manifest.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    for n in ["99999999999999999999999", "18446744073709551615", "0"] {
        for path in ["/v2/_catalog", "/v2/r/tags/list"] {
            let r = request(s.addr, "GET", &format!("{path}?n={n}"), b"").await;
            assert_eq!(
                r.status,
                if n.len() > 20 { 400 } else { 200 },
                "{path} n={n}"
            );
        }
    }
    for n in ["-1", "abc", "1e9", "%00"] {
        let r = request(s.addr, "GET", &format!("/v2/_catalog?n={n}"), b"").await;
        assert_eq!(r.status, 400, "n={n}");
    }

    let blob = format!("/v2/r/blobs/{d}");
    // Several ranges, or not a byte range at all: ignored, the whole blob (RFC 9110).
    for (range, want) in [
        ("bytes=0-1,5-6", 200),
        ("bytes=0-1, 5-6", 200),
        ("bytes=abc", 200),
        ("bytes=5-1", 200),
        ("bytes=--1", 200),
        ("items=0-1", 200),
        ("bytes=-0", 416),
        ("bytes=1000-", 416),
        ("bytes=99999999999999999999999-", 416),
        ("bytes=0-99999999999999999999999", 206),
        ("bytes=-99999999999999999999999", 206),
    ] {
        let r = c
            .request("GET", &blob, &[("range", range)], b"")
            .await
            .unwrap();
        assert_eq!(r.status, want, "{range}");
        match want {
            206 => {
                assert_eq!(r.body, data);
                assert_eq!(r.header("content-range"), Some("bytes 0-999/1000"));
            }
            200 => {
                assert_eq!(r.body, data, "{range}");
                assert_eq!(r.header("content-range"), None, "{range}");
            }
            _ => assert_eq!(r.header("content-range"), Some("bytes */1000"), "{range}"),
        }
    }

    // Upload chunks whose Content-Range is nonsense.
    let r = c
        .request("POST", "/v2/r/blobs/uploads/", &[], b"")
        .await
        .unwrap();
    let location = r.header("location").unwrap().to_owned();
    for cr in [
        "abc",
        "5-1",
        "0-99999999999999999999999",
        "0-1,2-3",
        "10-11",
        "-1-0",
    ] {
        let r = c
            .request("PATCH", &location, &[("content-range", cr)], b"xy")
            .await
            .unwrap();
        assert!(matches!(r.status, 400 | 416), "{cr}: {}", r.status);
    }
    let r = c
        .request("PUT", &with_digest(&location, &d), &[], &data)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "the upload is still usable");
    still_serving(s.addr).await;
}

#[tokio::test]
async fn short_bodies_and_huge_manifests() {
    let s = start().await;
    // Content-Length larger than the body, then the client half-closes.
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"POST /v2/r/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000 HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\nonly ten b",
    )
    .await
    .unwrap();
    conn.shutdown().await.unwrap();
    let mut out = Vec::new();
    timeout(HANG, conn.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .ok();
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || text.starts_with("HTTP/1.1 4"),
        "a short body gets a 4xx or a close: {text}"
    );

    // The same, but the client keeps the connection open and silent: the stall limit ends it.
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"PUT /v2/r/manifests/x HTTP/1.1\r\nhost: x\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    timeout(HANG, conn.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .ok();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 4"), "{text}");

    // Lengths that cannot be trusted: refused by the HTTP parser, or by the registry.
    let upload = "/v2/r/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for lengths in [
        "content-length: 1\r\ncontent-length: 2",
        "content-length: -1",
        "content-length: 99999999999999999999999",
        "content-length: 1x",
    ] {
        let req = format!("POST {upload} HTTP/1.1\r\nhost: x\r\n{lengths}\r\n\r\nxx");
        let status = raw(s.addr, req.as_bytes()).await;
        assert!(status.is_none_or(is_client_error), "{lengths}: {status:?}");
    }
    for last in ["..%2F..%2Foutside", "%00", &"z".repeat(5000)] {
        let r = request(s.addr, "GET", &format!("/v2/_catalog?last={last}"), b"").await;
        assert_eq!(r.status, 200, "last={last}");
    }

    // A 50 MiB manifest, with and without Content-Length: 413, and the body need not be read.
    let big = vec![b' '; 50 << 20];
    let ct = ("content-type", "application/vnd.oci.image.manifest.v1+json");
    for chunked in [false, true] {
        let mut c = Conn::connect(s.addr).await.unwrap();
        if chunked {
            c.head(
                "PUT",
                "/v2/r/manifests/big",
                &[ct, ("transfer-encoding", "chunked")],
                None,
            )
            .await
            .unwrap();
        } else {
            c.head("PUT", "/v2/r/manifests/big", &[ct], Some(big.len()))
                .await
                .unwrap();
        }
        let send = async {
            for part in big.chunks(1 << 20) {
                let sent = if chunked {
                    let mut frame = format!("{:x}\r\n", part.len()).into_bytes();
                    frame.extend_from_slice(part);
                    frame.extend_from_slice(b"\r\n");
                    c.send(&frame).await
                } else {
                    c.send(part).await
                };
                if sent.is_err() {
                    return;
                }
            }
            let _ = c.send(b"0\r\n\r\n").await;
        };
        // The server may answer and close before the body is all sent.
        let _ = timeout(Duration::from_secs(10), send).await;
        let r = timeout(HANG, c.reply(false))
            .await
            .expect("answered in time");
        assert_eq!(r.unwrap().status, 413, "chunked: {chunked}");
    }

    // JSON nested 100,000 levels deep: MANIFEST_INVALID, no stack overflow.
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let mut body = String::from(r#"{"schemaVersion":2,"config":"#);
        body.push_str(&open.repeat(100_000));
        body.push_str(&close.repeat(100_000));
        body.push('}');
        let mut c = Conn::connect(s.addr).await.unwrap();
        let r = c
            .request("PUT", "/v2/r/manifests/deep", &[ct], body.as_bytes())
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("MANIFEST_INVALID"));
    }
    let r = request(s.addr, "GET", "/v2/r/manifests/big", b"").await;
    assert_eq!(r.status, 404);
    nothing_outside(&s);
    still_serving(s.addr).await;
}

#[tokio::test]
async fn oversized_and_slow_heads() {
    let s = start().await;
    // A 64 KiB header value: 431, or a close.
    let value = "v".repeat(64 << 10);
    let req = format!("GET /v2/ HTTP/1.1\r\nhost: x\r\nx-big: {value}\r\n\r\n");
    let status = raw(s.addr, req.as_bytes()).await;
    assert!(matches!(status, None | Some(431)), "{status:?}");
    // Many small headers adding up past the limit.
    let mut req = String::from("GET /v2/ HTTP/1.1\r\nhost: x\r\n");
    for i in 0..90 {
        req.push_str(&format!("x-h{i}: {}\r\n", "v".repeat(1000)));
    }
    req.push_str("\r\n");
    let status = raw(s.addr, req.as_bytes()).await;
    assert!(matches!(status, None | Some(431)), "{status:?}");

    // A head sent a byte at a time, slower than the header timeout allows: the connection is
    // closed before the head completes, and others are served meanwhile.
    let slow = tokio::spawn({
        let addr = s.addr;
        async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let head = b"GET /v2/ HTTP/1.1\r\nhost: localhost\r\nx-slow: 1234567890\r\n\r\n";
            for b in head {
                if c.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(LIMIT / 4).await;
                // A closed connection reads EOF (or a 408) before the head is done.
                let mut buf = [0u8; 512];
                match timeout(Duration::from_millis(1), c.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(n)) => return String::from_utf8_lossy(&buf[..n]).contains(" 408 "),
                    Err(_) => {}
                }
            }
            false
        }
    });
    still_serving(s.addr).await;
    assert!(
        timeout(HANG, slow).await.unwrap().unwrap(),
        "slow head cut off"
    );

    // An idle keep-alive connection is closed after the header timeout.
    let mut c = Conn::connect(s.addr).await.unwrap();
    assert_eq!(
        c.request("GET", "/v2/", &[], b"").await.unwrap().status,
        200
    );
    let next = timeout(HANG, c.reply(false)).await.expect("closed in time");
    assert!(next.is_err(), "idle connection closed");
    still_serving(s.addr).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let s = start().await;
    let data: Vec<u8> = (0..32u32 << 20).map(|i| ((i * 7) >> 3) as u8).collect();
    let d = Digest::sha256(&data).to_string();
    let r = request(
        s.addr,
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={d}"),
        &data,
    )
    .await;
    assert_eq!(r.status, 201);
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(format!("GET /v2/r/blobs/{d} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read nothing until well past the stall limit; then the response stops short.
    tokio::time::sleep(LIMIT * 3).await;
    still_serving(s.addr).await;
    let mut got = Vec::new();
    timeout(HANG, conn.read_to_end(&mut got))
        .await
        .expect("closed in time")
        .ok();
    assert!(got.len() < data.len(), "the stalled response was cut off");
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host` is a 400; HTTP/1.0 needs none.
#[tokio::test]
async fn http11_without_host_is_400() {
    let s = start().await;
    let status = raw(s.addr, b"GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, Some(400));
    let status = raw(
        s.addr,
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, Some(200));
    let status = raw(s.addr, b"GET /v2/ HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, Some(200));
}

/// A client trickling a body, a byte at a time each well within the stall limit, is cut off
/// once a whole limit passes without MIN_PROGRESS bytes: it cannot hold a connection forever.
#[tokio::test]
async fn a_trickled_body_is_cut_off() {
    let limit = Duration::from_millis(600);
    let s = start_with(limit).await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"POST /v2/r/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000 HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut cut = false;
    // A byte every 150 ms: before the fix, each one reset the 600 ms clock.
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if conn.write_all(b"x").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = timeout(Duration::from_millis(1), conn.read(&mut buf)).await {
            cut = n == 0 || buf.starts_with(b"HTTP/1.1 4");
            if cut {
                break;
            }
        }
    }
    assert!(cut, "still open after {:?}", started.elapsed());
}
