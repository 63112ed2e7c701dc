//! The command line, the `BERTH_*` variables and the TOML file, merged into [`Settings`].
//! A flag beats its variable (clap does that), which beats the file, which beats the default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;

use crate::error::{BadValue, Error};
use berth::gc::policy::{SIZE_UNITS, TIME_UNITS, with_unit};
use berth::names::RepoName;

#[derive(Parser, Debug)]
#[command(name = "berth", version, about = "An OCI Distribution registry")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the registry over HTTP, with data on the local filesystem.
    ///
    /// Every flag can also be set with the BERTH_* variable shown, or in the --config file
    /// under the flag's name with `_` for `-`. A flag beats its variable, which beats the file.
    Serve(Box<ServeArgs>),
    /// Helpers for access control (`berth serve --auth FILE`).
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Run one garbage collection pass now, on the storage `berth serve` would use (the same
    /// flags, variables and file), and print what it removed.
    ///
    /// On a filesystem root a server is running on, only --dry-run works (the server collects
    /// every --gc-interval itself).
    Gc(Box<GcRun>),
}

#[derive(Args, Debug)]
pub struct GcRun {
    /// List what would go, and the bytes it would free, without changing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Also re-hash every stored blob, and remove those that do not match their digest
    #[arg(long)]
    pub scrub: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Read a password from standard input (its first line) and print its hash for a policy
    /// file's `password = "..."`.
    HashPassword {
        /// PBKDF2 rounds: more is slower to guess, and slower per login
        #[arg(long, default_value_t = berth::auth::password::NATIVE_ITERATIONS)]
        iterations: u32,
    },
    /// Print a new random signing key for tokens (64 hex digits), for the file the policy's
    /// `signing_key_file` names, or the Worker's BERTH_AUTH_KEY secret.
    GenKey,
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address and port to listen on [default: 127.0.0.1:5000]
    #[arg(long, env = "BERTH_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory for blobs, uploads and metadata; created if missing [default: ./berth-data]
    #[arg(long, env = "BERTH_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Where blobs, uploads and metadata live: a directory (as --root) or s3://BUCKET[/PREFIX],
    /// which any number of instances may share (see the README's "S3 storage")
    /// [default: ./berth-data]
    #[arg(long, env = "BERTH_STORAGE", value_name = "URL")]
    pub storage: Option<String>,

    /// With s3:// storage: the URL of an S3-compatible server, addressed path-style
    /// (http://host:port/bucket/key); AWS S3 itself when absent
    #[arg(long, env = "BERTH_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// With s3:// storage: the bucket's region [default: AWS_REGION, else us-east-1]
    #[arg(long, env = "BERTH_S3_REGION", value_name = "NAME")]
    pub s3_region: Option<String>,

    /// With s3:// storage: answer blob GETs with 307 to a presigned URL of the bucket's object
    /// (valid 20 minutes), so that clients fetch the bytes from the bucket itself; clients
    /// must be able to reach the --s3-endpoint (see the README's "Redirects")
    #[arg(long, env = "BERTH_REDIRECT", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub redirect: Option<bool>,

