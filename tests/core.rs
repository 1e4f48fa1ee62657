//! End-to-end tests of claims and power: labd against labsim's real snmpd,
//! spoken to over its socket as real Unix users.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn claim(lab: &Lab, user: &str, class: &str, extra: Value) -> Value {
    let mut req = json!({"fn": "claim", "class": class});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            req[k] = v;
        }
    }
    lab.as_user(user, &[req]).remove(0)
}

#[test]
fn every_function_and_error_as_two_users() {
    let lab = Lab::up(3, "rockpro64,pine64", |t| t.replace("admins = []", "admins = [\"nobody-admin\"]"));
    // whoami reports the peer, not what the client claims to be.
    let w = lab.as_user(ALICE, &[json!({"fn": "whoami", "user": "root"})]).remove(0);
    assert_eq!(ok(&w)["user"], ALICE);
    assert_eq!(ok(&w)["admin"], false);
    let w = lab.req(json!({"fn": "whoami"}));
    assert_eq!(ok(&w)["admin"], true, "root is an operator");

    // classes
    let c = lab.as_user(BOB, &[json!({"fn": "classes"})]).remove(0);
    let classes = ok(&c).as_array().unwrap().clone();
    assert_eq!(classes.len(), 2);
    let rp = classes.iter().find(|c| c["class"] == "rockpro64").unwrap();
    assert_eq!(rp["total"], 2);
    assert_eq!(rp["available"], 2);

    // alice claims with power: the switch itself says the port is on.
    let r = claim(&lab, ALICE, "rockpro64", json!({"power": true}));
    let res = ok(&r).clone();
    let board = res["board"].as_str().unwrap().to_string();
    let handle = res["handle"].as_str().unwrap().to_string();
    assert_eq!(res["state"], "claimed");
    assert_eq!(res["user"], ALICE);
    assert_eq!(res["power"], "on");
    assert_eq!(res["jail"], Value::Null);
    assert!(res["expires_at"].is_string() && res["claimed_at"].is_string());
    assert_eq!(lab.switch_power(&board), "on");

    // bob claims the other rockpro64 (no power), then none are left.
    let r = claim(&lab, BOB, "rockpro64", json!({}));
    let bob_handle = ok(&r)["handle"].as_str().unwrap().to_string();
    let bob_board = ok(&r)["board"].as_str().unwrap().to_string();
    assert_ne!(bob_board, board);
    assert_eq!(lab.switch_power(&bob_board), "off");
    let r = claim(&lab, BOB, "rockpro64", json!({}));
    assert_eq!(code(&r), "no_device_available");
    let r = claim(&lab, BOB, "rockpro64", json!({"wait": 1}));
    assert_eq!(code(&r), "timeout");
    let c = lab.as_user(BOB, &[json!({"fn": "classes", "available": true})]).remove(0);
    let avail: Vec<&str> = ok(&c).as_array().unwrap().iter().map(|c| c["class"].as_str().unwrap()).collect();
    assert_eq!(avail, vec!["pine64"]);

    // status --mine
    let s = lab.as_user(ALICE, &[json!({"fn": "status", "mine": true})]).remove(0);
    let mine = ok(&s).as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["board"], board.as_str());
    let s = lab.as_user(ALICE, &[json!({"fn": "status"})]).remove(0);
    assert_eq!(ok(&s).as_array().unwrap().len(), 3);

    // bob cannot touch alice's claim, whatever he tries.
    for f in ["power_on", "power_off", "power_cycle", "release", "renew", "reinit"] {
        let r = lab.as_user(BOB, &[json!({"fn": f, "handle": handle})]).remove(0);
        assert_eq!(code(&r), "not_claimed", "{f} on another user's handle");
    }
    let r = lab.as_user(BOB, &[json!({"fn": "release", "handle": "bl-00000000000000000000000000000000"})]).remove(0);
    assert_eq!(code(&r), "not_claimed");
    assert_eq!(lab.board(&board)["user"], ALICE, "nothing changed");
    assert_eq!(lab.switch_power(&board), "on", "nothing changed");

    // power off / on / cycle, checked at the switch.
    let r = lab.as_user(ALICE, &[json!({"fn": "power_off", "handle": handle})]).remove(0);
    assert_eq!(ok(&r)["power"], "off");
    assert_eq!(lab.switch_power(&board), "off");
    let r = lab.as_user(ALICE, &[json!({"fn": "power_on", "handle": handle})]).remove(0);
    assert_eq!(ok(&r)["power"], "on");
    assert_eq!(lab.switch_power(&board), "on");
    let t0 = Instant::now();
    let r = lab.as_user(ALICE, &[json!({"fn": "power_cycle", "handle": handle})]).remove(0);
    assert_eq!(ok(&r)["power"], "on");
    assert!(t0.elapsed() >= Duration::from_millis(900), "a cycle keeps the port off for cycle_delay");
    assert_eq!(lab.switch_power(&board), "on");

    // renew and reinit
    let r = lab.as_user(ALICE, &[json!({"fn": "renew", "handle": handle, "lease": 7200})]).remove(0);
    assert_eq!(ok(&r)["handle"], handle.as_str());
    let r = lab.as_user(ALICE, &[json!({"fn": "renew", "handle": handle, "lease": 999999999})]).remove(0);
    assert_eq!(code(&r), "bad_request", "longer than lease.max");
    let r = lab.as_user(ALICE, &[json!({"fn": "reinit", "handle": handle})]).remove(0);
    assert_eq!(ok(&r)["board"], board.as_str());

    // operators only
    for req in [
        json!({"fn": "dump"}),
        json!({"fn": "maintenance", "board": "pine64-1", "on": true}),
        json!({"fn": "force_release", "board": bob_board}),
    ] {
        let r = lab.as_user(ALICE, std::slice::from_ref(&req)).remove(0);
        assert_eq!(code(&r), "permission_denied", "{req}");
    }
    let d = lab.req(json!({"fn": "dump"}));
    assert_eq!(ok(&d)["boards"].as_array().unwrap().len(), 3);
    assert!(ok(&d)["events"].as_array().unwrap().iter().any(|e| e["kind"] == "claim"));

    // maintenance: busy on a claimed board, then on/off on a free one.
    let r = lab.req(json!({"fn": "maintenance", "board": bob_board, "on": true}));
    assert_eq!(code(&r), "busy");
    let r = lab.req(json!({"fn": "maintenance", "board": "pine64-1", "on": true}));
    assert_eq!(ok(&r)["state"], "maintenance");
    let r = claim(&lab, ALICE, "pine64", json!({}));
    assert_eq!(code(&r), "no_device_available");
    let r = lab.req(json!({"fn": "maintenance", "board": "pine64-1", "on": false}));
    assert_eq!(ok(&r)["state"], "available");

    // force-release bob's board; his handle is dead afterwards.
    let r = lab.req(json!({"fn": "force_release", "board": bob_board}));
    assert_eq!(ok(&r)["released"], true);
    assert_eq!(ok(&r)["user"], BOB);
    let r = lab.as_user(BOB, &[json!({"fn": "release", "handle": bob_handle})]).remove(0);
    assert_eq!(code(&r), "claim_ended", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("was force-released by root at "), "{r}");
    let r = lab.req(json!({"fn": "force_release", "board": bob_board}));
    assert_eq!(code(&r), "not_claimed");

    // unknowns and malformed requests
    assert_eq!(code(&claim(&lab, ALICE, "vax780", json!({}))), "unknown_class");
    assert_eq!(code(&lab.req(json!({"fn": "maintenance", "board": "nope-9", "on": true}))), "unknown_board");
    assert_eq!(code(&lab.req(json!({"fn": "force_release", "board": "nope-9"}))), "unknown_board");
    assert_eq!(code(&lab.as_user(ALICE, &[json!({"fn": "frobnicate"})]).remove(0)), "unknown_function");
    assert_eq!(code(&lab.as_user(ALICE, &[json!({"fn": "claim", "class": 5})]).remove(0)), "bad_request");
    assert_eq!(
        code(&lab.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64", "lease": -1})]).remove(0)),
        "bad_request"
    );
    assert_eq!(
        code(&lab.as_user(ALICE, &[json!({"fn": "release"})]).remove(0)),
        "bad_request",
        "HANDLE required outside a jail"
    );

    // release: the port goes off and the board is free again.
    let r = lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0);
    assert_eq!(ok(&r)["released"], true);
    assert_eq!(lab.switch_power(&board), "off");
    assert_eq!(lab.board(&board)["state"], "available");
    let r = lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0);
    assert_eq!(code(&r), "claim_ended", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("was released at "), "{r}");
}

