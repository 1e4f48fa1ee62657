//! The other hosts' boards, as this host sees them through etcd: each
//! host publishes its boards' `status` lines under `P/status/BOARD`, held
//! by its lease; a board whose host is gone (no `P/hosts/HOST`) is shown
//! `offline`, with its claim (kept in etcd) if it has one. While etcd
//! does not answer this host, what it last saw is shown marked `stale`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use serde::Deserialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::claims::etcd::{get, Keys};
use crate::protocol::{BoardState, BoardView, ClassView, PowerState};
use crate::util::rfc3339_ms;

/// One board of another host, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRow {
    pub board: String,
    pub class: String,
    pub host: String,
    pub user: Option<String>,
    /// Whether a claim through its host could get it now.
    pub claimable: bool,
    /// Its `status` line (JSON).
    pub json: String,
}

/// The other hosts' boards, by name.
#[derive(Debug, Clone, Default)]
pub struct LabView {
    pub rows: Vec<RemoteRow>,
    /// Handle → (board, host) of the claims on other hosts' boards.
    pub handles: HashMap<String, (String, String)>,
    /// Board → (user, handle) of the same claims: a claimant's own
    /// handles in their `status --mine`.
    pub claimants: HashMap<String, (String, String)>,
    /// Host → its peer channel's address, for the hosts in the lab now.
    pub peers: HashMap<String, String>,
    /// etcd does not answer this host: the rows are what it saw last.
    pub stale: bool,
    /// Class → the deadlines (Unix ms) of the lab's waiters for it.
    pub tickets: HashMap<String, Vec<i64>>,
}

impl LabView {
    /// The rows' JSON, each marked stale when the view is.
    pub fn row_json(&self, r: &RemoteRow) -> String {
        if self.stale && r.json.ends_with('}') {
            format!("{},\"stale\":true}}", &r.json[..r.json.len() - 1])
        } else {
            r.json.clone()
        }
    }

    /// How many wait for `class` in the lab's queue now (tickets past
    /// their waiter's deadline do not count).
    pub fn waiting(&self, class: &str, now_ms: i64) -> usize {
        let live = |d: &&i64| **d + crate::cluster::queue::STALE_AFTER_MS > now_ms;
        self.tickets.get(class).map_or(0, |t| t.iter().filter(live).count())
    }

    /// Adds the other hosts' classes to `local`'s counts.
    pub fn add_classes(&self, mut local: Vec<ClassView>, available_only: bool) -> Vec<ClassView> {
        let mut by: BTreeMap<String, ClassView> = local.drain(..).map(|c| (c.class.clone(), c)).collect();
        for r in &self.rows {
            let v = by.entry(r.class.clone()).or_insert_with(|| ClassView {
                class: r.class.clone(),
                total: 0,
                available: 0,
                waiting: 0,
            });
            v.total += 1;
            v.available += usize::from(r.claimable && !self.stale);
        }
        // A lab of several hosts waits in its one queue per class.
        let now = crate::util::now_unix_ms();
        for v in by.values_mut() {
            v.waiting = self.waiting(&v.class, now);
        }
        by.into_values().filter(|c| !available_only || c.available > 0).collect()
    }
}

/// A status line's fields the view needs.
#[derive(Deserialize)]
struct Seen {
    state: BoardState,
    user: Option<String>,
}

#[derive(Deserialize)]
struct BoardRecord {
    host: String,
    class: String,
}

#[derive(Deserialize)]
struct HostRecord {
    peer: String,
}

#[derive(Deserialize)]
struct ClaimRecord {
    handle: String,
    user: String,
    claimed_at: i64,
    expires_at: i64,
    host: String,
}

/// Finds a claim by its handle in etcd itself: for a handle the view
/// has not seen yet (a claim made a moment ago through another host).
#[derive(Clone)]
pub struct Lookup {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    pub(crate) timeout: Duration,
}

