//! The serial console end to end: labsim's board on a real pty, labd's
//! console pump, sessions over the socket, logs on disk, hot-plug.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Claims the lab's board with power as `user` (through labcli) and waits
/// for its boot to finish (the prompt after the DHCP attempt).
fn claim_booted(lab: &Lab, user: &str) -> Value {
    let r = lab.as_user(user, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    let c = ok(&r).clone();
    lab.wait_for(Duration::from_secs(15), "the board to boot", || {
        let r = lab.req(json!({"fn": "console_log", "handle": c["board"]}));
        r["ok"] == true && r["result"]["log"].as_str().unwrap_or("").contains("=> ")
    });
    c
}

fn attach(lab: &Lab, handle: &Value, read_only: bool) -> (Conn, Value) {
    let mut c = lab.conn();
    let r = c.call(json!({"fn": "console", "handle": handle, "read_only": read_only}));
    (c, r)
}

#[test]
fn every_byte_round_trips_and_one_writer_at_a_time() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let claim = claim_booted(&lab, "root");
    let h = &claim["handle"];
    let (mut a, r) = attach(&lab, h, false);
    assert_eq!(ok(&r)["writer"], true);
    let (mut b, r) = attach(&lab, h, false);
    assert_eq!(ok(&r)["writer"], false, "a second writer is refused while the first holds it");
    assert!(ok(&r)["message"].as_str().unwrap().contains("read-only"));

    // All 256 byte values, client -> board -> client (the board echoes).
    let all: Vec<u8> = (0..=255u8).collect();
    a.send_raw(&all);
    let got_a = a.read_until(Duration::from_secs(10), |g| subsequence(g, &all));
    assert!(subsequence(&got_a, &all), "writer saw {} bytes, not all 256 in order", got_a.len());
    let got_b = b.read_until(Duration::from_secs(10), |g| subsequence(g, &all));
    assert!(subsequence(&got_b, &all), "reader saw {} bytes", got_b.len());
    // Both readers saw the same stream.
    let tail_a = a.read_until(Duration::from_millis(300), |_| false);
    let tail_b = b.read_until(Duration::from_millis(300), |_| false);
    let mut ga = got_a.clone();
    ga.extend(tail_a);
    let mut gb = got_b.clone();
    gb.extend(tail_b);
    assert_eq!(ga, gb, "two sessions see identical bytes");

    // The read-only session's typing goes nowhere, and it is told so, once.
    b.send_raw(b"XYZZY");
    let seen = a.read_until(Duration::from_millis(800), |g| contains(g, b"XYZZY"));
    assert!(!contains(&seen, b"XYZZY"), "read-only input reached the board");
    let told = b.read_until(Duration::from_secs(3), |g| contains(g, b"input dropped"));
    assert!(contains(&told, b"input dropped: another session is typing"), "{}", String::from_utf8_lossy(&told));

    // When the writer leaves, the session that waited types next, and is
    // told; one that comes later waits its turn.
    drop(a);
    let told = b.read_until(Duration::from_secs(5), |g| contains(g, b"you are typing now"));
    assert!(contains(&told, b"you are typing now"), "{}", String::from_utf8_lossy(&told));
    let (mut c, r) = attach(&lab, h, false);
    assert_eq!(ok(&r)["writer"], false, "the waiting session took the slot first");
    // A CR first ends the line the 256 bytes left behind.
    b.send_raw(b"\rversion\r");
    let out = b.read_until(Duration::from_secs(5), |g| contains(g, b"boardlab-sim"));
    assert!(contains(&out, b"boardlab-sim"), "{}", String::from_utf8_lossy(&out));
    drop(b);
    let told = c.read_until(Duration::from_secs(5), |g| contains(g, b"you are typing now"));
    assert!(contains(&told, b"you are typing now"), "{}", String::from_utf8_lossy(&told));
}

