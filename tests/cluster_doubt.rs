//! Several hosts, one lab: a request another host took, and whose answer
//! was lost because that host died (`LABD_FAULT_DIE`, a SIGKILL of
//! itself at a chosen point). The front door never says "nothing
//! changed" unless that is known, and nothing is lost: a claim whose
//! answer was lost is found with its handle in `status --mine`.

mod common;

use std::time::Duration;

use common::etcd::Etcd;
use common::{code, ok, Lab, ALICE};
use serde_json::{json, Value};

/// lab1 with one rockpro64, lab2 with the lab's only pine64; lab2's labd
/// is not started.
fn hosts(etcd: &Etcd, ca: &std::path::Path) -> (Lab, Lab) {
    let urls = etcd.urls();
    let ca = ca.to_str().unwrap();
    let ttl = |t: String| t.replace("[cluster]", "[cluster]\nhost_ttl = \"2s\"");
    let flags = |h| vec!["--no-net", "--no-console", "--host", h, "--etcd", &urls, "--ca", ca];
    let mut lab1 = Lab::create(1, "rockpro64", &flags("lab1"), ttl);
    let lab2 = Lab::create(1, "pine64", &flags("lab2"), ttl);
    lab1.start_labd();
    (lab1, lab2)
}

/// (Re)starts lab2's labd, dying at `die` if given, and waits until lab1
/// can reach it.
fn start_lab2(lab1: &Lab, lab2: &mut Lab, die: Option<&str>) {
    lab2.kill9_labd();
    match die {
        Some(point) => lab2.start_labd_env(&[("LABD_FAULT_DIE", point)]),
        None => lab2.start_labd(),
    }
    lab1.wait_for(Duration::from_secs(20), "lab1 to reach lab2", || {
        let r = lab1.as_user(ALICE, &[json!({"fn": "status"})]).remove(0);
        r["result"]
            .as_array()
            .is_some_and(|a| a.iter().any(|b| b["board"] == "lab2-pine64-1" && b["state"] != "offline"))
    });
}

fn mine(lab: &Lab) -> Vec<Value> {
    ok(&lab.as_user(ALICE, &[json!({"fn": "status", "mine": true})]).remove(0)).as_array().unwrap().clone()
}

fn claim_pine64(lab1: &Lab) -> Value {
    lab1.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64", "power": true})]).remove(0)
}

#[test]
fn a_claim_whose_answer_was_lost_is_in_doubt_and_found_with_its_handle() {
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let (lab1, mut lab2) = hosts(&etcd, ca.path());
    start_lab2(&lab1, &mut lab2, Some("claim_kept"));

    // lab2 keeps the claim in etcd, then dies before it answers.
    let r = claim_pine64(&lab1);
    assert_eq!(code(&r), "in_doubt", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("host lab2 stopped answering after it took the claim"), "{msg}");
    assert!(msg.contains("status --mine"), "{msg}");
    assert_eq!(etcd.keys("/boardlab/claims/"), vec!["/boardlab/claims/lab2-pine64-1"]);

    // Back, lab2 has the claim from etcd; alice finds it with its handle
    // and releases it: nothing left behind.
    start_lab2(&lab1, &mut lab2, None);
    let found = mine(&lab1);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["board"], "lab2-pine64-1");
    let handle = found[0]["handle"].as_str().expect("status --mine shows the handle").to_string();
    ok(&lab1.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0));
    assert!(etcd.keys("/boardlab/claims/").is_empty());
    assert!(mine(&lab1).is_empty());
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "off");
}

#[test]
fn a_release_whose_answer_was_lost_is_answered_as_etcd_knows_it() {
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let (lab1, mut lab2) = hosts(&etcd, ca.path());

    // lab2 dies as it is asked, before it does anything: the claim stands,
    // and the front door says so (not "it may have been done").
    start_lab2(&lab1, &mut lab2, Some("release_asked"));
    let c = ok(&claim_pine64(&lab1)).clone();
    let r = lab1.as_user(ALICE, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0);
    assert_eq!(code(&r), "unavailable", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("stopped answering before it released the claim on lab2-pine64-1, which stands"), "{msg}");
    assert_eq!(etcd.keys("/boardlab/claims/"), vec!["/boardlab/claims/lab2-pine64-1"]);

    // lab2 removes the claim from etcd, then dies before it answers: the
    // release is done, and said so, with what is not known.
    start_lab2(&lab1, &mut lab2, Some("release_kept"));
    assert_eq!(mine(&lab1)[0]["handle"], c["handle"], "the claim came back with lab2");
    let r = lab1.as_user(ALICE, &[json!({"fn": "release", "handle": c["handle"]})]).remove(0);
    let done = ok(&r);
    assert_eq!(done["board"], "lab2-pine64-1");
    assert_eq!(done["released"], true);
    assert_eq!(done["power"], "unknown");
    assert!(done["warning"].as_str().unwrap().contains("host lab2 stopped answering after it released the claim"));
    assert!(etcd.keys("/boardlab/claims/").is_empty());

    // Back, lab2 holds no claim and its board is off and free.
    start_lab2(&lab1, &mut lab2, None);
    assert!(mine(&lab1).is_empty());
    lab1.wait_for(Duration::from_secs(10), "the board free in lab1's view", || {
        let r = lab1.as_user(ALICE, &[json!({"fn": "status"})]).remove(0);
        r["result"]
            .as_array()
            .is_some_and(|a| a.iter().any(|b| b["board"] == "lab2-pine64-1" && b["state"] == "available"))
    });
    assert_eq!(lab2.switch_power("lab2-pine64-1"), "off");
    let r = lab1.as_user(ALICE, &[json!({"fn": "renew", "handle": c["handle"]})]).remove(0);
    assert!(["not_claimed", "claim_ended"].contains(&code(&r)), "{r}");
}
