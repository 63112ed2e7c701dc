//! A registry blob pulled as a stream that survives broken connections: the GET is resumed
//! from the last byte received with `Range: bytes=N-`. Built on the transport alone; the
//! caller verifies the bytes: all of them, through one verifying stream across resumes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use reqwest::header::RANGE;
use reqwest::{Method, Response, StatusCode};

use crate::error::{ErrorKind, Result};
use crate::progress::{Progress, short};
use crate::transport::{Client, Request, network_error, status_error};
use berth::body::ByteStream;
use berth::digest::Digest;

/// Resumes without progress in between before a pull gives up.
const MAX_RESUMES: u32 = 8;

/// One blob's GET, repeatable from any offset.
pub(crate) struct BlobGet {
    pub client: Client,
    pub host: String,
    pub url: String,
    pub scopes: Vec<String>,
    pub digest: Digest,
    /// For messages: `host/name blob <digest>`.
    pub what: String,
}

impl BlobGet {
    /// GET from `offset` on. A registry that ignores `Range` answers 200 from the start.
    async fn from(&self, offset: u64) -> Result<Response> {
        let mut req = Request::new(Method::GET, self.url.clone(), &self.host, &self.scopes);
        if offset > 0 {
            req = req.header(RANGE, &format!("bytes={offset}-"));
        }
        let resp = self.client.send(req).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(resp, &self.what).await)
        }
    }
}

struct Fetch {
    get: BlobGet,
    size: u64,
    offset: u64,
    /// Bytes still to drop from a response that ignored `Range` and started over.
    skip: u64,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    failures: u32,
    progress: Option<Arc<dyn Progress>>,
}

/// The blob's `size` bytes, resumed where a connection breaks. It ends at `size` bytes, or
/// early when resumes run out (a verifying stream around it says so).
pub(crate) fn resumable(
    get: BlobGet,
    size: u64,
    progress: Option<Arc<dyn Progress>>,
) -> ByteStream {
    let state = Fetch {
        get,
        size,
        offset: 0,
        skip: 0,
        body: None,
        failures: 0,
        progress,
    };
    Box::pin(stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        match st.next().await? {
            Ok(b) => Some((Ok(b), Some(st))),
            Err(e) => Some((Err(e), None)),
        }
    }))
}

impl Fetch {
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            let Some(body) = self.body.as_mut() else {
                if self.offset >= self.size {
                    return None;
                }
                match self.get.from(self.offset).await {
                    Ok(resp) => {
                        if self.offset > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
                            self.skip = self.offset;
                        }
                        self.body = Some(resp.bytes_stream().boxed());
                    }
                    Err(e) if e.kind() == ErrorKind::Network && self.failures < MAX_RESUMES => {
                        self.backoff().await;
                    }
                    Err(e) => return Some(Err(io::Error::other(e))),
                }
                continue;
            };
            match body.next().await {
                Some(Ok(mut b)) => {
                    if self.skip > 0 {
                        let n = self.skip.min(b.len() as u64);
                        self.skip -= n;
                        b = b.slice(n as usize..);
                        if b.is_empty() {
                            continue;
                        }
                    }
                    self.failures = 0;
                    self.offset += b.len() as u64;
                    return Some(Ok(b));
                }
                Some(Err(e)) => {
                    self.body = None;
                    if self.failures >= MAX_RESUMES {
                        let g = &self.get;
                        let e = network_error(&g.host, &Method::GET, &g.url, &e);
                        return Some(Err(io::Error::other(e)));
                    }
                    self.resume(&e.to_string()).await;
                }
                None => {
                    self.body = None;
                    if self.offset < self.size {
                        if self.failures >= MAX_RESUMES {
                            return None;
                        }
                        self.resume("the response ended early").await;
                    }
                }
            }
        }
    }

    async fn resume(&mut self, why: &str) {
        if let Some(p) = &self.progress {
            p.note(&format!(
                "{}: {why}; resuming at byte {}",
                short(&self.get.digest),
                self.offset
            ));
        }
        self.backoff().await;
    }

    async fn backoff(&mut self) {
        let ms = 100u64 << self.failures.min(6);
        self.failures += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}
