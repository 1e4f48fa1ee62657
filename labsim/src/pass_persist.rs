//! The net-snmp `pass_persist` protocol (snmpd.conf(5)) serving
//! `pethPsePortAdminEnable` and `pethPsePortDetectionStatus` for group 1,
//! ports 1..N.
//!
//! snmpd starts `labsim pass-persist --dir DIR` once and then talks to it over
//! stdin/stdout, one request at a time:
//!
//! * `PING` → `PONG` (snmpd sends it before *every* request);
//! * `get\nOID` → `OID\ninteger\nVALUE` or `NONE`;
//! * `getnext\nOID` → the next OID in lexicographic order, or `NONE`;
//! * `set\nOID\nTYPE VALUE` → `DONE`, or an error word snmpd maps to an SNMP
//!   error (`not-writable`, `wrong-type`, `wrong-value`, `inconsistent-name`).
//!
//! snmpd reads replies with `fgets` and blocks until it has them, so every
//! reply is flushed at once and no request goes unanswered.

use std::cmp::Ordering;
use std::io::{BufRead, Write};

use super::ports::{PortStore, OFF, ON};
use super::{ADMIN_ENABLE_OID, DETECTION_OID, GROUP, PORT_ENTRY_OID};

/// An OID as a list of arcs, compared lexicographically like net-snmp does.
pub type Oid = Vec<u32>;

/// Parses `.1.3.6...` or `1.3.6...`; `None` for anything else.
pub fn parse_oid(text: &str) -> Option<Oid> {
    let t = text.trim();
    let t = t.strip_prefix('.').unwrap_or(t);
    if t.is_empty() {
        return None;
    }
    t.split('.').map(|a| a.parse::<u32>().ok()).collect()
}

/// Formats an OID the way net-snmp prints numeric OIDs (leading dot).
pub fn format_oid(oid: &[u32]) -> String {
    let mut s = String::new();
    for a in oid {
        s.push('.');
        s.push_str(&a.to_string());
    }
    s
}

/// The table served: one column, rows `GROUP.1` to `GROUP.ports`.
#[derive(Debug, Clone)]
pub struct PortTable {
    /// Number of ports (the lab's board count).
    pub ports: u32,
    /// Where port states live.
    pub store: PortStore,
}

/// The columns served, in walk order.
const COLUMNS: [u32; 2] = [ADMIN_ENABLE_OID[10], DETECTION_OID[10]];

impl PortTable {
    fn row_oid(&self, column: u32, port: u32) -> Oid {
        let mut o = PORT_ENTRY_OID.to_vec();
        o.extend([column, GROUP, port]);
        o
    }

    /// The (column, port) an exact OID names, if it is a cell of the table.
    fn cell_of(&self, oid: &[u32]) -> Option<(u32, u32)> {
        let n = PORT_ENTRY_OID.len();
        if oid.len() != n + 3 || oid[..n] != PORT_ENTRY_OID || !COLUMNS.contains(&oid[n]) || oid[n + 1] != GROUP {
            return None;
        }
        let port = oid[n + 2];
        (1..=self.ports).contains(&port).then_some((oid[n], port))
    }

    /// The first cell after `oid`: cells are in lexicographic order
    /// already (column by column, increasing port), so the first greater
    /// one wins.
    fn next_cell(&self, oid: &[u32]) -> Option<(u32, u32)> {
        COLUMNS
            .iter()
            .flat_map(|&c| (1..=self.ports).map(move |p| (c, p)))
            .find(|&(c, p)| self.row_oid(c, p).as_slice().cmp(oid) == Ordering::Greater)
    }

    /// A cell's value: the admin state, or the detection derived from it
    /// and from whether the board draws power.
    fn value(&self, column: u32, port: u32) -> i64 {
        let admin = self.store.get(GROUP, port);
        if column == ADMIN_ENABLE_OID[10] {
            return admin;
        }
        match (admin == ON, self.store.draws(GROUP, port)) {
            (false, _) => 1,
            (true, true) => 3,
            (true, false) => 2,
        }
    }

    fn value_reply(&self, (column, port): (u32, u32)) -> String {
        format!("{}\ninteger\n{}\n", format_oid(&self.row_oid(column, port)), self.value(column, port))
    }

