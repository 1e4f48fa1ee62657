//! IPv6 for the claims' boards: each claim draws a /64 at random from the
//! lab's `ipv6_pool`, the jail advertises it on the board link, the board
//! takes an address by SLAAC and fetches from the jail over IPv6, and the
//! /64 is routed (not translated) out through the host. Every isolation
//! rule of the jail boundary holds for IPv6, tried from the jail as its
//! root would; and a released /64 is not handed out again while it cools
//! down.

mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use common::jails::{board_link, jail_lab, leftovers, one_at_a_time, JailNet, Listener, Login, Net};
use common::*;
use ipnet::Ipv6Net;
use serde_json::{json, Value};

/// The lab's pool: a /60, so 16 /64s, which the cool-down test uses up.
const POOL: &str = "2001:db8:4200:f0::/60";

fn claim(lab: &Lab, user: &str) -> Value {
    let r = lab.as_user(user, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    ok(&r).clone()
}

/// Puts a boot file in the claim's jail (over ssh, as its user would) and
/// powers the board on: it net-boots.
fn boot(lab: &Lab, user: &str, c: &Value, tag: &str) {
    let l = Login::new(lab.path(), user, &c["jail"], tag);
    l.ok("printf 'echo booted\\n' > /tftpboot/boot.scr");
    ok(&lab.as_user(user, &[json!({"fn": "power_on", "handle": c["handle"]})]).remove(0));
}

fn release(lab: &Lab, user: &str, c: &Value) {
    ok(&lab.as_user(user, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
}

fn prefix_of(c: &Value) -> Ipv6Net {
    c["jail"]["board_prefix"].as_str().unwrap_or_else(|| panic!("no board_prefix in {c}")).parse().unwrap()
}

fn console_log(lab: &Lab, c: &Value) -> String {
    let r = lab.req(json!({"fn": "console_log", "handle": c["handle"]}));
    r["result"]["log"].as_str().unwrap_or("").to_string()
}

/// The board's SLAAC address, from the line its console printed.
fn board_address(lab: &Lab, c: &Value) -> Ipv6Addr {
    let t0 = std::time::Instant::now();
    loop {
        let log = console_log(lab, c);
        let found = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("IPv6: SLAAC address "))
            .and_then(|a| a.trim().strip_suffix("/64"))
            .and_then(|a| a.parse().ok());
        match found {
            Some(a) if log.contains("over IPv6 from [") => return a,
            _ if t0.elapsed() > Duration::from_secs(20) => {
                let board = c["board"].as_str().unwrap();
                let (_, ns) = board_link(lab, board);
                let state = common::jails::sh(&["sh", "-c", &format!("ip -n {ns} -6 addr; ip -n {ns} -6 route")]);
                if std::env::var("BL_PAUSE").is_ok() {
                    eprintln!("PAUSED {}", lab.path().display());
                    std::thread::sleep(Duration::from_secs(300));
                }
                let blog =
                    std::fs::read_to_string(lab.path().join(format!("logs/board-{board}.log"))).unwrap_or_default();
                panic!(
                    "no SLAAC address and IPv6 fetch on the console of {board}:\n{log}\n{}\n{blog}",
                    String::from_utf8_lossy(&state.stdout)
                )
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Sends a UDP datagram and tries a TCP connection to `[addr]:port` from
/// inside the jail (as its root), optionally from the source `from`.
fn send_from_jail(login: &Login, addr: &str, port: u16, from: Option<&str>) {
    let bind = from.map(|f| format!(",bind=[{f}]")).unwrap_or_default();
    let _ = login.run(&format!(
        "echo v6 | socat -u - UDP6-SENDTO:[{addr}]:{port}{bind}; socat -u OPEN:/etc/hostname TCP6:[{addr}]:{port},connect-timeout=1{bind}"
    ));
}

/// A UDP datagram from the board (its network namespace) to `[addr]:port`.
fn send_from_board(board_ns: &str, addr: &str, port: u16) {
    let o = common::jails::sh(&[
        "ip",
        "netns",
        "exec",
        board_ns,
        "sh",
        "-c",
        &format!("echo board | socat -u - UDP6-SENDTO:[{addr}]:{port}"),
    ]);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn each_claim_gets_a_random_64_routed_to_its_board_and_isolated_like_ipv4() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.195.9.0/24", board_net: "172.26.144.0/20", uid_base: 5_400_000 };
    // The "internet" the jails' IPv6 leaves by (the NAT interface), with a
    // denied /64 on it, and a second network the jails must not reach.
    let inet = Net::new("v6i", "fd6a:1::1/48", &["fd6a:1::2/48", "fd6a:1:0:9::2/48"], "fd6a:1::1");
    let other = Net::new("v6o", "fd6b:1::1/64", &["fd6b:1::2/64"], "fd6b:1::1");
    // Every /64 of the pool goes to alice in turn below: none of hers
    // comes back to her before the pool is used up.
    let extra = format!(
        "nat_interface = \"{}\"\nipv6_pool = \"{POOL}\"\nipv6_fresh_per_user = 16\ndeny_out = [\"fd6a:1:0:9::/64\"]",
        inet.host_if
    );
    let mut lab = jail_lab(2, "rockpro64", &NET, &extra, "");
    let dir = lab.path().to_path_buf();
    lab.start_labd();
    let pool: Ipv6Net = POOL.parse().unwrap();

    let a = claim(&lab, ALICE);
    let b = claim(&lab, BOB);
    let (pa, pb) = (prefix_of(&a), prefix_of(&b));
    assert!(pool.contains(&pa) && pool.contains(&pb) && pa.prefix_len() == 64, "{pa} {pb}");
    assert_ne!(pa, pb, "two claims, two /64s");
    assert_eq!(a["jail"]["ipv6"], json!(format!("{}1", pa.network())), "the jail is ::1 of its /64");

    // The board took an address in its claim's /64 and fetched its boot
    // file from the jail over IPv6.
    boot(&lab, ALICE, &a, "boot-a");
    boot(&lab, BOB, &b, "boot-b");
    let board_a = board_address(&lab, &a);
    let board_b = board_address(&lab, &b);
    assert!(pa.contains(&board_a), "{board_a} is not in alice's {pa}");
    assert!(pb.contains(&board_b), "{board_b} is not in bob's {pb}");
    let log = console_log(&lab, &a);
    assert!(log.contains(&format!("TFTP: fetched boot.scr over IPv6 from [{}1]", pa.network())), "{log}");

    // ssh over IPv6, the host key checked.
    let la = Login::over_ipv6(lab.path(), ALICE, &a, "v6a");
    assert!(la.ok("ip -6 addr show dev board").contains(&format!("{}1/64", pa.network())));

    // Routed, not translated: what the jail and its board send arrives
    // from their own addresses.
    let allowed = Listener::in_netns(Some(&inet.ns), "fd6a:1::2".parse().unwrap());
    let (_, a_ns) = board_link(&lab, a["board"].as_str().unwrap());
    let want = [
        format!("udp from [{}1]:", pa.network()),
        format!("tcp from [{}1]:", pa.network()),
        format!("udp from [{board_a}]:"),
    ];
    // Sent again until heard (a loaded machine may miss a 1 s connect).
    let t0 = std::time::Instant::now();
    while !want.iter().all(|w| allowed.hits().iter().any(|h| h.starts_with(w))) {
        assert!(t0.elapsed() < Duration::from_secs(20), "routed egress: want {want:?}, got {:?}", allowed.hits());
        send_from_jail(&la, "fd6a:1::2", allowed.port, None);
        send_from_board(&a_ns, "fd6a:1::2", allowed.port);
        std::thread::sleep(Duration::from_millis(300));
    }

    // The attacks, as alice's jail root: bob's jail, bob's board, the host,
    // a denied prefix, another interface than the NAT one, and a spoofed
    // source address (one of the pool that is not hers).
    let (_, b_ns) = board_link(&lab, b["board"].as_str().unwrap());
    let b_suffix = format!("-{}", b["board"].as_str().unwrap());
    let b_jail_ns = common::jails::netns_list()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|n| n.starts_with("blj") && n.ends_with(&b_suffix))
        .expect("bob's jail's namespace")
        .to_string();
    let jail_b = Listener::in_netns(Some(&b_jail_ns), format!("{}1", pb.network()).parse().unwrap());
    let board_b_l = Listener::in_netns(Some(&b_ns), std::net::IpAddr::V6(board_b));
    let host = Listener::new("fd6a:1::1".parse().unwrap());
    let denied = Listener::in_netns(Some(&inet.ns), "fd6a:1:0:9::2".parse().unwrap());
    let elsewhere = Listener::in_netns(Some(&other.ns), "fd6b:1::2".parse().unwrap());
    send_from_jail(&la, &format!("{}1", pb.network()), jail_b.port, None);
    send_from_jail(&la, &board_b.to_string(), board_b_l.port, None);
    send_from_jail(&la, "fd6a:1::1", host.port, None);
    send_from_jail(&la, "fd6a:1:0:9::2", denied.port, None);
    send_from_jail(&la, "fd6b:1::2", elsewhere.port, None);
    let spoofed = format!("{}5", pb.network());
    la.ok(&format!("ip -6 addr add {spoofed}/128 dev lo nodad"));
    let before = allowed.hits().len();
    send_from_jail(&la, "fd6a:1::2", allowed.port, Some(&spoofed));
    // The same from alice's board, which alice controls too.
    send_from_board(&a_ns, &board_b.to_string(), board_b_l.port);
    std::thread::sleep(Duration::from_millis(700));
    assert!(jail_b.hits().is_empty(), "alice's jail reached bob's jail: {:?}", jail_b.hits());
    assert!(board_b_l.hits().is_empty(), "alice reached bob's board: {:?}", board_b_l.hits());
    assert!(host.hits().is_empty(), "the jail reached the host: {:?}", host.hits());
    assert!(denied.hits().is_empty(), "the jail reached a deny_out prefix: {:?}", denied.hits());
    assert!(elsewhere.hits().is_empty(), "left by another interface: {:?}", elsewhere.hits());
    let spoof_hits: Vec<String> = allowed.hits()[before..].to_vec();
    assert!(spoof_hits.is_empty(), "a spoofed source went out: {spoof_hits:?}");

    // The lab is whole: bob's jail still answers over IPv6, and his board
    // still reaches out. (And the listeners alice could not reach do
    // listen: bob's board reaches his jail's, his jail his board's.)
    let lb = Login::over_ipv6(lab.path(), BOB, &b, "v6b");
    lb.ok("true");
    send_from_board(&b_ns, &format!("{}1", pb.network()), jail_b.port);
    send_from_jail(&lb, &board_b.to_string(), board_b_l.port, None);
    lab.wait_for(Duration::from_secs(5), "bob's own jail and board", || {
        jail_b.hits().iter().any(|h| h.contains("board")) && !board_b_l.hits().is_empty()
    });
    send_from_jail(&lb, "fd6a:1::2", allowed.port, None);
    lab.wait_for(Duration::from_secs(5), "bob's datagram", || {
        allowed.hits().iter().any(|h| h.starts_with(&format!("udp from [{}1]:", pb.network())))
    });

    // Reinit draws a new /64; the old one cools down. Then every /64 of the
    // pool is used once (each claim a new one, never one released within
    // the cool-down) until none is left, which a claim is told clearly.
    let mut seen = vec![pa, pb];
    let r = lab.as_user(ALICE, &[json!({"fn": "reinit", "handle": a["handle"]})]).remove(0);
    let pr = prefix_of(ok(&r));
    assert!(!seen.contains(&pr), "reinit reused {pr}");
    seen.push(pr);
    release(&lab, ALICE, &a);
    release(&lab, BOB, &b);
    while seen.len() < 16 {
        let c = claim(&lab, ALICE);
        let p = prefix_of(&c);
        assert!(pool.contains(&p) && !seen.contains(&p), "{p} handed out again within the cool-down: {seen:?}");
        seen.push(p);
        release(&lab, ALICE, &c);
    }
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    assert_eq!(r["ok"], false, "a 17th /64 from a /60: {r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("no /64 of the IPv6 pool") && msg.contains(POOL), "{r}");
    // Nothing was held for the refused claim.
    let s = lab.req(json!({"fn": "status"}));
    assert!(ok(&s).as_array().unwrap().iter().all(|b| b["state"] == "available"), "{s}");

    drop(lab);
    let left = leftovers(&dir, NET.uid_base, 2);
    assert!(left.is_empty(), "left behind: {left:#?}");
    drop((inet, other));
}
