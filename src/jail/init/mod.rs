//! The jail's init: `labjail start` (src/bin/labjail.rs), a small binary
//! labd runs for each jail. labd is multi-threaded, and fork without exec in
//! a threaded process is unsafe, so namespaces are made in this separate,
//! single-threaded process instead.
//!
//! Three processes, as in youki:
//!
//! * **P** (`labjail start`, host root): reads the [`InitConfig`] line from
//!   stdin, unshares a private mount namespace and builds the jail's root
//!   there ([`fs::build_root`]), forks C, writes C's id maps, relays to labd.
//! * **C** (intermediate): unshares the user namespace, waits for its maps,
//!   becomes root inside, unshares mount/net/uts/ipc/pid, forks G and exits.
//! * **G** (the jail's init, PID 1 of the new PID namespace): sets the
//!   hostname, mounts /proc etc. and pivots into the root, then waits for
//!   labd to finish the network, starts the services and supervises them:
//!   reaps every zombie, restarts a service that died with a back-off, and on
//!   SIGTERM stops everything and exits.
//!
//! Protocol on P's stdout, one line each: `ready <pid> <starttime>` (G's
//! host PID, namespaces and root exist: labd now sets up the network), then
//! after labd writes `go` on P's stdin, `running` (services are up). Any
//! failure is `error <message>` and a non-zero exit. G outlives P (it is
//! re-parented), so a labd restart does not touch running jails.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

use super::services::Service;
use super::{fs, ns, JailError};

mod supervisor;
use supervisor::Supervisor;

/// Everything the init needs, sent by labd as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub hostname: String,
    /// Host uid/gid of the jail's root.
    pub host_uid: u32,
    pub data_dir: PathBuf,
    pub console: Option<PathBuf>,
    pub jail_socket: Option<PathBuf>,
    pub labcli: PathBuf,
    pub jail_ip: Ipv4Addr,
    pub ssh_port: u16,
    pub services: Vec<Service>,
    /// The board's network, forwarded and masqueraded out of the uplink.
    pub board_net: crate::addr::Ipv4Net,
    /// The jail's /etc is new: mirror the host's without looking first.
    pub etc_fresh: bool,
    /// The board link carries the claim's /64: the jail routes IPv6.
    #[serde(default)]
    pub ipv6: bool,
    /// The board's card directory on the host (see
    /// [`crate::storage::node`]), bound at /dev/.sd with device nodes
    /// allowed; /dev/sdcard points into it.
    #[serde(default)]
    pub sdcard: Option<PathBuf>,
}

/// How long each phase may take before labd gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// labd side
// ---------------------------------------------------------------------------

/// A `labjail start` in progress, seen from labd. Dropping it kills and
/// reaps `labjail start` if it still runs (the jail's init, once forked,
/// is not its child and lives on), so labd never leaves a zombie.
pub struct Starter {
    child: Option<Child>,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// init.log, and its length when this start began: what labjail wrote
    /// to stderr since is the reason of a failure.
    log: PathBuf,
    log_start: u64,
}

