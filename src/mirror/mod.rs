//! Pull-through cache: repositories whose content comes from another registry.
//!
//! The core decides everything (which upstream, what is fresh, what to fetch, how to verify
//! and store it); the adapter only carries requests to an upstream, through [`Upstream`], the
//! way `Storage` carries reads and writes. Content by digest is cached forever; a tag is
//! revalidated with a HEAD once its TTL has passed; blobs stream to every client asking at once
//! from one upstream GET ([`tee`]) while they are written to the store once.

mod evict;
pub(crate) mod tee;

pub use evict::Evicted;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use http::{Request, Response};

use crate::body::Body;
use crate::digest::Digest;
use crate::keys;
use crate::links::BlobLink;
use crate::names::RepoName;
use crate::storage::{PutMode, Storage};
use crate::{MaybeSend, MaybeSync};

/// What the cache did for a read of a mirrored repository: attached to the response's
/// extensions, for the adapter's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from the cache without asking the upstream.
    Hit,
    /// The upstream confirmed the cached tag (a HEAD); served from the cache.
    Revalidated,
    /// Fetched from the upstream (or shared from a fetch in progress).
    Miss,
    /// The upstream could not be asked; served from the cache anyway.
    Stale,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
        }
    }
}

/// Carries a request to an upstream registry: the adapter's side of the mirror.
pub trait Upstream: MaybeSend + MaybeSync + 'static {
    /// Send `req` (a path under `/v2/`, method, `Accept`) to the upstream named `ns`, with
    /// that upstream's credentials (the anonymous token flow without). `Err` only when no
    /// answer came (unreachable, timed out); an HTTP error status is an `Ok` response.
    fn send(
        &self,
        ns: &str,
        req: Request<()>,
    ) -> impl Future<Output = Result<Response<Body>, String>> + MaybeSend;
}

/// One upstream, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// The registry host clients name with `?ns=` (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub ns: String,
    /// Where the adapter sends requests (`https://registry-1.docker.io`).
    pub url: String,
    /// Requests naming no upstream (docker's `registry-mirrors`) go here.
    pub default: bool,
    /// Repositories under `<prefix>/` come from this upstream, for clients that cannot send
    /// `ns`; also where `ns` requests to a non-default upstream are kept.
    pub prefix: Option<String>,
}

impl UpstreamSpec {
    /// `URL` (the default upstream) or `NS=URL`. A bare host means `https://`; `docker.io`
    /// means Docker Hub's API host.
    pub fn parse(s: &str) -> Result<UpstreamSpec, String> {
        let s = s.trim();
        let (ns, url) = match s.split_once('=') {
            Some((ns, url)) => (Some(ns.trim().to_ascii_lowercase()), url.trim()),
            None => (None, s),
        };
        let mut url = if url.contains("://") {
            url.trim_end_matches('/').to_owned()
        } else {
            format!("https://{}", url.trim_end_matches('/'))
        };
        let host = url
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .unwrap_or("")
            .to_ascii_lowercase();
        if host.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "upstream {s:?}: expected [NS=]http(s)://HOST[:PORT]"
            ));
        }
        let from_url = match host.as_str() {
            "docker.io" | "registry-1.docker.io" | "index.docker.io" => "docker.io".to_owned(),
            h => h.to_owned(),
        };
        if host == "docker.io" || host == "index.docker.io" {
            url = url.replacen(&host, "registry-1.docker.io", 1);
        }
        let ns = ns.unwrap_or(from_url);
        if ns.is_empty() || ns.contains('/') {
            return Err(format!("upstream {s:?}: {ns:?} is not a registry host"));
        }
        let default = !s.contains('=');
        Ok(UpstreamSpec {
            ns,
            url,
            default,
            prefix: None,
        })
    }

    fn docker_hub(&self) -> bool {
        self.ns == "docker.io"
    }

    /// The repository path under which this upstream's content is kept when asked for by `ns`.
    fn local_prefix(&self) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| self.ns.replace(':', "-"))
    }
}

/// The mirror's settings: upstreams, how long a tag is trusted, whether pushes are allowed.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    pub upstreams: Vec<UpstreamSpec>,
    /// Seconds a tag is served without asking upstream again.
    pub ttl: u64,
    /// Let clients push to mirrored repositories (refused with UNSUPPORTED otherwise).
    pub allow_push: bool,
    /// Bytes the cache may hold; past them, least recently used manifests are dropped before
    /// each garbage collection pass. `None`: no limit.
    pub cache_size: Option<u64>,
}

