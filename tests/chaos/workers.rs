//! The chaos test's clients: raw-socket claimants, labcli claimants and an
//! operator, each working labd until told to stop and keeping the ledger
//! of what it believes it holds.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::common::*;
use super::ledger::*;

/// Handles of `user`'s claims that this client works with.
pub fn mine(ledger: &Mutex<Ledger>, handles: &[String]) -> Vec<String> {
    let l = ledger.lock().unwrap();
    handles.iter().filter(|h| l.held.contains_key(*h)).cloned().collect()
}

/// One raw client (root) working the socket until `stop`.
pub fn raw_worker(sock: PathBuf, seed: u64, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut rng = Rng(seed);
    let mut c = Client::new(&sock);
    let mut handles: Vec<String> = Vec::new();
    let user = "root";
    while !stop.load(Ordering::Relaxed) {
        handles = mine(&ledger, &handles);
        // Drop what has surely expired.
        {
            let mut l = ledger.lock().unwrap();
            let now = now_ms();
            handles.retain(|h| match l.held.get(h) {
                Some(c) if c.expires_max < now => {
                    l.held.remove(h);
                    l.stats.expired_seen += 1;
                    false
                }
                _ => true,
            });
        }
        if handles.len() < 2 && rng.chance(60) || handles.is_empty() {
            let class = if rng.chance(50) { "rockpro64" } else { "pine64" };
            // Mostly short leases (expiry happens), some long ones that
            // must survive every fault.
            let lease = if rng.chance(85) { rng.range(2, 5) } else { rng.range(20, 45) };
            let sent = now_ms();
            let mut req = json!({"fn": "claim", "class": class, "power": rng.chance(50), "lease": lease});
            // Some wait in the class's queue for a board to come back.
            let wait = rng.chance(25);
            if wait {
                req["wait"] = json!(rng.range(1, 4));
            }
            let o = c.call(req);
            let mut l = ledger.lock().unwrap();
            l.count(&o);
            match &o {
                Outcome::Reply(v) if v["error"]["code"] == json!("timeout") => l.stats.wait_timeouts += 1,
                Outcome::Reply(v) if v["error"]["code"] == json!("no_device_available") => {
                    drop(l);
                    std::thread::sleep(Duration::from_millis(rng.range(20, 100)));
                }
                Outcome::Reply(v) if v["ok"] == json!(true) => {
                    if wait && now_ms() - sent > 100 {
                        l.stats.waited += 1;
                    }
                    if let Some(h) = l.granted(user, &v["result"]) {
                        handles.push(h);
                    } else {
                        l.violations.push(format!("claim reply without handle/board/times: {v}"));
                    }
                }
                Outcome::Lost => l.uncertain.push((user.into(), sent, now_ms())),
                _ => {}
            }
        } else {
            let h = handles[rng.below(handles.len() as u64) as usize].clone();
            let f = match rng.below(9) {
                0 => "power_on",
                1 => "power_off",
                2 => "power_cycle",
                3 | 4 => "renew",
                5 => "reinit",
                6 => "status",
                _ => "release",
            };
            let mut req = json!({"fn": f, "handle": h});
            match f {
                "renew" => req["lease"] = json!(if rng.chance(85) { rng.range(2, 5) } else { rng.range(20, 45) }),
                "release" => {
                    if let Some(c) = ledger.lock().unwrap().held.get_mut(&h) {
                        c.releasing = true;
                    }
                }
                "status" => req = json!({"fn": "status"}),
                _ => {}
            }
            let sent = now_ms();
            let o = c.call(req);
            let mut l = ledger.lock().unwrap();
            l.count(&o);
            match (&o, f) {
                (Outcome::Reply(v), _) if ended(v) => l.not_claimed(&h, sent, f),
                (Outcome::Reply(v), "status") if v["ok"] == json!(true) => {
                    // Everything this client holds (for at least SLACK_MS
                    // more, and as of before the request) must be listed.
                    let boards: HashMap<String, Value> = v["result"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|b| (b["board"].as_str().unwrap().to_string(), b.clone()))
                        .collect();
                    let now = now_ms();
                    let mut bad = Vec::new();
                    for hh in &handles {
                        if let Some(c) = l.held.get(hh) {
                            let b = &boards[&c.board];
                            if c.expires_min > now + SLACK_MS
                                && (b["user"] != json!(c.user) || b["claimed_at"] != json!(c.claimed_at))
                            {
                                bad.push(format!(
                                    "status shows {b} while {} holds {} since {}",
                                    c.user, c.board, c.claimed_at
                                ));
                            }
                        }
                    }
                    l.violations.extend(bad);
                }
                (Outcome::Reply(v), "renew") if v["ok"] == json!(true) => {
                    let exp = parse_ms(&v["result"]["expires_at"]).unwrap();
                    if let Some(c) = l.held.get_mut(&h) {
                        c.expires_min = exp;
                        c.expires_max = exp;
                    }
                }
                (Outcome::Lost, "renew") => {
                    if let Some(c) = l.held.get_mut(&h) {
                        c.expires_max = c.expires_max.max(now_ms() + 120_000);
                    }
                }
                (Outcome::Reply(v), "release") if v["ok"] == json!(true) => {
                    l.held.remove(&h);
                    l.stats.releases += 1;
                }
                (Outcome::Lost, "release") => {
                    l.held.remove(&h);
                }
                (_, "release") => {
                    if let Some(c) = l.held.get_mut(&h) {
                        c.releasing = false;
                    }
                }
                (Outcome::Reply(v), _) if v["ok"] == json!(true) => {
                    // The answer shows the board as it is when the work is
                    // done: the lease may have run out meanwhile.
                    let r = &v["result"];
                    let Some(c) = l.held.get(&h).cloned() else { continue };
                    if r["board"] != json!(c.board) {
                        l.violations.push(format!("{f} on {h} answered for another board: {r}"));
                    } else if r["user"] != json!(user) {
                        // Its lease ran out, or the operator took the
                        // board, while the work was done.
                        if c.expires_min > sent + SLACK_MS && !l.forced(&c.board, sent) {
                            l.violations.push(format!("{f} on {h} ({}) shows it not claimed by {user}: {r}", c.board));
                        }
                        l.held.remove(&h);
                        l.stats.expired_seen += 1;
                    }
                }
                _ => {}
            }
        }
        // Back off a little while labd is away; otherwise a short pause so
        // the four clients interleave.
        let pause = if c.conn.is_none() { 50 } else { rng.range(0, 20) };
        std::thread::sleep(Duration::from_millis(pause));
    }
}

