//! A blob whose length the request said goes up as one PUT, streamed while it is hashed: no
//! part in memory, and no multipart round trips (one PUT is also faster than multipart on the
//! servers measured). The PUT is presigned by object_store (it cannot stream a body of its own)
//! and sent by reqwest.
//!
//! Nothing unchecked becomes visible. The core's `Checked` stream hashes the body and ends in an
//! error unless it matched its digest and length; the last chunk is held back until the stream
//! has ended cleanly, so on any error the request stops short of its `Content-Length`, and S3
//! stores no object whose body ended early (SeaweedFS alike: the S3 suite checks it). The bytes
//! go straight to `blobs/<digest>`, as a completed multipart did.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::signer::Signer;

use berth::body::ByteStream;
use berth::{Digest, StorageError};

use super::{Result, S3Store, blob_key, s3_err};

/// Above this, a blob goes up in parts: S3's single PUT stops at 5 GiB, and one lost
/// connection should not cost more than this much again.
pub(super) const SINGLE_PUT_MAX: u64 = 4 << 30;

/// How long the presigned PUT stays valid: it must outlast the slowest upload of
/// [`SINGLE_PUT_MAX`] bytes, as S3 checks the signature when the request starts.
const PRESIGNED_FOR: Duration = Duration::from_secs(600);

/// Why the body stream ended early, kept for the caller (reqwest only says the body failed).
type Failure = std::sync::Arc<std::sync::Mutex<Option<StorageError>>>;

impl S3Store {
    /// Send exactly `len` bytes of `body` (a checked stream) as the blob `digest`.
    pub(super) async fn put_single(
        &self,
        digest: &Digest,
        len: u64,
        body: ByteStream,
    ) -> Result<u64> {
        let key = blob_key(digest);
        let url = self
            .s3
            .signed_url(http::Method::PUT, &self.path(&key), PRESIGNED_FOR)
            .await
            .map_err(|e| s3_err("presign", &key, e))?;
        let failure = Failure::default();
        let checked = held_back(body, failure.clone());
        let sent = self
            .http
            .put(url)
            .header(http::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(checked))
            .send()
            .await;
        if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        let answer = sent.map_err(|e| s3_err("put", &key, e))?;
        let status = answer.status();
        if !status.is_success() {
            let text = answer.text().await.unwrap_or_default();
            return Err(s3_err("put", &key, format!("{status}: {}", text.trim())));
        }
        Ok(len)
    }
}

/// `body`, one chunk behind: the last chunk is released only once the stream has ended
/// without an error. An error is noted in `failure` and ends this stream in an error too.
fn held_back(body: ByteStream, failure: Failure) -> impl Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some((body, None::<Bytes>, failure)), |st| async move {
        let (mut body, mut held, failure) = st?;
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    if let Some(prev) = held.replace(chunk) {
                        return Some((Ok(prev), Some((body, held, failure))));
                    }
                }
                Some(Err(e)) => {
                    let text = e.to_string();
                    if let Ok(mut f) = failure.lock() {
                        *f = Some(StorageError::Body(e));
                    }
                    return Some((Err(io::Error::other(text)), None));
                }
                None => return held.map(|last| (Ok(last), None)),
            }
        }
    })
}
