//! Labs with `jail = "linux"`: addresses, uids and keys of the test's own,
//! and an OpenSSH login into a claim's jail checked against the host key
//! from the claim reply.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

use super::{Lab, ALICE, BOB};

/// The address pools and uid range a jail lab uses. Tests that run at the
/// same time must not share them.
pub struct JailNet {
    pub pool: &'static str,
    pub board_net: &'static str,
    pub uid_base: u32,
}

/// A lab of `n` labsim boards with jails on (labd not started yet), and
/// ssh keys for alice and bob in `keys.d`. `extra` is appended to the
/// `[jail]` table (further `[jail]` keys), `after` to lab.toml.
pub fn jail_lab(n: usize, classes: &str, net: &JailNet, extra: &str, after: &str) -> Lab {
    jail_lab_with(n, classes, &[], net, extra, after)
}

/// `jail_lab` with further `labsim up` flags (a host of a lab on etcd).
pub fn jail_lab_with(n: usize, classes: &str, flags: &[&str], net: &JailNet, extra: &str, after: &str) -> Lab {
    let lab = Lab::create(n, classes, flags, |t| t);
    let dir = lab.path().to_path_buf();
    let lab_toml = dir.join("lab.toml");
    let text = std::fs::read_to_string(&lab_toml).unwrap().replace("jail = \"none\"", "jail = \"linux\"");
    let text = format!(
        "{text}\n[jail]\nroot_dir = \"{d}/jails\"\npool = \"{pool}\"\nboard_net = \"{bn}\"\nuid_base = {uid}\nkeys_dir = \"{d}/keys.d\"\n{extra}\n{after}\n",
        d = dir.display(),
        pool = net.pool,
        bn = net.board_net,
        uid = net.uid_base,
    );
    std::fs::write(&lab_toml, text).unwrap();
    std::fs::create_dir_all(dir.join("keys.d")).unwrap();
    for user in [ALICE, BOB] {
        let key = key_of(&dir, user);
        if !key.exists() {
            super::ssh::keygen(&key);
        }
        std::fs::copy(key.with_extension("pub"), dir.join(format!("keys.d/{user}.pub"))).unwrap();
    }
    lab
}

/// The private key of `user` in a jail lab.
pub fn key_of(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("{user}_key"))
}

/// ssh into a claim's jail as root, the host key checked against the
/// `known_hosts` line of the claim reply.
pub struct Login {
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub ip: String,
    /// ssh from inside this network namespace (a macvlan jail is reached
    /// from its LAN, not from the host).
    pub via_netns: Option<String>,
}

impl Login {
    /// ssh into the claim `c`'s jail over IPv6, its host key checked.
    pub fn over_ipv6(dir: &Path, user: &str, c: &Value, tag: &str) -> Login {
        let ip6 = c["jail"]["ipv6"].as_str().unwrap().to_string();
        let key = c["jail"]["known_hosts"].as_str().unwrap().split_once(' ').unwrap().1.to_string();
        let mut l = Login::new(dir, user, &c["jail"], tag);
        std::fs::write(&l.known_hosts, format!("{ip6} {key}\n")).unwrap();
        l.ip = ip6;
        l
    }

    /// `jail` is the claim reply's `jail` object; `tag` names the
    /// known_hosts file (one per login).
    pub fn new(dir: &Path, user: &str, jail: &Value, tag: &str) -> Login {
        let known_hosts = dir.join(format!("known_hosts.{tag}"));
        std::fs::write(&known_hosts, format!("{}\n", jail["known_hosts"].as_str().expect("known_hosts"))).unwrap();
        Login {
            key: key_of(dir, user),
            known_hosts,
            ip: jail["ip"].as_str().expect("jail ip").to_string(),
            via_netns: None,
        }
    }

