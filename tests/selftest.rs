//! `labd selftest` against a labsim lab (snmpd as the PoE switch, ptys as
//! the serial adapters, veth pairs as the board links, board processes
//! that boot): a healthy board passes every step and no claim is granted
//! on it while it is tested; a board whose console is silent fails at the
//! console; one whose port delivers no power fails at detection; a
//! claimed board is refused and left alone; every board tested ends as it
//! was; and a board file's `console.selftest` pattern is what passes.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{code, ok, Lab, ALICE, LABD};
use serde_json::{json, Value};

fn selftest(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new(LABD);
    c.arg("--config").arg(lab.path()).arg("selftest").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn run(lab: &Lab, args: &[&str]) -> (Output, String) {
    let o = selftest(lab, args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    println!("$ labd selftest {}\n{text}", args.join(" "));
    (o, text)
}

/// The verdict of `step` in `board`'s lines of the output.
fn verdict<'a>(text: &'a str, board: &str, step: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.first() == Some(&board) && w.get(1) == Some(&step)
        })
        .unwrap_or_else(|| panic!("no {step} line for {board} in:\n{text}"));
    line.split_whitespace().nth(2).unwrap_or("")
}

fn host_if(lab: &Lab, board: &str) -> (String, String) {
    let state: Value = serde_json::from_str(&std::fs::read_to_string(lab.path().join("labsim.json")).unwrap()).unwrap();
    let b = state["boards"].as_array().unwrap().iter().find(|b| b["name"] == board).unwrap();
    (b["host_if"].as_str().unwrap().to_string(), b["mac"].as_str().unwrap().to_string())
}

/// The board as it should be between claims: available, off at the
/// switch, its console attached, its link down (parked).
fn as_it_was(lab: &Lab, board: &str) {
    lab.wait_for(Duration::from_secs(10), &format!("{board} back in service"), || {
        lab.board(board)["state"] == "available"
    });
    let b = lab.board(board);
    assert_eq!((b["power"].as_str(), b["console"].as_str()), (Some("off"), Some("attached")), "{b}");
    assert_eq!(lab.switch_power(board), "off");
    let (ifname, _) = host_if(lab, board);
    let link: Value = serde_json::from_slice(
        &Command::new("ip").args(["-j", "link", "show", "dev", &ifname]).output().unwrap().stdout,
    )
    .unwrap();
    let flags = link[0]["flags"].as_array().unwrap();
    assert!(!flags.iter().any(|f| f == "UP"), "{ifname} is parked (down) again: {link}");
}

fn power_events(lab: &Lab, board: &str) -> usize {
    let d = lab.req(json!({"fn": "dump"}));
    ok(&d)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["board"] == board && e["kind"].as_str().is_some_and(|k| k.starts_with("power")))
        .count()
}

