//! End-to-end tests of `labsim` against the real things: net-snmp's snmpd
//! and CLI tools, ptys, network namespaces and dnsmasq. They need root; run
//! as another user they fail saying so.

#[path = "common/bins.rs"]
mod bins;
#[path = "common/need_root.rs"]
mod need_root;
#[path = "common/serial.rs"]
mod serial;
use serial::Serial;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bins::labsim_exe;
const ADMIN_ENABLE: &str = ".1.3.6.1.2.1.105.1.1.1.3.1";

fn labsim(args: &[&str]) -> Output {
    Command::new(labsim_exe()).args(args).output().expect("run labsim")
}

fn text(o: &Output) -> String {
    format!(
        "status {} stdout {:?} stderr {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A lab that is taken down when the test ends, passed or failed.
struct Lab {
    dir: PathBuf,
    _parent: tempfile::TempDir,
    state: serde_json::Value,
}

impl Lab {
    fn up(extra: &[&str]) -> Lab {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("lab");
        let d = dir.to_str().expect("utf-8 path").to_string();
        let mut args = vec!["up", "--dir", &d];
        args.extend_from_slice(extra);
        let out = labsim(&args);
        // Build the guard first so a failed `up` is still cleaned up.
        let mut lab = Lab { dir, _parent: parent, state: serde_json::Value::Null };
        assert!(out.status.success(), "labsim up: {}", text(&out));
        let json = std::fs::read_to_string(lab.dir.join("labsim.json")).expect("labsim.json");
        lab.state = serde_json::from_str(&json).expect("state json");
        lab
    }

    fn d(&self) -> &str {
        self.dir.to_str().unwrap_or("")
    }

    fn snmp(&self) -> String {
        format!("127.0.0.1:{}", self.state["snmp_port"])
    }

    fn board(&self, i: usize) -> &serde_json::Value {
        &self.state["boards"][i]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = labsim(&["down", "--dir", self.d()]);
        if !out.status.success() {
            eprintln!("labsim down failed: {}", text(&out));
        }
    }
}

fn snmpget(lab: &Lab, port: u32) -> Output {
    Command::new("snmpget")
        .args(["-v2c", "-c", "public", "-t", "0.5", "-r", "0", "-Oqv", &lab.snmp(), &format!("{ADMIN_ENABLE}.{port}")])
        .env("MIBS", "")
        .output()
        .expect("run snmpget")
}

fn snmpset(lab: &Lab, port: u32, value: &str) -> Output {
    Command::new("snmpset")
        .args([
            "-v2c",
            "-c",
            "private",
            "-t",
            "1",
            "-r",
            "1",
            &lab.snmp(),
            &format!("{ADMIN_ENABLE}.{port}"),
            "i",
            value,
        ])
        .env("MIBS", "")
        .output()
        .expect("run snmpset")
}

fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').map(|(_, r)| !r.trim_start().starts_with('Z')).unwrap_or(false))
        .unwrap_or(false)
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["up", "--dir", "/tmp/x"][..],
        &["frobnicate", "--dir", "/x"][..],
        &["switch", "--dir", "/x", "reboot"][..],
        &["power", "--dir", "/x"][..],
    ] {
        let out = labsim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Usage: labsim") || err.contains("--help"), "{args:?}: {err}");
    }
    // Help and version need no --dir.
    for args in [&["--help"][..], &["-h"], &["up", "--help"], &["help", "power"], &["--version"]] {
        let out = labsim(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("labsim"), "{args:?}");
    }
}