    pub fn command(&self, cmd: &str) -> Command {
        let mut c = match &self.via_netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "ssh"]);
                c
            }
            None => Command::new("ssh"),
        };
        c.args([
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
        .arg("-i")
        .arg(&self.key)
        .arg(format!("root@{}", self.ip))
        .arg(cmd);
        c
    }

    pub fn run(&self, cmd: &str) -> Output {
        self.command(cmd).output().unwrap()
    }

    #[track_caller]
    pub fn ok(&self, cmd: &str) -> String {
        let o = self.run(cmd);
        assert!(
            o.status.success(),
            "{cmd:?} failed ({:?}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }
}

/// `ip netns list`.
pub fn netns_list() -> String {
    String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).to_string()
}

/// What a lab's jails may leave behind on the host, listed: namespaces
/// named `blj*`, links `blju*`/`bljv*`/`bljm*`, nft tables `boardlab_j*`,
/// mounts under `dir`, loop devices backed by files under `dir`, and
/// processes owned by uids in `[uid_base, uid_base + 65536 * boards)`.
pub fn leftovers(dir: &Path, uid_base: u32, boards: u32) -> Vec<String> {
    let mut left = Vec::new();
    for ns in netns_list().lines().filter_map(|l| l.split_whitespace().next()) {
        if ns.starts_with("blj") {
            left.push(format!("netns {ns}"));
        }
    }
    let links = String::from_utf8_lossy(&Command::new("ip").args(["-br", "link"]).output().unwrap().stdout).to_string();
    for l in links.lines().filter_map(|l| l.split_whitespace().next()) {
        let name = l.split('@').next().unwrap_or(l);
        if ["blju", "bljv", "bljm"].iter().any(|p| name.starts_with(p)) {
            left.push(format!("link {name}"));
        }
    }
    let nft =
        String::from_utf8_lossy(&Command::new("nft").args(["list", "tables"]).output().unwrap().stdout).to_string();
    for t in nft.lines() {
        if t.contains("boardlab_j") || t.contains("boardlab_macvlan") {
            left.push(format!("nft {t}"));
        }
    }
    let d = dir.display().to_string();
    for m in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        if m.contains(&d) {
            left.push(format!("mount {m}"));
        }
    }
    let loops =
        String::from_utf8_lossy(&Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE"]).output().unwrap().stdout)
            .to_string();
    for l in loops.lines() {
        if l.contains(&d) {
            left.push(format!("loop {l}"));
        }
    }
    let hi = u64::from(uid_base) + 65536 * u64::from(boards);
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        // A jail's init that exited waits, as a zombie holding nothing, for
        // the host's init to reap it (it was re-parented there).
        if status.lines().any(|l| l.starts_with("State:") && l.contains("zombie")) {
            continue;
        }
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse::<u64>().ok());
        if let Some(uid) = uid {
            if uid >= u64::from(uid_base) && uid < hi {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                left.push(format!("process {pid} ({}) uid {uid}", comm.trim()));
            }
        }
    }
    left
}

/// Jails are named after board index and board name, which labsim labs
/// share: jail tests in one test binary take turns.
pub fn one_at_a_time() -> super::turn::Turn {
    static LOCK: Mutex<()> = Mutex::new(());
    super::turn::take(&LOCK, "jails")
}

/// Zombie children of `pid` (processes it started and never reaped).
pub fn zombies_of(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1).and_then(|pp| pp.parse::<u32>().ok()) == Some(pid) {
            out.push(format!("{p} {}", &stat[..stat.rfind(')').unwrap_or(0) + 1]));
        }
    }
    out
}

/// A host address made by a test, to aim attacks at: a veth pair with
/// `addr/32` on its host end (up; its peer stays down). Removed on drop.
pub struct HostTarget {
    pub link: String,
    pub addr: std::net::Ipv4Addr,
}

impl HostTarget {
    pub fn new(tag: &str, addr: std::net::Ipv4Addr) -> HostTarget {
        let link = format!("bltg{tag}");
        let _ = Command::new("ip").args(["link", "del", &link]).output();
        let run = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        };
        run(&["link", "add", &link, "type", "veth", "peer", "name", &format!("bltp{tag}")]);
        run(&["addr", "add", &format!("{addr}/32"), "dev", &link]);
        run(&["link", "set", &link, "up"]);
        HostTarget { link, addr }
    }
}

impl Drop for HostTarget {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.link]).output();
    }
}

