//! One invocation's talk with labd, and the one rule for how it fails.
//!
//! Every failure is a [`Failure`]: an exit status, a code and a message.
//! [`report`] prints it the one way: `labcli: MESSAGE (CODE)` on stderr, and
//! under `--json` also `{"ok":false,"error":{"code":..,"message":..}}` on
//! stdout. The exit statuses:
//!
//! | status | meaning | code |
//! |---|---|---|
//! | 0 | success | |
//! | 1 | the lab refused or failed the request | labd's (`not_claimed`, ...), or labcli's own (`timeout`, ...) |
//! | 2 | usage error: nothing was sent | `usage` |
//! | 3 | labd unreachable | `unreachable` |

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::client::{Client, ClientError};
use super::output;
use super::usage::UsageError;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR_REPLY: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;

/// Why an invocation failed, and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: i32,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(exit: i32, code: &str, message: impl Into<String>) -> Failure {
        Failure { exit, code: code.into(), message: message.into() }
    }

    pub fn usage(e: &UsageError) -> Failure {
        Failure::new(EXIT_USAGE, "usage", e.0.clone())
    }

    pub fn unreachable(e: &ClientError) -> Failure {
        Failure::new(EXIT_UNREACHABLE, "unreachable", e.to_string())
    }

    /// An error reply from labd.
    pub fn reply(reply: &Value) -> Failure {
        let err = reply.get("error");
        let text = |k: &str| err.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_string);
        Failure::new(
            EXIT_ERROR_REPLY,
            &text("code").unwrap_or_else(|| "unknown".into()),
            text("message").unwrap_or_else(|| "request failed".into()),
        )
    }
}

/// Writes to stdout; false when it is gone. Never panics on a closed pipe
/// (`labcli status | head -1`), unlike `println!`.
pub fn out(text: &str) -> bool {
    let mut o = io::stdout().lock();
    o.write_all(text.as_bytes()).and_then(|()| o.flush()).is_ok()
}

pub fn err(text: &str) {
    let _ = io::stderr().write_all(text.as_bytes());
}

/// Prints a failure the one way and returns its exit status.
pub fn report(json: bool, f: &Failure) -> i32 {
    if json {
        let _ = out(&format!("{}\n", json!({"ok": false, "error": {"code": f.code, "message": f.message}})));
    }
    let message = output::clean(&f.message);
    let code = output::clean(&f.code);
    if f.exit == EXIT_USAGE {
        err(&format!("labcli: {message}\nRun `labcli help` (or `labcli help COMMAND`) for usage.\n"));
    } else if f.exit == EXIT_UNREACHABLE {
        err(&format!("labcli: {message}\n"));
    } else {
        err(&format!("labcli: {message} ({code})\n"));
    }
    f.exit
}

/// A connection to labd, opened at the first request, with the request
/// numbering of one invocation.
pub struct Session {
    socket: PathBuf,
    as_user: Option<String>,
    client: Option<Client>,
    next_id: u64,
}

impl Session {
    pub fn new(socket: &Path, as_user: Option<&str>) -> Session {
        Session { socket: socket.to_path_buf(), as_user: as_user.map(str::to_string), client: None, next_id: 1 }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn as_user(&self) -> Option<&str> {
        self.as_user.as_deref()
    }

    /// Sends the line `build(id, as)` makes and returns labd's reply, an
    /// object whether it says ok or not.
    pub fn request(
        &mut self,
        build: impl FnOnce(u64, Option<&str>) -> Result<String, UsageError>,
    ) -> Result<Value, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let line = build(id, self.as_user.as_deref()).map_err(|e| Failure::usage(&e))?;
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(Client::connect(&self.socket).map_err(|e| Failure::unreachable(&e))?),
        };
        let reply_line = client.call(&line).map_err(|e| Failure::unreachable(&e))?;
        match serde_json::from_str(&reply_line) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(Failure::new(
                EXIT_ERROR_REPLY,
                "internal",
                format!("labd at {} sent an invalid reply", self.socket.display()),
            )),
        }
    }

    /// Like [`Session::request`], but an error reply is a [`Failure`]; the
    /// result on success.
    pub fn result(
        &mut self,
        build: impl FnOnce(u64, Option<&str>) -> Result<String, UsageError>,
    ) -> Result<Value, Failure> {
        let reply = self.request(build)?;
        if reply.get("ok") != Some(&Value::Bool(true)) {
            return Err(Failure::reply(&reply));
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Gives up the connection (for a console's byte stream).
    pub fn into_client(self) -> Option<Client> {
        self.client
    }
}
