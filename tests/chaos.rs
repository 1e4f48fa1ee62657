//! Chaos: clients claim (some waiting in the queue), power, renew, reinit
//! and release in a loop, and an operator force-releases their boards and
//! puts free ones into maintenance, while labd is killed with SIGKILL and
//! restarted, the switch's snmpd goes silent, serial adapters are
//! unplugged and board actors panic. No board in maintenance is granted,
//! no held board goes into maintenance. Clients
//! keep a ledger of what they believe they hold; during the run and after
//! it (faults cleared) the ledger, `status`, the switch, the event log and
//! the SQLite claims table must all agree.
//!
//! Bounded in time: `CHAOS_SECONDS` (default 60) of faults, then recovery
//! and checks. `CHAOS_SEED` replays a run's fault schedule and client
//! choices (thread timing still varies).
//!
//! The small deterministic tests at the end pin down the bugs the chaos
//! run found.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

#[path = "chaos/ledger.rs"]
mod ledger;
use ledger::*;
#[path = "chaos/workers.rs"]
mod workers;
use workers::*;

/// A fault in progress, undone at `until`.
enum Undo {
    Switch,
    Plug(String),
}

#[derive(Default)]
struct Faults {
    kills: u64,
    switch_outages: u64,
    unplugs: u64,
    panics: u64,
}

fn labsim_ok(lab: &Lab, args: &[&str]) {
    let out = lab.labsim(args);
    assert!(out.status.success(), "labsim {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn undo(lab: &Lab, u: &Undo) {
    match u {
        Undo::Switch => labsim_ok(lab, &["switch", "start"]),
        Undo::Plug(b) => labsim_ok(lab, &["plug", b]),
    }
}

/// Rows of the claims table: board → (user, claimed_at ms, expires_at ms).
fn sqlite_claims(db: &Path) -> BTreeMap<String, (String, i64, i64)> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg("SELECT board, user, claimed_at, expires_at FROM claims ORDER BY board")
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0].to_string(), (f[1].to_string(), f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .collect()
}

/// The event log: (id, kind, board, user).
fn sqlite_events(db: &Path) -> Vec<(i64, String, String, String)> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg("SELECT id, kind, coalesce(board, ''), coalesce(user, '') FROM events ORDER BY id")
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '|').collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string(), f[3].to_string())
        })
        .collect()
}

fn state_db(lab: &Lab) -> PathBuf {
    let t = std::fs::read_to_string(lab.path().join("lab.toml")).unwrap();
    let line = t.lines().find(|l| l.trim_start().starts_with("state")).expect("daemon.state in lab.toml");
    PathBuf::from(line.split('"').nth(1).unwrap())
}

fn chaos_seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64)
}

#[cfg(feature = "fault-injection")]
#[test]
fn claims_survive_kills_outages_unplugs_and_panics() {
    let secs: u64 = std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let mut lab = Lab::create(BOARDS, "rockpro64,pine64", &["--no-net"], |t| t);
    lab.start_labd();
    chaos_run(&mut lab, BOARDS, secs, chaos_seed());
}