/// A UDP and a TCP listener on the host that count what reaches them.
pub struct Listener {
    pub port: u16,
    pub hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Listener {
    /// Listens on `addr` (UDP and TCP, same port) on the host.
    pub fn new(addr: std::net::IpAddr) -> Listener {
        Listener::in_netns(None, addr)
    }

    /// Listens on `addr` inside the named network namespace (or on the
    /// host): the sockets are made by a thread that joined it.
    pub fn in_netns(netns: Option<&str>, addr: std::net::IpAddr) -> Listener {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let ns = netns.map(str::to_string);
        std::thread::spawn(move || {
            if let Some(ns) = ns {
                let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            }
            let tcp = std::net::TcpListener::bind((addr, 0)).unwrap();
            let port = tcp.local_addr().unwrap().port();
            let udp = std::net::UdpSocket::bind((addr, port)).unwrap();
            tcp.set_nonblocking(true).unwrap();
            udp.set_read_timeout(Some(std::time::Duration::from_millis(50))).unwrap();
            tx.send(port).unwrap();
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, from)) = tcp.accept() {
                    h.lock().unwrap().push(format!("tcp from {from}"));
                }
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    h.lock().unwrap().push(format!("udp from {from}: {:?}", String::from_utf8_lossy(&buf[..n])));
                }
            }
        });
        let port = rx.recv().unwrap();
        Listener { port, hits, stop }
    }

    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The board's host link and labsim's namespace of the board's own end
/// (`eth0` inside), from the board's file.
pub fn board_link(lab: &Lab, board: &str) -> (String, String) {
    let text = std::fs::read_to_string(lab.path().join(format!("boards.d/{board}.toml"))).unwrap();
    let line = text.lines().find(|l| l.starts_with("network")).expect("network line");
    let host_if = line.split('"').nth(1).unwrap().to_string();
    // labsim names them bl<id>h<port> (host end) and bl<id>-<port> (netns).
    let (id, port) = host_if.trim_start_matches("bl").split_once('h').unwrap();
    (host_if.clone(), format!("bl{id}-{port}"))
}

/// `ip -j -d link show NAME` on the host, parsed; Null if absent.
pub fn host_link_json(name: &str) -> Value {
    let o = Command::new("ip").args(["-j", "-d", "link", "show", "dev", name]).output().unwrap();
    if !o.status.success() {
        return Value::Null;
    }
    serde_json::from_slice::<Value>(&o.stdout).ok().and_then(|v| v.get(0).cloned()).unwrap_or(Value::Null)
}

/// A sysctl of a host interface, e.g. `ipv6_sysctl("eth0", "disable_ipv6")`.
pub fn ipv6_sysctl(link: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{link}/{key}")).unwrap_or_default().trim().to_string()
}

/// A board link parked on the host: there, down, IPv6 off, no router
/// advertisements.
#[track_caller]
pub fn assert_link_parked(host_if: &str) {
    let l = host_link_json(host_if);
    assert!(!l.is_null(), "{host_if} is back on the host");
    let flags: Vec<&str> = l["flags"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert!(!flags.contains(&"UP"), "{host_if} is down: {l}");
    assert_eq!(ipv6_sysctl(host_if, "disable_ipv6"), "1", "{host_if} has IPv6 off");
    assert_eq!(ipv6_sysctl(host_if, "accept_ra"), "0", "{host_if} takes no router advertisements");
}

/// Runs a command (program first), its output collected.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

/// A network namespace joined to the host by a veth pair, with addresses
/// on both ends (IPv6 ones without duplicate detection, usable at once);
/// removed (with whatever runs in it) on drop.
pub struct Net {
    pub ns: String,
    pub host_if: String,
    pub children: Vec<std::process::Child>,
}

impl Net {
    pub fn new(tag: &str, host_cidr: &str, ns_cidrs: &[&str], gateway: &str) -> Net {
        let (ns, host_if) = (format!("bltn{tag}"), format!("bltn{tag}h"));
        let _ = sh(&["ip", "netns", "del", &ns]);
        let _ = sh(&["ip", "link", "del", &host_if]);
        let nodad = |c: &str| if c.contains(':') { vec!["nodad"] } else { vec![] };
        let mut cmds: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", &ns],
            vec!["ip", "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns],
            [vec!["ip", "addr", "add", host_cidr, "dev", &host_if], nodad(host_cidr)].concat(),
            vec!["ip", "link", "set", &host_if, "up"],
            vec!["ip", "-n", &ns, "link", "set", "eth0", "up"],
            vec!["ip", "-n", &ns, "link", "set", "lo", "up"],
        ];
        for c in ns_cidrs {
            cmds.push([vec!["ip", "-n", &ns, "addr", "add", c, "dev", "eth0"], nodad(c)].concat());
        }
        cmds.push(vec!["ip", "-n", &ns, "route", "add", "default", "via", gateway]);
        let net = Net { ns: ns.clone(), host_if: host_if.clone(), children: Vec::new() };
        for c in cmds {
            let o = sh(&c);
            assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.ns]);
        let _ = sh(&["ip", "link", "del", &self.host_if]);
    }
}
