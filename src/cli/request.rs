//! A [`Call`] → one request line, as labd reads it.

use serde_json::Value;

use super::usage::UsageError;
use crate::protocol::{Call, MAX_LINE};

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Builds the request line (without newline) for `call`.
///
/// Keys come in a fixed, readable order: `id`, `fn`, the arguments, `as`.
/// Booleans are always sent; optional values only when given (so a missing
/// `handle` lets the daemon use the jail's own).
pub fn request_line(id: u64, call: &Call, as_user: Option<&str>) -> String {
    let mut fields: Vec<(&str, Value)> = Vec::with_capacity(6);
    fields.push(("id", Value::from(id)));
    fields.push(("fn", Value::from(call.name())));
    let opt_str = |fields: &mut Vec<(&str, Value)>, k, v: &Option<String>| {
        if let Some(v) = v {
            fields.push((k, Value::from(v.as_str())));
        }
    };
    let opt_u64 = |fields: &mut Vec<(&str, Value)>, k, v: &Option<u64>| {
        if let Some(v) = v {
            fields.push((k, Value::from(*v)));
        }
    };
    match call {
        Call::Classes { available } => fields.push(("available", Value::from(*available))),
        Call::Status { mine } => fields.push(("mine", Value::from(*mine))),
        Call::Claim { class, power, lease, wait } => {
            fields.push(("class", Value::from(class.as_str())));
            fields.push(("power", Value::from(*power)));
            opt_u64(&mut fields, "lease", lease);
            opt_u64(&mut fields, "wait", wait);
        }
        Call::Renew { handle, lease } => {
            opt_str(&mut fields, "handle", handle);
            opt_u64(&mut fields, "lease", lease);
        }
        Call::Reinit { handle }
        | Call::Release { handle }
        | Call::PowerOn { handle }
        | Call::PowerOff { handle }
        | Call::PowerCycle { handle } => opt_str(&mut fields, "handle", handle),
        Call::Console { handle, read_only } => {
            opt_str(&mut fields, "handle", handle);
            fields.push(("read_only", Value::from(*read_only)));
        }
        Call::ConsoleLog { handle, tail } => {
            opt_str(&mut fields, "handle", handle);
            opt_u64(&mut fields, "tail", tail);
        }
        Call::Whoami | Call::KnownHosts | Call::Queue | Call::Dump => {}
        Call::Maintenance { board, on, reason } => {
            fields.push(("board", Value::from(board.as_str())));
            fields.push(("on", Value::from(*on)));
            opt_str(&mut fields, "reason", reason);
        }
        Call::ForceRelease { board, reason } => {
            fields.push(("board", Value::from(board.as_str())));
            opt_str(&mut fields, "reason", reason);
        }
        Call::History(q) => {
            opt_str(&mut fields, "board", &q.board);
            opt_str(&mut fields, "about", &q.user);
            opt_u64(&mut fields, "since", &q.since);
            opt_str(&mut fields, "kind", &q.kind);
            opt_u64(&mut fields, "limit", &q.limit.map(u64::from));
        }
        Call::Selftest { board, wait } => {
            fields.push(("board", Value::from(board.as_str())));
            opt_u64(&mut fields, "wait", wait);
        }
        Call::Health { board } => fields.push(("board", Value::from(board.as_str()))),
        Call::Sd(a) => {
            opt_str(&mut fields, "handle", &a.handle);
            fields.push(("action", Value::from(a.action.as_str())));
            opt_str(&mut fields, "path", &a.path);
            if a.power_off {
                fields.push(("power_off", Value::from(true)));
            }
        }
        #[cfg(feature = "fault-injection")]
        Call::DebugPanic { board } => fields.push(("board", Value::from(board.as_str()))),
    }
    if let Some(a) = as_user {
        fields.push(("as", Value::from(a)));
    }
    let mut line = String::from("{");
    for (n, (k, v)) in fields.iter().enumerate() {
        if n > 0 {
            line.push(',');
        }
        // A str and a Value always serialize; the fallback is unreachable.
        line.push_str(&serde_json::to_string(k).unwrap_or_default());
        line.push(':');
        line.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    line.push('}');
    line
}

/// Like [`request_line`], but refuses a line the daemon would refuse.
pub fn checked_request_line(id: u64, call: &Call, as_user: Option<&str>) -> Result<String, UsageError> {
    let line = request_line(id, call, as_user);
    if line.len() > MAX_LINE {
        return Err(usage(format!("request is {} bytes long; the daemon accepts at most {MAX_LINE}", line.len())));
    }
    Ok(line)
}

/// The request line of a function labcli knows by name only (`known_hosts`:
/// answered by labds that know it, `unknown_function` from older ones).
pub fn named_request_line(id: u64, f: &str, as_user: Option<&str>) -> String {
    let q = |s: &str| Value::from(s).to_string();
    match as_user {
        Some(a) => format!("{{\"id\":{id},\"fn\":{},\"as\":{}}}", q(f), q(a)),
        None => format!("{{\"id\":{id},\"fn\":{}}}", q(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{parse, Command, Origin};
    use crate::protocol::parse_request;

    fn call(s: &str) -> Call {
        let words: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&words, Origin::Argv) {
            Ok(p) => match p.command {
                Some(Command::Call(c)) => c,
                other => panic!("{s:?}: {other:?}"),
            },
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn line(s: &str) -> String {
        request_line(1, &call(s), None)
    }

    #[test]
    fn exact_request_lines() {
        assert_eq!(line("classes"), r#"{"id":1,"fn":"classes","available":false}"#);
        assert_eq!(line("status --mine"), r#"{"id":1,"fn":"status","mine":true}"#);
        assert_eq!(
            line("claim rockpro64 --power --lease 4h --wait"),
            r#"{"id":1,"fn":"claim","class":"rockpro64","power":true,"lease":14400,"wait":31536000}"#
        );
        assert_eq!(line("renew"), r#"{"id":1,"fn":"renew"}"#);
        assert_eq!(line("renew h --lease 90s"), r#"{"id":1,"fn":"renew","handle":"h","lease":90}"#);
        assert_eq!(line("power-cycle h"), r#"{"id":1,"fn":"power_cycle","handle":"h"}"#);
        assert_eq!(line("console h --read-only"), r#"{"id":1,"fn":"console","handle":"h","read_only":true}"#);
        assert_eq!(line("log --tail 5"), r#"{"id":1,"fn":"console_log","tail":5}"#);
        assert_eq!(line("whoami"), r#"{"id":1,"fn":"whoami"}"#);
        assert_eq!(line("maintenance b on"), r#"{"id":1,"fn":"maintenance","board":"b","on":true}"#);
        assert_eq!(line("force-release b"), r#"{"id":1,"fn":"force_release","board":"b"}"#);
        assert_eq!(line("health b"), r#"{"id":1,"fn":"health","board":"b"}"#);
        assert_eq!(line("force-release b --reason psu"), r#"{"id":1,"fn":"force_release","board":"b","reason":"psu"}"#);
        assert_eq!(
            line("history --board b --user alice --since 2h --kind claim --limit 5"),
            r#"{"id":1,"fn":"history","board":"b","about":"alice","since":7200,"kind":"claim","limit":5}"#
        );
        assert_eq!(request_line(9, &Call::Whoami, Some("al\"ice")), r#"{"id":9,"fn":"whoami","as":"al\"ice"}"#);
    }

    #[test]
    fn request_lines_parse_back_on_the_daemon_side() {
        for s in [
            "classes --available",
            "status",
            "claim c --power --lease 1h --wait 2m",
            "renew h --lease 1d",
            "renew",
            "reinit h",
            "release",
            "power-on h",
            "power-off h",
            "power-cycle",
            "console h",
            "console --read-only",
            "log h --tail 3",
            "whoami",
            "dump",
            "maintenance b off",
            "maintenance b on --reason psu",
            "force-release b",
            "force-release b --reason broken",
            "history",
            "history --board b --since 1d --kind force_release --limit 10",
        ] {
            let c = call(s);
            let r = parse_request(&request_line(3, &c, Some("bob"))).unwrap();
            assert_eq!(r.call, c, "{s}");
            assert_eq!(r.id, serde_json::json!(3));
            assert_eq!(r.on_behalf_of.as_deref(), Some("bob"));
        }
    }

    #[test]
    fn overlong_requests_are_refused() {
        let c = Call::Claim { class: "x".repeat(MAX_LINE), power: false, lease: None, wait: None };
        assert!(checked_request_line(1, &c, None).unwrap_err().0.contains("at most"));
        assert!(checked_request_line(1, &Call::Whoami, None).is_ok());
    }

    #[test]
    fn named_lines() {
        assert_eq!(named_request_line(4, "known_hosts", None), r#"{"id":4,"fn":"known_hosts"}"#);
        assert_eq!(named_request_line(4, "known_hosts", Some("al")), r#"{"id":4,"fn":"known_hosts","as":"al"}"#);
    }
}
