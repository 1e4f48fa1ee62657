//! SNMPv3 end to end: labd powers boards through a real net-snmp snmpd
//! that takes writes only over SNMPv3 (authPriv, SHA and AES; `labsim up
//! --snmpv3`), refuses v2c writes, and refuses a wrong key with an error
//! that says so; the keys appear nowhere labd shows or logs.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::ports::free_port;
use common::*;
use serde_json::json;

const AUTH_KEY: &str = "labsim-auth-secret";
const PRIV_KEY: &str = "labsim-priv-secret";

fn v3_lab(edit: impl FnOnce(String) -> String) -> Lab {
    let mut lab = Lab::create(2, "rockpro64", &["--snmpv3", "--no-net", "--no-console"], edit);
    lab.start_labd();
    lab
}

/// An SNMP set with net-snmp's own snmpset; its output, and whether it
/// worked.
fn snmpset(lab: &Lab, auth: &[&str], port: u32, value: u32) -> (bool, String) {
    let out = Command::new("snmpset")
        .args(auth)
        .args(["-On", "-t", "1", "-r", "0"])
        .arg(format!("127.0.0.1:{}", lab.snmp_port()))
        .arg(format!(".1.3.6.1.2.1.105.1.1.1.3.1.{port}"))
        .args(["i", &value.to_string()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn labd_powers_boards_over_snmpv3_and_the_switch_refuses_v2c_writes() {
    let web = free_port();
    let lab = v3_lab(|t| format!("{t}\n[web]\nlisten = \"127.0.0.1:{web}\"\n"));
    let text = std::fs::read_to_string(lab.path().join("lab.toml")).unwrap();
    assert!(text.contains("version = 3"), "{text}");

    // A claim with power: the port is on, as the switch itself says.
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    let board = ok(&r)["board"].as_str().unwrap().to_string();
    let handle = ok(&r)["handle"].as_str().unwrap().to_string();
    assert_eq!(ok(&r)["power"], "on");
    assert_eq!(lab.switch_power(&board), "on");
    let r = lab.as_user(ALICE, &[json!({"fn": "power_cycle", "handle": handle})]).remove(0);
    assert_eq!(ok(&r)["power"], "on");
    let r = lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0);
    assert_eq!(ok(&r)["power"], "off");
    assert_eq!(lab.switch_power(&board), "off");

    // The switch takes no v1/v2c write, with the old write community or
    // the read one; the port is as it was.
    let port = lab.board_port(&board);
    for auth in [["-v2c", "-c", "private"], ["-v2c", "-c", "public"], ["-v1", "-c", "public"]] {
        let (done, out) = snmpset(&lab, &auth, port, 1);
        assert!(!done, "{auth:?} wrote: {out}");
    }
    assert_eq!(lab.switch_power(&board), "off");
    // net-snmp's own v3 client with the same user and keys does write.
    let v3 = ["-v3", "-l", "authPriv", "-u", "labsim", "-a", "SHA", "-A", AUTH_KEY, "-x", "AES", "-X", PRIV_KEY];
    let (done, out) = snmpset(&lab, &v3, port, 2);
    assert!(done, "{out}");

    // The keys are nowhere labd shows or writes things.
    let status = lab.req(json!({"fn": "status"})).to_string();
    let dump = lab.req(json!({"fn": "dump"})).to_string();
    let history = lab.req(json!({"fn": "history", "limit": 10000})).to_string();
    let addr: SocketAddr = format!("127.0.0.1:{web}").parse().unwrap();
    lab.wait_for(Duration::from_secs(20), "the status page", || std::net::TcpStream::connect(addr).is_ok());
    let metrics = http::get(addr, "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("boardlab_power_operations_total"), "{}", metrics.body);
    let page = http::get(addr, "/", None).body;
    for (what, text) in
        [("status", &status), ("dump", &dump), ("history", &history), ("metrics", &metrics.body), ("page", &page)]
    {
        for key in [AUTH_KEY, PRIV_KEY] {
            assert!(!text.contains(key), "{what} shows a key: {text}");
        }
    }
    let check = Command::new(LABD).args(["check", "--config"]).arg(lab.path()).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let log = lab.log();
    for key in [AUTH_KEY, PRIV_KEY] {
        assert!(!log.contains(key), "the log shows a key");
        assert!(!String::from_utf8_lossy(&check.stdout).contains(key));
    }
}

/// labd with `key` replaced by `wrong` in lab.toml: every board faulted,
/// with a fault that says what to check; the wrong key not in the log.
fn wrong_key_is_refused(key: &str, wrong: &str, says: &str) {
    let lab = v3_lab(|t| t.replace(key, wrong));
    // Both boards: a claim must not find one whose first read is still
    // under way.
    lab.wait_for(Duration::from_secs(20), "both boards' faults", || {
        ["rockpro64-1", "rockpro64-2"].iter().all(|b| lab.board(b)["state"] == "faulted")
    });
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    assert_eq!(code(&r), "no_device_available", "{r}");
    let b = lab.board("rockpro64-1");
    assert_eq!(b["state"], "faulted", "{b}");
    let fault = b["fault"].as_str().unwrap();
    assert!(fault.contains("refused SNMPv3 user \"labsim\""), "{fault}");
    assert!(fault.contains(says), "{fault}");
    assert!(!fault.contains(wrong) && !lab.log().contains(wrong), "the key is never shown");
    assert_eq!(lab.switch_power("rockpro64-1"), "off", "nothing was switched");
}

#[test]
fn a_wrong_auth_key_is_refused_with_a_clear_error() {
    wrong_key_is_refused(AUTH_KEY, "not-the-auth-key", "wrong auth_key or priv_key");
}

#[test]
fn a_wrong_priv_key_is_refused_with_a_clear_error() {
    wrong_key_is_refused(PRIV_KEY, "not-the-priv-key", "wrong priv_key?");
}

#[test]
fn a_v2c_labd_cannot_power_the_v3_switch() {
    // The same switch, labd configured the old way.
    let lab = v3_lab(|t| {
        let start = t.find("version = 3").unwrap();
        let end = t.find("timeout").unwrap();
        format!("{}community = \"private\"\nversion = \"2c\"\n{}", &t[..start], &t[end..])
    });
    // Both boards: a claim must not find one whose first read is still
    // under way.
    lab.wait_for(Duration::from_secs(20), "both boards' faults", || {
        ["rockpro64-1", "rockpro64-2"].iter().all(|b| lab.board(b)["state"] == "faulted")
    });
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    assert_eq!(code(&r), "no_device_available", "{r}");
    assert_eq!(lab.switch_power("rockpro64-1"), "off");
}
