//! `labcli`, the client: command line, ssh forced command and stdin modes.
//!
//! - [`words`]: shell-like splitting of `$SSH_ORIGINAL_COMMAND` (no shell).
//! - [`args`]: words → global options and a [`Call`]; a `Call` → request line.
//! - [`output`]: human rendering of results.
//! - [`client`]: the blocking socket connection.
//! - [`console`]: the raw byte stream after a `console` reply.
//!
//! [`plan`] decides, from argv and `$SSH_ORIGINAL_COMMAND` alone, what this
//! invocation will do; it is pure so the security-relevant choices (which
//! words may set `--as` and `--socket`) are unit tested. [`main`] then does it.
//!
//! Exit statuses: 0 success, 1 error reply, 2 usage error, 3 daemon unreachable.

pub mod args;
pub mod client;
pub mod console;
pub mod output;
pub mod words;

use crate::protocol::{err_reply, salvage_id, ApiError, Call, Code, MAX_LINE};
use args::{Globals, Origin, UsageError};
use client::{Client, ClientError, Line};
use serde_json::Value;
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::Path;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR_REPLY: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;

/// What one invocation does.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Print usage and exit 0.
    Help,
    /// One request, human or `--json` output.
    Single { globals: Globals, call: Call },
    /// Requests from stdin, one a line; JSON replies one a line.
    Stdin { globals: Globals },
}

/// Decides what to do from the process arguments (without argv\[0\]) and
/// `$SSH_ORIGINAL_COMMAND`.
///
/// A command in argv wins (it was written by whoever set up the forced
/// command). Otherwise a non-blank `$SSH_ORIGINAL_COMMAND` is split and parsed
/// as [`Origin::Remote`]: it may add `--json`, but `--socket` and `--as` only
/// ever come from argv.
pub fn plan(argv: &[String], ssh_original_command: Option<&str>) -> Result<Plan, UsageError> {
    let local = args::parse(argv, Origin::Argv)?;
    if local.globals.help {
        return Ok(Plan::Help);
    }
    let mut globals = local.globals;
    if let Some(call) = local.call {
        return Ok(Plan::Single { globals, call });
    }
    let Some(cmd) = ssh_original_command else {
        return Ok(Plan::Stdin { globals });
    };
    if cmd.len() > MAX_LINE {
        return Err(UsageError(format!("ssh command is longer than {MAX_LINE} bytes")));
    }
    let mut words = words::split(cmd).map_err(|e| UsageError(format!("ssh command: {e}")))?;
    if words.first().is_some_and(|w| w == "labcli" || w.ends_with("/labcli")) {
        words.remove(0);
    }
    let remote = args::parse(&words, Origin::Remote)?;
    if remote.globals.help {
        return Ok(Plan::Help);
    }
    globals.json |= remote.globals.json;
    Ok(match remote.call {
        Some(call) => Plan::Single { globals, call },
        None => Plan::Stdin { globals },
    })
}

/// Turns one stdin line into a request line, or into the error reply to
/// write in its place. `next_id` numbers command lines; JSON lines keep
/// their own `id`. `as` is always what `--as` says, never what the line says.
pub fn stdin_request(line: &str, next_id: &mut u64, as_user: Option<&str>) -> Result<String, String> {
    let bad = |id: &Value, msg: String| err_reply(id, &ApiError::new(Code::BadRequest, msg));
    if line.starts_with('{') {
        let mut map = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(bad(&Value::Null, "request must be a JSON object".into())),
            Err(e) => return Err(bad(&salvage_id(line), format!("request is not valid JSON: {e}"))),
        };
        let id = map.get("id").cloned().unwrap_or(Value::Null);
        if map.get("fn").and_then(Value::as_str) == Some("console") {
            return Err(bad(&id, CONSOLE_IN_STDIN.into()));
        }
        map.remove("as");
        if let Some(a) = as_user {
            map.insert("as".into(), Value::from(a));
        }
        let out = Value::Object(map).to_string();
        if out.len() > MAX_LINE {
            return Err(bad(&id, format!("request is longer than {MAX_LINE} bytes")));
        }
        return Ok(out);
    }
    let words = words::split(line).map_err(|e| bad(&Value::Null, e.to_string()))?;
    let parsed = args::parse(&words, Origin::Remote).map_err(|e| bad(&Value::Null, e.0))?;
    let call = match parsed.call {
        _ if parsed.globals.help => return Err(bad(&Value::Null, format!("commands: {}", args::COMMANDS.join(", ")))),
        None => return Err(bad(&Value::Null, "no command".into())),
        Some(Call::Console { .. }) => return Err(bad(&Value::Null, CONSOLE_IN_STDIN.into())),
        Some(c) => c,
    };
    let id = *next_id;
    *next_id = next_id.saturating_add(1);
    args::checked_request_line(id, &call, as_user).map_err(|e| bad(&Value::Null, e.0))
}

