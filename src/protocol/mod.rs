//! The wire protocol: JSON lines over a Unix stream socket.
//!
//! A request is parsed in three steps so that each failure gets the right
//! code: the line must be a JSON object (`bad_request`), its `fn` must name a
//! known function (`unknown_function`), and its arguments must fit that
//! function exactly, with no unknown keys (`bad_request`).

mod board;
mod error;
mod history;
mod reply;
mod request;
mod sd;
mod selftest;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use board::{BoardState, BoardView, PowerState};
pub use error::{ApiError, ApiResult, Code};
pub use history::{HistoryQuery, HISTORY_LIMIT, HISTORY_MAX};
pub use reply::*;
pub use request::{parse_request, salvage_id, Call, Request, FUNCTIONS};
pub use sd::*;
pub use selftest::{HealthReport, SelftestReport, SelftestStep, Verdict};

/// Longest request line accepted, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;

/// A success reply line's fields, in the order they are written.
#[derive(Serialize)]
struct OkLine<'a, T: Serialize> {
    id: &'a Value,
    ok: bool,
    result: &'a T,
}

/// Builds a success reply line (without newline).
pub fn ok_reply<T: Serialize>(id: &Value, result: &T) -> String {
    serde_json::to_string(&OkLine { id, ok: true, result }).unwrap_or_else(|e| {
        err_reply(id, &ApiError::new(Code::Internal, format!("the reply could not be encoded: {e}")))
    })
}

/// A success reply line around a result that is JSON already: the text
/// before it (the text after it is `}`).
pub fn ok_reply_head(id: &Value) -> String {
    format!(r#"{{"id":{id},"ok":true,"result":"#)
}

/// How a reply line to a request ended: `Ok` when it begins with
/// `ok_head` (the request's [`ok_reply_head`]), else the error's code
/// (`internal` for a line that is neither). Reads only an error line
/// through, and those are short.
pub fn reply_outcome(ok_head: &str, line: &str) -> Result<(), Code> {
    if line.starts_with(ok_head) {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct ErrLine {
        error: ErrCode,
    }
    #[derive(Deserialize)]
    struct ErrCode {
        code: Code,
    }
    Err(serde_json::from_str::<ErrLine>(line).map_or(Code::Internal, |l| l.error.code))
}

/// Builds an error reply line (without newline).
pub fn err_reply(id: &Value, e: &ApiError) -> String {
    serde_json::json!({"id": id, "ok": false, "error": {"code": e.code.as_str(), "message": e.message}}).to_string()
}

#[cfg(test)]
mod tests;
