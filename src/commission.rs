//! `labd selftest [BOARD...]`: commissioning a board, or checking it after
//! rewiring, through the running labd (which owns every board's port,
//! console and link, and holds the board out of service for the test).
//! One line a step with its time and verdict, a line a board, a summary;
//! the exit status follows labcli's rule (0 every board passed, 1 a board
//! failed or was refused, 3 labd unreachable; 2 usage, from clap).

use std::time::Duration;

use serde_json::Value;

use crate::cli::client::Client;
use crate::cli::output::clean;
use crate::cli::request::request_line;
use crate::cli::session::{EXIT_ERROR_REPLY, EXIT_OK, EXIT_UNREACHABLE};
use crate::config::Config;
use crate::protocol::{Call, SelftestReport};

/// Tests `boards` (every board of the lab when empty), one after another.
/// Prints to stdout (the report) and stderr (what went wrong besides);
/// returns the exit status.
pub fn run(cfg: &Config, boards: &[String], wait: Duration, json: bool) -> i32 {
    let boards: Vec<String> =
        if boards.is_empty() { cfg.boards.iter().map(|b| b.name.clone()).collect() } else { boards.to_vec() };
    let width = boards.iter().map(|b| b.chars().count()).max().unwrap_or(0);
    let mut failed: Vec<String> = Vec::new();
    for (n, board) in boards.iter().enumerate() {
        let call = Call::Selftest { board: board.clone(), wait: Some(wait.as_secs().max(1)) };
        let reply =
            Client::connect(&cfg.daemon.socket).and_then(|mut c| c.call(&request_line(n as u64 + 1, &call, None)));
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                eprintln!("labd: {e}");
                eprintln!(
                    "labd: selftest runs through the running labd (it owns the boards' ports, consoles and links)"
                );
                return EXIT_UNREACHABLE;
            }
        };
        let v: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
        if json {
            println!("{reply}");
        }
        if v["ok"] != Value::Bool(true) {
            let message = v["error"]["message"].as_str().unwrap_or("labd's answer is not one");
            let code = v["error"]["code"].as_str().unwrap_or("internal");
            if !json {
                println!("{:width$}  refused: {} ({})", clean(board), clean(message), clean(code));
            }
            failed.push(format!("{board} refused"));
            continue;
        }
        let report: SelftestReport = match serde_json::from_value(v["result"].clone()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("labd: {board}: labd's report does not read: {e}");
                failed.push(format!("{board} unreadable"));
                continue;
            }
        };
        if !json {
            print!("{}", lines(&report, width));
        }
        if let Some(s) = report.first_failure() {
            failed.push(format!("{board} at {}", s.step));
        }
    }
    let passed = boards.len() - failed.len();
    let summary = if failed.is_empty() {
        format!("selftest: {} passed", count(boards.len()))
    } else {
        format!("selftest: {}, {passed} passed, {} failed ({})", count(boards.len()), failed.len(), failed.join(", "))
    };
    if json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    if failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR_REPLY
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 board".into()
    } else {
        format!("{n} boards")
    }
}

/// A report as `labd selftest` prints it: a step a line, then the verdict.
pub fn lines(r: &SelftestReport, width: usize) -> String {
    let mut out = String::new();
    let board = clean(&r.board);
    for s in &r.steps {
        out.push_str(&format!(
            "{board:width$}  {:9}  {:4}  {:>6} ms  {}\n",
            clean(&s.step),
            s.verdict.as_str(),
            s.ms,
            clean(&s.detail)
        ));
    }
    let verdict = match r.first_failure() {
        None => "PASS".to_string(),
        Some(s) => format!("FAIL at {}", clean(&s.step)),
    };
    out.push_str(&format!("{board:width$}  {verdict}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{SelftestStep, Verdict};

    #[test]
    fn a_line_a_step_and_the_verdict() {
        let step = |step: &str, verdict, ms, detail: &str| SelftestStep {
            step: step.into(),
            verdict,
            ms,
            detail: detail.into(),
        };
        let r = SelftestReport {
            board: "rp-1".into(),
            pass: false,
            steps: vec![
                step("port", Verdict::Pass, 3, "port 1.1 reads off"),
                step("console", Verdict::Fail, 5000, "not a byte\x1b[2J after power-on"),
                step("dhcp", Verdict::Skip, 0, "no network"),
            ],
        };
        let text = lines(&r, 6);
        let want = "rp-1    port       pass       3 ms  port 1.1 reads off\n\
                    rp-1    console    FAIL    5000 ms  not a byte\\u{1b}[2J after power-on\n\
                    rp-1    dhcp       skip       0 ms  no network\n\
                    rp-1    FAIL at console\n";
        assert_eq!(text, want);
    }
}
