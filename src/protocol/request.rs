//! A request line: its function and arguments, parsed in three steps so
//! that each failure gets the right code (see the module above).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{ApiError, ApiResult, Code, HistoryQuery, SdArgs};

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

/// Every function of the socket, as `fn` names it and [`Call::name`]
/// returns it. A name not listed here is an unknown function, whatever
/// the parser below knows, so a new function must be added here (and so
/// gets its row in the metrics).
pub const FUNCTIONS: [&str; 22] = [
    "classes",
    "status",
    "claim",
    "renew",
    "reinit",
    "release",
    "power_on",
    "power_off",
    "power_cycle",
    "console",
    "console_log",
    "whoami",
    "known_hosts",
    "queue",
    "dump",
    "maintenance",
    "force_release",
    "history",
    "selftest",
    "health",
    "sd",
    "debug_panic",
];

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
    let unknown = |f: &str| {
        let shown: String = f.chars().take(64).collect();
        ApiError::new(Code::UnknownFunction, format!("unknown function {shown:?}"))
    };
    if !FUNCTIONS.contains(&f.as_str()) {
        return Err(fail(unknown(&f)));
    }
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
        _ => Err(unknown(&f)),
    }
    .map_err(fail)?;
    Ok(Request { id, on_behalf_of, call })
}
