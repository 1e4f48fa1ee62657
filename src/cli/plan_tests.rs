//! Unit tests of [`plan`]: which words decide what.

use super::*;

fn w(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn single(p: Result<Plan, UsageError>) -> (Globals, Call) {
    match p {
        Ok(Plan::Single { globals, command: Command::Call(call) }) => (globals, call),
        other => panic!("{other:?}"),
    }
}

#[test]
fn argv_command_wins_over_ssh_command() {
    let (_, c) = single(plan(&w("status"), Some("dump")));
    assert_eq!(c, Call::Status { mine: false });
}

#[test]
fn forced_command_keeps_argv_identity_and_socket() {
    let (g, c) = single(plan(&w("--as alice --socket /s"), Some("labcli status --mine --json")));
    assert_eq!(c, Call::Status { mine: true });
    assert_eq!(g.as_user.as_deref(), Some("alice"));
    assert_eq!(g.socket.as_deref(), Some("/s"));
    assert!(g.json);
    let (_, c) = single(plan(&w("--as alice"), Some("'claim' \"rock pro\"")));
    assert_eq!(c, Call::Claim { class: "rock pro".into(), power: false, lease: None, wait: None });
    let (_, c) = single(plan(&[], Some("/usr/bin/labcli whoami")));
    assert_eq!(c, Call::Whoami);
}

#[test]
fn forced_command_may_not_set_identity_or_socket() {
    for cmd in ["status --as root", "--as root status", "labcli --socket /tmp/evil status", "--as=root"] {
        assert!(plan(&w("--as alice"), Some(cmd)).is_err(), "{cmd}");
    }
}

#[test]
fn hostile_forced_commands_are_usage_errors() {
    for cmd in [
        "status; rm -rf /",
        "`id`",
        "$(touch /tmp/x)",
        "status 'unterminated",
        "status \\",
        "id",
        "run rockpro64 -- touch /tmp/x",
        "--as root run x -- id",
    ] {
        assert!(plan(&[], Some(cmd)).is_err(), "{cmd}");
    }
    assert!(plan(&[], Some("status 'x")).unwrap_err().0.contains("unterminated"));
    assert!(plan(&[], Some(&"a".repeat(MAX_LINE + 1))).is_err());
}

#[test]
fn stdin_plans() {
    assert_eq!(plan(&[], None), Ok(Plan::Stdin { globals: Globals::default() }));
    assert!(matches!(plan(&[], Some("")), Ok(Plan::Stdin { .. })));
    assert!(matches!(plan(&[], Some("  labcli ")), Ok(Plan::Stdin { .. })));
    assert!(matches!(plan(&w("--as bob"), Some("--json")), Ok(Plan::Stdin { .. })));
    assert!(matches!(plan(&w("--help"), None), Ok(Plan::Help(_))));
    assert!(matches!(plan(&[], Some("--help")), Ok(Plan::Help(_))));
    assert!(matches!(plan(&[], Some("help claim")), Ok(Plan::Help(t)) if t.contains("--power")));
}

/// A cheap stand-in for the fuzzer to come: random strings over an
/// alphabet of quotes, escapes, option dashes and command words must never
/// panic any of the pure entry points.
#[test]
fn random_input_never_panics() {
    const PIECES: &[&str] = &[
        " ",
        "'",
        "\"",
        "\\",
        "\n",
        "-",
        "--",
        "=",
        "{",
        "}",
        "$",
        "`",
        ";",
        "ü",
        "\u{0}",
        "claim",
        "status",
        "labcli",
        "--as",
        "--socket",
        "--wait",
        "--lease",
        "4h",
        "0s",
        "1",
        "--tail",
        "maintenance",
        "on",
        "console",
        "{\"fn\":\"console\"}",
        "\"id\":",
        "[",
        "run",
        "--expect",
        "(",
        "known-hosts",
        "help",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..5_000 {
        let n = next() % 12;
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        let _ = plan(&[], Some(&s));
        let argv: Vec<String> = s.split(' ').map(String::from).collect();
        let _ = plan(&argv, None);
        let mut id = 1;
        let _ = stdin_request(&s, &mut id, Some("al"));
    }
}
