//! Attacks on the IPv6 of the jails (issue 12) and on their SSH host
//! certificates, as the claimant would make them: root in the jail (raw
//! sockets, its own addresses, routes and tunnels) and in control of the
//! board. Each test asserts that the attack gets nowhere and that the lab
//! is whole afterwards (the victim's jail answers, nothing is left).
//!
//! Packets are made by a small Python tool ([`PKT`]) run inside the jail
//! over ssh as its root (or, for the board, inside the board's network
//! namespace); what arrives is seen by sniffers (a packet socket) in the
//! namespaces of the would-be victims, looking for a marker that only the
//! attack's packets carry.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::jails::{board_link, jail_lab, leftovers, netns_list, one_at_a_time, sh, JailNet, Listener, Login, Net};
use common::*;
use ipnet::Ipv6Net;
use serde_json::{json, Value};

#[path = "jail_v6_attacks/packets.rs"]
mod packets;
use packets::*;

fn claim(lab: &Lab, user: &str) -> Value {
    let r = lab.as_user(user, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    ok(&r).clone()
}

fn release(lab: &Lab, user: &str, c: &Value) {
    ok(&lab.as_user(user, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
}

fn prefix_of(c: &Value) -> Ipv6Net {
    c["jail"]["board_prefix"].as_str().unwrap_or_else(|| panic!("no board_prefix in {c}")).parse().unwrap()
}

fn addr_in(p: &Ipv6Net, low: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(p.network()) | low)
}

/// The network namespace of `board`'s jail.
fn jail_ns(board: &str) -> String {
    netns_list()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|n| n.starts_with("blj") && n.ends_with(&format!("-{board}")))
        .unwrap_or_else(|| panic!("no jail namespace for {board}"))
        .to_string()
}

/// The host's end of the claim's uplink: where its /64 is routed.
fn uplink_of(c: &Value) -> String {
    let p = prefix_of(c).to_string();
    let o = sh(&["ip", "-6", "-j", "route", "show", &p]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v[0]["dev"].as_str().unwrap_or_else(|| panic!("no route to {p}: {v}")).to_string()
}

/// Two jailed claims (alice's, the attacker's, and bob's, the victim's)
/// with IPv6, and an "internet" the jails' traffic leaves by: `inet`
/// (IPv6, the NAT interface, with a denied /64 on it) and `far` (IPv4,
/// denied). Tear-down order: the lab, then the networks.
struct V6Lab {
    lab: Lab,
    net: &'static JailNet,
    a: Value,
    b: Value,
    la: Login,
    inet: Net,
    far: Net,
    /// Addresses in `inet`: allowed, denied; in `far` (denied).
    inet_ok: &'static str,
    inet_denied: &'static str,
    far_addr: &'static str,
}

/// Addresses of one test's networks (each test its own).
struct Nets {
    net: &'static JailNet,
    pool: &'static str,
    tag: &'static str,
    /// The host's end and the far end of `inet` (a /48), its denied /64's
    /// far address.
    inet_host: &'static str,
    inet_ok: &'static str,
    inet_denied: &'static str,
    denied64: &'static str,
    /// IPv4: the host's end and the far end, a /24.
    far_host: &'static str,
    far_addr: &'static str,
    far24: &'static str,
}

fn v6_lab(n: &Nets) -> V6Lab {
    let inet = Net::new(
        &format!("{}i", n.tag),
        &format!("{}/48", n.inet_host),
        &[&format!("{}/48", n.inet_ok), &format!("{}/48", n.inet_denied)],
        n.inet_host,
    );
    let far =
        Net::new(&format!("{}f", n.tag), &format!("{}/24", n.far_host), &[&format!("{}/24", n.far_addr)], n.far_host);
    let extra = format!(
        "nat_interface = \"{}\"\nipv6_pool = \"{}\"\ndeny_out = [\"{}\", \"{}\"]",
        inet.host_if, n.pool, n.denied64, n.far24
    );
    let mut lab = jail_lab(2, "rockpro64", n.net, &extra, "");
    lab.start_labd();
    let a = claim(&lab, ALICE);
    let b = claim(&lab, BOB);
    let la = Login::new(lab.path(), ALICE, &a["jail"], &format!("{}a", n.tag));
    la.ok("true");
    V6Lab { lab, net: n.net, a, b, la, inet, far, inet_ok: n.inet_ok, inet_denied: n.inet_denied, far_addr: n.far_addr }
}

impl V6Lab {
    /// The lab is whole: bob's jail answers over IPv6 and IPv4, alice's
    /// too; both claims end; nothing of the jails is left.
    fn whole_and_gone(self, tag: &str) {
        let V6Lab { lab, net, a, b, la, inet, far, .. } = self;
        Login::over_ipv6(lab.path(), BOB, &b, &format!("{tag}b6")).ok("true");
        Login::new(lab.path(), BOB, &b["jail"], &format!("{tag}b4")).ok("true");
        la.ok("true");
        release(&lab, ALICE, &a);
        release(&lab, BOB, &b);
        let s = lab.req(json!({"fn": "status"}));
        assert!(ok(&s).as_array().unwrap().iter().all(|x| x["state"] == "available"), "{s}");
        let dir = lab.path().to_path_buf();
        drop(lab);
        let left = leftovers(&dir, net.uid_base, 2);
        assert!(left.is_empty(), "left behind: {left:#?}");
        drop((inet, far));
    }
}

/// Spoofed sources: alice's jail sends with addresses that are not its
/// own. It must not reach a socket of the host through a flow the host
/// has open (conntrack calls the forged reply "established", which the
/// input chain lets in), nor make the host answer or complain on its
/// behalf to someone else: a ping of the host's `fe80::1` or gateway, or
/// a packet whose hop limit ends at the host (its "time exceeded" is sent
/// before the forward chain ever sees the packet) must not bring anything
/// to bob's jail, a denied prefix or the outside.
#[test]
fn spoofed_sources_from_a_jail_reach_no_host_socket_and_no_one_else() {
    let _turn = one_at_a_time();
    static NET: JailNet = JailNet { pool: "10.201.0.0/24", board_net: "172.21.0.0/20", uid_base: 11_000_000 };
    let v = v6_lab(&Nets {
        net: &NET,
        pool: "2001:db8:4400::/48",
        tag: "v6s",
        inet_host: "fd6c:1::1",
        inet_ok: "fd6c:1::2",
        inet_denied: "fd6c:1:0:9::2",
        denied64: "fd6c:1:0:9::/64",
        far_host: "10.201.250.1",
        far_addr: "10.201.250.2",
        far24: "10.201.250.0/24",
    });
    let pb = prefix_of(&v.b);
    let b_ns = jail_ns(v.b["board"].as_str().unwrap());
    let b_ip4 = v.b["jail"]["ip"].as_str().unwrap().to_string();
    let a_gw4 = {
        // The jail's gateway: its default route.
        let r = v.la.ok("ip -4 route show default");
        r.split_whitespace().nth(2).unwrap().to_string()
    };
    let mut breaches: Vec<String> = Vec::new();

    // 1. Into the host's own flows: a UDP socket of the host talking to
    //    the outside, and a forged answer from the jail.
    let flows: [(&str, &str, IpAddr, &str); 2] = [
        ("v6", &v.inet.ns, "fd6c:1::1".parse().unwrap(), v.inet_ok),
        ("v4", &v.far.ns, "10.201.250.1".parse().unwrap(), v.far_addr),
    ];
    for (tag, ns, host_addr, remote) in flows {
        let far_end = Listener::in_netns(Some(ns), remote.parse().unwrap());
        let sock = UdpSocket::bind((host_addr, 0)).unwrap();
        sock.connect((remote.parse::<IpAddr>().unwrap(), far_end.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        sock.send(b"hello").unwrap();
        let cport = sock.local_addr().unwrap().port();
        let m = marker("flow");
        let cmd = if tag == "v6" {
            format!("udp6 {remote} {} {host_addr} {cport} {m} 64 -", far_end.port)
        } else {
            format!("udp4 {remote} {} {host_addr} {cport} {m} 64", far_end.port)
        };
        jail_pkt(&v.la, &cmd);
        let mut buf = [0u8; 256];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(1) {
            if let Ok(n) = sock.recv(&mut buf) {
                if buf[..n].windows(m.len()).any(|w| w == m.as_bytes()) {
                    breaches.push(format!("a forged {tag} datagram from [{remote}] reached the host's socket"));
                }
            }
        }
        assert!(!far_end.hits().is_empty(), "control: the host's flow to {remote} works");
    }

    // 2. Reflections: the host answering, or complaining, to an address
    //    alice's jail made up.
    let m = marker("refl");
    let secs = 6;
    let sniffers = vec![
        Sniffer::start(&b_ns, secs, &m, "bob's jail"),
        Sniffer::start(&v.inet.ns, secs, &m, "the outside (allowed and denied)"),
        Sniffer::start(&v.far.ns, secs, &m, "a denied IPv4 network"),
    ];
    let b1 = addr_in(&pb, 1);
    let b_other = addr_in(&pb, 0x4242);
    for victim in [b1.to_string(), b_other.to_string(), v.inet_denied.to_string(), v.inet_ok.to_string()] {
        jail_pkt(&v.la, &format!("echo6 {victim} fe80::1 {m} uplink"));
        jail_pkt(&v.la, &format!("udp6 {victim} 4000 {} 4000 {m} 1 uplink", v.inet_ok));
        jail_pkt(&v.la, &format!("udp6 {victim} 4000 {} 4000 {m} 64 uplink", v.inet_ok));
    }
    for victim in [b_ip4.as_str(), v.far_addr] {
        jail_pkt(&v.la, &format!("echo4 {victim} {a_gw4} {m}"));
        jail_pkt(&v.la, &format!("udp4 {victim} 4000 {} 4000 {m} 1", v.far_addr));
    }
    for s in sniffers {
        breaches.extend(s.hits());
    }
    assert!(breaches.is_empty(), "spoofed sources got through:\n{}", breaches.join("\n"));
    v.whole_and_gone("v6s");
}

/// Neighbour discovery and router advertisements up the uplink: the
/// host must not take a route, an address or a redirect from a jail, nor
/// let a jail fill its neighbour table (one table for every interface:
/// when full, the host resolves no neighbour anywhere).
#[test]
fn neighbour_discovery_from_a_jail_moves_no_route_and_fills_no_table() {
    let _turn = one_at_a_time();
    static NET: JailNet = JailNet { pool: "10.201.1.0/24", board_net: "172.21.16.0/20", uid_base: 11_300_000 };
    let v = v6_lab(&Nets {
        net: &NET,
        pool: "2001:db8:4401::/48",
        tag: "v6n",
        inet_host: "fd6c:2::1",
        inet_ok: "fd6c:2::2",
        inet_denied: "fd6c:2:0:9::2",
        denied64: "fd6c:2:0:9::/64",
        far_host: "10.201.251.1",
        far_addr: "10.201.251.2",
        far24: "10.201.251.0/24",
    });
    let (pa, pb) = (prefix_of(&v.a), prefix_of(&v.b));
    let (up_a, up_b) = (uplink_of(&v.a), uplink_of(&v.b));
    let routes_before = String::from_utf8_lossy(&sh(&["ip", "-6", "route", "show", "table", "all"]).stdout).to_string();
    let mut breaches: Vec<String> = Vec::new();

    // Router advertisements (to all nodes and to the host), a redirect of
    // bob's /64, and neighbour solicitations from 300 made-up sources:
    // link-local ones, alice's own /64's, bob's, the outside's.
    let rogue: Ipv6Net = "fd6c:99::/64".parse().unwrap();
    for dst in ["ff02::1", "fe80::1"] {
        jail_pkt(&v.la, &format!("ra6 fe80::2 {dst} uplink {} {}", rogue.network(), pb.network()));
        jail_pkt(&v.la, &format!("redirect6 fe80::2 {dst} uplink fe80::2 {}", addr_in(&pb, 1)));
    }
    let sources = [
        ("fe80::1:0".to_string(), 100),
        (addr_in(&pa, 0x1_0000).to_string(), 100),
        (addr_in(&pb, 0x1_0000).to_string(), 50),
        ("fd6c:2::100".to_string(), 50),
    ];
    for (first, n) in &sources {
        jail_pkt(&v.la, &format!("ns6 {first} {n} fe80::1 ff02::1:ff00:1 uplink"));
    }
    std::thread::sleep(Duration::from_millis(500));
    let neigh = String::from_utf8_lossy(&sh(&["ip", "-6", "neigh", "show", "dev", &up_a]).stdout).to_string();
    let entries: Vec<&str> = neigh.lines().filter(|l| !l.trim().is_empty()).collect();
    if entries.len() > 4 {
        breaches.push(format!(
            "alice's jail made {} neighbour entries on the host's {up_a} (of {} solicitations), e.g. {:?}",
            entries.len(),
            sources.iter().map(|s| s.1).sum::<u32>(),
            &entries[..entries.len().min(3)]
        ));
    }
    let addrs = String::from_utf8_lossy(&sh(&["ip", "-6", "addr", "show"]).stdout).to_string();
    if addrs.contains("fd6c:99:") {
        breaches.push(format!("the host took an address from alice's advertisement:\n{addrs}"));
    }
    let routes = String::from_utf8_lossy(&sh(&["ip", "-6", "route", "show", "table", "all"]).stdout).to_string();
    for l in routes.lines() {
        if l.contains(&up_a) && !routes_before.lines().any(|b| b == l) {
            breaches.push(format!("a new host route through alice's uplink: {l}"));
        }
    }
    for target in [addr_in(&pb, 1), addr_in(&pb, 7)] {
        let r = String::from_utf8_lossy(&sh(&["ip", "-6", "route", "get", &target.to_string()]).stdout).to_string();
        if !r.contains(&format!("dev {up_b}")) {
            breaches.push(format!("bob's {target} is no longer routed to his uplink {up_b}: {r}"));
        }
    }
    // Cleaned up whatever the attack made, whether it held or not (the
    // neighbour entries go with the link anyway).
    let _ = sh(&["ip", "-6", "neigh", "flush", "dev", &up_a]);
    assert!(breaches.is_empty(), "neighbour discovery from a jail:\n{}", breaches.join("\n"));
    v.whole_and_gone("v6n");
}

/// The host itself over IPv6, every way a jail's root might try: its
/// `fe80::1` on the uplink, all-nodes and all-routers multicast, its
/// address on another network, an IPv4-mapped address, with extension
/// headers and fragments, through IPv4-in-IPv6 and IPv6-in-IPv4 tunnels;
/// and from alice's board (which she controls), with her jail's address
/// as the source, to the host and to bob. Only ping of `fe80::1` works.
#[test]
fn the_host_is_out_of_reach_over_ipv6_from_jail_and_board() {
    let _turn = one_at_a_time();
    static NET: JailNet = JailNet { pool: "10.201.2.0/24", board_net: "172.21.32.0/20", uid_base: 11_600_000 };
    let v = v6_lab(&Nets {
        net: &NET,
        pool: "2001:db8:4402::/48",
        tag: "v6h",
        inet_host: "fd6c:3::1",
        inet_ok: "fd6c:3::2",
        inet_denied: "fd6c:3:0:9::2",
        denied64: "fd6c:3:0:9::/64",
        far_host: "10.201.252.1",
        far_addr: "10.201.252.2",
        far24: "10.201.252.0/24",
    });
    let (pa, pb) = (prefix_of(&v.a), prefix_of(&v.b));
    let a1 = addr_in(&pa, 1);
    let b_ns = jail_ns(v.b["board"].as_str().unwrap());
    // Listeners on every address of the host (UDP and TCP, both
    // families), and in bob's jail.
    let host = Listener::new(IpAddr::from([0u16; 8]));
    let bob = Listener::in_netns(Some(&b_ns), IpAddr::V6(addr_in(&pb, 1)));
    let p = host.port;
    let gw4 = v.la.ok("ip -4 route show default").split_whitespace().nth(2).unwrap().to_string();

    // Control: ping of fe80::1 is allowed.
    v.la.ok("ping -6 -c 1 -W 2 fe80::1%uplink");
    let socat = |dst: &str| {
        format!(
            "echo v6 | timeout 3 socat -u - UDP6-SENDTO:[{dst}]:{p}; timeout 3 socat -u OPEN:/etc/hostname TCP6:[{dst}]:{p},connect-timeout=1;"
        )
    };
    let mut script = String::new();
    for dst in ["fe80::1%uplink", "ff02::1%uplink", "ff02::2%uplink", "fd6c:3::1", &format!("::ffff:{gw4}")] {
        script.push_str(&socat(dst));
    }
    let _ = v.la.run(&script);
    let m = marker("host");
    for how in ["", "hbh", "frag"] {
        for dst in ["fe80::1", "fd6c:3::1", "ff02::1"] {
            jail_pkt(&v.la, &format!("udp6 {a1} 5000 {dst} {p} {m}-{how}-padding-for-fragments 64 uplink {how}"));
        }
    }
    // Tunnels from the jail to the host (made if the kernel lets the
    // jail's root make them; either way nothing may arrive).
    let tunnels = format!(
        "ip link add blt4 type sit local {jail4} remote {gw4} ttl 64 && ip link set blt4 up && \
         ip -6 addr add fd6c:77::2/64 dev blt4 nodad; \
         ip link add blt6 type ip6tnl mode any local {a1} remote fd6c:3::1 && ip link set blt6 up && \
         ip addr add 10.201.77.2/24 dev blt6 && ip -6 addr add fd6c:78::2/64 dev blt6 nodad; \
         echo t | timeout 3 socat -u - UDP6-SENDTO:[fd6c:77::1]:{p}; \
         echo t | timeout 3 socat -u - UDP4-SENDTO:10.201.77.1:{p}; \
         echo t | timeout 3 socat -u - UDP6-SENDTO:[fd6c:78::1]:{p}; ip -d link show; true",
        jail4 = v.a["jail"]["ip"].as_str().unwrap(),
    );
    let t = v.la.run(&tunnels);
    eprintln!("tunnels in the jail: {}{}", String::from_utf8_lossy(&t.stdout), String::from_utf8_lossy(&t.stderr));

    // From alice's board: her jail's address as the source, to the host,
    // to bob's jail; and an advertisement of bob's /64 to her jail.
    let (_, board_ns) = board_link(&v.lab, v.a["board"].as_str().unwrap());
    let had_default = !sh(&["ip", "-n", &board_ns, "-6", "route", "show", "default"]).stdout.is_empty();
    if !had_default {
        let o = sh(&["ip", "-n", &board_ns, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"]);
        assert!(o.status.success(), "{o:?}");
    }
    for dst in ["fe80::1", "fd6c:3::1", &addr_in(&pb, 1).to_string()] {
        let dport = if dst.starts_with("fe80") || dst.starts_with("fd6c") { p } else { bob.port };
        ns_pkt(&board_ns, &["udp6", &a1.to_string(), "5001", dst, &dport.to_string(), &m, "64", "eth0"]);
    }
    ns_pkt(&board_ns, &["ra6", "fe80::bad", "ff02::1", "eth0", &pb.network().to_string(), &pb.network().to_string()]);
    std::thread::sleep(Duration::from_millis(700));
    let mut breaches: Vec<String> = Vec::new();
    breaches.extend(host.hits().into_iter().map(|h| format!("the host: {h}")));
    breaches.extend(bob.hits().into_iter().map(|h| format!("bob's jail: {h}")));
    // Clean up the tunnels and the board's route whatever happened (the
    // tunnels die with the jail anyway).
    if !had_default {
        let _ = sh(&["ip", "-n", &board_ns, "-6", "route", "del", "default", "via", "fe80::1", "dev", "eth0"]);
    }
    let _ = v.la.run("ip link del blt4; ip link del blt6; true");
    drop((host, bob));
    assert!(breaches.is_empty(), "reached:\n{}", breaches.join("\n"));
    v.whole_and_gone("v6h");
}

/// A claimant reinits (and claims and releases) in a loop to drain the
/// pool: every /64 it gives back cools down, and a /60 has 16. It gets
/// fresh ones only while it has fewer than `ipv6_fresh_per_user` (4)
/// cooling; then its own come back: at most the claims it holds plus 4. Every reinit works, bob still gets a
/// fresh /64 none of alice's, and nothing is left behind.
#[test]
fn a_claimant_draining_the_pool_by_reinits_and_claims_only_recycles_its_own() {
    let _turn = one_at_a_time();
    static NET: JailNet = JailNet { pool: "10.201.3.0/24", board_net: "172.21.48.0/20", uid_base: 11_900_000 };
    // The smallest pool labd takes: 16 /64s.
    const POOL: &str = "2001:db8:4403:40::/60";
    let mut lab = jail_lab(2, "rockpro64", &NET, &format!("ipv6_pool = \"{POOL}\""), "");
    let dir = lab.path().to_path_buf();
    lab.start_labd();
    let a = claim(&lab, ALICE);
    let mut hers = std::collections::BTreeSet::from([prefix_of(&a)]);
    for i in 0..20 {
        let r = lab.as_user(ALICE, &[json!({"fn": "reinit", "handle": a["handle"]})]).remove(0);
        assert_eq!(r["ok"], true, "reinit {i}: {r}");
        hers.insert(prefix_of(&r["result"]));
    }
    // Her claim's first /64 and three fresh ones (four cooling at most),
    // then her own again.
    assert_eq!(hers.len(), 4, "{hers:?}");
    let b = claim(&lab, BOB);
    let pb = prefix_of(&b);
    assert!(!hers.contains(&pb), "bob got one of alice's: {pb}");
    // The same by claiming and releasing the other board.
    release(&lab, BOB, &b);
    for _ in 0..10 {
        let c = claim(&lab, ALICE);
        hers.insert(prefix_of(&c));
        release(&lab, ALICE, &c);
    }
    // One more: four cool down while her first claim holds a fifth.
    assert_eq!(hers.len(), 5, "claims and releases drew one /64 more for alice, no others: {hers:?}");
    let b = claim(&lab, BOB);
    assert!(!hers.contains(&prefix_of(&b)), "bob got one of alice's");
    release(&lab, BOB, &b);
    release(&lab, ALICE, &a);
    let s = lab.req(json!({"fn": "status"}));
    assert!(ok(&s).as_array().unwrap().iter().all(|b| b["state"] == "available"), "{s}");
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// The jail's root prepares its `/etc/ssh` before a renew: the
/// certificate's directory as a symlink to a host directory, the
/// certificate and labd's temporary name as symlinks to host files, a
/// FIFO, another public key. labd follows nothing, writes no host file,
/// certifies only the key it recorded for the claim's names and the
/// lease, and hangs on nothing.
#[test]
fn a_jails_etc_ssh_cannot_steer_the_renewed_host_certificate() {
    let _turn = one_at_a_time();
    static NET: JailNet = JailNet { pool: "10.201.4.0/24", board_net: "172.21.64.0/20", uid_base: 12_200_000 };
    let mut lab = jail_lab(1, "rockpro64", &NET, "ipv6_pool = \"2001:db8:4404::/48\"", "");
    let dir = lab.path().to_path_buf();
    {
        let mut toml = std::fs::OpenOptions::new().append(true).open(dir.join("lab.toml")).unwrap();
        writeln!(toml, "host_ca = \"{}\"", dir.join("host_ca").display()).unwrap();
    }
    let o = Command::new(LABD).args(["ca", "init", "--config"]).arg(&dir).output().unwrap();
    assert!(o.status.success(), "labd ca init: {}", String::from_utf8_lossy(&o.stderr));
    lab.start_labd();
    let c = ok(&lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "lease": 3600})]).remove(0)).clone();
    let board = c["board"].as_str().unwrap().to_string();
    let name = c["jail"]["host_name"].as_str().unwrap().to_string();
    let ip6 = c["jail"]["ipv6"].as_str().unwrap().to_string();
    let recorded = c["jail"]["host_key"].as_str().unwrap().split_whitespace().nth(2).unwrap().to_string();
    // Logged in with the plain host key (the reply's `host_key` line).
    let kh = dir.join("known_hosts.certs");
    std::fs::write(&kh, format!("{}\n", c["jail"]["host_key"].as_str().unwrap())).unwrap();
    let l = Login {
        key: common::jails::key_of(&dir, ALICE),
        known_hosts: kh.clone(),
        ip: c["jail"]["ip"].as_str().unwrap().to_string(),
        via_netns: None,
    };
    // Host files the jail names by their host paths.
    let victim_dir = dir.join("victim-ssh");
    std::fs::create_dir(&victim_dir).unwrap();
    let victim = dir.join("victim-file");
    let victim_tmp = dir.join("victim-tmp");
    for f in [&victim, &victim_tmp] {
        std::fs::write(f, "untouched\n").unwrap();
    }
    let cert_path = dir.join(format!("jails/{board}/etc/ssh/ssh_host_ed25519_key-cert.pub"));
    let read_cert = || {
        let t = std::fs::read_to_string(&cert_path).unwrap();
        ssh_key::Certificate::from_openssh(t.trim()).unwrap()
    };
    let renew = |lease: u64| {
        let r = lab.as_user(ALICE, &[json!({"fn": "renew", "handle": c["handle"], "lease": lease})]).remove(0);
        ok(&r).clone()
    };
    let unix = |v: &Value| {
        let t = time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339);
        u64::try_from(t.unwrap().unix_timestamp()).unwrap()
    };
    let untouched = |what: &str| {
        let mut bad = Vec::new();
        for f in [&victim, &victim_tmp] {
            let m = std::fs::symlink_metadata(f).unwrap();
            let text = std::fs::read_to_string(f).unwrap_or_default();
            if text != "untouched\n" || std::os::unix::fs::MetadataExt::uid(&m) != 0 {
                bad.push(format!(
                    "{what}: {} was changed ({text:?}, uid {})",
                    f.display(),
                    std::os::unix::fs::MetadataExt::uid(&m)
                ));
            }
        }
        if std::fs::read_dir(&victim_dir).unwrap().next().is_some() {
            bad.push(format!("{what}: labd wrote into {}", victim_dir.display()));
        }
        bad
    };
    let mut breaches: Vec<String> = Vec::new();
    let first = read_cert();

    // 1. /etc/ssh a symlink to a host directory (put back a few seconds
    //    later, in the background: the jail's sshd needs its own to let
    //    anyone in).
    l.ok(&format!(
        "mv /etc/ssh /etc/ssh.real && ln -s {} /etc/ssh && \
         setsid -f sh -c 'sleep 4; rm /etc/ssh; mv /etc/ssh.real /etc/ssh' </dev/null >/dev/null 2>&1",
        victim_dir.display()
    ));
    let t0 = Instant::now();
    renew(2 * 3600);
    assert!(t0.elapsed() < Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(6));
    breaches.extend(untouched("/etc/ssh a symlink"));
    l.ok("test -d /etc/ssh && ! test -L /etc/ssh");

    // 2. The certificate and labd's temporary name symlinks to host
    //    files, and another key pair in place of the jail's (which its
    //    sshd serves from now on: trusted here too, to get back in).
    let evil = l.ok("ssh-keygen -q -t ed25519 -N '' -f /tmp/evil && cat /tmp/evil.pub");
    let evil = evil.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let mut lines = std::fs::read_to_string(&kh).unwrap();
    lines.push_str(&format!("{} {evil}\n", l.ip));
    std::fs::write(&kh, lines).unwrap();
    l.ok(&format!(
        "cd /etc/ssh && ln -sf {} ssh_host_ed25519_key-cert.pub && ln -sf {} .ssh_host_ed25519_key-cert.pub.labd && \
         cp /tmp/evil ssh_host_ed25519_key && cp /tmp/evil.pub ssh_host_ed25519_key.pub",
        victim.display(),
        victim_tmp.display()
    ));
    let r = renew(3 * 3600);
    lab.wait_for(Duration::from_secs(10), "the renewed certificate", || {
        std::fs::symlink_metadata(&cert_path).map(|m| m.is_file()).unwrap_or(false)
    });
    breaches.extend(untouched("symlinked certificate"));
    let cert = read_cert();
    let certified = ssh_key::PublicKey::new(cert.public_key().clone(), "").to_openssh().unwrap();
    if certified.split_whitespace().nth(1) != Some(recorded.as_str()) {
        breaches.push(format!("labd certified another key than the claim's: {certified}"));
    }
    if cert.valid_principals() != [name.clone(), ip6.clone()] {
        breaches.push(format!("principals {:?}, not the claim's [{name}, {ip6}]", cert.valid_principals()));
    }
    if cert.valid_before() > unix(&r["expires_at"]) + 1 || cert.valid_after() != first.valid_after() {
        breaches.push(format!("valid {}..{}, lease ends {}", cert.valid_after(), cert.valid_before(), r["expires_at"]));
    }

    // 3. A FIFO under labd's temporary name: labd must not hang on it.
    // (The renew's reload restarts the jail's sshd: a moment without it.)
    let again = |cmd: &str| {
        let t0 = Instant::now();
        while !l.run(cmd).status.success() {
            assert!(t0.elapsed() < Duration::from_secs(15), "{cmd:?} in the jail kept failing");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    again("mkfifo /etc/ssh/.ssh_host_ed25519_key-cert.pub.labd");
    let before = read_cert().serial();
    renew(3600);
    lab.wait_for(Duration::from_secs(10), "a certificate past the FIFO", || read_cert().serial() != before);
    // labd answers, and a lease beyond lease.max is refused or capped.
    let r = lab.as_user(ALICE, &[json!({"fn": "renew", "handle": c["handle"], "lease": 10u64.pow(9)})]).remove(0);
    std::thread::sleep(Duration::from_millis(500));
    let cert = read_cert();
    let end = if r["ok"] == true {
        unix(&r["result"]["expires_at"])
    } else {
        unix(&c["expires_at"]).max(cert.valid_before())
    };
    if cert.valid_before() > end + 1 {
        breaches.push(format!("a certificate valid to {} beyond the lease {end}", cert.valid_before()));
    }
    breaches.extend(untouched("after all"));

    // The jail still answers (with the key its root put in), and
    // everything goes at release.
    again("true");
    release(&lab, ALICE, &c);
    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 1);
    assert!(breaches.is_empty(), "host certificates:\n{}", breaches.join("\n"));
    assert!(left.is_empty(), "left behind: {left:#?}");
}