impl MirrorConfig {
    /// Settings from `[NS=]URL` items and `PREFIX=NS` items, checked.
    pub fn new(
        upstreams: &[String],
        prefixes: &[String],
        ttl: u64,
        allow_push: bool,
    ) -> Result<MirrorConfig, String> {
        let mut list: Vec<UpstreamSpec> = Vec::new();
        for u in upstreams {
            let spec = UpstreamSpec::parse(u)?;
            if list.iter().any(|o| o.ns == spec.ns) {
                return Err(format!("upstream {} named twice", spec.ns));
            }
            if spec.default && list.iter().any(|o| o.default) {
                return Err("only one upstream may be the default (give the others NS=)".into());
            }
            list.push(spec);
        }
        for p in prefixes {
            let Some((prefix, ns)) = p.split_once('=') else {
                return Err(format!("upstream prefix {p:?}: expected PREFIX=NS"));
            };
            let prefix = prefix.trim().trim_end_matches('/');
            if format!("{prefix}/x").parse::<RepoName>().is_err() {
                return Err(format!(
                    "upstream prefix {prefix:?} is not a repository path"
                ));
            }
            let Some(spec) = list.iter_mut().find(|s| s.ns == ns.trim()) else {
                return Err(format!("upstream prefix {p:?}: no upstream named {ns:?}"));
            };
            spec.prefix = Some(prefix.to_owned());
        }
        for s in &list {
            if !s.default
                && format!("{}/x", s.local_prefix())
                    .parse::<RepoName>()
                    .is_err()
            {
                return Err(format!(
                    "upstream {}: give it a prefix (PREFIX={}) to keep its content under",
                    s.ns, s.ns
                ));
            }
        }
        Ok(MirrorConfig {
            upstreams: list,
            ttl,
            allow_push,
            cache_size: None,
        })
    }

    /// Whether `repo` holds content of an upstream (and so may be evicted).
    pub(crate) fn keeps(&self, repo: &RepoName) -> bool {
        let name = repo.as_str();
        self.upstreams.iter().any(|u| {
            u.default
                || name
                    .strip_prefix(u.local_prefix().as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }

    /// Where a request for `name` (with `?ns=`, if sent) goes; `None` when `name` is an
    /// ordinary repository of this registry.
    pub(crate) fn target(&self, name: &str, ns: Option<&str>) -> Option<Target> {
        let default = self.upstreams.iter().find(|u| u.default);
        if let Some(ns) = ns
            && let Some(u) = self
                .upstreams
                .iter()
                .find(|u| u.ns.eq_ignore_ascii_case(ns))
        {
            let local = if u.default {
                name.to_owned()
            } else {
                format!("{}/{name}", u.local_prefix())
            };
            return Target::new(u, name, &local, true);
        }
        for u in &self.upstreams {
            if let Some(p) = &u.prefix
                && let Some(rest) = name
                    .strip_prefix(p.as_str())
                    .and_then(|r| r.strip_prefix('/'))
            {
                return Target::new(u, rest, name, false);
            }
        }
        let u = default?;
        let echo = ns.is_some_and(|n| n.eq_ignore_ascii_case(&u.ns));
        Target::new(u, name, name, echo)
    }
}

/// A mirrored repository: which upstream, its name there, its name here.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub ns: String,
    pub remote: String,
    pub local: RepoName,
    /// Answer with `OCI-Namespace` (the request named this upstream).
    pub echo: bool,
}

impl Target {
    fn new(u: &UpstreamSpec, remote: &str, local: &str, echo: bool) -> Option<Target> {
        let remote = if u.docker_hub() && !remote.contains('/') {
            format!("library/{remote}")
        } else {
            remote.to_owned()
        };
        Some(Target {
            ns: u.ns.clone(),
            remote,
            local: local.parse().ok()?,
            echo,
        })
    }
}

/// A boxed future, `Send` where the platform is threaded.
pub(crate) trait SendFuture: Future + MaybeSend {}
impl<T: Future + MaybeSend> SendFuture for T {}
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn SendFuture<Output = T> + 'a>>;

/// [`Upstream`], boxed, so the registry need not be generic over it.
pub(crate) trait DynUpstream: MaybeSend + MaybeSync {
    fn send<'a>(
        &'a self,
        ns: &'a str,
        req: Request<()>,
    ) -> BoxFuture<'a, Result<Response<Body>, String>>;
}

impl<U: Upstream> DynUpstream for U {
    fn send<'a>(
        &'a self,
        ns: &'a str,
        req: Request<()>,
    ) -> BoxFuture<'a, Result<Response<Body>, String>> {
        Box::pin(Upstream::send(self, ns, req))
    }
}

/// Writes a fetched blob into the store and links it into the mirrored repository, with no
/// borrow of the registry (a tee outlives the request that started it).
pub(crate) trait BlobWriter: MaybeSend + MaybeSync {
    fn write(&self, d: Digest, local: RepoName, at: u64, body: Body) -> Pin<Box<dyn tee::Driver>>;
}

struct StoreWriter<S>(S);