#[test]
fn raw_socket_errors_keep_the_connection() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let mut c = lab.conn();
    c.send_raw(b"this is not json\n");
    assert_eq!(code(&c.read_reply().unwrap()), "bad_request");
    c.send_raw(b"\xff\xfe\x00garbage\n");
    assert_eq!(code(&c.read_reply().unwrap()), "bad_request");
    c.send_raw(b"{\"id\": \"x\", \"fn\": \"nope\"}\n");
    let r = c.read_reply().unwrap();
    assert_eq!(code(&r), "unknown_function");
    assert_eq!(r["id"], "x", "id echoed");
    let r = c.call(json!({"fn": "status"}));
    assert_eq!(ok(&r).as_array().unwrap().len(), 1, "connection still serves");
    // A line over 64 KiB is refused and the connection closed.
    let mut long = vec![b'x'; 70 * 1024];
    long.push(b'\n');
    c.send_raw(&long);
    assert_eq!(code(&c.read_reply().unwrap()), "bad_request");
    assert!(c.closed(), "connection closed after an over-long line");
    // ... and the daemon keeps serving others.
    assert_eq!(ok(&lab.req(json!({"fn": "status"}))).as_array().unwrap().len(), 1);
}

#[test]
fn lease_expiry_and_renew() {
    let lab = Lab::up(2, "rockpro64", |t| t);
    let r = claim(&lab, ALICE, "rockpro64", json!({"power": true, "lease": 2}));
    let a = ok(&r).clone();
    let r = claim(&lab, BOB, "rockpro64", json!({"power": true, "lease": 2}));
    let b = ok(&r).clone();
    std::thread::sleep(Duration::from_millis(1000));
    let r = lab.as_user(BOB, &[json!({"fn": "renew", "handle": b["handle"], "lease": 6})]).remove(0);
    ok(&r);
    let board_a = a["board"].as_str().unwrap();
    let board_b = b["board"].as_str().unwrap();
    lab.wait_for(Duration::from_secs(5), "alice's lease to expire", || lab.board(board_a)["state"] == "available");
    assert_eq!(lab.switch_power(board_a), "off", "expiry powers the board off");
    let r = lab.as_user(ALICE, &[json!({"fn": "power_on", "handle": a["handle"]})]).remove(0);
    assert_eq!(code(&r), "claim_ended", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains(" expired at "), "{r}");
    // Nobody else learns anything from the handle.
    let r = lab.as_user(BOB, &[json!({"fn": "power_on", "handle": a["handle"]})]).remove(0);
    assert_eq!(code(&r), "not_claimed", "{r}");
    // bob renewed: still his after his original expiry.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lab.board(board_b)["user"], BOB);
    assert_eq!(lab.switch_power(board_b), "on");
    let d = lab.req(json!({"fn": "dump"}));
    let kinds: Vec<&str> = ok(&d)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["board"] == board_a)
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"expire"), "expiry is logged: {kinds:?}");
    lab.wait_for(Duration::from_secs(8), "bob's renewed lease to expire", || {
        lab.board(board_b)["state"] == "available"
    });
}

