//! The wire protocol: JSON lines over a Unix stream socket.
//!
//! A request is parsed in three steps so that each failure gets the right
//! code: the line must be a JSON object (`bad_request`), its `fn` must name a
//! known function (`unknown_function`), and its arguments must fit that
//! function exactly, with no unknown keys (`bad_request`).

mod history;
mod reply;
mod sd;
mod selftest;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

pub use history::{HistoryQuery, HISTORY_LIMIT, HISTORY_MAX};
pub use reply::*;
pub use sd::*;
pub use selftest::{HealthReport, SelftestReport, SelftestStep, Verdict};

/// Longest request line accepted, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;

/// Error codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    BadRequest,
    UnknownFunction,
    UnknownClass,
    UnknownBoard,
    NoDeviceAvailable,
    NotClaimed,
    /// The caller's claim ended (expired, force-released, released):
    /// the message says how and when.
    ClaimEnded,
    HandleMismatch,
    PermissionDenied,
    DeviceFault,
    Busy,
    Timeout,
    /// The lab's shared state (etcd) cannot be reached: try again later.
    Unavailable,
    /// The host that owns the board stopped answering after it took the
    /// request: it may have been done (the message says how to find out).
    InDoubt,
    /// A per-user limit of the lab's policy (`policy.max_claims_per_user`,
    /// `lease.max_total`): the message names it.
    LimitReached,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::UnknownFunction => "unknown_function",
            Code::UnknownClass => "unknown_class",
            Code::UnknownBoard => "unknown_board",
            Code::NoDeviceAvailable => "no_device_available",
            Code::NotClaimed => "not_claimed",
            Code::ClaimEnded => "claim_ended",
            Code::HandleMismatch => "handle_mismatch",
            Code::PermissionDenied => "permission_denied",
            Code::DeviceFault => "device_fault",
            Code::Busy => "busy",
            Code::Timeout => "timeout",
            Code::Unavailable => "unavailable",
            Code::InDoubt => "in_doubt",
            Code::LimitReached => "limit_reached",
            Code::Internal => "internal",
        }
    }
}

/// An error reply: a code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

/// A function call with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Classes {
        available: bool,
    },
    Status {
        mine: bool,
    },
    Claim {
        class: String,
        power: bool,
        lease: Option<u64>,
        wait: Option<u64>,
    },
    Renew {
        handle: Option<String>,
        lease: Option<u64>,
    },
    Reinit {
        handle: Option<String>,
    },
    Release {
        handle: Option<String>,
    },
    PowerOn {
        handle: Option<String>,
    },
    PowerOff {
        handle: Option<String>,
    },
    PowerCycle {
        handle: Option<String>,
    },
    Console {
        handle: Option<String>,
        read_only: bool,
    },
    ConsoleLog {
        handle: Option<String>,
        tail: Option<u64>,
    },
    Whoami,
    /// The line that makes a user's ssh trust every jail of the lab: the
    /// lab's SSH host CA as `@cert-authority` (answered from labd's
    /// configuration).
    KnownHosts,
    /// Where the caller's waiting claims (`claim --wait`) stand in their
    /// classes' queues.
    Queue,
    Dump,
    Maintenance {
        board: String,
        on: bool,
        /// The operator's reason, for `history` (checked by
        /// [`crate::ids::check_reason`]).
        reason: Option<String>,
    },
    ForceRelease {
        board: String,
        reason: Option<String>,
    },
    /// The event log, newest `limit` events that match, oldest first.
    History(HistoryQuery),
    /// Operators: a board's commissioning check (`labd selftest`); waits
    /// up to `wait` seconds for each sign of life after power-on.
    Selftest {
        board: String,
        wait: Option<u64>,
    },
    /// Operators: runs the board's class health check now (`labcli
    /// health`); waits for it.
    Health {
        board: String,
    },
    /// A claimed board's microSD card (see [`sd`]).
    Sd(SdArgs),
    /// Test-only: makes a board actor panic. Exists only with the
    /// `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    DebugPanic {
        board: String,
    },
}

impl Call {
    /// The handle slot of the calls that act on a claim.
    pub fn handle_mut(&mut self) -> Option<&mut Option<String>> {
        match self {
            Call::Renew { handle, .. }
            | Call::Reinit { handle }
            | Call::Release { handle }
            | Call::PowerOn { handle }
            | Call::PowerOff { handle }
            | Call::PowerCycle { handle }
            | Call::Console { handle, .. }
            | Call::ConsoleLog { handle, .. } => Some(handle),
            Call::Sd(a) => Some(&mut a.handle),
            _ => None,
        }
    }

