//! labd: the boardlab daemon. See README.md and CONTRACT.md.

use std::path::PathBuf;
use std::process::ExitCode;

use boardlab::cmdline::{CaCommand, Labd, LabdCommand};
use boardlab::config::Config;
use clap::Parser;

fn main() -> ExitCode {
    // SAFETY: nothing but this thread runs yet (no runtime, no logger).
    unsafe { boardlab::systemd::take_env() };
    // --help and --version exit 0 here, a usage error 2.
    let args = Labd::parse();
    let dir = args.config;
    match &args.command {
        Some(LabdCommand::Ca(CaCommand::Init { path })) => return init_ca(&dir, path.clone()),
        Some(LabdCommand::WebPassword { path }) => return web_password(path),
        _ => {}
    }
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
    for w in &cfg.warnings {
        eprintln!("labd: warning: {w}");
    }
    if let Some(LabdCommand::Selftest { boards, wait, json }) = &args.command {
        let status = boardlab::commission::run(&cfg, boards, std::time::Duration::from_secs(*wait), *json);
        return ExitCode::from(u8::try_from(status).unwrap_or(1));
    }
    if check {
        println!(
            "{}: configuration OK: {} boards in {} classes, {} switches",
            dir.display(),
            cfg.boards.len(),
            cfg.classes().len(),
            cfg.switches.len()
        );
        if let Some(w) = &cfg.web {
            let auth = w.auth.as_ref().map(|a| format!(" (password for {})", a.user)).unwrap_or_default();
            println!("status page and /metrics on http://{}/{auth}", w.listen);
        }
        if let Some(ca) = &cfg.jail.host_ca {
            println!("jails' SSH host CA {} ({}); users trust jails with:", ca.path().display(), ca.fingerprint());
            println!("{}", ca.known_hosts_line());
            if cfg.jail.keep_host_key {
                eprintln!(
                    "labd: warning: [jail] keep_host_key: every claimant of a board holds its host key, so a \
                     former claimant can pass for a later claim's jail despite the certificates (SECURITY.md)"
                );
            }
        }
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

/// `labd ca init [PATH]`: makes the jails' SSH host CA key (mode 0600,
/// never over an existing file) at PATH, else where lab.toml's `[jail]
/// host_ca` says, else /etc/boardlab/host_ca; prints the line users add to
/// their known_hosts (stdout) and what to do next (stderr).
fn init_ca(dir: &std::path::Path, path: Option<PathBuf>) -> ExitCode {
    let configured = match boardlab::config::configured_host_ca(dir) {
        Ok(c) => c,
        Err(e) if path.is_some() => {
            eprintln!("labd: {e} (ignored: PATH was given)");
            None
        }
        Err(e) => {
            eprintln!("labd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = path.or_else(|| configured.clone()).unwrap_or_else(|| PathBuf::from(boardlab::sshca::DEFAULT_PATH));
    if !path.is_absolute() {
        eprintln!("labd: the CA key's path must be absolute, not {}", path.display());
        return ExitCode::from(2);
    }
    let ca = match boardlab::sshca::HostCa::generate(&path) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("labd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ca = match boardlab::config::configured_ipv6_pool(dir) {
        Some(pool) => ca.with_ipv6_pool(&pool),
        None => ca,
    };
    eprintln!("labd: made the jails' SSH host CA {} ({}), mode 0600", path.display(), ca.fingerprint());
    if configured.as_deref() != Some(path.as_path()) {
        eprintln!(
            "labd: name it in {}: [jail] host_ca = \"{}\", then `labd check` and restart labd",
            dir.join("lab.toml").display(),
            path.display()
        );
    }
    eprintln!("labd: users add this line to ~/.ssh/known_hosts (`labcli known-hosts` prints it too):");
    println!("{}", ca.known_hosts_line());
    ExitCode::SUCCESS
}

/// `labd web-password PATH`: reads the status page's password from stdin
/// (one line) and writes its argon2 hash to PATH (mode 0600, never over
/// an existing file), for `[web] password_file`.
fn web_password(path: &std::path::Path) -> ExitCode {
    let path = path.to_path_buf();
    if !path.is_absolute() {
        eprintln!("labd: the password file's path must be absolute, not {}", path.display());
        return ExitCode::from(2);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("labd: type the page's password and Enter (it is shown as you type)");
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("labd: reading the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    if password.is_empty() {
        eprintln!("labd: the password is empty");
        return ExitCode::FAILURE;
    }
    let hash = match boardlab::config::web::hash_password(password) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("labd: hashing the password: {e}");
            return ExitCode::FAILURE;
        }
    };
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{hash}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!("labd: writing {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("labd: wrote the password's hash to {} (mode 0600); in lab.toml:", path.display());
    eprintln!("[web]\nuser = \"NAME\"\npassword_file = \"{}\"", path.display());
    ExitCode::SUCCESS
}