const CONSOLE_IN_STDIN: &str =
    "console is not available when reading requests from stdin; run `labcli console HANDLE` (ssh -t)";

/// The process environment labcli depends on.
pub struct Env {
    /// Arguments without argv\[0\].
    pub args: Vec<OsString>,
    pub ssh_original_command: Option<OsString>,
    pub labd_socket: Option<OsString>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            args: std::env::args_os().skip(1).collect(),
            ssh_original_command: std::env::var_os("SSH_ORIGINAL_COMMAND"),
            labd_socket: std::env::var_os("LABD_SOCKET"),
        }
    }
}

/// Writes to stdout; false when it is gone. Never panics on a closed pipe
/// (`labcli status | head -1`), unlike `println!`.
fn out(text: &str) -> bool {
    let mut o = io::stdout().lock();
    o.write_all(text.as_bytes()).and_then(|()| o.flush()).is_ok()
}

fn err(text: &str) {
    let _ = io::stderr().write_all(text.as_bytes());
}

fn usage_exit(e: &UsageError) -> i32 {
    err(&format!("labcli: {}\nRun `labcli --help` for usage.\n", output::clean(&e.0)));
    EXIT_USAGE
}

fn unreachable_exit(e: &ClientError) -> i32 {
    err(&format!("labcli: {}\n", output::clean(&e.to_string())));
    EXIT_UNREACHABLE
}

/// Runs labcli; returns the exit status.
pub fn main() -> i32 {
    run(Env::from_process())
}

pub fn run(env: Env) -> i32 {
    let mut argv = Vec::with_capacity(env.args.len());
    for a in env.args {
        match a.into_string() {
            Ok(s) => argv.push(s),
            Err(_) => return usage_exit(&UsageError("arguments must be UTF-8".into())),
        }
    }
    let ssh_cmd = match env.ssh_original_command.map(OsString::into_string) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return usage_exit(&UsageError("ssh command must be UTF-8".into())),
    };
    let plan = match plan(&argv, ssh_cmd.as_deref()) {
        Ok(p) => p,
        Err(e) => return usage_exit(&e),
    };
    let socket = |g: &Globals| {
        let env_socket = env.labd_socket.as_ref().and_then(|s| s.to_str());
        client::socket_path(g.socket.as_deref(), env_socket, || Path::new(client::JAIL_SOCKET).exists())
    };
    match plan {
        Plan::Help => {
            let _ = out(args::USAGE);
            EXIT_OK
        }
        Plan::Single { globals, call } => single(&socket(&globals), &globals, &call),
        Plan::Stdin { globals } => {
            if io::stdin().is_terminal() {
                err(args::USAGE);
                return EXIT_USAGE;
            }
            stdin_session(&socket(&globals), globals.as_user.as_deref())
        }
    }
}

