//! The board's NFS root: nfs-ganesha exporting the claim's `/nfsroot` to
//! the board, NFSv4 over TCP only, on the jail's board-link address.
//!
//! Why ganesha is a host-root process and not a jail service: its only
//! usable back end, FSAL_VFS, opens files with `open_by_handle_at`, which
//! needs CAP_DAC_READ_SEARCH in the *initial* user namespace. Run as the
//! jail's root (a child user namespace) ganesha starts, answers LOOKUP and
//! GETATTR, and fails every OPEN with NFS4ERR_PERM (`vfs_open_by_handle:
//! Failed with Operation not permitted`). So labd starts it as host root,
//! entering **only the jail's network namespace** (setns before exec):
//!
//! * it stays in the host's mount namespace and exports the host path
//!   `data_dir/nfsroot` (the directory the jail sees at /nfsroot). Entering
//!   the jail's mount namespace instead would make a host-root exec read
//!   the jail root's writable /etc (ld.so.preload, nsswitch.conf): code
//!   execution as host root for the claimant;
//! * its configuration, log, pid file and recovery directory are in
//!   `data_dir/.nfs`, host-root only, never in a jail-writable directory;
//! * it binds to the board-link address only, serves the board subnet
//!   only, every client uid squashed to the jail's root (so the board can
//!   do nothing there the jail's root cannot), no NLM, RQUOTA, UDP, v3.
//!
//! FSAL_VFS resolves NFS file handles with `open_by_handle_at` on the
//! exported file system, anywhere on it, not only below the export path.
//! So the export is a file system of its own, holding nothing but the
//! claim's nfsroot: [`mount_root`] loop-mounts a per-claim ext4 image
//! (`data_dir/.nfs/nfsroot.img`, sparse, `[jail] nfsroot_size`) on
//! `data_dir/nfsroot` before the jail's init starts, so the jail's bind
//! of that path carries the same file system ganesha exports. A guessed
//! handle can only name a file of that claim's own nfsroot.
//!
//! The remaining risk (a host-root daemon parsing board traffic) is
//! described in SECURITY.md.
//!
//! Teardown: the daemon lives in the jail's network namespace, so
//! [`stop`] (SIGTERM, then SIGKILL, to every process left in that
//! namespace once the init is gone) and the sweeps find it without a
//! recorded PID.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::plan::{Ipv4Net, Plan};
use super::JailError;

/// The server.
pub const GANESHA: &str = "/usr/bin/ganesha.nfsd";
/// NFSv4's port.
pub const NFS_PORT: u16 = 2049;
/// Where the board finds the export (`nfs://<board_addr>/nfsroot`).
pub const PSEUDO: &str = "/nfsroot";
/// How long ganesha may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Host-root-only directory of ganesha's files and the nfsroot image.
pub fn state_dir(plan: &Plan) -> PathBuf {
    plan.data_dir.join(".nfs")
}

/// The claim's nfsroot file system (an ext4 image, loop-mounted).
pub fn image(plan: &Plan) -> PathBuf {
    state_dir(plan).join("nfsroot.img")
}

/// The host path the jail sees at /nfsroot, and ganesha exports.
pub fn export_dir(plan: &Plan) -> PathBuf {
    plan.data_dir.join("nfsroot")
}

/// Creates `data_dir/.nfs` (host root, 0700) if needed.
fn ensure_state_dir(plan: &Plan) -> Result<PathBuf, JailError> {
    let dir = state_dir(plan);
    // data_dir is host root's (0711); .nfs is ours alone.
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
        Ok(_) => return Err(JailError::Unsafe { path: dir, why: "not a directory" }),
        Err(_) => std::fs::create_dir(&dir).map_err(io("creating", &dir))?,
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io("setting mode of", &dir))?;
    Ok(dir)
}

