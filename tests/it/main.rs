//! One integration-test binary: modules by subject.

mod core;
mod lists;
mod manifests;
