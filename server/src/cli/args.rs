//! The client commands' arguments (clap): how to reach registries, what to print, how to
//! move images, and each command's own.

use std::path::PathBuf;

use berth_client::Platform;
use berth_server::config::parse_size;
use clap::Args;

/// How to reach registries.
#[derive(Args, Debug)]
pub(crate) struct ConnArgs {
    /// Plain HTTP, no TLS, for every registry in the command
    #[arg(long, env = "BERTH_INSECURE")]
    pub insecure: bool,
    /// Plain HTTP for this HOST[:PORT] only; repeatable (comma-separated in the variable)
    #[arg(
        long = "insecure-host",
        value_name = "HOST",
        env = "BERTH_INSECURE_HOSTS",
        value_delimiter = ','
    )]
    pub insecure_hosts: Vec<String>,
    /// Username for the registries (else docker/podman auth files are searched)
    #[arg(long, short = 'u', env = "BERTH_USERNAME")]
    pub username: Option<String>,
    /// Password or token for --username
    #[arg(long, short = 'p', env = "BERTH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// The auth file to use instead of docker's and podman's (e.g. ~/.docker/config.json)
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// Retries of a request on connection errors, 429 and 5xx
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub retries: u32,
}

/// What to print.
#[derive(Args, Debug)]
pub(crate) struct OutArgs {
    /// Machine-readable output: JSON (one object per line for transfers)
    #[arg(long)]
    pub json: bool,
    /// No progress and no summary; print only the digest
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// How to move images.
#[derive(Args, Debug)]
pub(crate) struct TransferArgs {
    /// From an index, copy only this platform's image (OS/ARCH[/VARIANT], e.g. linux/arm64);
    /// without it, the index and every platform are copied
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<Platform>,
    /// Also copy the artifacts that refer to the image (signatures, SBOMs)
    #[arg(long)]
    pub referrers: bool,
    /// Blobs transferred at once
    #[arg(long, short = 'j', default_value_t = 4, value_name = "N")]
    pub jobs: usize,
    /// Push blobs up to SIZE in one request, larger ones in chunks of SIZE (raised to the
    /// registry's OCI-Chunk-Min-Length)
    #[arg(long, default_value = "64M", value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Never send a request body larger than SIZE (e.g. 95M for a Cloudflare Worker)
    #[arg(long, env = "BERTH_MAX_CHUNK_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub max_chunk_size: Option<u64>,
}

/// SOURCE and DEST of `push`, `pull` and `copy` (their help says which locations each takes).
#[derive(Args, Debug)]
pub(crate) struct MoveArgs {
    pub source: String,
    pub dest: String,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Args, Debug)]
pub(crate) struct TagsArgs {
    /// HOST/NAME, or oci:DIR
    pub repository: String,
    /// Tags per page requested from the registry
    #[arg(long, short = 'n', value_name = "N")]
    pub page_size: Option<usize>,
    /// Start after this tag
    #[arg(long, value_name = "TAG")]
    pub last: Option<String>,
    /// One page only (with --page-size); print the next page's link on stderr
    #[arg(long)]
    pub one_page: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// HOST/NAME:TAG, HOST/NAME@DIGEST, oci:DIR[:TAG] or docker-archive:FILE
    pub reference: String,
    /// Print the manifest exactly as served
    #[arg(long, conflicts_with = "config")]
    pub raw: bool,
    /// Print the image's config (of the --platform one, for an index)
    #[arg(long)]
    pub config: bool,
    /// With --config on an index: which platform
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<Platform>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// HOST/NAME:TAG or HOST/NAME@DIGEST
    pub reference: String,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ReferrersArgs {
    /// HOST/NAME:TAG, HOST/NAME@DIGEST or oci:DIR[:TAG]
    pub reference: String,
    /// Only artifacts of this type
    #[arg(long, value_name = "TYPE")]
    pub artifact_type: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub out: OutArgs,
}
