//! boardlab: a shared lab of embedded boards on one Linux host.
//!
//! `labd` (the daemon), `labcli` (the client) and `labsim` (a simulated lab)
//! are thin binaries over this library.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod actors;
pub mod addr;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod db;
pub mod ids;
pub mod jail;
pub mod link;
pub mod power;
pub mod protocol;
pub mod server;
pub mod sim;
pub mod util;