    /// Serve the OCI image layout in DIR, read-only, as repository NAME. Repeatable; in the
    /// variable, separate several with commas. In the file: a [layouts] table of NAME = "DIR"
    #[arg(
        long = "layout",
        env = "BERTH_LAYOUT",
        value_name = "NAME=DIR",
        value_delimiter = ',',
        value_parser = parse_layout
    )]
    pub layouts: Vec<(RepoName, PathBuf)>,

    /// A TOML file with any of these settings; relative paths in it are relative to the file
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log level: off, error, warn, info (one line per request), debug or trace [default: info]
    #[arg(long, env = "BERTH_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Refuse every push and delete; answer only GET and HEAD
    #[arg(long, env = "BERTH_READ_ONLY", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub read_only: Option<bool>,

    /// Refuse DELETE of manifests, tags and blobs
    #[arg(long, env = "BERTH_NO_DELETES", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_deletes: Option<bool>,

    /// Do not serve the web page at / (the registry's API is unaffected)
    #[arg(long, env = "BERTH_NO_UI", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_ui: Option<bool>,

    /// Largest manifest accepted, in bytes or with a K, M or G suffix (binary) [default: 4M]
    #[arg(long, env = "BERTH_MAX_MANIFEST_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub max_manifest_size: Option<u64>,

    /// Largest blob accepted (a push past it gets 413 SIZE_INVALID, refused before a byte is
    /// read when its length is announced) [default: no limit]
    #[arg(long, env = "BERTH_MAX_BLOB_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub max_blob_size: Option<u64>,

    /// Drop an upload session idle this long, with its bytes: seconds, or with an s, m, h or d
    /// suffix [default: 24h]
    #[arg(long, env = "BERTH_UPLOAD_EXPIRY", value_name = "TIME", value_parser = parse_secs)]
    pub upload_expiry: Option<u64>,

    /// On SIGINT or SIGTERM, let requests in flight run this long before closing connections
    /// [default: 30s]
    #[arg(long, env = "BERTH_SHUTDOWN_GRACE", value_name = "TIME", value_parser = parse_secs)]
    pub shutdown_grace: Option<u64>,

    /// Access control: the policy file (users, rules, token settings; see the README).
    /// Without it, anyone may pull, push and delete
    #[arg(long, env = "BERTH_AUTH", value_name = "FILE")]
    pub auth: Option<PathBuf>,

    /// Limits against slow or hostile clients; see the README's "Hardening"
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Garbage collection, retention, quotas; see the README's "Garbage collection"
    #[command(flatten)]
    pub gc: GcArgs,

    /// TLS, metrics, log format, event webhooks; see the README's "Operations"
    #[command(flatten)]
    pub ops: OpsArgs,

    /// Pull-through cache of other registries; see the README's "Mirror"
    #[command(flatten)]
    pub mirror: MirrorArgs,
}

/// A pull-through cache of other registries.
#[derive(Args, Debug, Default)]
pub struct MirrorArgs {
    /// Mirror a registry. URL alone: the default upstream, for requests that name none
    /// (docker's registry-mirrors); NS=URL: requests with ?ns=NS (containerd). `docker.io`
    /// means Docker Hub. Repeatable; in the variable, separate several with commas
    #[arg(
        long = "upstream",
        env = "BERTH_UPSTREAM",
        value_name = "[NS=]URL",
        value_delimiter = ','
    )]
    pub upstream: Vec<String>,

    /// Serve upstream NS's repositories under PREFIX/ too (hub/library/alpine is
    /// docker.io's library/alpine), for clients that cannot send ?ns=. Repeatable
    #[arg(
        long = "upstream-prefix",
        env = "BERTH_UPSTREAM_PREFIX",
        value_name = "PREFIX=NS",
        value_delimiter = ','
    )]
    pub upstream_prefix: Vec<String>,

    /// How long a tag pulled through is served before upstream is asked again [default: 5m]
    #[arg(long, env = "BERTH_UPSTREAM_TTL", value_name = "TIME", value_parser = parse_secs)]
    pub upstream_ttl: Option<u64>,

    /// Credentials for the upstreams, by host: a docker config.json or containers auth.json.
    /// Without it, anonymous (the token flow)
    #[arg(long, env = "BERTH_UPSTREAM_AUTH", value_name = "FILE")]
    pub upstream_auth: Option<PathBuf>,

    /// Bytes the mirror's cache may hold; past them, the least recently used images are
    /// dropped before each garbage collection pass, which frees their bytes [default: no limit]
    #[arg(long, env = "BERTH_UPSTREAM_CACHE_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub upstream_cache_size: Option<u64>,

    /// Let clients push to mirrored repositories (refused with UNSUPPORTED otherwise)
    #[arg(long, env = "BERTH_UPSTREAM_PUSH", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub upstream_push: Option<bool>,
}

/// [`MirrorArgs`] resolved.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    pub config: berth::mirror::MirrorConfig,
    pub auth: Option<PathBuf>,
}