#[test]
fn wait_queue_is_first_come_first_served() {
    let lab = Arc::new(Lab::up(1, "rockpro64", |t| t));
    let r = lab.req(json!({"fn": "claim", "class": "rockpro64"}));
    let first = ok(&r)["handle"].as_str().unwrap().to_string();
    let mut threads = Vec::new();
    for i in 0..3 {
        let lab = lab.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = lab.conn();
            let r = c.call(json!({"fn": "claim", "class": "rockpro64", "wait": 30}));
            (i, Instant::now(), ok(&r)["handle"].as_str().unwrap().to_string())
        }));
        // Make the arrival order unambiguous.
        std::thread::sleep(Duration::from_millis(300));
    }
    let d = lab.req(json!({"fn": "dump"}));
    assert_eq!(ok(&d)["waiters"]["rockpro64"], 3);
    // Anyone sees how many wait, in `classes`.
    let c = lab.as_user(BOB, &[json!({"fn": "classes"})]).remove(0);
    assert_eq!(ok(&c)[0]["waiting"], 3, "{c}");
    let mut handle = first;
    let mut order = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        let r = lab.req(json!({"fn": "release", "handle": handle}));
        ok(&r);
        lab.wait_for(Duration::from_secs(5), "the next waiter to get the board", || {
            lab.board("rockpro64-1")["state"] == "claimed"
        });
        // Find which waiter got it: the one whose thread finished.
        let t0 = Instant::now();
        loop {
            if let Some(pos) = threads.iter().position(|t| t.is_finished()) {
                let (i, _, h) = threads.remove(pos).join().unwrap();
                order.push(i);
                handle = h;
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(order, vec![0, 1, 2]);
    let c = lab.req(json!({"fn": "classes"}));
    assert_eq!(ok(&c)[0]["waiting"], 0, "{c}");
    ok(&lab.req(json!({"fn": "release", "handle": handle})));
}

#[test]
fn fifty_clients_race_for_five_boards() {
    let lab = Arc::new(Lab::up(5, "rockpro64", |t| t));
    let barrier = Arc::new(Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (lab, barrier) = (lab.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = lab.conn();
                barrier.wait();
                c.call(json!({"fn": "claim", "class": "rockpro64"}))
            })
        })
        .collect();
    let replies: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<&Value> = replies.iter().filter(|r| r["ok"] == true).collect();
    assert_eq!(winners.len(), 5, "exactly five winners");
    assert!(replies.iter().filter(|r| r["ok"] == false).all(|r| code(r) == "no_device_available"));
    let mut boards: Vec<&str> = winners.iter().map(|r| r["result"]["board"].as_str().unwrap()).collect();
    boards.sort();
    boards.dedup();
    assert_eq!(boards.len(), 5, "no board given twice");
    for w in &winners {
        ok(&lab.req(json!({"fn": "release", "handle": w["result"]["handle"]})));
    }
    let s = lab.req(json!({"fn": "status"}));
    assert!(ok(&s).as_array().unwrap().iter().all(|b| b["state"] == "available"));
}

