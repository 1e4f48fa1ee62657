//! `history`: which events of the log a caller asks for.

use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, Code};
use crate::ids::{valid_name, valid_user};
use crate::util::shown;

/// Events a `history` answers with when it names no `limit`.
pub const HISTORY_LIMIT: u32 = 100;
/// The most events one `history` answers with.
pub const HISTORY_MAX: u32 = 10_000;
/// The furthest back `since` may reach (ten years, in seconds).
const SINCE_MAX: u64 = 10 * 366 * 86400;

/// `{"fn": "history", "board"?, "about"?, "since"?, "kind"?, "limit"?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only this board's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// Only events by this user or about their claims. On the wire
    /// `about`: a request's `user` is the caller's claim of who they are,
    /// which labd drops.
    #[serde(default, rename = "about", skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Only events of the last `since` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Only events of this kind (`claim`, `force_release`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// At most this many (the newest), [`HISTORY_LIMIT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Event kinds: lowercase letters, digits and '_', at most 32 bytes.
pub fn valid_kind(k: &str) -> bool {
    !k.is_empty() && k.len() <= 32 && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl HistoryQuery {
    /// The query, or a `bad_request` naming what is wrong with it.
    pub fn checked(self) -> ApiResult<HistoryQuery> {
        let bad = |m: String| Err(ApiError::new(Code::BadRequest, format!("history: {m}")));
        if let Some(b) = self.board.as_deref().filter(|b| !valid_name(b)) {
            return bad(format!("{} is not a board name", shown(b)));
        }
        if let Some(u) = self.user.as_deref().filter(|u| !valid_user(u)) {
            return bad(format!("{} is not a user name", shown(u)));
        }
        if let Some(k) = self.kind.as_deref().filter(|k| !valid_kind(k)) {
            return bad(format!("{} is not an event kind (lowercase letters, digits and '_')", shown(k)));
        }
        match self.since {
            Some(0) => return bad("since must be at least 1 second".into()),
            Some(s) if s > SINCE_MAX => return bad(format!("since ({s} s) reaches back more than ten years")),
            _ => {}
        }
        match self.limit {
            Some(n) if n == 0 || n > HISTORY_MAX => bad(format!("limit must be between 1 and {HISTORY_MAX}")),
            _ => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_request, Call};
    use super::*;

    #[test]
    fn history_requests_are_checked() {
        let r = parse_request(r#"{"fn":"history","board":"b1","since":3600,"kind":"force_release","limit":5}"#);
        let want = HistoryQuery {
            board: Some("b1".into()),
            since: Some(3600),
            kind: Some("force_release".into()),
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(r.unwrap().call, Call::History(want));
        let all = parse_request(r#"{"fn":"history"}"#).unwrap().call;
        assert_eq!(all, Call::History(HistoryQuery::default()));
        assert!(!all.allowed_in_jail(), "a jail's socket is about its own claim only");
        for bad in [
            r#"{"fn":"history","board":"../x"}"#,
            r#"{"fn":"history","about":"a;b"}"#,
            r#"{"fn":"history","kind":"Claim"}"#,
            r#"{"fn":"history","kind":"%"}"#,
            r#"{"fn":"history","since":0}"#,
            r#"{"fn":"history","since":999999999999}"#,
            r#"{"fn":"history","limit":0}"#,
            r#"{"fn":"history","limit":10001}"#,
            r#"{"fn":"history","limit":-1}"#,
            r#"{"fn":"history","colour":1}"#,
        ] {
            let r = parse_request(bad);
            assert_eq!(r.as_ref().map_err(|e| e.1.code), Err(Code::BadRequest), "{bad}: {r:?}");
        }
    }

    #[test]
    fn reasons_are_checked_where_requests_are_read() {
        let ok = parse_request(r#"{"fn":"force_release","board":"b","reason":"broken PSU"}"#).unwrap();
        assert_eq!(ok.call, Call::ForceRelease { board: "b".into(), reason: Some("broken PSU".into()) });
        for bad in [
            r#"{"fn":"force_release","board":"b","reason":"\u001b[2Jgone"}"#,
            r#"{"fn":"maintenance","board":"b","on":true,"reason":"a\nb"}"#,
            r#"{"fn":"maintenance","board":"b","on":true,"reason":""}"#,
            r#"{"fn":"maintenance","board":"b","on":true,"reason":5}"#,
        ] {
            assert_eq!(parse_request(bad).unwrap_err().1.code, Code::BadRequest, "{bad}");
        }
        let long = format!(r#"{{"fn":"force_release","board":"b","reason":"{}"}}"#, "x".repeat(201));
        assert!(parse_request(&long).unwrap_err().1.message.contains("at most 200"));
    }
}
