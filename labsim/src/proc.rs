//! Processes labsim starts and stops: detached children, and killing only
//! PIDs we recorded and can still recognise as ours.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Result, SimError};

/// Whether we run as root (labsim needs it for namespaces and snmpd).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Starts `cmd` detached from us: its own session (no signals from our
/// terminal), stdin from /dev/null and stdout/stderr appended to `log`.
/// Returns the child's PID; the child outlives us and is reaped by init.
pub fn spawn_detached(mut cmd: Command, log: &Path) -> Result<i32> {
    let out = File::options().create(true).append(true).open(log).map_err(SimError::io("opening log", log))?;
    let err = out.try_clone().map_err(SimError::io("opening log", log))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid(2), which is async-signal-safe and touches no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd
        .spawn()
        .map_err(|e| SimError::Command { program: program.clone(), detail: format!("cannot start: {e}") })?;
    i32::try_from(child.id()).map_err(|_| SimError::Command { program, detail: "PID out of range".into() })
}

/// The NUL-separated command line of a process, `None` if it is gone.
fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// Whether `pid` is alive (and not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// Whether `pid` still runs a program of ours: its command line must contain
/// every one of `needles` as an argument. A recycled PID fails the test.
pub fn is_ours(pid: i32, needles: &[&str]) -> bool {
    pid > 1 && cmdline(pid).map(|args| needles.iter().all(|n| args.iter().any(|a| a == n))).unwrap_or(false)
}

/// Stops the given processes (each checked with [`is_ours`] first): SIGTERM,
/// then SIGKILL for those still alive after `grace`. Returns once all are
/// gone or a further second has passed.
pub fn stop_all(targets: &[(i32, Vec<String>)], grace: Duration) {
    let mut live: Vec<i32> = Vec::new();
    for (pid, needles) in targets {
        let n: Vec<&str> = needles.iter().map(String::as_str).collect();
        if is_ours(*pid, &n) && alive(*pid) {
            if kill(Pid::from_raw(*pid), Signal::SIGTERM).is_ok() {
                live.push(*pid);
            }
        } else {
            tracing::debug!("pid {pid} is gone or no longer ours; not signalling it");
        }
    }
    let wait = |pids: &mut Vec<i32>, limit: Duration| {
        let start = Instant::now();
        while !pids.is_empty() && start.elapsed() < limit {
            pids.retain(|&p| alive(p));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(&mut live, grace);
    for &pid in &live {
        // Still ours: we checked before SIGTERM and it has not exited since.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    wait(&mut live, Duration::from_secs(1));
}

/// Runs a program with explicit arguments (never a shell) and fails with its
/// stderr if it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SimError::Command { program: program.into(), detail: format!("cannot start: {e}") })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SimError::Command {
            program: format!("{program} {}", args.join(" ")),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}
