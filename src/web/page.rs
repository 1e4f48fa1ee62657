//! What the status page shows, made safe to show: every board's row,
//! the claims waiting per class and the latest events, built from the
//! registry's published snapshot (rows) and its event log.
//!
//! Everything shown passes [`clean`]: names, user names, fault messages
//! and event details are operator or user input, and a fault message may
//! carry terminal escapes or markup. Claim handles (bearer secrets) are
//! never part of a row (a [`StatusRow`]'s handle is not read), and
//! anything shaped like one in a message is masked.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::actors::registry::StatusRow;
use crate::protocol::{BoardView, EventView};

/// Longest text shown in a cell; the rest is cut with an ellipsis.
const MAX_TEXT: usize = 300;

/// A board as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub board: String,
    pub class: String,
    pub state: String,
    pub user: Option<String>,
    pub power: String,
    pub claimed_at: Option<String>,
    pub expires_at: Option<String>,
    /// Unix milliseconds of `expires_at`, for the page's countdown.
    pub expires_ms: Option<i64>,
    pub console: Option<String>,
    pub fault: Option<String>,
    /// What its health checks said lately (why it is unhealthy).
    pub health: Option<String>,
}

impl Row {
    /// The row of a board's published status line.
    pub fn from_status(r: &StatusRow) -> Row {
        match serde_json::from_str::<BoardView>(&r.json) {
            Ok(v) => Row {
                board: clean(&v.board),
                class: clean(&v.class),
                state: v.state.as_str().to_string(),
                user: v.user.as_deref().map(clean),
                power: v.power.as_str().to_string(),
                expires_ms: v.expires_at.as_deref().and_then(parse_ms),
                claimed_at: v.claimed_at.as_deref().map(clean),
                expires_at: v.expires_at.as_deref().map(clean),
                console: v.console.as_deref().map(clean),
                fault: v.fault.as_deref().map(clean),
                health: v.health.as_deref().map(clean),
            },
            // Not reported yet (the placeholder `{}` of a starting board).
            Err(_) => Row {
                board: clean(&r.board),
                class: clean(&r.class),
                state: "starting".into(),
                user: None,
                power: "unknown".into(),
                claimed_at: None,
                expires_at: None,
                expires_ms: None,
                console: None,
                fault: None,
                health: None,
            },
        }
    }
}

/// An event as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    pub at: String,
    pub kind: String,
    pub board: Option<String>,
    pub user: Option<String>,
    pub detail: Option<String>,
}

impl EventRow {
    pub fn from_view(e: &EventView) -> EventRow {
        EventRow {
            at: clean(&e.at),
            kind: clean(&e.kind),
            board: e.board.as_deref().map(clean),
            user: e.user.as_deref().map(clean),
            detail: e.detail.as_deref().map(clean),
        }
    }
}

/// The lab as the page shows it; rows and events are shared with the
/// previous page when they did not change, so a change is found by
/// pointer.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Each board's published line (compared by pointer) and its row.
    pub rows: Vec<(Arc<StatusRow>, Arc<Row>)>,
    /// Claims waiting, for every class.
    pub waiting: BTreeMap<String, usize>,
    /// The latest events, newest first.
    pub events: Arc<Vec<EventRow>>,
}

/// What one server-sent event carries: everything (`lab`), or what
/// changed since the last one (`change`).
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    /// labd's clock (Unix ms), so the page counts leases down in step.
    pub now: i64,
    /// The rows that changed (all of them in a `lab` message).
    pub boards: Vec<&'a Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<&'a BTreeMap<String, usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<&'a [EventRow]>,
}