/// The operator (root): force-releases boards the clients hold, puts free
/// boards into maintenance for a while (and checks that a held one cannot
/// go), until `stop`; then takes every board it put in maintenance out.
pub fn operator_worker(
    sock: PathBuf,
    seed: u64,
    boards: Vec<String>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng(seed);
    let mut c = Client::new(&sock);
    let mut mine: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(rng.range(300, 1200)));
        match rng.below(3) {
            0 => {
                // Force-release a board some client holds: the claim is
                // the client's no more from the moment it is sent.
                let victim = {
                    let mut l = ledger.lock().unwrap();
                    let hs: Vec<String> = l.held.iter().filter(|(_, c)| !c.releasing).map(|(h, _)| h.clone()).collect();
                    if hs.is_empty() {
                        continue;
                    }
                    let h = hs[rng.below(hs.len() as u64) as usize].clone();
                    l.held.remove(&h)
                };
                let Some(v) = victim else { continue };
                ledger.lock().unwrap().forcing.insert(v.board.clone(), (now_ms(), i64::MAX));
                let o = c.call(json!({"fn": "force_release", "board": v.board}));
                let mut l = ledger.lock().unwrap();
                if let Some(f) = l.forcing.get_mut(&v.board) {
                    f.1 = now_ms();
                }
                l.count(&o);
                if let Outcome::Reply(r) = &o {
                    if r["ok"] == json!(true) {
                        l.stats.force_releases += 1;
                        // By board: whichever claim had the board when it
                        // ran is gone, also one granted after the victim
                        // was chosen (its own release raced this one).
                        let gone: Vec<String> =
                            l.held.iter().filter(|(_, c)| c.board == v.board).map(|(h, _)| h.clone()).collect();
                        for h in gone {
                            l.held.remove(&h);
                        }
                    } else if r["error"]["code"] != json!("not_claimed") && r["error"]["code"] != json!("internal") {
                        l.violations.push(format!("force_release of {}: {r}", v.board));
                    }
                }
            }
            1 if mine.len() < 2 => {
                // Mostly a board no client holds; now and then a held one,
                // which must be refused.
                let free: Vec<&String> = {
                    let l = ledger.lock().unwrap();
                    boards.iter().filter(|b| !l.held.values().any(|c| c.board == **b)).collect()
                };
                let b = match free.is_empty() || rng.chance(20) {
                    true => boards[rng.below(boards.len() as u64) as usize].clone(),
                    false => free[rng.below(free.len() as u64) as usize].clone(),
                };
                if mine.contains(&b) {
                    continue;
                }
                let held_long = {
                    let l = ledger.lock().unwrap();
                    l.held.values().any(|c| c.board == b && !c.releasing && c.expires_min > now_ms() + SLACK_MS)
                };
                let o = c.call(json!({"fn": "maintenance", "board": b, "on": true}));
                let mut l = ledger.lock().unwrap();
                l.count(&o);
                let Outcome::Reply(r) = &o else { continue };
                if r["ok"] == json!(true) {
                    if held_long {
                        l.violations.push(format!("{b} went into maintenance while a client held it: {r}"));
                    }
                    l.maintenance.insert(b.clone(), now_ms());
                    l.stats.maintenance_windows += 1;
                    mine.push(b);
                } else if r["error"]["code"] == json!("busy") {
                    l.stats.maintenance_refused += 1;
                } else if r["error"]["code"] != json!("internal") {
                    l.violations.push(format!("maintenance on {b}: {r}"));
                }
            }
            _ if !mine.is_empty() => {
                let b = mine.remove(rng.below(mine.len() as u64) as usize);
                ledger.lock().unwrap().maintenance.remove(&b);
                take_out_of_maintenance(&mut c, &b, &ledger);
            }
            _ => {}
        }
    }
    for b in mine {
        ledger.lock().unwrap().maintenance.remove(&b);
        take_out_of_maintenance(&mut c, &b, &ledger);
    }
}

