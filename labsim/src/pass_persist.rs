//! The net-snmp `pass_persist` protocol (snmpd.conf(5)) serving
//! `pethPsePortAdminEnable` for group 1, ports 1..N.
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
use super::{ADMIN_ENABLE_OID, GROUP};

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

impl PortTable {
    fn row_oid(&self, port: u32) -> Oid {
        let mut o = ADMIN_ENABLE_OID.to_vec();
        o.push(GROUP);
        o.push(port);
        o
    }

    /// The port an exact OID names, if it is a row of the table.
    fn port_of(&self, oid: &[u32]) -> Option<u32> {
        let n = ADMIN_ENABLE_OID.len();
        if oid.len() != n + 2 || oid[..n] != ADMIN_ENABLE_OID || oid[n] != GROUP {
            return None;
        }
        let port = oid[n + 1];
        (1..=self.ports).contains(&port).then_some(port)
    }

    /// The first row after `oid`. Rows are in lexicographic order already
    /// (same prefix, increasing last arc), so the first greater one wins.
    fn next_port(&self, oid: &[u32]) -> Option<u32> {
        (1..=self.ports).find(|&p| self.row_oid(p).as_slice().cmp(oid) == Ordering::Greater)
    }

    fn value_reply(&self, port: u32) -> String {
        format!("{}\ninteger\n{}\n", format_oid(&self.row_oid(port)), self.store.get(GROUP, port))
    }

    /// Answer to `get OID`.
    pub fn get(&self, oid_text: &str) -> String {
        match parse_oid(oid_text).and_then(|o| self.port_of(&o)) {
            Some(p) => self.value_reply(p),
            None => "NONE\n".into(),
        }
    }

    /// Answer to `getnext OID`.
    pub fn getnext(&self, oid_text: &str) -> String {
        match parse_oid(oid_text).and_then(|o| self.next_port(&o)) {
            Some(p) => self.value_reply(p),
            None => "NONE\n".into(),
        }
    }

    /// Answer to `set OID` with value line `TYPE VALUE` (e.g. `integer 1`).
    pub fn set(&self, oid_text: &str, value_line: &str) -> String {
        let Some(port) = parse_oid(oid_text).and_then(|o| self.port_of(&o)) else {
            // snmpd normally refuses unknown rows itself (its exact get got
            // NONE); if one reaches us anyway, the row cannot be created.
            return "inconsistent-name\n".into();
        };
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
        assert_eq!(talk(&t, &format!("getnext\n{P2}\n")), "NONE\n");
        assert_eq!(talk(&t, &format!("getnext\n{base}.2\n")), "NONE\n");
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
