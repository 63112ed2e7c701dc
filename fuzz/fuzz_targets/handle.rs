//! `Registry::handle` over the memory store, fed sequences of arbitrary requests: no panic,
//! no 5xx, and every response's body reads to its end.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use arbitrary::Arbitrary;
use berth::testing::ManualEnv;
use berth::{Body, Config, Digest, MemoryStore, Registry};
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Path {
    Raw(String),
    Manifest(bool, String),
    Blob(bool, String),
    Uploads(bool, String),
    /// The last `Location` a response gave, with something appended.
    Location(String),
    Tags(bool, String),
    Referrers(bool),
}

#[derive(Arbitrary, Debug)]
struct Req {
    method: u8,
    path: Path,
    headers: Vec<(u8, String)>,
    body: Vec<u8>,
}

const METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"];
const HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "content-range",
    "range",
    "accept",
    "if-none-match",
    "expect",
];

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn uri(path: &Path, body: &[u8], location: &str) -> String {
    let name = |other: bool| if other { "a/b" } else { "r" };
    let d = Digest::sha256(body);
    match path {
        Path::Raw(s) => s.clone(),
        Path::Manifest(n, r) if r.is_empty() => format!("/v2/{}/manifests/{d}", name(*n)),
        Path::Manifest(n, r) => format!("/v2/{}/manifests/{r}", name(*n)),
        Path::Blob(n, s) => format!("/v2/{}/blobs/{d}{s}", name(*n)),
        Path::Uploads(n, q) => format!("/v2/{}/blobs/uploads/?digest={d}&{q}", name(*n)),
        Path::Location(q) => format!("{location}{q}&digest={d}"),
        Path::Tags(n, q) => format!("/v2/{}/tags/list?{q}", name(*n)),
        Path::Referrers(n) => format!("/v2/{}/referrers/{d}", name(*n)),
    }
}

fuzz_target!(|reqs: Vec<Req>| {
    let config = Config {
        max_manifest_size: 1 << 16,
        ..Config::default()
    };
    let registry = Registry::new(MemoryStore::default(), ManualEnv::at(1_000), config);
    let mut location = String::from("/v2/r/blobs/uploads/none?");
    for r in reqs.into_iter().take(16) {
        let method = METHODS[r.method as usize % METHODS.len()];
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri(&r.path, &r.body, &location));
        for (h, v) in &r.headers {
            req = req.header(HEADERS[*h as usize % HEADERS.len()], v.as_str());
        }
        let Ok(req) = req.body(Body::from(r.body)) else {
            continue;
        };
        let resp = block_on(registry.handle(req));
        assert!(
            resp.status().as_u16() < 500,
            "{method} {:?}: {}",
            r.path,
            resp.status()
        );
        if let Some(l) = resp.headers().get("location").and_then(|l| l.to_str().ok()) {
            location = format!("{l}{}", if l.contains('?') { "&" } else { "?" });
        }
        let mut body = resp.into_body().into_stream();
        block_on(async {
            while let Some(chunk) = body.next().await {
                chunk.expect("response bodies from memory read whole");
            }
        });
    }
});
