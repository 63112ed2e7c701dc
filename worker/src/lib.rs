//! berth as a Cloudflare Worker: the fetch event becomes an `http::Request<berth::Body>`, goes
//! through [`berth::Registry::handle`] over an R2 bucket, and comes back as a JS `Response`.
//!
//! Platform streams ride through untouched: a request body with a known length reaches the
//! core as a [`body::JsBody`] (which the R2 store puts into R2 as it is), and an R2 object body
//! coming back as a `JsBody` becomes the `Response` body as it is.
//!
//! Everything but [`text`] is wasm32-only, so a native `cargo test --workspace` builds this
//! crate and runs `text`'s tests.

pub mod text;

#[cfg(target_arch = "wasm32")]
mod body;
#[cfg(target_arch = "wasm32")]
mod budget;
#[cfg(target_arch = "wasm32")]
mod config;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod r2;
#[cfg(target_arch = "wasm32")]
mod ui;
#[cfg(target_arch = "wasm32")]
mod upstream;
