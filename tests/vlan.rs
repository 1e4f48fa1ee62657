//! A VLAN board (`network = { vlan, trunk }`) end to end, where the kernel
//! has 802.1Q: `labd selftest` makes the board's VLAN link on its trunk
//! with the commands a jail uses, hears the board's DHCP request on it
//! (and not another VLAN's), and removes the link again. The trunk is a
//! veth whose other end, in a namespace, carries VLANs 101 and 102 like
//! a switch port; the test sends the board's DHCPDISCOVER there.
//!
//! Where the kernel cannot make VLAN links (no 8021q module), the test
//! says so on stderr as `SKIPPED ...` with the reason, past the test
//! harness's capture, and checks nothing more: only the unit tests of the
//! VLAN link's `ip` arguments have run then.

mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Lab, LABD};

fn ip(args: &[&str]) -> Result<String, String> {
    let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!("`ip {}`: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()))
    }
}

/// Whether this kernel makes 802.1Q links, tried in a throwaway namespace.
fn vlan_support() -> Result<(), String> {
    let ns = format!("blvp{}", std::process::id());
    ip(&["netns", "add", &ns])?;
    let r = ip(&["-n", &ns, "link", "add", "bltk", "type", "veth", "peer", "name", "bltkp"])
        .and_then(|_| ip(&["-n", &ns, "link", "add", "link", "bltk", "name", "bltk.7", "type", "vlan", "id", "7"]));
    let _ = ip(&["netns", "del", &ns]);
    r.map(|_| ())
}

/// The trunk and the switch side, removed when dropped.
struct Trunk {
    host: String,
    ns: String,
}

impl Drop for Trunk {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["link", "del", "dev", &self.host]);
    }
}

/// A DHCPDISCOVER from `mac`, as a board's UDP payload.
fn discover(mac: [u8; 6]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[..4].copy_from_slice(&[1, 1, 6, 0]);
    b[4..8].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    b[28..34].copy_from_slice(&mac);
    b.extend([99, 130, 83, 99, 53, 1, 1, 255]);
    b
}

/// Sends the board's DHCPDISCOVER on `dev` in namespace `ns` every 200 ms
/// until `stop`.
fn board_sends(ns: &str, dev: &str, mac: [u8; 6], stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (ns, dev) = (ns.to_string(), dev.to_string());
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind("0.0.0.0:68").unwrap();
        s.set_broadcast(true).unwrap();
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::BindToDevice, &std::ffi::OsString::from(&dev))
            .unwrap();
        while !stop.load(Ordering::SeqCst) {
            let _ = s.send_to(&discover(mac), "255.255.255.255:67");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

fn mac_of(ns: &str, dev: &str) -> ([u8; 6], String) {
    let j: serde_json::Value =
        serde_json::from_str(&ip(&["-n", ns, "-j", "link", "show", "dev", dev]).unwrap()).unwrap();
    let text = j[0]["address"].as_str().unwrap().to_string();
    let mut mac = [0u8; 6];
    for (m, h) in mac.iter_mut().zip(text.split(':')) {
        *m = u8::from_str_radix(h, 16).unwrap();
    }
    (mac, text)
}

#[test]
fn a_vlan_board_is_heard_on_its_vlan_of_the_trunk() {
    common::need_root::require_root();
    if let Err(why) = vlan_support() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED vlan::a_vlan_board_is_heard_on_its_vlan_of_the_trunk: this kernel cannot make 802.1Q \
             links ({why}); only the unit tests of the VLAN link's ip arguments ran"
        );
        return;
    }
    let id = std::process::id() % 100_000;
    let trunk = Trunk { host: format!("bltk{id}"), ns: format!("blvs{id}") };
    ip(&["netns", "add", &trunk.ns]).unwrap();
    ip(&["link", "add", &trunk.host, "type", "veth", "peer", "name", "trunk", "netns", &trunk.ns]).unwrap();
    ip(&["link", "set", "dev", &trunk.host, "up"]).unwrap();
    ip(&["-n", &trunk.ns, "link", "set", "dev", "trunk", "up"]).unwrap();
    for vid in ["101", "102"] {
        let dev = format!("trunk.{vid}");
        ip(&["-n", &trunk.ns, "link", "add", "link", "trunk", "name", &dev, "type", "vlan", "id", vid]).unwrap();
        ip(&["-n", &trunk.ns, "addr", "add", &format!("10.{vid}.0.2/24"), "dev", &dev]).unwrap();
        ip(&["-n", &trunk.ns, "link", "set", "dev", &dev, "up"]).unwrap();
    }
    let mut lab = Lab::create(1, "rockpro64", &["--no-net"], |t| t);
    let board_file = lab.path().join("boards.d/rockpro64-1.toml");
    let mut text = std::fs::read_to_string(&board_file).unwrap();
    text.push_str(&format!("network = {{ vlan = 101, trunk = \"{}\" }}\n", trunk.host));
    std::fs::write(&board_file, text).unwrap();
    lab.start_labd();
    lab.wait_for(Duration::from_secs(20), "the board ready", || lab.board("rockpro64-1")["state"] == "available");

    let selftest = |vid: &str| {
        let (mac, text) = mac_of(&trunk.ns, &format!("trunk.{vid}"));
        let stop = Arc::new(AtomicBool::new(false));
        let sender = board_sends(&trunk.ns, &format!("trunk.{vid}"), mac, stop.clone());
        let o = Command::new(LABD)
            .arg("--config")
            .arg(lab.path())
            .args(["selftest", "rockpro64-1", "--wait", "4"])
            .output()
            .unwrap();
        stop.store(true, Ordering::SeqCst);
        sender.join().unwrap();
        let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        println!("board on VLAN {vid}:\n{out}");
        (o.status.code(), out, text)
    };
    // The board on its own VLAN: heard on the link labd made for it.
    let (status, out, mac) = selftest("101");
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains(&format!("DHCPDISCOVER from {mac} on blst101")), "{out}");
    assert!(!std::path::Path::new("/sys/class/net/blst101").exists(), "the test's VLAN link is removed after it");
    let parked = Command::new("nft").args(["list", "set", "inet", "boardlab_links", "parked"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&parked.stdout).contains("blst101"), "and out of the host's parked set");
    // A request on another VLAN of the same trunk is not the board's.
    let (status, out, _) = selftest("102");
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("no DHCP request on blst101") && out.contains("FAIL at dhcp"), "{out}");
    assert!(!std::path::Path::new("/sys/class/net/blst101").exists());
}
