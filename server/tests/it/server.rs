//! `berth serve`'s HTTP server on a real socket, spoken to byte by byte.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use berth::{Config, Digest, Registry};
use berth_server::env::SystemEnv;
use berth_server::fs::FsStore;
use berth_server::server::{self, Options};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use client::Conn;

/// A small HTTP/1.1 client that shows what a test needs to see: 100 Continue, keep-alive.
pub mod client {
    use std::io;
    use std::net::SocketAddr;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    pub struct Conn {
        stream: BufReader<TcpStream>,
    }

    #[derive(Debug)]
    pub struct Reply {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Reply {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    impl Conn {
        pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Conn {
                stream: BufReader::new(stream),
            })
        }

        /// Send a request head; `Content-Length` is added when `len` is given.
        pub async fn head(
            &mut self,
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            len: Option<usize>,
        ) -> io::Result<()> {
            let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            if let Some(n) = len {
                head.push_str(&format!("content-length: {n}\r\n"));
            }
            head.push_str("\r\n");
            self.stream.get_mut().write_all(head.as_bytes()).await
        }

        pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
            self.stream.get_mut().write_all(data).await
        }

        /// Read one response, 1xx included. HEAD responses have no body.
        pub async fn reply(&mut self, head: bool) -> io::Result<Reply> {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            let status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
            let mut headers = Vec::new();
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let mut reply = Reply {
                status,
                headers,
                body: Vec::new(),
            };
            if !head && !(100..200).contains(&status) && status != 204 && status != 304 {
                let len: usize = reply
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| io::Error::other("no content-length"))?;
                reply.body = vec![0; len];
                self.stream.read_exact(&mut reply.body).await?;
            }
            Ok(reply)
        }

        /// One whole request and its final response.
        pub async fn request(
            &mut self,
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> io::Result<Reply> {
            let len =
                (method != "GET" && method != "HEAD" || !body.is_empty()).then_some(body.len());
            self.head(method, path, headers, len).await?;
            self.send(body).await?;
            loop {
                let r = self.reply(method == "HEAD").await?;
                if r.status >= 200 {
                    return Ok(r);
                }
            }
        }
    }

    /// `<location>?digest=` or `<location>&digest=`.
    pub fn with_digest(location: &str, digest: &str) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }
}

/// Start the `berth` binary with `serve --listen 127.0.0.1:0` and `args` in `cwd`; its address,
/// read from its log.
pub fn spawn_berth(args: &[&str], cwd: &Path) -> (Child, SocketAddr) {
    spawn_berth_bin(env!("CARGO_BIN_EXE_berth"), args, cwd)
}

