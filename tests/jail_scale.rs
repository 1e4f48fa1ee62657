//! A lab's morning rush: 16 boards with jails, claimed by 16 clients at
//! the same moment, again and again until 200 claims were made. Every
//! claim must succeed and its jail answer ssh; labd must reap every
//! process it starts; nothing may be left after the releases.

mod common;

use std::time::{Duration, Instant};

use common::jails::{jail_lab, leftovers, one_at_a_time, zombies_of, JailNet, Login};
use common::*;
use serde_json::{json, Value};

const BOARDS: usize = 16;
const CLAIMS: usize = 200;
const NET: JailNet = JailNet { pool: "10.196.0.0/24", board_net: "172.27.0.0/20", uid_base: 2_000_000 };

#[test]
fn sixteen_concurrent_jailed_claims_until_two_hundred_all_succeed() {
    let _turn = one_at_a_time();
    let mut lab = jail_lab(BOARDS, "rockpro64", &NET, "", "");
    lab.start_labd();
    let labd_pid = lab.labd.as_ref().unwrap().id();
    let dir = lab.path().to_path_buf();
    let mut made = 0;
    let mut round = 0;
    let t0 = Instant::now();
    while made < CLAIMS {
        round += 1;
        let n = BOARDS.min(CLAIMS - made);
        // Every client claims at once.
        let replies: Vec<Value> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .map(|_| s.spawn(|| lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let failed: Vec<&Value> = replies.iter().filter(|r| r["ok"] != json!(true)).collect();
        assert!(failed.is_empty(), "round {round}: {} of {n} claims failed: {failed:?}", failed.len());
        made += n;
        // Every jail answers ssh, with the host key its claim reply gave.
        std::thread::scope(|s| {
            for (i, r) in replies.iter().enumerate() {
                let dir = &dir;
                s.spawn(move || {
                    let login = Login::new(dir, ALICE, &r["result"]["jail"], &format!("r{round}-{i}"));
                    assert_eq!(login.ok("id -u").trim(), "0", "round {round}: {}", r["result"]["board"]);
                });
            }
        });
        // And every release succeeds.
        let released: Vec<Value> = std::thread::scope(|s| {
            let hs: Vec<_> = replies
                .iter()
                .map(|r| {
                    let h = r["result"]["handle"].as_str().unwrap().to_string();
                    let lab = &lab;
                    s.spawn(move || lab.as_user(ALICE, &[json!({"fn": "release", "handle": h})]).remove(0))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &released {
            ok(r);
        }
        // A child that just exited is a zombie until labd reaps it (the next
        // claim's file systems are made in the background): none may stay.
        let t = Instant::now();
        let mut z = zombies_of(labd_pid);
        while !z.is_empty() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
            z = zombies_of(labd_pid);
        }
        assert!(z.is_empty(), "round {round}: labd left zombies: {z:?}");
    }
    eprintln!("{made} claims in {round} rounds of {BOARDS} in {:.1} s", t0.elapsed().as_secs_f64());
    lab.wait_for(Duration::from_secs(10), "every board back", || {
        let s = lab.req(json!({"fn": "status"}));
        ok(&s).as_array().unwrap().iter().all(|b| b["state"] == "available")
    });
    let left = leftovers(&dir, NET.uid_base, BOARDS as u32);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// `[jail] parallel_builds`: no more builds at once than allowed, the
/// rest wait their turn and succeed, and labd answers meanwhile. (Builds
/// are slowed to a second each by fault injection, so the overlap is
/// visible: six claims, two at a time, take three rounds.)
#[test]
fn jail_builds_queue_beyond_the_limit_and_labd_answers_meanwhile() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.196.1.0/24", board_net: "172.27.16.0/20", uid_base: 2_300_000 };
    let mut lab = jail_lab(6, "rockpro64", &NET, "parallel_builds = 2", "");
    lab.start_labd_env(&[("LABD_FAULT_JAIL_BUILD_DELAY_MS", "1000")]);
    let t0 = Instant::now();
    let (replies, polls) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| s.spawn(|| lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0)))
            .collect();
        // labd keeps answering while the builds queue.
        let mut polls = 0;
        while hs.iter().any(|h| !h.is_finished()) {
            ok(&lab.req(json!({"fn": "status"})));
            polls += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        (hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<Value>>(), polls)
    });
    for r in &replies {
        ok(r);
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(2900), "six one-second builds, two at a time, took {took:?}");
    assert!(polls >= 10, "status answered {polls} times during the builds");
    // The jails came up two at a time: no three within one build's second.
    let d = lab.req(json!({"fn": "dump"}));
    let mut ups: Vec<i64> = ok(&d)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "jail_up")
        .map(|e| {
            let t =
                time::OffsetDateTime::parse(e["at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
                    .unwrap();
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
        })
        .collect();
    ups.sort_unstable();
    assert_eq!(ups.len(), 6, "{ups:?}");
    for w in ups.windows(3) {
        assert!(w[2] - w[0] >= 900, "three jails finished within one build's time: {ups:?}");
    }
    for r in &replies {
        ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": r["result"]["handle"]})]).remove(0));
    }
}
