//! Hostile input, table-driven, against a real labd on a labsim lab.
//!
//! Every row is one request line. It goes to labd three ways: raw bytes on
//! the socket as root (`Conn`), raw bytes on the socket as bltest-bob
//! (socat, so SO_PEERCRED says bob), and through `labcli` stdin mode as bob
//! (what `ssh labhost labcli` runs). Each way has its expected error code.
//! After every row: every board's status and the event log are exactly as
//! before, the connection still serves (or was closed, for over-long lines)
//! and a second client has been served throughout.
//!
//! `hostile_forced_commands_over_ssh` sends a subset as ssh forced commands
//! through a real OpenSSH server.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::ssh::{keygen, start_sshd};
use common::*;
use serde_json::{json, Value};

#[path = "hostile/table.rs"]
mod table;
use table::*;

fn check(what: &str, r: &Value, e: Expect, me: &str) {
    match e {
        Expect::Code(codes) => {
            assert_eq!(r["ok"], json!(false), "{what}: expected {codes:?}, got success {r}");
            let c = r["error"]["code"].as_str().unwrap_or("");
            assert!(codes.contains(&c), "{what}: expected {codes:?}, got {r}");
            let m = r["error"]["message"].as_str().unwrap_or("");
            assert!(m.len() <= 4096, "{what}: error message of {} bytes", m.len());
        }
        Expect::Me | Expect::Stream => {
            assert_eq!(r["ok"], json!(true), "{what}: expected success, got {r}");
            if let Some(u) = r["result"].get("user") {
                assert_eq!(u, me, "{what}: acted as someone else: {r}");
            }
        }
    }
}

