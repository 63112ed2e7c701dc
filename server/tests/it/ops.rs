//! Operations: `/metrics` read by a real OpenMetrics parser (Python's `prometheus_client`)
//! after a known sequence of requests; liveness and readiness; request ids; JSON log lines.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use berth::Digest;
use serde_json::Value;

/// `berth serve` with `args`; its address, and its log lines as they come. The caller
/// [`stop`]s it.
#[allow(clippy::zombie_processes)]
fn spawn(args: &[&str], cwd: &Path) -> (Child, SocketAddr, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--root", "data"])
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start berth");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let marker = "listening on http://";
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("berth serve reports its address");
        if let Some(at) = line.find(marker) {
            let rest = &line[at + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                .unwrap_or(rest.len());
            return (child, rest[..end].parse().unwrap(), rx);
        }
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Every sample of an OpenMetrics text, as Python's `prometheus_client` parses it:
/// `(name, labels) -> value`.
fn parse(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let script = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        out = []\n\
        for fam in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut py = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (tests/setup.sh installs prometheus_client)");
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    samples.into_iter().map(|(n, l, v)| ((n, l), v)).collect()
}

type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn get(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples.get(&(name.to_owned(), labels)).copied()
}

fn requests(samples: &Samples, endpoint: &str, method: &str, status: &str) -> f64 {
    get(
        samples,
        "berth_http_requests_total",
        &[
            ("endpoint", endpoint),
            ("method", method),
            ("status", status),
        ],
    )
    .unwrap_or(0.0)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn scrape(c: &reqwest::Client, base: &str) -> Samples {
    let resp = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    parse(&resp.text().await.unwrap())
}

/// Push one blob and a manifest naming it; the manifest's bytes.
async fn push(c: &reqwest::Client, base: &str, repo: &str, tag: &str, blob: &[u8]) -> Vec<u8> {
    push_as(c, base, repo, tag, blob, None).await
}

/// [`push`] with Basic credentials.
async fn push_as(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    blob: &[u8],
    user: Option<(&str, &str)>,
) -> Vec<u8> {
    let auth = |r: reqwest::RequestBuilder| match user {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    let digest = Digest::sha256(blob);
    let r = auth(c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}")))
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let config = Digest::sha256(b"{}");
    let r = auth(c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={config}")))
        .body(b"{}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest.to_string(), "size": blob.len()}]
    })
    .to_string()
    .into_bytes();
    let r = auth(c.put(format!("{base}/v2/{repo}/manifests/{tag}")))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    manifest
}

#[tokio::test]
async fn metrics_count_a_known_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr, _log) = spawn(&[], dir.path());
    let base = format!("http://{addr}");
    let c = http();

    // The pass at start (the first tick of --gc-interval) shows as one finished pass.
    let mut samples = scrape(&c, &base).await;
    for _ in 0..200 {
        if get(
            &samples,
            "berth_gc_passes_total",
            &[("outcome", "finished")],
        )
        .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        samples = scrape(&c, &base).await;
    }
    let scrapes_before = requests(&samples, "metrics", "GET", "200");

    let blob = vec![7u8; 100_000];
    assert_eq!(
        c.get(format!("{base}/v2/")).send().await.unwrap().status(),
        200
    );
    let manifest = push(&c, &base, "team/app", "v1", &blob).await;
    let r = c
        .head(format!(
            "{base}/v2/team/app/blobs/{}",
            Digest::sha256(&blob)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{base}/v2/team/app/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), manifest.len());
    for _ in 0..3 {
        let r = c
            .get(format!("{base}/v2/team/app/manifests/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = c
        .get(format!(
            "{base}/v2/team/app/blobs/{}",
            Digest::sha256(&blob)
        ))
        .send()
        .await;
    assert_eq!(r.unwrap().bytes().await.unwrap().len(), blob.len());

    let s = scrape(&c, &base).await;
    assert_eq!(requests(&s, "base", "GET", "200"), 1.0);
    assert_eq!(requests(&s, "uploads", "POST", "201"), 2.0);
    assert_eq!(requests(&s, "manifest", "PUT", "201"), 1.0);
    assert_eq!(requests(&s, "blob", "HEAD", "200"), 1.0);
    assert_eq!(requests(&s, "blob", "GET", "200"), 1.0);
    assert_eq!(requests(&s, "manifest", "GET", "200"), 1.0);
    assert_eq!(requests(&s, "manifest", "GET", "404"), 3.0);
    assert_eq!(requests(&s, "metrics", "GET", "200"), scrapes_before + 1.0);
    // No repository name anywhere in a label.
    assert!(
        s.keys()
            .all(|(_, l)| l.values().all(|v| !v.contains("team")))
    );

    let bytes = |name: &str, endpoint: &str| get(&s, name, &[("endpoint", endpoint)]);
    assert_eq!(
        bytes("berth_http_received_bytes_total", "uploads"),
        Some((blob.len() + 2) as f64)
    );
    assert_eq!(
        bytes("berth_http_received_bytes_total", "manifest"),
        Some(manifest.len() as f64)
    );
    assert_eq!(
        bytes("berth_http_sent_bytes_total", "blob"),
        Some(blob.len() as f64)
    );
    let count = |endpoint: &str| {
        get(
            &s,
            "berth_http_request_duration_seconds_count",
            &[("endpoint", endpoint)],
        )
    };
    assert_eq!(count("manifest"), Some(5.0));
    assert_eq!(count("uploads"), Some(2.0));
    let inf = get(
        &s,
        "berth_http_request_duration_seconds_bucket",
        &[("endpoint", "manifest"), ("le", "+Inf")],
    );
    assert_eq!(inf, Some(5.0));
    // The scrape itself is the one request in flight.
    assert_eq!(get(&s, "berth_http_requests_in_flight", &[]), Some(1.0));
    assert_eq!(get(&s, "berth_uploads_in_progress", &[]), Some(0.0));
    let op = |operation: &str| {
        get(
            &s,
            "berth_storage_operation_duration_seconds_count",
            &[("operation", operation)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        op("blob_put"),
        3.0,
        "two monolithic uploads and the manifest"
    );
    assert!(op("meta_get") >= 1.0);
    assert!(!s.keys().any(|(n, _)| n == "berth_storage_errors_total"));
    assert_eq!(
        get(&s, "berth_gc_passes_total", &[("outcome", "finished")]),
        Some(1.0)
    );
    assert_eq!(get(&s, "berth_gc_freed_bytes_total", &[]), Some(0.0));
    stop(child);
}

#[tokio::test]
async fn metrics_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let side = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let side_addr = side.local_addr().unwrap();
    drop(side);
    let flag = format!("--metrics-listen={side_addr}");
    let (child, addr, _log) = spawn(&[&flag], dir.path());
    let c = http();
    let r = c
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "not on the registry's listener");
    let side = format!("http://{side_addr}");
    let s = scrape(&c, &side).await;
    assert_eq!(requests(&s, "metrics", "GET", "404"), 1.0);
    let r = c.get(format!("{side}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{side}/v2/")).send().await.unwrap();
    assert_eq!(
        r.status(),
        404,
        "the registry is not on the metrics listener"
    );
    stop(child);
}

#[tokio::test]
async fn health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr, _log) = spawn(&[], dir.path());
    let base = format!("http://{addr}");
    let c = http();
    for path in ["/healthz", "/readyz"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let r = c.head(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let r = c.post(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 405, "{path}");
    }
    // Storage that fails: the blob directory is no longer a directory.
    let blobs = dir.path().join("data/blobs");
    std::fs::rename(&blobs, dir.path().join("blobs.away")).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "alive, though not ready");
    let s = scrape(&c, &base).await;
    assert_eq!(
        get(
            &s,
            "berth_storage_errors_total",
            &[("operation", "blob_head"), ("kind", "unavailable")]
        )
        .or(get(
            &s,
            "berth_storage_errors_total",
            &[("operation", "blob_head"), ("kind", "other")]
        )),
        Some(1.0)
    );
    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(dir.path().join("blobs.away"), &blobs).unwrap();
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    stop(child);
}

#[tokio::test]
async fn request_ids_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr, log) = spawn(&["--log-format", "json"], dir.path());
    let base = format!("http://{addr}");
    let c = http();
    let r = c
        .get(format!("{base}/v2/"))
        .header("x-request-id", "trace-42.a:b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42.a:b");
    let r = c
        .get(format!("{base}/v2/nope/manifests/x"))
        .header("x-request-id", "no spaces or \"quotes\" please")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let fresh = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(fresh.len(), 24);
    assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()));
    let r = c.get(format!("{base}/v2/")).send().await.unwrap();
    let other = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(fresh, other);

    // Every line is a JSON object; the request lines carry the ids sent back.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = log.recv_timeout(Duration::from_secs(30)).expect("log line");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["target"] == "berth::request" {
            seen.push(v);
        }
    }
    assert_eq!(seen[0]["request_id"], "trace-42.a:b");
    assert_eq!(seen[0]["path"], "/v2/");
    assert_eq!(seen[0]["status"], 200);
    assert_eq!(seen[1]["request_id"], fresh.as_str());
    assert_eq!(seen[1]["status"], 404);
    assert_eq!(seen[1]["method"], "GET");
    assert_eq!(seen[2]["request_id"], other.as_str());
    stop(child);
}

