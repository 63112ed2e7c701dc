//! Blobs: HEAD, a verified and resumable GET, DELETE. Pushing is `upload`'s.

use std::sync::Arc;

use reqwest::{Method, StatusCode};

use super::Repository;
use crate::error::Result;
use crate::fetch::{self, BlobGet};
use crate::progress::Progress;
use crate::transport::{content_length, status_error};
use crate::verify;
use berth::body::ByteStream;
use berth::digest::Digest;
use berth::manifest::Descriptor;

impl Repository {
    /// HEAD a blob: its size, or `None` when the repository does not have it.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(Method::HEAD, url, false).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(content_length(&resp).unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(resp, &self.what(format!("blob {digest}"))).await),
        }
    }

    /// A blob's bytes as a stream, verified against `desc` and resumed with `Range` when the
    /// connection breaks.
    pub fn blob(&self, desc: &Descriptor) -> ByteStream {
        self.blob_reporting(desc, None)
    }

    /// [`Repository::blob`], with resumes noted to `progress`.
    pub(crate) fn blob_reporting(
        &self,
        desc: &Descriptor,
        progress: Option<Arc<dyn Progress>>,
    ) -> ByteStream {
        let get = BlobGet {
            client: self.client.clone(),
            host: self.host().to_owned(),
            url: self.url(&format!("blobs/{}", desc.digest)),
            scopes: self.scopes(false).to_vec(),
            digest: desc.digest.clone(),
            what: self.what(format!("blob {}", desc.digest)),
        };
        verify::stream(fetch::resumable(get, desc.size, progress), desc)
    }

    /// DELETE a blob.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.delete(&format!("blobs/{digest}"), format_args!("blob {digest}"))
            .await
    }
}
