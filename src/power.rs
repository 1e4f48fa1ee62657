//! Power control through a PoE switch: POE-MIB (RFC 3621)
//! `pethPsePortAdminEnable.<group>.<port>` over SNMP v1/v2c, or v3 with
//! authPriv (SHA, AES), with snmp2.
//!
//! Rules that keep the lab honest about power:
//! - every set is read back, and only a read-back that matches counts;
//! - a timeout, an agent error status, or a reply about another OID is an
//!   error, never a guess;
//! - after any error the session is thrown away and rebuilt on next use,
//!   because an snmp2 session that timed out can later receive the stale
//!   reply and mismatch every request after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use snmp2::{AsyncSession, Oid, Value};

use crate::config::{SnmpVersion, Switch};

mod v3;

/// `pethPsePortAdminEnable` column.
pub const ADMIN_ENABLE: [u64; 11] = [1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 3];

/// `pethPsePortDetectionStatus` column: whether the port delivers power.
pub const DETECTION: [u64; 11] = [1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 6];

const ON: i64 = 1;
const OFF: i64 = 2;

/// What a port's power detection says (`pethPsePortDetectionStatus`): an
/// enabled port delivers power only once it found a powered device that
/// draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    Disabled,
    /// On, but nothing draws power (no board, a dead splitter, a board
    /// that does not start).
    Searching,
    Delivering,
    Fault,
    Test,
    OtherFault,
}

impl Detection {
    /// From the MIB's integer.
    pub fn from_mib(v: i64) -> Option<Detection> {
        Some(match v {
            1 => Detection::Disabled,
            2 => Detection::Searching,
            3 => Detection::Delivering,
            4 => Detection::Fault,
            5 => Detection::Test,
            6 => Detection::OtherFault,
            _ => return None,
        })
    }

    /// As status shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Detection::Disabled => "disabled",
            Detection::Searching => "searching",
            Detection::Delivering => "delivering",
            Detection::Fault => "fault",
            Detection::Test => "test",
            Detection::OtherFault => "other_fault",
        }
    }
}

/// A port's power as the switch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    On,
    Off,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::On => "on",
            PortState::Off => "off",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PowerError {
    #[error("switch {switch} ({host}) did not answer within {timeout_ms} ms ({attempts} attempts)")]
    Timeout { switch: String, host: String, timeout_ms: u128, attempts: u32 },
    #[error("switch {switch} ({host}): {what}")]
    Transport { switch: String, host: String, what: String },
    #[error("switch {switch} refused {op} of {oid}: {status}")]
    Agent { switch: String, op: &'static str, oid: String, status: String },
    #[error("switch {switch} answered about {got} when asked about {want}")]
    WrongOid { switch: String, want: String, got: String },
    #[error("switch {switch} port {oid}: {what}")]
    BadValue { switch: String, oid: String, what: String },
    #[error("switch {switch} port {oid} reads back {got} after being set {want}")]
    NotApplied { switch: String, oid: String, want: &'static str, got: &'static str },
    /// SNMPv3: the agent does not take labd's user or keys.
    #[error(
        "switch {switch} ({host}) refused SNMPv3 user {user:?} while {what}: {why}; check its user, auth_key and \
         priv_key against the switch"
    )]
    Credentials { switch: String, host: String, user: String, what: String, why: String },
    /// Every place of the switch's `max_in_flight` stayed taken for as long
    /// as one request may take: its other requests are not answered.
    #[error(
        "switch {switch} ({host}) did not answer: no place among its {max_in_flight} requests in flight came free \
         within {waited_ms} ms"
    )]
    Queued { switch: String, host: String, max_in_flight: usize, waited_ms: u128 },
}

fn status_name(s: u32) -> String {
    let n = match s {
        1 => "tooBig",
        2 => "noSuchName",
        3 => "badValue",
        4 => "readOnly",
        5 => "genErr",
        6 => "noAccess",
        7 => "wrongType",
        8 => "wrongLength",
        9 => "wrongEncoding",
        10 => "wrongValue",
        11 => "noCreation",
        12 => "inconsistentValue",
        13 => "resourceUnavailable",
        14 => "commitFailed",
        15 => "undoFailed",
        16 => "authorizationError",
        17 => "notWritable",
        18 => "inconsistentName",
        _ => return format!("error status {s}"),
    };
    format!("{n} ({s})")
}

