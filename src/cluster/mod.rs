//! This labd as one host of a lab whose claims are kept in etcd
//! (`[cluster]`): it joins (its host key, held by an etcd lease it keeps
//! alive, and its boards' names, unique in the lab), and leaves.
//!
//! - `P/hosts/HOST` lives as long as this labd's lease: a host whose labd
//!   is gone (killed, cut off) loses it `host_ttl` later. Two labds with
//!   one host name never run at once.
//! - The host's record there names its jails' address pools (`[jail]
//!   pool` and `ipv6_pool`): a pool that overlaps another live host's is
//!   refused at start, since two hosts handing out one address (or one
//!   /64, which a jail's host certificate names) would mix their claims.
//! - `P/boards/BOARD` names the host a board is on. It outlives the host
//!   (its claims are kept while it is away); a name another host has is
//!   refused at start, and names this host no longer has are removed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

pub mod publish;
pub mod queue;
pub mod tls;
pub mod view;

use crate::claims::etcd::{get, retrying, txn, Keys};
use crate::claims::LedgerError;
use crate::config::Cluster;

/// Why this labd cannot be a host of the lab.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("etcd ({endpoints}): {why}")]
    Etcd { endpoints: String, why: String },
    #[error("another labd runs as host {host:?} (its etcd lease is live); each host needs its own cluster.host")]
    HostTaken { host: String },
    #[error("board names must be unique in the lab: {0}")]
    NamesTaken(String),
    #[error("the jails' address pools of the hosts of a lab must not overlap: {0}")]
    PoolsOverlap(String),
}

/// A board's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BoardRecord {
    host: String,
    class: String,
}

/// What this host publishes about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HostRecord {
    started_ms: i64,
    boards: usize,
    /// Where its peer channel listens.
    peer: String,
    /// Its jails' address pools (setting, prefix); none without jails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pools: Vec<(String, ipnet::IpNet)>,
}

/// This labd in the lab: its etcd client and its host lease.
pub struct Member {
    client: Client,
    /// The host key's lease (a new one after the old one ran out).
    lease: Arc<AtomicI64>,
    keys: Keys,
    host: String,
    timeout: Duration,
    keeper: tokio::task::JoinHandle<()>,
    /// Whether etcd answered the last keep-alive.
    healthy: Arc<AtomicBool>,
}

fn etcd_failure(cfg: &Cluster, e: LedgerError) -> JoinError {
    JoinError::Etcd { endpoints: cfg.etcd.join(","), why: e.to_string() }
}

