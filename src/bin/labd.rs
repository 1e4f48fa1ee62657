//! labd: the boardlab daemon. See README.md and CONTRACT.md.

use std::path::PathBuf;
use std::process::ExitCode;

use boardlab::config::{Config, DEFAULT_DIR};

const USAGE: &str = "usage: labd [--config DIR]\n       labd check [--config DIR]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut check = false;
    let mut dir = PathBuf::from(DEFAULT_DIR);
    while let Some(a) = args.next() {
        match a.as_str() {
            "check" if !check => check = true,
            "--config" => match args.next() {
                Some(d) => dir = PathBuf::from(d),
                None => {
                    eprintln!("labd: --config needs a directory\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("labd: unexpected argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
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