/// Running it in production: TLS, metrics, logs, events.
#[derive(Args, Debug, Default)]
pub struct OpsArgs {
    /// Serve HTTPS with this certificate (PEM; the chain after the leaf in the same file).
    /// Reloaded when the file changes, or on SIGHUP. Needs --tls-key
    #[arg(
        long,
        env = "BERTH_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(
        long,
        env = "BERTH_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Serve /metrics (and /healthz, /readyz) on this address instead of the registry's
    /// listener [default: /metrics on the registry's listener]
    #[arg(long, env = "BERTH_METRICS_LISTEN", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log lines as text or json (one JSON object per line) [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// POST a CloudEvents JSON notification of each manifest push and delete to URL (http://
    /// or https://). Repeatable; in the variable, separate several with commas
    #[arg(
        long = "notify",
        env = "BERTH_NOTIFY",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub notify: Vec<String>,

    /// Events waiting for each --notify URL at most; past it they are dropped (and counted)
    /// [default: 1024]
    #[arg(long, env = "BERTH_NOTIFY_QUEUE", value_name = "N")]
    pub notify_queue: Option<usize>,
}

/// [`OpsArgs`] resolved.
#[derive(Debug, Clone, Default)]
pub struct OpsSettings {
    /// Certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub metrics_listen: Option<SocketAddr>,
    pub log_json: bool,
    pub notify: Vec<http::Uri>,
    pub notify_queue: usize,
}

/// Garbage collection and the content policy.
#[derive(Args, Debug, Default)]
pub struct GcArgs {
    /// Unreferenced content younger than this is never collected; every instance sharing the
    /// storage must use the same [default: 24h; at least 4s]
    #[arg(long, env = "BERTH_GC_GRACE", value_name = "TIME", value_parser = parse_secs)]
    pub gc_grace: Option<u64>,

    /// Run a garbage collection pass this often; 0 turns collection off (expired uploads are
    /// still dropped) [default: 1h]
    #[arg(long, env = "BERTH_GC_INTERVAL", value_name = "TIME", value_parser = parse_secs)]
    pub gc_interval: Option<u64>,

    /// The content policy: retention, untagged manifests, immutable tags, quotas (see the
    /// README). Without it, only unreferenced content goes
    #[arg(long, env = "BERTH_GC_POLICY", value_name = "FILE")]
    pub gc_policy: Option<PathBuf>,

    /// Re-hash every stored blob this often and take out corrupt ones; 0 is never
    /// [default: 0]
    #[arg(long, env = "BERTH_SCRUB_INTERVAL", value_name = "TIME", value_parser = parse_secs)]
    pub scrub_interval: Option<u64>,
}

/// Connection limits, each with a default a public deployment can keep.
#[derive(Args, Debug, Default)]
pub struct LimitArgs {
    /// Time a client has to send a request's head; also how long an idle keep-alive
    /// connection stays open [default: 30s]
    #[arg(long, env = "BERTH_HEADER_TIMEOUT", value_name = "TIME", value_parser = parse_secs)]
    pub header_timeout: Option<u64>,

    /// Largest request head (request line and headers); larger ones get 431 [default: 32K]
    #[arg(long, env = "BERTH_MAX_HEADER_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub max_header_size: Option<u64>,

    /// Longest pause allowed inside a request body or while a response is being read
    /// [default: 60s]
    #[arg(long, env = "BERTH_STALL_TIMEOUT", value_name = "TIME", value_parser = parse_secs)]
    pub stall_timeout: Option<u64>,

    /// Connections open at once; past it, new ones get 503 with Retry-After (over TLS they are
    /// closed) [default: 1024]
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Upload sessions one repository may hold open; past it, a new one gets 429
    /// TOOMANYREQUESTS (0: no limit) [default: 1000]
    #[arg(long, env = "BERTH_MAX_UPLOADS", value_name = "N")]
    pub max_uploads: Option<usize>,
}