impl Member {
    /// Connects to etcd, takes this host's key (waiting up to two of its
    /// TTLs for the lease of a killed predecessor to run out), checks its
    /// jails' address `pools` (setting, prefix) against the other hosts'
    /// and registers `boards` (name, class).
    pub async fn join(
        cfg: &Cluster,
        boards: &[(String, String)],
        pools: &[(String, ipnet::IpNet)],
    ) -> Result<Member, JoinError> {
        let opts = ConnectOptions::new().with_connect_timeout(cfg.timeout).with_timeout(cfg.timeout);
        let client = retrying(cfg.timeout, || Client::connect(cfg.etcd.clone(), Some(opts.clone())))
            .await
            .map_err(|e| etcd_failure(cfg, e))?;
        let keys = Keys::new(&cfg.prefix);
        let me = HostRecord {
            started_ms: crate::util::now_unix_ms(),
            boards: boards.len(),
            peer: cfg.peer.listen.to_string(),
            pools: pools.to_vec(),
        };
        let value = serde_json::to_string(&me).unwrap_or_default();
        let host_key = keys.host(&cfg.host);
        let deadline = tokio::time::Instant::now() + cfg.host_ttl * 2 + Duration::from_secs(1);
        let lease = loop {
            match take_host_key(&client, cfg, &host_key, &value).await.map_err(|e| etcd_failure(cfg, e))? {
                Some(lease) => break lease,
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(JoinError::HostTaken { host: cfg.host.clone() })
                }
                None => {
                    info!(host = %cfg.host, "waiting for the etcd lease of this host's previous labd to run out");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let lease = Arc::new(AtomicI64::new(lease));
        let healthy = Arc::new(AtomicBool::new(true));
        let member = Member {
            healthy: healthy.clone(),
            client: client.clone(),
            lease: lease.clone(),
            keys,
            host: cfg.host.clone(),
            timeout: cfg.timeout,
            keeper: tokio::spawn(keep_alive(client, lease, healthy, cfg.clone(), host_key, value)),
        };
        let checked = match member.pools_of_others().await {
            Ok(others) => match overlaps(pools, &others) {
                None => Ok(()),
                Some(clash) => Err(JoinError::PoolsOverlap(clash)),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            member.leave().await;
            return Err(e);
        }
        if let Err(e) = member.register(boards).await {
            member.leave().await;
            return Err(e);
        }
        info!(host = %cfg.host, boards = boards.len(), "joined the lab through etcd");
        Ok(member)
    }

    /// The etcd client, for the claims ledger.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A way to find claims in etcd by handle.
    pub fn lookup(&self) -> view::Lookup {
        view::Lookup { client: self.client.clone(), keys: self.keys.clone(), timeout: self.timeout }
    }

    /// The lab's queues, for this front door's waiters.
    pub fn queue(&self) -> queue::Queue {
        queue::Queue {
            client: self.client.clone(),
            keys: self.keys.clone(),
            timeout: self.timeout,
            lease: self.lease.clone(),
            me: self.host.clone(),
        }
    }

    /// Starts following the lab (the other hosts' boards) and publishing
    /// this host's boards: the view, for the front end.
    pub fn start_view(
        &self,
        prefix: &str,
        snapshots: tokio::sync::watch::Receiver<Arc<crate::actors::registry::Snapshot>>,
    ) -> tokio::sync::watch::Receiver<Arc<view::LabView>> {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(view::LabView::default()));
        tokio::spawn(view::follow(
            self.client.clone(),
            prefix.to_string(),
            self.host.clone(),
            self.healthy.clone(),
            tx,
        ));
        tokio::spawn(publish::publish(
            self.client.clone(),
            prefix.to_string(),
            self.lease.clone(),
            self.timeout,
            snapshots,
        ));
        rx
    }

    /// The jails' address pools the other live hosts published, by host.
    async fn pools_of_others(&self) -> Result<Vec<(String, Vec<(String, ipnet::IpNet)>)>, JoinError> {
        let fail = |e: LedgerError| JoinError::Etcd { endpoints: String::new(), why: e.to_string() };
        let prefix = self.keys.host("");
        let r = get(&self.client, self.timeout, &prefix, Some(GetOptions::new().with_prefix())).await.map_err(fail)?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            let Some(host) = kv.key_str().ok().and_then(|k| k.strip_prefix(&prefix)) else { continue };
            if host == self.host {
                continue;
            }
            match serde_json::from_slice::<HostRecord>(kv.value()) {
                Ok(rec) => out.push((host.to_string(), rec.pools)),
                Err(e) => warn!(host = %host, "etcd holds a host record labd cannot read ({e})"),
            }
        }
        Ok(out)
    }

    /// Registers this host's boards; refuses names another host has, and
    /// removes registrations of boards this host no longer has.
    async fn register(&self, boards: &[(String, String)]) -> Result<(), JoinError> {
        let fail = |e: LedgerError| JoinError::Etcd { endpoints: String::new(), why: e.to_string() };
        let prefix = self.keys.boards();
        let r = get(&self.client, self.timeout, &prefix, Some(GetOptions::new().with_prefix())).await.map_err(fail)?;
        let mut known: BTreeMap<String, (BoardRecord, i64)> = BTreeMap::new();
        for kv in r.kvs() {
            let Some(name) = kv.key_str().ok().and_then(|k| k.strip_prefix(&prefix)) else { continue };
            match serde_json::from_slice::<BoardRecord>(kv.value()) {
                Ok(rec) => {
                    known.insert(name.to_string(), (rec, kv.mod_revision()));
                }
                Err(e) => warn!(board = %name, "etcd holds a board registration labd cannot read ({e})"),
            }
        }
        let taken: Vec<String> = boards
            .iter()
            .filter_map(|(name, _)| {
                let (rec, _) = known.get(name)?;
                (rec.host != self.host).then(|| format!("{name} is on host {}", rec.host))
            })
            .collect();
        if !taken.is_empty() {
            return Err(JoinError::NamesTaken(taken.join(", ")));
        }
        for (name, class) in boards {
            let rec = BoardRecord { host: self.host.clone(), class: class.clone() };
            let key = self.keys.board(name);
            let value = serde_json::to_string(&rec).unwrap_or_default();
            // Only where nothing changed since the read: a host that
            // registered the name meanwhile wins, and this one stops.
            let cmp = match known.get(name) {
                Some((old, _)) if *old == rec => continue,
                Some((_, rev)) => Compare::mod_revision(key.clone(), CompareOp::Equal, *rev),
                None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            };
            let t = Txn::new()
                .when([cmp])
                .and_then([TxnOp::put(key.clone(), value.clone(), None)])
                .or_else([TxnOp::get(key, None)]);
            let r = txn(&self.client, self.timeout, t).await.map_err(fail)?;
            if !r.succeeded() && !holds(&r, &value) {
                return Err(JoinError::NamesTaken(format!("{name} was registered by another host just now")));
            }
        }
        for (name, (rec, rev)) in &known {
            if rec.host == self.host && !boards.iter().any(|(n, _)| n == name) {
                let key = self.keys.board(name);
                let t = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, *rev)])
                    .and_then([TxnOp::delete(key, None)]);
                txn(&self.client, self.timeout, t).await.map_err(fail)?;
                info!(board = %name, "no longer configured: its registration in the lab is removed");
            }
        }
        Ok(())
    }

    /// Leaves the lab at once (a clean stop): the host key goes with its
    /// lease, so the lab sees this host's boards offline now, not
    /// `host_ttl` later. Its boards' names and claims stay.
    pub async fn leave(&self) {
        self.keeper.abort();
        let lease = self.lease.load(Ordering::Relaxed);
        let revoke = retrying(self.timeout, || {
            let mut c = self.client.clone();
            async move { c.lease_revoke(lease).await }
        });
        match revoke.await {
            Ok(_) => info!(host = %self.host, "left the lab"),
            Err(e) => warn!(host = %self.host, "leaving the lab: {e} (its lease runs out by itself)"),
        }
    }
}

