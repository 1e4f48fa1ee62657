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

/// What a row must produce on one channel.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// An error reply with one of these codes.
    Code(&'static [&'static str]),
    /// Success, as the caller (any `user` in the result is the peer).
    Me,
    /// Success, and the connection is now a console byte stream (an
    /// operator watching a claimed board): nothing more is asked on it.
    Stream,
}

const BAD: Expect = Expect::Code(&["bad_request"]);
const NOT_CLAIMED: Expect = Expect::Code(&["not_claimed"]);
const DENIED: Expect = Expect::Code(&["permission_denied"]);
const UNKNOWN_BOARD: Expect = Expect::Code(&["unknown_board"]);
const UNKNOWN_CLASS: Expect = Expect::Code(&["unknown_class"]);
const UNKNOWN_FN: Expect = Expect::Code(&["unknown_function"]);
/// A foreign or guessed handle on `console` and `console_log` is
/// `not_claimed`, like everywhere else: nothing is revealed.
const CONSOLE: Expect = Expect::Code(&["not_claimed"]);

struct Row {
    name: String,
    line: Vec<u8>,
    /// Raw socket as root (an operator).
    root: Expect,
    /// Raw socket as bob (a user).
    bob: Expect,
    /// labcli stdin mode as bob.
    cli: Expect,
    /// labd refuses the line and closes the connection.
    closes: bool,
}

fn row(name: impl Into<String>, line: impl Into<Vec<u8>>, all: Expect) -> Row {
    Row { name: name.into(), line: line.into(), root: all, bob: all, cli: all, closes: false }
}

impl Row {
    fn user(mut self, e: Expect) -> Row {
        self.bob = e;
        self.cli = e;
        self
    }
    fn cli(mut self, e: Expect) -> Row {
        self.cli = e;
        self
    }
    fn root(mut self, e: Expect) -> Row {
        self.root = e;
        self
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Bool,
    Str,
    Num,
}

/// Every function with its arguments and types, as the contract lists them.
/// A function and its well-formed arguments (name, type, value).
type Function = (&'static str, Vec<(&'static str, Ty, Value)>);

fn functions(board: &str) -> Vec<Function> {
    let h = json!("bl-00000000000000000000000000000000");
    let mut f = vec![
        ("classes", vec![("available", Ty::Bool, json!(true))]),
        ("status", vec![("mine", Ty::Bool, json!(true))]),
        (
            "claim",
            vec![
                ("class", Ty::Str, json!("pine64")),
                ("power", Ty::Bool, json!(false)),
                ("lease", Ty::Num, json!(60)),
                ("wait", Ty::Num, json!(1)),
            ],
        ),
        ("renew", vec![("handle", Ty::Str, h.clone()), ("lease", Ty::Num, json!(60))]),
        ("reinit", vec![("handle", Ty::Str, h.clone())]),
        ("release", vec![("handle", Ty::Str, h.clone())]),
        ("power_on", vec![("handle", Ty::Str, h.clone())]),
        ("power_off", vec![("handle", Ty::Str, h.clone())]),
        ("power_cycle", vec![("handle", Ty::Str, h.clone())]),
        ("console", vec![("handle", Ty::Str, h.clone()), ("read_only", Ty::Bool, json!(true))]),
        ("console_log", vec![("handle", Ty::Str, h.clone()), ("tail", Ty::Num, json!(10))]),
        ("whoami", vec![]),
        ("dump", vec![]),
        ("maintenance", vec![("board", Ty::Str, json!(board)), ("on", Ty::Bool, json!(false))]),
        ("force_release", vec![("board", Ty::Str, json!(board))]),
    ];
    if cfg!(feature = "fault-injection") {
        f.push(("debug_panic", vec![("board", Ty::Str, json!(board))]));
    }
    f
}

/// Wrong values for a type, as raw JSON text (some are not representable
/// as a serde_json `Value`: 2^64).
fn wrong(ty: Ty) -> &'static [&'static str] {
    match ty {
        Ty::Bool => &["\"true\"", "1", "0", "null", "[]", "{}", "\"\""],
        Ty::Str => &["5", "true", "[]", "{}", "null", "[\"bl-1\"]", "{\"$ne\":null}"],
        Ty::Num => &[
            "\"60\"",
            "true",
            "[]",
            "{}",
            "-1",
            "1.5",
            "1e308",
            "-1e308",
            "18446744073709551616",
            "-9223372036854775808",
            "0.0",
            "-0.5",
            "1e400",
        ],
    }
}

