//! `labcli console [HANDLE] --expect REGEX [--timeout DUR] [--since-claim]`:
//! watch a board's console (read-only) until a pattern shows, for CI.
//!
//! The console's bytes are copied to stdout as they come, and matched
//! against the pattern over the last [`WINDOW`] bytes (so a match may span
//! reads). Exit 0 when it is seen; 1 (code `timeout`) when the timeout
//! passes first, or (code `closed`) when labd ends the session (the claim
//! ended). With `--since-claim` the claim's log so far is searched too,
//! fetched after the session is attached so that nothing falls between.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::args::{compile_regex, ExpectSpec};
use super::handles::{self, Defaults};
use super::request::request_line;
use super::session::{Failure, Session, EXIT_ERROR_REPLY, EXIT_OK, EXIT_UNREACHABLE};
use super::usage::UsageError;
use crate::protocol::Call;
use crate::util::format_duration;
use crate::util::shown;

/// How much of the recent output a match may span.
pub const WINDOW: usize = 64 * 1024;

/// Longest wait between two looks at the clock.
const TICK: Duration = Duration::from_millis(200);

/// Runs `spec`; 0 when the pattern was seen.
pub fn expect(mut session: Session, defaults: &Defaults, spec: &ExpectSpec) -> Result<i32, Failure> {
    let re = compile_regex(&spec.pattern).map_err(|e| Failure::usage(&UsageError(format!("--expect: {e}"))))?;
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let word = handles::word(spec.handle.as_deref(), "console", defaults)?;
    let handle = handles::resolve(&mut session, word, defaults)?;
    let console = Call::Console { handle: handle.clone(), read_only: true };
    session.result(|id, as_user| Ok(request_line(id, &console, as_user)))?;
    let socket = session.socket().to_path_buf();
    let as_user = session.as_user().map(str::to_string);
    let Some(client) = session.into_client() else {
        return Err(Failure::new(EXIT_UNREACHABLE, "unreachable", "the console connection is gone"));
    };
    let (mut stream, pending) = client.into_raw();
    let mut stdout = io::stdout().lock();
    let not_seen = |why: &str| format!("{} {why}", shown(&spec.pattern));
    // What was copied last: a failure's report starts on a line of its own.
    let mut at_line_start = true;

    if spec.since_claim {
        let log = Call::ConsoleLog { handle, tail: None };
        let result = Session::new(&socket, as_user.as_deref()).result(|id, a| Ok(request_line(id, &log, a)))?;
        let text = result.get("log").and_then(Value::as_str).unwrap_or("");
        let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
        at_line_start = text.is_empty() || text.ends_with('\n');
        if re.is_match(text.as_bytes()) {
            return Ok(EXIT_OK);
        }
    }

    let mut window: Vec<u8> = Vec::with_capacity(WINDOW * 2);
    let mut chunk = pending;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !chunk.is_empty() {
            let _ = stdout.write_all(&chunk).and_then(|()| stdout.flush());
            at_line_start = chunk.ends_with(b"\n");
            window.extend_from_slice(&chunk);
            if re.is_match(&window) {
                return Ok(EXIT_OK);
            }
            if window.len() > WINDOW {
                window.drain(..window.len() - WINDOW);
            }
            chunk.clear();
        }
        let wait = match deadline {
            None => TICK,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(TICK),
                _ => {
                    let after = spec.timeout.map(format_duration).unwrap_or_default();
                    let msg = not_seen(&format!("was not seen on the console within {after}"));
                    end_line(&mut stdout, at_line_start);
                    return Err(Failure::new(EXIT_ERROR_REPLY, "timeout", msg));
                }
            },
        };
        let _ = stream.set_read_timeout(Some(wait));
        match stream.read(&mut buf) {
            Ok(0) => {
                let msg = not_seen("was not seen before labd closed the console (the claim ended?)");
                end_line(&mut stdout, at_line_start);
                return Err(Failure::new(EXIT_ERROR_REPLY, "closed", msg));
            }
            Ok(n) => chunk.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                end_line(&mut stdout, at_line_start);
                return Err(Failure::new(
                    EXIT_UNREACHABLE,
                    "unreachable",
                    format!("console on {}: {e}", socket.display()),
                ));
            }
        }
    }
}

/// Ends the console's last line, so that what follows starts a line.
fn end_line(out: &mut impl Write, at_line_start: bool) {
    if !at_line_start {
        let _ = out.write_all(b"\n").and_then(|()| out.flush());
    }
}