/// Keeps the host's lease alive, a third of its TTL apart. When etcd
/// did not hear from this host in time (cut off longer than the TTL), the
/// lease is gone: a new one is taken and the host key put again.
async fn keep_alive(
    client: Client,
    shared: Arc<AtomicI64>,
    healthy: Arc<AtomicBool>,
    cfg: Cluster,
    key: String,
    value: String,
) {
    let every = cfg.host_ttl / 3;
    let mut was_ok = true;
    loop {
        tokio::time::sleep(every).await;
        let lease = shared.load(Ordering::Relaxed);
        let ok = match renew(&client, &cfg, lease).await {
            Ok(true) => true,
            Ok(false) => match take_host_key(&client, &cfg, &key, &value).await {
                Ok(Some(new)) => {
                    warn!(host = %cfg.host, "this host's etcd lease had run out; it is back in the lab");
                    shared.store(new, Ordering::Relaxed);
                    true
                }
                Ok(None) => {
                    error!(host = %cfg.host, "another labd took this host's name while its lease had run out");
                    false
                }
                Err(e) => {
                    error!(host = %cfg.host, "taking a new etcd lease: {e}");
                    false
                }
            },
            Err(e) => {
                if was_ok {
                    error!(host = %cfg.host, "cannot keep this host's etcd lease alive: {e}");
                }
                false
            }
        };
        if ok && !was_ok {
            info!(host = %cfg.host, "etcd answers again");
        }
        healthy.store(ok, Ordering::Relaxed);
        was_ok = ok;
    }
}

