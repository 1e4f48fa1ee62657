//! Unit tests of labcli's command line (`args.rs`).

use super::*;

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn command(s: &str) -> Command {
    match parse(&words(s), Origin::Argv) {
        Ok(Parsed { command: Some(c), .. }) => c,
        other => panic!("{s:?}: {other:?}"),
    }
}

fn call(s: &str) -> Call {
    match command(s) {
        Command::Call(c) => c,
        other => panic!("{s:?}: {other:?}"),
    }
}

fn err(s: &str) -> String {
    match parse(&words(s), Origin::Argv) {
        Err(UsageError(m)) => m,
        Ok(p) => panic!("{s:?} parsed: {p:?}"),
    }
}

fn claim(class: &str, power: bool, lease: Option<u64>, wait: Option<u64>) -> Call {
    Call::Claim { class: class.into(), power, lease, wait }
}

#[test]
fn every_command() {
    assert_eq!(call("classes"), Call::Classes { available: false });
    assert_eq!(call("classes --available"), Call::Classes { available: true });
    assert_eq!(call("status"), Call::Status { mine: false });
    assert_eq!(call("status --mine"), Call::Status { mine: true });
    assert_eq!(call("claim rockpro64"), claim("rockpro64", false, None, None));
    assert_eq!(
        call("claim rockpro64 --power --lease 4h --wait 30m"),
        claim("rockpro64", true, Some(14400), Some(1800))
    );
    assert_eq!(call("claim --wait rockpro64"), claim("rockpro64", false, None, Some(WAIT_FOREVER_SECS)));
    assert_eq!(call("claim rockpro64 --wait"), claim("rockpro64", false, None, Some(31_536_000)));
    assert_eq!(call("claim rockpro64 --wait=1h30m --lease 1.5h"), claim("rockpro64", false, Some(5400), Some(5400)));
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
    assert_eq!(call("dump"), Call::Dump);
    assert_eq!(call("maintenance b1 on"), Call::Maintenance { board: "b1".into(), on: true, reason: None });
    assert_eq!(call("maintenance b1 off"), Call::Maintenance { board: "b1".into(), on: false, reason: None });
    assert_eq!(call("force-release b1"), Call::ForceRelease { board: "b1".into(), reason: None });
    assert_eq!(call("health b1"), Call::Health { board: "b1".into() });
    assert_eq!(command("known-hosts"), Command::KnownHosts);
}