#[test]
fn claims_survive_kill_9_and_sigterm() {
    let mut lab = Lab::up(3, "rockpro64", |t| t);
    let a = ok(&claim(&lab, ALICE, "rockpro64", json!({"power": true}))).clone();
    let b = ok(&claim(&lab, BOB, "rockpro64", json!({}))).clone();
    lab.kill9_labd();
    lab.start_labd();
    for (who, c) in [(ALICE, &a), (BOB, &b)] {
        let view = lab.board(c["board"].as_str().unwrap());
        assert_eq!(view["user"], who);
        assert_eq!(view["state"], "claimed");
        assert_eq!(view["expires_at"], c["expires_at"]);
    }
    assert_eq!(lab.board(a["board"].as_str().unwrap())["power"], "on", "power read from the switch at start");
    // Only one board is left; it cannot be double-booked.
    let c1 = claim(&lab, BOB, "rockpro64", json!({}));
    ok(&c1);
    assert_eq!(code(&claim(&lab, BOB, "rockpro64", json!({}))), "no_device_available");
    // A graceful stop keeps them too.
    assert!(lab.stop_labd().success());
    lab.start_labd();
    let s = lab.req(json!({"fn": "status"}));
    assert!(ok(&s).as_array().unwrap().iter().all(|b| b["state"] == "claimed"));
    // The old handles still work.
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": a["handle"]})]).remove(0));
    ok(&lab.as_user(BOB, &[json!({"fn": "release", "handle": b["handle"]})]).remove(0));
}