fn oid_string(parts: &[u64]) -> String {
    let mut s = String::new();
    for p in parts {
        s.push('.');
        s.push_str(&p.to_string());
    }
    s
}

/// A client for one switch port's worth of requests.
///
/// A session (a connected UDP socket and two 64 KiB buffers) lives only for
/// one operation: a lab of a thousand mostly idle boards must not hold a
/// thousand sessions, and opening one costs two syscalls next to a
/// network round trip. It is also dropped after any error.
pub struct SwitchClient {
    sw: Arc<Switch>,
    session: Option<Box<AsyncSession>>,
    /// Where each request's duration goes (`/metrics`), if anywhere.
    latency: Option<prometheus_client::metrics::histogram::Histogram>,
    /// The switch's requests in flight, shared by every board on it.
    limit: Option<Arc<tokio::sync::Semaphore>>,
}

/// The bound on one switch's requests in flight (`max_in_flight`): one
/// is made per switch and handed to every board's [`SwitchClient`] on it.
pub fn switch_limit(sw: &Switch) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(sw.max_in_flight.max(1)))
}

/// One varbind of a reply: its OID and integer value (None past the end
/// of a walk).
type Reading = (Vec<u64>, Option<i64>);

/// How many rows one GETBULK asks for: about 30 bytes a row keeps a reply
/// well inside one UDP datagram and snmp2's receive buffer.
const BULK_ROWS: u32 = 40;

#[derive(Clone, Copy)]
enum Op {
    Get,
    GetNext,
    GetBulk,
    Set(i64),
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetNext => "getnext",
            Op::GetBulk => "getbulk",
            Op::Set(_) => "set",
        }
    }
}

impl SwitchClient {
    pub fn new(sw: Arc<Switch>) -> Self {
        SwitchClient { sw, session: None, latency: None, limit: None }
    }

    /// Takes a place of `limit` (see [`switch_limit`]) for every request.
    pub fn with_limit(mut self, limit: Arc<tokio::sync::Semaphore>) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Observes every request's duration (retries included) in `h`.
    pub fn with_latency(mut self, h: prometheus_client::metrics::histogram::Histogram) -> Self {
        self.latency = Some(h);
        self
    }

    async fn session(&mut self) -> Result<&mut AsyncSession, PowerError> {
        if self.session.is_none() {
            let mut req_id = [0u8; 4];
            let _ = getrandom::getrandom(&mut req_id);
            let start = i32::from_ne_bytes(req_id) & 0x3fff_ffff;
            let community = self.sw.community.as_bytes();
            let s = match (&self.sw.version, &self.sw.usm) {
                (SnmpVersion::V1, _) => AsyncSession::new_v1(self.sw.host.as_str(), community, start).await,
                (SnmpVersion::V3, Some(usm)) => {
                    AsyncSession::new_v3(self.sw.host.as_str(), start, v3::security(usm)).await
                }
                _ => AsyncSession::new_v2c(self.sw.host.as_str(), community, start).await,
            }
            .map_err(|e| self.transport(format!("opening a UDP session: {e}")))?;
            let mut s = Box::new(s);
            if self.sw.version == SnmpVersion::V3 {
                v3::discover(&mut s, &self.sw).await?;
            }
            self.session = Some(s);
        }
        // Just set above when it was empty.
        let (name, host) = (self.sw.name.clone(), self.sw.host.clone());
        self.session.as_deref_mut().ok_or(PowerError::Transport { switch: name, host, what: "no session".into() })
    }

    fn transport(&self, what: String) -> PowerError {
        PowerError::Transport { switch: self.sw.name.clone(), host: self.sw.host.clone(), what }
    }

