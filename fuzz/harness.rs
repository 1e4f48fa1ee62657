//! The three fuzzed entry points and the properties checked on every input.
//!
//! This one file is compiled twice: into each cargo-fuzz target
//! (`fuzz/fuzz_targets/*.rs`) and into the normal test suite
//! (`tests/fuzz_corpus.rs`), which runs every file of `fuzz/corpus/` through
//! the same functions on every `cargo test`. So a corpus file that once found
//! a bug stays a regression test without a fuzzer or a nightly compiler.
//!
//! Each function panics (which the fuzzer reports as a crash) when a property
//! does not hold; "does not panic" alone is the weakest of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use boardlab::cli::args::{self, Command, Origin};
use boardlab::cli::request::{checked_request_line, request_line};
use boardlab::cli::{plan, stdin_request, words, Plan};
use boardlab::config::Config;
use boardlab::protocol::{err_reply, parse_request, salvage_id, Call, MAX_LINE};
use serde_json::Value;

/// A reply line must be one JSON object on one line, whatever went in.
fn assert_reply_line(line: &str) {
    assert!(!line.contains('\n'), "reply spans lines: {line:?}");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line:?}"));
    assert!(v.is_object(), "reply is not an object: {line:?}");
}

/// What the daemon does with one request line.
fn daemon_side(line: &str) {
    let _ = salvage_id(line);
    match parse_request(line) {
        Ok(req) => {
            // What the daemon parsed, labcli would send the same way, and
            // the daemon would read back the same call: client and server
            // agree on every function and argument.
            let again = request_line(1, &req.call, req.on_behalf_of.as_deref());
            let back = parse_request(&again).unwrap_or_else(|e| panic!("{again:?} does not parse back: {e:?}"));
            assert_eq!(back.call, req.call, "round trip changed the call");
            assert_eq!(back.on_behalf_of, req.on_behalf_of);
        }
        Err((id, e)) => {
            assert_reply_line(&err_reply(&id, &e));
            assert!(e.message.len() <= line.len() + 512, "error message grows with the input: {}", e.message.len());
        }
    }
}

/// `request`: a request line as the daemon reads it, as bytes made text
/// the lossy way and, when the bytes are UTF-8, as they are.
pub fn request(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        daemon_side(s);
    }
    daemon_side(&String::from_utf8_lossy(data));
}

fn check_call(call: &Call, as_user: Option<&str>) {
    if let Ok(line) = checked_request_line(7, call, as_user) {
        assert!(line.len() <= MAX_LINE);
        let req = parse_request(&line).unwrap_or_else(|e| panic!("labcli sent {line:?}, labd refused it: {e:?}"));
        assert_eq!(&req.call, call, "labd read a different call than labcli sent");
        assert_eq!(req.on_behalf_of.as_deref(), as_user, "`as` changed on the way");
    }
}

