//! Every labd is a front door for the whole lab: claims, power, consoles
//! and jails through a host that does not own the board, over the peer
//! channel that strangers cannot use.

use std::time::Duration;

use serde_json::json;

use super::common::etcd::Etcd;
use super::common::{code, ok, Lab};
use super::*;

/// The port of `lab`'s peer channel, from its lab.toml.
fn peer_port(lab: &Lab) -> u16 {
    let t = std::fs::read_to_string(lab.path().join("lab.toml")).unwrap();
    let l = t.lines().find(|l| l.starts_with("peer_listen")).expect("peer_listen");
    l.rsplit(':').next().unwrap().trim_end_matches('"').parse().unwrap()
}

/// Two hosts whose peer credentials come from one lab CA in `ca`.
pub fn two_hosts(etcd: &Etcd, ca: &std::path::Path, console: bool) -> (Lab, Lab) {
    let urls = etcd.urls();
    let ca = ca.to_str().unwrap();
    let mut flags = vec!["--no-net", "--host", "lab1", "--etcd", &urls, "--ca", ca];
    if !console {
        flags.push("--no-console");
    }
    let mut lab1 = Lab::create(1, "rockpro64", &flags, |t| t);
    flags[1..3].copy_from_slice(&["--host", "lab2"]);
    let mut lab2 = Lab::create(2, "rockpro64,pine64", &flags, |t| t);
    lab1.start_labd();
    lab2.start_labd();
    lab1.wait_for(Duration::from_secs(10), "lab1 to see lab2's boards", || status_rows(&lab1).len() == 3);
    lab2.wait_for(Duration::from_secs(10), "lab2 to see lab1's boards", || status_rows(&lab2).len() == 3);
    (lab1, lab2)
}

/// A claim through one host's front door lands on another host's board
/// when only that one has it free; everything done with its handle
/// through the first host is done by the second, as the same user.
#[test]
fn a_claim_through_any_front_door_lands_on_any_host() {
    use common::{ALICE, BOB};
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let (lab1, lab2) = two_hosts(&etcd, ca.path(), false);

    // pine64 exists only on lab2.
    let r = lab1.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64", "power": true})]).remove(0);
    let c = ok(&r).clone();
    assert_eq!(c["board"], "lab2-pine64-1");
    assert_eq!(c["host"], "lab2");
    assert_eq!(c["user"], ALICE);
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "on", "lab2 switched its own board");
    assert_eq!(row(&status_rows(&lab2), "lab2-pine64-1")["user"], ALICE);
    let h = c["handle"].clone();

    // The handle through lab1: power, renew, log; bob's attempts fail there.
    ok(&lab1.as_user(ALICE, &[json!({"fn": "power_off", "handle": h})]).remove(0));
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "off");
    ok(&lab1.as_user(ALICE, &[json!({"fn": "renew", "handle": h})]).remove(0));
    for f in ["release", "power_on", "renew"] {
        let r = lab1.as_user(BOB, &[json!({"fn": f, "handle": h})]).remove(0);
        assert_eq!(code(&r), "not_claimed", "bob's {f} with alice's handle: {r}");
    }
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "off");
    assert_eq!(row(&status_rows(&lab2), "lab2-pine64-1")["user"], ALICE);

    // rockpro64: lab1's own first, then lab2's.
    let first = ok(&lab1.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0)).clone();
    assert_eq!(first["board"], "lab1-rockpro64-1");
    let second = ok(&lab1.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0)).clone();
    assert_eq!(second["board"], "lab2-rockpro64-1");
    let r = lab1.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    assert_eq!(code(&r), "no_device_available", "{r}");

    // Releases through the other front door.
    ok(&lab2.as_user(BOB, &[json!({"fn": "release", "handle": first["handle"]})]).remove(0));
    ok(&lab1.as_user(ALICE, &[json!({"fn": "release", "handle": h})]).remove(0));
    ok(&lab1.as_user(BOB, &[json!({"fn": "release", "handle": second["handle"]})]).remove(0));
    lab1.wait_for(Duration::from_secs(5), "every board free in lab1's view", || {
        status_rows(&lab1).iter().all(|r| r["state"] == "available")
    });
    assert!(etcd.keys("/boardlab/claims/").is_empty());
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "off");

    // Operators act on any host's board through any front door.
    let c = ok(&lab2.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64"})]).remove(0)).clone();
    let r = lab1.as_user(BOB, &[json!({"fn": "force_release", "board": "lab2-pine64-1"})]).remove(0);
    assert_eq!(code(&r), "permission_denied", "bob is no operator on lab2 either: {r}");
    ok(&lab1.req(json!({"fn": "force_release", "board": "lab2-pine64-1"})));
    assert_eq!(row(&status_rows(&lab2), "lab2-pine64-1")["state"], "available");
    let r = lab2.as_user(ALICE, &[json!({"fn": "renew", "handle": c["handle"]})]).remove(0);
    assert_eq!(code(&r), "claim_ended", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("was force-released by root"), "{r}");
    ok(&lab1.req(json!({"fn": "maintenance", "board": "lab2-pine64-1", "on": true})));
    assert_eq!(row(&status_rows(&lab2), "lab2-pine64-1")["state"], "maintenance");
    let r = lab1.req(json!({"fn": "claim", "class": "pine64"}));
    assert_eq!(code(&r), "no_device_available", "{r}");
    ok(&lab1.req(json!({"fn": "maintenance", "board": "lab2-pine64-1", "on": false})));
    assert_eq!(etcd.keys("/boardlab/maintenance/"), Vec::<String>::new());
}

