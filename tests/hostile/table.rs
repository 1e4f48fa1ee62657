//! The hostile-input table: each row a request line and the code it must
//! get as root, as bob and through labcli.

use serde_json::{json, Value};

use super::common::{ALICE, BOB};

/// What a row must produce on one channel.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// An error reply with one of these codes.
    Code(&'static [&'static str]),
    /// Success, as the caller (any `user` in the result is the peer).
    Me,
    /// Success, and the connection is now a console byte stream (an
    /// operator watching a claimed board): nothing more is asked on it.
    Stream,
}

pub const BAD: Expect = Expect::Code(&["bad_request"]);
pub const NOT_CLAIMED: Expect = Expect::Code(&["not_claimed"]);
pub const DENIED: Expect = Expect::Code(&["permission_denied"]);
pub const UNKNOWN_BOARD: Expect = Expect::Code(&["unknown_board"]);
pub const UNKNOWN_CLASS: Expect = Expect::Code(&["unknown_class"]);
pub const UNKNOWN_FN: Expect = Expect::Code(&["unknown_function"]);
/// A foreign or guessed handle on `console` and `console_log` is
/// `not_claimed`, like everywhere else: nothing is revealed.
pub const CONSOLE: Expect = Expect::Code(&["not_claimed"]);

pub struct Row {
    pub name: String,
    pub line: Vec<u8>,
    /// Raw socket as root (an operator).
    pub root: Expect,
    /// Raw socket as bob (a user).
    pub bob: Expect,
    /// labcli stdin mode as bob.
    pub cli: Expect,
    /// labd refuses the line and closes the connection.
    pub closes: bool,
}

pub fn row(name: impl Into<String>, line: impl Into<Vec<u8>>, all: Expect) -> Row {
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
pub enum Ty {
    Bool,
    Str,
    Num,
}

/// Every function with its arguments and types, as the contract lists them.
/// A function and its well-formed arguments (name, type, value).
type Function = (&'static str, Vec<(&'static str, Ty, Value)>);

pub fn functions(board: &str) -> Vec<Function> {
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
pub fn wrong(ty: Ty) -> &'static [&'static str] {
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
pub fn line(f: &str, args: &[(&str, String)]) -> String {
    let mut s = format!("{{\"fn\":{}", json!(f));
    for (k, v) in args {
        s.push_str(&format!(",{}:{v}", json!(k)));
    }
    s.push('}');
    s
}

/// Strings that would mean something to a shell, a path, printf, SQL, a
/// terminal or a careless parser.
pub fn hostile_strings() -> Vec<String> {
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

pub fn rows(board: &str, alice_handle: &str) -> Vec<Row> {
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
