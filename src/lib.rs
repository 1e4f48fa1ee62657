//! boardlab: a shared lab of embedded boards on one Linux host.
//!
//! `labd` (the daemon), `labcli` (the client) and `labsim` (a simulated lab)
//! are thin binaries over this library.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod config;
pub mod console;
pub mod protocol;
pub mod sim;
pub mod util;
pub mod actors;
pub mod db;
pub mod power;
pub mod daemon;
pub mod server;
pub mod jail;
