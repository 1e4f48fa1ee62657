//! Shared fixtures for the end-to-end tests: a real labsim lab (snmpd,
//! ptys, namespaces, board processes), a real labd on it, and clients that
//! speak to labd as real Unix users.
#![allow(dead_code)]

pub mod bins;
pub mod browser;
pub mod etcd;
pub mod http;
pub mod jails;
pub mod need_root;
pub mod ports;
pub mod ssh;
pub mod sweep;
pub mod turn;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const LABD: &str = env!("CARGO_BIN_EXE_labd");
pub const LABCLI: &str = env!("CARGO_BIN_EXE_labcli");
pub use bins::labsim_exe;

/// Unprivileged accounts the tests act as (created by `make test-users`,
/// or here if missing).
pub const ALICE: &str = "bltest-alice";
pub const BOB: &str = "bltest-bob";
pub const GATEWAY: &str = "bltest-gw";

/// Makes sure the test accounts exist; idempotent.
pub fn ensure_users() {
    for u in [ALICE, BOB, GATEWAY] {
        if nix::unistd::User::from_name(u).ok().flatten().is_none() {
            let st =
                Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", u]).status().expect("useradd");
            assert!(st.success() || nix::unistd::User::from_name(u).ok().flatten().is_some(), "cannot create user {u}");
        }
        // '*': no password login, but not "locked" (which sshd refuses).
        let _ = Command::new("usermod").args(["-p", "*", u]).status();
    }
}

pub fn uid_of(user: &str) -> (u32, u32) {
    let u = nix::unistd::User::from_name(user).unwrap().unwrap_or_else(|| panic!("no user {user}"));
    (u.uid.as_raw(), u.gid.as_raw())
}

/// `program` to be run as `user` (uid and gid), its output piped.
pub fn command_as(user: &str, program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = uid_of(user);
    let mut c = Command::new(program);
    c.uid(uid).gid(gid).stdout(Stdio::piped());
    c
}

/// A simulated lab with labd running on it. Dropping it stops labd and
/// tears the lab down, also when the test failed.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub labd: Option<Child>,
}

impl Lab {
    /// `labsim up` with `n` boards; `edit` may rewrite lab.toml before
    /// labd starts.
    pub fn up(n: usize, classes: &str, edit: impl FnOnce(String) -> String) -> Lab {
        let mut lab = Lab::create(n, classes, &[], edit);
        lab.start_labd();
        lab
    }