/// Everything `berth serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub root: PathBuf,
    /// A bucket instead of `root`.
    pub s3: Option<crate::s3::S3Config>,
    pub layouts: Vec<(RepoName, PathBuf)>,
    pub log_level: LevelFilter,
    pub read_only: bool,
    pub no_deletes: bool,
    pub no_ui: bool,
    pub max_manifest_size: usize,
    pub max_blob_size: Option<u64>,
    pub upload_expiry: u64,
    pub shutdown_grace: Duration,
    pub auth: Option<PathBuf>,
    pub header_timeout: Duration,
    pub max_header_size: usize,
    pub stall_timeout: Duration,
    pub max_connections: usize,
    /// `None`: no limit.
    pub max_uploads: Option<usize>,
    pub gc_grace: u64,
    /// `None`: no passes.
    pub gc_interval: Option<Duration>,
    pub gc_policy: Option<PathBuf>,
    pub scrub_interval: Option<Duration>,
    pub ops: OpsSettings,
    /// `None`: not a mirror.
    pub mirror: Option<MirrorSettings>,
}

/// The TOML file: the flags' names with `_`, every one optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    root: Option<PathBuf>,
    storage: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    redirect: Option<bool>,
    #[serde(default)]
    layouts: BTreeMap<String, PathBuf>,
    log_level: Option<String>,
    read_only: Option<bool>,
    no_deletes: Option<bool>,
    no_ui: Option<bool>,
    max_manifest_size: Option<Amount>,
    max_blob_size: Option<Amount>,
    upload_expiry: Option<Amount>,
    shutdown_grace: Option<Amount>,
    auth: Option<PathBuf>,
    header_timeout: Option<Amount>,
    max_header_size: Option<Amount>,
    stall_timeout: Option<Amount>,
    max_connections: Option<usize>,
    max_uploads: Option<usize>,
    gc_grace: Option<Amount>,
    gc_interval: Option<Amount>,
    gc_policy: Option<PathBuf>,
    scrub_interval: Option<Amount>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    log_format: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
    notify_queue: Option<usize>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    upstream_prefix: Vec<String>,
    upstream_ttl: Option<Amount>,
    upstream_auth: Option<PathBuf>,
    upstream_push: Option<bool>,
    upstream_cache_size: Option<Amount>,
}

/// A number, or text with a unit suffix.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Amount {
    Number(u64),
    Text(String),
}

