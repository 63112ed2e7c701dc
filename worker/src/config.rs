//! Settings from wrangler `[vars]`; the access-control policy and the token signing key from
//! secrets (`wrangler secret put BERTH_AUTH_POLICY`, `BERTH_AUTH_KEY`), or vars in tests; the
//! mirror's upstreams from vars and their credentials from a secret (`BERTH_UPSTREAM_AUTH`).

use berth::Config;
use berth::gc::policy::{TIME_UNITS, with_unit};
use berth::mirror::MirrorConfig;

use crate::r2::{DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::text::{self, parse_size};

/// The pull-through cache (`BERTH_UPSTREAM` and friends), checked.
pub struct MirrorSettings {
    pub config: MirrorConfig,
    /// By upstream `ns`: the Basic credentials (`base64(user:password)`) from
    /// `BERTH_UPSTREAM_AUTH` for its host.
    pub credentials: Vec<(String, String)>,
}

pub struct Settings {
    pub config: Config,
    /// Size of every part but the last of a chunked upload's R2 multipart upload.
    pub part_size: u64,
    /// Serve `/_berth/contract`, which runs the storage contract suite against the bucket.
    /// Only test configurations set it, and only test builds (the `contract` feature) have the
    /// route; with an access policy it is refused.
    #[cfg(feature = "contract")]
    pub contract_tests: bool,
    /// The policy file's text and the signing key, when access control is on.
    pub auth: Option<(String, String)>,
    /// `BERTH_OPEN = "true"`: without a policy, anyone may push and delete. Without a policy
    /// and without this choice, the Worker refuses writes (an open registry is never a default).
    pub open: bool,
    /// Seconds between garbage collection passes (a pass in progress goes on at every cron
    /// invocation); 0: no passes, only the upload purge.
    pub gc_interval: u64,
    /// Storage calls one cron invocation may spend on a pass (each is one or two R2
    /// operations): keep it under the plan's subrequest limit.
    pub gc_budget: u32,
    /// The content policy's text (retention, immutable tags, quotas), if any.
    pub gc_policy: Option<String>,
    /// The pull-through cache, when `BERTH_UPSTREAM` is set; `Err` (the Worker answers 503)
    /// when its settings do not hold, saying why without quoting any secret.
    pub mirror: Option<Result<MirrorSettings, String>>,
}

/// One `[vars]` entry, if set and not blank.
fn var(env: &worker::Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
}

/// A secret, or a var of that name (local tests pass `--var`).
fn secret(env: &worker::Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
        .or_else(|| var(env, name))
}

fn flag(env: &worker::Env, name: &str, default: bool) -> bool {
    match var(env, name).as_deref().map(str::trim) {
        None => default,
        Some("1" | "true" | "yes" | "on") => true,
        Some("0" | "false" | "no" | "off") => false,
        Some(other) => {
            worker::console_warn!("{name}={other:?} is not a boolean; using {default}");
            default
        }
    }
}

/// A whole number (seconds, or a count).
fn secs(env: &worker::Env, name: &str, default: u64) -> u64 {
    match var(env, name) {
        None => default,
        Some(v) => v.trim().parse().unwrap_or_else(|_| {
            worker::console_warn!("{name}={v:?} is not a whole number; using {default}");
            default
        }),
    }
}

fn size(env: &worker::Env, name: &str, default: u64) -> u64 {
    match var(env, name) {
        None => default,
        Some(v) => parse_size(&v).unwrap_or_else(|| {
            worker::console_warn!("{name}={v:?} is not a size; using {default}");
            default
        }),
    }
}

impl Settings {
    pub fn from_env(env: &worker::Env) -> Settings {
        let defaults = Config::default();
        let mut part_size = size(env, "BERTH_PART_SIZE", DEFAULT_PART_SIZE);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            let clamped = part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
            worker::console_warn!(
                "BERTH_PART_SIZE={part_size} is outside 5 MiB..64 MiB; using {clamped}"
            );
            part_size = clamped;
        }
        // Clients that honour it send chunks of at least a part, so little waits in pending
        // objects. 0 turns the header off.
        let chunk_min = size(env, "BERTH_CHUNK_MIN_LENGTH", part_size);
        let config = Config {
            read_only: flag(env, "BERTH_READ_ONLY", defaults.read_only),
            deletes: flag(env, "BERTH_DELETES", defaults.deletes),
            max_manifest_size: size(
                env,
                "BERTH_MAX_MANIFEST_SIZE",
                defaults.max_manifest_size as u64,
            )
            .max(4 << 20) as usize,
            upload_expiry: secs(env, "BERTH_UPLOAD_EXPIRY", defaults.upload_expiry),
            chunk_min_length: (chunk_min > 0).then_some(chunk_min),
            max_page_size: secs(env, "BERTH_MAX_PAGE_SIZE", defaults.max_page_size as u64) as usize,
            gc_grace: secs(env, "BERTH_GC_GRACE", defaults.gc_grace).max(berth::gc::MIN_GRACE),
            // 0 or unset: no limit.
            max_blob_size: Some(size(env, "BERTH_MAX_BLOB_SIZE", 0)).filter(|n| *n > 0),
            // 0: no limit.
            max_uploads: Some(size(env, "BERTH_MAX_UPLOADS", 1000) as usize).filter(|n| *n > 0),
            manifest_cache: defaults.manifest_cache,
        };
        Settings {
            config,
            part_size,
            #[cfg(feature = "contract")]
            contract_tests: flag(env, "BERTH_CONTRACT_TESTS", false),
            auth: secret(env, "BERTH_AUTH_POLICY")
                .map(|policy| (policy, secret(env, "BERTH_AUTH_KEY").unwrap_or_default())),
            open: flag(env, "BERTH_OPEN", false),
            gc_interval: secs(env, "BERTH_GC_INTERVAL", 3600),
            gc_budget: secs(env, "BERTH_GC_BUDGET", 400) as u32,
            gc_policy: secret(env, "BERTH_GC_POLICY"),
            mirror: mirror(env),
        }
    }
}

