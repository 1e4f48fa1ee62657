//! `labsim`: a simulated board lab on this machine (see `labsim` (the library)).
//! Argument parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use labsim::lab::{self, UpOptions, DEFAULT_CLASS};
use labsim::state::SimCluster;

const USAGE: &str = "usage:
  labsim up --dir DIR --boards N [--classes a,b] [--no-net] [--no-console]
            [--host NAME --etcd URL[,URL...] [--ca DIR]]   (one host of a lab on etcd;
            DIR keeps the lab's CA, shared by its hosts)
  labsim down --dir DIR
  labsim power --dir DIR BOARD
  labsim switch --dir DIR stop|start
  labsim plug --dir DIR BOARD
  labsim unplug --dir DIR BOARD
internal (run by labsim and snmpd):
  labsim pass-persist --dir DIR
  labsim board --dir DIR --name NAME";

/// A parsed command line.
enum Cmd {
    Up(UpOptions),
    Down(PathBuf),
    Power(PathBuf, String),
    Switch(PathBuf, bool),
    Plug(PathBuf, String, bool),
    PassPersist(PathBuf),
    Board(PathBuf, String),
}

fn parse(args: &[String]) -> Result<Cmd, String> {
    let (sub, rest) = args.split_first().ok_or("no command given")?;
    let mut dir: Option<PathBuf> = None;
    let mut boards: Option<u32> = None;
    let mut classes: Option<Vec<String>> = None;
    let mut host: Option<String> = None;
    let mut etcd: Vec<String> = Vec::new();
    let mut ca_dir: Option<PathBuf> = None;
    let mut name: Option<String> = None;
    let mut net = true;
    let mut console = true;
    let mut positional: Vec<String> = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--boards" if sub == "up" => {
                let v = value("--boards")?;
                boards = Some(v.parse().map_err(|_| format!("--boards {v:?} is not a number"))?);
            }
            "--classes" if sub == "up" => {
                let v = value("--classes")?;
                classes = Some(v.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect());
            }
            "--no-net" if sub == "up" => net = false,
            "--host" if sub == "up" => host = Some(value("--host")?),
            "--ca" if sub == "up" => ca_dir = Some(PathBuf::from(value("--ca")?)),
            "--etcd" if sub == "up" => {
                etcd = value("--etcd")?.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
            }
            "--no-console" if sub == "up" => console = false,
            "--name" if sub == "board" => name = Some(value("--name")?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s:?} for `{sub}`")),
            s => positional.push(s.to_string()),
        }
    }
    let dir = dir.ok_or_else(|| format!("`{sub}` needs --dir DIR"))?;
    let one = |positional: Vec<String>, what: &str| -> Result<String, String> {
        match <[String; 1]>::try_from(positional) {
            Ok([p]) => Ok(p),
            Err(_) => Err(format!("`{sub}` takes exactly one {what}")),
        }
    };
    let none = |positional: &[String]| {
        if positional.is_empty() {
            Ok(())
        } else {
            Err(format!("unexpected argument {:?}", positional[0]))
        }
    };
    Ok(match sub.as_str() {
        "up" => {
            none(&positional)?;
            Cmd::Up(UpOptions {
                dir,
                boards: boards.ok_or("`up` needs --boards N")?,
                classes: classes.unwrap_or_else(|| vec![DEFAULT_CLASS.to_string()]),
                net,
                console,
                cluster: match host {
                    Some(host) => Some(SimCluster { host, etcd, ca_dir, peer_port: 0 }),
                    None if !etcd.is_empty() => return Err("--etcd needs --host NAME".into()),
                    None => None,
                },
            })
        }
        "down" => {
            none(&positional)?;
            Cmd::Down(dir)
        }
        "power" => Cmd::Power(dir, one(positional, "BOARD")?),
        "plug" => Cmd::Plug(dir, one(positional, "BOARD")?, true),
        "unplug" => Cmd::Plug(dir, one(positional, "BOARD")?, false),
        "switch" => match one(positional, "action (stop or start)")?.as_str() {
            "stop" => Cmd::Switch(dir, false),
            "start" => Cmd::Switch(dir, true),
            other => return Err(format!("`switch` takes stop or start, not {other:?}")),
        },
        "pass-persist" => {
            none(&positional)?;
            Cmd::PassPersist(dir)
        }
        "board" => {
            none(&positional)?;
            Cmd::Board(dir, name.ok_or("`board` needs --name NAME")?)
        }
        other => return Err(format!("unknown command {other:?}")),
    })
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse(&args) {
        Ok(c) => c,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("labsim: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
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