impl Page {
    /// Everything, for a page that just connected.
    pub fn full(&self) -> Message<'_> {
        Message {
            now: crate::util::now_unix_ms(),
            boards: self.rows.iter().map(|(_, r)| r.as_ref()).collect(),
            waiting: Some(&self.waiting),
            events: Some(&self.events),
        }
    }

    /// What changed since `old` (None: nothing did). A different list of
    /// boards (which a running labd never has) is sent whole.
    pub fn since<'a>(&'a self, old: &Page) -> Option<Message<'a>> {
        if old.rows.len() != self.rows.len() {
            return Some(self.full());
        }
        let boards: Vec<&Row> = self
            .rows
            .iter()
            .zip(&old.rows)
            .filter(|((_, new), (_, was))| !Arc::ptr_eq(new, was) && new != was)
            .map(|((_, r), _)| r.as_ref())
            .collect();
        let waiting = (self.waiting != old.waiting).then_some(&self.waiting);
        let events = (!Arc::ptr_eq(&self.events, &old.events) && self.events != old.events).then_some(&self.events[..]);
        if boards.is_empty() && waiting.is_none() && events.is_none() {
            return None;
        }
        Some(Message { now: crate::util::now_unix_ms(), boards, waiting, events })
    }
}

/// Text made safe to show: terminal escape sequences and other control
/// characters removed, anything shaped like a claim handle masked, and
/// at most [`MAX_TEXT`] characters. (Markup is escaped where it is
/// written: [`escape`] for HTML; the page's script sets text, never
/// markup.)
pub fn clean(s: &str) -> String {
    // Handles are masked before the text is cut, so none is shown in part
    // where the cut falls: what is read is enough for a handle beyond it.
    let read = MAX_TEXT + HANDLE_LEN;
    let mut out = String::with_capacity(s.len().min(read));
    let mut chars = s.chars().peekable();
    let mut n = 0;
    let mut more = false;
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            skip_escape(&mut chars);
            continue;
        }
        if c == '\u{9b}' {
            // The one-byte CSI: its parameters and final byte go too.
            skip_csi(&mut chars);
            continue;
        }
        let c = match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if n == read {
            more = true;
            break;
        }
        out.push(c);
        n += 1;
    }
    let masked = mask_handles(&out);
    if masked.chars().count() <= MAX_TEXT && !more {
        return masked;
    }
    let mut cut: String = masked.chars().take(MAX_TEXT).collect();
    cut.push('…');
    cut
}

/// `bl-` and 32 hex digits.
const HANDLE_LEN: usize = 35;

fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            break;
        }
    }
}

/// Skips the rest of an escape sequence after ESC: CSI (`[`... final
/// byte), OSC and the other strings (up to BEL or ST), or one character.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => skip_csi(chars),
        Some(']' | 'P' | 'X' | '^' | '_') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' || c == '\u{9c}' {
                    break;
                }
                if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                    chars.next();
                    break;
                }
            }
        }
        _ => {}
    }
}

/// `bl-` and 32 lowercase hex digits (a claim handle) becomes `bl-…`.
fn mask_handles(s: &str) -> String {
    if !s.contains("bl-") {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while let Some(at) = s[i..].find("bl-").map(|k| i + k) {
        let hex = b.get(at + 3..at + HANDLE_LEN);
        if hex.is_some_and(|h| h.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))) {
            out.push_str(&s[copied..at]);
            out.push_str("bl-…");
            copied = at + HANDLE_LEN;
            i = at + HANDLE_LEN;
        } else {
            i = at + 3;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// HTML-escapes `s` for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 3339 to Unix milliseconds.
fn parse_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// What is left of a lease ending at `ms`, as `3h12m left` (or `ended`).
pub fn left(ms: i64, now: i64) -> String {
    if ms <= now {
        return "ended".into();
    }
    let s = (ms - now) / 1000;
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s left"),
        (0, 0, m) => format!("{m}m left"),
        (0, h, m) => format!("{h}h{m:02}m left"),
        (d, h, _) => format!("{d}d{h}h left"),
    }
}

/// The table rows of the page as first served (the script keeps them
/// current from then on).
pub fn render_rows(page: &Page, now: i64) -> String {
    let mut out = String::new();
    let cell = |v: Option<&str>| v.map(escape).unwrap_or_default();
    for (_, r) in &page.rows {
        let left = r.expires_ms.map(|ms| left(ms, now)).unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr data-board=\"{b}\"><td class=\"board\">{b}</td><td>{c}</td><td class=\"state s-{st}\">{st}</td>\
             <td>{u}</td><td class=\"power p-{p}\">{p}</td><td class=\"left\" title=\"{exp}\">{left}</td>\
             <td>{con}</td><td class=\"fault\">{f}</td><td class=\"health\">{h}</td></tr>",
            b = escape(&r.board),
            c = escape(&r.class),
            st = escape(&r.state),
            u = cell(r.user.as_deref()),
            p = escape(&r.power),
            exp = cell(r.expires_at.as_deref()),
            con = cell(r.console.as_deref()),
            f = cell(r.fault.as_deref()),
            h = cell(r.health.as_deref()),
        );
    }
    out
}

