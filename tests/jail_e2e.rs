//! Claims with jails, end to end through labd: a labsim board netboots from
//! its claimant's jail, the claimant logs in with OpenSSH (host key checked
//! against the claim reply), uses labcli inside, reinits, survives labd
//! restarts, and release leaves nothing behind. (tests/jail.rs covers the
//! jail's isolation and NAT in depth.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::jails::{jail_lab, netns_list, JailNet, Login};
use common::*;
use serde_json::{json, Value};

fn log_of(lab: &Lab, handle: &str) -> String {
    let r = lab.req(json!({"fn": "console_log", "handle": handle}));
    r["result"]["log"].as_str().unwrap_or("").to_string()
}

#[test]
fn a_claim_gets_a_working_jail_and_release_leaves_nothing() {
    let _turn = common::jails::one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.197.0.0/24", board_net: "172.28.0.0/20", uid_base: 500_000 };
    let mut lab = jail_lab(2, "rockpro64", &NET, "", "");
    let dir = lab.path().to_path_buf();
    lab.start_labd();

    // Claim with power: the reply carries the jail.
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    let claim = ok(&r).clone();
    let handle = claim["handle"].as_str().unwrap().to_string();
    let board = claim["board"].as_str().unwrap().to_string();
    let jail = claim["jail"].clone();
    assert!(jail["ip"].is_string() && jail["ssh"].as_str().unwrap().starts_with("ssh root@"), "{claim}");
    let netns = format!("blj0-{board}");
    assert!(netns_list().contains(&netns), "the jail's namespace exists");

    // The board boots from the jail: a lease from the jail's dnsmasq.
    lab.wait_for(Duration::from_secs(20), "a DHCP lease from the jail", || {
        log_of(&lab, &handle).contains("DHCP: lease 172.28.")
    });

    // Log in, checking the host key from the claim reply.
    let login = Login::new(&dir, ALICE, &jail, "1");
    assert_eq!(login.ok("id -u").trim(), "0");
    let map = login.ok("cat /proc/self/uid_map");
    assert!(map.split_whitespace().collect::<Vec<_>>() == ["0", "500000", "65536"], "{map}");
    assert!(login.run("touch /usr/x").status.success(), "the jail's /usr is its own layer");
    assert!(!Path::new("/usr/x").exists(), "the host's /usr is untouched");
    let procs = login.ok("ls /proc | grep -c '^[0-9]'");
    assert!(procs.trim().parse::<u32>().unwrap() < 20, "only the jail's processes are visible: {procs}");
    // labcli inside works on the jail's own claim without a handle ...
    let w: Value = serde_json::from_str(&login.ok("labcli --json whoami")).unwrap();
    assert_eq!(w["user"], ALICE);
    assert_eq!(w["admin"], false);
    // ... and on nothing else.
    let o = login.run("labcli release bl-0123456789abcdef0123456789abcdef");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("handle_mismatch"));
    // The user's boot file, fetched over TFTP after a power cycle from inside.
    login.ok("printf 'alice-boot-file' > /tftpboot/boot.scr && labcli power-cycle");
    lab.wait_for(Duration::from_secs(20), "the board to fetch the user's file", || {
        log_of(&lab, &handle).contains("TFTP: fetched boot.scr (15 bytes")
    });

    // Reinit: same claim, a clean jail with a fresh host key.
    login.ok("touch /root/before-reinit");
    let r = lab.as_user(ALICE, &[json!({"fn": "reinit", "handle": handle})]).remove(0);
    let again = ok(&r).clone();
    assert_eq!(again["handle"], handle.as_str(), "the claim is kept");
    assert_ne!(again["jail"]["known_hosts"], jail["known_hosts"], "a fresh host key");
    assert_eq!(login.run("true").status.code(), Some(255), "the old host key no longer matches");
    let login = Login::new(&dir, ALICE, &again["jail"], "2");
    login.ok("test ! -e /root/before-reinit && test ! -e /tftpboot/boot.scr");

    // kill -9 labd: the jail keeps running and is adopted.
    login.ok("touch /root/marker");
    lab.kill9_labd();
    login.ok("test -e /root/marker");
    lab.start_labd();
    lab.wait_for(Duration::from_secs(10), "the claim to be back", || lab.board(&board)["user"] == ALICE);
    let w: Value = serde_json::from_str(&login.ok("labcli --json whoami")).unwrap();
    assert_eq!(w["user"], ALICE, "the new labd serves the adopted jail's socket");
    // The adopted claim is whole: its jail (renew from inside answers it),
    // its lease, and its console (the relay into the jail and labcli
    // console inside both reach the board, which echoes).
    let before: Value =
        ok(&lab.as_user(ALICE, &[json!({"fn": "renew", "handle": handle, "lease": 60})]).remove(0)).clone();
    let renewed: Value = serde_json::from_str(&login.ok("labcli --json renew")).unwrap();
    assert_eq!(renewed["jail"], again["jail"], "renew in the adopted jail carries its jail: {renewed}");
    assert_eq!(renewed["handle"], handle.as_str());
    assert!(renewed["expires_at"].as_str() > before["expires_at"].as_str(), "the default lease replaced the short one");
    login.ok("printf 'relay-after-restart\\r' > /dev/console-board");
    lab.wait_for(Duration::from_secs(10), "the adopted jail's console to reach the board", || {
        log_of(&lab, &handle).contains("relay-after-restart")
    });
    // The end of input does not end a session: `~.` (at a line start) does.
    let out = login.ok("(printf 'inside-console-7\\r'; sleep 2; printf '~.') | timeout 10 labcli console");
    assert!(out.contains("inside-console-7"), "labcli console in the adopted jail: {out:?}");

    // SIGTERM: the jail stops with labd (nothing left running) and comes
    // back, data and host key kept, when labd starts again.
    assert!(lab.stop_labd().success());
    assert!(!netns_list().contains(&netns), "labd's stop removed the jail's namespace");
    lab.start_labd();
    lab.wait_for(Duration::from_secs(20), "the jail to be rebuilt", || {
        login.run("test -e /root/marker").status.success()
    });
    let r = lab.as_user(ALICE, &[json!({"fn": "renew", "handle": handle})]).remove(0);
    assert_eq!(ok(&r)["jail"], again["jail"], "the rebuilt jail is the claim's, host key kept");

    // Release: nothing is left behind.
    let r = lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0);
    ok(&r);
    assert!(!netns_list().contains(&netns), "namespace left behind");
    let links = String::from_utf8_lossy(&Command::new("ip").args(["-br", "link"]).output().unwrap().stdout).to_string();
    assert!(!links.contains("blju0"), "uplink left behind: {links}");
    let nft =
        String::from_utf8_lossy(&Command::new("nft").args(["list", "tables"]).output().unwrap().stdout).to_string();
    assert!(!nft.contains("boardlab_j0"), "nft table left behind: {nft}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&format!("{}/jails", dir.display())), "mounts left behind");
    assert!(!dir.join(format!("jails/{board}")).exists(), "the claim's data is wiped");
    let iface = std::fs::read_to_string(dir.join(format!("boards.d/{board}.toml"))).unwrap();
    let iface = iface.lines().find(|l| l.starts_with("network")).unwrap().split('"').nth(1).unwrap().to_string();
    assert!(links.contains(&iface), "the board's link is back on the host: {links}");
    assert_eq!(login.run("true").status.code(), Some(255), "the jail is gone");
}