    /// `labsim up` with extra flags (e.g. `--no-net`), without starting labd.
    pub fn create(n: usize, classes: &str, flags: &[&str], edit: impl FnOnce(String) -> String) -> Lab {
        need_root::require_root();
        sweep::stale_fixtures();
        ensure_users();
        let dir = tempfile::Builder::new().prefix("bltest-").tempdir().unwrap();
        sweep::own(dir.path());
        // labsim refuses a directory that already holds a lab; an empty
        // temp dir is fine.
        let lab = Lab { dir, labd: None };
        let out = Command::new(labsim_exe())
            .args(["up", "--dir"])
            .arg(lab.dir.path())
            .args(["--boards", &n.to_string(), "--classes", classes])
            .args(flags)
            .output()
            .unwrap();
        assert!(out.status.success(), "labsim up failed: {}", String::from_utf8_lossy(&out.stderr));
        let p = lab.dir.path().join("lab.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, edit(text)).unwrap();
        lab
    }

    /// The UDP port of the lab's snmpd, from lab.toml.
    pub fn snmp_port(&self) -> u16 {
        let t = std::fs::read_to_string(self.path().join("lab.toml")).unwrap();
        let host = t.lines().find(|l| l.trim_start().starts_with("host")).expect("switch host");
        host.rsplit(':').next().unwrap().trim_end_matches('"').trim().parse().unwrap()
    }

    /// Sets a port with net-snmp's own snmpset, behind labd's back.
    pub fn snmpset(&self, port: u32, value: u32) {
        let st = Command::new("snmpset")
            .args(["-v2c", "-c", "private", "-On", "-t", "2"])
            .arg(format!("127.0.0.1:{}", self.snmp_port()))
            .arg(format!(".1.3.6.1.2.1.105.1.1.1.3.1.{port}"))
            .args(["i", &value.to_string()])
            .output()
            .unwrap();
        assert!(st.status.success(), "snmpset: {}", String::from_utf8_lossy(&st.stderr));
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("labd.sock")
    }

    pub fn start_labd(&mut self) {
        self.start_labd_env(&[]);
    }

    /// Starts labd with extra environment variables (fault injection).
    pub fn start_labd_env(&mut self, env: &[(&str, &str)]) {
        self.start_labd_with(env, |_| {});
    }

    /// Starts labd with extra environment variables, after `f` had its
    /// say on the command (a umask, say).
    pub fn start_labd_with(&mut self, env: &[(&str, &str)], f: impl FnOnce(&mut Command)) {
        assert!(self.labd.is_none());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("labd.log")).unwrap();
        let mut cmd = Command::new(LABD);
        f(&mut cmd);
        let child = cmd
            .arg("--config")
            .arg(self.dir.path())
            .envs(env.iter().copied())
            .env("LABD_LOG", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        sweep::started(self.dir.path(), child.id());
        self.labd = Some(child);
        let t0 = Instant::now();
        while UnixStream::connect(self.sock()).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "labd did not start: {}", self.log());
            if let Some(Ok(Some(st))) = self.labd.as_mut().map(|c| c.try_wait()) {
                panic!("labd exited with {st}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PoE port of `board`, from its board file.
    pub fn board_port(&self, board: &str) -> u32 {
        let text = std::fs::read_to_string(self.path().join(format!("boards.d/{board}.toml"))).unwrap();
        let line = text.lines().find(|l| l.starts_with("power")).expect("power line");
        let at = line.find("port").unwrap();
        line[at..]
            .trim_start_matches("port")
            .trim_start_matches([' ', '='])
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The running labd's pid.
    pub fn labd_pid(&self) -> u32 {
        self.labd.as_ref().expect("labd runs").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("labd.log")).unwrap_or_default()
    }

    /// SIGKILL: what a crash looks like.
    pub fn kill9_labd(&mut self) {
        if let Some(mut c) = self.labd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: the graceful stop.
    pub fn stop_labd(&mut self) -> std::process::ExitStatus {
        let mut c = self.labd.take().expect("labd running");
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        c.wait().unwrap()
    }

    /// A connection as root (the test's own uid).
    pub fn conn(&self) -> Conn {
        Conn::open(&self.sock())
    }

    /// One request as root.
    pub fn req(&self, v: Value) -> Value {
        self.conn().call(v)
    }

    /// Runs `labcli --socket SOCK --json ARGS...` as `user`.
    pub fn cli_as(&self, user: &str, args: &[&str]) -> Output {
        self.labcli_as(user).arg("--json").args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// `labcli --socket SOCK` to run as `user`, with piped stdio and no
    /// ssh forced-command environment.
    pub fn labcli_as(&self, user: &str) -> Command {
        let (uid, gid) = uid_of(user);
        let mut c = Command::new(LABCLI);
        c.arg("--socket")
            .arg(self.sock())
            .uid(uid)
            .gid(gid)
            .env_remove("SSH_ORIGINAL_COMMAND")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts `labcli --socket SOCK ARGS...` as `user` with piped stdio.
    pub fn spawn_cli_as(&self, user: &str, args: &[&str]) -> Child {
        self.labcli_as(user).args(args).spawn().unwrap()
    }

    /// Sends JSON request lines as `user` through labcli's stdin mode and
    /// returns one reply per line.
    pub fn as_user(&self, user: &str, reqs: &[Value]) -> Vec<Value> {
        let mut child = self.labcli_as(user).spawn().unwrap();
        {
            let mut stdin = child.stdin.take().unwrap();
            for r in reqs {
                writeln!(stdin, "{r}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let replies: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad reply line {l:?}: {e}")))
            .collect();
        assert_eq!(
            replies.len(),
            reqs.len(),
            "one reply per request; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        replies
    }

    /// Writes raw bytes to labcli's stdin mode as `user` and returns the
    /// reply lines (labcli answers bad lines itself, passes JSON on).
    pub fn stdin_raw_as(&self, user: &str, bytes: &[u8]) -> Vec<Value> {
        let child = self.labcli_as(user).spawn().unwrap();
        feed_and_collect(child, bytes)
    }

    /// Sends raw bytes over the socket as `user` (through socat, so the
    /// daemon sees that user's SO_PEERCRED) and returns every reply line
    /// until labd closes the connection.
    pub fn socket_raw_as(&self, user: &str, bytes: &[u8]) -> Vec<Value> {
        let (uid, gid) = uid_of(user);
        let child = Command::new("socat")
            .args(["-t", "30", "-"])
            .arg(format!("UNIX-CONNECT:{}", self.sock().display()))
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("socat");
        feed_and_collect(child, bytes)
    }

    /// What hostile input must not change: every board as `status` shows
    /// it, and the event log as `dump` shows it.
    pub fn snapshot(&self) -> (Value, Value) {
        let s = self.req(json!({"fn": "status"}));
        let d = self.req(json!({"fn": "dump"}));
        (ok(&s).clone(), ok(&d)["events"].clone())
    }

    /// The port state as the switch itself reports it (`labsim power`).
    pub fn switch_power(&self, board: &str) -> String {
        let out = Command::new(labsim_exe()).args(["power", "--dir"]).arg(self.path()).arg(board).output().unwrap();
        assert!(out.status.success(), "labsim power failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn labsim(&self, args: &[&str]) -> Output {
        Command::new(labsim_exe()).arg(args[0]).arg("--dir").arg(self.path()).args(&args[1..]).output().unwrap()
    }

    /// The board's entry in `status`.
    pub fn board(&self, name: &str) -> Value {
        let r = self.req(json!({"fn": "status"}));
        r["result"].as_array().unwrap().iter().find(|b| b["board"] == name).cloned().unwrap_or(Value::Null)
    }

    /// Polls `f` until it returns true or `limit` passes.
    pub fn wait_for(&self, limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < limit, "timed out waiting for {what}; labd log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // SIGTERM first: labd's graceful stop also removes its jails.
        if let Some(mut c) = self.labd.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(labsim_exe()).args(["down", "--dir"]).arg(self.dir.path()).output();
        // A failed test's lab: with BL_KEEP_FAILED set, its logs are kept
        // for whoever looks into it (otherwise nothing is left behind).
        if std::thread::panicking() && std::env::var_os("BL_KEEP_FAILED").is_some() {
            let kept = std::env::temp_dir().join(format!("bltest-failed-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&kept);
            let _ = std::fs::copy(self.dir.path().join("labd.log"), kept.join("labd.log"));
            let _ = Command::new("cp").arg("-r").arg(self.dir.path().join("logs")).arg(&kept).output();
            eprintln!("the failed lab's logs are in {}", kept.display());
        }
    }
}

/// Writes `bytes` to the child's stdin from a thread (the child answers
/// while it reads, so a big input must not wait for the whole write before
/// the replies are drained) and returns the reply lines it printed.
fn feed_and_collect(mut child: Child, bytes: &[u8]) -> Vec<Value> {
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    reply_lines(&out.stdout)
}

/// A raw protocol connection.
pub struct Conn {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Conn {
    pub fn open(path: &Path) -> Conn {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader, next_id: 1 }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn read_reply(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))),
            Err(e) => panic!("reading reply: {e}"),
        }
    }

    /// Whether labd has closed the connection: end of file, or a reset
    /// (what Linux reports when a Unix socket is closed with unread input).
    pub fn closed(&mut self) -> bool {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
            Ok(_) => false,
            Err(e) => panic!("reading: {e}"),
        }
    }

    /// Sends one request (an `id` is added) and returns its reply.
    pub fn call(&mut self, mut v: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        v["id"] = json!(id);
        let mut line = v.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes());
        let r = self.read_reply().expect("connection closed");
        assert_eq!(r["id"], json!(id), "reply out of order: {r}");
        r
    }
}

/// Parses reply lines; each must be one JSON object.
pub fn reply_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad reply line {l:?}: {e}")))
        .collect()
}

pub fn ok(r: &Value) -> &Value {
    assert_eq!(r["ok"], json!(true), "expected success, got {r}");
    &r["result"]
}

pub fn code(r: &Value) -> &str {
    assert_eq!(r["ok"], json!(false), "expected an error, got {r}");
    r["error"]["code"].as_str().unwrap()
}

impl Conn {
    /// Reads raw bytes (after a `console` reply) until `done(all so far)`
    /// holds or `limit` passes; returns everything read.
    pub fn read_until(&mut self, limit: Duration, mut done: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        use std::io::Read;
        let t0 = Instant::now();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        self.stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        while !done(&all) && t0.elapsed() < limit {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("console read: {e}"),
            }
        }
        self.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        all
    }

    /// Whether the peer has closed the connection (within `limit`).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        use std::io::Read;
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        self.stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        while t0.elapsed() < limit {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether `sub` occurs in `hay` in order, not necessarily contiguous.
pub fn subsequence(hay: &[u8], sub: &[u8]) -> bool {
    let mut it = hay.iter();
    sub.iter().all(|b| it.any(|h| h == b))
}