impl Lookup {
    /// The board and host of `handle`'s claim, if etcd holds one.
    pub async fn find(&self, handle: &str) -> Result<Option<(String, String)>, crate::claims::LedgerError> {
        let prefix = self.keys.claims();
        let r = get(&self.client, self.timeout, &prefix, Some(GetOptions::new().with_prefix())).await?;
        Ok(r.kvs().iter().find_map(|kv| {
            let rec = serde_json::from_slice::<ClaimRecord>(kv.value()).ok()?;
            let board = kv.key_str().ok()?.strip_prefix(&prefix)?;
            (rec.handle == handle).then(|| (board.to_string(), rec.host))
        }))
    }
}

/// What etcd holds about the lab, as last read.
#[derive(Default)]
struct Known {
    boards: BTreeMap<String, BoardRecord>,
    /// Host → its peer address (empty when unreadable).
    hosts: HashMap<String, String>,
    status: HashMap<String, String>,
    claims: HashMap<String, ClaimRecord>,
    /// Ticket key (below `queue/`) → waiter's deadline.
    queue: HashMap<String, i64>,
}

impl Known {
    fn apply(&mut self, keys: &Keys, key: &str, value: Option<&[u8]>) {
        let Some(rest) = key.strip_prefix(keys.root()) else { return };
        let Some((kind, name)) = rest.split_once('/') else { return };
        let name = name.to_string();
        match (kind, value) {
            ("boards", Some(v)) => match serde_json::from_slice(v) {
                Ok(r) => {
                    self.boards.insert(name, r);
                }
                Err(e) => warn!(board = %name, "unreadable board registration in etcd: {e}"),
            },
            ("boards", None) => {
                self.boards.remove(&name);
            }
            ("hosts", Some(v)) => {
                let peer = serde_json::from_slice::<HostRecord>(v).map(|h| h.peer).unwrap_or_default();
                self.hosts.insert(name, peer);
            }
            ("hosts", None) => {
                self.hosts.remove(&name);
            }
            ("status", Some(v)) => {
                self.status.insert(name, String::from_utf8_lossy(v).into_owned());
            }
            ("status", None) => {
                self.status.remove(&name);
            }
            ("claims", Some(v)) => match serde_json::from_slice(v) {
                Ok(r) => {
                    self.claims.insert(name, r);
                }
                Err(e) => warn!(board = %name, "unreadable claim in etcd: {e}"),
            },
            ("claims", None) => {
                self.claims.remove(&name);
            }
            ("queue", Some(v)) => {
                self.queue.insert(name, crate::cluster::queue::deadline_of(v));
            }
            ("queue", None) => {
                self.queue.remove(&name);
            }
            _ => {}
        }
    }

    /// The view of every board not on `me`.
    fn view(&self, me: &str, stale: bool) -> LabView {
        let mut rows = Vec::new();
        let mut handles = HashMap::new();
        let mut claimants = HashMap::new();
        for (name, b) in &self.boards {
            if b.host == me {
                continue;
            }
            let claim = self.claims.get(name);
            if let Some(c) = claim {
                handles.insert(c.handle.clone(), (name.clone(), b.host.clone()));
                claimants.insert(name.clone(), (c.user.clone(), c.handle.clone()));
            }
            let live = self.hosts.contains_key(&b.host).then(|| self.status.get(name)).flatten();
            let row = match live.and_then(|j| serde_json::from_str::<Seen>(j).ok().map(|s| (j, s))) {
                Some((json, seen)) => RemoteRow {
                    board: name.clone(),
                    class: b.class.clone(),
                    host: b.host.clone(),
                    user: seen.user,
                    claimable: seen.state == BoardState::Available,
                    json: json.clone(),
                },
                None => {
                    let v = BoardView {
                        board: name.clone(),
                        class: b.class.clone(),
                        state: BoardState::Offline,
                        user: claim.map(|c| c.user.clone()),
                        power: PowerState::Unknown,
                        claimed_at: claim.map(|c| rfc3339_ms(c.claimed_at)),
                        expires_at: claim.map(|c| rfc3339_ms(c.expires_at)),
                        fault: Some(format!("its host {} is not in the lab", b.host)),
                        console: None,
                        host: Some(b.host.clone()),
                        delivery: None,
                        health: None,
                    };
                    RemoteRow {
                        board: name.clone(),
                        class: b.class.clone(),
                        host: b.host.clone(),
                        user: v.user.clone(),
                        claimable: false,
                        json: serde_json::to_string(&v).unwrap_or_default(),
                    }
                }
            };
            rows.push(row);
        }
        let peers =
            self.hosts.iter().filter(|(h, p)| *h != me && !p.is_empty()).map(|(h, p)| (h.clone(), p.clone())).collect();
        let mut tickets: HashMap<String, Vec<i64>> = HashMap::new();
        for (key, deadline) in &self.queue {
            if let Some((class, _)) = key.split_once('/') {
                tickets.entry(class.to_string()).or_default().push(*deadline);
            }
        }
        LabView { rows, handles, claimants, peers, stale, tickets }
    }
}

