//! End-to-end test of the per-claim Linux jail against the real things: a
//! labsim lab (board processes doing real DHCP/TFTP on veth links), user,
//! mount, PID, net, UTS and IPC namespaces, dnsmasq, OpenSSH server and
//! client, nftables. Needs root, and fails saying so otherwise.
//!
//! One test function runs the scenario in order (the steps depend on each
//! other) and a guard removes everything on the way out, also on failure.

#[path = "common/bins.rs"]
mod bins;
#[path = "common/need_root.rs"]
mod need_root;
#[path = "common/serial.rs"]
mod serial;
#[path = "common/turn.rs"]
mod turn;
use serial::Serial;

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use boardlab::config::{Config, Network};
use boardlab::jail::{self, Jail, JailSettings, JailSpec, Uplink};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use bins::labsim_exe;
const LABJAIL: &str = env!("CARGO_BIN_EXE_labjail");
const LABCLI: &str = env!("CARGO_BIN_EXE_labcli");
const ADMIN_ENABLE: &str = ".1.3.6.1.2.1.105.1.1.1.3.1";

fn text(o: &Output) -> String {
    format!(
        "status {} stdout {:?} stderr {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog).args(args).output().unwrap_or_else(|e| panic!("{prog}: {e}"))
}

/// Everything the test made; dropping it removes all of it.
struct World {
    dir: tempfile::TempDir,
    jails: Vec<Jail>,
    inet_ns: String,
    inet_host_if: String,
}

impl Drop for World {
    fn drop(&mut self) {
        for j in std::mem::take(&mut self.jails) {
            if let Err(e) = j.clone().destroy(true) {
                eprintln!("cleanup: {e}");
                for l in jail::sweep(&[j], false) {
                    eprintln!("cleanup sweep: {l}");
                }
            }
        }
        let _ = run("ip", &["link", "del", &self.inet_host_if]);
        let _ = run("ip", &["netns", "del", &self.inet_ns]);
        let d = self.dir.path().join("lab");
        let o = run(labsim_exe().to_str().unwrap(), &["down", "--dir", d.to_str().unwrap()]);
        if !o.status.success() {
            eprintln!("cleanup: labsim down: {}", text(&o));
        }
    }
}

fn random_u8() -> u8 {
    let mut b = [0u8; 1];
    getrandom::getrandom(&mut b).unwrap();
    b[0]
}

struct Ssh {
    log: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    ip: Ipv4Addr,
}

impl Ssh {
    fn new(dir: &Path, key: &Path, info: &jail::JailInfo, tag: &str, data: &Path) -> Ssh {
        let known_hosts = dir.join(format!("known_hosts.{tag}"));
        std::fs::write(&known_hosts, format!("{}\n", info.known_hosts)).unwrap();
        Ssh { key: key.into(), known_hosts, ip: info.ip, log: data.join("var/log/sshd.log") }
    }

    fn run(&self, cmd: &str) -> Output {
        Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(&self.key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg(format!("root@{}", self.ip))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, cmd: &str) -> String {
        let o = self.run(cmd);
        assert!(
            o.status.success(),
            "ssh {cmd:?}: {}\nsshd.log: {}",
            text(&o),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn fails(&self, cmd: &str) {
        let o = self.run(cmd);
        assert!(!o.status.success(), "ssh {cmd:?} should fail: {}", text(&o));
        // ... and it is the command that failed, not ssh (255).
        assert_ne!(
            o.status.code(),
            Some(255),
            "ssh itself failed for {cmd:?}: {}\nsshd.log: {}",
            text(&o),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

#[test]
fn jail_end_to_end() {
    need_root::require_root();
    // Jail names and links derive from board index and name: one jail
    // test at a time on this machine.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = turn::take(&LOCK, "jails");
    let r = random_u8() % 100;
    let dir = tempfile::Builder::new().prefix("bljail-").tempdir().unwrap();
    let mut world =
        World { dir, jails: Vec::new(), inet_ns: format!("bltinet{r}"), inet_host_if: format!("bltinet{r}h") };
    let base = world.dir.path().to_path_buf();
    let labdir = base.join("lab");
    let o = run(labsim_exe().to_str().unwrap(), &["up", "--dir", labdir.to_str().unwrap(), "--boards", "2"]);
    assert!(o.status.success(), "labsim up: {}", text(&o));
    let cfg = Config::load(&labdir).expect("labsim's config loads");
    let snmp = cfg.switches.values().next().unwrap().host.clone();

    // The claimant's key.
    let key = base.join("id_ed25519");
    let o = run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let pubkey = std::fs::read_to_string(base.join("id_ed25519.pub")).unwrap();

    // Pools that do not clash with the host (TEST-NET-ish 10.2xx).
    let settings = JailSettings {
        root_dir: base.join("jails"),
        pool: format!("10.{}.0.0/16", 150 + r).parse().unwrap(),
        board_net: "172.30.0.0/16".parse().unwrap(),
        // The test's "internet" (step 3) is where jails are masqueraded:
        // egress is default-deny, so it must be the NAT interface.
        nat_interface: Some(world.inet_host_if.clone()),
        uplink: Uplink::Routed,
        uid_base: 300_000,
        ssh_port: 22,
        init_exe: LABJAIL.into(),
        nfsroot_size: jail::DEFAULT_NFSROOT_SIZE,
        data_size: jail::DEFAULT_DATA_SIZE,
        deny_out: Vec::new(),
        limits: jail::cgroup::Limits::default(),
        ipv6: None,
    };
    let first_index = 10 + u32::from(r) * 2;
    let sock = base.join("jail1-socket");
    std::fs::create_dir_all(&sock).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(sock.join("jail.sock")).unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    let pty_slave = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();

    let spec = |i: usize| {
        let b = &cfg.boards[i];
        JailSpec {
            board: b.name.clone(),
            handle: boardlab::util::new_handle().unwrap(),
            user: "alice".into(),
            index: first_index + u32::try_from(i).unwrap(),
            link: b.network.clone().unwrap(),
            settings: settings.clone(),
            authorized_keys: pubkey.clone(),
            host_key: None,
            host_cert: None,
            jail_socket: (i == 0).then(|| sock.clone()),
            console: (i == 0).then(|| pty_slave.clone()),
            sdcard: None,
            labcli: LABCLI.into(),
            link_id: None,
            cgroups: jail::cgroup::detect(),
            ipv6_prefix: None,
        }
    };
    let specs = [spec(0), spec(1)];
    let mut infos = Vec::new();
    for s in &specs {
        let t = Instant::now();
        let (j, info) = Jail::create(s).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(settings.root_dir.join(&s.board).join("init.log")).unwrap_or_default();
            panic!("create {}: {e}\ninit.log:\n{log}", s.board)
        });
        eprintln!("create {}: {:?} -> {info:?}", s.board, t.elapsed());
        assert!(j.alive());
        world.jails.push(j);
        infos.push(info);
    }
    let (b1, b2) = (&cfg.boards[0], &cfg.boards[1]);
    let plan1 = world.jails[0].plan.clone();
    let plan2 = world.jails[1].plan.clone();
    // Each claim's nfsroot is its own (loop-mounted ext4) file system, so
    // ganesha's handles resolve nowhere else.
    let nfs1 = plan1.data_dir.join("nfsroot");
    let img1 = jail::disk::state_dir(&plan1.data_dir).join("nfsroot.img");
    let (fstype, source) = mount_of(&nfs1).expect("nfsroot of jail 1 is mounted");
    assert_eq!(fstype, "ext4");
    assert!(source.starts_with("/dev/loop"), "{source}");
    assert!(losetup_has(&img1), "a loop device for {}", img1.display());
    let (_, source2) = mount_of(&plan2.data_dir.join("nfsroot")).expect("nfsroot of jail 2 is mounted");
    assert_ne!(source, source2, "one file system per claim");
    let mode = std::fs::metadata(jail::disk::state_dir(&plan1.data_dir))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.unwrap(), 0o700, "the images' directory is host root's alone");
    // Everything the jail writes is on a file system of its own too.
    let (dfs, dsrc) = mount_of(&plan1.data_dir).expect("the claim's data file system is mounted");
    assert_eq!(dfs, "ext4");
    assert!(dsrc.starts_with("/dev/loop") && dsrc != source, "{dsrc}");

    // (1) The board boots from the jail: DHCP lease and TFTP from .1.
    let tftp = settings.root_dir.join(&b1.name).join("tftpboot/boot.scr");
    std::fs::write(&tftp, "echo hello from the jail\n").unwrap();
    // ... and reads a file from the jail's NFS export of /nfsroot.
    std::fs::write(settings.root_dir.join(&b1.name).join("nfsroot/hello.txt"), "hello over nfs\n").unwrap();
    let mut serial = Serial::open(&labdir.join("tty").join(&b1.name));
    let t = Instant::now();
    let o = run("snmpset", &["-v2c", "-c", "private", &snmp, &format!("{ADMIN_ENABLE}.{}", b1.port), "i", "1"]);
    assert!(o.status.success(), "snmpset: {}", text(&o));
    assert!(serial.read_until("TFTP: fetched boot.scr", Duration::from_secs(20)), "serial: {}", serial.text());
    assert!(serial.read_until("NFS: ", Duration::from_secs(15)), "serial: {}", serial.text());
    assert!(serial.read_until("=> ", Duration::from_secs(5)), "serial: {}", serial.text());
    eprintln!("power-on to NFS read: {:?}\n{}", t.elapsed(), serial.text());
    assert!(serial.text().contains("NFS: read /nfsroot/hello.txt (15 bytes)"), "serial: {}", serial.text());
    let want = format!("DHCP: lease {}", plan1.board_addr.to_string().trim_end_matches(".1"));
    let console = serial.text();
    assert!(console.contains(&want) && console.contains(&format!("from {}", plan1.board_addr)), "{console}");
    let lease: Ipv4Addr = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("DHCP: lease "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("a lease address");
    let last = lease.octets()[3];
    assert!((100..=199).contains(&last), "{lease}");

    // (2) ssh in as root, host key checked against JailInfo.known_hosts.
    let ssh1 = Ssh::new(&base, &key, &infos[0], "1", &settings.root_dir.join(&b1.name));
    assert_eq!(ssh1.ok("id -u"), "0");
    let map = ssh1.ok("cat /proc/self/uid_map");
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", &plan1.host_uid.to_string(), "65536"], "{map}");
    assert_eq!(ssh1.ok("hostname"), b1.name);
    // /usr is the claim's own layer over a read-only view of the host's:
    // writable in the jail, the host's untouched, the view immovable.
    ssh1.ok("touch /usr/x && test -e /usr/x");
    assert!(!Path::new("/usr/x").exists(), "the host's /usr is untouched");
    ssh1.fails("touch /.boardlab/lower/usr/x");
    ssh1.fails("mount -o remount,bind,rw /.boardlab/lower/usr");
    ssh1.fails("umount /.boardlab/lower/usr");
    // /etc is the claim's own (writable) directory; the host's /etc is
    // visible only read-only behind it.
    ssh1.fails("touch /.host-etc/x");
    ssh1.fails("echo x >> /etc/ld.so.conf");
    ssh1.fails("mount -o remount,bind,rw /.host-etc");
    ssh1.ok("touch /etc/x");
    assert!(!Path::new("/etc/x").exists());
    ssh1.ok("touch /root/x /tmp/x /var/x /tftpboot/x /nfsroot/x /etc/passwd");
    // The jail's /nfsroot is the file system ganesha exports.
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&nfs1).unwrap());
    let jail_dev: u64 = ssh1.ok("stat -c %d /nfsroot").parse().unwrap();
    assert_eq!(jail_dev, dev, "the jail sees the loop-mounted nfsroot");
    assert!(nfs1.join("x").exists());
    let procs = ssh1.ok("ls /proc | grep -c '^[0-9]'");
    let n: u32 = procs.parse().unwrap();
    assert!(n < 15, "only the jail's processes are visible, saw {n}");
    assert_eq!(ssh1.ok("cat /proc/1/comm"), "labjail");
    ssh1.ok("test -S /run/boardlab/jail.sock && test -x /usr/local/bin/labcli && test -c /dev/console-board");
    ssh1.ok("echo hello-console > /dev/console-board");
    // The ends of the isolation: jail 2's uplink and board link.
    let o = run("ping", &["-c1", "-W2", &infos[1].ip.to_string()]);
    assert!(o.status.success(), "the host reaches jail 2: {}", text(&o));
    ssh1.fails(&format!("ping -c1 -W2 {}", infos[1].ip));
    ssh1.fails(&format!("timeout 3 bash -c 'echo > /dev/tcp/{}/22'", infos[1].ip));
    ssh1.fails(&format!("ping -c1 -W2 {}", plan2.board_addr));
    ssh1.fails(&format!("ping -c1 -W2 {}", plan2.gateway));
    // ... and the own board is reachable.
    ssh1.ok(&format!("ping -c1 -W2 {lease}"));
    let ssh2 = Ssh::new(&base, &key, &infos[1], "2", &settings.root_dir.join(&b2.name));
    assert_eq!(ssh2.ok("id -u"), "0");
    ssh2.fails(&format!("ping -c1 -W2 {}", infos[0].ip));
    ssh2.fails(&format!("ping -c1 -W2 {lease}"));
    // The init restarts a crashed service (after its 1 s back-off).
    let before = ssh2.ok("cat /run/dnsmasq.pid");
    ssh2.ok("kill -KILL $(cat /run/dnsmasq.pid)");
    std::thread::sleep(Duration::from_millis(1800));
    let after = ssh2.ok("grep -l '^dnsmasq$' /proc/[0-9]*/comm | cut -d/ -f3");
    assert!(!after.is_empty() && after != before, "dnsmasq restarted: before {before} after {after:?}");
    // The state survives serialisation (labd keeps it in SQLite) and a
    // running jail is adopted from it.
    let stored = serde_json::to_string(&world.jails[1]).unwrap();
    let adopted = Jail::adopt(serde_json::from_str(&stored).unwrap()).expect("alive after a round trip");
    assert_eq!(adopted, world.jails[1]);
    // The console bind reaches the host pty.
    let mut m = File::from(pty.master.try_clone().unwrap());
    let mut buf = [0u8; 256];
    let mut fds = [PollFd::new(pty.master.as_fd(), PollFlags::POLLIN)];
    assert!(poll(&mut fds, PollTimeout::from(2000u16)).unwrap() > 0);
    let n = m.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("hello-console"));

    // (3) NAT: a listener in an "internet" namespace sees the jail's IP
    // when the board connects to it.
    let inet_ip = format!("198.18.{r}.2");
    let host_ip = format!("198.18.{r}.1");
    for args in [
        vec!["netns", "add", &world.inet_ns],
        vec!["link", "add", &world.inet_host_if, "type", "veth", "peer", "name", "eth0", "netns", &world.inet_ns],
        vec!["addr", "add", &format!("{host_ip}/24"), "dev", &world.inet_host_if],
        vec!["link", "set", &world.inet_host_if, "up"],
        vec!["-n", &world.inet_ns, "addr", "add", &format!("{inet_ip}/24"), "dev", "eth0"],
        vec!["-n", &world.inet_ns, "link", "set", "eth0", "up"],
        vec!["-n", &world.inet_ns, "route", "add", "default", "via", &host_ip],
    ] {
        let o = run("ip", &args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>());
        assert!(o.status.success(), "ip {args:?}: {}", text(&o));
    }
    let state = labsim_state(&labdir);
    let board_ns = state[0].clone();
    let _ = run("ip", &["-n", &board_ns, "route", "replace", "default", "via", &plan1.board_addr.to_string()]);
    let mut listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &world.inet_ns,
            "socat",
            "-T5",
            "TCP-LISTEN:7777,reuseaddr",
            "SYSTEM:echo $SOCAT_PEERADDR",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let o = run("ip", &["netns", "exec", &board_ns, "socat", "-T5", "-", &format!("TCP:{inet_ip}:7777")]);
    let _ = listener.kill();
    let _ = listener.wait();
    assert!(o.status.success(), "board -> internet: {}", text(&o));
    // The board is masqueraded behind the jail, the jail behind the host.
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), host_ip, "seen source address");

    // (3b) stop and start (labd stop/start: destroy without wipe, create):
    // the nfsroot's file system is unmounted and detached in between and
    // keeps its files.
    ssh1.ok("printf kept > /nfsroot/keep.txt");
    let j1 = world.jails.remove(0);
    j1.destroy(false).expect("stop");
    assert_eq!(mount_of(&nfs1), None, "no nfsroot mount after stop");
    assert!(!losetup_has(&img1), "no loop device after stop");
    assert!(img1.is_file(), "the image stays on stop");
    let t = Instant::now();
    let (j, info) = Jail::create(&specs[0]).expect("start again");
    eprintln!("start again {}: {:?}", b1.name, t.elapsed());
    world.jails.insert(0, j);
    infos[0] = info;
    let ssh1 = Ssh::new(&base, &key, &infos[0], "1s", &settings.root_dir.join(&b1.name));
    assert_eq!(ssh1.ok("cat /nfsroot/keep.txt"), "kept");
    assert_eq!(std::fs::read_to_string(nfs1.join("keep.txt")).unwrap(), "kept");
    assert!(mount_of(&nfs1).is_some());

    // (4) destroy(wipe): nothing of jail 1 is left; the board link is back.
    let j1 = world.jails.remove(0);
    let pid = j1.init_pid;
    let t = Instant::now();
    j1.destroy(true).expect("destroy");
    eprintln!("destroy {}: {:?}", b1.name, t.elapsed());
    let Some(Network::Interface(host_if)) = &b1.network else { panic!() };
    assert!(Path::new("/sys/class/net").join(host_if).exists(), "board link {host_if} is back on the host");
    assert!(!Path::new("/run/netns").join(&plan1.netns).exists());
    assert!(!Path::new("/sys/class/net").join(&plan1.uplink_host).exists());
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || jail::proc_start_time(pid).is_none());
    let tables = String::from_utf8_lossy(&run("nft", &["list", "tables"]).stdout).into_owned();
    assert!(!tables.contains(&format!("{} ", plan1.nft_table)) && !tables.ends_with(&plan1.nft_table), "{tables}");
    assert!(!settings.root_dir.join(&b1.name).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(plan1.data_dir.to_str().unwrap()), "{mounts}");
    assert!(!losetup_has(&img1), "no loop device for {} after destroy", img1.display());
    assert!(mount_of(&plan2.data_dir.join("nfsroot")).is_some(), "jail 2's nfsroot stays");
    assert_eq!(ganesha_of(&plan1.data_dir), Vec::<i32>::new(), "no NFS server of jail 1 is left");
    assert!(!ganesha_of(&plan2.data_dir).is_empty(), "jail 2 still exports");

    // (5) reinit: create again on the returned link, with a new host key.
    let t = Instant::now();
    let (j, info) = Jail::create(&specs[0]).expect("re-create");
    eprintln!("re-create {}: {:?}", b1.name, t.elapsed());
    world.jails.insert(0, j);
    assert_ne!(info.known_hosts, infos[0].known_hosts, "a fresh host key");
    let ssh1b = Ssh::new(&base, &key, &info, "1b", &settings.root_dir.join(&b1.name));
    assert_eq!(ssh1b.ok("id -u"), "0");
    ssh1b.fails("test -e /nfsroot/keep.txt");
    assert_eq!(ssh1b.ok("ls -A /nfsroot"), "", "a wiped claim starts with an empty nfsroot");
    assert_eq!(ssh1.run("true").status.code(), Some(255), "the old known_hosts line no longer matches");
    // The board boots again from the new jail.
    let o = run("snmpset", &["-v2c", "-c", "private", &snmp, &format!("{ADMIN_ENABLE}.{}", b1.port), "i", "2"]);
    assert!(o.status.success());
    std::thread::sleep(Duration::from_millis(200));
    serial.seen.clear();
    std::fs::write(settings.root_dir.join(&b1.name).join("tftpboot/boot.scr"), "again\n").unwrap();
    // This time the claimant puts the file in place, as jail root.
    ssh1b.ok("printf 'written in the jail\\n' > /nfsroot/hello.txt");
    let o = run("snmpset", &["-v2c", "-c", "private", &snmp, &format!("{ADMIN_ENABLE}.{}", b1.port), "i", "1"]);
    assert!(o.status.success());
    assert!(serial.read_until("TFTP: fetched boot.scr", Duration::from_secs(20)), "serial: {}", serial.text());
    assert!(serial.read_until("NFS: ", Duration::from_secs(15)), "serial: {}", serial.text());
    assert!(serial.read_until("=> ", Duration::from_secs(5)), "serial: {}", serial.text());
    assert!(serial.text().contains("NFS: read /nfsroot/hello.txt (20 bytes)"), "serial: {}", serial.text());

    // Finally destroy both and check the host is clean.
    for j in std::mem::take(&mut world.jails) {
        let t = Instant::now();
        let b = j.plan.board.clone();
        j.destroy(true).expect("destroy");
        eprintln!("destroy {b}: {:?}", t.elapsed());
    }
    let netns = String::from_utf8_lossy(&run("ip", &["netns", "list"]).stdout).into_owned();
    assert!(!netns.contains(&plan1.netns) && !netns.contains(&plan2.netns), "{netns}");
    assert_eq!(ganesha_of(&plan1.data_dir), Vec::<i32>::new());
    assert_eq!(ganesha_of(&plan2.data_dir), Vec::<i32>::new());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(settings.root_dir.to_str().unwrap()), "{mounts}");
    assert!(!losetup_has(&img1) && !losetup_has(&jail::disk::state_dir(&plan2.data_dir).join("nfsroot.img")));
    for p in [&plan1, &plan2] {
        assert!(!losetup_has(&jail::disk::state_dir(&p.data_dir).join("data.img")), "no data loop device left");
    }
}

/// File system type and source of the mount on `dir` (host's view), from
/// /proc/self/mountinfo.
fn mount_of(dir: &Path) -> Option<(String, String)> {
    let want = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.get(4) != Some(&want) {
            return None;
        }
        let dash = f.iter().position(|x| *x == "-")?;
        Some((f.get(dash + 1)?.to_string(), f.get(dash + 2)?.to_string()))
    })
}

/// Whether `losetup -a` lists a loop device backed by `img`.
fn losetup_has(img: &Path) -> bool {
    let o = run("losetup", &["-a"]);
    String::from_utf8_lossy(&o.stdout).contains(&format!("({})", img.display()))
}

/// PIDs of ganesha.nfsd processes started for the jail with this data
/// directory (their configuration is under it).
fn ganesha_of(data_dir: &Path) -> Vec<i32> {
    let needle = jail::disk::state_dir(data_dir).to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("ganesha.nfsd") && cmd.contains(&needle)
        })
        .collect()
}

/// Board netns names from labsim's state file, in port order.
fn labsim_state(dir: &Path) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("labsim.json")).unwrap()).unwrap();
    v["boards"].as_array().unwrap().iter().map(|b| b["netns"].as_str().unwrap().to_string()).collect()
}
