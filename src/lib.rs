//! berth: an OCI Distribution registry.
//!
//! The core is [`Registry::handle`]: a pure async function from an HTTP request to an HTTP
//! response over a [`Storage`]. It does no I/O of its own, keeps no clock (time and upload ids
//! come from an [`Env`]) and builds for `wasm32-unknown-unknown` without default features.

pub mod auth;
pub mod body;
#[cfg(feature = "native")]
pub mod client;
pub mod digest;
pub mod error;
pub mod keys;
pub mod manifest;
pub mod names;
#[cfg(feature = "native")]
pub mod native;
pub mod range;
pub mod registry;
pub mod route;
pub mod storage;

mod handlers;
// Public only for the fuzz targets (fuzz/), which decode untrusted query strings and sessions.
#[doc(hidden)]
pub mod query;
#[doc(hidden)]
pub mod session;

pub use auth::Auth;
pub use body::{Body, ByteStream, ForeignBody};
pub use digest::{Algorithm, Digest, Hasher};
pub use error::{Code, RegistryError};
pub use names::{Reference, RepoName, Tag};
pub use registry::{Config, Env, Registry};
pub use storage::{
    BlobRead, ByteRange, ListOptions, PutMode, Storage, StorageError, Stored, Version,
    memory::MemoryStore,
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
