//! What a test process leaves when it dies without running its `Drop`s
//! (killed by a timeout, or the machine restarted under it): labsim labs
//! with their namespaces, snmpd and board processes, labd, jail mounts and
//! loop devices, etcd members. Each fixture writes its owner (the test
//! process's pid and start time) into its temp dir, and the pids it
//! started; the first fixture of every test process sweeps the dirs whose
//! owner is gone: their processes (only those whose command line names
//! the dir: ours, by pid), mounts and loop devices, `labsim down`, the dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

/// Start time of `pid` (clock ticks since boot), if it runs.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Marks `dir` as this test process's.
pub fn own(dir: &Path) {
    let me = std::process::id();
    let _ = std::fs::write(dir.join("owner"), format!("{me} {}\n", start_time(me).unwrap_or(0)));
}

/// Records a process the fixture started in `dir` (killed if the owner
/// dies without stopping it).
pub fn started(dir: &Path, pid: u32) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("pids")) {
        let _ = writeln!(f, "{pid}");
    }
}

fn owner_alive(dir: &Path) -> Option<bool> {
    let owner = std::fs::read_to_string(dir.join("owner")).ok()?;
    let mut it = owner.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    Some(start_time(pid) == Some(start))
}

/// Sweeps once per test process.
pub fn stale_fixtures() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else { return };
        for e in rd.flatten() {
            let dir = e.path();
            let ours = dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("bltest-"));
            if ours && owner_alive(&dir) == Some(false) {
                eprintln!("sweeping {} (its test process is gone)", dir.display());
                sweep(&dir);
            }
        }
    });
}

fn sweep(dir: &Path) {
    let text = dir.to_string_lossy().into_owned();
    // Processes it started, by pid, if they still name the dir: SIGTERM
    // first (a labd then removes its jails), SIGKILL after 15 s.
    use nix::sys::signal::{kill, Signal};
    let names_dir = |pid: i32| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(&text)
    };
    let pids: Vec<i32> = std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|p| p.trim().parse().ok())
        .filter(|&p| names_dir(p))
        .collect();
    for &pid in &pids {
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    }
    let t0 = std::time::Instant::now();
    while pids.iter().any(|&p| names_dir(p)) && t0.elapsed() < std::time::Duration::from_secs(15) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for &pid in pids.iter().filter(|&&p| names_dir(p)) {
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    // Jail mounts below it, deepest first, then its loop devices.
    let mut mounts: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(PathBuf::from))
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        let _ = Command::new("umount").arg("-l").arg(&m).output();
    }
    let loops = Command::new("losetup").arg("-a").output().map(|o| o.stdout).unwrap_or_default();
    for l in String::from_utf8_lossy(&loops).lines().filter(|l| l.contains(&text)) {
        if let Some(dev) = l.split(':').next() {
            let _ = Command::new("losetup").args(["-d", dev]).output();
        }
    }
    if dir.join("labsim.json").exists() {
        let _ = Command::new(super::labsim_exe()).args(["down", "--dir"]).arg(dir).output();
    }
    let _ = std::fs::remove_dir_all(dir);
}
