//! The chaos test's bookkeeping: its random choices, a client that
//! survives labd's death, and the ledger of what the clients believe they
//! hold, which labd's answers are checked against.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const BOARDS: usize = 8;
pub const RAW_CLIENTS: usize = 4;
/// A lease must still have this long to run for a "not claimed" answer or
/// a second claimant to count as a violation (clock and scheduling slack).
pub const SLACK_MS: i64 = 1000;

/// splitmix64: small, seedable, good enough to pick faults.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

pub fn parse_ms(s: &Value) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s.as_str()?, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// What became of one request.
pub enum Outcome {
    Reply(Value),
    /// Not sent: labd is not there.
    Down,
    /// Sent, but the connection died before the reply: it may or may not
    /// have been done.
    Lost,
}

/// A raw protocol client that survives labd's death (reconnects).
pub struct Client {
    pub sock: PathBuf,
    pub conn: Option<(UnixStream, BufReader<UnixStream>)>,
    pub id: u64,
}

impl Client {
    pub fn new(sock: &Path) -> Client {
        Client { sock: sock.to_path_buf(), conn: None, id: 0 }
    }

    pub fn call(&mut self, mut req: Value) -> Outcome {
        if self.conn.is_none() {
            let Ok(s) = UnixStream::connect(&self.sock) else { return Outcome::Down };
            s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
            let r = BufReader::new(s.try_clone().unwrap());
            self.conn = Some((s, r));
        }
        let (w, r) = self.conn.as_mut().unwrap();
        self.id += 1;
        req["id"] = json!(self.id);
        let mut line = req.to_string();
        line.push('\n');
        if w.write_all(line.as_bytes()).is_err() {
            self.conn = None;
            return Outcome::Down;
        }
        let mut reply = String::new();
        match r.read_line(&mut reply) {
            Ok(n) if n > 0 => {}
            _ => {
                self.conn = None;
                return Outcome::Lost;
            }
        }
        let v: Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("malformed reply {reply:?}: {e}"));
        assert_eq!(v["id"], json!(self.id), "reply out of order: {v}");
        assert!(v["ok"] == json!(true) || v["error"]["code"].is_string(), "reply neither ok nor an error: {v}");
        Outcome::Reply(v)
    }
}

/// A claim a client believes it holds.
#[derive(Clone, Debug)]
pub struct Held {
    pub user: String,
    pub board: String,
    pub claimed_at: String,
    /// The lease end for sure (a renew whose answer was lost may have
    /// moved it to `expires_max`).
    pub expires_min: i64,
    pub expires_max: i64,
    /// A release is in flight: its board may go to someone else.
    pub releasing: bool,
}

#[derive(Default)]
pub struct Ledger {
    /// Handle → claim, for the claims clients hold.
    pub held: HashMap<String, Held>,
    /// Every claim ever answered, as (board, claimed_at): what explains a
    /// claim in `status`.
    pub known: HashSet<(String, String)>,
    /// Claims whose answer was lost: (user, sent ms, lost ms).
    pub uncertain: Vec<(String, i64, i64)>,
    /// Boards the operator has in maintenance, since (ms) labd said so.
    pub maintenance: HashMap<String, i64>,
    /// Boards the operator force-releases by name, from (ms) the moment it
    /// chose the victim to when labd answered: whichever claim has the
    /// board then may end, also one granted meanwhile.
    pub forcing: HashMap<String, (i64, i64)>,
    pub violations: Vec<String>,
    pub stats: Stats,
}

#[derive(Default)]
pub struct Stats {
    pub ops: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub claims: u64,
    pub releases: u64,
    /// Claims granted after waiting in the queue, and waits that timed out.
    pub waited: u64,
    pub wait_timeouts: u64,
    pub force_releases: u64,
    pub maintenance_windows: u64,
    /// Maintenance refused because a client held the board.
    pub maintenance_refused: u64,
    pub expired_seen: u64,
    /// A few messages of the `internal` errors, for the report.
    pub internal: Vec<String>,
}

impl Ledger {
    pub fn count(&mut self, o: &Outcome) {
        self.stats.ops += 1;
        let key = match o {
            Outcome::Reply(v) if v["ok"] == json!(true) => {
                self.stats.ok += 1;
                return;
            }
            Outcome::Reply(v) => {
                if v["error"]["code"] == "internal" && self.stats.internal.len() < 10 {
                    self.stats.internal.push(v["error"]["message"].as_str().unwrap_or("").to_string());
                }
                v["error"]["code"].as_str().unwrap_or("?").to_string()
            }
            Outcome::Down => "(labd down)".into(),
            Outcome::Lost => "(reply lost)".into(),
        };
        *self.stats.errors.entry(key).or_default() += 1;
    }

    /// A claim was granted: no one else may hold the board.
    pub fn granted(&mut self, user: &str, r: &Value) -> Option<String> {
        let handle = r["handle"].as_str()?.to_string();
        let board = r["board"].as_str()?.to_string();
        let claimed_at = r["claimed_at"].as_str()?.to_string();
        let exp = parse_ms(&r["expires_at"])?;
        if r["user"] != json!(user) || r["state"] == json!("available") {
            self.violations.push(format!("claim reply for {user} looks wrong: {r}"));
        }
        let now = now_ms();
        let at = parse_ms(&r["claimed_at"]).unwrap_or(0);
        if let Some(since) = self.maintenance.get(&board) {
            // claimed_at is on the wire in whole seconds.
            if at > since + 1000 {
                self.violations.push(format!("{board} granted to {user} at {claimed_at}, while in maintenance: {r}"));
            }
        }
        let forced =
            |b: &str| self.forcing.get(b).is_some_and(|(from, to)| now >= *from && now <= to.saturating_add(SLACK_MS));
        for (h, other) in &self.held {
            if other.board == board
                && *h != handle
                && !other.releasing
                && other.expires_min > now + SLACK_MS
                && !forced(&other.board)
            {
                self.violations.push(format!(
                    "{board} granted to {user} at {claimed_at} while {} holds it until {} ms from now",
                    other.user,
                    other.expires_min - now
                ));
            }
        }
        self.known.insert((board.clone(), claimed_at.clone()));
        self.held.insert(
            handle.clone(),
            Held { user: user.into(), board, claimed_at, expires_min: exp, expires_max: exp, releasing: false },
        );
        self.stats.claims += 1;
        Some(handle)
    }

    /// Whether the operator may have force-released `board` while a
    /// request sent at `sent` was under way.
    pub fn forced(&self, board: &str, sent: i64) -> bool {
        let now = now_ms();
        self.forcing.get(board).is_some_and(|(from, to)| now >= *from && sent <= to.saturating_add(SLACK_MS))
    }

    /// labd says `handle` is not ours: fine if the lease may have ended.
    pub fn not_claimed(&mut self, handle: &str, sent: i64, what: &str) {
        if let Some(h) = self.held.remove(handle) {
            if h.expires_min > sent + SLACK_MS && !self.forced(&h.board, sent) {
                self.violations.push(format!(
                    "{what}: {} lost {} (claimed {}) {} ms before its lease ended",
                    h.user,
                    h.board,
                    h.claimed_at,
                    h.expires_min - sent
                ));
            } else {
                self.stats.expired_seen += 1;
            }
        }
    }
}