    /// One request with the switch's timeout and retries. The session is
    /// dropped after any failure.
    async fn request(&mut self, op: Op, oid: &[u64]) -> Result<Vec<Reading>, PowerError> {
        // The place is held for the request and its retries: a retry is
        // the same request to the switch. A request waits for a place as
        // long as it could take itself, no longer: when the switch is
        // silent, the requests queued behind those timing out fail as soon
        // as they would have without the bound. The semaphore is never closed.
        let _place = match &self.limit {
            Some(l) => {
                let budget = self.sw.timeout.saturating_mul(self.sw.retries.saturating_add(1));
                match tokio::time::timeout(budget, l.clone().acquire_owned()).await {
                    Ok(place) => place.ok(),
                    Err(_) => {
                        return Err(PowerError::Queued {
                            switch: self.sw.name.clone(),
                            host: self.sw.host.clone(),
                            max_in_flight: self.sw.max_in_flight,
                            waited_ms: budget.as_millis(),
                        })
                    }
                }
            }
            None => None,
        };
        let t0 = std::time::Instant::now();
        let r = self.request_with_retries(op, oid).await;
        if let Some(h) = &self.latency {
            h.observe(t0.elapsed().as_secs_f64());
        }
        r
    }

    async fn request_with_retries(&mut self, op: Op, oid: &[u64]) -> Result<Vec<Reading>, PowerError> {
        let attempts = self.sw.retries.saturating_add(1);
        let timeout = self.sw.timeout;
        let mut last = None;
        for _ in 0..attempts {
            match tokio::time::timeout(timeout, self.request_once(op, oid)).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => {
                    self.session = None;
                    // An agent that answers with an error will answer the
                    // same again: no point retrying.
                    if matches!(
                        e,
                        PowerError::Agent { .. }
                            | PowerError::WrongOid { .. }
                            | PowerError::BadValue { .. }
                            | PowerError::Credentials { .. }
                    ) {
                        return Err(e);
                    }
                    last = Some(e);
                }
                Err(_) => {
                    // An SNMPv3 agent that answered discovery (the session
                    // is kept only then) and not the request drops what it
                    // cannot decrypt: a wrong priv_key, most likely.
                    last = (self.sw.version == SnmpVersion::V3 && self.session.is_some())
                        .then(|| v3::silent(&self.sw, op.name()));
                    self.session = None;
                }
            }
        }
        Err(last.unwrap_or(PowerError::Timeout {
            switch: self.sw.name.clone(),
            host: self.sw.host.clone(),
            timeout_ms: timeout.as_millis(),
            attempts,
        }))
    }

    async fn request_once(&mut self, op: Op, oid: &[u64]) -> Result<Vec<Reading>, PowerError> {
        let name = self.sw.name.clone();
        let want = oid_string(oid);
        let o = Oid::from(oid).map_err(|e| PowerError::BadValue {
            switch: name.clone(),
            oid: want.clone(),
            what: format!("bad OID: {e:?}"),
        })?;
        let session = self.session().await?;
        let res = match op {
            Op::Get => session.get(&o).await,
            Op::GetNext => session.getnext(&o).await,
            Op::GetBulk => session.getbulk(&[&o], 0, BULK_ROWS).await,
            Op::Set(v) => session.set(&[(&o, Value::Integer(v))]).await,
        };
        let mut pdu = match res {
            Ok(p) => p,
            Err(e) if v3::is_auth(&e) => return Err(v3::refused(&self.sw, op.name(), e)),
            // snmp2 folds the socket error away; on a connected UDP socket a
            // receive error is almost always ICMP port unreachable.
            Err(snmp2::Error::Receive) | Err(snmp2::Error::Send) => {
                return Err(PowerError::Transport {
                    switch: name,
                    host: self.sw.host.clone(),
                    what: format!(
                        "did not answer {} {want}: no SNMP agent is listening (connection refused)",
                        op.name()
                    ),
                })
            }
            Err(e) => {
                return Err(PowerError::Transport {
                    switch: name,
                    host: self.sw.host.clone(),
                    what: format!("{} {want}: {e}", op.name()),
                })
            }
        };
        if pdu.error_status != 0 {
            return Err(PowerError::Agent {
                switch: name,
                op: op.name(),
                oid: want,
                status: status_name(pdu.error_status),
            });
        }
        let walking = matches!(op, Op::GetNext | Op::GetBulk);
        let mut out = Vec::new();
        for (got_oid, value) in pdu.varbinds.by_ref() {
            let got: Vec<u64> = match got_oid.iter() {
                Some(it) => it.collect(),
                None => {
                    return Err(PowerError::BadValue {
                        switch: name,
                        oid: want,
                        what: "reply OID is not readable".into(),
                    })
                }
            };
            if !walking && got != oid {
                return Err(PowerError::WrongOid { switch: name, want, got: oid_string(&got) });
            }
            let v = match value {
                Value::Integer(i) => Some(i),
                Value::EndOfMibView | Value::NoSuchObject | Value::NoSuchInstance if walking => None,
                Value::NoSuchObject | Value::NoSuchInstance => {
                    return Err(PowerError::BadValue {
                        switch: name,
                        oid: want,
                        what: "no such port on the switch".into(),
                    })
                }
                // Past the end of the column a walk meets other types.
                _ if walking => None,
                other => {
                    return Err(PowerError::BadValue {
                        switch: name,
                        oid: want,
                        what: format!("unexpected value {other:?}"),
                    })
                }
            };
            out.push((got, v));
            if !matches!(op, Op::GetBulk) {
                break;
            }
        }
        if out.is_empty() {
            return Err(PowerError::BadValue { switch: name, oid: want, what: "reply has no value".into() });
        }
        Ok(out)
    }

    fn port_oid(group: u32, port: u32) -> Vec<u64> {
        let mut v = ADMIN_ENABLE.to_vec();
        v.push(u64::from(group));
        v.push(u64::from(port));
        v
    }

    fn decode(&self, oid: &[u64], v: Option<i64>) -> Result<PortState, PowerError> {
        match v {
            Some(ON) => Ok(PortState::On),
            Some(OFF) => Ok(PortState::Off),
            other => Err(PowerError::BadValue {
                switch: self.sw.name.clone(),
                oid: oid_string(oid),
                what: format!("pethPsePortAdminEnable is {other:?}, expected 1 (on) or 2 (off)"),
            }),
        }
    }

    /// Reads a port's admin state.
    pub async fn get(&mut self, group: u32, port: u32) -> Result<PortState, PowerError> {
        let r = self.read(group, port).await;
        self.session = None;
        r
    }

    async fn read(&mut self, group: u32, port: u32) -> Result<PortState, PowerError> {
        let oid = Self::port_oid(group, port);
        let v = self.request(Op::Get, &oid).await?.remove(0).1;
        self.decode(&oid, v)
    }

    /// Reads a port's power detection: whether an enabled port delivers.
    pub async fn detection(&mut self, group: u32, port: u32) -> Result<Detection, PowerError> {
        let mut oid = DETECTION.to_vec();
        oid.extend([u64::from(group), u64::from(port)]);
        let r = self.request(Op::Get, &oid).await.and_then(|mut r| {
            let v = r.remove(0).1;
            v.and_then(Detection::from_mib).ok_or_else(|| PowerError::BadValue {
                switch: self.sw.name.clone(),
                oid: oid_string(&oid),
                what: format!("pethPsePortDetectionStatus is {v:?}, expected 1 to 6"),
            })
        });
        self.session = None;
        r
    }

    /// Sets a port on or off and reads it back.
    pub async fn set(&mut self, group: u32, port: u32, on: bool) -> Result<(), PowerError> {
        let r = self.write(group, port, on).await;
        self.session = None;
        r
    }

    async fn write(&mut self, group: u32, port: u32, on: bool) -> Result<(), PowerError> {
        let oid = Self::port_oid(group, port);
        let want = if on { ON } else { OFF };
        let v = self.request(Op::Set(want), &oid).await?.remove(0).1;
        if v != Some(want) {
            return Err(PowerError::BadValue {
                switch: self.sw.name.clone(),
                oid: oid_string(&oid),
                what: format!("set reply carries {v:?}, not {want}"),
            });
        }
        let state = self.read(group, port).await?;
        let expect = if on { PortState::On } else { PortState::Off };
        if state != expect {
            self.session = None;
            return Err(PowerError::NotApplied {
                switch: self.sw.name.clone(),
                oid: oid_string(&oid),
                want: expect.as_str(),
                got: state.as_str(),
            });
        }
        Ok(())
    }

    /// Walks the whole admin-enable column: every (group, port) the switch
    /// knows with its state. Used once at start so that labd reads every
    /// port's real state without one request per board.
    pub async fn walk(&mut self) -> Result<HashMap<(u32, u32), PortState>, PowerError> {
        let r = self.walk_column().await;
        self.session = None;
        r
    }

    async fn walk_column(&mut self) -> Result<HashMap<(u32, u32), PortState>, PowerError> {
        let mut out = HashMap::new();
        let mut cur = ADMIN_ENABLE.to_vec();
        // A switch has at most a few thousand ports; the bound stops a
        // misbehaving agent from looping us forever.
        let op = if self.sw.version == SnmpVersion::V1 { Op::GetNext } else { Op::GetBulk };
        for _ in 0..100_000 {
            let rows = self.request(op, &cur).await?;
            for (oid, v) in rows {
                // Past the column, or the end of the agent's MIB (which
                // repeats the OID asked for): the walk is complete.
                if oid.len() != ADMIN_ENABLE.len() + 2 || !oid.starts_with(&ADMIN_ENABLE) || v.is_none() {
                    return Ok(out);
                }
                if oid <= cur {
                    return Err(PowerError::BadValue {
                        switch: self.sw.name.clone(),
                        oid: oid_string(&oid),
                        what: "the walk went backwards".into(),
                    });
                }
                if let (Ok(g), Ok(p)) = (u32::try_from(oid[11]), u32::try_from(oid[12])) {
                    if let Ok(state) = self.decode(&oid, v) {
                        out.insert((g, p), state);
                    }
                }
                cur = oid;
            }
        }
        Ok(out)
    }
}

