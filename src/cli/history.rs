//! `labcli history`: the event log as a table, oldest first. Every cell
//! goes through the same cleaning as the rest of labcli's output, so an
//! event's text cannot drive the terminal whatever the log holds.

use serde_json::Value;

use super::output::{field, table};

/// The `history` result (a list of events) as a table; `None` for a
/// result of another shape.
pub fn render(result: &Value) -> Option<String> {
    let list = result.as_array()?;
    if list.is_empty() {
        return Some("no events\n".into());
    }
    let with_subject = list.iter().any(|e| e.get("subject").is_some_and(Value::is_string));
    let mut header = vec!["TIME", "KIND", "BOARD", "BY"];
    if with_subject {
        header.push("CLAIMANT");
    }
    header.push("DETAIL");
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let mut row = vec![field(e, "at"), field(e, "kind"), field(e, "board"), field(e, "user")];
            if with_subject {
                row.push(field(e, "subject"));
            }
            row.push(field(e, "detail"));
            row
        })
        .collect();
    Some(table(&header, &rows))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::cli::output::render;

    #[test]
    fn a_table_with_claimants_when_any_and_no_escapes() {
        let r = json!([
            {"at": "2026-05-01T12:00:00.000Z", "kind": "claim", "board": "b1", "user": "alice", "detail": null},
            {"at": "2026-05-01T13:00:00.000Z", "kind": "force_release", "board": "b1", "user": "root",
             "subject": "alice", "detail": "psu\u{1b}[2J\nswap"},
        ]);
        let out = render("history", &r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "TIME                      KIND           BOARD  BY     CLAIMANT  DETAIL");
        assert_eq!(lines[1], "2026-05-01T12:00:00.000Z  claim          b1     alice  -         -");
        assert!(lines[2].ends_with("root   alice     psu\\u{1b}[2J\\nswap"), "{out}");
        assert!(!out.contains('\u{1b}'));
        assert_eq!(render("history", &json!([])), "no events\n");
        let plain = render("history", &json!([{"at": "t", "kind": "restart", "board": "b2", "user": null}]));
        assert_eq!(plain, "TIME  KIND     BOARD  BY  DETAIL\nt     restart  b2     -   -\n");
    }
}