/// The waiting claims per class, as first served.
pub fn render_waiting(page: &Page) -> String {
    let mut out = String::new();
    for (class, n) in &page.waiting {
        let _ = write!(out, "<li data-class=\"{c}\">{c}: <b>{n}</b></li>", c = escape(class));
    }
    out
}

/// The latest events, as first served.
pub fn render_events(page: &Page) -> String {
    let mut out = String::new();
    let cell = |v: Option<&str>| v.map(escape).unwrap_or_default();
    for e in page.events.iter() {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.at),
            escape(&e.kind),
            cell(e.board.as_deref()),
            cell(e.user.as_deref()),
            cell(e.detail.as_deref()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_cleans() {
        assert_eq!(
            escape(r#"<img src=x onerror="alert('x')">&"#),
            "&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;"
        );
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m fault"), "red fault");
        assert_eq!(clean("a\u{1b}]0;title\u{7}b\u{1b}]2;t\u{1b}\\c"), "abc");
        assert_eq!(clean("x\u{9b}2Jy\u{0}\u{7f}z\nw"), "xyz w");
        assert_eq!(clean("\u{1b}"), "");
        let long = "é".repeat(1000);
        assert_eq!(clean(&long).chars().count(), MAX_TEXT + 1);
    }

    #[test]
    fn handles_are_masked() {
        let h = format!("bl-{}", "0123456789abcdef".repeat(2));
        assert_eq!(clean(&format!("log {h}.log, again {h}")), "log bl-….log, again bl-…");
        assert_eq!(clean("bl-xyz and bl-0123"), "bl-xyz and bl-0123");
        assert_eq!(clean("ébl-"), "ébl-");
        // A handle where the text is cut shows none of its digits.
        for at in MAX_TEXT - 34..=MAX_TEXT {
            let text = format!("{}{h} and more", "x".repeat(at));
            let c = clean(&text);
            assert!(!c.contains("0123456789"), "cut at {at}: {c}");
            assert!(c.chars().count() <= MAX_TEXT + 1, "{at}");
        }
    }

    #[test]
    fn rows_never_carry_the_handle() {
        let h = format!("bl-{}", "ab".repeat(16));
        let json = r#"{"board":"b<1>","class":"c","state":"claimed","user":"alice","power":"on","claimed_at":"2026-01-01T00:00:00.000Z","expires_at":"2026-01-01T04:00:00.000Z","fault":"<script>x</script>\u001b[1m"}"#;
        let r = StatusRow {
            board: "b<1>".into(),
            class: "c".into(),
            user: Some("alice".into()),
            handle: Some(h.clone()),
            claimable: false,
            json: json.into(),
        };
        let row = Row::from_status(&r);
        assert_eq!(row.expires_ms, Some(1_767_240_000_000));
        assert_eq!(row.fault.as_deref(), Some("<script>x</script>"));
        let page = Page { rows: vec![(Arc::new(r), Arc::new(row))], ..Page::default() };
        let html = render_rows(&page, 1_767_240_000_000 - 3_600_000 * 3 - 60_000 * 12);
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;") && html.contains("b&lt;1&gt;"), "{html}");
        assert!(html.contains("3h12m left"), "{html}");
        let sse = serde_json::to_string(&page.full()).unwrap();
        assert!(!html.contains(&h) && !sse.contains(&h));
    }

    #[test]
    fn time_left() {
        assert_eq!(left(10_000, 20_000), "ended");
        assert_eq!(left(65_000, 20_000), "45s left");
        assert_eq!(left(20_000 + 86_400_000 * 2 + 3_600_000, 20_000), "2d1h left");
    }
}
