//! What a user wrote where a handle goes → the handle to send.
//!
//! A handle is `bl-` and 32 hex digits, a secret nobody types twice. So a
//! command that takes one also takes the name of a board the caller holds
//! (looked up in `status --mine`, whose rows carry the caller's own
//! handles), or nothing: inside a jail labd then uses the jail's claim,
//! elsewhere `$LABD_HANDLE` is the default.

use serde_json::Value;

use super::request::request_line;
use super::session::{Failure, Session};
use super::usage::UsageError;
use crate::protocol::Call;

/// Where labcli runs, as far as handles go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// The socket is the jail's: a missing handle means the jail's claim.
    pub jail: bool,
    /// `$LABD_HANDLE`, when set and not empty.
    pub handle: Option<String>,
}

/// The word to resolve, before anything is sent: what was given, else the
/// default; `None` inside a jail. Outside one, no handle at all is a usage
/// error.
pub fn word(given: Option<&str>, command: &str, d: &Defaults) -> Result<Option<String>, Failure> {
    match (given, &d.handle) {
        (Some(w), _) => Ok(Some(w.to_string())),
        (None, _) if d.jail => Ok(None),
        (None, Some(h)) => Ok(Some(h.clone())),
        (None, None) => Err(Failure::usage(&UsageError(format!(
            "`{command}` needs a HANDLE, or the name of a board you hold (or LABD_HANDLE set) outside a jail"
        )))),
    }
}

/// Whether `word` is written like a handle (then it is sent as it is).
pub fn looks_like_handle(word: &str) -> bool {
    word.starts_with("bl-")
}

/// The handle for `word`: itself when it looks like one (or inside a
/// jail); else the handle of the caller's board of that name, if any; else
/// `word` as it is, for labd to judge (an operator may name any board to
/// `log` and `console --read-only`; anyone else is told `not_claimed`).
pub fn resolve(session: &mut Session, word: Option<String>, d: &Defaults) -> Result<Option<String>, Failure> {
    let Some(word) = word else { return Ok(None) };
    if looks_like_handle(&word) || d.jail {
        return Ok(Some(word));
    }
    let rows = session.result(|id, as_user| Ok(request_line(id, &Call::Status { mine: true }, as_user)))?;
    Ok(Some(handle_of_board(&rows, &word).unwrap_or(word)))
}

/// The handle on `board`'s row of a `status --mine` result.
pub fn handle_of_board(rows: &Value, board: &str) -> Option<String> {
    rows.as_array()?
        .iter()
        .find(|r| r.get("board").and_then(Value::as_str) == Some(board))
        .and_then(|r| r.get("handle"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults() {
        let outside = Defaults::default();
        let jail = Defaults { jail: true, handle: Some("bl-env".into()) };
        let env = Defaults { jail: false, handle: Some("bl-env".into()) };
        assert_eq!(word(Some("b1"), "release", &outside).unwrap().as_deref(), Some("b1"));
        assert_eq!(word(None, "release", &jail).unwrap(), None);
        assert_eq!(word(None, "release", &env).unwrap().as_deref(), Some("bl-env"));
        let e = word(None, "release", &outside).unwrap_err();
        assert_eq!(e.exit, 2);
        assert!(e.message.contains("`release` needs a HANDLE"), "{}", e.message);
    }

    #[test]
    fn boards_to_handles() {
        let rows = json!([{"board": "b1", "handle": "bl-1"}, {"board": "b2"}, {"board": "b3", "handle": 5}]);
        assert_eq!(handle_of_board(&rows, "b1").as_deref(), Some("bl-1"));
        assert_eq!(handle_of_board(&rows, "b2"), None);
        assert_eq!(handle_of_board(&rows, "b3"), None);
        assert_eq!(handle_of_board(&rows, "b9"), None);
        assert_eq!(handle_of_board(&json!({"x": 1}), "b1"), None);
        assert!(looks_like_handle("bl-0123"));
        assert!(!looks_like_handle("rockpro64-1"));
    }
}
