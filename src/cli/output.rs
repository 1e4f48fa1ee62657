//! Human rendering of replies.
//!
//! Renderers take the reply's `result` as a plain JSON value rather than the
//! daemon's types, so a newer daemon that adds fields (or a board with a
//! `fault`) still renders; a missing field shows as `-`, and a result of an
//! unexpected shape is printed as pretty JSON instead of being lost.
//!
//! Every string from the daemon goes through [`clean`] before it reaches the
//! terminal: board names, fault messages and console logs must not be able to
//! send escape sequences to an operator's terminal.

use serde_json::Value;

/// Replaces control characters (other than newline and tab) with visible
/// escapes, so that text from the daemon cannot drive the terminal.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One line, for table cells: newlines and tabs are escaped too.
fn cell_text(s: &str) -> String {
    clean(s).replace('\n', "\\n").replace('\t', " ")
}

/// A field of an object as cell text; `-` when absent or null.
pub(super) fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => cell_text(s),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
        Some(other) => cell_text(&other.to_string()),
    }
}

/// Lays out rows under a header, columns padded to their widest cell.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            for _ in cell.chars().count()..*w {
                l.push(' ');
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Pretty JSON, newline-terminated.
pub fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    clean(&s)
}

fn render_classes(result: &Value) -> Option<String> {
    let list = result.as_array()?;
    if list.is_empty() {
        return Some("no board classes\n".into());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let waiting = c["waiting"].as_u64().unwrap_or(0).to_string();
            vec![field(c, "class"), field(c, "total"), field(c, "available"), waiting]
        })
        .collect();
    Some(table(&["CLASS", "TOTAL", "AVAILABLE", "WAITING"], &rows))
}

/// Under `status`: `2 claims wait for a rockpro64 board`, a line for each
/// class whose queue is not empty.
pub fn waiting_lines(classes: &Value) -> String {
    let mut out = String::new();
    for c in classes.as_array().into_iter().flatten() {
        let n = c["waiting"].as_u64().unwrap_or(0);
        if n > 0 {
            let (claims, wait) = if n == 1 { ("claim", "waits") } else { ("claims", "wait") };
            out.push_str(&format!("{n} {claims} {wait} for a {} board\n", field(c, "class")));
        }
    }
    out
}

fn render_status(result: &Value) -> Option<String> {
    let list = result.as_array()?;
    if list.is_empty() {
        return Some("no boards\n".into());
    }
    let with_note = list.iter().any(|b| !matches!(b.get("fault"), None | Some(Value::Null)));
    let with_health = list.iter().any(|b| !matches!(b.get("health"), None | Some(Value::Null)));
    let with_console = list.iter().any(|b| !matches!(b.get("console"), None | Some(Value::Null)));
    let with_host = list.iter().any(|b| b.get("host").is_some_and(Value::is_string));
    // `status --mine`: the caller's own claims carry their handles.
    let with_handle = list.iter().any(|b| b.get("handle").is_some_and(Value::is_string));
    let mut header = vec!["BOARD", "CLASS", "STATE", "USER", "POWER", "EXPIRES"];
    if with_host {
        header.insert(1, "HOST");
    }
    if with_console {
        header.push("CONSOLE");
    }
    if with_note {
        header.push("FAULT");
    }
    if with_health {
        header.push("HEALTH");
    }
    if with_handle {
        header.push("HANDLE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            // A row another host published, as last seen without etcd.
            let state = if b.get("stale") == Some(&Value::Bool(true)) {
                format!("{}?", field(b, "state"))
            } else {
                field(b, "state")
            };
            let mut row = vec![
                field(b, "board"),
                field(b, "class"),
                state,
                field(b, "user"),
                power(b),
                expires(b, crate::util::now_unix_ms()),
            ];
            if with_host {
                row.insert(1, field(b, "host"));
            }
            if with_console {
                row.push(field(b, "console"));
            }
            if with_note {
                row.push(field(b, "fault"));
            }
            if with_health {
                row.push(field(b, "health"));
            }
            if with_handle {
                row.push(field(b, "handle"));
            }
            row
        })
        .collect();
    Some(table(&header, &rows))
}

