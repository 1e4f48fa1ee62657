//! Command line → request: the words of a labcli command line become global
//! options and a [`Call`], and a `Call` becomes one request line.
//!
//! The same parser serves the process argv (trusted: written by the user or
//! by the administrator in `authorized_keys`) and the words that come from an
//! ssh client (`$SSH_ORIGINAL_COMMAND`, stdin lines). The second kind may not
//! choose the socket or the identity, see [`Origin`].
//!
//! Everything here is a pure function over strings: no I/O, no panics, and
//! work linear in the input.

use crate::protocol::{Call, MAX_LINE};
use crate::util::parse_duration;
use serde_json::Value;
use std::fmt;

/// `--wait` with no DUR: wait this many seconds (365 days), which is as good
/// as forever for a lab and still an ordinary number for the daemon.
pub const WAIT_FOREVER_SECS: u64 = 365 * 24 * 3600;

/// Where the words came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The process arguments.
    Argv,
    /// `$SSH_ORIGINAL_COMMAND` or a stdin line: `--socket` and `--as` are
    /// refused because only the forced command itself may set them.
    Remote,
}

/// A usage error, shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Options that apply to the whole invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Globals {
    pub socket: Option<String>,
    pub json: bool,
    /// `--as NAME`: sent as `"as"` in every request.
    pub as_user: Option<String>,
    pub help: bool,
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub globals: Globals,
    /// `None` when the words held only global options.
    pub call: Option<Call>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Flag,
    Value,
    /// `--wait [DUR]`: takes the next word only if it starts with a digit.
    OptionalDur,
}

struct Opt {
    name: &'static str,
    kind: Kind,
    /// Commands that accept it; empty: a global option.
    commands: &'static [&'static str],
}

const OPTIONS: &[Opt] = &[
    Opt { name: "socket", kind: Kind::Value, commands: &[] },
    Opt { name: "json", kind: Kind::Flag, commands: &[] },
    Opt { name: "as", kind: Kind::Value, commands: &[] },
    Opt { name: "help", kind: Kind::Flag, commands: &[] },
    Opt { name: "available", kind: Kind::Flag, commands: &["classes"] },
    Opt { name: "mine", kind: Kind::Flag, commands: &["status"] },
    Opt { name: "power", kind: Kind::Flag, commands: &["claim"] },
    Opt { name: "lease", kind: Kind::Value, commands: &["claim", "renew"] },
    Opt { name: "wait", kind: Kind::OptionalDur, commands: &["claim"] },
    Opt { name: "read-only", kind: Kind::Flag, commands: &["console"] },
    Opt { name: "tail", kind: Kind::Value, commands: &["log"] },
];

/// Every command labcli knows, in usage order.
pub const COMMANDS: &[&str] = &[
    "classes",
    "status",
    "claim",
    "renew",
    "reinit",
    "release",
    "power-on",
    "power-off",
    "power-cycle",
    "console",
    "log",
    "whoami",
    "known-hosts",
    "dump",
    "maintenance",
    "force-release",
];

pub const USAGE: &str = "\
usage: labcli [--socket PATH] [--json] [--as NAME] COMMAND [ARGS]

commands:
  classes [--available]                      board classes and free boards
  status [--mine]                            every board, or only yours
  claim CLASS [--power] [--lease DUR] [--wait [DUR]]
  renew [HANDLE] [--lease DUR]
  reinit [HANDLE]
  release [HANDLE]
  power-on | power-off | power-cycle [HANDLE]
  console [HANDLE] [--read-only]             serial console; ~. detaches
  log [HANDLE] [--tail N]                    recent console output
  whoami
  known-hosts                                the line for ~/.ssh/known_hosts that
                                             trusts every jail (labs with a host CA)
  dump                                       (admins)
  maintenance BOARD on|off                   (admins)
  force-release BOARD                        (admins)

