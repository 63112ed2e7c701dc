//! The native side of the pull-through cache: upstream requests over the berth client
//! (reqwest + rustls, the token flow, credentials from an auth file).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use berth::Body;
use berth::mirror::{MirrorConfig, Upstream};
use berth_client::auth::Keychain;
use berth_client::{Client, ClientOptions};
use futures_util::TryStreamExt;
use http::{Request, Response};

use crate::Error;

/// The upstreams of a mirror, reached with one pooled client.
pub struct NativeUpstream {
    client: Client,
    /// By `ns`: the base URL and the host credentials are looked up under.
    bases: HashMap<String, (String, String)>,
}

impl NativeUpstream {
    /// A client for `config`'s upstreams; credentials only from `auth` (never the client's
    /// own, never the environment's), looked up by each upstream's host.
    pub fn new(config: &MirrorConfig, auth: Option<&Path>) -> Result<NativeUpstream, Error> {
        let mut options = ClientOptions {
            keychain: Keychain {
                files: auth.map(Path::to_path_buf).into_iter().collect(),
                ..Keychain::default()
            },
            // A mirror answers its own clients: one quick retry, and a rate limit is passed on
            // rather than waited out.
            retries: 1,
            backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            ..ClientOptions::default()
        };
        let mut bases = HashMap::new();
        for u in &config.upstreams {
            let host = u
                .url
                .split_once("://")
                .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
                .unwrap_or(&u.url)
                .to_owned();
            if u.url.starts_with("http://") {
                options.insecure_hosts.insert(host.clone());
            }
            bases.insert(u.ns.clone(), (u.url.clone(), host));
        }
        let client = Client::new(options).map_err(|e| Error::setting("upstream", e.to_string()))?;
        Ok(NativeUpstream { client, bases })
    }
}

impl Upstream for NativeUpstream {
    async fn send(&self, ns: &str, req: Request<()>) -> Result<Response<Body>, String> {
        let (base, host) = self
            .bases
            .get(ns)
            .ok_or_else(|| format!("no upstream {ns}"))?;
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        // `/v2/<repo>/<manifests|blobs|referrers|tags>/...`: the repository, for the token scope.
        let repo = path
            .strip_prefix("/v2/")
            .and_then(|p| {
                ["/manifests/", "/blobs/", "/referrers/", "/tags/"]
                    .iter()
                    .filter_map(|m| p.rfind(m).map(|i| &p[..i]))
                    .max_by_key(|r| r.len())
            })
            .unwrap_or("");
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let resp = self
            .client
            .read(
                req.method().clone(),
                format!("{base}{path}"),
                host,
                repo,
                accept,
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let body = resp.bytes_stream().map_err(std::io::Error::other);
        out.body(Body::stream(body)).map_err(|e| e.to_string())
    }
}
