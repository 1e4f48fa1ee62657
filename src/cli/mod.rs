//! `labcli`, the client: command line, ssh forced command and stdin modes.
//!
//! - [`words`]: shell-like splitting of `$SSH_ORIGINAL_COMMAND` (no shell).
//! - [`args`]: words → global options and a [`Command`], by one clap parser;
//!   [`values`] checks option values, [`usage`] words its errors.
//! - [`request`]: a `Call` → request line.
//! - [`session`]: the connection, and the one rule for failures (exit
//!   statuses 0 ok, 1 the lab refused, 2 usage, 3 labd unreachable).
//! - [`handles`]: board names and `$LABD_HANDLE` → handles.
//! - [`output`]: human rendering of results ([`history`]: the event log's).
//! - [`client`]: the blocking socket connection.
//! - [`console`]: the raw byte stream after a `console` reply; [`expect`]
//!   watches it for a pattern.
//! - [`run`]: claim, run a command, release.
//! - [`stdin`]: requests one a line.
//!
//! [`plan`] decides, from argv and `$SSH_ORIGINAL_COMMAND` alone, what this
//! invocation will do; it is pure so the security-relevant choices (which
//! words may set `--as` and `--socket`, or `run` a command) are unit tested.
//! [`main`] then does it.

pub mod args;
pub mod client;
pub mod console;
pub mod expect;
pub mod handles;
pub mod help;
pub mod history;
pub mod output;
pub mod progress;
pub mod request;
pub mod run;
pub mod sd;
pub mod session;
pub mod stdin;
pub mod usage;
pub mod values;
pub mod words;

use std::ffi::OsString;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use args::{Command, Globals, Origin};
pub use session::{EXIT_ERROR_REPLY, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
pub use stdin::stdin_request;
pub use usage::UsageError;

use crate::protocol::{Call, MAX_LINE};
use handles::Defaults;
use request::{checked_request_line, named_request_line};
use session::{out, report, Failure, Session};

/// What one invocation does.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Print this (help or version) and exit 0.
    Help(String),
    /// One command, human or `--json` output.
    Single { globals: Globals, command: Command },
    /// Requests from stdin, one a line; JSON replies one a line.
    Stdin { globals: Globals },
}

/// Decides what to do from the process arguments (without argv\[0\]) and
/// `$SSH_ORIGINAL_COMMAND`.
///
/// A command in argv wins (it was written by whoever set up the forced
/// command). Otherwise a non-blank `$SSH_ORIGINAL_COMMAND` is split and parsed
/// as [`Origin::Remote`]: it may add `--json`, but `--socket` and `--as` only
/// ever come from argv, and it may not `run` anything.
pub fn plan(argv: &[String], ssh_original_command: Option<&str>) -> Result<Plan, UsageError> {
    let local = args::parse(argv, Origin::Argv)?;
    if let Some(text) = local.help {
        return Ok(Plan::Help(text));
    }
    let mut globals = local.globals;
    if let Some(command) = local.command {
        return Ok(Plan::Single { globals, command });
    }
    let Some(cmd) = ssh_original_command else {
        return Ok(Plan::Stdin { globals });
    };
    if cmd.len() > MAX_LINE {
        return Err(UsageError(format!("ssh command is longer than {MAX_LINE} bytes")));
    }
    let mut words = words::split(cmd).map_err(|e| UsageError(format!("ssh command: {e}")))?;
    if words.first().is_some_and(|w| w == "labcli" || w.ends_with("/labcli")) {
        words.remove(0);
    }
    let remote = args::parse(&words, Origin::Remote)?;
    if let Some(text) = remote.help {
        return Ok(Plan::Help(text));
    }
    globals.json |= remote.globals.json;
    Ok(match remote.command {
        Some(command) => Plan::Single { globals, command },
        None => Plan::Stdin { globals },
    })
}

/// Whether a command line that did not parse asked for `--json`: its
/// usage error is then printed as JSON too.
fn wants_json(argv: &[String], ssh_original_command: Option<&str>) -> bool {
    let has = |words: &[String]| words.iter().take_while(|w| *w != "--").any(|w| w == "--json");
    has(argv) || ssh_original_command.and_then(|c| words::split(c).ok()).is_some_and(|w| has(&w))
}

/// The process environment labcli depends on.
pub struct Env {
    /// Arguments without argv\[0\].
    pub args: Vec<OsString>,
    pub ssh_original_command: Option<OsString>,
    pub labd_socket: Option<OsString>,
    pub labd_handle: Option<OsString>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            args: std::env::args_os().skip(1).collect(),
            ssh_original_command: std::env::var_os("SSH_ORIGINAL_COMMAND"),
            labd_socket: std::env::var_os("LABD_SOCKET"),
            labd_handle: std::env::var_os("LABD_HANDLE"),
        }
    }
}

/// Runs labcli; returns the exit status.
pub fn main() -> i32 {
    run(Env::from_process())
}