impl Drop for Starter {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Starter {
    /// Starts `labjail start` with a clean environment and only stdio open,
    /// sends the config and waits for `ready`. Returns (starter, pid, starttime).
    pub fn spawn(
        exe: &Path,
        cfg: &InitConfig,
        log: &Path,
        cgroup: &[std::os::fd::OwnedFd],
    ) -> Result<(Starter, i32, u64), JailError> {
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|source| JailError::Io {
            what: "opening init log",
            path: log.into(),
            source,
        })?;
        let log_start = logf.metadata().map(|m| m.len()).unwrap_or(0);
        let fds = super::cgroup::raw(cgroup);
        let mut cmd = Command::new(exe);
        // SAFETY: between fork and exec the closure only writes to
        // descriptors the parent keeps open across the spawn, and sets
        // the umask (both async-signal-safe).
        unsafe {
            cmd.pre_exec(move || {
                // labd's own umask (077) is not the jail's: its users and
                // services expect the usual 022 (dnsmasq serves only
                // world-readable files, say).
                libc::umask(0o022);
                super::cgroup::join_self(&fds)
            });
        }
        let mut child = cmd
            .arg("start")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .map_err(|source| JailError::Io { what: "starting the jail init", path: exe.into(), source })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(JailError::Init("no pipes to labjail".into()));
        };
        let mut s = Starter { child: Some(child), stdin, stdout, log: log.to_path_buf(), log_start };
        let line = serde_json::to_string(cfg).map_err(|e| JailError::Init(e.to_string()))?;
        s.send(&line)?;
        let ready = s.expect("ready")?;
        let mut w = ready.split_whitespace();
        let pid = w.next().and_then(|p| p.parse::<i32>().ok());
        let start = w.next().and_then(|p| p.parse::<u64>().ok());
        match (pid, start) {
            (Some(p), Some(t)) => Ok((s, p, t)),
            _ => Err(JailError::Init(format!("bad ready line {ready:?}"))),
        }
    }

    fn send(&mut self, line: &str) -> Result<(), JailError> {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        self.stdin
            .write_all(buf.as_bytes())
            .map_err(|e| JailError::Init(format!("writing to labjail: {e}{}", self.stderr())))
    }

    /// What labjail wrote to its stderr (init.log) since this start
    /// began, last lines only, for an error message.
    fn stderr(&self) -> String {
        use std::io::{Seek, SeekFrom};
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            if f.seek(SeekFrom::Start(self.log_start)).is_ok() {
                let _ = f.take(64 * 1024).read_to_string(&mut text);
            }
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            return String::new();
        }
        format!(" (labjail said: {})", lines[lines.len().saturating_sub(5)..].join(" | "))
    }

    /// Reads one line (with a deadline) and checks its first word.
    fn expect(&mut self, word: &str) -> Result<String, JailError> {
        let line = match read_line_deadline(&mut self.stdout, Instant::now() + PHASE_TIMEOUT) {
            Ok(l) => l,
            Err(e) => {
                // Give a dying labjail a moment to finish its stderr.
                if let Some(c) = self.child.as_mut() {
                    let t = Instant::now();
                    while matches!(c.try_wait(), Ok(None)) && t.elapsed() < Duration::from_millis(200) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                return Err(JailError::Init(format!("waiting for {word:?}: {e}{}", self.stderr())));
            }
        };
        match line.split_once(' ').unwrap_or((line.as_str(), "")) {
            (w, rest) if w == word => Ok(rest.to_string()),
            ("error", rest) => Err(JailError::Init(rest.strip_prefix("jail init: ").unwrap_or(rest).to_string())),
            _ => Err(JailError::Init(format!("unexpected {line:?} while waiting for {word:?}{}", self.stderr()))),
        }
    }

    /// Network is ready: start the services and wait until they answer.
    pub fn go(mut self) -> Result<(), JailError> {
        self.send("go")?;
        let r = self.expect("running");
        if let Some(mut c) = self.child.take() {
            if r.is_err() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        r.map(|_| ())
    }

    /// Abandons the start (labd undoes the rest); dropping does the same.
    pub fn abort(self) {}
}

/// Reads a line byte by byte, polling so a hung child cannot block labd.
fn read_line_deadline(r: &mut impl ReadFd, deadline: Instant) -> std::io::Result<String> {
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"));
        }
        if !r.wait_readable(left)? {
            continue;
        }
        let mut b = [0u8; 1];
        match r.read(&mut b)? {
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "labjail exited (see init.log)")),
            _ if b[0] == b'\n' => return Ok(String::from_utf8_lossy(&out).into_owned()),
            _ => out.push(b[0]),
        }
    }
}

trait ReadFd: Read + AsRawFd {
    fn wait_readable(&self, timeout: Duration) -> std::io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        // SAFETY: the fd belongs to `self`, which outlives this call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.as_raw_fd()) };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let ms = u16::try_from(timeout.as_millis().min(10_000)).unwrap_or(10_000);
        let n = poll(&mut fds, PollTimeout::from(ms)).map_err(std::io::Error::from)?;
        Ok(n > 0)
    }
}
impl ReadFd for ChildStdout {}
impl ReadFd for UnixStream {}

// ---------------------------------------------------------------------------
// labjail side
// ---------------------------------------------------------------------------

/// Entry point of `labjail start`; returns the exit code.
pub fn start_main() -> i32 {
    close_inherited_fds();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        println!("error cannot read the configuration");
        return 2;
    }
    let cfg: InitConfig = match serde_json::from_str(&line) {
        Ok(c) => c,
        Err(e) => {
            println!("error bad configuration: {e}");
            return 2;
        }
    };
    match parent(&cfg) {
        Ok(()) => 0,
        Err(e) => {
            println!("error {e}");
            eprintln!("labjail: {e}");
            1
        }
    }
}