/// A console session through a front door that does not own the board:
/// bytes both ways, through the peer channel.
#[test]
fn a_console_through_another_front_door() {
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let (lab1, lab2) = two_hosts(&etcd, ca.path(), true);
    let c = ok(&lab1.req(json!({"fn": "claim", "class": "pine64", "power": true}))).clone();
    assert_eq!(c["host"], "lab2");
    lab2.wait_for(Duration::from_secs(15), "the board to boot", || {
        let r = lab2.req(json!({"fn": "console_log", "handle": c["handle"]}));
        r["ok"] == true && r["result"]["log"].as_str().unwrap_or("").contains("=> ")
    });
    // The log through lab1 as well.
    let log = lab1.req(json!({"fn": "console_log", "handle": c["handle"]}));
    assert!(ok(&log)["log"].as_str().unwrap().contains("=> "), "{log}");
    let mut s = lab1.conn();
    let r = s.call(json!({"fn": "console", "handle": c["handle"]}));
    assert_eq!(ok(&r)["writer"], true, "{r}");
    let all: Vec<u8> = (0..=255u8).collect();
    s.send_raw(&all);
    let got = s.read_until(Duration::from_secs(10), |g| common::subsequence(g, &all));
    assert!(common::subsequence(&got, &all), "saw {} bytes, not all 256 in order", got.len());
    drop(s);

    // labcli through lab1: typing reaches lab2's board, `~.` detaches, and
    // what follows it is never sent.
    let mut cli = lab1.spawn_cli_as("root", &["console", c["handle"].as_str().unwrap()]);
    {
        use std::io::Write;
        let stdin = cli.stdin.as_mut().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // A fresh line first: the 256 bytes above left one unfinished.
        stdin.write_all(b"\rversion\r").unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        stdin.write_all(b"~.secret-after-detach\r").unwrap();
    }
    let t0 = Instant::now();
    let out = cli.wait_with_output().unwrap();
    // The session stays open until the client leaves: only `~.` ends it.
    assert!(t0.elapsed() < Duration::from_secs(5), "labcli detached at once");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.contains("boardlab-sim U-Boot"), "the board's answer came back through lab1: {seen}");
    std::thread::sleep(Duration::from_millis(500));
    let log = ok(&lab2.req(json!({"fn": "console_log", "handle": c["handle"]})))["log"].as_str().unwrap().to_string();
    assert!(log.contains("version") && !log.contains("secret-after-detach"), "{log}");
}

/// The peer channel takes lab hosts only: no TLS, TLS without a
/// certificate, or a certificate from another CA get no answer, and the
/// lab is still whole.
#[test]
fn the_peer_channel_refuses_strangers() {
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let (lab1, lab2) = two_hosts(&etcd, ca.path(), false);
    let port = peer_port(&lab2);
    let req = br#"{"fn":"claim","class":"pine64","as":"root","power":true}
{"fn":"status","as":"root"}
"#;
    // Plain TCP.
    {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let _ = t.write_all(req);
        let mut got = Vec::new();
        let _ = t.read_to_end(&mut got);
        assert!(!common::contains(&got, b"\"ok\""), "plain TCP got an answer: {}", String::from_utf8_lossy(&got));
    }
    // TLS without a certificate, and with one from another lab's CA
    // (labsim made a CA of its own for this stranger).
    let urls = etcd.urls();
    let stranger = Lab::create(1, "rockpro64", &["--no-net", "--no-console", "--host", "lab9", "--etcd", &urls], |t| t);
    let ca_pem = ca.path().join("ca.pem");
    let peer = stranger.path().join("peer");
    let attempts: Vec<Vec<String>> = vec![
        vec![],
        vec![
            "-cert".into(),
            peer.join("lab9.pem").to_string_lossy().into(),
            "-key".into(),
            peer.join("lab9.key").to_string_lossy().into(),
        ],
    ];
    // The control: lab1's own credentials get answers this way.
    let own = lab1.path().join("peer");
    let control = vec![
        "-cert".to_string(),
        own.join("lab1.pem").to_string_lossy().into(),
        "-key".into(),
        own.join("lab1.key").to_string_lossy().into(),
    ];
    let status_only = b"{\"fn\":\"status\",\"as\":\"root\"}\n";
    let out = s_client(port, &ca_pem, &control, status_only);
    assert!(common::contains(&out, b"\"ok\":true"), "a lab host got no answer: {}", String::from_utf8_lossy(&out));
    for extra in attempts {
        let out = s_client(port, &ca_pem, &extra, req);
        assert!(
            !common::contains(&out, b"\"ok\""),
            "a stranger ({extra:?}) got an answer: {}",
            String::from_utf8_lossy(&out)
        );
    }
    assert!(lab2.log().contains("refused a peer"), "the refusals are logged");
    // Nothing was claimed, and the lab still works between its hosts.
    assert_eq!(row(&status_rows(&lab2), "lab2-pine64-1")["state"], "available");
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "off");
    let c = ok(&lab1.req(json!({"fn": "claim", "class": "pine64"}))).clone();
    assert_eq!(c["host"], "lab2");
}

