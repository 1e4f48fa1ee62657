//! A real etcd cluster for the tests: three members (Debian's etcd 3.4)
//! on free loopback ports, data in a temp dir, each member stoppable and
//! restartable; every member this fixture started is killed by its PID
//! when the fixture is dropped, whatever happened.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    _turn: super::turn::Turn,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

use super::ports::free_port;

/// Held by each test that runs an etcd cluster and labds: two cores
/// cannot run several such labs at once without etcd missing its own
/// deadlines.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Etcd {
    /// Starts `n` members as one new cluster and waits for it to answer.
    /// Holds the lock below until dropped.
    pub fn start(n: usize) -> Etcd {
        super::need_root::require_root();
        let turn = super::turn::take(&ONE_AT_A_TIME, "etcd");
        super::sweep::stale_fixtures();
        let dir = tempfile::Builder::new().prefix("bltest-etcd-").tempdir().unwrap();
        super::sweep::own(dir.path());
        let token = format!("bltest-{}", std::process::id());
        let mut e = Etcd { dir, token, members: Vec::new(), _turn: turn };
        // A port free when chosen may be taken by another process before
        // etcd binds it; then that member exits at once, and the cluster
        // starts again on fresh ports (three tries).
        for attempt in 1..=3 {
            e.members = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    child: None,
                })
                .collect();
            for i in 0..n {
                let _ = std::fs::remove_dir_all(e.data_dir(i));
                e.start_member(i);
            }
            std::thread::sleep(Duration::from_millis(300));
            if attempt < 3 && e.a_member_exited() {
                eprintln!("etcd fixture: a member exited at start, starting again on other ports\n{}", e.member_logs());
                for i in 0..n {
                    e.stop_member(i);
                }
                continue;
            }
            break;
        }
        e.wait_healthy(Duration::from_secs(30));
        e
    }

    /// Whether a started member has already exited (a port taken, say).
    fn a_member_exited(&mut self) -> bool {
        self.members.iter_mut().filter_map(|m| m.child.as_mut()).any(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// The client URLs, comma separated (labsim's `--etcd`).
    pub fn urls(&self) -> String {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect::<Vec<_>>().join(",")
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    /// Starts member `i` (again, after `stop_member`: its data is kept).
    pub fn start_member(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", self.members[i].name)))
            .unwrap();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(["--initial-cluster-token", &self.token, "--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; `make deps` installs it)");
        super::sweep::started(self.dir.path(), child.id());
        self.members[i].child = Some(child);
    }

    /// Kills member `i` (SIGKILL, by its PID).
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// etcdctl against the running members.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        let endpoints: Vec<String> =
            self.members.iter().filter(|m| m.child.is_some()).map(|m| format!("127.0.0.1:{}", m.client_port)).collect();
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--dial-timeout=2s", "--command-timeout=3s"])
            .args(args)
            .output()
            .expect("etcdctl (Debian's etcd-client)")
    }

    /// The value at `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.ctl(&["get", "--print-value-only", key]);
        assert!(out.status.success(), "etcdctl get {key}: {}", String::from_utf8_lossy(&out.stderr));
        let v = String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string();
        (!v.is_empty()).then_some(v)
    }

    /// Keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.ctl(&["get", "--prefix", "--keys-only", prefix]);
        assert!(out.status.success(), "etcdctl get --prefix {prefix}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    /// Writes `key` (as an operator or another host would).
    pub fn put(&self, key: &str, value: &str) {
        let out = self.ctl(&["put", key, value]);
        assert!(out.status.success(), "etcdctl put {key}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Waits until a write goes through (a quorum is up).
    pub fn wait_healthy(&self, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let out = self.ctl(&["put", "/bltest/health", "ok"]);
            if out.status.success() {
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "etcd did not answer within {limit:?}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.member_logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn member_logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let t = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name))).unwrap_or_default();
                let tail: Vec<&str> = t.lines().rev().take(5).collect();
                format!("{}: {}", m.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