/// One keep-alive: `Ok(false)` when etcd says the lease is gone.
async fn renew(client: &Client, cfg: &Cluster, lease: i64) -> Result<bool, LedgerError> {
    let ttl = retrying(cfg.timeout, || {
        let mut c = client.clone();
        async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            Ok(stream.message().await?.map(|r| r.ttl()).unwrap_or(0))
        }
    })
    .await?;
    Ok(ttl > 0)
}

/// Whether a failed transaction's `get` found `value` (this labd's own
/// write, applied by an attempt whose answer was lost).
fn holds(r: &etcd_client::TxnResponse, value: &str) -> bool {
    r.op_responses().into_iter().any(|op| match op {
        etcd_client::TxnOpResponse::Get(g) => g.kvs().first().is_some_and(|kv| kv.value() == value.as_bytes()),
        _ => false,
    })
}

/// Takes `key` for this host under a new lease, if no other labd holds
/// it: `None` when one does.
async fn take_host_key(client: &Client, cfg: &Cluster, key: &str, value: &str) -> Result<Option<i64>, LedgerError> {
    if get(client, cfg.timeout, key, None).await?.count() > 0 {
        return Ok(None);
    }
    let ttl = cfg.host_ttl.as_secs().max(1) as i64;
    let lease = retrying(cfg.timeout, || {
        let mut c = client.clone();
        async move { c.lease_grant(ttl, None).await }
    })
    .await?
    .id();
    let t = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))])
        .or_else([TxnOp::get(key, None)]);
    let r = txn(client, cfg.timeout, t).await?;
    if !r.succeeded() && !holds(&r, value) {
        let _ = retrying(cfg.timeout, || {
            let mut c = client.clone();
            async move { c.lease_revoke(lease).await }
        })
        .await;
        return Ok(None);
    }
    Ok(Some(lease))
}

/// The first of `mine` that overlaps a pool of another host, said as the
/// error should say it.
fn overlaps(mine: &[(String, ipnet::IpNet)], others: &[(String, Vec<(String, ipnet::IpNet)>)]) -> Option<String> {
    let meet = |a: &ipnet::IpNet, b: &ipnet::IpNet| a.contains(&b.network()) || b.contains(&a.network());
    for (what, net) in mine {
        for (host, theirs) in others {
            if let Some((their_what, their_net)) = theirs.iter().find(|(_, n)| meet(net, n)) {
                return Some(format!(
                    "this host's {what} {net} overlaps host {host}'s {their_what} {their_net}; give each host its own"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    fn pools(list: &[(&str, &str)]) -> Vec<(String, ipnet::IpNet)> {
        list.iter().map(|(w, n)| (w.to_string(), n.parse().unwrap())).collect()
    }

    #[test]
    fn pools_that_meet_are_named_and_others_pass() {
        let lab2 = vec![(
            "lab2".to_string(),
            pools(&[("jail.pool", "10.240.0.0/16"), ("jail.ipv6_pool", "2001:db8:42::/48")]),
        )];
        assert_eq!(
            overlaps(&pools(&[("jail.pool", "10.241.0.0/16"), ("jail.ipv6_pool", "2001:db8:43::/48")]), &lab2),
            None
        );
        assert_eq!(
            overlaps(&pools(&[("jail.pool", "10.240.8.0/24")]), &lab2).as_deref(),
            Some("this host's jail.pool 10.240.8.0/24 overlaps host lab2's jail.pool 10.240.0.0/16; give each host its own")
        );
        let e = overlaps(&pools(&[("jail.ipv6_pool", "2001:db8::/40")]), &lab2).unwrap();
        assert!(e.contains("jail.ipv6_pool 2001:db8::/40 overlaps host lab2's jail.ipv6_pool 2001:db8:42::/48"), "{e}");
        // Different families never meet; no jails, nothing to check.
        assert_eq!(
            overlaps(
                &pools(&[("jail.pool", "10.240.0.0/16")]),
                &[("x".into(), pools(&[("jail.ipv6_pool", "2001:db8::/40")]))]
            ),
            None
        );
        assert_eq!(overlaps(&[], &lab2), None);
    }
}
