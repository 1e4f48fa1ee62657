//! Several hosts, one lab: labds keeping their claims in a real etcd
//! cluster (three members on loopback), each on its own labsim lab.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::{code, ok, Lab, ALICE, LABD};
use serde_json::{json, Value};

#[path = "cluster/doors.rs"]
mod doors;
use doors::two_hosts;

/// A labsim lab that is host `host` of the lab on `etcd`; `edit` may
/// rewrite its lab.toml. labd is not started.
fn host_lab(etcd: &Etcd, host: &str, boards: usize, edit: impl FnOnce(String) -> String) -> Lab {
    let urls = etcd.urls();
    Lab::create(boards, "rockpro64", &["--no-net", "--no-console", "--host", host, "--etcd", &urls], edit)
}

fn claim(lab: &Lab) -> Value {
    lab.req(json!({"fn": "claim", "class": "rockpro64"}))
}

/// The claim record etcd holds for `board`, parsed.
fn etcd_claim(etcd: &Etcd, board: &str) -> Option<Value> {
    etcd.get(&format!("/boardlab/claims/{board}")).map(|v| serde_json::from_str(&v).unwrap())
}

/// labd on `lab` must refuse to start; its output.
fn refused_start(lab: &Lab) -> String {
    let out = Command::new(LABD).arg("--config").arg(lab.path()).env("LABD_LOG", "info").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "labd started where it must not: {text}");
    text
}

#[test]
fn claims_are_kept_in_etcd_and_survive_the_hosts_own_state() {
    let etcd = Etcd::start(3);
    let mut lab1 = host_lab(&etcd, "lab1", 2, |t| t);
    let mut lab2 = host_lab(&etcd, "lab2", 2, |t| t);
    lab1.start_labd();
    lab2.start_labd();
    // Each host and its boards are registered.
    let hosts = etcd.keys("/boardlab/hosts/");
    assert_eq!(hosts, vec!["/boardlab/hosts/lab1", "/boardlab/hosts/lab2"]);
    let reg: Value = serde_json::from_str(&etcd.get("/boardlab/boards/lab2-rockpro64-1").unwrap()).unwrap();
    assert_eq!(reg, json!({"host": "lab2", "class": "rockpro64"}));
    assert_eq!(etcd.keys("/boardlab/boards/").len(), 4);

    // A claim is in etcd before its claimant hears of it.
    let r = claim(&lab1);
    let c = ok(&r).clone();
    let board = c["board"].as_str().unwrap().to_string();
    assert!(board.starts_with("lab1-"), "{board}");
    let rec = etcd_claim(&etcd, &board).expect("the claim is in etcd");
    assert_eq!(rec["handle"], c["handle"]);
    assert_eq!(rec["host"], "lab1");
    assert_eq!(rec["user"], "root");

    // renew rewrites the lease in etcd.
    let before = rec["expires_at"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    ok(&lab1.req(json!({"fn": "renew", "handle": c["handle"]})));
    let after = etcd_claim(&etcd, &board).unwrap()["expires_at"].as_i64().unwrap();
    assert!(after > before, "renew moved the lease in etcd: {before} -> {after}");

    // kill -9, and the host's own database gone too: the claim comes
    // back from etcd (the restart waits for the old lease to run out).
    lab1.kill9_labd();
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(lab1.path().join(f));
    }
    let t0 = Instant::now();
    lab1.start_labd();
    eprintln!("labd back as host lab1 after {:?}", t0.elapsed());
    let row = lab1.board(&board);
    assert_eq!(row["user"], "root", "the claim came back from etcd: {row}");
    ok(&lab1.req(json!({"fn": "power_on", "handle": c["handle"]})));
    assert_eq!(lab1.switch_power(&board), "on");

    // release removes it; lab2's boards were never touched.
    ok(&lab1.req(json!({"fn": "release", "handle": c["handle"]})));
    assert_eq!(etcd_claim(&etcd, &board), None);
    assert_eq!(lab1.switch_power(&board), "off");
    assert!(etcd.keys("/boardlab/claims/").is_empty());

    // A clean stop leaves the lab at once: the host key goes, the
    // boards' registrations stay.
    assert!(lab2.stop_labd().success());
    assert_eq!(etcd.keys("/boardlab/hosts/"), vec!["/boardlab/hosts/lab1"]);
    assert_eq!(etcd.keys("/boardlab/boards/").len(), 4);
}