#[test]
fn silent_switch_faults_the_board_and_it_recovers() {
    let lab = Lab::up(2, "rockpro64", |t| t);
    let a = ok(&claim(&lab, ALICE, "rockpro64", json!({}))).clone();
    let board = a["board"].as_str().unwrap().to_string();
    let out = lab.labsim(&["switch", "stop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t0 = Instant::now();
    let r = lab.as_user(ALICE, &[json!({"fn": "power_on", "handle": a["handle"]})]).remove(0);
    let took = t0.elapsed();
    assert_eq!(code(&r), "device_fault");
    assert!(r["error"]["message"].as_str().unwrap().contains("did not answer"), "{r}");
    // timeout 500ms x (1 + 1 retry), plus process start-up slack.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let v = lab.board(&board);
    assert_eq!(v["state"], "faulted");
    assert_eq!(v["user"], ALICE, "the claim is kept");
    // A claim on the other board fails cleanly and changes nothing.
    let r = claim(&lab, BOB, "rockpro64", json!({"power": true}));
    assert_eq!(code(&r), "device_fault");
    assert!(ok(&lab.req(json!({"fn": "status", "mine": true}))).as_array().unwrap().is_empty());
    let out = lab.labsim(&["switch", "start"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.wait_for(Duration::from_secs(10), "the board to recover", || lab.board(&board)["state"] == "claimed");
    let r = lab.as_user(ALICE, &[json!({"fn": "power_on", "handle": a["handle"]})]).remove(0);
    assert_eq!(ok(&r)["power"], "on");
    assert_eq!(lab.switch_power(&board), "on");
    lab.wait_for(Duration::from_secs(10), "the other board to recover", || {
        ok(&lab.req(json!({"fn": "status"}))).as_array().unwrap().iter().all(|b| b["state"] != "faulted")
    });
    let d = lab.req(json!({"fn": "dump"}));
    let kinds: Vec<&str> = ok(&d)["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"fault") && kinds.contains(&"recovered"), "{kinds:?}");

    // A switch that hangs (no ICMP, no reply) is a timeout: the call fails
    // after timeout x attempts (500 ms x 2), not sooner and not much later.
    let pid: i32 = std::fs::read_to_string(lab.path().join("snmpd.pid")).unwrap().trim().parse().unwrap();
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    let r = lab.as_user(ALICE, &[json!({"fn": "power_off", "handle": a["handle"]})]).remove(0);
    let took = t0.elapsed();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(code(&r), "device_fault");
    assert!(r["error"]["message"].as_str().unwrap().contains("did not answer within 500 ms (2 attempts)"), "{r}");
    assert!(took >= Duration::from_millis(1000) && took < Duration::from_secs(3), "took {took:?}");
    lab.wait_for(Duration::from_secs(10), "the board to recover after SIGCONT", || {
        lab.board(&board)["state"] == "claimed"
    });
    let r = lab.as_user(ALICE, &[json!({"fn": "power_off", "handle": a["handle"]})]).remove(0);
    assert_eq!(ok(&r)["power"], "off");
    assert_eq!(lab.switch_power(&board), "off");
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_panicking_board_restarts_alone() {
    let lab = Arc::new(Lab::up(3, "rockpro64", |t| t));
    let a = ok(&lab.req(json!({"fn": "claim", "class": "rockpro64", "power": true}))).clone();
    let board = a["board"].as_str().unwrap().to_string();
    // Others keep asking throughout.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (lab, stop) = (lab.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = lab.conn();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = c.call(json!({"fn": "status"}));
                assert_eq!(r["ok"], true, "status failed during the restart: {r}");
                n += 1;
            }
            n
        })
    };
    let t0 = Instant::now();
    let r = lab.req(json!({"fn": "debug_panic", "board": board}));
    ok(&r);
    lab.wait_for(Duration::from_secs(1), "the board to answer again", || {
        let r = lab.req(json!({"fn": "power_on", "handle": a["handle"]}));
        r["ok"] == true
    });
    let back = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = prober.join().unwrap();
    assert!(answered > 0);
    let d = lab.req(json!({"fn": "dump"}));
    let boards = ok(&d)["boards"].as_array().unwrap().clone();
    for b in &boards {
        let expect = if b["board"] == board.as_str() { 1 } else { 0 };
        assert_eq!(b["restarts"], expect, "{b}");
    }
    let me = boards.iter().find(|b| b["board"] == board.as_str()).unwrap();
    assert_eq!(me["user"], "root", "the claim survived the restart");
    assert_eq!(me["power"], "on");
    eprintln!("board answered again after {back:?}; {answered} status calls meanwhile");
}

/// labd reads every port at start, more than one GETBULK page of them,
/// and an unclaimed board found on (left on behind labd's back, or by a
/// labd killed between a release and its power-off) is switched off,
/// logged by labd: only those found on.
#[test]
fn start_reads_every_port_and_switches_unclaimed_boards_off() {
    let mut lab = Lab::create(90, "rockpro64", &["--no-net", "--no-console"], |t| t);
    let left_on = ["rockpro64-1", "rockpro64-41", "rockpro64-42", "rockpro64-90"];
    for port in [1, 41, 42, 90] {
        lab.snmpset(port, 1);
    }
    lab.start_labd();
    lab.wait_for(Duration::from_secs(10), "the boards left on to be switched off", || {
        left_on.iter().all(|b| lab.switch_power(b) == "off")
    });
    let s = lab.req(json!({"fn": "status"}));
    let boards = ok(&s).as_array().unwrap();
    assert_eq!(boards.len(), 90);
    assert!(boards.iter().all(|b| b["power"] == "off"), "every port was read and is off");
    let d = lab.req(json!({"fn": "dump"}));
    let mut offs: Vec<&str> = ok(&d)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "power_off")
        .map(|e| e["board"].as_str().unwrap())
        .collect();
    offs.sort_by_key(|b| b.trim_start_matches("rockpro64-").parse::<u32>().unwrap_or(0));
    assert_eq!(offs, left_on, "exactly the boards read as on were switched off");
}

/// With jails off each board's link still has its owner, the board's
/// actor: parked (down, IPv6 off, no router advertisements taken) from
/// labd's start, through a claim (nothing is served on it without a
/// jail) and after the release.
#[test]
fn board_links_are_parked_with_jails_off() {
    use common::jails::{assert_link_parked, board_link};
    let lab = Lab::up(2, "rockpro64", |t| t);
    let links: Vec<String> = ["rockpro64-1", "rockpro64-2"].iter().map(|b| board_link(&lab, b).0).collect();
    lab.wait_for(Duration::from_secs(10), "the links to be parked", || {
        links.iter().all(|l| std::panic::catch_unwind(|| assert_link_parked(l)).is_ok())
    });
    let r = claim(&lab, ALICE, "rockpro64", json!({"power": true}));
    let handle = ok(&r)["handle"].clone();
    assert_eq!(ok(&r)["jail"], Value::Null, "no jail with jails off");
    for l in &links {
        assert_link_parked(l);
    }
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]).remove(0));
    for l in &links {
        assert_link_parked(l);
    }
}