/// `berth serve ARGS` in `dir`: its log lines up to "listening on", then it is stopped.
fn start_up_lines(dir: &std::path::Path, args: &[&std::ffi::OsStr]) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        let done = line.contains("listening on http://");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[tokio::test]
async fn exposed_listener_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let exposed = ["--listen", "0.0.0.0:0", "--root", "data"].map(std::ffi::OsStr::new);
    let lines = start_up_lines(dir.path(), &exposed);
    let count = |lines: &[String], what: &str| lines.iter().filter(|l| l.contains(what)).count();
    let (tls, auth) = (
        count(&lines, "without TLS"),
        count(&lines, "without an access policy"),
    );
    assert_eq!((tls, auth), (1, 1), "{lines:#?}");

    // With a policy but no realm, exposed: said once; with a realm, not at all.
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/e2e/auth-e2e.key");
    for (realm, warned) in [("", 1), ("realm = \"https://r.example/token\"\n", 0)] {
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            format!("default = \"anonymous-pull\"\nsigning_key_file = \"{key}\"\n{realm}"),
        )
        .unwrap();
        let mut args = exposed.to_vec();
        args.extend([std::ffi::OsStr::new("--auth"), policy.as_os_str()]);
        let lines = start_up_lines(dir.path(), &args);
        assert_eq!(count(&lines, "names no realm"), warned, "{lines:#?}");
    }
}