impl Amount {
    fn parse(self, what: &str, unit: fn(&str) -> Result<u64, BadValue>) -> Result<u64, Error> {
        match self {
            Amount::Number(n) => Ok(n),
            Amount::Text(t) => unit(&t).map_err(|e| Error::setting(what, e.to_string())),
        }
    }
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> Result<Settings, Error> {
        let (file, base) = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                let file: FileConfig = toml::from_str(&text)
                    .map_err(|e| Error::setting(path.display().to_string(), e.to_string()))?;
                let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
                (file, base)
            }
            None => (FileConfig::default(), PathBuf::new()),
        };
        let (root, s3) = storage(&args, &file, &base)?;
        let layouts = if args.layouts.is_empty() {
            file.layouts
                .into_iter()
                .map(|(name, dir)| {
                    let name = name.parse().map_err(|()| {
                        Error::setting(format!("[layouts] {name:?}"), "not a repository name")
                    })?;
                    Ok((name, base.join(dir)))
                })
                .collect::<Result<_, Error>>()?
        } else {
            args.layouts
        };
        let mut names: Vec<&RepoName> = layouts.iter().map(|(n, _)| n).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::setting(
                "layouts",
                "two layouts with the same repository name",
            ));
        }
        let log_level = args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        let log_level = log_level.parse().map_err(|_| {
            Error::setting(
                "log-level",
                format!("{log_level:?} is not off, error, warn, info, debug or trace"),
            )
        })?;
        // A flag (or its variable) beats the file, which beats the default.
        let pick = |what: &str, flag: Option<u64>, file: Option<Amount>, unit, default| match flag {
            Some(n) => Ok(n),
            None => file
                .map(|a| a.parse(what, unit))
                .transpose()
                .map(|v| v.unwrap_or(default)),
        };
        let max_manifest_size = pick(
            "max_manifest_size",
            args.max_manifest_size,
            file.max_manifest_size,
            parse_size,
            4 << 20,
        )?;
        let upload_expiry = pick(
            "upload_expiry",
            args.upload_expiry,
            file.upload_expiry,
            parse_secs,
            24 * 3600,
        )?;
        let shutdown_grace = pick(
            "shutdown_grace",
            args.shutdown_grace,
            file.shutdown_grace,
            parse_secs,
            30,
        )?;
        let limits = args.limits;
        let header_timeout = pick(
            "header_timeout",
            limits.header_timeout,
            file.header_timeout,
            parse_secs,
            30,
        )?;
        let stall_timeout = pick(
            "stall_timeout",
            limits.stall_timeout,
            file.stall_timeout,
            parse_secs,
            60,
        )?;
        let max_header_size = pick(
            "max_header_size",
            limits.max_header_size,
            file.max_header_size,
            parse_size,
            32 << 10,
        )?;
        let gc = args.gc;
        let gc_grace = pick(
            "gc_grace",
            gc.gc_grace,
            file.gc_grace,
            parse_secs,
            24 * 3600,
        )?;
        if gc_grace < berth::gc::MIN_GRACE {
            return Err(Error::setting(
                "gc-grace",
                format!("at least {}s", berth::gc::MIN_GRACE),
            ));
        }
        let gc_interval = pick(
            "gc_interval",
            gc.gc_interval,
            file.gc_interval,
            parse_secs,
            3600,
        )?;
        let scrub_interval = pick(
            "scrub_interval",
            gc.scrub_interval,
            file.scrub_interval,
            parse_secs,
            0,
        )?;
        if header_timeout == 0 || stall_timeout == 0 || max_header_size < 1024 {
            return Err(Error::setting(
                "limits",
                "header-timeout and stall-timeout must be at least 1s, max-header-size at least 1K",
            ));
        }
        let m = args.mirror;
        let upstream_ttl = pick(
            "upstream_ttl",
            m.upstream_ttl,
            file.upstream_ttl,
            parse_secs,
            300,
        )?;
        let upstreams = if m.upstream.is_empty() {
            file.upstream
        } else {
            m.upstream
        };
        let prefixes = if m.upstream_prefix.is_empty() {
            file.upstream_prefix
        } else {
            m.upstream_prefix
        };
        let mirror = if upstreams.is_empty() {
            if !prefixes.is_empty() {
                return Err(Error::setting("upstream-prefix", "needs an --upstream"));
            }
            None
        } else {
            let push = m.upstream_push.or(file.upstream_push).unwrap_or(false);
            let mut config =
                berth::mirror::MirrorConfig::new(&upstreams, &prefixes, upstream_ttl, push)
                    .map_err(|e| Error::setting("upstream", e))?;
            config.cache_size = match m.upstream_cache_size {
                Some(n) => Some(n),
                None => file
                    .upstream_cache_size
                    .map(|a| a.parse("upstream_cache_size", parse_size))
                    .transpose()?,
            };
            Some(MirrorSettings {
                config,
                auth: m.upstream_auth.or(file.upstream_auth.map(|p| base.join(p))),
            })
        };
        let ops = resolve_ops(
            args.ops,
            OpsArgs {
                tls_cert: file.tls_cert.map(|p| base.join(p)),
                tls_key: file.tls_key.map(|p| base.join(p)),
                metrics_listen: file.metrics_listen,
                log_format: file.log_format,
                notify: file.notify,
                notify_queue: file.notify_queue,
            },
        )?;
        Ok(Settings {
            ops,
            mirror,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5000))),
            root,
            s3,
            layouts,
            log_level,
            read_only: args.read_only.or(file.read_only).unwrap_or(false),
            no_deletes: args.no_deletes.or(file.no_deletes).unwrap_or(false),
            no_ui: args.no_ui.or(file.no_ui).unwrap_or(false),
            max_blob_size: match args.max_blob_size {
                Some(n) => Some(n),
                None => file
                    .max_blob_size
                    .map(|a| a.parse("max_blob_size", parse_size))
                    .transpose()?,
            },
            max_manifest_size: usize::try_from(max_manifest_size)
                .map_err(|_| Error::setting("max-manifest-size", "too large"))?,
            upload_expiry,
            shutdown_grace: Duration::from_secs(shutdown_grace),
            auth: args.auth.or(file.auth.map(|a| base.join(a))),
            header_timeout: Duration::from_secs(header_timeout),
            max_header_size: usize::try_from(max_header_size)
                .map_err(|_| Error::setting("max-header-size", "too large"))?,
            stall_timeout: Duration::from_secs(stall_timeout),
            max_connections: match limits.max_connections.or(file.max_connections) {
                Some(0) => return Err(Error::setting("max-connections", "at least 1")),
                n => n.unwrap_or(1024),
            },
            max_uploads: match limits.max_uploads.or(file.max_uploads) {
                Some(0) => None,
                n => Some(n.unwrap_or(1000)),
            },
            gc_grace,
            gc_interval: (gc_interval > 0).then(|| Duration::from_secs(gc_interval)),
            gc_policy: gc.gc_policy.or(file.gc_policy.map(|p| base.join(p))),
            scrub_interval: (scrub_interval > 0).then(|| Duration::from_secs(scrub_interval)),
        })
    }
}