#[test]
fn selftest_commissions_boards_and_names_the_broken_step() {
    let lab = Lab::up(3, "rockpro64,pine64,rock5", |t| t);
    for b in ["rockpro64-1", "pine64-1", "rock5-1"] {
        lab.wait_for(Duration::from_secs(20), "the board ready", || {
            let v = lab.board(b);
            v["state"] == "available" && v["console"] == "attached"
        });
    }

    // A healthy board passes every step; while it is tested it is out of
    // service and a claim of its class (no other board) is refused.
    let child = selftest(&lab, &["rockpro64-1", "--wait", "10"]).spawn().unwrap();
    lab.wait_for(Duration::from_secs(10), "the board under test", || {
        lab.board("rockpro64-1")["state"] == "maintenance"
    });
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]);
    assert_eq!(code(&r[0]), "no_device_available", "no claim is granted on a board under selftest");
    let o = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    println!("$ labd selftest rockpro64-1 --wait 10\n{text}");
    assert_eq!(o.status.code(), Some(0), "{text}");
    for step in ["port", "link", "power", "detection", "console", "dhcp", "restore"] {
        assert_eq!(verdict(&text, "rockpro64-1", step), "pass", "{step}: {text}");
    }
    let (ifname, mac) = host_if(&lab, "rockpro64-1");
    assert!(text.contains(&format!("DHCPDISCOVER from {mac} on {ifname}")), "the board's own request: {text}");
    assert!(text.contains("rockpro64-1  PASS") && text.contains("selftest: 1 board passed"), "{text}");
    as_it_was(&lab, "rockpro64-1");
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]);
    let claim = ok(&r[0]).clone();
    assert_eq!(claim["board"], "rockpro64-1", "claimable again after the test");
    let events = ok(&lab.req(json!({"fn": "dump"})))["events"].clone();
    let logged = events.as_array().unwrap().iter().any(|e| e["kind"] == "selftest" && e["detail"] == "pass");
    assert!(logged, "the selftest and its verdict are in the event log: {events}");

    // A claimed board is refused and left alone: its claim, its power.
    let power_on = lab.as_user(ALICE, &[json!({"fn": "power_on", "handle": claim["handle"]})]);
    ok(&power_on[0]);
    let before = power_events(&lab, "rockpro64-1");
    let (o, text) = run(&lab, &["rockpro64-1", "--wait", "5"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("refused: board rockpro64-1 is claimed by bltest-alice") && text.contains("(busy)"),
        "{text}"
    );
    let b = lab.board("rockpro64-1");
    assert_eq!(
        (b["state"].as_str(), b["user"].as_str(), b["power"].as_str()),
        (Some("claimed"), Some(ALICE), Some("on"))
    );
    assert_eq!(lab.switch_power("rockpro64-1"), "on");
    assert_eq!(power_events(&lab, "rockpro64-1"), before, "nothing switched the claimed board");

    // A silent console (the board's transmit wire cut): fails at the
    // console, while power and the link are fine.
    std::fs::write(lab.path().join("tty/wire.pine64-1"), "cut\n").unwrap();
    let (o, text) = run(&lab, &["pine64-1", "--wait", "4"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert_eq!(verdict(&text, "pine64-1", "console"), "FAIL", "{text}");
    for step in ["port", "power", "detection", "dhcp", "restore"] {
        assert_eq!(verdict(&text, "pine64-1", step), "pass", "{step}: {text}");
    }
    assert!(text.contains("not a byte after power-on") && text.contains("pine64-1  FAIL at console"), "{text}");
    as_it_was(&lab, "pine64-1");

    // A port that is on but delivers no power (a dead splitter): fails
    // at detection first.
    std::fs::write(lab.path().join(format!("switch/splitter.1.{}", lab.board_port("rock5-1"))), "dead\n").unwrap();
    let (o, text) = run(&lab, &["rock5-1", "--wait", "4"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert_eq!(verdict(&text, "rock5-1", "detection"), "FAIL", "{text}");
    assert!(text.contains("searching: the port is on and no power reaches the board"), "{text}");
    assert!(text.contains("rock5-1  FAIL at detection"), "{text}");
    assert_eq!(verdict(&text, "rock5-1", "restore"), "pass", "{text}");
    as_it_was(&lab, "rock5-1");

    // Every board at once: one line a board that is refused, a summary.
    let (o, text) = run(&lab, &["--wait", "3"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("selftest: 3 boards, 0 passed, 3 failed"), "{text}");

    // Only operators; a board that does not exist; labd not running.
    let r = lab.as_user(ALICE, &[json!({"fn": "selftest", "board": "pine64-1"})]);
    assert_eq!(code(&r[0]), "permission_denied");
    let (o, text) = run(&lab, &["nope-1"]);
    assert!(o.status.code() == Some(1) && text.contains("(unknown_board)"), "{text}");
    let mut lab = lab;
    lab.stop_labd();
    let (o, text) = run(&lab, &["pine64-1"]);
    assert!(o.status.code() == Some(3) && text.contains("selftest runs through the running labd"), "{text}");

    // The board file's console.selftest: what the console must show.
    std::fs::remove_file(lab.path().join("tty/wire.pine64-1")).unwrap();
    std::fs::remove_file(lab.path().join(format!("switch/splitter.1.{}", lab.board_port("rock5-1")))).unwrap();
    for (board, pattern) in [("pine64-1", "Net: +eth0"), ("rock5-1", "Linux version")] {
        let f = lab.path().join(format!("boards.d/{board}.toml"));
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("baud = 115200 }"), "{text}");
        std::fs::write(&f, text.replace("baud = 115200 }", &format!("baud = 115200, selftest = \"{pattern}\" }}")))
            .unwrap();
    }
    lab.start_labd();
    for b in ["pine64-1", "rock5-1"] {
        lab.wait_for(Duration::from_secs(20), "the board ready", || lab.board(b)["console"] == "attached");
    }
    let (o, text) = run(&lab, &["pine64-1", "rock5-1", "--wait", "4"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert_eq!(verdict(&text, "pine64-1", "console"), "pass", "{text}");
    assert!(text.contains("\"Net: +eth0\" seen"), "{text}");
    assert_eq!(verdict(&text, "rock5-1", "console"), "FAIL", "{text}");
    assert!(text.contains("\"Linux version\" not seen in"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("rock5-1 ") && l.ends_with(" FAIL at console")), "{text}");
    assert!(text.contains("selftest: 2 boards, 1 passed, 1 failed (rock5-1 at console)"), "{text}");
}