/// `maintenance off`, retried while labd is away (a lab left in
/// maintenance would not recover).
pub fn take_out_of_maintenance(c: &mut Client, board: &str, ledger: &Mutex<Ledger>) {
    let t0 = Instant::now();
    loop {
        let o = c.call(json!({"fn": "maintenance", "board": board, "on": false}));
        ledger.lock().unwrap().count(&o);
        match o {
            Outcome::Reply(r) if r["ok"] == json!(true) => return,
            _ if t0.elapsed() > Duration::from_secs(60) => {
                ledger.lock().unwrap().violations.push(format!("{board} could not be taken out of maintenance"));
                return;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `labcli --json ARGS` as `user`: (exit code, stdout JSON if any).
pub fn labcli(sock: &Path, user: &str, args: &[&str]) -> (i32, Option<Value>) {
    let (uid, gid) = uid_of(user);
    let out = Command::new(LABCLI)
        .arg("--socket")
        .arg(sock)
        .arg("--json")
        .args(args)
        .uid(uid)
        .gid(gid)
        .env_remove("SSH_ORIGINAL_COMMAND")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout).lines().next().and_then(|l| serde_json::from_str(l).ok());
    (out.status.code().unwrap_or(-1), v)
}

/// alice and bob through labcli (a process per request, so fewer of them).
pub fn cli_worker(sock: PathBuf, seed: u64, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut rng = Rng(seed);
    let mut handles: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let user = if rng.chance(50) { ALICE } else { BOB };
        handles = mine(&ledger, &handles);
        let theirs: Vec<String> = {
            let l = ledger.lock().unwrap();
            handles.iter().filter(|h| l.held.get(*h).map(|c| c.user == user).unwrap_or(false)).cloned().collect()
        };
        let sent = now_ms();
        if theirs.is_empty() || rng.chance(30) {
            let class = if rng.chance(50) { "rockpro64" } else { "pine64" };
            let lease = format!("{}s", rng.range(2, 5));
            let mut args = vec!["claim", class, "--lease", &lease];
            if rng.chance(50) {
                args.push("--power");
            }
            let (code, v) = labcli(&sock, user, &args);
            let o = match (code, v) {
                (0, Some(r)) => Outcome::Reply(json!({"ok": true, "result": r})),
                (1, Some(r)) => Outcome::Reply(r),
                (3, _) => Outcome::Lost,
                (c, v) => panic!("labcli claim exited {c} with {v:?}"),
            };
            let mut l = ledger.lock().unwrap();
            l.count(&o);
            match &o {
                Outcome::Reply(v) if v["ok"] == json!(true) => match l.granted(user, &v["result"]) {
                    Some(h) => handles.push(h),
                    None => l.violations.push(format!("labcli claim reply without handle: {v}")),
                },
                Outcome::Lost => l.uncertain.push((user.into(), sent, now_ms())),
                _ => {}
            }
        } else {
            let h = theirs[rng.below(theirs.len() as u64) as usize].clone();
            let args: Vec<&str> = match rng.below(4) {
                0 => vec!["renew", &h, "--lease", "4s"],
                1 => vec!["power-on", &h],
                2 => vec!["power-off", &h],
                _ => vec!["release", &h],
            };
            let releasing = args[0] == "release";
            if releasing {
                if let Some(c) = ledger.lock().unwrap().held.get_mut(&h) {
                    c.releasing = true;
                }
            }
            let (code, v) = labcli(&sock, user, &args);
            let mut l = ledger.lock().unwrap();
            let o = match (code, v) {
                (0, Some(r)) => Outcome::Reply(json!({"ok": true, "result": r})),
                (1, Some(r)) => Outcome::Reply(r),
                (3, _) => Outcome::Lost,
                (c, v) => panic!("labcli {args:?} exited {c} with {v:?}"),
            };
            l.count(&o);
            match &o {
                Outcome::Reply(v) if ended(v) => l.not_claimed(&h, sent, args[0]),
                Outcome::Reply(v) if v["ok"] == json!(true) && releasing => {
                    l.held.remove(&h);
                    l.stats.releases += 1;
                }
                Outcome::Reply(v) if v["ok"] == json!(true) && args[0] == "renew" => {
                    let exp = parse_ms(&v["result"]["expires_at"]).unwrap();
                    if let Some(c) = l.held.get_mut(&h) {
                        c.expires_min = exp;
                        c.expires_max = exp;
                    }
                }
                Outcome::Lost if releasing => {
                    l.held.remove(&h);
                }
                Outcome::Lost if args[0] == "renew" => {
                    if let Some(c) = l.held.get_mut(&h) {
                        c.expires_max = c.expires_max.max(now_ms() + 5_000);
                    }
                }
                _ if releasing => {
                    if let Some(c) = l.held.get_mut(&h) {
                        c.releasing = false;
                    }
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(rng.range(50, 300)));
    }
}

/// The claim is gone: unknown (`not_claimed`) or ended, as its claimant
/// is told (`claim_ended`).
pub fn ended(v: &Value) -> bool {
    v["error"]["code"] == json!("not_claimed") || v["error"]["code"] == json!("claim_ended")
}
