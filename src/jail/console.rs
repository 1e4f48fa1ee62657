//! The board's console in a jail that outlived its labd: the old relay's
//! pty went with the old labd, so the jail's /dev/console-board leads
//! nowhere. The new labd makes a new relay and `labjail console` mounts its
//! pty there, inside the jail's mount namespace (which only a
//! single-threaded process may enter: hence a process of its own).

use std::path::Path;
use std::process::Command;

use super::{fs::CONSOLE_NAME, proc_start_time, Jail};

/// Mounts `pty` (a relay's slave) at /dev/console-board in `jail`, handed
/// to the jail's root as the first one was.
pub fn replug(init_exe: &Path, jail: &Jail, pty: &Path) -> Result<(), String> {
    let uid = jail.plan.host_uid;
    std::os::unix::fs::chown(pty, Some(uid), Some(uid))
        .map_err(|e| format!("handing the console to the jail ({}): {e}", pty.display()))?;
    let o = Command::new(init_exe)
        .arg("console")
        .arg(jail.init_pid.to_string())
        .arg(jail.init_start.to_string())
        .arg(pty)
        .output()
        .map_err(|e| format!("running {} console: {e}", init_exe.display()))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("plugging the console into the jail: {}", String::from_utf8_lossy(&o.stderr).trim()))
    }
}

/// `labjail console PID START PTY`: PID is the jail's init, START its
/// start time (so that a reused PID is refused).
pub fn console_main(args: &[String]) -> i32 {
    match plug(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn plug(args: &[String]) -> Result<(), String> {
    let [pid, start, pty] = args else { return Err("usage: labjail console PID START PTY".into()) };
    let pid: i32 = pid.parse().map_err(|_| format!("bad PID {pid:?}"))?;
    let start: u64 = start.parse().map_err(|_| format!("bad start time {start:?}"))?;
    // The namespace first (the descriptor holds it), then the check that
    // it is still the jail's.
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map_err(|e| format!("the jail's namespace: {e}"))?;
    if proc_start_time(pid) != Some(start) {
        return Err(format!("process {pid} is not the jail's init any more"));
    }
    let tree =
        super::mount_api::clone_tree(Path::new(pty), false).map_err(|e| format!("cloning the pty's mount: {e}"))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| format!("entering the jail: {e}"))?;
    let target = Path::new("/dev").join(CONSOLE_NAME);
    // The dead pty's bind goes; the new one takes its place.
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW);
    super::mount_api::attach(&tree, &target).map_err(|e| format!("mounting the pty in the jail: {e}"))?;
    Ok(())
}
