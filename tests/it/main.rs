//! One integration-test binary: modules by subject.

mod auth;
#[cfg(feature = "native")]
mod client;
mod core;
#[cfg(feature = "native")]
mod crash;
#[cfg(feature = "native")]
mod fs;
#[cfg(feature = "native")]
mod hostile;
#[cfg(feature = "native")]
mod layout;
mod lists;
#[cfg(feature = "native")]
mod load;
mod manifests;
mod purge;
#[cfg(feature = "native")]
mod races;
#[cfg(feature = "native")]
mod server;
