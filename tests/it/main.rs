//! One integration-test binary: modules by subject.

mod core;
mod lists;
mod manifests;
#[cfg(feature = "native")]
mod crash;
#[cfg(feature = "native")]
mod fs;
#[cfg(feature = "native")]
mod layout;
#[cfg(feature = "native")]
mod server;
