//! berth's read-only extension for the web page, under `/v2/_berth/` and `/v2/<name>/_berth/`
//! (the spec's extension naming): what `/v2/` lacks to show a registry at a glance. Access is
//! the API's: per-repository endpoints need pull (`auth::scope::need`), and the repository
//! listing holds only what the caller may pull.
//!
//! Times are seconds since the epoch (0: written before berth kept times); sizes are bytes.

use futures_util::future::{join_all, try_join_all};
use http::StatusCode;
use http::request::Parts;
use serde_json::{Value, json};

use super::{Reply, repo, store_err};
use crate::auth::scope::Actions;
use crate::auth::{Auth, Visitor};
use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::keys;
use crate::links::TagLink;
use crate::manifest::ManifestLink;
use crate::names::RepoName;
use crate::query::Query;
use crate::registry::{Ctx, Result};
use crate::route::Ext;
use crate::storage::{ListOptions, Storage, StorageError};
use http::Response;

/// Who asks, as access control let them through (no `auth`: an open registry).
pub(crate) struct Viewer<'a> {
    pub auth: Option<&'a Auth>,
    pub visitor: Option<&'a Visitor>,
}

type Sees<'a> = &'a Viewer<'a>;

/// Entries per page when the request does not say, and the most it may ask for.
const PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// Catalog keys read per store call while filtering.
const SCAN: usize = 1000;
/// Store reads in flight at once for one request.
const FAN: usize = 64;

fn number(q: &Query<'_>, key: &str, default: usize) -> Result<usize> {
    match q.get(key) {
        None | Some("") => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            RegistryError::new(
                Code::Unsupported,
                format!("{key} must be a non-negative integer"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        }),
    }
}

/// `os/architecture[/variant]` of a descriptor's `platform`.
fn platform(p: &Value) -> Option<String> {
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    Some(match p.get("variant").and_then(Value::as_str) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

fn sizes(list: Option<&Value>) -> u64 {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.get("size").and_then(Value::as_u64))
                .fold(0u64, u64::saturating_add)
        })
        .unwrap_or(0)
}