/// The power as the switch has it, with what its detection says when a
/// powered port delivers nothing (`on (searching)`).
fn power(b: &Value) -> String {
    match b["delivery"].as_str() {
        Some(d) if d != "delivering" => format!("{} ({d})", field(b, "power")),
        _ => field(b, "power"),
    }
}

/// A lease end as people read it: the time and what is left of it
/// (`2026-05-01T12:00:00Z (3h12m left)`, `... (ended)`); `-` for none.
fn expires(b: &Value, now_ms: i64) -> String {
    let at = field(b, "expires_at");
    let Some(t) = b["expires_at"]
        .as_str()
        .and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
    else {
        return at;
    };
    let end_ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let left = end_ms.saturating_sub(now_ms);
    if left <= 0 {
        return format!("{at} (ended)");
    }
    // Whole minutes (seconds in the last minute): `3h12m`, `45s`.
    let secs = u64::try_from(left / 1000).unwrap_or(0);
    let shown = if secs >= 60 { secs / 60 * 60 } else { secs };
    format!("{at} ({} left)", crate::util::format_duration_compound(std::time::Duration::from_secs(shown)))
}

fn render_claim(result: &Value) -> Option<String> {
    result.as_object()?;
    let mut out = format!(
        "claimed {} ({})\n\n    handle: {}\n\n",
        field(result, "board"),
        field(result, "class"),
        field(result, "handle")
    );
    out.push_str(&format!("power:   {}\n", field(result, "power")));
    out.push_str(&format!("expires: {}\n", expires(result, crate::util::now_unix_ms())));
    if let Some(jail) = result.get("jail").filter(|j| j.is_object()) {
        out.push_str(&format!("jail:    {}\n", field(jail, "ip")));
        out.push_str(&format!("ssh:     {}\n", field(jail, "ssh")));
        let certified =
            jail.get("known_hosts").and_then(Value::as_str).is_some_and(|k| k.starts_with("@cert-authority "));
        if certified {
            out.push_str(&format!("host:    {} (certified by the lab's host CA)\n", field(jail, "host_name")));
            out.push_str("trust:   `labcli known-hosts >> ~/.ssh/known_hosts` (once)\n");
        }
    }
    Some(out)
}

/// One line about a board: used for renew, power and maintenance.
fn board_line(verb: &str, result: &Value) -> Option<String> {
    result.get("board")?;
    let mut out = format!(
        "{}: {verb}; state {}, power {}",
        field(result, "board"),
        field(result, "state"),
        field(result, "power")
    );
    if !matches!(result.get("expires_at"), None | Some(Value::Null)) {
        out.push_str(&format!(", expires {}", expires(result, crate::util::now_unix_ms())));
    }
    if !matches!(result.get("fault"), None | Some(Value::Null)) {
        out.push_str(&format!(", fault: {}", field(result, "fault")));
    }
    out.push('\n');
    Some(out)
}

fn render_released(result: &Value) -> Option<String> {
    result.get("board")?;
    Some(format!("released {}\n", field(result, "board")))
}

/// A health check: a line a step (as `labd selftest`), then the verdict
/// and where the board stands.
fn render_health(result: &Value) -> Option<String> {
    let board = field(result, "board");
    let mut out = String::new();
    for s in result.get("steps")?.as_array()? {
        let verdict = match s.get("verdict").and_then(Value::as_str) {
            Some("fail") => "FAIL".to_string(),
            _ => field(s, "verdict"),
        };
        out.push_str(&format!(
            "{board}  {:<9}  {verdict:<4}  {:>6} ms  {}\n",
            field(s, "step"),
            field(s, "ms"),
            field(s, "detail")
        ));
    }
    let verdict = if result.get("pass") == Some(&Value::Bool(true)) { "PASS" } else { "FAIL" };
    out.push_str(&format!("{board}  {verdict}; state {}", field(result, "state")));
    if !matches!(result.get("health"), None | Some(Value::Null)) {
        out.push_str(&format!(" ({})", field(result, "health")));
    }
    out.push('\n');
    Some(out)
}

