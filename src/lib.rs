//! boardlab: a shared lab of embedded boards on one Linux host.
//!
//! `labd` (the daemon), `labcli` (the client) and `labjail` (a jail's
//! init) are thin binaries over this library; the simulated lab and the
//! benchmarks are the `labsim` crate of the workspace.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod actors;
pub mod addr;
pub mod claims;
pub mod cli;
pub mod cluster;
pub mod cmdline;
pub mod commission;
pub mod config;
pub mod console;
pub mod daemon;
pub mod db;
pub mod dhcpwatch;
pub mod ids;
pub mod jail;
pub mod link;
pub mod metrics;
pub mod power;
pub mod protocol;
pub mod server;
pub mod sshca;
pub mod storage;
pub mod systemd;
pub mod util;
pub mod web;
