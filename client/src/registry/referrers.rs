//! Referrers: the referrers API, and for registries without it the spec's fallback, an index
//! tagged `<alg>-<hex>` of the subject's digest.

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::Repository;
use crate::error::{Error, ErrorKind, Result};
use crate::media::{Index, MAX_MANIFEST, empty_index};
use crate::transport::{read_limited, status_error};
use berth::digest::Digest;
use berth::manifest::{self, Descriptor, OCI_INDEX};
use berth::names::{Reference, Tag};
use berth::query::encode;

impl Repository {
    /// The manifests that refer to `digest`: the referrers API, or, where the registry has
    /// none (404), the fallback tag. Filtered by `artifact_type` if given.
    pub async fn referrers(
        &self,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut url = self.url(&format!("referrers/{digest}"));
        if let Some(t) = artifact_type {
            url = format!("{url}?artifactType={}", encode(t));
        }
        let resp = self.send(Method::GET, url, false).await?;
        let filtered_by_registry = resp.headers().contains_key("oci-filters-applied");
        let bytes = match resp.status() {
            s if s.is_success() => read_limited(resp, MAX_MANIFEST).await?,
            StatusCode::NOT_FOUND => match self.fallback_index(digest).await? {
                Some(bytes) => bytes,
                None => return Ok(Vec::new()),
            },
            _ => {
                return Err(status_error(resp, &self.what(format!("referrers of {digest}"))).await);
            }
        };
        let index: Index = super::parse(&bytes, &self.what("referrers index"))?;
        let mut list = index.manifests;
        if !filtered_by_registry {
            retain_artifact_type(&mut list, artifact_type);
        }
        Ok(list)
    }

    /// List `desc` (a manifest whose subject is `subject`) in the subject's fallback index,
    /// creating it if need be. Returns whether it was not listed already.
    pub(crate) async fn add_fallback_referrer(
        &self,
        subject: &Digest,
        desc: &Descriptor,
        bytes: &[u8],
    ) -> Result<bool> {
        let mut index: Value = match self.fallback_index(subject).await? {
            Some(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            None => Value::Null,
        };
        if !index.get("manifests").is_some_and(Value::is_array) {
            index = empty_index();
        }
        let mut entry = serde_json::json!({
            "mediaType": desc.media_type,
            "digest": desc.digest,
            "size": desc.size,
        });
        if let Ok(p) = manifest::inspect(bytes, Some(&desc.media_type)) {
            if let Some(t) = p.referrer_artifact_type() {
                entry["artifactType"] = Value::String(t);
            }
            if let Some(a) = p.annotations {
                entry["annotations"] = Value::Object(a);
            }
        }
        let list = index["manifests"].as_array_mut().expect("checked");
        let digest = desc.digest.to_string();
        if list
            .iter()
            .any(|e| e["digest"].as_str() == Some(digest.as_str()))
        {
            return Ok(false);
        }
        list.push(entry);
        let reference = Reference::Tag(fallback_tag(subject)?);
        let bytes = Bytes::from(index.to_string());
        self.put_manifest(&reference, OCI_INDEX, &bytes).await?;
        Ok(true)
    }

    /// The fallback index of `subject`, or `None` when there is none (or something else is
    /// tagged so).
    async fn fallback_index(&self, subject: &Digest) -> Result<Option<Bytes>> {
        let Ok(tag) = fallback_tag(subject) else {
            return Ok(None);
        };
        match self.manifest(&Reference::Tag(tag)).await {
            Ok(m) if m.media_type == OCI_INDEX => Ok(Some(m.bytes)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `<alg>-<hex>`: where the spec's fallback keeps a subject's referrers.
pub(crate) fn fallback_tag(subject: &Digest) -> Result<Tag> {
    format!("{}-{}", subject.algorithm(), subject.hex())
        .parse()
        .map_err(|()| Error::usage("digest too long for a fallback tag"))
}

/// Keep the descriptors of `artifact_type`, when one is asked for.
pub(crate) fn retain_artifact_type(list: &mut Vec<Descriptor>, artifact_type: Option<&str>) {
    if let Some(t) = artifact_type {
        list.retain(|d| d.artifact_type.as_deref() == Some(t));
    }
}
