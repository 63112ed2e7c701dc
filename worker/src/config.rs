//! Settings from wrangler `[vars]`; the access-control policy and the token signing key from
//! secrets (`wrangler secret put BERTH_AUTH_POLICY`, `BERTH_AUTH_KEY`), or vars in tests.

use berth::Config;

use crate::r2::{DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::text::parse_size;

pub struct Settings {
    pub config: Config,
    /// Size of every part but the last of a chunked upload's R2 multipart upload.
    pub part_size: u64,
    /// Serve `/_berth/contract`, which runs the storage contract suite against the bucket.
    /// Only test configurations set it.
    pub contract_tests: bool,
    /// The policy file's text and the signing key, when access control is on.
    pub auth: Option<(String, String)>,
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
            upload_expiry: var(env, "BERTH_UPLOAD_EXPIRY")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(defaults.upload_expiry),
            chunk_min_length: (chunk_min > 0).then_some(chunk_min),
            max_page_size: var(env, "BERTH_MAX_PAGE_SIZE")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(defaults.max_page_size),
        };
        Settings {
            config,
            part_size,
            contract_tests: flag(env, "BERTH_CONTRACT_TESTS", false),
            auth: secret(env, "BERTH_AUTH_POLICY")
                .map(|policy| (policy, secret(env, "BERTH_AUTH_KEY").unwrap_or_default())),
        }
    }
}