fn run(prog: &str, args: &[&OsStr]) -> Result<(), JailError> {
    let command = || format!("{prog} {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let o = Command::new(prog)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| JailError::Command { command: command(), detail: e.to_string() })?;
    if o.status.success() {
        Ok(())
    } else {
        Err(JailError::Command {
            command: command(),
            detail: format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
        })
    }
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Some(Ok(p))) = (std::fs::symlink_metadata(dir), dir.parent().map(std::fs::symlink_metadata)) else {
        return false;
    };
    d.is_dir() && !d.file_type().is_symlink() && d.dev() != p.dev()
}

/// Gives the claim's nfsroot its own file system: creates the sparse
/// image of `size` bytes (ext4, root directory owned by the jail's root)
/// unless it exists, checks an existing one (`e2fsck -p`), and
/// loop-mounts it (nosuid, nodev) on `data_dir/nfsroot`. Host root, in
/// the host's mount namespace, before the jail's init copies the mounts.
/// A mount left on the directory (a crashed labd) is replaced.
pub fn mount_root(plan: &Plan, size: u64) -> Result<(), JailError> {
    let t0 = Instant::now();
    ensure_state_dir(plan)?;
    let dir = export_dir(plan);
    // Leftovers first, so the new mount is not stacked on an old one.
    let mut left = Vec::new();
    unmount_root(plan, &mut left);
    if !left.is_empty() {
        return Err(JailError::Exists(left.join("; ")));
    }
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
        _ => return Err(JailError::Unsafe { path: dir, why: "the nfsroot mount point must be a plain directory" }),
    }
    let img = image(plan);
    let fresh = match std::fs::symlink_metadata(&img) {
        Ok(m) if m.is_file() => false,
        Ok(_) => return Err(JailError::Unsafe { path: img, why: "the nfsroot image must be a plain file" }),
        Err(_) => true,
    };
    if fresh {
        // Made under a temporary name and renamed once mkfs succeeded, so a
        // crash never leaves a half-made image under the real name.
        let tmp = img.with_extension("img.new");
        let _ = std::fs::remove_file(&tmp);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        f.set_len(size).map_err(io("sizing", &tmp))?;
        drop(f);
        let owner = format!("lazy_itable_init=1,lazy_journal_init=1,root_owner={0}:{0}", plan.host_uid);
        let r = run(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-m".as_ref(),
                "0".as_ref(),
                "-E".as_ref(),
                owner.as_ref(),
                tmp.as_os_str(),
            ],
        );
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &img).map_err(io("renaming", &tmp))?;
    } else {
        // Only checks a file system that was not cleanly unmounted.
        run("e2fsck", &["-p".as_ref(), img.as_os_str()])?;
    }
    run(
        "mount",
        &[
            "-t".as_ref(),
            "ext4".as_ref(),
            "-o".as_ref(),
            "loop,nosuid,nodev".as_ref(),
            img.as_os_str(),
            dir.as_os_str(),
        ],
    )?;
    if fresh {
        // mkfs's lost+found belongs to host root (unmapped in the jail);
        // e2fsck makes it again if it ever needs one.
        let _ = std::fs::remove_dir(dir.join("lost+found"));
    }
    tracing::info!(board = %plan.board, fresh, elapsed_ms = t0.elapsed().as_millis() as u64, "nfsroot mounted");
    Ok(())
}

/// Loop devices backed by `img`.
fn loop_devices(img: &Path) -> Vec<String> {
    Command::new("losetup")
        .args(["-n", "-O", "NAME", "-j"])
        .arg(img)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
        })
        .unwrap_or_default()
}