/// Whoever else writes a board's claim into etcd (another host, an
/// operator with etcdctl), labd never grants that board over it: the
/// claim transaction only creates a key that is not there.
#[test]
fn a_board_claimed_in_etcd_is_never_granted_over_it() {
    let etcd = Etcd::start(3);
    let mut lab = host_lab(&etcd, "lab1", 1, |t| t);
    lab.start_labd();
    let other = r#"{"handle":"bl-00000000000000000000000000000000","user":"mallory","claimed_at":1,"expires_at":99999999999999,"host":"lab9"}"#;
    etcd.put("/boardlab/claims/lab1-rockpro64-1", other);
    let r = claim(&lab);
    assert_eq!(code(&r), "no_device_available", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("held by another claim"), "{r}");
    assert_eq!(etcd.get("/boardlab/claims/lab1-rockpro64-1").as_deref(), Some(other), "untouched");
    // Nothing changed here either: the board is free, off, and the lab whole.
    let row = lab.board("lab1-rockpro64-1");
    assert_eq!(row["state"], "available", "{row}");
    assert_eq!(lab.switch_power("lab1-rockpro64-1"), "off");
    // Once the record is gone, the board is claimable again.
    let out = etcd.ctl(&["del", "/boardlab/claims/lab1-rockpro64-1"]);
    assert!(out.status.success());
    let r = claim(&lab);
    assert_eq!(ok(&r)["board"], "lab1-rockpro64-1");
}

#[test]
fn board_names_and_host_names_are_unique_in_the_lab() {
    let etcd = Etcd::start(3);
    let mut a = host_lab(&etcd, "a", 1, |t| t.replace("[cluster]", "[cluster]\nhost_ttl = \"2s\""));
    a.start_labd();
    // Another host with a board named like one of a's.
    let b = host_lab(&etcd, "a", 1, |t| t.replace("host = \"a\"", "host = \"b\""));
    let text = refused_start(&b);
    assert!(text.contains("board names must be unique in the lab: a-rockpro64-1 is on host a"), "{text}");
    assert_eq!(etcd.keys("/boardlab/hosts/"), vec!["/boardlab/hosts/a"], "b left nothing behind");
    // A second labd calling itself a, while a runs.
    let twin = host_lab(&etcd, "a", 1, |t| t.replace("[cluster]", "[cluster]\nhost_ttl = \"2s\""));
    let text = refused_start(&twin);
    assert!(text.contains("another labd runs as host \"a\""), "{text}");
    // a is still whole.
    let r = claim(&a);
    assert_eq!(ok(&r)["board"], "a-rockpro64-1");
    assert_eq!(etcd.get("/boardlab/boards/a-rockpro64-1").unwrap(), r#"{"host":"a","class":"rockpro64"}"#);
}

#[test]
fn losing_quorum_fails_claims_as_unavailable_and_changes_nothing_until_it_returns() {
    let mut etcd = Etcd::start(3);
    let mut lab = host_lab(&etcd, "lab1", 2, |t| t);
    lab.start_labd();
    let held = ok(&claim(&lab)).clone();
    // One member of three gone: nothing changes for users.
    etcd.stop_member(0);
    let r = claim(&lab);
    let second = ok(&r).clone();
    ok(&lab.req(json!({"fn": "release", "handle": second["handle"]})));

    // Two gone: no quorum.
    etcd.stop_member(1);
    for (what, req) in [
        ("claim", json!({"fn": "claim", "class": "rockpro64"})),
        ("release", json!({"fn": "release", "handle": held["handle"]})),
        ("renew", json!({"fn": "renew", "handle": held["handle"]})),
    ] {
        let t0 = Instant::now();
        let r = lab.req(req);
        let took = t0.elapsed();
        assert_eq!(code(&r), "unavailable", "{what}: {r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("nothing changed"), "{r}");
        assert!(took < Duration::from_secs(5), "{what} failed after {took:?}, not within 5 s");
    }
    // Nothing changed: the claim stands, status answers, the other board is free.
    let s = lab.req(json!({"fn": "status"}));
    let rows = ok(&s).as_array().unwrap().clone();
    let mine = rows.iter().find(|b| b["board"] == held["board"]).unwrap();
    assert_eq!(mine["user"], "root", "the claim stands: {mine}");
    assert!(rows.iter().any(|b| b["board"] != held["board"] && b["state"] == "available"), "{rows:?}");

    // Quorum back: labd resumes without a restart.
    etcd.start_member(1);
    etcd.start_member(0);
    etcd.wait_healthy(Duration::from_secs(30));
    lab.wait_for(Duration::from_secs(15), "claims to work again", || {
        let r = claim(&lab);
        if r["ok"] == true {
            ok(&lab.req(json!({"fn": "release", "handle": r["result"]["handle"]})));
        }
        r["ok"] == true
    });
    // A write etcd did not answer may be applied once the quorum is back
    // (the failed claim's, the failed release's): the ledger makes the
    // record right, so etcd holds exactly the claim that stands.
    let board = held["board"].as_str().unwrap();
    lab.wait_for(Duration::from_secs(10), "etcd to hold exactly the claim that stands", || {
        etcd.keys("/boardlab/claims/") == vec![format!("/boardlab/claims/{board}")]
            && etcd_claim(&etcd, board).is_some_and(|c| c["handle"] == held["handle"])
    });
    assert_eq!(lab.board(board)["user"], "root");
    ok(&lab.req(json!({"fn": "release", "handle": held["handle"]})));
    assert!(etcd.keys("/boardlab/claims/").is_empty(), "{:?}", etcd.keys("/boardlab/claims/"));
}

fn status_rows(lab: &Lab) -> Vec<Value> {
    ok(&lab.req(json!({"fn": "status"}))).as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], board: &str) -> &'a Value {
    rows.iter().find(|r| r["board"] == board).unwrap_or_else(|| panic!("no {board} in {rows:?}"))
}

