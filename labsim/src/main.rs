//! `labsim`: a simulated board lab on this machine (see `labsim` (the library)).
//! Argument parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use labsim::cli::{Labsim, SimCommand, SwitchAction};
use labsim::lab::{self, UpOptions, DEFAULT_CLASS};
use labsim::state::SimCluster;

/// What to do, from the parsed command line.
enum Cmd {
    Up(UpOptions),
    Down(PathBuf),
    Power(PathBuf, String),
    Switch(PathBuf, bool),
    Plug(PathBuf, String, bool),
    PassPersist(PathBuf),
    Board(PathBuf, String),
}

fn cmd(args: Labsim) -> Cmd {
    match args.command {
        SimCommand::Up { dir, boards, classes, no_net, no_console, sd, host, etcd, ca, snmpv3 } => {
            let classes: Vec<String> = classes.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
            let etcd = etcd.iter().map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
            Cmd::Up(UpOptions {
                dir: dir.dir,
                boards,
                classes: if classes.is_empty() { vec![DEFAULT_CLASS.to_string()] } else { classes },
                net: !no_net,
                console: !no_console,
                sd,
                cluster: host.map(|host| SimCluster { host, etcd, ca_dir: ca, peer_port: 0 }),
                snmpv3,
            })
        }
        SimCommand::Down(d) => Cmd::Down(d.dir),
        SimCommand::Power { dir, board } => Cmd::Power(dir.dir, board),
        SimCommand::Switch { dir, action } => Cmd::Switch(dir.dir, action == SwitchAction::Start),
        SimCommand::Plug { dir, board } => Cmd::Plug(dir.dir, board, true),
        SimCommand::Unplug { dir, board } => Cmd::Plug(dir.dir, board, false),
        SimCommand::PassPersist(d) => Cmd::PassPersist(d.dir),
        SimCommand::Board { dir, name } => Cmd::Board(dir.dir, name),
    }
}

fn main() -> ExitCode {
    // Logs go to stderr: stdout belongs to snmpd in pass-persist mode and to
    // the answer in `power`.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LABSIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // --help and --version exit 0 here (no --dir needed), a usage error 2.
    let cmd = cmd(Labsim::parse());
    let result = match cmd {
        Cmd::Up(opts) => lab::up(&opts).map(|state| {
            eprintln!(
                "labsim: lab {} is up in {}: {} boards, switch on udp:127.0.0.1:{}",
                state.lab_id,
                state.dir.display(),
                state.boards.len(),
                state.snmp_port
            );
        }),
        Cmd::Down(dir) => lab::down(&dir),
        Cmd::Power(dir, board) => lab::power(&dir, &board).map(|on| {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{}", if on { "on" } else { "off" });
        }),
        Cmd::Switch(dir, true) => lab::switch_start(&dir),
        Cmd::Switch(dir, false) => lab::switch_stop(&dir),
        Cmd::Plug(dir, board, plug_in) => lab::plug(&dir, &board, plug_in),
        Cmd::PassPersist(dir) => lab::pass_persist(&dir),
        Cmd::Board(dir, name) => labsim::board::run(&dir, &name),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("labsim: {e}");
            ExitCode::from(1)
        }
    }
}
