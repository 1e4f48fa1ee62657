//! labjail: the per-claim jail's init, started by labd (`labjail start`,
//! configuration as one JSON line on stdin). Not meant to be run by hand;
//! see `boardlab::jail::init` for the protocol.

use boardlab::cmdline::{Labjail, LabjailCommand};
use clap::Parser;

fn main() {
    // --help and --version exit 0, anything else unknown 2.
    let code = match Labjail::parse().command {
        LabjailCommand::Start => boardlab::jail::init::start_main(),
        LabjailCommand::Console { pid, start, pty } => boardlab::jail::console::console_main(&[pid, start, pty]),
        LabjailCommand::Open { pid, start, path } => boardlab::storage::jailfile::open_main(&pid, &start, &path),
    };
    std::process::exit(code);
}