#[test]
fn run_and_expect() {
    assert_eq!(
        command("run rockpro64 --power --lease 1h -- make -C board test"),
        Command::Run(RunSpec {
            class: "rockpro64".into(),
            power: true,
            lease: Some(3600),
            wait: None,
            command: words("make -C board test"),
        })
    );
    // Options after `--` belong to the command.
    match command("run c --wait -- sh -c --power") {
        Command::Run(r) => {
            assert_eq!(r.wait, Some(WAIT_FOREVER_SECS));
            assert!(!r.power);
            assert_eq!(r.command, words("sh -c --power"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err("run c").contains("COMMAND"), "{}", err("run c"));
    assert!(err("run c echo hi").contains("unexpected argument"), "{}", err("run c echo hi"));
    assert_eq!(
        command("console b1 --expect login: --timeout 5m --since-claim"),
        Command::Expect(ExpectSpec {
            handle: Some("b1".into()),
            pattern: "login:".into(),
            timeout: Some(Duration::from_secs(300)),
            since_claim: true,
        })
    );
    assert!(err("console --expect (").contains("regular expression"), "{}", err("console --expect ("));
    assert!(err("console --timeout 5m").contains("--expect"), "{}", err("console --timeout 5m"));
    assert!(err("console --expect x --timeout 0s").contains("longer than zero"));
}

#[test]
fn option_placement() {
    let want = claim("x", true, Some(90), None);
    assert_eq!(call("--power claim x --lease 90s"), want);
    assert_eq!(call("claim --lease 90s --power x"), want);
    assert_eq!(call("--lease=90s --power claim x"), want);
    let p = parse(&words("--json status --socket /s --as bob --mine"), Origin::Argv).unwrap();
    assert_eq!(p.command, Some(Command::Call(Call::Status { mine: true })));
    assert_eq!(p.globals, Globals { socket: Some("/s".into()), json: true, as_user: Some("bob".into()) });
    // `--` ends options.
    assert_eq!(call("release -- -odd"), Call::Release { handle: Some("-odd".into()) });
    assert_eq!(call("--wait 30m claim x"), claim("x", false, None, Some(1800)));
    assert_eq!(call("--mine status"), Call::Status { mine: true });
}

#[test]
fn globals_only_help_and_version() {
    let p = parse(&words("--as alice --json"), Origin::Argv).unwrap();
    assert_eq!(p.command, None);
    assert!(p.globals.json);
    assert!(parse(&[], Origin::Argv).unwrap().command.is_none());
    for h in ["--help", "-h", "help", "status -h", "help claim", "claim --help", "--version", "-V"] {
        let p = parse(&words(h), Origin::Argv).unwrap();
        assert!(p.help.is_some(), "{h}");
    }
    let help = parse(&words("--help"), Origin::Argv).unwrap().help.unwrap();
    for needle in ["--power", "--as", "--json", "LABD_SOCKET", "LABD_HANDLE", "Exit status", "unreachable"] {
        assert!(help.contains(needle), "general help lacks {needle}:\n{help}");
    }
    let claim_help = parse(&words("claim --help"), Origin::Argv).unwrap().help.unwrap();
    assert!(claim_help.contains("--wait"), "{claim_help}");
    let version = parse(&words("--version"), Origin::Argv).unwrap().help.unwrap();
    assert_eq!(version.trim(), format!("labcli {}", env!("CARGO_PKG_VERSION")));
    assert!(err("--mine").contains("needs a command"));
}

#[test]
fn bad_durations() {
    for d in ["0s", "0d", "500ms", "1500ms", "30", "5w", "h", "-5s", "99999999999999999999s", "1.05s", ""] {
        let m = err(&format!("claim x --lease {d}"));
        assert!(m.contains("--lease") || d.starts_with('-'), "{d}: {m}");
    }
    assert_eq!(call("claim x --lease 2000ms"), claim("x", false, Some(2), None));
    assert!(err("claim x --wait 0s").contains("--wait"));
    assert!(err("claim x --wait 10").contains("--wait"));
    assert!(err("claim x --wait=").contains("--wait"));
    assert!(err("log --tail 0").contains("--tail"));
    assert!(err("log --tail x").contains("--tail"));
    let e = err("log x --tail -1");
    assert!(e.contains("--tail") || e.contains("unknown option"), "{e}");
    assert!(err("claim x --lease 99999999999999999999s").contains("too large"));
}

#[test]
fn missing_extra_and_unknown() {
    assert_eq!(err("claim"), "`claim` needs CLASS");
    assert!(err("claim a b").contains("unexpected argument \"b\""), "{}", err("claim a b"));
    assert!(err("release a b").contains("unexpected argument"));
    assert!(err("status x").contains("unexpected argument"));
    assert!(err("whoami x").contains("unexpected argument"));
    assert!(err("maintenance b1").contains("`maintenance` needs"), "{}", err("maintenance b1"));
    assert!(err("maintenance b1 maybe").contains("on or off"), "{}", err("maintenance b1 maybe"));
    assert!(err("force-release").contains("`force-release` needs BOARD"), "{}", err("force-release"));
    assert!(err("frob").contains("unknown command \"frob\""));
    assert!(err("stauts").contains("did you mean \"status\""), "{}", err("stauts"));
    assert!(err("status --colour").contains("unknown option \"--colour\""));
    assert!(err("status -x").contains("unknown option"));
    assert!(err("status --available").contains("unknown option"), "{}", err("status --available"));
    assert!(err("--available status").contains("not valid for `status`"));
    assert!(err("claim x --lease").contains("--lease needs a value"), "{}", err("claim x --lease"));
    assert!(err("claim x --power=yes").contains("--power"), "{}", err("claim x --power=yes"));
    assert!(err("claim x --lease 1h --lease 2h").contains("twice"), "{}", err("claim x --lease 1h --lease 2h"));
    assert!(err("--lease 1h claim x --lease 2h").contains("twice"));
    assert!(err("claim x --json --json").contains("twice"), "{}", err("claim x --json --json"));
    assert!(err("--socket").contains("needs a value"));
    assert!(parse(&["claim".into(), "".into()], Origin::Argv).is_err());
    assert!(parse(&["--socket".into(), "".into(), "status".into()], Origin::Argv).is_err());
}

#[test]
fn remote_words_may_not_choose_socket_identity_or_run() {
    for s in ["status --as root", "--as=root status", "--socket /tmp/s status", "status --socket=/x"] {
        let e = parse(&words(s), Origin::Remote).unwrap_err();
        assert!(e.0.contains("not allowed"), "{s}: {e}");
    }
    let e = parse(&words("run c -- touch /tmp/x"), Origin::Remote).unwrap_err();
    assert!(e.0.contains("`run` is not available"), "{e}");
    let p = parse(&words("status --json --mine"), Origin::Remote).unwrap();
    assert!(p.globals.json);
    assert_eq!(p.command, Some(Command::Call(Call::Status { mine: true })));
}

#[test]
fn hostile_words_are_usage_errors() {
    for s in ["status; rm -rf /", "`id`", "$(touch /tmp/x)", "status && id", "status | id"] {
        assert!(parse(&crate::cli::words::split(s).unwrap(), Origin::Remote).is_err(), "{s}");
    }
    // Huge or control-laden words are shown short and escaped.
    let e = err(&format!("claim x --lease {}", "9".repeat(10_000)));
    assert!(e.len() < 300, "{} bytes", e.len());
    let e = parse(&["\u{1b}[2J".to_string()], Origin::Argv).unwrap_err();
    assert!(!e.0.contains('\u{1b}'), "{e}");
}

#[test]
fn command_list() {
    let all = commands();
    for c in ["classes", "status", "claim", "release", "console", "known-hosts", "run", "force-release"] {
        assert!(all.iter().any(|n| n == c), "{c} missing from {all:?}");
    }
}
