//! Health checks (`[health.CLASS]`) against a labsim lab: a board whose
//! simulated firmware stays silent (its console's transmit wire cut)
//! fails its checks after releases, is offered meanwhile only while it
//! has failed fewer than `failures` in a row, then goes `unhealthy`:
//! never granted, shown so in `status`, `history` and the page (in
//! headless Chromium), and still so after `kill -9`. Once its console is
//! back, `labcli health BOARD` brings it back and a waiter gets it. On a
//! class with a schedule, the schedule alone makes a silent board
//! unhealthy and brings it back, and never touches a claimed board.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::ports::free_port;
use common::{code, ok, Lab, ALICE, BOB, LABCLI};
use serde_json::{json, Value};

const HEALTH: &str = "
[health.rockpro64]
timeout = \"3s\"
failures = 2

[health.pine64]
timeout = \"3s\"
failures = 2
every = \"2s\"
after_release = false
";

/// `labcli BOARD ARGS` as root (an operator).
fn root_cli(lab: &Lab, args: &[&str]) -> (Output, String) {
    let o = Command::new(LABCLI).arg("--socket").arg(lab.sock()).args(args).stdin(Stdio::null()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    println!("$ labcli {}\n{text}", args.join(" "));
    (o, text)
}

fn events(lab: &Lab, board: &str, kind: &str) -> Vec<Value> {
    let r = lab.req(json!({"fn": "history", "board": board, "kind": kind}));
    ok(&r).as_array().unwrap().clone()
}

fn silence(lab: &Lab, board: &str, cut: bool) {
    std::fs::write(lab.path().join(format!("tty/wire.{board}")), if cut { "cut\n" } else { "ok\n" }).unwrap();
}

fn claim_and_release(lab: &Lab, user: &str, class: &str) -> String {
    let r = lab.as_user(user, &[json!({"fn": "claim", "class": class})]);
    let c = ok(&r[0]).clone();
    let r = lab.as_user(user, &[json!({"fn": "release", "handle": c["handle"]})]);
    ok(&r[0]);
    c["board"].as_str().unwrap().to_string()
}

#[test]
fn a_silent_board_goes_unhealthy_stays_so_and_comes_back() {
    let port = free_port();
    let mut lab =
        Lab::up(2, "rockpro64,pine64", move |t| format!("{t}\n[web]\nlisten = \"127.0.0.1:{port}\"\n{HEALTH}"));
    let long = Duration::from_secs(30);
    lab.wait_for(long, "rockpro64-1 ready", || {
        let v = lab.board("rockpro64-1");
        v["state"] == "available" && v["console"] == "attached"
    });

    // A healthy board passes its check after a release and is offered again.
    assert_eq!(claim_and_release(&lab, ALICE, "rockpro64"), "rockpro64-1");
    lab.wait_for(long, "the check after the release", || events(&lab, "rockpro64-1", "health").len() == 1);
    let e = events(&lab, "rockpro64-1", "health");
    assert_eq!(e[0]["detail"], "pass (after bltest-alice's claim)", "{e:?}");
    lab.wait_for(long, "rockpro64-1 offered again", || lab.board("rockpro64-1")["state"] == "available");

    // Silent: its first failed check leaves it offered (1 of 2); while
    // checked, a claim is refused, saying why.
    silence(&lab, "rockpro64-1", true);
    claim_and_release(&lab, ALICE, "rockpro64");
    assert_eq!(lab.board("rockpro64-1")["state"], "checking", "checked before it is offered again");
    let r = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]);
    assert_eq!(code(&r[0]), "no_device_available");
    assert!(r[0]["error"]["message"].as_str().unwrap().contains("1 checking"), "{}", r[0]);
    lab.wait_for(long, "the first failure", || lab.board("rockpro64-1")["state"] == "available");
    let b = lab.board("rockpro64-1");
    assert!(
        b["health"].as_str().unwrap().starts_with("failed 1 of 2 health checks in a row: console: not a byte"),
        "{b}"
    );
    // kill -9 between two failures forgets neither: the first is still
    // counted (and shown) after the restart.
    lab.kill9_labd();
    lab.start_labd();
    lab.wait_for(long, "labd back", || lab.board("rockpro64-1")["console"] == "attached");
    let b = lab.board("rockpro64-1");
    assert!(b["health"].as_str().unwrap_or_default().starts_with("failed 1 of 2"), "after kill -9: {b}");

    // Its second: unhealthy, never granted, in status and history.
    claim_and_release(&lab, ALICE, "rockpro64");
    lab.wait_for(long, "unhealthy", || lab.board("rockpro64-1")["state"] == "unhealthy");
    let r = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]);
    assert_eq!(code(&r[0]), "no_device_available", "an unhealthy board is never granted");
    assert!(r[0]["error"]["message"].as_str().unwrap().contains("1 unhealthy"), "{}", r[0]);
    let (o, text) = root_cli(&lab, &["status"]);
    assert!(o.status.success(), "{text}");
    let line = text.lines().find(|l| l.starts_with("rockpro64-1")).unwrap();
    assert!(line.contains("unhealthy") && line.contains("failed 2 of 2 health checks"), "{text}");
    let (_, text) = root_cli(&lab, &["history", "--board", "rockpro64-1", "--kind", "unhealthy"]);
    assert!(
        text.contains("unhealthy") && text.contains("labd") && text.contains("after bltest-alice's claim"),
        "{text}"
    );
    let fails = events(&lab, "rockpro64-1", "health");
    assert!(fails.iter().any(|e| e["detail"].as_str().unwrap().starts_with("fail 2/2 at console")), "{fails:?}");

    // The page says so too (a real browser, the table's row).
    page_shows(&lab, port, "rockpro64-1", "unhealthy", "failed 2 of 2");
    // And /metrics counts the checks since labd's restart: one failed.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let m = common::http::scrape(addr);
    let checks = |result: &str| {
        common::http::value(&m, "boardlab_health_checks_total", &[("board", "rockpro64-1"), ("result", result)])
    };
    assert_eq!((checks("pass"), checks("fail"), checks("not_run")), (0.0, 1.0, 0.0));

    // kill -9: still unhealthy after the restart.
    lab.kill9_labd();
    lab.start_labd();
    lab.wait_for(long, "labd back", || lab.board("rockpro64-1")["console"] == "attached");
    assert_eq!(lab.board("rockpro64-1")["state"], "unhealthy", "unhealthy survives kill -9");

    // Only operators ask for a check; a check of the still silent board
    // fails (exit 1) and leaves it unhealthy.
    let o = lab.cli_as(ALICE, &["health", "rockpro64-1"]);
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success() && said.contains("permission_denied"), "{said}");
    let (o, text) = root_cli(&lab, &["health", "rockpro64-1"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("rockpro64-1  FAIL; state unhealthy (failed 3 health checks in a row"), "{text}");

    // Its console back, a waiter of the class, then `labcli health`: the
    // check passes, the board is healthy again and the waiter gets it.
    silence(&lab, "rockpro64-1", false);
    let waiter = lab.spawn_cli_as(BOB, &["--json", "claim", "rockpro64", "--wait", "60s"]);
    lab.wait_for(long, "bob waiting", || {
        ok(&lab.req(json!({"fn": "classes"})))
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["class"] == "rockpro64" && c["waiting"] == 1)
    });
    let (o, text) = root_cli(&lab, &["health", "rockpro64-1"]);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("rockpro64-1  console") && text.contains("rockpro64-1  PASS"), "{text}");
    let out = waiter.wait_with_output().unwrap();
    let got: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        got["board"],
        "rockpro64-1",
        "the waiter got the board back: {got} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(events(&lab, "rockpro64-1", "healthy").len(), 1);

    // A claimed board is refused (busy) and left alone.
    let (o, text) = root_cli(&lab, &["health", "rockpro64-1"]);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("claimed by bltest-bob") && text.contains("busy"), "{text}");
    assert_eq!(lab.board("rockpro64-1")["state"], "claimed");

    // The schedule (pine64: every 2s, not after releases): a silent
    // pine64-1 goes unhealthy by itself and comes back by itself.
    silence(&lab, "pine64-1", true);
    lab.wait_for(Duration::from_secs(60), "pine64-1 unhealthy by the schedule", || {
        lab.board("pine64-1")["state"] == "unhealthy"
    });
    let u = events(&lab, "pine64-1", "unhealthy");
    assert!(u[0]["detail"].as_str().unwrap().ends_with("(scheduled)"), "{u:?}");
    silence(&lab, "pine64-1", false);
    lab.wait_for(Duration::from_secs(60), "pine64-1 back by the schedule", || {
        lab.board("pine64-1")["state"] == "available"
    });

    // A claimed board is never checked by the schedule: held for a few
    // periods, no check, its port untouched.
    let mut claim = Value::Null;
    lab.wait_for(long, "a pine64 claim", || {
        let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64"})]);
        claim = r[0]["result"].clone();
        !claim.is_null()
    });
    let before = events(&lab, "pine64-1", "health").len();
    let power = lab.switch_power("pine64-1");
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(lab.board("pine64-1")["state"], "claimed");
        assert_eq!(lab.switch_power("pine64-1"), power, "nothing switched the claimed board");
    }
    assert_eq!(events(&lab, "pine64-1", "health").len(), before, "no check on a claimed board");
    ok(&lab.as_user(ALICE, &[json!({"fn": "release", "handle": claim["handle"]})])[0]);
}

/// chromium shows `board`'s row with `state` and `note` in its health cell.
fn page_shows(lab: &Lab, port: u16, board: &str, state: &str, note: &str) {
    let driver = common::browser::Driver::start(lab.path());
    let profile = lab.path().join("chrome");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = driver.session(&profile).await;
        c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
        let script = format!(
            "return Array.from(document.querySelectorAll('#boards tbody tr')).some(r => r.dataset.board === '{board}'
                && r.cells[2].textContent === '{state}' && r.cells[8].textContent.includes('{note}'));"
        );
        let what = format!("the page to show {board} {state}");
        common::browser::until_true(&c, Duration::from_secs(60), &what, &script).await;
        c.close().await.unwrap();
    });
}
