//! The client: copy images and artifacts between registries, OCI image layouts and `docker
//! save` archives, and talk to a registry's API (tags, manifests, referrers, deletes).
//!
//! The `berth` subcommands `push`, `pull`, `copy`, `tags`, `inspect`, `delete` and
//! `referrers` are thin layers over this module.
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth_client::Error> {
//! use std::sync::Arc;
//! use berth_client::{Client, ClientOptions, CopyOptions, Location, copy};
//!
//! let client = Client::new(ClientOptions::default())?;
//! let src: Location = "oci:./images:app".parse()?;
//! let dst: Location = "registry.example.com/team/app:v1".parse()?;
//! let report = copy(&client, &src, &dst, &CopyOptions::default(), Arc::new(())).await?;
//! println!("pushed {}", report.digest);
//! # Ok(()) }
//! ```
//!
//! - [`reference`](mod@reference): `HOST/NAME:TAG`, `HOST/NAME@DIGEST`, `oci:DIR[:TAG]`, `docker-archive:FILE`;
//! - [`Client`] and [`Repository`]: HTTPS (rustls) or plain HTTP per host, the Bearer and
//!   Basic auth flows with a token cache per scope, retries with backoff on 429 and 5xx;
//! - [`layout`] and [`archive`]: OCI image layouts (read and write) and docker archives (read);
//! - [`copy()`]: the graph walk, blobs moved concurrently, verified, skipped or mounted, pulls
//!   resumed with `Range`, pushes chunked to fit a registry's request limits;
//! - [`progress`]: the events a copy reports, with a terminal and a JSON-lines reporter.
//!
//! Layers, each module using only those before it: `error`, `reference`, `media`, `progress`
//! and `verify` (leaves); `auth`; `transport` (hosts, URLs, the auth flow, retries); `fetch`
//! (a resumable GET over the transport); `registry` (one repository's API) and `upload`;
//! `stream`, `layout` and `archive` (local files); `platform` and `source`; `copy`, `inspect`.

pub mod archive;
pub mod auth;
mod copy;
mod error;
mod fetch;
pub mod inspect;
pub mod layout;
mod media;
mod platform;
pub mod progress;
pub mod reference;
mod registry;
mod source;
mod stream;
mod transport;
mod upload;
mod verify;

pub use copy::{CopyOptions, CopyReport, copy};
pub use error::{Error, ErrorKind};
pub use inspect::{Inspection, inspect, referrers};
pub use media::{MANIFEST_TYPES, MAX_MANIFEST};
pub use platform::Platform;
pub use progress::{Outcome, Progress};
pub use reference::{ImageRef, Location};
pub use registry::{Manifest, Repository, TagPage};
pub use transport::{Client, ClientOptions};
pub use upload::UploadOptions;
