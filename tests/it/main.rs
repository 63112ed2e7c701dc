//! One integration-test binary for the core: modules by subject, all in-process over the
//! memory store. The native server's tests live in `server/tests/`.

mod auth;
mod browse;
mod core;
mod gc;
mod hardening;
mod lengths;
mod lists;
mod manifests;
mod mirror;
mod policy;
mod purge;
mod redirect;
