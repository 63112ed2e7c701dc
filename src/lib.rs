//! berth: the core of an OCI Distribution registry.
//!
//! The core is [`Registry::handle`]: a pure async function from an HTTP request to an HTTP
//! response over a [`Storage`]. It does no I/O of its own, keeps no clock (time and upload ids
//! come from an [`Env`]) and builds for `wasm32-unknown-unknown`. The homes around it bring the
//! I/O: `berth-server` (hyper, the filesystem), `berth-worker` (Cloudflare Workers, R2), and
//! `berth-client` speaks the same protocol from the other side.

#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod digest;
pub mod error;
pub mod events;
pub mod gc;
pub mod keys;
pub mod links;
pub mod manifest;
pub mod mirror;
pub mod names;
pub mod range;
pub mod registry;
pub mod route;
pub mod storage;
#[cfg(feature = "contract")]
pub mod testing;

mod handlers;
mod manifest_cache;
// Public only for the fuzz targets (fuzz/), which decode untrusted query strings and sessions.
#[doc(hidden)]
pub mod query;
#[doc(hidden)]
pub mod session;
// Public only for the fuzz targets too: the policy files' TOML.
#[doc(hidden)]
pub mod toml_subset;

pub use auth::Auth;
pub use body::{Body, ByteStream, ForeignBody};
pub use digest::{Algorithm, Digest, Hasher};
pub use error::{Code, RegistryError};
pub use names::{Reference, RepoName, Tag};
pub use registry::{Config, Env, Registry};
pub use storage::{
    BlobEntry, BlobInfo, BlobRead, ByteRange, ListOptions, PutMode, RangeSpec, Storage,
    StorageError, Stored, Version, memory::MemoryStore,
};

/// `Send` on native targets, nothing on wasm32, where JS values are not `Send`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` on native targets, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}