impl<S: Storage + Clone + 'static> BlobWriter for StoreWriter<S> {
    fn write(&self, d: Digest, local: RepoName, at: u64, body: Body) -> Pin<Box<dyn tee::Driver>> {
        let store = self.0.clone();
        Box::pin(async move {
            let size = store.blob_put(&d, body).await.map_err(|e| e.to_string())?;
            // The bytes first, then the link: a link never names bytes that are not there.
            let link = Bytes::from(BlobLink { at, size }.to_bytes());
            store
                .meta_put(&keys::blob(&local, &d), link, PutMode::Overwrite)
                .await
                .map_err(|e| e.to_string())?;
            store
                .meta_put(
                    &keys::linked(&local),
                    Bytes::from(at.to_string()),
                    PutMode::Overwrite,
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

/// The mirror, as the registry holds it.
pub(crate) struct Mirror {
    pub config: MirrorConfig,
    pub upstream: Box<dyn DynUpstream>,
    pub writer: Box<dyn BlobWriter>,
    /// Blobs being fetched, by repository and digest: a second request joins the first.
    inflight: Mutex<HashMap<(String, Digest), Weak<tee::Tee>>>,
}

impl Mirror {
    pub(crate) fn new<S: Storage + Clone + 'static, U: Upstream>(
        config: MirrorConfig,
        upstream: U,
        store: S,
    ) -> Mirror {
        Mirror {
            config,
            upstream: Box::new(upstream),
            writer: Box::new(StoreWriter(store)),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The fetch of `d` for `local` in progress, or a new one this caller leads (`true`):
    /// decided under one lock, so that of requests arriving together exactly one fetches.
    pub(crate) fn flight(&self, local: &RepoName, d: &Digest) -> (Arc<tee::Tee>, bool) {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let key = (local.to_string(), d.clone());
        if let Some(t) = map.get(&key).and_then(Weak::upgrade)
            && !t.failed()
        {
            return (t, false);
        }
        map.retain(|_, w| w.strong_count() > 0);
        let t = tee::Tee::opening(d.clone());
        map.insert(key, Arc::downgrade(&t));
        (t, true)
    }

    /// Forget a fetch that failed, so the next request tries afresh.
    pub(crate) fn forget(&self, local: &RepoName, d: &Digest, t: &Arc<tee::Tee>) {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let key = (local.to_string(), d.clone());
        if map.get(&key).is_some_and(|w| w.as_ptr() == Arc::as_ptr(t)) {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(up: &[&str], prefixes: &[&str]) -> MirrorConfig {
        let up: Vec<String> = up.iter().map(|s| s.to_string()).collect();
        let p: Vec<String> = prefixes.iter().map(|s| s.to_string()).collect();
        MirrorConfig::new(&up, &p, 300, false).unwrap()
    }

    #[test]
    fn docker_hub_is_registry_1_with_library() {
        let c = config(&["docker.io"], &[]);
        assert_eq!(c.upstreams[0].url, "https://registry-1.docker.io");
        assert_eq!(c.upstreams[0].ns, "docker.io");
        let t = c.target("alpine", None).unwrap();
        assert_eq!(
            (t.remote.as_str(), t.local.as_str()),
            ("library/alpine", "alpine")
        );
        let t = c.target("bitnami/redis", Some("docker.io")).unwrap();
        assert_eq!(t.remote, "bitnami/redis");
        assert!(t.echo);
    }

    #[test]
    fn ns_prefix_and_default() {
        let c = config(
            &["http://127.0.0.1:5000", "ghcr.io=https://ghcr.io"],
            &["gh=ghcr.io"],
        );
        let t = c.target("org/app", Some("ghcr.io")).unwrap();
        assert_eq!((t.ns.as_str(), t.local.as_str()), ("ghcr.io", "gh/org/app"));
        assert!(t.echo);
        let t = c.target("gh/org/app", None).unwrap();
        assert_eq!(
            (t.remote.as_str(), t.local.as_str()),
            ("org/app", "gh/org/app")
        );
        assert!(!t.echo);
        let t = c.target("org/app", None).unwrap();
        assert_eq!(t.ns, "127.0.0.1:5000");
        // An unknown ns falls to the default, without claiming to be it.
        let t = c.target("org/app", Some("quay.io")).unwrap();
        assert!(!t.echo);
        assert_eq!(t.ns, "127.0.0.1:5000");
    }

    #[test]
    fn without_a_default_other_names_are_local() {
        let c = config(&["ghcr.io=https://ghcr.io"], &[]);
        assert!(c.target("mine/app", None).is_none());
        let t = c.target("org/app", Some("ghcr.io")).unwrap();
        assert_eq!(t.local.as_str(), "ghcr.io/org/app");
    }

    #[test]
    fn bad_settings_say_why() {
        let e = |u: &[&str], p: &[&str]| {
            let u: Vec<String> = u.iter().map(|s| s.to_string()).collect();
            let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            MirrorConfig::new(&u, &p, 1, false).unwrap_err()
        };
        assert!(e(&["ftp://x"], &[]).contains("expected"));
        assert!(e(&["a.io", "b.io"], &[]).contains("only one"));
        assert!(e(&["a.io"], &["x=b.io"]).contains("no upstream"));
        assert!(e(&["Bad_=http://localhost:5000"], &[]).contains("prefix"));
    }
}
