//! `labcli history` end to end: what force-release and maintenance record
//! (whom they affected, the operator's reason), what everyone may read,
//! hostile reasons refused with nothing changed, and old events pruned
//! after `[events] keep`, also across a `kill -9`, without stalling claims.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn history(lab: &Lab, user: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["history"];
    all.extend_from_slice(args);
    let out = lab.cli_as(user, &all);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

#[test]
fn force_release_and_maintenance_say_whom_and_why_to_everyone() {
    let mut lab = Lab::up(2, "rockpro64", |t| t);
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    let board = ok(&r)["board"].as_str().unwrap().to_string();
    let handle = ok(&r)["handle"].as_str().unwrap().to_string();
    let other = if board == "rockpro64-1" { "rockpro64-2" } else { "rockpro64-1" };

    // Hostile reasons: terminal escapes, a second line, a bell, bidi and
    // invisible characters, a huge one. Each refused; nothing changed.
    let before = lab.snapshot();
    let huge = "x".repeat(50_000);
    for reason in [
        "\u{1b}[2J\u{1b}[Hall boards are yours",
        "\u{1b}]0;pwned\u{7}",
        "fine\nFAKE 2026-01-01 force_release by alice",
        "carriage\rreturn",
        "\u{9b}31m",
        "\u{202e}gnp.exe",
        "zero\u{200b}width",
        "   ",
        huge.as_str(),
    ] {
        for req in [
            json!({"fn": "force_release", "board": board, "reason": reason}),
            json!({"fn": "maintenance", "board": other, "on": true, "reason": reason}),
        ] {
            let r = lab.req(req.clone());
            assert_eq!(code(&r), "bad_request", "{req}: {r}");
        }
    }
    assert_eq!(lab.snapshot(), before, "a refused reason changes nothing, not even the event log");
    let out = lab.labcli_as("root").args(["force-release", &board, "--reason", "\u{1b}[31mred"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error, nothing sent");
    assert!(String::from_utf8_lossy(&out.stderr).contains("control or invisible characters"));
    assert_eq!(lab.board(&board)["user"], ALICE);

    // Not an operator: refused whatever the reason.
    let r = lab.as_user(BOB, &[json!({"fn": "force_release", "board": board, "reason": "mine now"})]).remove(0);
    assert_eq!(code(&r), "permission_denied");

    let out =
        lab.labcli_as("root").args(["force-release", &board, "--reason", "PSU swap, ticket #42"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = lab.req(json!({"fn": "maintenance", "board": other, "on": true, "reason": "cable loose"}));
    ok(&r);
    // The claimant learns why.
    let r = lab.as_user(ALICE, &[json!({"fn": "renew", "handle": handle})]).remove(0);
    assert_eq!(code(&r), "claim_ended");
    assert!(r["error"]["message"].as_str().unwrap().contains("force-released by root (PSU swap, ticket #42)"), "{r}");

    // Bob sees it all: who, whose claim, why; never a handle.
    let out = lab.cli_as(BOB, &["history"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains(&handle) && !text.contains("bl-"), "no handle in history: {text}");
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let fr = all.iter().find(|e| e["kind"] == "force_release").expect("force_release event");
    assert_eq!((&fr["board"], &fr["user"], &fr["subject"]), (&json!(board), &json!("root"), &json!(ALICE)));
    assert_eq!(fr["detail"], "PSU swap, ticket #42");
    let m = all.iter().find(|e| e["kind"] == "maintenance_on").expect("maintenance_on event");
    assert_eq!((&m["board"], &m["user"], &m["detail"]), (&json!(other), &json!("root"), &json!("cable loose")));
    let claim_at = all.iter().position(|e| e["kind"] == "claim").unwrap();
    assert!(claim_at < all.iter().position(|e| e["kind"] == "force_release").unwrap(), "oldest first");

    // Filters.
    let mine = history(&lab, BOB, &["--user", ALICE]);
    assert!(mine.iter().any(|e| e["kind"] == "force_release"), "events about alice's claims: {mine:?}");
    assert!(mine.iter().all(|e| e["user"] == ALICE || e["subject"] == ALICE), "{mine:?}");
    let b = history(&lab, BOB, &["--board", other]);
    assert!(!b.is_empty() && b.iter().all(|e| e["board"] == other), "{b:?}");
    assert_eq!(history(&lab, BOB, &["--kind", "force_release", "--since", "1h"]).len(), 1);
    let two = history(&lab, BOB, &["--limit", "2"]);
    assert_eq!(two.len(), 2);
    assert_eq!(two[1], all[all.len() - 1], "the newest");
    assert!(history(&lab, BOB, &["--user", "nobody-at-all"]).is_empty());

    // The human table names the claimant and cannot be made to lie.
    let out = lab.labcli_as(BOB).args(["history", "--kind", "force_release"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("TIME") && table.contains("CLAIMANT"), "{table}");
    assert!(table.contains("root") && table.contains(ALICE) && table.contains("PSU swap, ticket #42"), "{table}");

    // Bad filters are usage errors, or bad_request from labd.
    let out = lab.labcli_as(BOB).args(["history", "--since", "yesterday"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let r = lab.as_user(BOB, &[json!({"fn": "history", "board": "../../etc"})]).remove(0);
    assert_eq!(code(&r), "bad_request");

    // The log survives kill -9.
    lab.kill9_labd();
    lab.start_labd();
    let fr = history(&lab, BOB, &["--kind", "force_release"]);
    assert_eq!(fr.len(), 1);
    assert_eq!(fr[0]["detail"], "PSU swap, ticket #42");
}

/// Inserts `n` events of `kind`, `age_ms` old, straight into labd's
/// database (labd stopped), as if it had run for months.
fn old_events(lab: &Lab, kind: &str, n: usize, age_ms: i64) {
    let mut db = rusqlite::Connection::open(lab.path().join("state.db")).unwrap();
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut st = tx
            .prepare("INSERT INTO events(at, kind, board, user, detail) VALUES (?1, ?2, 'rockpro64-1', 'alice', NULL)")
            .unwrap();
        for i in 0..n {
            st.execute(rusqlite::params![now - age_ms - i as i64, kind]).unwrap();
        }
    }
    tx.commit().unwrap();
}

#[test]
fn old_events_are_pruned_across_kill9_without_stalling_claims() {
    let mut lab =
        Lab::create(2, "rockpro64", &["--no-net", "--no-console"], |t| format!("{t}\n[events]\nkeep = \"1d\"\n"));
    lab.start_labd();
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    ok(&r);
    lab.stop_labd();
    let day = 86_400_000;
    old_events(&lab, "ancient", 300_000, 2 * day);
    old_events(&lab, "recent", 3, day - 3_600_000);

    // labd prunes from the start; claims are answered meanwhile.
    lab.start_labd();
    let t0 = Instant::now();
    let r = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    ok(&r);
    assert!(t0.elapsed() < Duration::from_secs(3), "a claim waited {:?} behind the prune", t0.elapsed());
    // Killed while it may still be pruning; the next labd goes on.
    lab.kill9_labd();
    lab.start_labd();
    let gone = || lab.req(json!({"fn": "history", "kind": "ancient", "limit": 1}))["result"] == json!([]);
    lab.wait_for(Duration::from_secs(60), "the old events to be pruned", gone);
    let recent = lab.req(json!({"fn": "history", "kind": "recent", "limit": 10}));
    assert_eq!(ok(&recent).as_array().unwrap().len(), 3, "younger than keep: kept");
    let claims = lab.req(json!({"fn": "history", "kind": "claim"}));
    assert_eq!(ok(&claims).as_array().unwrap().len(), 2, "today's claims are kept");
    assert!(lab.log().contains("pruned old events"), "{}", lab.log());
    // Both claims are still there, and the database is sound.
    assert_eq!(lab.board("rockpro64-1")["state"], "claimed");
    assert_eq!(lab.board("rockpro64-2")["state"], "claimed");
    lab.stop_labd();
    let db = rusqlite::Connection::open(lab.path().join("state.db")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