fn render_whoami(result: &Value) -> Option<String> {
    let user = result.get("user")?;
    let mut out = match user {
        Value::String(s) => cell_text(s),
        other => cell_text(&other.to_string()),
    };
    if let Some(uid) = result.get("uid").filter(|u| !u.is_null()) {
        out.push_str(&format!(" (uid {})", cell_text(&uid.to_string())));
    }
    match result.get("admin") {
        Some(Value::Bool(true)) => out.push_str(", admin"),
        Some(Value::Bool(false)) => out.push_str(", not an admin"),
        _ => {}
    }
    out.push('\n');
    Some(out)
}

/// The known_hosts line alone, so that `labcli known-hosts >> ~/.ssh/known_hosts`
/// does what it says.
fn render_known_hosts(result: &Value) -> Option<String> {
    let line = result.get("known_hosts")?.as_str()?;
    Some(format!("{}\n", cell_text(line)))
}

/// Console logs arrive as a string, a list of lines, or an object holding
/// either under `lines`, `log` or `text`.
fn render_log(result: &Value) -> Option<String> {
    // Serial lines end in CR LF; the CR carries no meaning in a log.
    let clean = |s: &str| clean(&s.replace("\r\n", "\n"));
    let mut out = match result {
        Value::String(s) => clean(s),
        Value::Array(lines) => {
            let mut out = String::new();
            for l in lines {
                out.push_str(&clean(l.as_str()?));
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            out
        }
        Value::Object(m) => return ["lines", "log", "text"].iter().find_map(|k| m.get(*k)).and_then(render_log),
        _ => return None,
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    Some(out)
}

/// Renders the result of a successful `f` call for humans.
pub fn render(f: &str, result: &Value) -> String {
    let text = match f {
        "classes" => render_classes(result),
        "status" => render_status(result),
        "claim" => render_claim(result),
        "renew" => board_line("renewed", result),
        "reinit" => board_line("reinitialised", result),
        "power_on" => board_line("powered on", result),
        "power_off" => board_line("powered off", result),
        "power_cycle" => board_line("power cycled", result),
        "maintenance" => board_line("maintenance updated", result),
        "release" | "force_release" => render_released(result),
        "whoami" => render_whoami(result),
        "known_hosts" => render_known_hosts(result),
        "console_log" => render_log(result),
        "history" => super::history::render(result),
        "health" => render_health(result),
        "sd" => super::sd::render(result),
        "dump" => None,
        _ => None,
    };
    text.unwrap_or_else(|| match result {
        Value::Null => String::new(),
        other => pretty(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn board(name: &str, state: &str, user: Value) -> Value {
        json!({"board": name, "class": "rockpro64", "state": state, "user": user,
               "power": "off", "claimed_at": null, "expires_at": null})
    }

    #[test]
    fn classes_table() {
        let r = json!([{"class": "rockpro64", "total": 3, "available": 2},
                       {"class": "imx8", "total": 10, "available": 0, "waiting": 4, "new": 1}]);
        assert_eq!(
            render("classes", &r),
            "CLASS      TOTAL  AVAILABLE  WAITING\nrockpro64  3      2          0\nimx8       10     0          4\n"
        );
        assert_eq!(render("classes", &json!([])), "no board classes\n");
    }

    #[test]
    fn waiters_under_the_status_table() {
        let classes = json!([{"class": "rpi4", "waiting": 0}, {"class": "rockpro64", "waiting": 1},
                             {"class": "imx\u{1b}[2J8", "waiting": 3}]);
        assert_eq!(
            waiting_lines(&classes),
            "1 claim waits for a rockpro64 board\n3 claims wait for a imx\\u{1b}[2J8 board\n"
        );
        assert_eq!(waiting_lines(&json!([])), "");
    }

    #[test]
    fn status_table_tolerates_extra_and_missing_fields() {
        let mut b2 = board("rockpro64-2", "claimed", json!("alice"));
        b2["expires_at"] = json!("2024-05-01T12:00:00Z");
        b2["power"] = json!("on");
        b2["extra"] = json!({"x": 1});
        let r = json!([board("rockpro64-1", "available", Value::Null), b2, {"board": "odd"}]);
        let out = render("status", &r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "BOARD        CLASS      STATE      USER   POWER  EXPIRES");
        assert_eq!(lines[1], "rockpro64-1  rockpro64  available  -      off    -");
        assert_eq!(lines[2], "rockpro64-2  rockpro64  claimed    alice  on     2024-05-01T12:00:00Z (ended)");
        assert_eq!(lines[3], "odd          -          -          -      -      -");
        assert_eq!(render("status", &json!([])), "no boards\n");
    }

    #[test]
    fn power_shows_a_port_that_delivers_nothing() {
        assert_eq!(power(&json!({"power": "on", "delivery": "searching"})), "on (searching)");
        assert_eq!(power(&json!({"power": "on", "delivery": "delivering"})), "on");
        assert_eq!(power(&json!({"power": "off"})), "off");
    }

    #[test]
    fn lease_ends_show_what_is_left() {
        let b = json!({"expires_at": "2026-05-01T12:00:00Z"});
        let end = 1_777_636_800_000; // 2026-05-01T12:00:00Z
        assert_eq!(expires(&b, end - (3 * 3600 + 12 * 60 + 30) * 1000), "2026-05-01T12:00:00Z (3h12m left)");
        assert_eq!(expires(&b, end - 45_000), "2026-05-01T12:00:00Z (45s left)");
        assert_eq!(expires(&b, end - 2 * 86_400_000), "2026-05-01T12:00:00Z (2d left)");
        assert_eq!(expires(&b, end), "2026-05-01T12:00:00Z (ended)");
        assert_eq!(expires(&json!({"expires_at": null}), end), "-");
    }

    #[test]
    fn status_shows_hosts_and_stale_rows() {
        let mut a = board("lab1-b1", "available", Value::Null);
        a["host"] = json!("lab1");
        let mut b = board("lab2-b1", "claimed", json!("bob"));
        b["host"] = json!("lab2");
        b["stale"] = json!(true);
        let out = render("status", &json!([a, b]));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "BOARD    HOST  CLASS      STATE      USER  POWER  EXPIRES");
        assert_eq!(lines[2], "lab2-b1  lab2  rockpro64  claimed?   bob   off    -");
    }

    #[test]
    fn status_mine_shows_handles() {
        let mut b = board("b1", "claimed", json!("alice"));
        b["handle"] = json!("bl-00ff");
        let out = render("status", &json!([b]));
        assert!(out.starts_with("BOARD  CLASS      STATE    USER   POWER  EXPIRES  HANDLE\n"), "{out}");
        assert!(out.contains("  bl-00ff\n"), "{out}");
    }

    #[test]
    fn health_checks_a_line_a_step_then_the_verdict() {
        let r = json!({"board": "b1", "pass": false, "state": "unhealthy", "failures": 2,
            "health": "failed 2 of 2 health checks in a row: console: silent\u{1b}[2J",
            "steps": [{"step": "power", "verdict": "pass", "ms": 1003, "detail": "off, on"},
                      {"step": "console", "verdict": "fail", "ms": 3000, "detail": "not a byte"}]});
        let out = render("health", &r);
        assert!(out.contains("b1  console    FAIL    3000 ms  not a byte\n"), "{out}");
        assert!(
            out.contains("b1  FAIL; state unhealthy (failed 2 of 2 health checks in a row: console: silent"),
            "{out}"
        );
        assert!(!out.contains('\u{1b}'), "no escape sequence from labd reaches the terminal: {out}");
        let b = json!([{"board": "b1", "class": "c", "state": "unhealthy", "user": null, "power": "off",
            "health": "failed 3 of 3"}]);
        let out = render("status", &b);
        assert!(out.contains("HEALTH") && out.contains("failed 3 of 3"), "{out}");
    }

    #[test]
    fn status_shows_faults() {
        let mut b = board("b1", "faulted", Value::Null);
        b["fault"] = json!("switch\u{1b}[2J timeout");
        let out = render("status", &json!([b]));
        assert!(out.starts_with("BOARD  CLASS      STATE    USER  POWER  EXPIRES  FAULT\n"), "{out}");
        assert!(out.contains("switch\\u{1b}[2J timeout"));
        assert!(!out.contains('\u{1b}'));
    }

    #[test]
    fn claim_shows_handle_and_board() {
        let mut r = board("rockpro64-1", "claimed", json!("alice"));
        r["handle"] = json!("bl-00ff");
        r["jail"] = json!({"ip": "10.0.0.2", "ssh": "ssh -p 2201 root@lab", "known_hosts": "x"});
        let out = render("claim", &r);
        assert!(out.starts_with("claimed rockpro64-1 (rockpro64)\n\n    handle: bl-00ff\n"), "{out}");
        assert!(out.contains("ssh:     ssh -p 2201 root@lab\n"));
        assert!(!out.contains("trust:"), "no CA line to show: {out}");
        r["jail"]["known_hosts"] = json!("@cert-authority *.jail.boardlab ssh-ed25519 AAAA boardlab-host-ca");
        r["jail"]["host_name"] = json!("0123456789abcdef.jail.boardlab");
        let out = render("claim", &r);
        assert!(out.contains("host:    0123456789abcdef.jail.boardlab (certified by the lab's host CA)\n"), "{out}");
        assert!(out.contains("trust:   `labcli known-hosts >> ~/.ssh/known_hosts` (once)\n"), "{out}");
        r["jail"] = Value::Null;
        assert!(!render("claim", &r).contains("jail"));
    }

    #[test]
    fn small_results() {
        assert_eq!(render("release", &json!({"board": "b1", "released": true})), "released b1\n");
        assert_eq!(
            render("whoami", &json!({"user": "alice", "uid": 1000, "admin": false})),
            "alice (uid 1000), not an admin\n"
        );
        assert_eq!(render("whoami", &json!({"user": "root", "uid": 0, "admin": true})), "root (uid 0), admin\n");
        let line = "@cert-authority *.jail.boardlab ssh-ed25519 AAAAC3Nz boardlab-host-ca";
        assert_eq!(render("known_hosts", &json!({"known_hosts": line})), format!("{line}\n"));
        assert_eq!(render("known_hosts", &json!({"known_hosts": "a\nb\u{1b}"})), "a\\nb\\u{1b}\n", "one line");
        let b = board("b1", "maintenance", Value::Null);
        assert_eq!(render("maintenance", &b), "b1: maintenance updated; state maintenance, power off\n");
        assert_eq!(
            render("power_on", &board("b1", "claimed", json!("a"))),
            "b1: powered on; state claimed, power off\n"
        );
    }

    #[test]
    fn dump_and_unknown_shapes_are_pretty_json() {
        let d = json!({"boards": [1, 2]});
        assert_eq!(render("dump", &d), "{\n  \"boards\": [\n    1,\n    2\n  ]\n}\n");
        assert_eq!(render("whoami", &json!(42)), "42\n");
        assert_eq!(render("status", &json!({"weird": true})), "{\n  \"weird\": true\n}\n");
        assert_eq!(render("console", &Value::Null), "");
    }

    #[test]
    fn logs() {
        assert_eq!(render("console_log", &json!("a\nb")), "a\nb\n");
        assert_eq!(render("console_log", &json!(["a", "b\n"])), "a\nb\n");
        assert_eq!(render("console_log", &json!({"lines": ["x"]})), "x\n");
        assert_eq!(render("console_log", &json!("\u{1b}]0;pwned\u{7}ok\r\n")), "\\u{1b}]0;pwned\\u{7}ok\n");
        assert_eq!(render("console_log", &json!("a\rb\r\n")), "a\\rb\n");
        assert_eq!(render("console_log", &json!("")), "");
    }
}