/// Every front door shows every host's boards with their host; a host
/// that is gone shows its boards offline (claims kept) within 10 s, and
/// back when it returns; without etcd the other hosts' boards are shown
/// as last seen, marked stale.
#[test]
fn every_front_door_shows_the_whole_lab() {
    let mut etcd = Etcd::start(3);
    let mut lab1 = host_lab(&etcd, "lab1", 2, |t| t);
    let urls = etcd.urls();
    let mut lab2 =
        Lab::create(2, "rockpro64,pine64", &["--no-net", "--no-console", "--host", "lab2", "--etcd", &urls], |t| {
            t.replace("[cluster]", "[cluster]\nhost_ttl = \"3s\"")
        });
    lab1.start_labd();
    lab2.start_labd();
    // Registered first, published a moment later: wait for both.
    lab1.wait_for(Duration::from_secs(10), "lab1 to see lab2's boards", || {
        let rows = status_rows(&lab1);
        rows.len() == 4 && rows.iter().all(|r| r["state"] == "available")
    });
    let rows = status_rows(&lab1);
    assert_eq!(row(&rows, "lab1-rockpro64-1")["host"], "lab1");
    assert_eq!(row(&rows, "lab2-pine64-1")["host"], "lab2");
    assert_eq!(row(&rows, "lab2-pine64-1")["state"], "available");
    // The classes of the whole lab.
    let classes = ok(&lab1.req(json!({"fn": "classes"}))).clone();
    assert_eq!(
        classes,
        json!([
            {"class": "pine64", "total": 1, "available": 1, "waiting": 0},
            {"class": "rockpro64", "total": 3, "available": 3, "waiting": 0}
        ])
    );

    // A claim on lab2 shows through lab1, --mine included.
    let c = ok(&lab2.req(json!({"fn": "claim", "class": "pine64"}))).clone();
    lab1.wait_for(Duration::from_secs(5), "lab1 to see lab2's claim", || {
        row(&status_rows(&lab1), "lab2-pine64-1")["user"] == "root"
    });
    let mine = ok(&lab1.req(json!({"fn": "status", "mine": true}))).clone();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["board"], "lab2-pine64-1");
    // With its handle, for its claimant only (from the claim etcd holds).
    assert_eq!(mine[0]["handle"], c["handle"], "{mine}");
    let h = c["handle"].as_str().unwrap();
    assert!(!lab1.req(json!({"fn": "status"})).to_string().contains(h), "the full status shows a handle");
    let theirs = lab1.as_user(ALICE, &[json!({"fn": "status", "mine": true}), json!({"fn": "status"})]);
    assert!(!serde_json::to_string(&theirs).unwrap().contains(h), "alice sees root's handle: {theirs:?}");

    // lab2 killed: its boards offline within 10 s, its claim kept.
    lab2.kill9_labd();
    let t0 = Instant::now();
    lab1.wait_for(Duration::from_secs(10), "lab2's boards to show offline", || {
        let rows = status_rows(&lab1);
        ["lab2-pine64-1", "lab2-rockpro64-1"].iter().all(|b| row(&rows, b)["state"] == "offline")
    });
    eprintln!("lab2's boards offline after {:?}", t0.elapsed());
    let rows = status_rows(&lab1);
    let gone = row(&rows, "lab2-pine64-1");
    assert_eq!(gone["user"], "root", "the claim is kept: {gone}");
    assert_eq!(gone["expires_at"], c["expires_at"]);
    assert!(gone["fault"].as_str().unwrap().contains("lab2"), "{gone}");
    let classes = ok(&lab1.req(json!({"fn": "classes", "available": true}))).clone();
    assert_eq!(
        classes,
        json!([{"class": "rockpro64", "total": 3, "available": 2, "waiting": 0}]),
        "offline boards are not available"
    );

    // Back: its boards and its claim.
    lab2.start_labd();
    lab1.wait_for(Duration::from_secs(10), "lab2's boards back", || {
        let rows = status_rows(&lab1);
        row(&rows, "lab2-pine64-1")["state"] == "claimed" && row(&rows, "lab2-rockpro64-1")["state"] == "available"
    });

    // etcd without quorum: the other hosts' boards as last seen, stale;
    // this host's own boards as they are.
    etcd.stop_member(0);
    etcd.stop_member(1);
    lab1.wait_for(Duration::from_secs(10), "lab2's boards to be marked stale", || {
        let rows = status_rows(&lab1);
        row(&rows, "lab2-pine64-1")["stale"] == true && row(&rows, "lab2-pine64-1")["user"] == "root"
    });
    let rows = status_rows(&lab1);
    assert_eq!(row(&rows, "lab1-rockpro64-1").get("stale"), None);
    etcd.start_member(0);
    etcd.start_member(1);
    lab1.wait_for(Duration::from_secs(15), "the view to be fresh again", || {
        status_rows(&lab1).iter().all(|r| r.get("stale").is_none())
    });
}