/// A second labd on the configuration of a running one says so at once,
/// with the first one's pid, and changes nothing: the first one serves on.
#[test]
fn a_second_labd_on_the_same_state_says_at_once_that_one_runs() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let first = lab.labd_pid();
    let t0 = Instant::now();
    let o = std::process::Command::new(LABD).arg("--config").arg(lab.path()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}: {err}", t0.elapsed());
    assert!(err.contains("labd is already running on this state") && err.contains(&format!("pid {first}")), "{err}");
    ok(&lab.req(json!({"fn": "status"})));
}

/// The switch's truth: a port that is on but delivers no power (a dead
/// splitter, a board that does not draw) shows as such in status, the
/// dump and the event log; one that delivers shows that.
#[test]
fn a_port_that_is_on_but_delivers_no_power_shows_as_such() {
    let lab = Lab::up(2, "rockpro64", |t| t);
    // rockpro64-2's splitter is dead (labsim's switch/splitter.GROUP.PORT).
    std::fs::write(lab.path().join(format!("switch/splitter.1.{}", lab.board_port("rockpro64-2"))), "dead\n").unwrap();
    let a = ok(&lab.req(json!({"fn": "claim", "class": "rockpro64", "power": true}))).clone();
    let b = ok(&lab.req(json!({"fn": "claim", "class": "rockpro64", "power": true}))).clone();
    assert_eq!((a["board"].as_str(), b["board"].as_str()), (Some("rockpro64-1"), Some("rockpro64-2")));
    lab.wait_for(Duration::from_secs(10), "the switch's detection of both ports", || {
        lab.board("rockpro64-1")["delivery"] == "delivering" && lab.board("rockpro64-2")["delivery"] == "searching"
    });
    let b2 = lab.board("rockpro64-2");
    assert_eq!((b2["power"].as_str(), lab.switch_power("rockpro64-2").as_str()), (Some("on"), "on"), "{b2}");
    let d = lab.req(json!({"fn": "dump"}));
    let events = ok(&d)["events"].as_array().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "power_not_delivered" && e["board"] == "rockpro64-2" && e["detail"] == "searching"),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e["kind"] == "power_not_delivered" && e["board"] == "rockpro64-1"), "{events:?}");
    let in_dump = ok(&d)["boards"].as_array().unwrap().iter().find(|b| b["board"] == "rockpro64-2").unwrap().clone();
    assert_eq!(in_dump["delivery"], "searching", "{in_dump}");
    // labcli shows it beside the power.
    let o = lab.labcli_as("root").arg("status").stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.lines().any(|l| l.starts_with("rockpro64-2") && l.contains("on (searching)")), "{text}");
    // Off: no detection to show.
    ok(&lab.req(json!({"fn": "power_off", "handle": a["handle"]})));
    assert!(lab.board("rockpro64-1").get("delivery").is_none());
}