#[test]
fn lab_power_serial_switch_outage_and_down() {
    need_root::require_root();
    let lab = Lab::up(&["--boards", "2", "--classes", "rockpro64,pine64"]);
    let dir = lab.dir.clone();
    let cfg = boardlab::config::Config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = cfg.boards.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["pine64-1", "rockpro64-1"]);

    // A second `up` on the same directory is refused.
    let again = labsim(&["up", "--dir", lab.d(), "--boards", "1"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a lab"));

    let link = dir.join("tty/rockpro64-1");
    assert!(std::fs::read_link(&link).expect("tty symlink").starts_with("/dev/pts"));
    let mut serial = Serial::open(&link);

    let out = snmpget(&lab, 1);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2", "{}", text(&out));
    let out = snmpset(&lab, 1, "1");
    assert!(out.status.success(), "snmpset: {}", text(&out));
    let out = labsim(&["power", "--dir", lab.d(), "rockpro64-1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "on\n", "{}", text(&out));
    let out = labsim(&["power", "--dir", lab.d(), "pine64-1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "off\n", "{}", text(&out));
    let out = labsim(&["power", "--dir", lab.d(), "nosuch-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown board"));

    // Bad sets are refused by the switch.
    assert!(!snmpset(&lab, 2, "3").status.success());
    assert!(!snmpset(&lab, 3, "1").status.success());

    assert!(serial.read_until(b"DHCP: no DHCP offer\r\n=> ", Duration::from_secs(10)), "{:?}", serial.take());
    let boot = serial.take();
    assert!(boot.contains("boardlab-sim U-Boot 2024.01 (rockpro64-1)"), "{boot:?}");

    // Byte-transparent echo, then the prompt answers on CR.
    let bytes: Vec<u8> = vec![0x00, 0x01, 0x7e, 0x80, 0xfe, 0xff, b'q'];
    serial.send(&bytes);
    assert!(serial.read_until(&bytes, Duration::from_secs(2)), "{:?}", serial.seen);
    serial.take();
    // The echoed bytes form a (nonsense) command line; end it first.
    serial.send(b"\r");
    assert!(serial.read_until(b"try 'help'\r\n=> ", Duration::from_secs(2)), "{:?}", serial.take());
    serial.take();
    serial.send(b"help\r");
    assert!(serial.read_until(b"version\r\n=> ", Duration::from_secs(2)), "{:?}", serial.take());
    serial.take();

    // Powered off: silence, no echo.
    assert!(snmpset(&lab, 1, "2").status.success());
    std::thread::sleep(Duration::from_millis(300));
    serial.take();
    serial.send(b"abc\r");
    serial.read_until(b"", Duration::from_millis(500));
    assert!(serial.seen.is_empty(), "output while off: {:?}", serial.take());

    // Switch outage: no answers, then back with port state kept.
    assert!(snmpset(&lab, 2, "1").status.success());
    let out = labsim(&["switch", "--dir", lab.d(), "stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!snmpget(&lab, 1).status.success());
    let out = labsim(&["power", "--dir", lab.d(), "pine64-1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not answer"));
    let out = labsim(&["switch", "--dir", lab.d(), "start"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&snmpget(&lab, 2).stdout).trim(), "1");
    assert_eq!(String::from_utf8_lossy(&labsim(&["power", "--dir", lab.d(), "rockpro64-1"]).stdout), "off\n");

    // Hot-plug of the serial adapter.
    drop(serial);
    let out = labsim(&["unplug", "--dir", lab.d(), "rockpro64-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(link.symlink_metadata().is_err());
    let out = labsim(&["plug", "--dir", lab.d(), "rockpro64-1"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut serial = Serial::open(&link);
    assert!(snmpset(&lab, 1, "1").status.success());
    assert!(serial.read_until(b"(rockpro64-1)", Duration::from_secs(5)), "{:?}", serial.take());
    drop(serial);

    // Down removes everything it made.
    let mut pids: Vec<i64> =
        lab.state["boards"].as_array().expect("boards").iter().filter_map(|b| b["pid"].as_i64()).collect();
    pids.extend(lab.state["snmpd_pid"].as_i64());
    assert_eq!(pids.len(), 3);
    let netns: Vec<String> = (0..2).filter_map(|i| lab.board(i)["netns"].as_str().map(String::from)).collect();
    let hosts: Vec<String> = (0..2).filter_map(|i| lab.board(i)["host_if"].as_str().map(String::from)).collect();
    assert_eq!((netns.len(), hosts.len()), (2, 2));
    let out = labsim(&["down", "--dir", lab.d()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dir.exists(), "lab directory left behind");
    for ns in &netns {
        assert!(!Path::new("/run/netns").join(ns).exists(), "netns {ns} left");
    }
    for h in &hosts {
        assert!(!Path::new("/sys/class/net").join(h).exists(), "veth {h} left");
    }
    for p in pids {
        assert!(!pid_alive(p), "process {p} left");
    }
    // Idempotent.
    let out = labsim(&["down", "--dir", lab.d()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// dnsmasq in the host namespace, stopped by PID when dropped.
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn board_gets_lease_and_boot_file_from_dnsmasq() {
    need_root::require_root();
    let lab = Lab::up(&["--boards", "1"]);
    let host_if = lab.board(0)["host_if"].as_str().expect("host_if").to_string();
    let netns = lab.board(0)["netns"].as_str().expect("netns").to_string();
    let mut r = [0u8; 1];
    getrandom::getrandom(&mut r).expect("random");
    let net = format!("10.213.{}", r[0].clamp(1, 254));
    let ip = Command::new("ip").args(["addr", "add", &format!("{net}.1/24"), "dev", &host_if]).output().expect("ip");
    assert!(ip.status.success(), "{}", text(&ip));

    let tftp = tempfile::tempdir().expect("tempdir");
    let content: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(tftp.path().join("boot.scr"), &content).expect("boot.scr");
    use sha2::{Digest, Sha256};
    let sha: String = Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    let p = |name: &str| tftp.path().join(name).to_string_lossy().into_owned();
    let child = Command::new("dnsmasq")
        .args([
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=0",
            "-k",
            "--no-ping",
            "--bind-interfaces",
            "--user=root",
            &format!("--interface={host_if}"),
            &format!("--dhcp-range={net}.50,{net}.99,255.255.255.0,1h"),
            "--enable-tftp",
            &format!("--tftp-root={}", tftp.path().display()),
            "--dhcp-boot=boot.scr",
            &format!("--dhcp-leasefile={}", p("leases")),
            &format!("--pid-file={}", p("dnsmasq.pid")),
            &format!("--log-facility={}", p("dnsmasq.log")),
            "--log-dhcp",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    let _dnsmasq = Dnsmasq(child);
    let start = Instant::now();
    while !tftp.path().join("dnsmasq.pid").exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut serial = Serial::open(&lab.dir.join("tty/rockpro64-1"));
    assert!(snmpset(&lab, 1, "1").status.success());
    let want = format!("TFTP: fetched boot.scr (3000 bytes, sha256 {sha})\r\n=> ");
    let ok = serial.read_until(want.as_bytes(), Duration::from_secs(15));
    let log = std::fs::read_to_string(tftp.path().join("dnsmasq.log")).unwrap_or_default();
    let seen = serial.take();
    assert!(ok, "serial: {seen:?}\ndnsmasq log:\n{log}");
    assert!(seen.contains(&format!("DHCP: lease {net}.")), "{seen:?}");
    assert!(seen.contains(&format!(" from {net}.1\r\n")), "{seen:?}");

    let addr = || {
        let o =
            Command::new("ip").args(["-n", &netns, "-4", "-o", "addr", "show", "dev", "eth0"]).output().expect("ip");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(addr().contains(&format!("{net}.")), "{}", addr());
    // Power-off drops the lease at once.
    assert!(snmpset(&lab, 1, "2").status.success());
    let start = Instant::now();
    while addr().contains(&format!("{net}.")) && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(!addr().contains(&format!("{net}.")), "lease kept after power-off: {}", addr());
}