/// The same with jails (`jail = "linux"`, labsim's links): claims get
/// jails, reinit and release rebuild and remove them while labd is killed
/// and restarted (adopting or rebuilding them). Afterwards, once labd has
/// stopped, no namespace, mount, loop device, nft table or process in the
/// jails' uid range is left, and every board link is back on the host,
/// parked.
#[cfg(feature = "fault-injection")]
#[test]
fn jails_survive_kills_reinits_and_releases() {
    use common::jails::{assert_link_parked, jail_lab, leftovers, one_at_a_time, JailNet};
    const NET: JailNet = JailNet { pool: "10.193.0.0/24", board_net: "172.24.0.0/20", uid_base: 7_000_000 };
    // Jails are named by board index and board: another jailed test on
    // this host at the same time would share their names.
    let _turn = one_at_a_time();
    const JAIL_BOARDS: usize = 4;
    let secs: u64 = std::env::var("CHAOS_JAIL_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let mut lab = jail_lab(JAIL_BOARDS, "rockpro64,pine64", &NET, "", "");
    let dir = lab.path().to_path_buf();
    // The raw clients claim as root: root's keys for its jails.
    std::fs::copy(dir.join(format!("keys.d/{ALICE}.pub")), dir.join("keys.d/root.pub")).unwrap();
    lab.start_labd();
    let links: Vec<String> = (1..=JAIL_BOARDS)
        .map(|i| {
            let t = std::fs::read_dir(dir.join("boards.d")).unwrap().filter_map(|e| e.ok()).nth(i - 1).unwrap().path();
            let text = std::fs::read_to_string(t).unwrap();
            text.lines().find(|l| l.starts_with("network")).unwrap().split('"').nth(1).unwrap().to_string()
        })
        .collect();
    chaos_run(&mut lab, JAIL_BOARDS, secs, chaos_seed());
    // labd stopped gracefully at the end of the run: its jails went with it.
    let left = leftovers(&dir, NET.uid_base, JAIL_BOARDS as u32);
    assert!(left.is_empty(), "left behind after the chaos: {left:#?}");
    for l in &links {
        assert_link_parked(l);
    }
}

/// Clients work a lab of `nboards` while faults hit it for `secs`; then
/// the lab must recover and every record agree. Stops labd at the end.
fn chaos_run(lab: &mut Lab, nboards: usize, secs: u64, seed: u64) {
    println!("chaos: seed {seed} (CHAOS_SEED={seed} to replay), {secs} s");
    let mut rng = Rng(seed);
    let boards: Vec<String> = ok(&lab.req(json!({"fn": "status"})))
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["board"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(boards.len(), nboards);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..RAW_CLIENTS {
        let (sock, l, s, seed) = (lab.sock(), ledger.clone(), stop.clone(), rng.next() ^ i as u64);
        workers.push(std::thread::spawn(move || raw_worker(sock, seed, l, s)));
    }
    {
        let (sock, l, s, seed) = (lab.sock(), ledger.clone(), stop.clone(), rng.next());
        workers.push(std::thread::spawn(move || cli_worker(sock, seed, l, s)));
    }
    {
        let (sock, l, s, seed, b) = (lab.sock(), ledger.clone(), stop.clone(), rng.next(), boards.clone());
        workers.push(std::thread::spawn(move || operator_worker(sock, seed, b, l, s)));
    }

    // The chaos loop, on this thread (it owns labd).
    let mut faults = Faults::default();
    let mut pending: Vec<(Instant, Undo)> = Vec::new();
    let t0 = Instant::now();
    // Faults for `secs`, and on until the clients got enough done to
    // judge (a loaded machine builds jails slowly), at most three times as
    // long; what was done is asserted at the end.
    let busy_enough = || {
        let l = ledger.lock().unwrap();
        l.stats.claims > 10 && l.stats.ok > 100
    };
    while t0.elapsed() < Duration::from_secs(secs) || (!busy_enough() && t0.elapsed() < Duration::from_secs(3 * secs)) {
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(t, _)| *t <= now);
        pending = rest;
        for (_, u) in &due {
            undo(lab, u);
        }
        std::thread::sleep(Duration::from_millis(rng.range(200, 1500)));
        match rng.below(10) {
            0 | 1 => {
                lab.kill9_labd();
                faults.kills += 1;
                std::thread::sleep(Duration::from_millis(rng.range(0, 1000)));
                lab.start_labd();
            }
            2 | 3 if !pending.iter().any(|(_, u)| matches!(u, Undo::Switch)) => {
                labsim_ok(lab, &["switch", "stop"]);
                faults.switch_outages += 1;
                pending.push((Instant::now() + Duration::from_millis(rng.range(500, 4000)), Undo::Switch));
            }
            4..=6 => {
                let b = boards[rng.below(nboards as u64) as usize].clone();
                if !pending.iter().any(|(_, u)| matches!(u, Undo::Plug(x) if *x == b)) {
                    labsim_ok(lab, &["unplug", &b]);
                    faults.unplugs += 1;
                    pending.push((Instant::now() + Duration::from_millis(rng.range(300, 3000)), Undo::Plug(b)));
                }
            }
            _ => {
                let b = &boards[rng.below(nboards as u64) as usize];
                if let Outcome::Reply(r) = Client::new(&lab.sock()).call(json!({"fn": "debug_panic", "board": b})) {
                    assert!(r["ok"] == json!(true) || r["error"]["code"] == json!("internal"), "debug_panic: {r}");
                    faults.panics += 1;
                }
            }
        }
    }
    for (_, u) in &pending {
        undo(lab, u);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("client thread");
    }
    println!("chaos: faults done after {:.1} s; waiting for the lab to recover", t0.elapsed().as_secs_f64());

    // Recovery: every board healthy, console attached, power known, and
    // every board whose claim just ended back (its jail removed and its
    // power off: until then it shows available and still on).
    let mut violations: Vec<String> = std::mem::take(&mut ledger.lock().unwrap().violations);
    let settle = Instant::now();
    let healthy = |b: &Value| {
        (b["state"] == "available" || b["state"] == "claimed")
            && b["console"] == "attached"
            && b["power"] != "unknown"
            && (b["state"] != "available" || b["power"] == "off")
    };
    let status = loop {
        let s = lab.req(json!({"fn": "status"}));
        let s = ok(&s).as_array().unwrap().clone();
        if s.iter().all(healthy) {
            break s;
        }
        if settle.elapsed() > Duration::from_secs(60) {
            for b in s.iter().filter(|b| !healthy(b)) {
                violations.push(format!("board did not recover within 60 s: {b}"));
            }
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("chaos: recovered in {:.1} s", settle.elapsed().as_secs_f64());
    // What labd finishes on its own after the clients left settles first:
    // a board granted to a waiter whose client had just gone is released
    // again (a claim nobody was told of, and nobody holds).
    std::thread::sleep(Duration::from_secs(2));
    let status = {
        let s = lab.req(json!({"fn": "status"}));
        match ok(&s).as_array() {
            Some(a) if a.iter().all(healthy) => a.clone(),
            _ => status,
        }
    };
    let checked_at = now_ms();

    // Claims: nothing lost, nothing unexplained.
    let l = ledger.lock().unwrap();
    let by_board: HashMap<&str, &Value> = status.iter().map(|b| (b["board"].as_str().unwrap(), b)).collect();
    let mut held_by: HashMap<&str, Vec<&Held>> = HashMap::new();
    for c in l.held.values() {
        if c.expires_min > checked_at + SLACK_MS && !c.releasing {
            held_by.entry(c.board.as_str()).or_default().push(c);
            let b = by_board[c.board.as_str()];
            if b["user"] != json!(c.user) || b["claimed_at"] != json!(c.claimed_at) {
                violations
                    .push(format!("claim lost: {} held {} since {}; status shows {b}", c.user, c.board, c.claimed_at));
            }
        }
    }
    for (board, hs) in &held_by {
        if hs.len() > 1 {
            violations.push(format!("{board} held by several clients at once: {hs:?}"));
        }
    }
    for b in &status {
        if b["state"] == "claimed" {
            let key = (b["board"].as_str().unwrap().to_string(), b["claimed_at"].as_str().unwrap_or("").to_string());
            // Times on the wire are whole seconds.
            let at = parse_ms(&b["claimed_at"]).unwrap_or(0);
            let explained = l.known.contains(&key)
                || l.uncertain.iter().any(|(u, s, e)| b["user"] == json!(u) && at >= *s - 1000 && at <= *e);
            if !explained {
                violations.push(format!("claim nobody was told about (duplicated?): {b}"));
            }
        }
    }
    // Boards: the switch agrees with labd, unclaimed boards are off.
    for b in &status {
        let name = b["board"].as_str().unwrap();
        let sw = lab.switch_power(name);
        if b["power"] != json!(sw) {
            violations.push(format!("{name}: labd says power {} but the switch says {sw}", b["power"]));
        }
        if b["state"] == "available" && sw != "off" {
            violations.push(format!("{name} is unclaimed but powered {sw}"));
        }
    }
    let restarts: u64 = ok(&lab.req(json!({"fn": "dump"})))["boards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["restarts"].as_u64().unwrap_or(0))
        .sum();

    // The stored state, read after a graceful stop.
    assert!(lab.stop_labd().success(), "labd's graceful stop failed: {}", lab.log());
    // Leases still run out during the stop (stopping jails takes seconds).
    let stopped_at = now_ms();
    let db = state_db(lab);
    let rows = sqlite_claims(&db);
    for b in &status {
        let name = b["board"].as_str().unwrap();
        let in_status = b["state"] == "claimed";
        match (rows.get(name), in_status) {
            (Some((u, c, e)), true) => {
                let secs = |ms: i64| Some(ms.div_euclid(1000) * 1000);
                if b["user"] != json!(u)
                    || parse_ms(&b["claimed_at"]) != secs(*c)
                    || parse_ms(&b["expires_at"]) != secs(*e)
                {
                    violations.push(format!("{name}: SQLite has ({u}, {c}, {e}) but status showed {b}"));
                }
            }
            // Expired meanwhile (wire times are whole seconds: the lease
            // ended at most a second after the one shown).
            (None, true) if parse_ms(&b["expires_at"]).unwrap_or(0) <= stopped_at => {}
            (None, true) => violations.push(format!("{name}: claimed in status but not in SQLite: {b}")),
            (Some(r), false) => violations.push(format!("{name}: SQLite holds a claim {r:?} that status did not show")),
            (None, false) => {}
        }
    }
    // The event log replays to the claims table: a claim starts only on a
    // free board, ends only a held one, and what is held at the end is
    // exactly what SQLite holds.
    let mut holder: HashMap<String, String> = HashMap::new();
    let events = sqlite_events(&db);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (id, kind, board, user) in &events {
        *kinds.entry(kind.clone()).or_default() += 1;
        match kind.as_str() {
            "claim" => {
                if let Some(u) = holder.insert(board.clone(), user.clone()) {
                    violations.push(format!("event {id}: claim of {board} by {user} while {u} held it"));
                }
            }
            "release" | "expire" | "force_release" | "claim_rolled_back" | "claim_dropped"
                if holder.remove(board).is_none() =>
            {
                violations.push(format!("event {id}: {kind} of {board} which nobody held"));
            }
            _ => {}
        }
    }
    let replayed: BTreeMap<String, String> = holder.into_iter().collect();
    let stored: BTreeMap<String, String> = rows.iter().map(|(b, (u, _, _))| (b.clone(), u.clone())).collect();
    if replayed != stored {
        violations.push(format!("event log replays to {replayed:?} but the claims table holds {stored:?}"));
    }

    let s = &l.stats;
    println!("chaos: seed {seed}");
    println!(
        "chaos: operations {}, successes {}, claims {}, releases {}, expiries seen {}, uncertain claims {}",
        s.ops,
        s.ok,
        s.claims,
        s.releases,
        s.expired_seen,
        l.uncertain.len()
    );
    println!(
        "chaos: claims granted after a wait {}, waits timed out {}, force-releases {}, maintenance windows {} (refused on held boards {})",
        s.waited, s.wait_timeouts, s.force_releases, s.maintenance_windows, s.maintenance_refused
    );
    println!("chaos: errors by code {:?}", s.errors);
    for m in &s.internal {
        println!("chaos: internal: {m}");
    }
    println!(
        "chaos: kills {}, switch outages {}, unplugs {}, panics {}, board restarts since labd's last start {}",
        faults.kills, faults.switch_outages, faults.unplugs, faults.panics, restarts
    );
    println!("chaos: events {kinds:?}");
    println!("chaos: violations {}", violations.len());
    for v in &violations {
        println!("  VIOLATION {v}");
    }
    assert!(
        s.force_releases > 0 && s.maintenance_windows + s.maintenance_refused > 0 && s.waited + s.wait_timeouts > 0,
        "the run did not exercise force-release ({}), maintenance ({} + {}) and waits ({} + {})",
        s.force_releases,
        s.maintenance_windows,
        s.maintenance_refused,
        s.waited,
        s.wait_timeouts
    );
    assert!(
        s.claims > 10 && s.ok > 100,
        "the clients hardly got anything done: {} claims, {} successes",
        s.claims,
        s.ok
    );
    assert!(violations.is_empty(), "{} invariant violations (seed {seed}); see above", violations.len());
}

/// A one-board lab (no network, no console) with a claim that powered
/// its board on: the claim's reply and the board.
fn powered_claim() -> (Lab, Value, String) {
    let mut lab = Lab::create(1, "rockpro64", &["--no-net", "--no-console"], |t| t);
    lab.start_labd();
    let r = lab.req(json!({"fn": "claim", "class": "rockpro64", "power": true}));
    let c = ok(&r).clone();
    let board = c["board"].as_str().unwrap().to_string();
    assert_eq!(lab.switch_power(&board), "on");
    (lab, c, board)
}

/// Found by the chaos run: a lease that ran out while a power cycle was
/// under way left the released board powered on (the release's power-off
/// saw the port as off and skipped the switch, then the cycle's second half
/// switched it on).
#[test]
fn expiry_during_a_power_cycle_leaves_the_board_off() {
    let lab = Lab::create(1, "rockpro64", &["--no-net", "--no-console"], |t| t);
    let mut lab = lab;
    lab.start_labd();
    let r = lab.req(json!({"fn": "claim", "class": "rockpro64", "lease": 2}));
    let c = ok(&r).clone();
    assert_eq!(c["power"], "off");
    let board = c["board"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    // The cycle's off half runs now; its on half (cycle_delay = 1 s later)
    // comes after the lease's end.
    std::thread::sleep(Duration::from_millis(1300));
    let r = lab.req(json!({"fn": "power_cycle", "handle": c["handle"]}));
    assert!(t0.elapsed() > Duration::from_secs(2), "the cycle outlived the lease");
    println!("power_cycle across the expiry: {r}");
    lab.wait_for(Duration::from_secs(5), "the expiry", || lab.board(&board)["state"] == "available");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lab.switch_power(&board), "off", "an expired claim's board is off at the switch");
    assert_eq!(lab.board(&board)["power"], "off");
}

/// Found by the chaos run: a release while the switch was silent left the
/// board powered on for good once the switch answered again (the fault
/// cleared, the board was available, and nothing finished the power-off).
#[test]
fn release_during_a_switch_outage_powers_off_when_the_switch_is_back() {
    let (lab, c, board) = powered_claim();
    labsim_ok(&lab, &["switch", "stop"]);
    let r = lab.req(json!({"fn": "release", "handle": c["handle"]}));
    assert_eq!(ok(&r)["released"], true, "the claim ends even if the power-off fails");
    assert!(ok(&r)["warning"].is_string(), "the reply says the board is still powered: {r}");
    labsim_ok(&lab, &["switch", "start"]);
    lab.wait_for(Duration::from_secs(15), "the fault to clear and the owed power-off", || {
        let b = lab.board(&board);
        b["state"] == "available" && b["power"] == "off"
    });
    assert_eq!(lab.switch_power(&board), "off", "the port is off at the switch");
}

/// Found by reading the chaos run's power check: labd killed after a claim
/// ended but before its power-off was done came back with the free board
/// still powered (the owed power-off lived only in memory).
#[test]
fn a_power_off_owed_at_a_crash_is_done_after_the_restart() {
    let (mut lab, c, board) = powered_claim();
    labsim_ok(&lab, &["switch", "stop"]);
    let r = lab.req(json!({"fn": "release", "handle": c["handle"]}));
    assert!(ok(&r)["warning"].is_string(), "the power-off failed: {r}");
    lab.kill9_labd();
    labsim_ok(&lab, &["switch", "start"]);
    lab.start_labd();
    lab.wait_for(Duration::from_secs(15), "the owed power-off", || {
        let b = lab.board(&board);
        b["state"] == "available" && b["power"] == "off"
    });
    assert_eq!(lab.switch_power(&board), "off", "the port is off at the switch");
}

/// Found by the chaos run with jails beside it: a board actor that
/// restarted in the middle of a claim had powered the board on, its answer
/// was lost, the claim was undone, and the free board stayed on (an undo
/// skipped the power-off). The lost answer is injected here.
#[cfg(feature = "fault-injection")]
#[test]
fn a_claim_undone_after_its_power_on_leaves_the_board_off() {
    let mut lab = Lab::create(1, "rockpro64", &["--no-net", "--no-console"], |t| t);
    lab.start_labd_env(&[("LABD_FAULT_LOSE_ATTACH_REPLY", "1")]);
    let r = lab.req(json!({"fn": "claim", "class": "rockpro64", "power": true}));
    assert_eq!(code(&r), "internal", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("undone"), "{r}");
    lab.wait_for(Duration::from_secs(10), "the board back, off", || {
        let b = lab.board("rockpro64-1");
        b["state"] == "available" && b["power"] == "off"
    });
    assert_eq!(lab.switch_power("rockpro64-1"), "off", "the port is off at the switch");
}

/// Found by the chaos run with jails: a board actor that panicked while
/// it powered a released board off lost the release's answer ("board
/// actor unavailable"), and the restarted actor found the free board on
/// and left it so. The release's power-off is owed to the board now.
#[cfg(feature = "fault-injection")]
#[test]
fn a_power_off_lost_to_a_board_actor_restart_is_done_after_it() {
    let (lab, c, board) = powered_claim();
    // The switch hangs: the release's power-off waits on it.
    let pid: i32 = std::fs::read_to_string(lab.path().join("snmpd.pid")).unwrap().trim().parse().unwrap();
    let snmpd = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(snmpd, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (sock, handle) = (lab.sock(), c["handle"].clone());
    let release = std::thread::spawn(move || Client::new(&sock).call(json!({"fn": "release", "handle": handle})));
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile the board's actor panics (and is restarted).
    let p = lab.req(json!({"fn": "debug_panic", "board": board}));
    let released = release.join().unwrap();
    let Outcome::Reply(r) = released else { panic!("no answer to the release") };
    assert!(ok(&r)["warning"].as_str().is_some_and(|w| w.contains("could not be powered off")), "{r} ({p})");
    // The hung switch is restarted: the power-off it had queued is lost,
    // and the port is still on.
    labsim_ok(&lab, &["switch", "stop"]);
    labsim_ok(&lab, &["switch", "start"]);
    assert_eq!(lab.switch_power(&board), "on", "the lost power-off never reached the port");
    lab.wait_for(Duration::from_secs(15), "the owed power-off", || {
        let b = lab.board(&board);
        b["state"] == "available" && b["power"] == "off"
    });
    assert_eq!(lab.switch_power(&board), "off", "the port is off at the switch");
}