/// `claim --wait` says where it stands in the queue while it waits, and
/// `queue` tells each user their own places.
#[test]
fn a_waiting_claim_shows_its_place_in_the_queue() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let held = ok(&lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0)).clone();
    let bob = lab
        .labcli_as(BOB)
        .args(["claim", "rockpro64", "--wait", "30s"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    lab.wait_for(Duration::from_secs(5), "bob in the queue", || {
        let r = lab.as_user(BOB, &[json!({"fn": "queue"})]).remove(0);
        r["result"] == json!([{"class": "rockpro64", "place": 1, "waiting": 1}])
    });
    // root joins behind bob, with `labcli run --wait`.
    let root = lab.labcli_as("root").args(["run", "rockpro64", "--wait", "30s", "--", "true"]).spawn().unwrap();
    lab.wait_for(Duration::from_secs(5), "root behind bob", || {
        ok(&lab.req(json!({"fn": "queue"}))) == &json!([{"class": "rockpro64", "place": 2, "waiting": 2}])
    });
    // Nobody else's place is shown to alice; how many wait, is.
    assert_eq!(ok(&lab.as_user(ALICE, &[json!({"fn": "queue"})]).remove(0)), &json!([]));
    let status = lab.labcli_as(ALICE).arg("status").stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.lines().any(|l| l == "2 claims wait for a rockpro64 board"), "{text}");
    std::thread::sleep(Duration::from_secs(3));
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": held["handle"]})]).remove(0));
    let out = bob.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("[waiting for a rockpro64: 1st of "), "bob's labcli said where it stood: {err}");
    // root is served once bob's board comes back, and its command ran.
    ok(&lab.req(json!({"fn": "force_release", "board": "rockpro64-1"})));
    let out = root.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("[waiting for a rockpro64: 2nd of 2 in the queue]"), "run --wait said where it stood: {err}");
    assert!(
        err.contains("labcli: claimed rockpro64-1; running \"true\"") && err.contains("labcli: released rockpro64-1"),
        "{err}"
    );
}