/// Bounds the whole start-up walk of a switch, whatever its retries.
pub async fn walk_with_deadline(
    sw: Arc<Switch>,
    deadline: Duration,
) -> Result<HashMap<(u32, u32), PortState>, PowerError> {
    let mut c = SwitchClient::new(sw.clone());
    match tokio::time::timeout(deadline, c.walk()).await {
        Ok(r) => r,
        Err(_) => Err(PowerError::Timeout {
            switch: sw.name.clone(),
            host: sw.host.clone(),
            timeout_ms: deadline.as_millis(),
            attempts: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stacked switch's member is the POE-MIB group of the OID.
    #[test]
    fn the_group_and_port_end_the_oid() {
        let mut want = ADMIN_ENABLE.to_vec();
        want.extend([2, 5]);
        assert_eq!(SwitchClient::port_oid(2, 5), want);
        assert_eq!(oid_string(&SwitchClient::port_oid(1, 48)), ".1.3.6.1.2.1.105.1.1.1.3.1.48");
    }

    #[tokio::test]
    async fn requests_wait_for_a_place_of_their_switch() {
        let sw = Arc::new(Switch {
            name: "poe1".into(),
            host: "127.0.0.1:9".into(),
            community: "private".into(),
            version: SnmpVersion::V2c,
            timeout: Duration::from_millis(50),
            retries: 0,
            usm: None,
            max_in_flight: 1,
        });
        let limit = switch_limit(&sw);
        let held = limit.clone().acquire_owned().await.unwrap();
        let mut c = SwitchClient::new(sw).with_limit(limit.clone());
        // While the only place is taken the request waits, as long as it
        // could take itself (50 ms, one attempt), then says why it failed.
        let e = c.get(1, 1).await.unwrap_err();
        assert!(matches!(e, PowerError::Queued { max_in_flight: 1, waited_ms: 50, .. }), "{e}");
        assert!(e.to_string().contains("no place among its 1 requests in flight came free within 50 ms"), "{e}");
        // A place that comes free in time is taken: the request runs (and
        // fails, nothing answers there), and gives its place back.
        let freed = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        });
        let e = c.get(1, 1).await.unwrap_err();
        assert!(!matches!(e, PowerError::Queued { .. }), "{e}");
        freed.await.unwrap();
        assert_eq!(limit.available_permits(), 1);
    }
}
