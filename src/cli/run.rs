//! `labcli run CLASS -- COMMAND...`: claim a board, run a command with it,
//! release the board when the command ends, whatever way it ends.
//!
//! The signals that end a job (SIGINT, SIGTERM, SIGHUP, SIGQUIT) are
//! blocked before the claim and taken with `sigwait`, together with
//! SIGCHLD: one that comes while the command runs is passed on to it, and
//! labcli goes on waiting for it to exit, then releases. So no signal
//! handler runs, and none can come between the claim and the release
//! unnoticed. The command itself starts with no signal blocked (the child
//! clears the mask it inherits before it execs). With `--wait` the signals are
//! blocked once the claim is granted instead, so that Ctrl-C still stops a
//! wait in the queue (as it stops `claim --wait`).
//!
//! Only SIGKILL leaves the claim behind; its lease then ends it.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ExitStatus};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::args::RunSpec;
use super::handles::Defaults;
use super::request::{checked_request_line, request_line};
use super::session::{err, report, Failure, Session, EXIT_ERROR_REPLY};
use crate::protocol::Call;
use crate::util::shown;

/// Exit status when COMMAND could not be started (as in sh).
const EXIT_NOT_STARTED: i32 = 127;

/// The signals passed on to the command.
const FORWARDED: [Signal; 4] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT];

fn waited_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks `set` for the rest of labcli's life (it exits after the
/// release; a signal left pending then changes nothing).
fn block(set: &SigSet) -> Result<(), Failure> {
    set.thread_block().map_err(|e| Failure::new(EXIT_ERROR_REPLY, "internal", format!("cannot block signals: {e}")))
}

/// The status labcli exits with for the command's: its code, or 128+N
/// when signal N ended it (as sh reports it).
pub fn exit_status_of(st: ExitStatus) -> i32 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => EXIT_ERROR_REPLY,
    }
}

/// Runs `spec`; the returned status is the command's (or the failure's).
pub fn run(mut session: Session, defaults: &Defaults, json: bool, spec: &RunSpec) -> Result<i32, Failure> {
    if defaults.jail {
        return Err(Failure::new(
            super::EXIT_USAGE,
            "usage",
            "`run` claims a board, which a jail may not: run it on the lab host",
        ));
    }
    let set = waited_signals();
    if spec.wait.is_none() {
        block(&set)?;
    }
    let call = Call::Claim { class: spec.class.clone(), power: spec.power, lease: spec.lease, wait: spec.wait };
    // A claim that waits says where it stands in the queue meanwhile, as
    // `claim --wait` does.
    let progress = spec.wait.map(|_| {
        super::progress::Progress::start(
            session.socket().to_path_buf(),
            session.as_user().map(str::to_string),
            spec.class.clone(),
        )
    });
    let claim = session.result(|id, as_user| checked_request_line(id, &call, as_user))?;
    drop(progress);
    block(&set)?;
    let socket = session.socket().to_path_buf();
    let as_user = session.as_user().map(str::to_string);
    // The connection is not kept through the command: labd would close it
    // as idle during a long one, and it counts against the user's limit.
    drop(session);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(handle), Some(board)) = (text(&claim, "handle"), text(&claim, "board")) else {
        return Err(Failure::new(EXIT_ERROR_REPLY, "internal", format!("labd's claim reply has no handle: {claim}")));
    };
    let program = spec.command.first().cloned().unwrap_or_default();
    err(&format!("labcli: claimed {board}; running {}; the board is released when it ends\n", shown(&program)));

    let mut cmd = std::process::Command::new(&program);
    cmd.args(spec.command.iter().skip(1))
        .env("LABD_HANDLE", &handle)
        .env("LABD_BOARD", &board)
        .env("LABD_SOCKET", &socket)
        .env_remove("LABD_JAIL_IP")
        .env_remove("LABD_SSH");
    if let Some(jail) = claim.get("jail").filter(|j| j.is_object()) {
        if let Some(ip) = text(jail, "ip") {
            cmd.env("LABD_JAIL_IP", ip);
        }
        if let Some(ssh) = text(jail, "ssh") {
            cmd.env("LABD_SSH", ssh);
        }
    }
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: pthread_sigmask is one, and
    // nothing is allocated or locked.
    unsafe {
        cmd.pre_exec(|| SigSet::empty().thread_set_mask().map_err(std::io::Error::from));
    }
    let outcome = match cmd.spawn() {
        Ok(child) => Ok(wait(child, &set)),
        Err(e) => Err(Failure::new(EXIT_NOT_STARTED, "not_started", format!("cannot run {}: {e}", shown(&program)))),
    };

    // A fresh connection: the command may have run for hours.
    let mut releaser = Session::new(&socket, as_user.as_deref());
    let release = Call::Release { handle: Some(handle) };
    let released = releaser.result(|id, as_user| Ok(request_line(id, &release, as_user)));
    let status = match outcome {
        Ok(st) => exit_status_of(st),
        Err(f) => report(json, &f),
    };
    match released {
        Ok(_) => {
            err(&format!("labcli: released {board}\n"));
            Ok(status)
        }
        Err(f) => {
            let code = report(json, &Failure { message: format!("releasing {board}: {}", f.message), ..f });
            Ok(if status != 0 { status } else { code })
        }
    }
}

/// Waits for the child, passing the forwarded signals on to it.
fn wait(mut child: Child, set: &SigSet) -> ExitStatus {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st;
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(pid, sig);
            }
        }
    }
}