/// Closes every fd but stdio, before anything else (firecracker's rule).
fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; none above 2 is in use
    // by Rust code at this point (main has just started).
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> JailError {
    move |e| JailError::Sys { what, source: e.into() }
}

/// Sends one protocol line in a single write(2). The intermediate process
/// and the jail's init both report on the same socket; a line written in
/// pieces (`writeln!` writes the text and the newline separately) could
/// interleave with the other's and turn `pid N` and `fs-ok` into
/// `pid Nfs-ok` and an empty line. A single write of a short message on a
/// Unix stream socket is queued whole, so lines never mix.
fn send(s: &mut UnixStream, line: &str) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _ = s.write_all(&buf);
}

fn recv(s: &mut UnixStream, timeout: Duration) -> Result<String, JailError> {
    read_line_deadline(s, Instant::now() + timeout).map_err(|e| JailError::Init(format!("jail process: {e}")))
}

/// P: root, mount namespace, fork, id maps, relay.
fn parent(cfg: &InitConfig) -> Result<(), JailError> {
    // 1. Our own mount namespace, still owned by the host's user namespace:
    //    the root built here is copied into the jail's namespace later and
    //    its mounts become locked there (read-only stays read-only).
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| JailError::Unshare { namespaces: "mount (builder)".into(), source: e.into() })?;
    let root = fs::build_root(cfg)?;
    let (mut mine, theirs) =
        UnixStream::pair().map_err(|source| JailError::Io { what: "socketpair", path: "-".into(), source })?;
    // SAFETY: labjail is single-threaded (no thread was started), so the
    // child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(mine);
            let code = match intermediate(cfg, &root, theirs) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit skips destructors and atexit handlers that
            // belong to the parent's copy of the process.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let r = relay(cfg, child, &mut mine);
            if r.is_err() {
                let _ = kill(child, Signal::SIGKILL);
            }
            let _ = waitpid(child, None);
            r
        }
    }
}

fn relay(cfg: &InitConfig, child: Pid, s: &mut UnixStream) -> Result<(), JailError> {
    let check = |line: String, word: &str| -> Result<String, JailError> {
        match line.split_once(' ').unwrap_or((line.as_str(), "")) {
            (w, rest) if w == word => Ok(rest.to_string()),
            ("error", rest) => Err(JailError::Init(rest.strip_prefix("jail init: ").unwrap_or(rest).to_string())),
            _ => Err(JailError::Init(format!("unexpected {line:?}, wanted {word:?}"))),
        }
    };
    check(recv(s, PHASE_TIMEOUT)?, "userns")?;
    // 2. The id maps of C's new user namespace: only a process with
    //    CAP_SETUID in the parent namespace (us) may map 65536 ids.
    ns::write_id_maps(child, cfg.host_uid)?;
    // The read-only, idmapped views of the host's /usr and /var/lib/dpkg
    // under the new root (host root, in our private mount namespace),
    // before C copies it. Without them the jail's /usr stays read-only.
    match std::fs::File::open(format!("/proc/{child}/ns/user")) {
        Ok(userns) => {
            let root = fs::root_mount_point(&cfg.data_dir);
            for (name, host, _) in super::idmap::OVERLAYS {
                let dst = root.join(super::idmap::LOWER_DIR).join(name);
                if let Err(e) = super::idmap::idmapped_ro_bind(Path::new(host), &dst, &userns) {
                    eprintln!("labjail: no writable {host} in the jail: {e}");
                }
            }
        }
        Err(e) => eprintln!("labjail: no writable /usr in the jail: the jail's user namespace: {e}"),
    }
    send(s, "mapped");
    // C reports the init's pid right after forking it, and the init (G)
    // reports its root; both write to this socket, so the two lines may
    // come in either order.
    let first = recv(s, PHASE_TIMEOUT)?;
    if first.starts_with("error") {
        return check(first, "pid").map(|_| ());
    }
    let pid_line = if first.starts_with("fs-ok") {
        recv(s, PHASE_TIMEOUT)?
    } else {
        let pid_line = first;
        check(recv(s, PHASE_TIMEOUT)?, "fs-ok")?;
        pid_line
    };
    let pid: i32 = check(pid_line, "pid")?.trim().parse().map_err(|_| JailError::Init("bad pid line".into()))?;
    let start = super::proc_start_time(pid).ok_or_else(|| JailError::Init(format!("init {pid} vanished")))?;
    println!("ready {pid} {start}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| JailError::Init(format!("reading go: {e}")))?;
    if line.trim() != "go" {
        return Err(JailError::Init(format!("labd said {line:?} instead of go")));
    }
    send(s, "go");
    check(recv(s, PHASE_TIMEOUT)?, "running")?;
    println!("running");
    let _ = std::io::stdout().flush();
    Ok(())
}

/// C: user namespace, then the rest, then the init.
fn intermediate(cfg: &InitConfig, root: &Path, mut s: UnixStream) -> Result<(), JailError> {
    let r = (|| {
        ns::unshare_user(&mut ns::RealKernel)?;
        send(&mut s, "userns");
        let m = recv(&mut s, PHASE_TIMEOUT)?;
        if m != "mapped" {
            return Err(JailError::Init(format!("expected mapped, got {m:?}")));
        }
        // Root inside the new namespace (host uid host_uid).
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(sys("setresgid"))?;
        nix::unistd::setgroups(&[Gid::from_raw(0)]).map_err(sys("setgroups"))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(sys("setresuid"))?;
        ns::unshare_rest(&mut ns::RealKernel)?;
        // SAFETY: still single-threaded (see parent).
        match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
            ForkResult::Child => {
                let code = init(cfg, root, &mut s);
                // SAFETY: as above, leave without the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                send(&mut s, &format!("pid {child}"));
                Ok(())
            }
        }
    })();
    if let Err(e) = &r {
        send(&mut s, &format!("error {e}"));
    }
    r
}

