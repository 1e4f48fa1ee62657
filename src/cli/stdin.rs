//! Stdin mode: requests one a line (a command line or a JSON request
//! object), one JSON reply a line. What `ssh labhost` with no command runs.
//!
//! Command lines are translated as written: no board names for handles and
//! no `$LABD_HANDLE` (a script's requests go to labd as it wrote them), no
//! console and no `run`.

use std::io;
use std::path::Path;

use serde_json::Value;

use super::args::{self, Command, Origin};
use super::client::{self, Client, Line};
use super::request::{checked_request_line, named_request_line};
use super::session::{err, out, report, Failure, EXIT_ERROR_REPLY, EXIT_OK, EXIT_USAGE};
use super::words;
use crate::protocol::{err_reply, salvage_id, ApiError, Call, Code, MAX_LINE};

const CONSOLE_IN_STDIN: &str =
    "console is not available when reading requests from stdin; run `labcli console HANDLE` (ssh -t)";

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
    if parsed.help.is_some() {
        return Err(bad(&Value::Null, format!("commands: {}", args::commands().join(", "))));
    }
    let command = match parsed.command {
        None => return Err(bad(&Value::Null, "no command".into())),
        Some(Command::Call(Call::Console { .. }) | Command::Expect(_)) => {
            return Err(bad(&Value::Null, CONSOLE_IN_STDIN.into()))
        }
        Some(Command::Run(_)) => return Err(bad(&Value::Null, "`run` is not available from stdin".into())),
        Some(c) => c,
    };
    let id = *next_id;
    let line = match command {
        Command::Call(c) => checked_request_line(id, &c, as_user).map_err(|e| bad(&Value::Null, e.0))?,
        _ => named_request_line(id, "known_hosts", as_user),
    };
    *next_id = next_id.saturating_add(1);
    Ok(line)
}

/// Answers stdin's requests until its end; 1 when any failed.
pub fn stdin_session(socket: &Path, as_user: Option<&str>) -> i32 {
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
                        Err(e) => return report(true, &Failure::unreachable(&e)),
                    }
                }
                let Some(c) = client.as_mut() else { continue };
                match c.call(&line) {
                    Ok(r) => r,
                    Err(e) => return report(true, &Failure::unreachable(&e)),
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

    #[test]
    fn stdin_refuses_what_only_a_terminal_does() {
        let mut id = 1;
        for l in ["run c -- id", "console h --expect x", "help", "--help"] {
            let r: Value = serde_json::from_str(&stdin_request(l, &mut id, None).unwrap_err()).unwrap();
            assert_eq!(r["error"]["code"], json!("bad_request"), "{l}");
        }
        assert_eq!(stdin_request("known-hosts", &mut id, None).unwrap(), r#"{"id":1,"fn":"known_hosts"}"#);
    }
}