impl<S: Storage> Ctx<'_, S> {
    /// What the viewer may do to `name`: what access control grants them (everything on an
    /// open registry), less what this registry or repository refuses.
    fn may(&self, viewer: &Viewer<'_>, name: &RepoName) -> Actions {
        let granted = match viewer.auth {
            None => Actions::ALL,
            // No visitor means the check did not run: nothing.
            Some(auth) => viewer
                .visitor
                .map_or(Actions::NONE, |v| auth.visitor_actions(v, name.as_str())),
        };
        let allowed = if self.config.read_only || !self.store.writable(name) {
            Actions::PULL
        } else if !self.config.deletes {
            Actions::PULL.union(Actions::PUSH)
        } else {
            Actions::ALL
        };
        granted.intersect(allowed)
    }

    pub(crate) async fn browse(
        &self,
        ext: Ext<'_>,
        req: &Parts,
        sees: Sees<'_>,
    ) -> Result<Response<Body>> {
        let body = match ext {
            Ext::Repositories => self.repositories(req, sees).await?,
            Ext::Gc => self.gc_summary().await?,
            Ext::Summary { name } => {
                let name = self.known(name).await?;
                let mut s = self.summary(&name).await?;
                s["actions"] = json!(self.may(sees, &name).names());
                s
            }
            Ext::Tags { name } => {
                let name = self.known(name).await?;
                self.tag_page(&name, req).await?
            }
        };
        Ok(Reply::new(StatusCode::OK)
            .header(http::header::CACHE_CONTROL, "no-store")
            .json(&body))
    }

    /// A valid name the catalog lists, else NAME_INVALID / NAME_UNKNOWN as tags/list answers.
    async fn known(&self, name: &str) -> Result<RepoName> {
        let name = repo(name)?;
        match self.store.meta_get(&keys::catalog(&name)).await {
            Ok(_) => Ok(name),
            Err(StorageError::NotFound) => Err(RegistryError::new(
                Code::NameUnknown,
                "repository name not known to registry",
            )),
            Err(e) => Err(store_err(e)),
        }
    }

    /// GET `/v2/_berth/repositories[?n=&last=&q=]`: the next `n` repositories after `last` that
    /// the caller may pull and whose name holds `q`, with summaries; `next` is the `last` of
    /// the following page, if there is one.
    async fn repositories(&self, req: &Parts, sees: Sees<'_>) -> Result<Value> {
        let q = Query::parse(req.uri.query());
        let n = number(&q, "n", PAGE)?.clamp(1, MAX_PAGE);
        let filter = q.get("q").unwrap_or("").trim().to_ascii_lowercase();
        let mut after = q.get("last").filter(|l| !l.is_empty()).map(str::to_owned);
        let mut names: Vec<RepoName> = Vec::new();
        let mut more = false;
        'scan: loop {
            let keys = self
                .store
                .meta_list(
                    keys::CATALOG,
                    ListOptions {
                        after: after.as_deref(),
                        limit: Some(SCAN),
                    },
                )
                .await
                .map_err(store_err)?;
            let full = keys.len() == SCAN;
            for k in keys {
                let visible = k.contains(filter.as_str())
                    && k.parse::<RepoName>()
                        .is_ok_and(|name| self.may(sees, &name).contains(Actions::PULL));
                if visible {
                    if names.len() == n {
                        more = true;
                        break 'scan;
                    }
                    if let Ok(name) = k.parse() {
                        names.push(name);
                    }
                }
                after = Some(k);
            }
            if !full {
                break;
            }
        }
        let mut repositories = Vec::with_capacity(names.len());
        for chunk in names.chunks(8) {
            repositories.extend(try_join_all(chunk.iter().map(|n| self.summary(n))).await?);
        }
        let next = more.then(|| names.last().map(|n| n.to_string()));
        Ok(json!({ "repositories": repositories, "next": next.flatten() }))
    }

    /// Every tag of `name` with its link (tags whose link does not read are left out).
    async fn tag_links(&self, name: &RepoName, tags: &[String]) -> Result<Vec<(String, TagLink)>> {
        let mut out = Vec::with_capacity(tags.len());
        for chunk in tags.chunks(FAN) {
            let read = try_join_all(chunk.iter().map(|t| async move {
                match self
                    .store
                    .meta_get(&format!("{}{t}", keys::tags(name)))
                    .await
                {
                    Ok(s) => Ok(TagLink::parse(&s.value).map(|l| (t.clone(), l))),
                    Err(StorageError::NotFound) => Ok(None),
                    Err(e) => Err(store_err(e)),
                }
            }))
            .await?;
            out.extend(read.into_iter().flatten());
        }
        Ok(out)
    }

    async fn tag_names(&self, name: &RepoName) -> Result<Vec<String>> {
        self.store
            .meta_list(&keys::tags(name), ListOptions::default())
            .await
            .map_err(store_err)
    }

    /// Tags, last push and usage of one repository.
    async fn summary(&self, name: &RepoName) -> Result<Value> {
        let tags = self.tag_names(name).await?;
        let links = self.tag_links(name, &tags).await?;
        let last_push = links.iter().map(|(_, l)| l.at).max().unwrap_or(0);
        let usage = self.usage(name).await?;
        Ok(json!({
            "name": name.as_str(),
            "tags": tags.len(),
            "lastPush": last_push,
            "size": usage.bytes,
            "usage": usage,
        }))
    }

    /// GET `/v2/<name>/_berth/tags[?sort=newest|name&start=&n=]`: one page of tags with what
    /// their manifests say, and the total.
    async fn tag_page(&self, name: &RepoName, req: &Parts) -> Result<Value> {
        let q = Query::parse(req.uri.query());
        let n = number(&q, "n", PAGE)?.clamp(1, MAX_PAGE);
        let start = number(&q, "start", 0)?;
        let newest = match q.get("sort") {
            None | Some("" | "newest") => true,
            Some("name") => false,
            Some(_) => {
                return Err(
                    RegistryError::new(Code::Unsupported, "sort must be newest or name")
                        .with_status(StatusCode::BAD_REQUEST),
                );
            }
        };
        let tags = self.tag_names(name).await?;
        let total = tags.len();
        let page: Vec<(String, TagLink)> = if newest {
            // Newest first needs every tag's time; by name needs only the page's.
            let mut links = self.tag_links(name, &tags).await?;
            links.sort_by(|a, b| b.1.at.cmp(&a.1.at).then_with(|| a.0.cmp(&b.0)));
            links.into_iter().skip(start).take(n).collect()
        } else {
            let names: Vec<String> = tags.into_iter().skip(start).take(n).collect();
            self.tag_links(name, &names).await?
        };
        let rows = join_all(page.into_iter().map(|(tag, link)| async move {
            let mut row = self.describe(name, &link.digest).await;
            row["tag"] = json!(tag);
            row["digest"] = json!(link.digest.to_string());
            row["pushed"] = json!(link.at);
            row
        }))
        .await;
        Ok(json!({
            "name": name.as_str(),
            "total": total,
            "start": start,
            "sort": if newest { "newest" } else { "name" },
            "tags": rows,
        }))
    }

    /// A manifest's bytes as JSON, if the repository holds it and it reads.
    async fn manifest_json(&self, name: &RepoName, d: &Digest) -> Option<(ManifestLink, Value)> {
        let link = self.store.meta_get(&keys::manifest(name, d)).await.ok()?;
        let link: ManifestLink = serde_json::from_slice(&link.value).ok()?;
        let blob = self.store.blob_get(d, None).await.ok()?;
        let bytes = blob
            .body
            .collect(self.config.max_manifest_size)
            .await
            .ok()?;
        Some((link, serde_json::from_slice(&bytes).ok()?))
    }

    /// Media type, total size (manifest, config and layers; an index's with its children's)
    /// and platforms of a manifest; nulls where it does not read.
    async fn describe(&self, name: &RepoName, d: &Digest) -> Value {
        let Some((link, m)) = self.manifest_json(name, d).await else {
            return json!({ "mediaType": null, "size": null, "platforms": [] });
        };
        let artifact = m.get("artifactType").cloned().unwrap_or(Value::Null);
        let Some(children) = m.get("manifests").and_then(Value::as_array) else {
            let size = link
                .size
                .saturating_add(
                    m.pointer("/config/size")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                )
                .saturating_add(sizes(m.get("layers")));
            return json!({
                "mediaType": link.media_type, "size": size, "platforms": [],
                "artifactType": artifact,
            });
        };
        let platforms: Vec<String> = children
            .iter()
            .filter_map(|c| c.get("platform").and_then(platform))
            .collect();
        let child_sizes = join_all(children.iter().map(|c| async move {
            let own = c.get("size").and_then(Value::as_u64).unwrap_or(0);
            let Some(cd) = c.get("digest").and_then(Value::as_str) else {
                return own;
            };
            let Ok(cd) = cd.parse::<Digest>() else {
                return own;
            };
            match self.manifest_json(name, &cd).await {
                Some((_, cm)) => own
                    .saturating_add(
                        cm.pointer("/config/size")
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                    )
                    .saturating_add(sizes(cm.get("layers"))),
                None => own,
            }
        }))
        .await;
        let size = child_sizes.into_iter().fold(link.size, u64::saturating_add);
        json!({
            "mediaType": link.media_type, "size": size, "platforms": platforms,
            "artifactType": artifact,
        })
    }

    /// GET `/v2/_berth/gc`: the last pass's report without its item list (which can be long).
    async fn gc_summary(&self) -> Result<Value> {
        let report = self.last_report().await.map_err(store_err)?;
        let last = report.map(|r| {
            let items = r.items.len();
            let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.remove("items");
                o.insert("itemCount".into(), json!(items));
                o.insert("summary".into(), json!(r.summary()));
            }
            v
        });
        Ok(json!({ "last": last }))
    }
}