    /// The handle a call acts on, if it names one.
    pub fn handle(&self) -> Option<&str> {
        match self {
            Call::Renew { handle, .. }
            | Call::Reinit { handle }
            | Call::Release { handle }
            | Call::PowerOn { handle }
            | Call::PowerOff { handle }
            | Call::PowerCycle { handle }
            | Call::Console { handle, .. }
            | Call::ConsoleLog { handle, .. } => handle.as_deref(),
            Call::Sd(a) => a.handle.as_deref(),
            _ => None,
        }
    }

    /// Whether a jail's socket may make this call: what acts on the
    /// jail's own claim, and read-only questions. Claiming more boards and
    /// the operators' functions are not for a jail, whoever its claimant.
    pub fn allowed_in_jail(&self) -> bool {
        match self {
            Call::Classes { .. }
            | Call::Status { .. }
            | Call::Whoami
            | Call::KnownHosts
            | Call::Renew { .. }
            | Call::Reinit { .. }
            | Call::Release { .. }
            | Call::PowerOn { .. }
            | Call::PowerOff { .. }
            | Call::PowerCycle { .. }
            | Call::Console { .. }
            | Call::ConsoleLog { .. }
            | Call::Sd(_) => true,
            Call::Claim { .. }
            | Call::Queue
            | Call::Dump
            | Call::Maintenance { .. }
            | Call::ForceRelease { .. }
            | Call::History(_)
            | Call::Selftest { .. }
            | Call::Health { .. } => false,
            #[cfg(feature = "fault-injection")]
            Call::DebugPanic { .. } => false,
        }
    }

