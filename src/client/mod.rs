//! The client: copy images and artifacts between registries, OCI image layouts and `docker
//! save` archives, and talk to a registry's API (tags, manifests, referrers, deletes).
//!
//! The `berth` subcommands `push`, `pull`, `copy`, `tags`, `inspect`, `delete` and
//! `referrers` are thin layers over this module.
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth::client::Error> {
//! use std::sync::Arc;
//! use berth::client::{Client, ClientOptions, CopyOptions, Location, copy};
//!
//! let client = Client::new(ClientOptions::default())?;
//! let src: Location = "oci:./images:app".parse()?;
//! let dst: Location = "registry.example.com/team/app:v1".parse()?;
//! let report = copy(&client, &src, &dst, &CopyOptions::default(), Arc::new(())).await?;
//! println!("pushed {}", report.digest);
//! # Ok(()) }
//! ```
//!
//! - [`reference`]: `HOST/NAME:TAG`, `HOST/NAME@DIGEST`, `oci:DIR[:TAG]`, `docker-archive:FILE`;
//! - [`Client`] and [`Repository`]: HTTPS (rustls) or plain HTTP per host, the Bearer and
//!   Basic auth flows with a token cache per scope, retries with backoff on 429 and 5xx;
//! - [`layout`] and [`archive`]: OCI image layouts (read and write) and docker archives (read);
//! - [`copy()`]: the graph walk, blobs moved concurrently, verified, skipped or mounted, pulls
//!   resumed with `Range`, pushes chunked to fit a registry's request limits;
//! - [`progress`]: the events a copy reports, with a terminal and a JSON-lines reporter.

pub mod archive;
pub mod auth;
mod copy;
mod error;
pub mod inspect;
pub mod layout;
pub mod progress;
pub mod reference;
mod registry;
mod stream;
mod transport;
mod upload;

pub use copy::{CopyOptions, CopyReport, Platform, copy};
pub use error::{Error, ErrorKind};
pub use inspect::{Inspection, inspect, referrers};
pub use progress::{Outcome, Progress};
pub use reference::{ImageRef, Location};
pub use registry::{Manifest, Repository, TagPage};
pub use transport::{Client, ClientOptions};
pub use upload::UploadOptions;

/// Every manifest media type berth asks for (`Accept`) and understands.
pub const MANIFEST_TYPES: &[&str] = &[
    crate::manifest::OCI_MANIFEST,
    crate::manifest::OCI_INDEX,
    crate::manifest::DOCKER_MANIFEST,
    crate::manifest::DOCKER_LIST,
];

/// The largest manifest read, in bytes (the spec asks registries to take at least 4 MiB).
pub const MAX_MANIFEST: usize = 8 << 20;
