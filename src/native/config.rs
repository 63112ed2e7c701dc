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

use crate::names::RepoName;

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
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Read a password from standard input (its first line) and print its hash for a policy
    /// file's `password = "..."`.
    HashPassword {
        /// PBKDF2 rounds: more is slower to guess, and slower per login
        #[arg(long, default_value_t = crate::auth::password::DEFAULT_ITERATIONS)]
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

    /// Largest manifest accepted, in bytes or with a K, M or G suffix (binary) [default: 4M]
    #[arg(long, env = "BERTH_MAX_MANIFEST_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub max_manifest_size: Option<u64>,

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
}

/// Everything `berth serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub root: PathBuf,
    pub layouts: Vec<(RepoName, PathBuf)>,
    pub log_level: LevelFilter,
    pub read_only: bool,
    pub no_deletes: bool,
    pub max_manifest_size: usize,
    pub upload_expiry: u64,
    pub shutdown_grace: Duration,
    pub auth: Option<PathBuf>,
    pub header_timeout: Duration,
    pub max_header_size: usize,
    pub stall_timeout: Duration,
}

/// The TOML file: the flags' names with `_`, every one optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    root: Option<PathBuf>,
    #[serde(default)]
    layouts: BTreeMap<String, PathBuf>,
    log_level: Option<String>,
    read_only: Option<bool>,
    no_deletes: Option<bool>,
    max_manifest_size: Option<Amount>,
    upload_expiry: Option<Amount>,
    shutdown_grace: Option<Amount>,
    auth: Option<PathBuf>,
    header_timeout: Option<Amount>,
    max_header_size: Option<Amount>,
    stall_timeout: Option<Amount>,
}

/// A number, or text with a unit suffix.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Amount {
    Number(u64),
    Text(String),
}

impl Amount {
    fn parse(self, unit: fn(&str) -> Result<u64, String>) -> Result<u64, String> {
        match self {
            Amount::Number(n) => Ok(n),
            Amount::Text(t) => unit(&t),
        }
    }
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> Result<Settings, String> {
        let (file, base) = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                let file: FileConfig =
                    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
                (file, base)
            }
            None => (FileConfig::default(), PathBuf::new()),
        };
        let layouts = if args.layouts.is_empty() {
            file.layouts
                .into_iter()
                .map(|(name, dir)| {
                    let name = name
                        .parse()
                        .map_err(|()| format!("invalid repository name {name:?} in [layouts]"))?;
                    Ok((name, base.join(dir)))
                })
                .collect::<Result<_, String>>()?
        } else {
            args.layouts
        };
        let mut names: Vec<&RepoName> = layouts.iter().map(|(n, _)| n).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("two layouts with the same repository name".into());
        }
        let log_level = args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        let log_level = log_level
            .parse()
            .map_err(|_| format!("invalid log level {log_level:?}"))?;
        let max_manifest_size = match args.max_manifest_size {
            Some(n) => n,
            None => file
                .max_manifest_size
                .map(|a| a.parse(parse_size))
                .transpose()?
                .unwrap_or(4 << 20),
        };
        let upload_expiry = match args.upload_expiry {
            Some(n) => n,
            None => file
                .upload_expiry
                .map(|a| a.parse(parse_secs))
                .transpose()?
                .unwrap_or(24 * 3600),
        };
        let shutdown_grace = match args.shutdown_grace {
            Some(n) => n,
            None => file
                .shutdown_grace
                .map(|a| a.parse(parse_secs))
                .transpose()?
                .unwrap_or(30),
        };
        let pick = |flag: Option<u64>, file: Option<Amount>, unit, default| match flag {
            Some(n) => Ok(n),
            None => file
                .map(|a| a.parse(unit))
                .transpose()
                .map(|v| v.unwrap_or(default)),
        };
        let limits = args.limits;
        let header_timeout = pick(limits.header_timeout, file.header_timeout, parse_secs, 30)?;
        let stall_timeout = pick(limits.stall_timeout, file.stall_timeout, parse_secs, 60)?;
        let max_header_size = pick(
            limits.max_header_size,
            file.max_header_size,
            parse_size,
            32 << 10,
        )?;
        if header_timeout == 0 || stall_timeout == 0 || max_header_size < 1024 {
            return Err("header-timeout and stall-timeout must be at least 1s, \
                        max-header-size at least 1K"
                .into());
        }
        Ok(Settings {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5000))),
            root: args
                .root
                .or(file.root.map(|r| base.join(r)))
                .unwrap_or_else(|| PathBuf::from("berth-data")),
            layouts,
            log_level,
            read_only: args.read_only.or(file.read_only).unwrap_or(false),
            no_deletes: args.no_deletes.or(file.no_deletes).unwrap_or(false),
            max_manifest_size: usize::try_from(max_manifest_size)
                .map_err(|_| "max-manifest-size is too large".to_owned())?,
            upload_expiry,
            shutdown_grace: Duration::from_secs(shutdown_grace),
            auth: args.auth.or(file.auth.map(|a| base.join(a))),
            header_timeout: Duration::from_secs(header_timeout),
            max_header_size: usize::try_from(max_header_size)
                .map_err(|_| "max-header-size is too large".to_owned())?,
            stall_timeout: Duration::from_secs(stall_timeout),
        })
    }
}

fn parse_layout(s: &str) -> Result<(RepoName, PathBuf), String> {
    let (name, dir) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=DIR, got {s:?}"))?;
    let name = name
        .parse()
        .map_err(|()| format!("invalid repository name {name:?}"))?;
    if dir.is_empty() {
        return Err(format!("no directory for layout {name}"));
    }
    Ok((name, PathBuf::from(dir)))
}

/// A number with an optional unit suffix from `units`.
fn with_unit(s: &str, units: &[(&str, u64)]) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let factor = if unit.is_empty() {
        1
    } else {
        units.iter().find(|(u, _)| *u == unit.trim())?.1
    };
    n.checked_mul(factor)
}

/// `4194304`, `512K`, `4M`, `4MiB`, `1G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const UNITS: &[(&str, u64)] = &[
        ("B", 1),
        ("K", 1 << 10),
        ("KiB", 1 << 10),
        ("M", 1 << 20),
        ("MiB", 1 << 20),
        ("G", 1 << 30),
        ("GiB", 1 << 30),
    ];
    with_unit(s, UNITS).ok_or_else(|| format!("invalid size {s:?} (e.g. 4194304, 512K, 4M)"))
}

/// `90`, `90s`, `15m`, `24h`, `7d`, in seconds.
pub fn parse_secs(s: &str) -> Result<u64, String> {
    const UNITS: &[(&str, u64)] = &[("s", 1), ("m", 60), ("h", 3600), ("d", 86400)];
    with_unit(s, UNITS).ok_or_else(|| format!("invalid time {s:?} (e.g. 90, 15m, 24h, 7d)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> ServeArgs {
        let mut argv = vec!["berth", "serve"];
        argv.extend_from_slice(list);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => *a,
            Command::Auth(_) => unreachable!(),
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
