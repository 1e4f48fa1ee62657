//! The lab's per-user limits end to end: `[policy] max_claims_per_user`
//! and `[lease] max_total`, refused with `limit_reached` and a message
//! naming the limit, through labd and labcli, operators included, and
//! still in force after `kill -9`.

mod common;

use common::*;
use serde_json::{json, Value};

fn claim(lab: &Lab, user: &str, extra: Value) -> Value {
    let mut req = json!({"fn": "claim", "class": "rockpro64"});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            req[k] = v;
        }
    }
    lab.as_user(user, &[req]).remove(0)
}

#[test]
fn claims_per_user_and_total_hold_time_are_limited() {
    let mut lab = Lab::create(5, "rockpro64", &["--no-net", "--no-console"], |t| {
        let t = t
            .replace("default = \"4h\"", "default = \"1m\"")
            .replace("max = \"1d\"", "max = \"2m\"\nmax_total = \"2m\"");
        format!("{t}\n[policy]\nmax_claims_per_user = 2\n")
    });
    lab.start_labd();

    let a1 = claim(&lab, ALICE, json!({}));
    let h1 = ok(&a1)["handle"].as_str().unwrap().to_string();
    ok(&claim(&lab, ALICE, json!({})));
    let before = lab.snapshot();
    let r = claim(&lab, ALICE, json!({}));
    assert_eq!(code(&r), "limit_reached", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("policy.max_claims_per_user is 2"), "{msg}");
    // Waiting is a claim too, refused at once rather than after the wait.
    let t0 = std::time::Instant::now();
    assert_eq!(code(&claim(&lab, ALICE, json!({"wait": 30}))), "limit_reached");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(lab.snapshot(), before, "a refusal changes nothing");
    // labcli: exit 1, and the message names the limit.
    let out = lab.labcli_as(ALICE).args(["claim", "rockpro64"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_claims_per_user") && err.contains("limit_reached"), "{err}");

    // Others have their own count; operators are held to it too.
    ok(&claim(&lab, BOB, json!({})));
    ok(&lab.req(json!({"fn": "claim", "class": "rockpro64"})));
    ok(&lab.req(json!({"fn": "claim", "class": "rockpro64"})));
    let r = lab.req(json!({"fn": "claim", "class": "rockpro64"}));
    assert_eq!(code(&r), "limit_reached", "root too: {r}");

    // Total hold time: 2m from the grant, whatever the renewals.
    let expires = lab.board(ok(&a1)["board"].as_str().unwrap())["expires_at"].clone();
    let r = lab.as_user(ALICE, &[json!({"fn": "renew", "handle": h1, "lease": 120})]).remove(0);
    assert_eq!(code(&r), "limit_reached", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("lease.max_total is 2m") && msg.contains("at most"), "{msg}");
    assert_eq!(lab.board(ok(&a1)["board"].as_str().unwrap())["expires_at"], expires, "the lease is as it was");
    let r = lab.as_user(ALICE, &[json!({"fn": "renew", "handle": h1, "lease": 90})]).remove(0);
    ok(&r);

    // After kill -9 the claims come back and still count.
    lab.kill9_labd();
    lab.start_labd();
    assert_eq!(code(&claim(&lab, ALICE, json!({}))), "limit_reached");
    // A release gives the place back.
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": h1})]).remove(0));
    ok(&claim(&lab, ALICE, json!({"wait": 20})));
}