/// A request line from (key, raw JSON) pairs.
fn line(f: &str, args: &[(&str, String)]) -> String {
    let mut s = format!("{{\"fn\":{}", json!(f));
    for (k, v) in args {
        s.push_str(&format!(",{}:{v}", json!(k)));
    }
    s.push('}');
    s
}

/// Strings that would mean something to a shell, a path, printf, SQL, a
/// terminal or a careless parser.
fn hostile_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "../../etc/passwd",
        "/etc/shadow",
        "$(id)",
        "`id`",
        "; rm -rf /",
        "a\nb",
        "line\r\nbreak",
        "%s%n%x%p",
        "\u{202e}gnp.exe",
        "nul\u{0}byte",
        "' OR '1'='1",
        "x\"; DROP TABLE claims; --",
        "*",
        "",
        " ",
        "~root",
        "\\",
        "\"",
        "\u{1b}[2J\u{1b}]0;pwned\u{7}",
        "\u{feff}rockpro64",
        "rockpro64 ",
        "ROCKPRO64",
        "{\"fn\":\"dump\"}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("A".repeat(10 * 1024));
    v
}

fn rows(board: &str, alice_handle: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let fault = cfg!(feature = "fault-injection");

    // Not JSON, not an object, not UTF-8.
    for (name, bytes) in [
        ("not json", b"this is not json".to_vec()),
        ("truncated", b"{\"id\":1,\"fn\":\"claim\",\"class\":\"pine".to_vec()),
        ("truncated after key", b"{\"fn\":".to_vec()),
        ("open brace", b"{".to_vec()),
        ("close brace", b"}".to_vec()),
        ("array", b"[{\"fn\":\"status\"}]".to_vec()),
        ("string", b"\"status\"".to_vec()),
        ("number", b"42".to_vec()),
        ("null", b"null".to_vec()),
        ("two objects", b"{\"fn\":\"status\"}{\"fn\":\"dump\"}".to_vec()),
        ("trailing garbage", b"{\"fn\":\"status\"} x".to_vec()),
        ("nul after object", b"{\"fn\":\"status\"}\0".to_vec()),
        ("raw nul in string", b"{\"fn\":\"claim\",\"class\":\"a\0b\"}".to_vec()),
        ("raw control char in string", b"{\"fn\":\"claim\",\"class\":\"a\x01b\"}".to_vec()),
        ("invalid utf-8", b"{\"fn\":\"claim\",\"class\":\"\xff\xfe\"}".to_vec()),
        ("overlong utf-8", b"{\"fn\":\"st\xc1\xa1tus\"}".to_vec()),
        ("lone surrogate escape", b"{\"fn\":\"claim\",\"class\":\"\\ud800\"}".to_vec()),
        ("binary garbage", (0u8..=255).filter(|&b| b != b'\n').collect()),
        ("deep nesting", format!("{{\"id\":{}{},\"fn\":\"status\"}}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
        ("single quotes", b"{'fn':'status'}".to_vec()),
        ("comment", b"{\"fn\":\"status\"} // x".to_vec()),
    ] {
        // labcli reads a line that does not start with `{` as a command
        // line: `"status"` is the status command, quotes and all.
        let cli = if name == "string" { Expect::Me } else { BAD };
        rows.push(row(name, bytes, BAD).cli(cli));
    }

    // Missing or mistyped `fn`, unknown functions, spoofed identity.
    for (name, l, e) in [
        ("no fn", r#"{"id":1}"#.to_string(), BAD),
        ("fn number", r#"{"fn":5}"#.to_string(), BAD),
        ("fn null", r#"{"fn":null}"#.to_string(), BAD),
        ("fn array", r#"{"fn":["status"]}"#.to_string(), BAD),
        ("unknown fn", r#"{"fn":"frobnicate"}"#.to_string(), UNKNOWN_FN),
        ("fn with dash", r#"{"fn":"power-on","handle":"h"}"#.to_string(), UNKNOWN_FN),
        ("fn upper case", r#"{"fn":"STATUS"}"#.to_string(), UNKNOWN_FN),
        ("fn padded", r#"{"fn":" status"}"#.to_string(), UNKNOWN_FN),
        ("fn huge", format!("{{\"fn\":{}}}", json!("x".repeat(20_000))), UNKNOWN_FN),
        ("fn shell", r#"{"fn":"status; id"}"#.to_string(), UNKNOWN_FN),
    ] {
        rows.push(row(name, l, e));
    }
    // labcli drops any `as` of a stdin line (only its own --as counts).
    rows.push(row("as wrong type", r#"{"fn":"whoami","as":7}"#, BAD).cli(Expect::Me));
    if !fault {
        rows.push(row("debug_panic without the feature", r#"{"fn":"debug_panic","board":"x"}"#, UNKNOWN_FN));
    }
    for s in ["root", BOB, ALICE, "$(id)", "../../etc/passwd", ""] {
        let spoof = line("whoami", &[("user", json!(s).to_string()), ("as", json!(s).to_string())]);
        rows.push(row(format!("whoami spoofing {s:?}"), spoof, Expect::Me));
        rows.push(row(
            format!("status with hostile id {s:?}"),
            line("status", &[("id", json!(s).to_string())]),
            Expect::Me,
        ));
    }

    for (f, args) in functions(board) {
        let base: Vec<(&str, String)> = args.iter().map(|(k, _, v)| (*k, v.to_string())).collect();
        // Unknown extra keys, for every function.
        for extra in ["colour", "handles", "Handle", "__proto__", "fn2", ""] {
            let mut a = base.clone();
            a.push((extra, "1".to_string()));
            rows.push(row(format!("{f} with unknown key {extra:?}"), line(f, &a), BAD));
        }
        // Wrong types for every argument.
        for (i, (k, ty, _)) in args.iter().enumerate() {
            for w in wrong(*ty) {
                // A null handle is "no handle": refused outside a jail, also bad_request.
                let mut a = base.clone();
                a[i].1 = w.to_string();
                let mut r = row(format!("{f}.{k} = {w}"), line(f, &a), BAD);
                if f.starts_with("console") && *w == "null" {
                    // No handle is well-typed: "HANDLE required".
                    r = row(r.name, r.line, BAD);
                    if f == "console" {
                        r = r.cli(BAD);
                    }
                }
                rows.push(r);
            }
        }
    }

    // Hostile strings in every string field.
    for s in hostile_strings() {
        let q = json!(s).to_string();
        let short: String = s.chars().take(24).collect();
        rows.push(row(format!("claim class {short:?}"), line("claim", &[("class", q.clone())]), UNKNOWN_CLASS));
        for f in ["renew", "reinit", "release", "power_on", "power_off", "power_cycle"] {
            rows.push(row(format!("{f} handle {short:?}"), line(f, &[("handle", q.clone())]), NOT_CLAIMED));
        }
        for f in ["console", "console_log"] {
            rows.push(
                row(format!("{f} handle {short:?}"), line(f, &[("handle", q.clone())]), CONSOLE)
                    .cli(if f == "console" { BAD } else { CONSOLE }),
            );
        }
        rows.push(
            row(
                format!("maintenance board {short:?}"),
                line("maintenance", &[("board", q.clone()), ("on", "true".into())]),
                UNKNOWN_BOARD,
            )
            .user(DENIED),
        );
        rows.push(
            row(
                format!("force_release board {short:?}"),
                line("force_release", &[("board", q.clone())]),
                UNKNOWN_BOARD,
            )
            .user(DENIED),
        );
        if fault {
            rows.push(
                row(
                    format!("debug_panic board {short:?}"),
                    line("debug_panic", &[("board", q.clone())]),
                    UNKNOWN_BOARD,
                )
                .user(DENIED),
            );
        }
    }

    // Other users' handles and guessed ones: one constant answer.
    let mut handles = vec![
        alice_handle.to_string(),
        alice_handle.to_uppercase(),
        format!("{alice_handle} "),
        format!(" {alice_handle}"),
        format!("{alice_handle}\n"),
        alice_handle[..alice_handle.len() - 1].to_string(),
        format!("{alice_handle}0"),
        alice_handle.trim_start_matches("bl-").to_string(),
        "bl-".to_string(),
        "bl-00000000000000000000000000000000".to_string(),
        "bl-ffffffffffffffffffffffffffffffff".to_string(),
        format!("bl-{}", "0".repeat(10 * 1024)),
        "%".to_string(),
        "_".to_string(),
    ];
    let mut x: u64 = 0x243f_6a88_85a3_08d3;
    for _ in 0..8 {
        let mut h = String::from("bl-");
        for _ in 0..2 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            h.push_str(&format!("{x:016x}"));
        }
        handles.push(h);
    }
    for h in &handles {
        let q = json!(h).to_string();
        let short: String = h.chars().take(40).collect();
        for f in ["renew", "reinit", "release", "power_on", "power_off", "power_cycle"] {
            rows.push(row(format!("{f} foreign/guessed {short:?}"), line(f, &[("handle", q.clone())]), NOT_CLAIMED));
        }
        rows.push(row(
            format!("renew {short:?} with a lease"),
            line("renew", &[("handle", q.clone()), ("lease", "60".into())]),
            NOT_CLAIMED,
        ));
        // Root is an operator: alice's real handle lets it read her log
        // and watch her console; nothing else does.
        let mine = *h == alice_handle;
        rows.push(
            row(
                format!("console_log foreign/guessed {short:?}"),
                line("console_log", &[("handle", q.clone())]),
                CONSOLE,
            )
            .root(if mine { Expect::Me } else { CONSOLE }),
        );
        rows.push(
            row(format!("console foreign/guessed {short:?}"), line("console", &[("handle", q.clone())]), CONSOLE)
                .cli(BAD)
                .root(if mine { Expect::Stream } else { CONSOLE }),
        );
    }

    // Huge but well-formed numbers that parse as u64: refused by policy, or
    // answered for what the rest of the request names.
    let max = u64::MAX.to_string();
    rows.push(row(
        "claim lease u64::MAX",
        line("claim", &[("class", "\"pine64\"".into()), ("lease", max.clone())]),
        BAD,
    ));
    rows.push(row("claim lease 0", line("claim", &[("class", "\"pine64\"".into()), ("lease", "0".into())]), BAD));
    rows.push(row(
        "claim wait u64::MAX unknown class",
        line("claim", &[("class", "\"vax780\"".into()), ("wait", max.clone())]),
        UNKNOWN_CLASS,
    ));
    rows.push(
        row(
            "console_log tail u64::MAX",
            line("console_log", &[("handle", json!(alice_handle).to_string()), ("tail", max.clone())]),
            CONSOLE,
        )
        .root(Expect::Me),
    );
    rows.push(row(
        "renew foreign lease u64::MAX",
        line("renew", &[("handle", json!(alice_handle).to_string()), ("lease", max)]),
        NOT_CLAIMED,
    ));

    // Line length: exactly the limit is read; one byte more is refused
    // and the connection closed.
    let limit = boardlab::protocol::MAX_LINE;
    let pad = |total: usize| -> String {
        let head = "{\"fn\":\"claim\",\"class\":\"";
        let tail = "\"}";
        format!("{head}{}{tail}", "x".repeat(total - head.len() - tail.len()))
    };
    rows.push(row("line of exactly 64 KiB", pad(limit), UNKNOWN_CLASS));
    for (name, bytes) in [
        ("line of 64 KiB + 1", pad(limit + 1).into_bytes()),
        ("line of 70 KiB garbage", vec![b'x'; 70 * 1024]),
        ("line of 1 MiB", pad(1 << 20).into_bytes()),
        ("line of 70 KiB binary", (0..70 * 1024).map(|i| (i % 255) as u8 + 1).filter(|&b| b != b'\n').collect()),
    ] {
        let mut r = row(name, bytes, BAD);
        r.closes = true;
        rows.push(r);
    }
    rows
}

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