fn single(socket: &Path, globals: &Globals, call: &Call) -> i32 {
    let line = match args::checked_request_line(1, call, globals.as_user.as_deref()) {
        Ok(l) => l,
        Err(e) => return usage_exit(&e),
    };
    let mut client = match Client::connect(socket) {
        Ok(c) => c,
        Err(e) => return unreachable_exit(&e),
    };
    let reply_line = match client.call(&line) {
        Ok(r) => r,
        Err(e) => return unreachable_exit(&e),
    };
    let reply: Value = match serde_json::from_str(&reply_line) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            err(&format!("labcli: labd at {} sent an invalid reply\n", socket.display()));
            return EXIT_ERROR_REPLY;
        }
    };
    if reply.get("ok") != Some(&Value::Bool(true)) {
        if globals.json {
            let _ = out(&format!("{reply}\n"));
        }
        err(&output::error_line(&reply));
        return EXIT_ERROR_REPLY;
    }
    let result = reply.get("result").unwrap_or(&Value::Null);
    if let Call::Console { read_only, .. } = call {
        let (stream, pending) = client.into_raw();
        return match console::run(stream, &pending, *read_only) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                err(&format!("labcli: console on {}: {e}\n", socket.display()));
                EXIT_UNREACHABLE
            }
        };
    }
    // A closed stdout is not worth a different status: the request was done.
    let _ = if globals.json { out(&format!("{result}\n")) } else { out(&output::render(call.name(), result)) };
    EXIT_OK
}