/// Unmounts the claim's nfsroot (every mount on it) and detaches the
/// image's loop devices. Idempotent. The jail's init and ganesha must be
/// gone (they hold the file system). Failures go to `errors`.
pub fn unmount_root(plan: &Plan, errors: &mut Vec<String>) {
    use nix::mount::{umount2, MntFlags};
    let dir = export_dir(plan);
    let mut n = 0;
    while is_mount_point(&dir) {
        n += 1;
        if n > 8 {
            errors.push(format!("{} stays mounted", dir.display()));
            return;
        }
        if let Err(e) = umount2(&dir, MntFlags::UMOUNT_NOFOLLOW) {
            if e == nix::errno::Errno::EBUSY {
                // Something on the host still uses it: detach it from the
                // tree now; the loop device goes when the last user does.
                tracing::warn!(board = %plan.board, "{} busy, detaching it lazily", dir.display());
                if let Err(e) = umount2(&dir, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                    errors.push(format!("unmounting {}: {e}", dir.display()));
                    return;
                }
            } else {
                errors.push(format!("unmounting {}: {e}", dir.display()));
                return;
            }
        }
    }
    let img = image(plan);
    if !img.exists() {
        return;
    }
    // mount -o loop sets autoclear: the device goes with the last unmount,
    // asynchronously on recent kernels. Wait a little, then detach.
    let t = Instant::now();
    let mut devs = loop_devices(&img);
    while !devs.is_empty() && t.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(10));
        devs = loop_devices(&img);
    }
    for d in devs {
        if let Err(e) = run("losetup", &["-d".as_ref(), d.as_ref()]) {
            errors.push(format!("detaching {d} ({}): {e}", img.display()));
        }
    }
}