/// Flags beat the file, one setting at a time.
fn resolve_ops(flags: OpsArgs, file: OpsArgs) -> Result<OpsSettings, Error> {
    let tls = match (
        flags.tls_cert.or(file.tls_cert),
        flags.tls_key.or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(Error::setting("tls", "tls-cert and tls-key go together")),
    };
    let log_json = match flags.log_format.or(file.log_format).as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Error::setting(
                "log-format",
                format!("{other:?} is not text or json"),
            ));
        }
    };
    let notify = if flags.notify.is_empty() {
        file.notify
    } else {
        flags.notify
    };
    let notify = notify
        .iter()
        .map(|u| {
            let uri: http::Uri = u
                .parse()
                .map_err(|_| Error::setting("notify", format!("{u:?} is not a URL")))?;
            match (uri.scheme_str(), uri.host()) {
                (Some("http" | "https"), Some(_)) => Ok(uri),
                _ => Err(Error::setting(
                    "notify",
                    format!("{u:?} is not an http:// or https:// URL"),
                )),
            }
        })
        .collect::<Result<_, Error>>()?;
    Ok(OpsSettings {
        tls,
        metrics_listen: flags.metrics_listen.or(file.metrics_listen),
        log_json,
        notify,
        notify_queue: flags.notify_queue.or(file.notify_queue).unwrap_or(1024),
    })
}

/// How long a presigned URL a blob GET is redirected to stays valid: long enough for a slow
/// pull of a large layer to start (the bucket checks expiry when a request begins), short
/// enough that a URL passed on does not stay useful.
pub const REDIRECT_EXPIRY: Duration = Duration::from_secs(20 * 60);

/// `--storage` (a path or `s3://...`, with its S3 settings) or `--root`: not both.
fn storage(
    args: &ServeArgs,
    file: &FileConfig,
    base: &Path,
) -> Result<(PathBuf, Option<crate::s3::S3Config>), Error> {
    let root = args
        .root
        .clone()
        .or(file.root.as_ref().map(|r| base.join(r)));
    let url = args.storage.clone().or(file.storage.clone());
    let redirect = args.redirect.or(file.redirect).unwrap_or(false);
    let is_s3 = url.as_deref().is_some_and(|u| u.starts_with("s3://"));
    if redirect && !is_s3 {
        return Err(Error::setting("redirect", "needs s3:// storage"));
    }
    let Some(url) = url else {
        return Ok((root.unwrap_or_else(|| PathBuf::from("berth-data")), None));
    };
    if root.is_some() {
        return Err(Error::setting(
            "storage",
            "give --storage or --root, not both",
        ));
    }
    let Some(parsed) = crate::s3::S3Config::parse(&url) else {
        let path = match args.storage.is_some() {
            true => PathBuf::from(url),
            false => base.join(url),
        };
        return Ok((path, None));
    };
    let mut s3 = parsed.map_err(|e| Error::setting("storage", e))?;
    s3.endpoint = args.s3_endpoint.clone().or(file.s3_endpoint.clone());
    s3.region = args.s3_region.clone().or(file.s3_region.clone());
    s3.redirect = redirect.then_some(REDIRECT_EXPIRY);
    if let Some(e) = &s3.endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(Error::setting("s3-endpoint", "an http:// or https:// URL"));
    }
    Ok((PathBuf::from("berth-data"), Some(s3)))
}