/// `BERTH_UPSTREAM` (`[NS=]URL` items, as `berth serve --upstream`), `BERTH_UPSTREAM_PREFIX`
/// (`PREFIX=NS` items), `BERTH_UPSTREAM_TTL` (default 5 minutes), `BERTH_UPSTREAM_PUSH`, and
/// the `BERTH_UPSTREAM_AUTH` secret (a docker config.json). Unlike the settings above, a bad
/// value is not replaced by a default: the mirror fails closed.
fn mirror(env: &worker::Env) -> Option<Result<MirrorSettings, String>> {
    let upstreams = text::items(&var(env, "BERTH_UPSTREAM").unwrap_or_default());
    let prefixes = text::items(&var(env, "BERTH_UPSTREAM_PREFIX").unwrap_or_default());
    if upstreams.is_empty() {
        return (!prefixes.is_empty())
            .then(|| Err("BERTH_UPSTREAM_PREFIX needs a BERTH_UPSTREAM".to_owned()));
    }
    Some(mirror_settings(env, &upstreams, &prefixes))
}

fn mirror_settings(
    env: &worker::Env,
    upstreams: &[String],
    prefixes: &[String],
) -> Result<MirrorSettings, String> {
    // A URL's userinfo would be echoed by the errors below and sent nowhere useful.
    if upstreams
        .iter()
        .any(|u| text::origin(u.split_once('=').map_or(u, |(_, url)| url)).contains('@'))
    {
        return Err("BERTH_UPSTREAM: credentials do not belong in a URL; \
                    put them in the BERTH_UPSTREAM_AUTH secret"
            .into());
    }
    let ttl = match var(env, "BERTH_UPSTREAM_TTL") {
        None => 300,
        Some(v) => with_unit(v.trim(), TIME_UNITS).ok_or_else(|| {
            format!("BERTH_UPSTREAM_TTL={v:?} is not a time such as 90, 15m, 24h")
        })?,
    };
    let push = match var(env, "BERTH_UPSTREAM_PUSH").as_deref().map(str::trim) {
        None | Some("0" | "false" | "no" | "off") => false,
        Some("1" | "true" | "yes" | "on") => true,
        Some(other) => return Err(format!("BERTH_UPSTREAM_PUSH={other:?} is not a boolean")),
    };
    let config = MirrorConfig::new(upstreams, prefixes, ttl, push)
        .map_err(|e| format!("BERTH_UPSTREAM: {e}"))?;
    let mut credentials = Vec::new();
    if let Some(file) = secret(env, "BERTH_UPSTREAM_AUTH") {
        for u in &config.upstreams {
            let host = text::origin(&u.url)
                .split_once("://")
                .map_or("", |(_, h)| h);
            if let Some(basic) =
                text::docker_auth(&file, host).map_err(|e| format!("BERTH_UPSTREAM_AUTH: {e}"))?
            {
                credentials.push((u.ns.clone(), basic));
            }
        }
    }
    Ok(MirrorSettings {
        config,
        credentials,
    })
}