pub fn run(env: Env) -> i32 {
    let mut argv = Vec::with_capacity(env.args.len());
    for a in env.args {
        match a.into_string() {
            Ok(s) => argv.push(s),
            Err(_) => return report(false, &Failure::usage(&UsageError("arguments must be UTF-8".into()))),
        }
    }
    let ssh_cmd = match env.ssh_original_command.map(OsString::into_string) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return report(false, &Failure::usage(&UsageError("ssh command must be UTF-8".into()))),
    };
    let plan = match plan(&argv, ssh_cmd.as_deref()) {
        Ok(p) => p,
        Err(e) => return report(wants_json(&argv, ssh_cmd.as_deref()), &Failure::usage(&e)),
    };
    let socket = |g: &Globals| -> PathBuf {
        let env_socket = env.labd_socket.as_ref().and_then(|s| s.to_str());
        client::socket_path(g.socket.as_deref(), env_socket, || Path::new(client::JAIL_SOCKET).exists())
    };
    match plan {
        Plan::Help(text) => {
            let _ = out(&text);
            EXIT_OK
        }
        Plan::Single { globals, command } => {
            let socket = socket(&globals);
            let defaults = Defaults {
                jail: socket == Path::new(client::JAIL_SOCKET),
                handle: env.labd_handle.as_ref().and_then(|h| h.to_str()).filter(|h| !h.is_empty()).map(String::from),
            };
            let session = Session::new(&socket, globals.as_user.as_deref());
            let done = match command {
                Command::Call(call) => single(session, &defaults, globals.json, call),
                Command::KnownHosts => known_hosts(session, globals.json),
                Command::Run(spec) => run::run(session, &defaults, globals.json, &spec),
                Command::Expect(spec) => expect::expect(session, &defaults, &spec),
            };
            match done {
                Ok(status) => status,
                Err(f) => report(globals.json, &f),
            }
        }
        Plan::Stdin { globals } => {
            if io::stdin().is_terminal() {
                let _ = report(false, &Failure::usage(&UsageError("no command given".into())));
                return EXIT_USAGE;
            }
            stdin::stdin_session(&socket(&globals), globals.as_user.as_deref())
        }
    }
}

/// One request (after its handle is resolved), its result printed.
fn single(mut session: Session, defaults: &Defaults, json: bool, mut call: Call) -> Result<i32, Failure> {
    let given = call.handle_mut().map(|slot| slot.clone());
    if let Some(given) = given {
        let command = match call.name() {
            "console_log" => "log".to_string(),
            name => name.replace('_', "-"),
        };
        let word = handles::word(given.as_deref(), &command, defaults)?;
        // Nothing is sent before the request line is known to fit.
        checked_request_line(1, &call, session.as_user()).map_err(|e| Failure::usage(&e))?;
        let handle = handles::resolve(&mut session, word, defaults)?;
        if let Some(slot) = call.handle_mut() {
            *slot = handle;
        }
    }
    // A claim that waits says where it stands in the queue meanwhile.
    let _progress = match &call {
        Call::Claim { class, wait: Some(_), .. } => Some(progress::Progress::start(
            session.socket().to_path_buf(),
            session.as_user().map(str::to_string),
            class.clone(),
        )),
        _ => None,
    };
    let _flash = sd::FlashProgress::start(&call, session.socket().to_path_buf(), session.as_user().map(str::to_string));
    let result = session.result(|id, as_user| checked_request_line(id, &call, as_user))?;
    drop(_progress);
    drop(_flash);
    if let Call::Console { read_only, .. } = call {
        let socket = session.socket().to_path_buf();
        let Some(client) = session.into_client() else { return Ok(EXIT_OK) };
        let (stream, pending) = client.into_raw();
        return match console::run(stream, &pending, read_only) {
            // The claim ended under the session: its last line says how.
            Ok(true) => Ok(session::EXIT_ERROR_REPLY),
            Ok(false) => Ok(EXIT_OK),
            Err(e) => {
                Err(Failure::new(EXIT_UNREACHABLE, "unreachable", format!("console on {}: {e}", socket.display())))
            }
        };
    }
    // A closed stdout is not worth a different status: the request was done.
    let _ = if json { out(&format!("{result}\n")) } else { out(&output::render(call.name(), &result)) };
    if let (Call::Status { mine: false }, false) = (&call, json) {
        // The queues below the boards (from `classes`; a lab that cannot
        // say has shown its boards already).
        if let Ok(classes) = session.result(|id, as_user| Ok(named_request_line(id, "classes", as_user))) {
            let _ = out(&output::waiting_lines(&classes));
        }
    }
    // A health check that ran and failed: like `labd selftest`.
    if matches!(call, Call::Health { .. }) && result.get("pass") == Some(&serde_json::Value::Bool(false)) {
        return Ok(session::EXIT_ERROR_REPLY);
    }
    Ok(EXIT_OK)
}

/// `known-hosts`: the line for `~/.ssh/known_hosts` that labd gives.
fn known_hosts(mut session: Session, json: bool) -> Result<i32, Failure> {
    let result = session.result(|id, as_user| Ok(named_request_line(id, "known_hosts", as_user)))?;
    let _ = if json {
        out(&format!("{result}\n"))
    } else {
        match result.get("known_hosts").and_then(Value::as_str) {
            Some(line) => out(&format!("{}\n", output::clean(line).trim_end())),
            None => out(&output::pretty(&result)),
        }
    };
    Ok(EXIT_OK)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