fn parse_layout(s: &str) -> Result<(RepoName, PathBuf), BadValue> {
    let bad = || BadValue {
        value: s.to_owned(),
        expected: "NAME=DIR, NAME a repository name",
    };
    let (name, dir) = s.split_once('=').ok_or_else(bad)?;
    let name = name.parse().map_err(|()| bad())?;
    if dir.is_empty() {
        return Err(bad());
    }
    Ok((name, PathBuf::from(dir)))
}

/// `4194304`, `512K`, `4M`, `4MiB`, `1G`.
pub fn parse_size(s: &str) -> Result<u64, BadValue> {
    with_unit(s, SIZE_UNITS).ok_or_else(|| BadValue {
        value: s.to_owned(),
        expected: "a size such as 4194304, 512K, 4M",
    })
}

/// `90`, `90s`, `15m`, `24h`, `7d`, in seconds.
pub fn parse_secs(s: &str) -> Result<u64, BadValue> {
    with_unit(s, TIME_UNITS).ok_or_else(|| BadValue {
        value: s.to_owned(),
        expected: "a time such as 90, 15m, 24h, 7d",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> ServeArgs {
        let mut argv = vec!["berth", "serve"];
        argv.extend_from_slice(list);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => *a,
            Command::Auth(_) | Command::Gc(_) => unreachable!(),
        }
    }

    #[test]
    fn units() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_secs("24h"), Ok(86400));
        assert_eq!(parse_secs("90"), Ok(90));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("99999999999999999999d").is_err());
    }

    #[test]
    fn defaults() {
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(s.root, PathBuf::from("berth-data"));
        assert_eq!(s.max_manifest_size, 4 << 20);
        assert_eq!(s.upload_expiry, 86400);
        assert!(!s.read_only && !s.no_deletes);
        assert_eq!(s.header_timeout, Duration::from_secs(30));
        assert_eq!(s.max_header_size, 32 << 10);
        assert_eq!(s.stall_timeout, Duration::from_secs(60));
        let s = Settings::resolve(args(&["--header-timeout=5s", "--max-header-size=8K"])).unwrap();
        assert_eq!(s.header_timeout, Duration::from_secs(5));
        assert_eq!(s.max_header_size, 8 << 10);
        assert!(Settings::resolve(args(&["--stall-timeout=0"])).is_err());
        assert_eq!(s.max_uploads, Some(1000));
        let s = Settings::resolve(args(&["--max-uploads=5"])).unwrap();
        assert_eq!(s.max_uploads, Some(5));
        let s = Settings::resolve(args(&["--max-uploads=0"])).unwrap();
        assert_eq!(s.max_uploads, None, "0 is no limit");
        assert!(Cli::try_parse_from(["berth", "serve", "--max-uploads=-1"]).is_err());
    }

    #[test]
    fn storage() {
        let s = Settings::resolve(args(&["--storage", "/srv/berth"])).unwrap();
        assert_eq!((s.root, s.s3), (PathBuf::from("/srv/berth"), None));
        let s = Settings::resolve(args(&[
            "--storage",
            "s3://reg/some/prefix/",
            "--s3-endpoint",
            "http://127.0.0.1:8333",
            "--s3-region",
            "auto",
        ]))
        .unwrap();
        let s3 = s.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("reg", "some/prefix/")
        );
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(s3.region.as_deref(), Some("auto"));
        let s = Settings::resolve(args(&["--storage", "s3://reg"])).unwrap();
        let s3 = s.s3.unwrap();
        assert_eq!((s3.prefix.as_str(), s3.redirect), ("", None));
        let s = Settings::resolve(args(&["--storage", "s3://reg", "--redirect"])).unwrap();
        assert_eq!(s.s3.unwrap().redirect, Some(REDIRECT_EXPIRY));
        let s = Settings::resolve(args(&["--storage", "s3://reg", "--redirect=false"])).unwrap();
        assert_eq!(s.s3.unwrap().redirect, None);
        for bad in [
            &["--storage", "s3://"][..],
            &["--storage", "s3:///x"],
            &["--storage", "s3://b/../x"],
            &["--storage", "s3://b", "--s3-endpoint", "127.0.0.1:8333"],
            &["--storage", "s3://b", "--root", "/x"],
            &["--storage", "/srv/berth", "--redirect"],
            &["--redirect"],
        ] {
            assert!(Settings::resolve(args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = std::env::temp_dir().join(format!("berth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("berth.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:6000\"\nroot = \"data\"\nread_only = true\n\
             upload_expiry = \"1h\"\nmax_manifest_size = 8388608\nauth = \"policy.toml\"\n\
             [layouts]\ndemo = \"img\"\n",
        )
        .unwrap();
        let config = format!("--config={}", file.display());
        let s = Settings::resolve(args(&[&config])).unwrap();
        assert_eq!(s.listen.port(), 6000);
        assert_eq!(s.root, dir.join("data"));
        assert!(s.read_only);
        assert_eq!(s.upload_expiry, 3600);
        assert_eq!(s.max_manifest_size, 8 << 20);
        assert_eq!(s.layouts, vec![("demo".parse().unwrap(), dir.join("img"))]);
        assert_eq!(s.auth, Some(dir.join("policy.toml")));

        let s = Settings::resolve(args(&[
            &config,
            "--listen=127.0.0.1:7000",
            "--read-only=false",
            "--layout",
            "a/b=/x",
        ]))
        .unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert!(!s.read_only);
        assert_eq!(s.layouts, vec![("a/b".parse().unwrap(), "/x".into())]);
        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        assert!(Settings::resolve(args(&[&config])).is_err(), "unknown keys");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ops_flags() {
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert!(s.ops.tls.is_none() && s.ops.metrics_listen.is_none() && !s.ops.log_json);
        assert_eq!(s.ops.notify_queue, 1024);
        let s = Settings::resolve(args(&[
            "--log-format=json",
            "--notify=http://127.0.0.1:9/a",
            "--notify=https://hooks.example/b",
            "--metrics-listen=127.0.0.1:9100",
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
        ]))
        .unwrap();
        assert!(s.ops.log_json);
        assert_eq!(s.ops.notify.len(), 2);
        assert_eq!(s.ops.metrics_listen.unwrap().port(), 9100);
        assert_eq!(s.ops.tls, Some(("c.pem".into(), "k.pem".into())));
        assert!(Settings::resolve(args(&["--log-format=xml"])).is_err());
        assert!(Settings::resolve(args(&["--notify=ftp://x/y"])).is_err());
        assert!(Settings::resolve(args(&["--notify=/relative"])).is_err());
        let alone = |flag: &str| Cli::try_parse_from(["berth", "serve", flag]).is_err();
        assert!(alone("--tls-cert=c.pem") && alone("--tls-key=k.pem"));
    }

    #[test]
    fn bad_flags() {
        let bad = |l: &[&str]| {
            let mut argv = vec!["berth", "serve"];
            argv.extend_from_slice(l);
            Cli::try_parse_from(argv).is_err()
        };
        assert!(bad(&["--layout", "Bad=/x"]));
        assert!(bad(&["--layout", "noequals"]));
        assert!(bad(&["--listen", "nowhere"]));
        assert!(!bad(&["--read-only"]));
        assert!(!bad(&["--no-deletes", "--read-only=no"]));
    }
}