/// What `openssl s_client` (with `extra` arguments) got back for `input`
/// from the peer channel at `port`, within two seconds.
fn s_client(port: u16, ca: &std::path::Path, extra: &[String], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}"), "-servername", "lab2", "-CAfile"])
        .arg(ca)
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let _ = child.stdin.as_mut().unwrap().write_all(input);
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    child.wait_with_output().unwrap().stdout
}

/// A lease that runs out while its host is away ends the claim: the
/// board stays offline (never offered) until its host is back, which
/// powers it off and frees it, in etcd too.
#[test]
fn a_lease_that_ends_while_its_host_is_away_ends_when_it_returns() {
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let (lab1, mut lab2) = two_hosts(&etcd, ca.path(), false);
    let c = ok(&lab1.req(json!({"fn": "claim", "class": "pine64", "power": true, "lease": 2}))).clone();
    assert_eq!(c["host"], "lab2");
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "on");
    lab2.kill9_labd();
    std::thread::sleep(Duration::from_secs(3));
    lab1.wait_for(Duration::from_secs(10), "lab2's boards to show offline", || {
        row(&status_rows(&lab1), "lab2-pine64-1")["state"] == "offline"
    });
    // Offline boards are never offered, whatever their lease.
    let r = lab1.req(json!({"fn": "claim", "class": "pine64"}));
    assert_eq!(code(&r), "no_device_available", "{r}");
    assert_eq!(r["error"]["message"], "no pine64 board is available (1 offline)");
    assert!(etcd_claim(&etcd, "lab2-pine64-1").is_some(), "the claim waits for its host");
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "on", "nobody else touches lab2's switch");
    lab2.start_labd();
    lab1.wait_for(Duration::from_secs(10), "the expired claim to be ended by lab2", || {
        row(&status_rows(&lab1), "lab2-pine64-1")["state"] == "available"
    });
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "off", "powered off before it is offered again");
    assert_eq!(etcd_claim(&etcd, "lab2-pine64-1"), None);
    let r = lab1.req(json!({"fn": "claim", "class": "pine64"}));
    assert_eq!(ok(&r)["board"], "lab2-pine64-1");
}

/// A jailed claim on another host, through a front door that has no such
/// board: the reply carries that host's jail, which the claimant logs
/// into; reinit and release through the same door rebuild and remove it.
#[test]
fn a_jail_on_another_host_through_any_front_door() {
    use common::jails::{jail_lab_with, leftovers, one_at_a_time, JailNet, Login};
    use common::ALICE;
    const NET: JailNet = JailNet { pool: "10.197.40.0/24", board_net: "172.28.64.0/20", uid_base: 540_000 };
    let _turn = one_at_a_time();
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let urls = etcd.urls();
    let ca_dir = ca.path().to_str().unwrap();
    let mut lab1 = Lab::create(
        1,
        "pine64",
        &["--no-net", "--no-console", "--host", "lab1", "--etcd", &urls, "--ca", ca_dir],
        |t| t,
    );
    let mut lab2 = jail_lab_with(1, "rockpro64", &["--host", "lab2", "--etcd", &urls, "--ca", ca_dir], &NET, "", "");
    lab1.start_labd();
    lab2.start_labd();
    lab1.wait_for(Duration::from_secs(10), "lab1 to see lab2's board", || status_rows(&lab1).len() == 2);

    let r = lab1.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    let c = ok(&r).clone();
    assert_eq!(c["host"], "lab2");
    let jail = c["jail"].clone();
    assert!(jail["ssh"].as_str().is_some_and(|s| s.starts_with("ssh root@")), "{c}");
    let login = Login::new(lab2.path(), ALICE, &jail, "1");
    assert_eq!(login.ok("id -u").trim(), "0");
    login.ok("touch /root/before-reinit");

    let r = lab1.as_user(ALICE, &[json!({"fn": "reinit", "handle": c["handle"]})]).remove(0);
    let again = ok(&r).clone();
    assert_eq!(again["handle"], c["handle"], "the claim is kept");
    assert_ne!(again["jail"]["known_hosts"], jail["known_hosts"], "a fresh host key");
    let login = Login::new(lab2.path(), ALICE, &again["jail"], "2");
    login.ok("test ! -e /root/before-reinit");

    ok(&lab1.as_user(ALICE, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0));
    assert_eq!(lab2.switch_power("lab2-rockpro64-1"), "off");
    assert!(lab2.stop_labd().success());
    let left = leftovers(lab2.path(), NET.uid_base, 1);
    assert!(left.is_empty(), "left behind: {left:?}");
}
