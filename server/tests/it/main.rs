//! One integration-test binary for the native home: the filesystem and layout stores, the
//! server on a real socket, hostile input, races, crashes, load, and the client against it.

mod client;
mod crash;
mod fs;
mod gc;
mod hostile;
mod layout;
mod load;
mod ops;
mod races;
mod s3;
mod server;
mod ui;
