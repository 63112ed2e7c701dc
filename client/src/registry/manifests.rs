//! Manifests: GET (verified), HEAD, PUT, DELETE.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};

use super::Repository;
use crate::error::Result;
use crate::media::{MANIFEST_TYPES, MAX_MANIFEST, descriptor, media_type_of};
use crate::transport::{content_length, read_limited, status_error};
use crate::verify;
use berth::digest::Digest;
use berth::manifest::Descriptor;
use berth::names::Reference;

/// A manifest as fetched: its bytes, media type and digest (verified).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    pub fn descriptor(&self) -> Descriptor {
        let size = self.bytes.len() as u64;
        descriptor(self.media_type.clone(), self.digest.clone(), size)
    }
}

impl Repository {
    /// GET a manifest (any of [`MANIFEST_TYPES`]), verified: by digest, against the digest;
    /// by tag, against `Docker-Content-Digest` when the registry sends it.
    pub async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
        let what = self.what(format!("manifest {reference}"));
        let url = self.url(&format!("manifests/{reference}"));
        let req = self
            .request(Method::GET, url, false)
            .header(ACCEPT, &MANIFEST_TYPES.join(", "));
        let resp = self.client.send(req).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &what).await);
        }
        let header_digest = header_digest(resp.headers());
        let content_type = content_type(resp.headers());
        let bytes = read_limited(resp, MAX_MANIFEST)
            .await
            .map_err(|e| e.context(&what))?;
        let digest = match reference {
            Reference::Digest(d) => {
                verify::bytes(&what, &bytes, d, None)?;
                d.clone()
            }
            Reference::Tag(_) => {
                if let Some(h) = &header_digest {
                    verify::bytes(&what, &bytes, h, None)?;
                }
                // sha256 is the digest other clients will use for it.
                Digest::sha256(&bytes)
            }
        };
        let media_type = media_type_of(&bytes, content_type.as_deref());
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// HEAD a manifest: its descriptor, or `None` when absent.
    pub async fn manifest_head(&self, reference: &Reference) -> Result<Option<Descriptor>> {
        let url = self.url(&format!("manifests/{reference}"));
        let req = self
            .request(Method::HEAD, url, false)
            .header(ACCEPT, &MANIFEST_TYPES.join(", "));
        let resp = self.client.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what(format!("manifest {reference}"))).await);
        }
        let digest = match (header_digest(resp.headers()), reference) {
            (Some(d), _) => d,
            (None, Reference::Digest(d)) => d.clone(),
            // No digest header: only a GET can tell.
            (None, Reference::Tag(_)) => {
                return self.manifest(reference).await.map(|m| Some(m.descriptor()));
            }
        };
        let media_type = content_type(resp.headers()).unwrap_or_default();
        let size = content_length(&resp).unwrap_or(0);
        Ok(Some(descriptor(media_type, digest, size)))
    }

    /// PUT a manifest under a tag or its digest. Returns whether the registry processed its
    /// `subject` (the `OCI-Subject` header).
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<bool> {
        let url = self.url(&format!("manifests/{reference}"));
        let body = bytes.clone();
        let make = move || reqwest::Body::from(body.clone());
        let req = self
            .request(Method::PUT, url, true)
            .header(CONTENT_TYPE, media_type)
            .body(&make);
        let resp = self.client.send(req).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &self.what(format!("manifest PUT {reference}"))).await);
        }
        Ok(resp.headers().contains_key("oci-subject"))
    }

    /// DELETE a manifest by digest (or a tag, where the registry allows it).
    pub async fn delete_manifest(&self, reference: &Reference) -> Result<()> {
        let rest = format!("manifests/{reference}");
        self.delete(&rest, format_args!("manifest {reference}"))
            .await
    }
}

fn header_digest(h: &HeaderMap) -> Option<Digest> {
    h.get("docker-content-digest")?.to_str().ok()?.parse().ok()
}

/// `Content-Type` without parameters.
fn content_type(h: &HeaderMap) -> Option<String> {
    let v = h.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or("").trim().to_owned())
}
