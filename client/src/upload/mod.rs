//! Pushing a blob: cross-repository mount, monolithic PUT for small blobs, and PATCH chunks
//! for large ones, sized between the registry's `OCI-Chunk-Min-Length` and the caller's
//! maximum (a Worker takes at most 100 MB per request).
//!
//! A failed PATCH resumes from the offset the registry reports with the chunk's bytes kept
//! ([`body`]), without reading the source again. Memory in use is at most one chunk per
//! blob in flight.

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, Response, StatusCode};

use crate::auth::{merge_scopes, scope};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::Repository;
use crate::transport::{Request, status_error};
use berth::body::ByteStream;
use berth::digest::Digest;
use berth::manifest::Descriptor;
use berth::names::RepoName;

mod body;

use body::{Chunk, Pump, SourceError};

/// How blobs are pushed.
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// A blob up to this size goes in one request; a larger one in chunks of this size (raised
    /// to the registry's `OCI-Chunk-Min-Length`, lowered to `max_chunk_size`).
    pub chunk_size: u64,
    /// No request body is larger than this. A registry that asks for larger chunks is an error.
    pub max_chunk_size: Option<u64>,
    /// Attempts per chunk (and per monolithic upload) after the first.
    pub retries: u32,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            chunk_size: 64 << 20,
            max_chunk_size: None,
            retries: 4,
        }
    }
}

impl UploadOptions {
    /// The chunk size for a registry that announced `min` (if any).
    pub fn chunk_for(&self, min: Option<u64>) -> Result<u64> {
        let mut chunk = self.chunk_size.max(1);
        if let Some(min) = min {
            chunk = chunk.max(min);
        }
        if let Some(max) = self.max_chunk_size {
            if min.is_some_and(|m| m > max) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the registry wants chunks of at least {} bytes (OCI-Chunk-Min-Length), \
                         more than --max-chunk-size {max}",
                        min.unwrap_or(0)
                    ),
                )
                .with_hint("raise --max-chunk-size, or push to a registry with a lower minimum"));
            }
            chunk = chunk.min(max.max(1));
        }
        Ok(chunk)
    }
}

/// An upload session: where to send the next request, and the registry's chunk minimum.
pub(crate) struct Session {
    location: String,
    min_chunk: Option<u64>,
}

/// Opens the blob's bytes from the start (again, for a retry).
pub(crate) type Open<'a> = &'a (dyn Fn() -> ByteStream + Send + Sync);