/// ganesha.conf for a jail. `export` is the host path of the claim's
/// nfsroot, `recovery` ganesha's NFSv4 client-recovery directory.
pub fn config(export: &Path, recovery: &Path, bind: Ipv4Addr, clients: Ipv4Net, squash_to: u32) -> String {
    format!(
        "# Generated by labd for this claim; rewritten at every (re)init.
NFS_CORE_PARAM {{
    Protocols = 4;
    NFS_Port = {NFS_PORT};
    Bind_addr = {bind};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSV4 {{
    RecoveryBackend = fs;
    RecoveryRoot = \"{recovery}\";
    Graceless = true;
    Only_Numeric_Owners = true;
}}
EXPORT_DEFAULTS {{
    Access_Type = None;
}}
EXPORT {{
    Export_Id = 1;
    Path = \"{export}\";
    Pseudo = {PSEUDO};
    Protocols = 4;
    Transports = TCP;
    SecType = sys;
    Access_Type = None;
    Squash = all_squash;
    Anonymous_Uid = {squash_to};
    Anonymous_Gid = {squash_to};
    FSAL {{ Name = VFS; }}
    CLIENT {{
        Clients = {clients};
        Access_Type = RW;
    }}
}}
LOG {{
    Default_Log_Level = EVENT;
}}
",
        recovery = recovery.display(),
        export = export.display(),
    )
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JailError {
    let path = path.to_path_buf();
    move |source| JailError::Io { what, path, source }
}

/// Writes the configuration and starts ganesha in the jail's network
/// namespace; returns its PID once it listens on the board address.
/// Blocking. The jail's init must be running and the board link addressed.
/// A ganesha that was started and may not listen yet.
pub struct Starting {
    t0: Instant,
    pidfile: PathBuf,
    log: PathBuf,
    netns_path: PathBuf,
}

/// Starts ganesha in the jail's network namespace; [`Starting::ready`]
/// waits for it to listen.
pub fn spawn(plan: &Plan, cgroup: &[std::os::fd::OwnedFd]) -> Result<Starting, JailError> {
    let dir = ensure_state_dir(plan)?;
    let recovery = dir.join("recovery");
    std::fs::create_dir_all(&recovery).map_err(io("creating", &recovery))?;
    let export = export_dir(plan);
    if !is_mount_point(&export) {
        return Err(JailError::Unsafe { path: export, why: "the export must be the claim's own mounted file system" });
    }
    let conf = dir.join("ganesha.conf");
    let text = config(&export, &recovery, plan.board_addr, plan.board_net, plan.host_uid);
    std::fs::write(&conf, text).map_err(io("writing", &conf))?;
    let pidfile = dir.join("ganesha.pid");
    let _ = std::fs::remove_file(&pidfile);
    let log = dir.join("ganesha.log");
    let netns_path = Path::new("/run/netns").join(&plan.netns);
    let netns = std::fs::File::open(&netns_path).map_err(io("opening", &netns_path))?;
    let ns_fd = netns.as_raw_fd();
    let mut cmd = Command::new(GANESHA);
    cmd.arg("-f")
        .arg(&conf)
        .arg("-L")
        .arg(&log)
        .arg("-p")
        .arg(&pidfile)
        .arg("-N")
        .arg("NIV_EVENT")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let cg = super::cgroup::raw(cgroup);
    // SAFETY: between fork and exec the closure only makes the write,
    // setns and setsid system calls on fds that stay open across the
    // spawn. ganesha runs for this jail alone: it joins the jail's
    // cgroup, so its memory and threads count against the jail's caps.
    unsafe {
        cmd.pre_exec(move || {
            super::cgroup::join_self(&cg)?;
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    let t0 = Instant::now();
    // ganesha daemonizes: the child we spawn forks the daemon and exits.
    let status = cmd.status().map_err(io("starting", Path::new(GANESHA)))?;
    drop(netns);
    if !status.success() {
        return Err(JailError::Command {
            command: GANESHA.into(),
            detail: format!("{status} (see {})", log.display()),
        });
    }
    Ok(Starting { t0, pidfile, log, netns_path })
}

impl Starting {
    /// Waits until ganesha listens on the NFS port in the jail's namespace.
    pub fn ready(self, plan: &Plan) -> Result<i32, JailError> {
        let Starting { t0, pidfile, log, netns_path } = self;
        let want_ns = super::fs::inode(&netns_path);
        loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                let in_ns = super::fs::inode(Path::new(&format!("/proc/{pid}/ns/net")));
                if in_ns.is_some() && in_ns == want_ns && listening(pid, NFS_PORT) {
                    tracing::info!(board = %plan.board, pid, elapsed_ms = t0.elapsed().as_millis() as u64, "nfs export ready");
                    return Ok(pid);
                }
            }
            if t0.elapsed() > START_TIMEOUT {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> =
                    tail.lines().filter(|l| l.contains("CRIT") || l.contains("FATAL") || l.contains("MAJ")).collect();
                return Err(JailError::Init(format!(
                    "ganesha did not listen on {}:{NFS_PORT}: {}",
                    plan.board_addr,
                    tail.join(" | ")
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether `pid`'s network namespace has a TCP socket listening on `port`.
fn listening(pid: i32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.get(1).is_some_and(|a| a.ends_with(&want)) && w.get(3) == Some(&"0A")
            })
        })
    })
}

/// Stops every process left in the network namespace whose inode is
/// `ino` (ganesha, once the init and its PID namespace are gone):
/// SIGTERM, SIGKILL after 3 s. Returns the ones that would not die.
pub fn stop(ino: u64) -> Vec<i32> {
    let pids = super::pids_in_netns(ino);
    for &p in &pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
    }
    let gone = |p: i32| super::proc_start_time(p).is_none();
    let t = Instant::now();
    while !pids.iter().all(|&p| gone(p)) && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for &p in pids.iter().filter(|&&p| !gone(p)) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let t = Instant::now();
    while !pids.iter().all(|&p| gone(p)) && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    pids.into_iter().filter(|&p| !gone(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_is_v4_tcp_board_only_and_squashed() {
        let c = config(
            Path::new("/srv/jails/b1/nfsroot"),
            Path::new("/srv/jails/b1/.nfs/recovery"),
            Ipv4Addr::new(172, 30, 2, 1),
            "172.30.2.0/24".parse().unwrap(),
            300_000,
        );
        for want in [
            "Protocols = 4;",
            "Bind_addr = 172.30.2.1;",
            "Enable_UDP = false;",
            "Path = \"/srv/jails/b1/nfsroot\";",
            "Pseudo = /nfsroot;",
            "Squash = all_squash;",
            "Anonymous_Uid = 300000;",
            "Clients = 172.30.2.0/24;",
        ] {
            assert!(c.contains(want), "{want} in {c}");
        }
    }
}