/// A claimant's session is told when the lease is about to end, and how
/// the claim ended when it does.
#[test]
fn a_session_hears_of_the_lease_end_and_of_how_the_claim_ended() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let r = lab.req(json!({"fn": "claim", "class": "rockpro64", "lease": 120}));
    let c = ok(&r).clone();
    let mut s = lab.conn();
    let r = s.call(json!({"fn": "console", "handle": c["handle"]}));
    assert_eq!(ok(&r)["writer"], true, "{r}");
    let got = s.read_until(Duration::from_secs(5), |g| contains(g, b"lease ends at"));
    assert!(contains(&got, b"`renew` to keep the board"), "{}", String::from_utf8_lossy(&got));
    ok(&lab.req(json!({"fn": "force_release", "board": c["board"]})));
    let got = s.read_until(Duration::from_secs(5), |g| contains(g, b"console closed"));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains(&format!("your claim on {} was force-released by root at ", c["board"].as_str().unwrap())),
        "{text}"
    );
}

#[test]
fn sessions_and_logs_belong_to_their_claim() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let first = claim_booted(&lab, ALICE);
    let h1 = first["handle"].as_str().unwrap().to_string();
    // Bob cannot watch or read alice's console; root (an operator) may read.
    let r = lab.as_user(BOB, &[json!({"fn": "console_log", "handle": h1})]).remove(0);
    assert_eq!(code(&r), "not_claimed");
    let r = lab.as_user(BOB, &[json!({"fn": "console_log", "handle": "rockpro64-1"})]).remove(0);
    assert_eq!(code(&r), "not_claimed", "a board name is no handle for a non-operator");
    let r = lab.req(json!({"fn": "console_log", "handle": "rockpro64-1", "tail": 3}));
    assert!(ok(&r)["log"].as_str().unwrap().contains("=> "));
    let r = lab.req(json!({"fn": "console", "handle": "rockpro64-1"}));
    assert_eq!(ok(&r)["writer"], false, "operators watch read-only");

    // Alice types a marker through `labcli console`; it lands in her log.
    let r = lab.as_user(ALICE, &[json!({"fn": "console_log", "handle": h1})]).remove(0);
    assert!(ok(&r)["log"].as_str().unwrap().contains("boardlab-sim U-Boot"));
    let mut cli = lab.spawn_cli_as(ALICE, &["console", &h1]);
    {
        use std::io::Write;
        let stdin = cli.stdin.as_mut().unwrap();
        stdin.write_all(b"alice-secret-42\r").unwrap();
        stdin.flush().unwrap();
    }
    // Root watches (read-only) to see the session end with the claim.
    let (mut s, r) = attach(&lab, &json!("rockpro64-1"), true);
    ok(&r);
    lab.wait_for(Duration::from_secs(5), "the marker in alice's log", || {
        let r = lab.req(json!({"fn": "console_log", "handle": h1}));
        r["result"]["log"].as_str().unwrap_or("").contains("alice-secret-42")
    });
    // Release: her session ends with her claim (an operator's watch does not).
    ok(&lab.req(json!({"fn": "force_release", "board": "rockpro64-1"})));
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = cli.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "alice's console session outlived her claim");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "labcli console says the claim ended, and how, and exits 1");
    let mut out = Vec::new();
    {
        use std::io::Read;
        cli.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    }
    assert!(contains(&out, b"alice-secret-42"), "alice saw her echo");
    assert!(contains(&out, b"was force-released by root at "), "{}", String::from_utf8_lossy(&out));
    assert!(contains(&out, b"console closed"), "{}", String::from_utf8_lossy(&out));
    assert!(!s.closed_within(Duration::from_millis(300)), "an operator's watch stays open");
    drop(s);

    // Bob gets the board; alice's output is not his to read.
    let second = claim_booted(&lab, BOB);
    let h2 = second["handle"].as_str().unwrap().to_string();
    let r = lab.as_user(BOB, &[json!({"fn": "console_log", "handle": h2})]).remove(0);
    let log = ok(&r)["log"].as_str().unwrap().to_string();
    assert!(log.contains("boardlab-sim U-Boot"), "bob's boot is in bob's log");
    assert!(!log.contains("alice-secret-42"), "the previous claim's output leaked");
    // alice learns her claim ended; bob nothing.
    for (who, said) in [(ALICE, "claim_ended"), (BOB, "not_claimed")] {
        let r = lab.as_user(who, &[json!({"fn": "console_log", "handle": h1})]).remove(0);
        assert_eq!(code(&r), said, "{r}");
    }
    let files: Vec<String> = std::fs::read_dir(lab.path().join("logs/rockpro64-1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(files.iter().all(|f| !f.starts_with(&h1)), "alice's log files are gone: {files:?}");
}

#[test]
fn logs_rotate_at_the_cap() {
    let lab = Lab::up(1, "rockpro64", |t| format!("{t}\n[console]\nlog_max_bytes = 4096\nlog_keep = 1\n"));
    let c = claim_booted(&lab, "root");
    let h = c["handle"].as_str().unwrap().to_string();
    let (mut s, r) = attach(&lab, &json!(h), false);
    ok(&r);
    // About 150 bytes of output a time: more than two caps' worth.
    for _ in 0..70 {
        s.send_raw(b"help\r");
        s.read_until(Duration::from_secs(5), |g| contains(g, b"=> "));
    }
    s.send_raw(b"last-line-marker\r");
    s.read_until(Duration::from_secs(5), |g| contains(g, b"last-line-marker"));
    let dir = lab.path().join("logs/rockpro64-1");
    lab.wait_for(Duration::from_secs(5), "a rotated log", || dir.join(format!("{h}.log.1")).exists());
    assert!(!dir.join(format!("{h}.log.2")).exists(), "log_keep = 1 keeps one rotated file");
    for f in [format!("{h}.log"), format!("{h}.log.1")] {
        let len = std::fs::metadata(dir.join(&f)).unwrap().len();
        assert!(len <= 4096, "{f} is {len} bytes, over the cap");
    }
    lab.wait_for(Duration::from_secs(5), "the tail to show the last line", || {
        let r = lab.req(json!({"fn": "console_log", "handle": h, "tail": 2}));
        let log = r["result"]["log"].as_str().unwrap_or("").to_string();
        log.contains("last-line-marker") && log.lines().count() <= 2
    });
}

#[test]
fn an_unplugged_adapter_comes_back_by_itself() {
    let lab = Lab::up(2, "rockpro64", |t| t);
    let c = claim_booted(&lab, "root");
    let board = c["board"].as_str().unwrap().to_string();
    let h = c["handle"].as_str().unwrap().to_string();
    let out = lab.labsim(&["unplug", &board]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.wait_for(Duration::from_secs(5), "the console to show missing", || lab.board(&board)["console"] == "missing");
    // Power and claims are unaffected meanwhile.
    let v = lab.board(&board);
    assert_eq!(v["state"], "claimed");
    ok(&lab.req(json!({"fn": "power_cycle", "handle": h})));
    let out = lab.labsim(&["plug", &board]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.wait_for(Duration::from_secs(5), "the console to come back", || lab.board(&board)["console"] == "attached");
    let (mut s, r) = attach(&lab, &json!(h), false);
    ok(&r);
    s.send_raw(b"version\r");
    let got = s.read_until(Duration::from_secs(5), |g| contains(g, b"boardlab-sim"));
    assert!(contains(&got, b"boardlab-sim"), "typing works again: {}", String::from_utf8_lossy(&got));
    let r = lab.req(json!({"fn": "console_log", "handle": h}));
    let log = ok(&r)["log"].as_str().unwrap().to_string();
    let gone = log.find("console adapter vanished").expect("the gap is logged");
    let back = log.find("console adapter back").expect("the return is logged");
    assert!(gone < back);
    let d = lab.req(json!({"fn": "dump"}));
    let me = ok(&d)["boards"].as_array().unwrap().iter().find(|b| b["board"] == board.as_str()).unwrap().clone();
    assert_eq!(me["restarts"], 0, "no actor restart was needed");
}

/// How a CI job records a boot: `labcli console --read-only </dev/null`
/// keeps streaming after its input ended, until the claim ends.
#[test]
fn labcli_console_from_dev_null_records_the_boot() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let c = claim_booted(&lab, "root");
    let h = c["handle"].as_str().unwrap().to_string();
    let mut cli = lab.labcli_as("root");
    let mut child = cli
        .args(["console", &h, "--read-only"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "labcli ended with its input");
    ok(&lab.req(json!({"fn": "power_cycle", "handle": h})));
    std::thread::sleep(Duration::from_secs(3));
    ok(&lab.req(json!({"fn": "release", "handle": h})));
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "labcli outlived the claim");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = Vec::new();
    {
        use std::io::Read;
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("boardlab-sim U-Boot"), "the boot was recorded: {text}");
    assert!(text.contains("was released"), "{text}");
    assert_eq!(status.code(), Some(1), "the claim ended under the session");
}
