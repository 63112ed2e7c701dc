//! Pulls against a bare HTTP server that breaks and corrupts on purpose: every byte of a
//! blob is verified, also across a resume with `Range`, and a manifest that does not match
//! its digest is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth::digest::Digest;
use berth::manifest::Descriptor;
use berth::names::Reference;
use berth_client::{Client, ClientOptions, ErrorKind};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the server misbehaves.
#[derive(Clone, Copy)]
struct Faults {
    /// Close the first response after this many body bytes.
    cut_at: Option<usize>,
    /// Flip the byte at this offset in every response after the first.
    corrupt_after_first: Option<usize>,
}

/// Serves `body` at every path, honouring `Range: bytes=N-`, one response per connection.
async fn serve(body: Vec<u8>, faults: Faults) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst);
            let mut body = body.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let got = conn.read(&mut buf).await.unwrap();
                    if got == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..got]);
                }
                let req = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let from: usize = req
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.trim().trim_end_matches('-').parse().ok())
                    .unwrap_or(0);
                if let (true, Some(at)) = (n > 0, faults.corrupt_after_first) {
                    body[at] ^= 1;
                }
                let len = body.len();
                let head = if from > 0 {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\
                         Content-Range: bytes {from}-{}/{len}\r\nConnection: close\r\n\r\n",
                        len - from,
                        len - 1
                    )
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
                };
                let _ = conn.write_all(head.as_bytes()).await;
                let end = match faults.cut_at {
                    Some(cut) if n == 0 => cut,
                    _ => len,
                };
                let _ = conn.write_all(&body[from..end]).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (host, served)
}

fn client() -> Client {
    Client::new(ClientOptions {
        insecure: true,
        ..ClientOptions::default()
    })
    .unwrap()
}

fn blob(bytes: &[u8]) -> Descriptor {
    serde_json::from_value(serde_json::json!({
        "mediaType": "application/octet-stream",
        "digest": Digest::sha256(bytes),
        "size": bytes.len(),
    }))
    .unwrap()
}

/// The stream's bytes, or the kind of the error that ended it.
async fn pull(host: &str, desc: &Descriptor) -> Result<Vec<u8>, ErrorKind> {
    let repo = client().repository(host, "r/app".parse().unwrap());
    let mut stream = repo.blob(desc);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return Err(berth_client::Error::io("pull", e).kind()),
        }
    }
    Ok(out)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn a_resumed_pull_is_whole_and_verified() {
    let bytes = data(300_000);
    let faults = Faults {
        cut_at: Some(100_000),
        corrupt_after_first: None,
    };
    let (host, served) = serve(bytes.clone(), faults).await;
    assert_eq!(pull(&host, &blob(&bytes)).await, Ok(bytes));
    assert_eq!(served.load(Ordering::SeqCst), 2, "resumed once");
}

#[tokio::test]
async fn corruption_after_a_resume_fails_the_pull() {
    let bytes = data(300_000);
    let faults = Faults {
        cut_at: Some(100_000),
        corrupt_after_first: Some(200_000),
    };
    let (host, served) = serve(bytes.clone(), faults).await;
    assert_eq!(pull(&host, &blob(&bytes)).await, Err(ErrorKind::Digest));
    assert_eq!(served.load(Ordering::SeqCst), 2, "resumed once");
}

#[tokio::test]
async fn corrupt_or_short_blobs_fail() {
    let bytes = data(10_000);
    let mut wrong = bytes.clone();
    wrong[5] ^= 1;
    let clean = Faults {
        cut_at: None,
        corrupt_after_first: None,
    };
    let (host, _) = serve(wrong, clean).await;
    assert_eq!(pull(&host, &blob(&bytes)).await, Err(ErrorKind::Digest));
    // Longer than its descriptor says.
    let (host, _) = serve(data(10_001), clean).await;
    assert_eq!(pull(&host, &blob(&bytes)).await, Err(ErrorKind::Digest));
}

#[tokio::test]
async fn a_manifest_that_is_not_its_digest_is_refused() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let clean = Faults {
        cut_at: None,
        corrupt_after_first: None,
    };
    let (host, _) = serve(manifest.to_vec(), clean).await;
    let repo = client().repository(&host, "r/app".parse().unwrap());
    let good = Digest::sha256(manifest);
    let m = repo
        .manifest(&Reference::Digest(good.clone()))
        .await
        .unwrap();
    assert_eq!(m.digest, good);
    let other = Digest::sha256(b"something else");
    let err = repo.manifest(&Reference::Digest(other)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Digest, "{err}");
}
