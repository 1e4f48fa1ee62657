//! labd: the boardlab daemon. See README.md and CONTRACT.md.

use std::process::ExitCode;

use boardlab::cmdline::{Labd, LabdCommand};
use boardlab::config::Config;
use clap::Parser;

fn main() -> ExitCode {
    // --help and --version exit 0 here, a usage error 2.
    let args = Labd::parse();
    let dir = args.config;
    let check = args.command == Some(LabdCommand::Check);
    let cfg = match Config::load(&dir) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("labd: {} configuration error(s) in {}", errors.0.len(), dir.display());
            return ExitCode::FAILURE;
        }
    };
    if check {
        println!(
            "{}: configuration OK: {} boards in {} classes, {} switches",
            dir.display(),
            cfg.boards.len(),
            cfg.classes().len(),
            cfg.switches.len()
        );
        return ExitCode::SUCCESS;
    }
    // One malloc arena for every thread: labd's threads (the actors' loop,
    // the database's, blocking jail work) allocate little, and an arena
    // each would keep memory for nothing.
    // SAFETY: mallopt only sets an allocator parameter; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LABD_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let system = actix::System::new();
    match system.block_on(boardlab::daemon::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("labd: {e}");
            ExitCode::FAILURE
        }
    }
}