/// [`spawn_berth`] with another build of the binary (the load test's release build).
pub fn spawn_berth_bin(bin: &str, args: &[&str], cwd: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-level", "info"])
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start berth");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // Shown when a test fails: what the server said went wrong.
            if line.contains("ERROR") || line.contains("WARN") {
                eprintln!("berth: {line}");
            }
            if let Some(at) = line.find("listening on http://") {
                let addr = line[at + "listening on http://".len()..].trim().to_owned();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("berth serve reports its address")
        .parse()
        .unwrap();
    (child, addr)
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    start_with(Options::default()).await
}

async fn start_with(options: Options) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("root")).await.unwrap();
    let registry = Arc::new(Registry::new(store, SystemEnv, Config::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = Options {
        grace: Duration::from_secs(60),
        ..options
    };
    let task = tokio::spawn(server::run(listener, registry, options, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed)
        .collect()
}

#[tokio::test]
async fn push_and_pull_on_one_connection() {
    let s = start().await;
    let mut c = Conn::connect(s.addr).await.unwrap();
    let layer = blob(3 << 20, 1);
    let ld = Digest::sha256(&layer).to_string();

    // Chunked upload: POST, a PATCH with Content-Range, a PATCH sent chunked, the closing PUT.
    let r = c
        .request("POST", "/v2/t/blobs/uploads/", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap().to_owned();
    let first = 1 << 20;
    let range = format!("0-{}", first - 1);
    let r = c
        .request(
            "PATCH",
            &location,
            &[("content-range", &range)],
            &layer[..first],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range"), Some(range.as_str()));
    let second = &layer[first..2 << 20];
    c.head(
        "PATCH",
        &location,
        &[("transfer-encoding", "chunked")],
        None,
    )
    .await
    .unwrap();
    for part in second.chunks(300_000) {
        c.send(format!("{:x}\r\n", part.len()).as_bytes())
            .await
            .unwrap();
        c.send(part).await.unwrap();
        c.send(b"\r\n").await.unwrap();
    }
    c.send(b"0\r\n\r\n").await.unwrap();
    let r = c.reply(false).await.unwrap();
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", (2 << 20) - 1).as_str())
    );
    let r = c
        .request(
            "PUT",
            &client::with_digest(&location, &ld),
            &[],
            &layer[2 << 20..],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // Monolithic upload of the config, then the manifest.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = Digest::sha256(config).to_string();
    let r = c
        .request(
            "POST",
            &format!("/v2/t/blobs/uploads/?digest={cd}"),
            &[],
            config,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let r = c
        .request(
            "PUT",
            "/v2/t/manifests/v1",
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            manifest.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    let r = c
        .request("GET", "/v2/t/manifests/v1", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, manifest.as_bytes());
    let r = c
        .request("HEAD", &format!("/v2/t/blobs/{ld}"), &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(layer.len().to_string().as_str())
    );
    let r = c
        .request("GET", &format!("/v2/t/blobs/{ld}"), &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == layer, "the whole blob reads back");
    // A range across the chunks it was pushed in and the chunks it is read in.
    let (from, to) = ((1 << 20) - 5, (2 << 20) + 5);
    let r = c
        .request(
            "GET",
            &format!("/v2/t/blobs/{ld}"),
            &[("range", &format!("bytes={from}-{to}"))],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {from}-{to}/{}", layer.len()).as_str())
    );
    assert!(r.body == layer[from..=to]);
}

#[tokio::test]
async fn expect_100_continue() {
    let s = start().await;
    let data = blob(100_000, 2);
    let d = Digest::sha256(&data).to_string();
    let mut c = Conn::connect(s.addr).await.unwrap();
    c.head(
        "POST",
        &format!("/v2/t/blobs/uploads/?digest={d}"),
        &[("expect", "100-continue")],
        Some(data.len()),
    )
    .await
    .unwrap();
    let r = c.reply(false).await.unwrap();
    assert_eq!(r.status, 100, "the server asks for the body");
    c.send(&data).await.unwrap();
    let r = c.reply(false).await.unwrap();
    assert_eq!(r.status, 201);

    // Refused before any byte moves: the final answer comes without 100.
    let mut c = Conn::connect(s.addr).await.unwrap();
    c.head(
        "POST",
        &format!("/v2/Bad/blobs/uploads/?digest={d}"),
        &[("expect", "100-continue")],
        Some(data.len()),
    )
    .await
    .unwrap();
    let r = c.reply(false).await.unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let mut s = start().await;
    let mut c = Conn::connect(s.addr).await.unwrap();
    let r = c
        .request("POST", "/v2/t/blobs/uploads/", &[], b"")
        .await
        .unwrap();
    let location = r.header("location").unwrap().to_owned();
    let data = blob(2 << 20, 3);
    c.head(
        "PATCH",
        &location,
        &[("expect", "100-continue")],
        Some(data.len()),
    )
    .await
    .unwrap();
    // 100 Continue: the handler is reading the body, so the request is in flight.
    assert_eq!(c.reply(false).await.unwrap().status, 100);
    c.send(&data[..1 << 20]).await.unwrap();

    // An idle keep-alive connection is closed by the shutdown.
    let mut idle = Conn::connect(s.addr).await.unwrap();
    assert_eq!(
        idle.request("GET", "/v2/", &[], b"").await.unwrap().status,
        200
    );

    s.stop.take().unwrap().send(()).unwrap();
    assert!(idle.reply(false).await.is_err(), "idle connection closed");
    c.send(&data[1 << 20..]).await.unwrap();
    let r = c.reply(false).await.unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str())
    );
    assert_eq!(r.header("connection"), Some("close"));
    let done = tokio::time::timeout(Duration::from_secs(60), s.task).await;
    done.expect("the server stops once the request is done")
        .unwrap()
        .unwrap();
    assert!(
        Conn::connect(s.addr).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn the_binary_starts_with_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // No --root: the README's first command, in a fresh directory.
    let (mut child, addr) = spawn_berth(&[], dir.path());
    let mut c = Conn::connect(addr).await.unwrap();
    let r = c.request("GET", "/v2/", &[], b"").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(dir.path().join("berth-data/blobs").is_dir());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
}

/// Past `max_connections`, a new connection gets 503 with Retry-After and is closed; once one
/// closes, the next is served.
#[tokio::test]
async fn connections_past_the_limit_get_503_and_a_retry_time() {
    let s = start_with(Options {
        max_connections: 2,
        ..Options::default()
    })
    .await;
    let mut a = Conn::connect(s.addr).await.unwrap();
    let mut b = Conn::connect(s.addr).await.unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.request("GET", "/v2/", &[], b"").await.unwrap().status,
            200
        );
    }
    let mut c = Conn::connect(s.addr).await.unwrap();
    let r = c.request("GET", "/v2/", &[], b"").await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(a);
    // The slot frees when the server sees the close.
    let mut served = false;
    for _ in 0..50 {
        let mut d = Conn::connect(s.addr).await.unwrap();
        if d.request("GET", "/v2/", &[], b"").await.unwrap().status == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
    assert_eq!(
        b.request("GET", "/v2/", &[], b"").await.unwrap().status,
        200
    );
}
