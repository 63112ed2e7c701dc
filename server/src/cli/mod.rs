//! The client commands of the `berth` binary: thin layers over `berth_client`.

pub(crate) mod args;
pub(crate) mod gc;
pub(crate) mod show;
pub(crate) mod transfer;