/// `claim --wait` queues in one FIFO per class for the whole lab: waiters
/// at different front doors are served in the order they came, a claim
/// that does not wait does not jump the queue, and a waiter that times
/// out leaves it.
#[test]
fn one_queue_per_class_for_the_whole_lab() {
    use common::{ALICE, BOB};
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let (lab1, lab2) = two_hosts(&etcd, ca.path(), false);
    let lab1 = std::sync::Arc::new(lab1);
    let lab2 = std::sync::Arc::new(lab2);
    // The lab's one pine64 (on lab2), held by alice.
    let a = ok(&lab2.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64"})]).remove(0)).clone();
    // bob waits at lab1, then root at lab2.
    let bob = {
        let l = lab1.clone();
        std::thread::spawn(move || l.as_user(BOB, &[json!({"fn": "claim", "class": "pine64", "wait": 60})]).remove(0))
    };
    lab1.wait_for(Duration::from_secs(5), "bob's ticket", || etcd.keys("/boardlab/queue/pine64/").len() == 1);
    let root = {
        let l = lab2.clone();
        std::thread::spawn(move || l.req(json!({"fn": "claim", "class": "pine64", "wait": 60})))
    };
    lab1.wait_for(Duration::from_secs(5), "root's ticket", || etcd.keys("/boardlab/queue/pine64/").len() == 2);
    // No jumping the queue (once lab1's view has both tickets).
    let mut r = Value::Null;
    lab1.wait_for(Duration::from_secs(5), "lab1's view to count both waiters", || {
        r = lab1.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64"})]).remove(0);
        r["error"]["message"].as_str().is_some_and(|m| m.contains("2 claims wait"))
    });
    assert_eq!(code(&r), "no_device_available", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("2 claims wait"), "{r}");
    // Each waiter learns its own place, whichever door it asks.
    assert_eq!(
        ok(&lab2.as_user(BOB, &[json!({"fn": "queue"})]).remove(0)),
        &json!([{"class": "pine64", "place": 1, "waiting": 2}])
    );
    assert_eq!(ok(&lab1.req(json!({"fn": "queue"}))), &json!([{"class": "pine64", "place": 2, "waiting": 2}]));
    // Both doors' `classes` count the lab's waiters.
    for l in [&lab1, &lab2] {
        l.wait_for(Duration::from_secs(5), "the door's classes to count both waiters", || {
            let c = l.req(json!({"fn": "classes"}));
            ok(&c).as_array().unwrap().iter().any(|c| c["class"] == "pine64" && c["waiting"] == 2)
        });
    }
    // A waiter that gives up leaves the queue.
    let r = lab2.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64", "wait": 1})]).remove(0);
    assert_eq!(code(&r), "timeout", "{r}");
    lab1.wait_for(Duration::from_secs(5), "the timed-out ticket to go", || {
        etcd.keys("/boardlab/queue/pine64/").len() == 2
    });

    // alice releases: bob (first, at the other door) gets it; root waits on.
    ok(&lab2.as_user(ALICE, &[json!({"fn": "release", "handle": a["handle"]})]).remove(0));
    let b = bob.join().unwrap();
    let b = ok(&b).clone();
    assert_eq!((b["board"].as_str(), b["user"].as_str()), (Some("lab2-pine64-1"), Some(BOB)));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!root.is_finished(), "root came second and still waits");
    lab1.wait_for(Duration::from_secs(5), "bob's ticket to go", || etcd.keys("/boardlab/queue/pine64/").len() == 1);
    // bob releases through lab1: root gets it.
    ok(&lab1.as_user(BOB, &[json!({"fn": "release", "handle": b["handle"]})]).remove(0));
    let r = root.join().unwrap();
    assert_eq!(ok(&r)["board"], "lab2-pine64-1");
    assert_eq!(ok(&r)["user"], "root");
    lab1.wait_for(Duration::from_secs(5), "the queue to empty", || etcd.keys("/boardlab/queue/").is_empty());
    ok(&lab2.req(json!({"fn": "release", "handle": r["result"]["handle"]})));

    // A ticket left behind (its door could not remove it) blocks nobody
    // past its waiter's deadline.
    let stale = format!(r#"{{"door":"lab9","deadline_ms":{}}}"#, 1_000);
    etcd.put("/boardlab/queue/pine64/lab9-1", &stale);
    let mut r = Value::Null;
    lab1.wait_for(Duration::from_secs(5), "lab1's view to have the queue as etcd has it", || {
        r = lab1.req(json!({"fn": "claim", "class": "pine64"}));
        r["ok"] == true
    });
    assert_eq!(ok(&r)["board"], "lab2-pine64-1", "{r}");
}

/// Two hosts whose jails would hand out the same addresses (one `[jail]
/// pool`, or `ipv6_pool`s that overlap): the second is refused at start,
/// saying which and whose, and leaves nothing in etcd; with pools of its
/// own it joins.
#[test]
fn the_hosts_jail_pools_do_not_overlap() {
    use common::jails::{jail_lab_with, one_at_a_time, JailNet};
    const A: JailNet = JailNet { pool: "10.197.44.0/24", board_net: "172.28.80.0/20", uid_base: 12_800_000 };
    const B: JailNet = JailNet { pool: "10.197.45.0/24", board_net: "172.28.96.0/20", uid_base: 13_100_000 };
    let _turn = one_at_a_time();
    let etcd = Etcd::start(3);
    let ca = tempfile::tempdir().unwrap();
    let urls = etcd.urls();
    let ca_dir = ca.path().to_str().unwrap();
    let host = |name: &str, net: &JailNet, v6: &str| {
        let flags = ["--host", name, "--etcd", &urls, "--ca", ca_dir];
        jail_lab_with(1, "rockpro64", &flags, net, &format!("ipv6_pool = \"{v6}\""), "")
    };
    let mut lab1 = host("lab1", &A, "2001:db8:4500::/48");
    lab1.start_labd();
    let same_v4 = host("lab2", &A, "2001:db8:4501::/48");
    let text = refused_start(&same_v4);
    assert!(
        text.contains("this host's jail.pool 10.197.44.0/24 overlaps host lab1's jail.pool 10.197.44.0/24"),
        "{text}"
    );
    let same_v6 = host("lab3", &B, "2001:db8:4500:100::/56");
    let text = refused_start(&same_v6);
    assert!(
        text.contains("jail.ipv6_pool 2001:db8:4500:100::/56 overlaps host lab1's jail.ipv6_pool 2001:db8:4500::/48"),
        "{text}"
    );
    assert_eq!(etcd.keys("/boardlab/hosts/"), vec!["/boardlab/hosts/lab1"], "the refused hosts left nothing");
    // Pools of its own: it joins, and each host sees the other's board.
    drop((same_v4, same_v6));
    let mut lab4 = host("lab4", &B, "2001:db8:4501::/48");
    lab4.start_labd();
    lab1.wait_for(Duration::from_secs(10), "lab1 to see lab4's board", || status_rows(&lab1).len() == 2);
}