    /// Answer to `get OID`.
    pub fn get(&self, oid_text: &str) -> String {
        match parse_oid(oid_text).and_then(|o| self.cell_of(&o)) {
            Some(c) => self.value_reply(c),
            None => "NONE\n".into(),
        }
    }

    /// Answer to `getnext OID`.
    pub fn getnext(&self, oid_text: &str) -> String {
        match parse_oid(oid_text).and_then(|o| self.next_cell(&o)) {
            Some(c) => self.value_reply(c),
            None => "NONE\n".into(),
        }
    }

    /// Answer to `set OID` with value line `TYPE VALUE` (e.g. `integer 1`).
    pub fn set(&self, oid_text: &str, value_line: &str) -> String {
        let Some((column, port)) = parse_oid(oid_text).and_then(|o| self.cell_of(&o)) else {
            // snmpd normally refuses unknown rows itself (its exact get got
            // NONE); if one reaches us anyway, the row cannot be created.
            return "inconsistent-name\n".into();
        };
        if column != ADMIN_ENABLE_OID[10] {
            return "not-writable\n".into();
        }
        let mut words = value_line.split_whitespace();
        let ty = words.next().unwrap_or("");
        if !ty.eq_ignore_ascii_case("integer") {
            return "wrong-type\n".into();
        }
        let value = match (words.next().map(str::parse::<i64>), words.next()) {
            (Some(Ok(v)), None) => v,
            _ => return "wrong-type\n".into(),
        };
        if value != ON && value != OFF {
            return "wrong-value\n".into();
        }
        match self.store.set(GROUP, port, value) {
            Ok(()) => "DONE\n".into(),
            Err(e) => {
                tracing::error!("setting port {port}: {e}");
                "not-writable\n".into()
            }
        }
    }
}

