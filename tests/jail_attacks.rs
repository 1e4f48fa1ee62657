//! The jail boundary, attacked the way a claimant who is root in their
//! own jail would: each test does what the attacker did and asserts that
//! the attack fails and that the lab is still whole afterwards.

mod common;

use std::time::Duration;

use common::jails::{jail_lab, leftovers, one_at_a_time, JailNet, Login};
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