    /// The function's wire name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Classes { .. } => "classes",
            Call::Status { .. } => "status",
            Call::Claim { .. } => "claim",
            Call::Renew { .. } => "renew",
            Call::Reinit { .. } => "reinit",
            Call::Release { .. } => "release",
            Call::PowerOn { .. } => "power_on",
            Call::PowerOff { .. } => "power_off",
            Call::PowerCycle { .. } => "power_cycle",
            Call::Console { .. } => "console",
            Call::ConsoleLog { .. } => "console_log",
            Call::Whoami => "whoami",
            Call::KnownHosts => "known_hosts",
            Call::Queue => "queue",
            Call::Dump => "dump",
            Call::Maintenance { .. } => "maintenance",
            Call::ForceRelease { .. } => "force_release",
            Call::History(_) => "history",
            Call::Selftest { .. } => "selftest",
            Call::Health { .. } => "health",
            Call::Sd(_) => "sd",
            #[cfg(feature = "fault-injection")]
            Call::DebugPanic { .. } => "debug_panic",
        }
    }
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed back as is; `null` when absent.
    pub id: Value,
    /// `as` from a trusted gateway: the user the gateway acts for. Ignored
    /// from anyone else.
    pub on_behalf_of: Option<String>,
    pub call: Call,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassesArgs {
    #[serde(default)]
    available: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusArgs {
    #[serde(default)]
    mine: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimArgs {
    class: String,
    #[serde(default)]
    power: bool,
    lease: Option<u64>,
    wait: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandleArgs {
    handle: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewArgs {
    handle: Option<String>,
    lease: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleArgs {
    handle: Option<String>,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogArgs {
    handle: Option<String>,
    tail: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoardArgs {
    board: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelftestArgs {
    board: String,
    wait: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceArgs {
    board: String,
    on: bool,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceReleaseArgs {
    board: String,
    reason: Option<String>,
}

/// An operator's reason, checked.
fn reason(f: &str, r: Option<String>) -> ApiResult<Option<String>> {
    match r {
        Some(r) => match crate::ids::check_reason(&r) {
            Ok(()) => Ok(Some(r)),
            Err(e) => Err(ApiError::new(Code::BadRequest, format!("{f}: {e}"))),
        },
        None => Ok(None),
    }
}

fn args<T: for<'de> Deserialize<'de>>(f: &str, m: Map<String, Value>) -> ApiResult<T> {
    serde_json::from_value(Value::Object(m)).map_err(|e| ApiError::new(Code::BadRequest, format!("{f}: {e}")))
}

/// What could be recovered from a line that failed to parse: its id, so the
/// error reply can still be matched to the request.
pub fn salvage_id(line: &str) -> Value {
    serde_json::from_str::<Map<String, Value>>(line).ok().and_then(|mut m| m.remove("id")).unwrap_or(Value::Null)
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &str) -> Result<Request, (Value, ApiError)> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| (Value::Null, ApiError::new(Code::BadRequest, format!("request is not valid JSON: {e}"))))?;
    let Value::Object(mut m) = value else {
        return Err((Value::Null, ApiError::new(Code::BadRequest, "request must be a JSON object")));
    };
    let id = m.remove("id").unwrap_or(Value::Null);
    let fail = |e: ApiError| (id.clone(), e);
    let on_behalf_of = match m.remove("as") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(fail(ApiError::new(Code::BadRequest, "`as` must be a string"))),
    };
    // A client may state who it thinks it is; identity comes from the socket,
    // so the claim is dropped, as the contract says.
    m.remove("user");
    let f = match m.remove("fn") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(fail(ApiError::new(Code::BadRequest, "`fn` must be a string"))),
        None => return Err(fail(ApiError::new(Code::BadRequest, "request has no `fn`"))),
    };
    let call = match f.as_str() {
        "classes" => args::<ClassesArgs>(&f, m).map(|a| Call::Classes { available: a.available }),
        "status" => args::<StatusArgs>(&f, m).map(|a| Call::Status { mine: a.mine }),
        "claim" => args::<ClaimArgs>(&f, m).map(|a| Call::Claim {
            class: a.class,
            power: a.power,
            lease: a.lease,
            wait: a.wait,
        }),
        "renew" => args::<RenewArgs>(&f, m).map(|a| Call::Renew { handle: a.handle, lease: a.lease }),
        "reinit" => args::<HandleArgs>(&f, m).map(|a| Call::Reinit { handle: a.handle }),
        "release" => args::<HandleArgs>(&f, m).map(|a| Call::Release { handle: a.handle }),
        "power_on" => args::<HandleArgs>(&f, m).map(|a| Call::PowerOn { handle: a.handle }),
        "power_off" => args::<HandleArgs>(&f, m).map(|a| Call::PowerOff { handle: a.handle }),
        "power_cycle" => args::<HandleArgs>(&f, m).map(|a| Call::PowerCycle { handle: a.handle }),
        "console" => args::<ConsoleArgs>(&f, m).map(|a| Call::Console { handle: a.handle, read_only: a.read_only }),
        "console_log" => args::<LogArgs>(&f, m).map(|a| Call::ConsoleLog { handle: a.handle, tail: a.tail }),
        "whoami" => args::<NoArgs>(&f, m).map(|_| Call::Whoami),
        "known_hosts" => args::<NoArgs>(&f, m).map(|_| Call::KnownHosts),
        "queue" => args::<NoArgs>(&f, m).map(|_| Call::Queue),
        "dump" => args::<NoArgs>(&f, m).map(|_| Call::Dump),
        "maintenance" => args::<MaintenanceArgs>(&f, m)
            .and_then(|a| Ok(Call::Maintenance { board: a.board, on: a.on, reason: reason(&f, a.reason)? })),
        "force_release" => args::<ForceReleaseArgs>(&f, m)
            .and_then(|a| Ok(Call::ForceRelease { board: a.board, reason: reason(&f, a.reason)? })),
        "history" => args::<HistoryQuery>(&f, m).and_then(|q| q.checked().map(Call::History)),
        "selftest" => args::<SelftestArgs>(&f, m).map(|a| Call::Selftest { board: a.board, wait: a.wait }),
        "health" => args::<BoardArgs>(&f, m).map(|a| Call::Health { board: a.board }),
        "sd" => args::<SdArgs>(&f, m).map(Call::Sd),
        #[cfg(feature = "fault-injection")]
        "debug_panic" => args::<BoardArgs>(&f, m).map(|a| Call::DebugPanic { board: a.board }),
        _ => {
            let shown: String = f.chars().take(64).collect();
            Err(ApiError::new(Code::UnknownFunction, format!("unknown function {shown:?}")))
        }
    }
    .map_err(fail)?;
    Ok(Request { id, on_behalf_of, call })
}

/// A board as users see it in `status`, `claim` and `dump`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardView {
    pub board: String,
    pub class: String,
    pub state: BoardState,
    pub user: Option<String>,
    pub power: PowerState,
    pub claimed_at: Option<String>,
    pub expires_at: Option<String>,
    /// Why the board is faulted or offline, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The serial console's state (`attached`, `missing`, `error`); absent
    /// for a board without a console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
    /// The host the board is on, in a lab of several hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Whether a powered port delivers power, as the switch detects it
    /// (`delivering`; `searching`: on, but nothing draws power), when the
    /// switch says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// What the board's health checks said lately: why it is
    /// `unhealthy`, or how many failed in a row so far (absent: healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoardState {
    Available,
    Claimed,
    Maintenance,
    Faulted,
    Offline,
    /// Its class's health check runs on it (after a release, on the
    /// schedule, or asked for): not claimable until it ends.
    Checking,
    /// It failed its class's health check `failures` times in a row: never
    /// granted until a check passes.
    Unhealthy,
}

impl BoardState {
    pub fn as_str(self) -> &'static str {
        match self {
            BoardState::Available => "available",
            BoardState::Claimed => "claimed",
            BoardState::Maintenance => "maintenance",
            BoardState::Faulted => "faulted",
            BoardState::Offline => "offline",
            BoardState::Checking => "checking",
            BoardState::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    On,
    Off,
    Unknown,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unknown => "unknown",
        }
    }
}

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
mod tests {
    use super::*;

    #[test]
    fn parses_claim() {
        let r = parse_request(r#"{"id": 7, "fn": "claim", "class": "rockpro64", "power": true}"#).unwrap();
        assert_eq!(r.id, serde_json::json!(7));
        assert_eq!(r.call, Call::Claim { class: "rockpro64".into(), power: true, lease: None, wait: None });
    }

    #[test]
    fn error_codes() {
        let code = |l: &str| parse_request(l).unwrap_err().1.code;
        assert_eq!(code("nope"), Code::BadRequest);
        assert_eq!(code("[1,2]"), Code::BadRequest);
        assert_eq!(code(r#"{"fn": "frobnicate"}"#), Code::UnknownFunction);
        assert_eq!(code(r#"{"fn": "claim"}"#), Code::BadRequest);
        assert_eq!(code(r#"{"fn": "claim", "class": "x", "lease": -5}"#), Code::BadRequest);
        assert_eq!(code(r#"{"fn": "claim", "class": "x", "lease": 1e300}"#), Code::BadRequest);
        assert_eq!(code(r#"{"fn": "status", "colour": 1}"#), Code::BadRequest);
        assert_eq!(code(r#"{"fn": 5}"#), Code::BadRequest);
        assert_eq!(code(r#"{"fn": "sd"}"#), Code::BadRequest);
        assert_eq!(code(r#"{"fn": "sd", "action": "eject"}"#), Code::BadRequest);
        assert_eq!(code(r#"{"fn": "sd", "action": "host", "power_off": "yes"}"#), Code::BadRequest);
        let (id, _) = parse_request(r#"{"id": "x", "fn": "nope"}"#).unwrap_err();
        assert_eq!(id, serde_json::json!("x"));
    }

    #[test]
    fn names_round_trip_and_jails_get_only_their_own_claim() {
        let lines = [
            (r#"{"fn": "classes"}"#, true),
            (r#"{"fn": "status"}"#, true),
            (r#"{"fn": "whoami"}"#, true),
            (r#"{"fn": "known_hosts"}"#, true),
            (r#"{"fn": "renew"}"#, true),
            (r#"{"fn": "reinit"}"#, true),
            (r#"{"fn": "release"}"#, true),
            (r#"{"fn": "power_on"}"#, true),
            (r#"{"fn": "power_off"}"#, true),
            (r#"{"fn": "power_cycle"}"#, true),
            (r#"{"fn": "console"}"#, true),
            (r#"{"fn": "console_log"}"#, true),
            (r#"{"fn": "sd", "action": "status"}"#, true),
            (r#"{"fn": "sd", "action": "flash", "path": "/x", "power_off": true}"#, true),
            (r#"{"fn": "claim", "class": "x"}"#, false),
            (r#"{"fn": "dump"}"#, false),
            (r#"{"fn": "maintenance", "board": "b", "on": true}"#, false),
            (r#"{"fn": "force_release", "board": "b"}"#, false),
            (r#"{"fn": "selftest", "board": "b", "wait": 5}"#, false),
        ];
        for (line, allowed) in lines {
            let r = parse_request(line).unwrap();
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(r.call.name(), v["fn"], "{line}");
            assert_eq!(r.call.allowed_in_jail(), allowed, "{line}");
        }
    }

    #[test]
    fn reply_lines_agree() {
        let id = serde_json::json!({"n": [1, "x"]});
        let result = serde_json::json!([{"board": "b"}]);
        let whole: Value = serde_json::from_str(&ok_reply(&id, &result)).unwrap();
        let pieced: Value = serde_json::from_str(&format!("{}{result}}}", ok_reply_head(&id))).unwrap();
        assert_eq!(whole, pieced);
        assert_eq!(whole, serde_json::json!({"id": id, "ok": true, "result": result}));
    }

    #[test]
    fn outcomes_of_reply_lines() {
        let id = serde_json::json!({"ok": true, "x": "\"ok\":true"});
        let head = ok_reply_head(&id);
        assert_eq!(reply_outcome(&head, &ok_reply(&id, &serde_json::json!([1]))), Ok(()));
        let e = ApiError::new(Code::NotClaimed, "no");
        assert_eq!(reply_outcome(&head, &err_reply(&id, &e)), Err(Code::NotClaimed));
        assert_eq!(reply_outcome(&head, "garbage"), Err(Code::Internal));
    }

    #[test]
    fn user_field_is_ignored_and_as_is_kept() {
        let r = parse_request(r#"{"fn": "whoami", "user": "root", "as": "bob"}"#).unwrap();
        assert_eq!(r.call, Call::Whoami);
        assert_eq!(r.on_behalf_of.as_deref(), Some("bob"));
    }
}