/// `forced_command`: the string as `$SSH_ORIGINAL_COMMAND` and as a stdin
/// line, through the word splitter, the argument parser and the planner.
pub fn forced_command(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let s: &str = &s;
    if let Ok(ws) = words::split(s) {
        // Splitting only removes quotes and blanks; it never adds text.
        let total: usize = ws.iter().map(String::len).sum();
        assert!(total <= s.len(), "split made {total} bytes out of {}", s.len());
        if let Ok(p) = args::parse(&ws, Origin::Remote) {
            assert_eq!(p.globals.socket, None, "remote words chose the socket");
            assert_eq!(p.globals.as_user, None, "remote words chose the identity");
            assert!(!matches!(p.command, Some(Command::Run(_))), "remote words run a command");
            if let Some(Command::Call(c)) = &p.command {
                check_call(c, None);
            }
        }
        if let Ok(p) = args::parse(&ws, Origin::Argv) {
            if let Some(Command::Call(c)) = &p.command {
                check_call(c, p.globals.as_user.as_deref());
            }
        }
        let _ = plan(&ws, None);
    }
    // The ssh forced command `labcli --as alice` with the user's string.
    let argv = ["--as".to_string(), "alice".to_string()];
    match plan(&argv, Some(s)) {
        Ok(Plan::Single { globals, command }) => {
            assert_eq!(globals.as_user.as_deref(), Some("alice"), "identity changed by {s:?}");
            assert_eq!(globals.socket, None, "socket chosen by {s:?}");
            assert!(!matches!(command, Command::Run(_)), "{s:?} runs a command on the lab host");
            if let Command::Call(call) = &command {
                check_call(call, Some("alice"));
            }
        }
        Ok(Plan::Stdin { globals }) => {
            assert_eq!(globals.as_user.as_deref(), Some("alice"));
            assert_eq!(globals.socket, None);
        }
        Ok(Plan::Help(_)) | Err(_) => {}
    }
    let _ = plan(&[], Some(s));
    // One stdin line of a forced-command session.
    for as_user in [None, Some("alice")] {
        let mut id = 1;
        match stdin_request(s.trim(), &mut id, as_user) {
            Ok(line) => {
                assert!(line.len() <= MAX_LINE, "stdin line grew past the limit");
                assert!(!line.contains('\n'), "one stdin line became several: {line:?}");
                let v: Value = serde_json::from_str(&line).expect("request line is JSON");
                assert_eq!(v.get("as").and_then(Value::as_str), as_user, "`as` not forced by --as: {line}");
                if let Ok(req) = parse_request(&line) {
                    assert_eq!(req.on_behalf_of.as_deref(), as_user);
                    assert!(!matches!(req.call, Call::Console { .. }), "console passed in stdin mode");
                }
            }
            Err(reply) => assert_reply_line(&reply),
        }
    }
}

/// The lab.toml used when the input holds only a board file.
pub const LAB: &str = r#"[daemon]
socket = "/run/boardlab/labd.sock"
admins = ["alice"]

[switches.poe1]
host = "192.0.2.10:161"
"#;

/// Separates lab.toml from the board files in a `config` input.
pub const SEP: &str = "\n%%\n";

/// `config`: `lab.toml` and up to two board files cut from one input at
/// `SEP` lines. An input with no separator is one board file under `LAB`.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split(SEP).collect();
    let (lab, boards): (&str, &[&str]) = match parts.as_slice() {
        [one] => (LAB, std::slice::from_ref(one)),
        [lab, rest @ ..] => (lab, &rest[..rest.len().min(2)]),
        [] => (LAB, &[]),
    };
    let dir = Path::new("/etc/boardlab");
    let texts: Vec<(PathBuf, String)> =
        boards.iter().enumerate().map(|(i, t)| (dir.join(format!("boards.d/b{i}.toml")), t.to_string())).collect();
    let lines = |file: &Path| -> usize {
        let t = if file.ends_with("lab.toml") {
            lab
        } else {
            texts.iter().find(|(p, _)| p == file).map(|(_, t)| t.as_str()).unwrap_or("")
        };
        t.bytes().filter(|&b| b == b'\n').count() + 1
    };
    match Config::from_texts(dir, lab, &texts, Vec::new()) {
        Ok(cfg) => {
            assert!(cfg.lease.default <= cfg.lease.max);
            assert!(!cfg.lease.default.is_zero());
            let mut names = std::collections::HashSet::new();
            let mut ports = std::collections::HashSet::new();
            for b in &cfg.boards {
                assert!(boardlab::ids::valid_name(&b.name), "board name {:?} accepted", b.name);
                assert!(boardlab::ids::valid_name(&b.class), "class {:?} accepted", b.class);
                assert!(cfg.switches.contains_key(&b.switch), "unknown switch {:?} accepted", b.switch);
                assert!(b.port >= 1 && b.group >= 1);
                assert!(names.insert(b.name.clone()), "board {:?} twice", b.name);
                assert!(ports.insert((b.switch.clone(), b.group, b.port)), "port used twice");
            }
            for (n, s) in &cfg.switches {
                assert!(boardlab::ids::valid_name(n), "switch name {n:?} accepted");
                assert!(s.retries <= 10);
            }
        }
        Err(errs) => {
            assert!(!errs.0.is_empty(), "failure with no error");
            for e in &errs.0 {
                assert!(e.line <= lines(&e.file), "{}: line {} past the end", e.file.display(), e.line);
                let _ = e.to_string();
            }
            let _ = errs.to_string();
        }
    }
}