/// Follows etcd and publishes the view of the other hosts' boards:
/// everything under the lab's prefix read once, then watched from that
/// revision on; read again whenever the watch breaks. `healthy` is
/// whether this host's lease is being kept (etcd answers it).
pub async fn follow(
    client: Client,
    prefix: String,
    me: String,
    healthy: Arc<AtomicBool>,
    tx: watch::Sender<Arc<LabView>>,
) {
    let keys = Keys::new(&prefix);
    let mut broken_logged = false;
    loop {
        match follow_once(&client, &keys, &me, &healthy, &tx).await {
            Ok(()) => return,
            Err(e) => {
                if !broken_logged {
                    warn!("following the lab in etcd: {e}; showing the other hosts' boards as last seen");
                    broken_logged = true;
                }
                mark_stale(&tx, true);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn mark_stale(tx: &watch::Sender<Arc<LabView>>, stale: bool) {
    if tx.borrow().stale != stale {
        let mut v = (**tx.borrow()).clone();
        v.stale = stale;
        tx.send_replace(Arc::new(v));
    }
}

/// Reads, then watches until the watch breaks (`Err`) or nobody looks
/// any more (`Ok`).
async fn follow_once(
    client: &Client,
    keys: &Keys,
    me: &str,
    healthy: &AtomicBool,
    tx: &watch::Sender<Arc<LabView>>,
) -> Result<(), String> {
    let r = get(client, Duration::from_secs(3), keys.root(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| e.to_string())?;
    let mut known = Known::default();
    for kv in r.kvs() {
        known.apply(keys, kv.key_str().unwrap_or_default(), Some(kv.value()));
    }
    let rev = r.header().map(|h| h.revision()).unwrap_or(0);
    tx.send_replace(Arc::new(known.view(me, false)));
    info!(boards = known.boards.len(), hosts = known.hosts.len(), "following the lab in etcd");
    let mut c = client.clone();
    let opts = WatchOptions::new().with_prefix().with_start_revision(rev + 1).with_progress_notify();
    let mut stream = c.watch(keys.root(), Some(opts)).await.map_err(|e| e.to_string())?;
    let mut stale = false;
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        // The watch says nothing when etcd is cut off; the lease keeper knows.
        let msg = tokio::time::timeout(Duration::from_secs(1), stream.message()).await;
        let now_stale = !healthy.load(Ordering::Relaxed);
        if now_stale != stale {
            stale = now_stale;
            mark_stale(tx, stale);
        }
        let resp = match msg {
            Err(_) => continue,
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(None)) => return Err("the watch ended".into()),
            Ok(Ok(Some(r))) => r,
        };
        if resp.canceled() {
            return Err(format!("the watch was cancelled: {}", resp.cancel_reason()));
        }
        if resp.events().is_empty() {
            continue;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let value = (ev.event_type() == EventType::Put).then(|| kv.value());
            known.apply(keys, kv.key_str().unwrap_or_default(), value);
        }
        tx.send_replace(Arc::new(known.view(me, stale)));
    }
}