impl Repository {
    /// POST to start an upload. With `mount`, ask for a cross-repository mount of the digest
    /// from that repository first: `None` means it was mounted, nothing to upload.
    pub(crate) async fn start_upload(
        &self,
        mount: Option<(&Digest, &RepoName)>,
    ) -> Result<Option<Session>> {
        let mut url = self.url("blobs/uploads/");
        let scopes;
        let req = match mount {
            Some((d, from)) => {
                url = format!("{url}?mount={d}&from={from}");
                let all = [
                    scope(self.name().as_str(), true),
                    scope(from.as_str(), false),
                ];
                scopes = merge_scopes(&all);
                Request::new(Method::POST, url, self.host(), &scopes)
            }
            None => self.request(Method::POST, url, true),
        };
        let resp = self.client.send(req.header(CONTENT_LENGTH, "0")).await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED | StatusCode::CREATED => Ok(Some(self.session(&resp)?)),
            _ => Err(status_error(resp, &self.what("upload")).await),
        }
    }

    async fn new_session(&self) -> Result<Session> {
        Ok(self.start_upload(None).await?.expect("no mount asked"))
    }

    fn session(&self, resp: &Response) -> Result<Session> {
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Registry,
                    format!("{}: upload answer without a Location", self.host()),
                )
            })?;
        let min_chunk = resp
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Session {
            location: self.absolute(location),
            min_chunk,
        })
    }

    /// Push a blob whose bytes `open` gives, on `session` if one is open already.
    pub(crate) async fn upload(
        &self,
        desc: &Descriptor,
        session: Option<Session>,
        open: Open<'_>,
        options: &UploadOptions,
    ) -> Result<()> {
        let mut session = match session {
            Some(s) => s,
            None => self.new_session().await?,
        };
        let chunk = options.chunk_for(session.min_chunk)?;
        if desc.size > chunk {
            return self.put_chunked(desc, session, open, chunk, options).await;
        }
        let mut attempt = 0;
        loop {
            match self.put_whole(desc, &session, open).await {
                Ok(()) => return Ok(()),
                Err(e) if retryable(&e) && attempt < options.retries => {
                    attempt += 1;
                    session = self.new_session().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One PUT with the whole blob and its digest.
    async fn put_whole(&self, desc: &Descriptor, session: &Session, open: Open<'_>) -> Result<()> {
        let source_error = SourceError::default();
        let make = || body::whole(open(), source_error.clone());
        let url = with_digest(&session.location, &desc.digest);
        let mut req = self
            .request(Method::PUT, url, true)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, &desc.size.to_string())
            .body(&make);
        req.idempotent = false;
        let sent = self.client.send(req).await;
        if let Some(e) = source_error.take() {
            return Err(e);
        }
        let resp = sent?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(status_error(resp, &self.what(format!("blob {}", desc.digest))).await)
    }

    async fn put_chunked(
        &self,
        desc: &Descriptor,
        mut session: Session,
        open: Open<'_>,
        chunk: u64,
        options: &UploadOptions,
    ) -> Result<()> {
        let what = self.what(format!("blob {}", desc.digest));
        let mut source = Some(Pump::new(open()));
        let mut offset = 0u64;
        while offset < desc.size {
            let part = Chunk::new(source.take(), chunk.min(desc.size - offset));
            self.patch(&mut session, &part, offset, options, &what)
                .await?;
            offset += part.want();
            source = part.into_pump();
        }
        let url = with_digest(&session.location, &desc.digest);
        let mut req = self
            .request(Method::PUT, url, true)
            .header(CONTENT_LENGTH, "0");
        req.idempotent = false;
        let resp = self.client.send(req).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(resp, &what).await)
        }
    }

    /// PATCH one chunk at `offset` of the blob, resending from where the registry is after
    /// a failure.
    async fn patch(
        &self,
        session: &mut Session,
        part: &Chunk,
        offset: u64,
        options: &UploadOptions,
        what: &str,
    ) -> Result<()> {
        let want = part.want();
        let end = offset + want - 1;
        let mut sent_from = 0u64; // within the chunk: what the registry has
        let mut attempt = 0;
        while sent_from < want {
            let make = || part.body(sent_from);
            let mut req = self
                .request(Method::PATCH, session.location.clone(), true)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, &format!("{}-{end}", offset + sent_from))
                .header(CONTENT_LENGTH, &(want - sent_from).to_string())
                .body(&make);
            req.idempotent = false;
            let sent = self.client.send(req).await;
            if let Some(e) = part.source_error() {
                return Err(e);
            }
            let failure = match sent {
                Ok(resp) if resp.status().is_success() => {
                    session.location = self.session(&resp)?.location;
                    return Ok(());
                }
                Ok(resp)
                    if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE
                        || resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    status_error(resp, what).await
                }
                Ok(resp) => return Err(status_error(resp, what).await),
                Err(e) if retryable(&e) => e,
                Err(e) => return Err(e),
            };
            if attempt >= options.retries {
                return Err(failure);
            }
            attempt += 1;
            // Where is the registry? Carry on from there with the bytes kept.
            let (location, at) = self.upload_status(&session.location).await?;
            session.location = location;
            if at < offset || at > offset + part.filled() {
                return Err(failure.context(format!(
                    "the registry's upload is at byte {at}, outside the chunk {offset}-{end}"
                )));
            }
            sent_from = at - offset;
        }
        Ok(())
    }

    /// GET an upload: its location and how many bytes the registry holds.
    async fn upload_status(&self, location: &str) -> Result<(String, u64)> {
        let resp = self.send(Method::GET, location.to_owned(), true).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, "upload status").await);
        }
        let location = self
            .session(&resp)
            .map(|s| s.location)
            .unwrap_or_else(|_| location.to_owned());
        let end = resp
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().trim_start_matches("bytes=").split_once('-'))
            .and_then(|(_, e)| e.parse::<u64>().ok());
        // `0-0` is how the spec writes an empty upload.
        let at = match end {
            None | Some(0) => 0,
            Some(e) => e + 1,
        };
        Ok((location, at))
    }
}

fn retryable(e: &Error) -> bool {
    e.kind() == ErrorKind::Network || e.status().is_some_and(|s| s >= 500 || s == 429 || s == 416)
}

fn with_digest(location: &str, d: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={d}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        let o = UploadOptions {
            chunk_size: 16 << 20,
            max_chunk_size: Some(32 << 20),
            retries: 0,
        };
        assert_eq!(o.chunk_for(None).unwrap(), 16 << 20);
        assert_eq!(
            o.chunk_for(Some(20 << 20)).unwrap(),
            20 << 20,
            "raised to the minimum"
        );
        assert!(
            o.chunk_for(Some(40 << 20)).is_err(),
            "minimum above the maximum"
        );
        let big = UploadOptions {
            chunk_size: 64 << 20,
            ..o
        };
        assert_eq!(
            big.chunk_for(None).unwrap(),
            32 << 20,
            "lowered to the maximum"
        );
    }
}