#[test]
fn hostile_requests_change_nothing() {
    let lab = Arc::new(Lab::up(2, "rockpro64,pine64", |t| t));
    let a = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    let alice_handle = ok(&a)["handle"].as_str().unwrap().to_string();
    let board = ok(&a)["board"].as_str().unwrap().to_string();
    let before = lab.snapshot();

    // Another client, served throughout. The guard stops and joins it also
    // when a row fails, so that the last Arc<Lab> is dropped here and labd
    // and labsim are torn down before the test process exits.
    struct Other {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<u32>>,
    }
    impl Other {
        fn finish(&mut self) -> u32 {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().map(|t| t.join().expect("the other client failed")).unwrap_or(0)
        }
    }
    impl Drop for Other {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut other = Other {
        stop: stop.clone(),
        thread: Some({
            let lab = lab.clone();
            std::thread::spawn(move || {
                let mut c = lab.conn();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let r = c.call(json!({"fn": "status"}));
                    assert_eq!(ok(&r).as_array().unwrap().len(), 2, "concurrent client: {r}");
                    n += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                n
            })
        }),
    };

    let table = rows(&board, &alice_handle);
    let whoami = b"{\"fn\":\"whoami\"}\n";
    for r in &table {
        let mut bytes = r.line.clone();
        bytes.push(b'\n');

        // Root, raw socket: the reply, then the connection still serves or is closed.
        let mut c = lab.conn();
        // labd may close before reading all of an over-long line.
        let sent = std::io::Write::write_all(&mut c.stream, &bytes);
        assert!(sent.is_ok() || r.closes, "{}: {sent:?}", r.name);
        let reply = c.read_reply().unwrap_or_else(|| panic!("{}: root: no reply", r.name));
        check(&format!("{} (root, socket)", r.name), &reply, r.root, "root");
        if r.closes {
            assert!(c.closed(), "{}: connection not closed", r.name);
        } else if matches!(r.root, Expect::Stream) {
            drop(c);
        } else {
            check(&format!("{} (root, next request)", r.name), &c.call(json!({"fn": "whoami"})), Expect::Me, "root");
        }

        // Bob, raw socket. socat gives up at its first failed write and
        // never reads the reply, which happens when labd closes while far
        // more than a socket buffer is still unsent: root's connection
        // above covers those lines.
        let mut input = bytes.clone();
        input.extend_from_slice(whoami);
        if r.closes && bytes.len() > 128 * 1024 {
            let replies = lab.stdin_raw_as(BOB, &input);
            check(&format!("{} (bob, labcli)", r.name), &replies[0], r.cli, BOB);
            assert_eq!(lab.snapshot(), before, "{}: state or event log changed", r.name);
            continue;
        }
        let replies = lab.socket_raw_as(BOB, &input);
        check(&format!("{} (bob, socket)", r.name), replies.first().unwrap_or(&Value::Null), r.bob, BOB);
        if r.closes {
            assert_eq!(replies.len(), 1, "{}: bob's connection not closed: {replies:?}", r.name);
        } else {
            assert_eq!(replies.len(), 2, "{}: bob: {replies:?}", r.name);
            check(&format!("{} (bob, next request)", r.name), &replies[1], Expect::Me, BOB);
        }

        // Bob, labcli stdin mode: one reply a line, the session goes on.
        let replies = lab.stdin_raw_as(BOB, &input);
        assert_eq!(replies.len(), 2, "{}: labcli as bob: {replies:?}", r.name);
        check(&format!("{} (bob, labcli)", r.name), &replies[0], r.cli, BOB);
        check(&format!("{} (bob, labcli next)", r.name), &replies[1], Expect::Me, BOB);

        assert_eq!(lab.snapshot(), before, "{}: state or event log changed", r.name);
    }
    let served = other.finish();
    assert!(served > 0);

    // The claimant's own handle with bad leases: the lease is checked, the
    // claim untouched.
    for lease in [
        "-1",
        "0",
        "1e308",
        "18446744073709551616",
        "-9223372036854775808",
        "\"1h\"",
        "true",
        "18446744073709551615",
        "86401",
    ] {
        let l = line("renew", &[("handle", json!(alice_handle).to_string()), ("lease", lease.to_string())]);
        let mut input = l.into_bytes();
        input.push(b'\n');
        let replies = lab.stdin_raw_as(ALICE, &input);
        check(&format!("alice renew lease {lease}"), &replies[0], BAD, ALICE);
        assert_eq!(lab.snapshot(), before, "alice renew lease {lease} changed something");
    }
    eprintln!("{} hostile rows x 3 channels; the other client was served {served} times", table.len());
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": alice_handle})]).remove(0));
}

#[test]
fn hostile_forced_commands_over_ssh() {
    let lab = Lab::up(2, "rockpro64,pine64", |t| t);
    let a = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]).remove(0);
    let h = ok(&a)["handle"].as_str().unwrap().to_string();
    let d = tempfile::Builder::new().prefix("bltest-ssh-").tempdir().unwrap();
    keygen(&d.path().join("alice"));
    keygen(&d.path().join("bob"));
    let pubkey = |n: &str| std::fs::read_to_string(d.path().join(format!("{n}.pub"))).unwrap();
    let forced = |n: &str| format!("command=\"{LABCLI} --socket {}\",restrict {}", lab.sock().display(), pubkey(n));
    let sshd = start_sshd(d.path(), &[(ALICE, forced("alice")), (BOB, forced("bob"))]);
    let (alice_key, bob_key) = (d.path().join("alice"), d.path().join("bob"));
    let canary = d.path().join("canary");
    let c = canary.display();
    let before = lab.snapshot();

    // (user, command, exit status, text on stderr)
    let cases: Vec<(&str, String, i32, &str)> = vec![
        (BOB, format!("release {h}"), 1, "not_claimed"),
        (BOB, format!("power-off {h}"), 1, "not_claimed"),
        (BOB, format!("renew {h} --lease 1h"), 1, "not_claimed"),
        (BOB, format!("release '{}'", h.to_uppercase()), 1, "not_claimed"),
        (BOB, "release bl-00000000000000000000000000000000".into(), 1, "not_claimed"),
        (BOB, format!("release 'bl-{}'", "0".repeat(10_000)), 1, "not_claimed"),
        (BOB, "claim '../../etc/passwd'".into(), 1, "unknown_class"),
        (BOB, format!("claim \"$(touch {c})\""), 1, "unknown_class"),
        (BOB, format!("release '`touch {c}`'"), 1, "not_claimed"),
        (BOB, "maintenance '; rm -rf /' on".into(), 1, "permission_denied"),
        (BOB, "force-release '%s%n%x'".into(), 1, "permission_denied"),
        (BOB, "dump".into(), 1, "permission_denied"),
        (BOB, "release \u{202e}gnp.exe".into(), 1, "not_claimed"),
        (BOB, format!("status; touch {c}"), 2, "unknown command"),
        (BOB, format!("$(touch {c})"), 2, "unknown command"),
        (BOB, format!("status\ntouch {c}"), 2, ""),
        (BOB, "status 'unterminated".into(), 2, "unterminated"),
        (BOB, "--as root status".into(), 2, "not allowed"),
        (BOB, "status --socket=/tmp/evil".into(), 2, "not allowed"),
        (BOB, "log x --tail -1".into(), 2, ""),
        (BOB, "claim pine64 --lease -5s".into(), 2, ""),
        (BOB, "claim pine64 --lease 99999999999999999999s".into(), 2, "too large"),
        (ALICE, format!("renew {h} --lease 99999999999999999999s"), 2, "too large"),
        (ALICE, format!("renew {h} --lease 2d"), 1, "bad_request"),
        (ALICE, format!("release {h} extra"), 2, "unexpected argument"),
        (BOB, format!("run pine64 -- touch {c}"), 2, "`run` is not available"),
        (BOB, "release rockpro64-1".into(), 1, "not_claimed"),
    ];
    for (user, cmd, want, text) in &cases {
        let key = if *user == ALICE { &alice_key } else { &bob_key };
        let o = sshd.run(user, key, Some(cmd), "");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(*want), "{user} {cmd:?}: {err}");
        assert!(err.contains(text), "{user} {cmd:?}: expected {text:?} on stderr: {err}");
        assert!(!canary.exists(), "{cmd:?} ran a command");
        assert_eq!(lab.snapshot(), before, "{user} {cmd:?} changed something");
    }

    // Stdin mode over ssh: binary, invalid UTF-8, an over-long line and a
    // foreign handle, then a good request on the same session.
    let mut input = Vec::new();
    input.extend_from_slice(b"\xff\xfe\x00garbage\n");
    input.extend_from_slice(format!("{{\"fn\":\"release\",\"handle\":\"{h}\"}}\n").as_bytes());
    input.extend_from_slice(&vec![b'x'; 70 * 1024]);
    input.push(b'\n');
    input.extend_from_slice(b"{\"fn\":\"console\",\"handle\":\"x\"}\n");
    input.extend_from_slice(b"whoami\n");
    let o = sshd.run(BOB, &bob_key, None, &input);
    let replies = reply_lines(&o.stdout);
    let codes: Vec<&str> = replies.iter().map(|r| r["error"]["code"].as_str().unwrap_or("ok")).collect();
    assert_eq!(codes, ["bad_request", "not_claimed", "bad_request", "bad_request", "ok"], "{replies:?}");
    assert_eq!(replies[4]["result"]["user"], BOB);
    assert_eq!(lab.snapshot(), before);
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": h})]).remove(0));
}