/// G: PID 1 of the jail.
fn init(cfg: &InitConfig, root: &Path, s: &mut UnixStream) -> i32 {
    // stdin from /dev/null, stdout to the same log as stderr (init.log on
    // the host, opened by labd): the jail must not hold labd's pipes.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
    }
    let _ = nix::unistd::dup2(2, 1);
    let setup = (|| -> Result<(), JailError> {
        nix::unistd::sethostname(&cfg.hostname).map_err(sys("sethostname"))?;
        fs::enter_root(root)?;
        std::fs::create_dir_all("/run/sshd").map_err(|source| JailError::Io {
            what: "creating",
            path: "/run/sshd".into(),
            source,
        })?;
        Ok(())
    })();
    if let Err(e) = setup {
        send(s, &format!("error {e}"));
        return 1;
    }
    send(s, "fs-ok");
    // labd sets up the network meanwhile: the init mirrors the host's
    // /etc into the jail's, as the jail's root (its own files by birth).
    if let Err(e) = fs::mirror_host_etc(cfg.etc_fresh) {
        send(s, &format!("error {e}"));
        return 1;
    }
    // Signals the supervisor waits for; blocked before any child exists.
    let mut set = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1] {
        set.add(sig);
    }
    let _ = set.thread_block();
    match recv(s, Duration::from_secs(60)) {
        Ok(l) if l == "go" => {}
        Ok(l) => {
            send(s, &format!("error expected go, got {l:?}"));
            return 1;
        }
        Err(_) => return 1,
    }
    // The network is in place: the board's traffic is forwarded and
    // masqueraded behind the jail's address (the jail's own namespace, so
    // its init sets this up as its root).
    if let Err(e) = forward_board(cfg) {
        send(s, &format!("error {e}"));
        return 1;
    }
    let mut sup = Supervisor::new(cfg.services.clone());
    sup.start_all();
    match sup.wait_ready(Duration::from_secs(10)) {
        Ok(()) => send(s, "running"),
        Err(e) => {
            send(s, &format!("error {e}"));
            sup.stop();
            return 1;
        }
    }
    sup.run(&set)
}

/// Forwarding on, and the board's network masqueraded out of the uplink
/// (IPv6: routed; see [`super::net::jail_ruleset`]).
fn forward_board(cfg: &InitConfig) -> Result<(), JailError> {
    let mut knobs = vec!["/proc/sys/net/ipv4/ip_forward"];
    if cfg.ipv6 {
        knobs.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for path in knobs {
        std::fs::write(path, "1").map_err(|source| JailError::Io {
            what: "enabling forwarding in the jail",
            path: path.into(),
            source,
        })?;
    }
    let mut child = Command::new("/usr/sbin/nft")
        .args(["-f", "-"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| JailError::Io { what: "starting", path: "/usr/sbin/nft".into(), source })?;
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(super::net::jail_ruleset(&cfg.board_net, cfg.ipv6).as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| JailError::Init(format!("nft in the jail: {e}")))?;
    if !out.status.success() {
        return Err(JailError::Command {
            command: "nft -f - (in the jail)".into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