DUR is 90s, 30m, 4h or 1d; --wait alone waits up to 365d.
HANDLE may be left out inside a board's jail.
With no command, requests are read from standard input, one a line (a
command line or a JSON request object), and one JSON reply a line is written.
";

/// Shows at most this many characters of a user's word in an error, so that
/// a huge or binary argument cannot flood the terminal.
fn shown(word: &str) -> String {
    let mut s: String = word.chars().take(40).collect();
    if s.len() < word.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// Parses a DUR into whole seconds; 0 and fractions of a second are refused.
pub fn parse_secs(what: &str, text: &str) -> Result<u64, UsageError> {
    let d = parse_duration(text).map_err(|e| usage(format!("{what}: {e}")))?;
    if d.subsec_nanos() != 0 {
        return Err(usage(format!("{what}: {} is not a whole number of seconds", shown(text))));
    }
    if d.as_secs() == 0 {
        return Err(usage(format!("{what}: duration must be longer than zero")));
    }
    Ok(d.as_secs())
}

/// Parses the words of one command line.
pub fn parse(words: &[String], origin: Origin) -> Result<Parsed, UsageError> {
    let mut globals = Globals::default();
    let mut positionals: Vec<&str> = Vec::new();
    // Command options, checked against the command once it is known.
    let mut flags: Vec<&'static str> = Vec::new();
    let mut lease: Option<u64> = None;
    let mut wait: Option<u64> = None;
    let mut tail: Option<u64> = None;
    let mut used: Vec<&'static str> = Vec::new();

    let mut i = 0;
    let mut only_positionals = false;
    while i < words.len() {
        let word = words[i].as_str();
        i += 1;
        if only_positionals || word == "-" || !word.starts_with('-') {
            positionals.push(word);
            continue;
        }
        if word == "--" {
            only_positionals = true;
            continue;
        }
        if word == "-h" {
            globals.help = true;
            continue;
        }
        let Some(body) = word.strip_prefix("--") else {
            return Err(usage(format!("unknown option {}", shown(word))));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(opt) = OPTIONS.iter().find(|o| o.name == name) else {
            return Err(usage(format!("unknown option {}", shown(word))));
        };
        if origin == Origin::Remote && (opt.name == "socket" || opt.name == "as") {
            return Err(usage(format!("option --{} is not allowed in a remote command", opt.name)));
        }
        if used.contains(&opt.name) {
            return Err(usage(format!("option --{} given twice", opt.name)));
        }
        used.push(opt.name);
        let value: Option<&str> = match (opt.kind, inline) {
            (Kind::Flag, Some(_)) => return Err(usage(format!("option --{} takes no value", opt.name))),
            (Kind::Flag, None) => None,
            (_, Some(v)) => Some(v),
            (Kind::Value, None) => match words.get(i) {
                Some(v) => {
                    i += 1;
                    Some(v.as_str())
                }
                None => return Err(usage(format!("option --{} needs a value", opt.name))),
            },
            (Kind::OptionalDur, None) => match words.get(i) {
                Some(v) if v.starts_with(|c: char| c.is_ascii_digit()) => {
                    i += 1;
                    Some(v.as_str())
                }
                _ => None,
            },
        };
        match (opt.name, value) {
            ("socket", Some(v)) => {
                if v.is_empty() {
                    return Err(usage("--socket needs a path"));
                }
                globals.socket = Some(v.to_string());
            }
            ("as", Some(v)) => {
                if v.is_empty() {
                    return Err(usage("--as needs a user name"));
                }
                globals.as_user = Some(v.to_string());
            }
            ("json", _) => globals.json = true,
            ("help", _) => globals.help = true,
            ("lease", Some(v)) => lease = Some(parse_secs("--lease", v)?),
            ("wait", Some(v)) => wait = Some(parse_secs("--wait", v)?),
            ("wait", None) => wait = Some(WAIT_FOREVER_SECS),
            ("tail", Some(v)) => {
                let n: u64 = v.parse().map_err(|_| usage(format!("--tail: {} is not a number of lines", shown(v))))?;
                if n == 0 {
                    return Err(usage("--tail: must be at least 1"));
                }
                tail = Some(n);
            }
            (name, _) => flags.push(name),
        }
    }

    let Some((&command, rest)) = positionals.split_first() else {
        if let Some(opt) = used.iter().find(|n| is_command_option(n)) {
            return Err(usage(format!("option --{opt} needs a command")));
        }
        return Ok(Parsed { globals, call: None });
    };
    if !COMMANDS.contains(&command) {
        return Err(usage(format!("unknown command {}", shown(command))));
    }
    for name in &used {
        if let Some(opt) = OPTIONS.iter().find(|o| o.name == *name) {
            if !opt.commands.is_empty() && !opt.commands.contains(&command) {
                return Err(usage(format!("option --{name} is not valid for `{command}`")));
            }
        }
    }
    if let Some(empty) = rest.iter().position(|w| w.is_empty()) {
        return Err(usage(format!("argument {} of `{command}` is empty", empty + 1)));
    }
    let flag = |n: &str| flags.contains(&n);
    let handle = || -> Result<Option<String>, UsageError> {
        match rest {
            [] => Ok(None),
            [h] => Ok(Some(h.to_string())),
            _ => Err(usage(format!("`{command}` takes at most one HANDLE"))),
        }
    };
    let none = || -> Result<(), UsageError> {
        if rest.is_empty() {
            Ok(())
        } else {
            Err(usage(format!("`{command}` takes no arguments, got {}", shown(rest[0]))))
        }
    };
    let call = match command {
        "classes" => none().map(|()| Call::Classes { available: flag("available") })?,
        "status" => none().map(|()| Call::Status { mine: flag("mine") })?,
        "claim" => match rest {
            [class] => Call::Claim { class: class.to_string(), power: flag("power"), lease, wait },
            [] => return Err(usage("`claim` needs a CLASS")),
            _ => return Err(usage("`claim` takes one CLASS")),
        },
        "renew" => Call::Renew { handle: handle()?, lease },
        "reinit" => Call::Reinit { handle: handle()? },
        "release" => Call::Release { handle: handle()? },
        "power-on" => Call::PowerOn { handle: handle()? },
        "power-off" => Call::PowerOff { handle: handle()? },
        "power-cycle" => Call::PowerCycle { handle: handle()? },
        "console" => Call::Console { handle: handle()?, read_only: flag("read-only") },
        "log" => Call::ConsoleLog { handle: handle()?, tail },
        "whoami" => none().map(|()| Call::Whoami)?,
        "known-hosts" => none().map(|()| Call::KnownHosts)?,
        "dump" => none().map(|()| Call::Dump)?,
        "maintenance" => match rest {
            [board, state] => {
                let on = match *state {
                    "on" => true,
                    "off" => false,
                    other => return Err(usage(format!("`maintenance` wants on or off, not {}", shown(other)))),
                };
                Call::Maintenance { board: board.to_string(), on }
            }
            _ => return Err(usage("usage: maintenance BOARD on|off")),
        },
        "force-release" => match rest {
            [board] => Call::ForceRelease { board: board.to_string() },
            [] => return Err(usage("`force-release` needs a BOARD")),
            _ => return Err(usage("`force-release` takes one BOARD")),
        },
        _ => return Err(usage(format!("unknown command {}", shown(command)))),
    };
    Ok(Parsed { globals, call: Some(call) })
}

fn is_command_option(name: &str) -> bool {
    OPTIONS.iter().any(|o| o.name == name && !o.commands.is_empty())
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
        Call::Whoami | Call::KnownHosts | Call::Dump => {}
        Call::Maintenance { board, on } => {
            fields.push(("board", Value::from(board.as_str())));
            fields.push(("on", Value::from(*on)));
        }
        Call::ForceRelease { board } => fields.push(("board", Value::from(board.as_str()))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_request;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn call(s: &str) -> Call {
        match parse(&words(s), Origin::Argv) {
            Ok(Parsed { call: Some(c), .. }) => c,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        match parse(&words(s), Origin::Argv) {
            Err(UsageError(m)) => m,
            Ok(p) => panic!("{s:?} parsed: {p:?}"),
        }
    }

    fn line(s: &str) -> String {
        request_line(1, &call(s), None)
    }

    #[test]
    fn every_command() {
        assert_eq!(call("classes"), Call::Classes { available: false });
        assert_eq!(call("classes --available"), Call::Classes { available: true });
        assert_eq!(call("status"), Call::Status { mine: false });
        assert_eq!(call("status --mine"), Call::Status { mine: true });
        assert_eq!(
            call("claim rockpro64"),
            Call::Claim { class: "rockpro64".into(), power: false, lease: None, wait: None }
        );
        assert_eq!(
            call("claim rockpro64 --power --lease 4h --wait 30m"),
            Call::Claim { class: "rockpro64".into(), power: true, lease: Some(14400), wait: Some(1800) }
        );
        assert_eq!(
            call("claim --wait rockpro64"),
            Call::Claim { class: "rockpro64".into(), power: false, lease: None, wait: Some(WAIT_FOREVER_SECS) }
        );
        assert_eq!(
            call("claim rockpro64 --wait"),
            Call::Claim { class: "rockpro64".into(), power: false, lease: None, wait: Some(31_536_000) }
        );
        assert_eq!(call("renew"), Call::Renew { handle: None, lease: None });
        assert_eq!(call("renew h1 --lease 1d"), Call::Renew { handle: Some("h1".into()), lease: Some(86400) });
        assert_eq!(call("reinit h1"), Call::Reinit { handle: Some("h1".into()) });
        assert_eq!(call("release"), Call::Release { handle: None });
        assert_eq!(call("release h1"), Call::Release { handle: Some("h1".into()) });
        assert_eq!(call("power-on h1"), Call::PowerOn { handle: Some("h1".into()) });
        assert_eq!(call("power-off"), Call::PowerOff { handle: None });
        assert_eq!(call("power-cycle h1"), Call::PowerCycle { handle: Some("h1".into()) });
        assert_eq!(call("console h1"), Call::Console { handle: Some("h1".into()), read_only: false });
        assert_eq!(call("console --read-only"), Call::Console { handle: None, read_only: true });
        assert_eq!(call("log h1 --tail 50"), Call::ConsoleLog { handle: Some("h1".into()), tail: Some(50) });
        assert_eq!(call("log"), Call::ConsoleLog { handle: None, tail: None });
        assert_eq!(call("whoami"), Call::Whoami);
        assert_eq!(call("known-hosts"), Call::KnownHosts);
        assert_eq!(call("dump"), Call::Dump);
        assert_eq!(call("maintenance b1 on"), Call::Maintenance { board: "b1".into(), on: true });
        assert_eq!(call("maintenance b1 off"), Call::Maintenance { board: "b1".into(), on: false });
        assert_eq!(call("force-release b1"), Call::ForceRelease { board: "b1".into() });
    }

    #[test]
    fn option_placement() {
        let want = Call::Claim { class: "x".into(), power: true, lease: Some(90), wait: None };
        assert_eq!(call("--power claim x --lease 90s"), want);
        assert_eq!(call("claim --lease 90s --power x"), want);
        assert_eq!(call("--lease=90s --power claim x"), want);
        let p = parse(&words("--json status --socket /s --as bob --mine"), Origin::Argv).unwrap();
        assert_eq!(p.call, Some(Call::Status { mine: true }));
        assert_eq!(
            p.globals,
            Globals { socket: Some("/s".into()), json: true, as_user: Some("bob".into()), help: false }
        );
        // `--` ends options.
        assert_eq!(call("release -- -odd"), Call::Release { handle: Some("-odd".into()) });
    }

    #[test]
    fn globals_only() {
        let p = parse(&words("--as alice --json"), Origin::Argv).unwrap();
        assert_eq!(p.call, None);
        assert!(p.globals.json);
        assert!(parse(&[], Origin::Argv).unwrap().call.is_none());
        assert!(parse(&words("--help"), Origin::Argv).unwrap().globals.help);
        assert!(parse(&words("status -h"), Origin::Argv).unwrap().globals.help);
        assert!(err("--mine").contains("needs a command"));
    }

    #[test]
    fn bad_durations() {
        for d in ["0s", "0d", "500ms", "1500ms", "30", "5w", "h", "-5s", "99999999999999999999s", "1.5h", ""] {
            let m = err(&format!("claim x --lease {d}"));
            assert!(m.contains("--lease"), "{d}: {m}");
        }
        assert_eq!(
            call("claim x --lease 2000ms"),
            Call::Claim { class: "x".into(), power: false, lease: Some(2), wait: None }
        );
        assert!(err("claim x --wait 0s").contains("--wait"));
        assert!(err("claim x --wait 10").contains("--wait"));
        assert!(err("claim x --wait=").contains("--wait"));
        assert!(err("log --tail 0").contains("--tail"));
        assert!(err("log --tail -1").contains("unknown option") || err("log --tail -1").contains("--tail"));
        assert!(err("log --tail x").contains("--tail"));
    }

    #[test]
    fn missing_extra_and_unknown() {
        assert!(err("claim").contains("needs a CLASS"));
        assert!(err("claim a b").contains("one CLASS"));
        assert!(err("release a b").contains("at most one"));
        assert!(err("status x").contains("no arguments"));
        assert!(err("whoami x").contains("no arguments"));
        assert!(err("known-hosts x").contains("no arguments"));
        assert!(err("maintenance b1").contains("maintenance BOARD"));
        assert!(err("maintenance b1 maybe").contains("on or off"));
        assert!(err("force-release").contains("needs a BOARD"));
        assert!(err("frob").contains("unknown command"));
        assert!(err("status --colour").contains("unknown option"));
        assert!(err("status -x").contains("unknown option"));
        assert!(err("status --available").contains("not valid for `status`"));
        assert!(err("claim x --lease").contains("needs a value"));
        assert!(err("claim x --power=yes").contains("takes no value"));
        assert!(err("claim x --lease 1h --lease 2h").contains("twice"));
        assert!(err("--socket").contains("needs a value"));
        assert!(parse(&["claim".into(), "".into()], Origin::Argv).is_err());
    }

    #[test]
    fn remote_words_may_not_choose_socket_or_identity() {
        for s in ["status --as root", "--as=root status", "--socket /tmp/s status", "status --socket=/x"] {
            let e = parse(&words(s), Origin::Remote).unwrap_err();
            assert!(e.0.contains("not allowed"), "{s}: {e}");
        }
        let p = parse(&words("status --json --mine"), Origin::Remote).unwrap();
        assert!(p.globals.json);
        assert_eq!(p.call, Some(Call::Status { mine: true }));
    }

    #[test]
    fn hostile_words_are_usage_errors() {
        for s in ["status; rm -rf /", "`id`", "$(touch /tmp/x)", "status && id", "status | id"] {
            assert!(parse(&crate::cli::words::split(s).unwrap(), Origin::Remote).is_err(), "{s}");
        }
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
        assert_eq!(line("known-hosts"), r#"{"id":1,"fn":"known_hosts"}"#);
        assert_eq!(line("maintenance b on"), r#"{"id":1,"fn":"maintenance","board":"b","on":true}"#);
        assert_eq!(line("force-release b"), r#"{"id":1,"fn":"force_release","board":"b"}"#);
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
            "force-release b",
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
}