/// A webhook receiver: every request's content type and JSON body, in order.
async fn receiver() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |req: http::Request<_>| {
                let tx = tx.clone();
                async move {
                    let ct = req
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body: hyper::body::Incoming = req.into_body();
                    let bytes = body.collect().await.unwrap().to_bytes();
                    let _ = tx.send((ct, serde_json::from_slice(&bytes).unwrap()));
                    Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn events_reach_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, mut events) = receiver().await;
    let notify = format!("--notify=http://{hook}/hook");
    let (child, addr, _log) = spawn(&[&notify], dir.path());
    let base = format!("http://{addr}");
    let c = http();

    let manifest = push(&c, &base, "ev/app", "v1", b"layer").await;
    let digest = Digest::sha256(&manifest).to_string();
    let r = c
        .delete(format!("{base}/v2/ev/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    push(&c, &base, "ev/app", "v2", b"layer").await;
    let r = c
        .delete(format!("{base}/v2/ev/app/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // A refused push (bad manifest) makes no event.
    let r = c
        .put(format!("{base}/v2/ev/app/manifests/bad"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let mut got = Vec::new();
    for _ in 0..4 {
        let (ct, v) = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("an event")
            .unwrap();
        assert_eq!(ct, "application/cloudevents+json");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["source"], format!("http://{addr}"));
        assert!(v["id"].as_str().is_some_and(|s| s.len() == 32));
        assert!(v["time"].as_str().is_some_and(|s| s.ends_with('Z')));
        assert_eq!(v["data"]["repository"], "ev/app");
        assert_eq!(v["data"]["actor"], Value::Null, "no access control");
        got.push(v);
    }
    let kinds: Vec<_> = got.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "io.berth.manifest.pushed",
            "io.berth.tag.deleted",
            "io.berth.manifest.pushed",
            "io.berth.manifest.deleted"
        ]
    );
    let media = "application/vnd.oci.image.manifest.v1+json";
    for (i, tag) in [(0, "v1"), (2, "v2")] {
        let d = &got[i]["data"];
        assert_eq!(d["digest"], digest.as_str());
        assert_eq!(d["mediaType"], media);
        assert_eq!(d["size"], manifest.len());
        assert_eq!(d["tag"], tag);
        assert_eq!(got[i]["subject"], format!("ev/app@{digest}"));
    }
    assert_eq!(got[1]["data"]["tag"], "v1");
    assert_eq!(got[1]["data"]["digest"], Value::Null);
    assert_eq!(got[1]["subject"], "ev/app:v1");
    let deleted = &got[3]["data"];
    assert_eq!(deleted["digest"], digest.as_str());
    assert_eq!(deleted["mediaType"], media);
    assert_eq!(deleted["size"], manifest.len());
    assert_eq!(deleted["tags"], serde_json::json!(["v2"]));

    let mut s = scrape(&c, &base).await;
    for _ in 0..200 {
        if get(&s, "berth_events_total", &[("outcome", "delivered")]) == Some(4.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = scrape(&c, &base).await;
    }
    assert_eq!(
        get(&s, "berth_events_total", &[("outcome", "delivered")]),
        Some(4.0)
    );
    assert_eq!(
        get(&s, "berth_events_total", &[("outcome", "dropped")]),
        None
    );
    stop(child);
}

#[tokio::test]
async fn a_webhook_down_costs_a_bounded_queue() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = closed.local_addr().unwrap();
    drop(closed);
    let notify = format!("--notify=http://{hook}/hook");
    let (child, addr, _log) = spawn(&[&notify, "--notify-queue=2"], dir.path());
    let base = format!("http://{addr}");
    let c = http();
    for i in 0..8 {
        // Every push answers as usual.
        push(&c, &base, "down/app", &format!("t{i}"), b"layer").await;
    }
    let s = scrape(&c, &base).await;
    // One event may be with the sender (retrying), two in the queue: the rest are dropped.
    let dropped = get(&s, "berth_events_total", &[("outcome", "dropped")]).unwrap_or(0.0);
    assert!((5.0..=6.0).contains(&dropped), "dropped {dropped}");
    assert_eq!(
        get(&s, "berth_events_total", &[("outcome", "delivered")]),
        None
    );
    stop(child);
}

#[tokio::test]
async fn events_name_the_actor() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/auth-policy.toml");
    let (hook, mut events) = receiver().await;
    let notify = format!("--notify=http://{hook}/hook");
    let auth = format!("--auth={}", policy.display());
    let (child, addr, _log) = spawn(&[&notify, &auth], dir.path());
    let base = format!("http://{addr}");
    push_as(
        &http(),
        &base,
        "ev/who",
        "v1",
        b"x",
        Some(("alice", "alice-pw")),
    )
    .await;
    let (_, v) = tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event")
        .unwrap();
    assert_eq!(v["type"], "io.berth.manifest.pushed");
    assert_eq!(v["data"]["actor"], "alice");
    stop(child);
}