/// Serves requests from `input` until it ends (snmpd stopped or restarted
/// us), replying on `output`. Unknown commands get `NONE` so that snmpd,
/// which always waits for a line, never hangs on us.
pub fn serve(table: &PortTable, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut lines = input.lines();
    while let Some(cmd) = lines.next() {
        let cmd = cmd?;
        let reply = match cmd.trim() {
            "PING" => "PONG\n".to_string(),
            "get" => match lines.next() {
                Some(oid) => table.get(&oid?),
                None => break,
            },
            "getnext" => match lines.next() {
                Some(oid) => table.getnext(&oid?),
                None => break,
            },
            "set" => match (lines.next(), lines.next()) {
                (Some(oid), Some(value)) => table.set(&oid?, &value?),
                _ => break,
            },
            "" => continue,
            other => {
                tracing::warn!("unknown pass_persist command {other:?}");
                "NONE\n".to_string()
            }
        };
        output.write_all(reply.as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ports: u32) -> (tempfile::TempDir, PortTable) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("switch")).unwrap();
        let store = PortStore::new(d.path());
        (d, PortTable { ports, store })
    }

    fn talk(t: &PortTable, input: &str) -> String {
        let mut out = Vec::new();
        serve(t, input.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    const P1: &str = ".1.3.6.1.2.1.105.1.1.1.3.1.1";
    const P2: &str = ".1.3.6.1.2.1.105.1.1.1.3.1.2";
    const D1: &str = ".1.3.6.1.2.1.105.1.1.1.6.1.1";
    const D2: &str = ".1.3.6.1.2.1.105.1.1.1.6.1.2";

    #[test]
    fn detection_follows_power_and_the_draw() {
        let (_d, t) = table(2);
        assert_eq!(talk(&t, &format!("get\n{D1}\n")), format!("{D1}\ninteger\n1\n"), "off: disabled");
        assert_eq!(talk(&t, &format!("set\n{P1}\ninteger 1\n")), "DONE\n");
        assert_eq!(talk(&t, &format!("get\n{D1}\n")), format!("{D1}\ninteger\n2\n"), "on, nothing draws: searching");
        t.store.set_draws(GROUP, 1, true).unwrap();
        assert_eq!(talk(&t, &format!("get\n{D1}\n")), format!("{D1}\ninteger\n3\n"), "on and drawing: delivering");
        assert_eq!(talk(&t, &format!("set\n{D1}\ninteger 3\n")), "not-writable\n");
    }

    #[test]
    fn ping_and_get() {
        let (_d, t) = table(2);
        assert_eq!(talk(&t, "PING\n"), "PONG\n");
        assert_eq!(talk(&t, &format!("get\n{P1}\n")), format!("{P1}\ninteger\n2\n"));
        assert_eq!(talk(&t, "get\n.1.3.6.1.2.1.105.1.1.1.3.1.3\n"), "NONE\n");
        assert_eq!(talk(&t, "get\n.1.3.6.1.2.1.105.1.1.1.3.1\n"), "NONE\n");
        assert_eq!(talk(&t, "get\n.1.3.6.1.2.1.105.1.1.1.3.2.1\n"), "NONE\n");
        assert_eq!(talk(&t, "get\ngarbage\n"), "NONE\n");
    }

    #[test]
    fn getnext_walks_in_order() {
        let (_d, t) = table(2);
        let base = ".1.3.6.1.2.1.105.1.1.1.3";
        assert!(talk(&t, &format!("getnext\n{base}\n")).starts_with(&format!("{P1}\n")));
        assert!(talk(&t, "getnext\n.1.3.6.1.2.1.105\n").starts_with(&format!("{P1}\n")));
        assert!(talk(&t, &format!("getnext\n{P1}\n")).starts_with(&format!("{P2}\n")));
        assert!(talk(&t, &format!("getnext\n{P1}.7\n")).starts_with(&format!("{P2}\n")));
        // After the last port of the admin column, the detection column.
        assert!(talk(&t, &format!("getnext\n{P2}\n")).starts_with(&format!("{D1}\n")));
        assert!(talk(&t, &format!("getnext\n{base}.2\n")).starts_with(&format!("{D1}\n")));
        assert_eq!(talk(&t, &format!("getnext\n{D2}\n")), "NONE\n");
        assert_eq!(talk(&t, "getnext\n.1.4\n"), "NONE\n");
        // Numeric, not textual, order: port 10 comes after port 9.
        let (_d, t) = table(10);
        let p9 = format!("{base}.1.9");
        assert!(talk(&t, &format!("getnext\n{p9}\n")).starts_with(&format!("{base}.1.10\n")));
    }

    #[test]
    fn set_persists_in_files() {
        let (d, t) = table(2);
        assert_eq!(talk(&t, &format!("set\n{P2}\ninteger 1\n")), "DONE\n");
        assert_eq!(std::fs::read_to_string(d.path().join("switch/port.1.2")).unwrap().trim(), "1");
        assert_eq!(talk(&t, &format!("get\n{P2}\n")), format!("{P2}\ninteger\n1\n"));
        assert_eq!(talk(&t, &format!("set\n{P2}\ninteger 2\n")), "DONE\n");
        assert_eq!(talk(&t, &format!("get\n{P2}\n")), format!("{P2}\ninteger\n2\n"));
    }

    #[test]
    fn bad_sets_are_refused() {
        let (d, t) = table(2);
        assert_eq!(talk(&t, &format!("set\n{P1}\ninteger 3\n")), "wrong-value\n");
        assert_eq!(talk(&t, &format!("set\n{P1}\ninteger 0\n")), "wrong-value\n");
        assert_eq!(talk(&t, &format!("set\n{P1}\nstring \"on\"\n")), "wrong-type\n");
        assert_eq!(talk(&t, &format!("set\n{P1}\ngauge 1\n")), "wrong-type\n");
        assert_eq!(talk(&t, &format!("set\n{P1}\ninteger x\n")), "wrong-type\n");
        assert_eq!(talk(&t, &format!("set\n{P1}\n\n")), "wrong-type\n");
        assert_eq!(talk(&t, "set\n.1.3.6.1.2.1.105.1.1.1.3.1.9\ninteger 1\n"), "inconsistent-name\n");
        assert!(!d.path().join("switch/port.1.1").exists());
    }

    #[test]
    fn a_session_of_several_requests() {
        let (_d, t) = table(1);
        let out = talk(&t, &format!("PING\nset\n{P1}\ninteger 1\nPING\nget\n{P1}\nbogus\n"));
        assert_eq!(out, format!("PONG\nDONE\nPONG\n{P1}\ninteger\n1\nNONE\n"));
    }
}