fn stdin_session(socket: &Path, as_user: Option<&str>) -> i32 {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut client: Option<Client> = None;
    let mut next_id = 1u64;
    let mut failed = false;
    let mut buf = Vec::new();
    loop {
        let got = match client::read_line_bounded(&mut input, MAX_LINE, &mut buf) {
            Ok(g) => g,
            Err(e) => {
                err(&format!("labcli: reading standard input: {e}\n"));
                return EXIT_USAGE;
            }
        };
        let request = match got {
            Line::Eof => break,
            Line::TooLong => Err(err_reply(
                &Value::Null,
                &ApiError::new(Code::BadRequest, format!("request line is longer than {MAX_LINE} bytes")),
            )),
            Line::Full | Line::Partial => match std::str::from_utf8(&buf) {
                Err(_) => Err(err_reply(&Value::Null, &ApiError::new(Code::BadRequest, "request is not UTF-8"))),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => stdin_request(text.trim(), &mut next_id, as_user),
            },
        };
        let reply = match request {
            Err(local) => local,
            Ok(line) => {
                if client.is_none() {
                    match Client::connect(socket) {
                        Ok(c) => client = Some(c),
                        Err(e) => return unreachable_exit(&e),
                    }
                }
                let Some(c) = client.as_mut() else { continue };
                match c.call(&line) {
                    Ok(r) => r,
                    Err(e) => return unreachable_exit(&e),
                }
            }
        };
        let ok = serde_json::from_str::<Value>(&reply).ok().is_some_and(|v| v.get("ok") == Some(&Value::Bool(true)));
        failed |= !ok;
        if !out(&format!("{reply}\n")) {
            // Nobody reads the replies any more: stop sending requests.
            return EXIT_ERROR_REPLY;
        }
    }
    if failed {
        EXIT_ERROR_REPLY
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn single(p: Result<Plan, UsageError>) -> (Globals, Call) {
        match p {
            Ok(Plan::Single { globals, call }) => (globals, call),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn argv_command_wins_over_ssh_command() {
        let (_, c) = single(plan(&w("status"), Some("dump")));
        assert_eq!(c, Call::Status { mine: false });
    }

    #[test]
    fn forced_command_keeps_argv_identity_and_socket() {
        let (g, c) = single(plan(&w("--as alice --socket /s"), Some("labcli status --mine --json")));
        assert_eq!(c, Call::Status { mine: true });
        assert_eq!(g.as_user.as_deref(), Some("alice"));
        assert_eq!(g.socket.as_deref(), Some("/s"));
        assert!(g.json);
        let (_, c) = single(plan(&w("--as alice"), Some("'claim' \"rock pro\"")));
        assert_eq!(c, Call::Claim { class: "rock pro".into(), power: false, lease: None, wait: None });
        let (_, c) = single(plan(&[], Some("/usr/bin/labcli whoami")));
        assert_eq!(c, Call::Whoami);
    }

    #[test]
    fn forced_command_may_not_set_identity_or_socket() {
        for cmd in ["status --as root", "--as root status", "labcli --socket /tmp/evil status", "--as=root"] {
            assert!(plan(&w("--as alice"), Some(cmd)).is_err(), "{cmd}");
        }
    }

    #[test]
    fn hostile_forced_commands_are_usage_errors() {
        for cmd in ["status; rm -rf /", "`id`", "$(touch /tmp/x)", "status 'unterminated", "status \\", "id"] {
            assert!(plan(&[], Some(cmd)).is_err(), "{cmd}");
        }
        assert!(plan(&[], Some(&"a".repeat(MAX_LINE + 1))).is_err());
    }

    #[test]
    fn stdin_plans() {
        assert_eq!(plan(&[], None), Ok(Plan::Stdin { globals: Globals::default() }));
        assert!(matches!(plan(&[], Some("")), Ok(Plan::Stdin { .. })));
        assert!(matches!(plan(&[], Some("  labcli ")), Ok(Plan::Stdin { .. })));
        assert!(matches!(plan(&w("--as bob"), Some("--json")), Ok(Plan::Stdin { .. })));
        assert_eq!(plan(&w("--help"), None), Ok(Plan::Help));
        assert_eq!(plan(&[], Some("--help")), Ok(Plan::Help));
    }

    #[test]
    fn stdin_lines() {
        let mut id = 1;
        assert_eq!(stdin_request("status --mine", &mut id, None).unwrap(), r#"{"id":1,"fn":"status","mine":true}"#);
        assert_eq!(stdin_request("whoami", &mut id, Some("al")).unwrap(), r#"{"id":2,"fn":"whoami","as":"al"}"#);
        assert_eq!(id, 3);
        let j: Value =
            serde_json::from_str(&stdin_request(r#"{"id":"x","fn":"whoami","as":"root"}"#, &mut id, None).unwrap())
                .unwrap();
        assert_eq!(j, json!({"id": "x", "fn": "whoami"}));
        let j: Value = serde_json::from_str(
            &stdin_request(r#"{"fn":"whoami","as":"root","as":"x"}"#, &mut id, Some("al")).unwrap(),
        )
        .unwrap();
        assert_eq!(j, json!({"fn": "whoami", "as": "al"}));
        assert_eq!(id, 3);
    }

    #[test]
    fn stdin_line_errors_are_replies() {
        let mut id = 1;
        let e = |l: &str, id: &mut u64| -> Value {
            serde_json::from_str(&stdin_request(l, id, None).unwrap_err()).unwrap()
        };
        for l in [
            "status; id",
            "status --as root",
            "frob",
            "--json",
            "console h",
            "'x",
            "{nope",
            "{\"id\":4,\"fn\":\"console\"}",
        ] {
            let r = e(l, &mut id);
            assert_eq!(r["ok"], json!(false), "{l}");
            assert_eq!(r["error"]["code"], json!("bad_request"), "{l}");
        }
        assert_eq!(e("{\"id\":4,\"fn\":\"console\"}", &mut id)["id"], json!(4));
        assert_eq!(e("frob", &mut id)["id"], Value::Null);
        assert_eq!(id, 1);
    }

    /// A cheap stand-in for the fuzzer to come: random strings over an
    /// alphabet of quotes, escapes, option dashes and command words must never
    /// panic any of the pure entry points.
    #[test]
    fn random_input_never_panics() {
        const PIECES: &[&str] = &[
            " ",
            "'",
            "\"",
            "\\",
            "\n",
            "-",
            "--",
            "=",
            "{",
            "}",
            "$",
            "`",
            ";",
            "ü",
            "\u{0}",
            "claim",
            "status",
            "labcli",
            "--as",
            "--socket",
            "--wait",
            "--lease",
            "4h",
            "0s",
            "1",
            "--tail",
            "maintenance",
            "on",
            "console",
            "{\"fn\":\"console\"}",
            "\"id\":",
            "[",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let n = next() % 12;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let _ = plan(&[], Some(&s));
            let argv: Vec<String> = s.split(' ').map(String::from).collect();
            let _ = plan(&argv, None);
            let mut id = 1;
            let _ = stdin_request(&s, &mut id, Some("al"));
        }
    }
}
