//! The ledger of a lab of several hosts: claims kept in etcd, where a
//! claim is a transaction that creates its board's key only if there is
//! none (no board is granted twice, whichever host asks), and the event
//! log stays in each host's own database.
//!
//! Keys, under the lab's prefix P:
//! - `P/claims/BOARD`: the claim (JSON: handle, user, times, host);
//! - `P/maintenance/BOARD`: the board is out of claims;
//! - `P/boards/BOARD`, `P/hosts/HOST` and `P/status/BOARD`: see
//!   `crate::cluster`.
//!
//! Every call waits at most `timeout` for etcd, then fails `Unavailable`
//! (quorum lost, or this host cut off): nothing is granted without etcd.
//! A write etcd did not answer may still be applied later (a proposal
//! committed when the quorum returns), and an expiry ends a claim here
//! whatever etcd says; so the ledger remembers what each board's key
//! must come back to (gone, after an expiry or a failed claim; this
//! claim, after a failed release), keeps retrying it, and makes it before
//! anything else is written about that board.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::ledger::{Ending, Ledger, LedgerError, LedgerFuture};
use super::Claim;
use crate::db::DbWriter;

/// The lab's keys in etcd.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    root: String,
}

impl Keys {
    /// `prefix`: `/boardlab`, no trailing '/'.
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_string(), root: format!("{prefix}/") }
    }
    /// Everything of the lab: `P/`.
    pub fn root(&self) -> &str {
        &self.root
    }
    pub fn status(&self, board: &str) -> String {
        format!("{}/status/{board}", self.prefix)
    }
    pub fn claims(&self) -> String {
        format!("{}/claims/", self.prefix)
    }
    pub fn claim(&self, board: &str) -> String {
        format!("{}/claims/{board}", self.prefix)
    }
    pub fn maintenances(&self) -> String {
        format!("{}/maintenance/", self.prefix)
    }
    pub fn maintenance(&self, board: &str) -> String {
        format!("{}/maintenance/{board}", self.prefix)
    }
    pub fn boards(&self) -> String {
        format!("{}/boards/", self.prefix)
    }
    pub fn board(&self, board: &str) -> String {
        format!("{}/boards/{board}", self.prefix)
    }
    pub fn host(&self, host: &str) -> String {
        format!("{}/hosts/{host}", self.prefix)
    }
}

/// A claim as etcd keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    handle: String,
    user: String,
    claimed_at: i64,
    expires_at: i64,
    /// The host whose board it is (the one that attaches it).
    host: String,
}

/// What an etcd call's failure means to a caller.
pub fn etcd_err(e: etcd_client::Error) -> LedgerError {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            LedgerError::Unavailable(format!("etcd cannot be reached: {e}"))
        }
        etcd_client::Error::GRpcStatus(s)
            if matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) =>
        {
            LedgerError::Unavailable(format!("etcd does not answer: {}", s.message()))
        }
        e => LedgerError::Storage(format!("etcd: {e}")),
    }
}

/// How long one attempt of a call may take before it is tried again: a
/// member that died or an election under way costs one attempt, not the
/// call.
const ATTEMPT: Duration = Duration::from_secs(1);

fn no_answer(budget: Duration) -> LedgerError {
    LedgerError::Unavailable(format!(
        "etcd did not answer within {} (has the etcd cluster lost its quorum?)",
        crate::util::format_duration(budget)
    ))
}

/// `op` until etcd answers it, each attempt at most [`ATTEMPT`], all
/// within `budget`; then `Unavailable`. An attempt that timed out may
/// still have been applied: every `op` is idempotent or recognises its
/// own earlier attempt.
pub async fn retrying<T, F, Fut>(budget: Duration, mut op: F) -> Result<T, LedgerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut last = no_answer(budget);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        match tokio::time::timeout(left.min(ATTEMPT), op()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => match etcd_err(e) {
                LedgerError::Unavailable(why) => last = LedgerError::Unavailable(why),
                other => return Err(other),
            },
            Err(_) => last = no_answer(budget),
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

/// A transaction, retried (see [`retrying`]).
pub async fn txn(client: &Client, budget: Duration, t: Txn) -> Result<etcd_client::TxnResponse, LedgerError> {
    retrying(budget, || {
        let (mut c, t) = (client.clone(), t.clone());
        async move { c.txn(t).await }
    })
    .await
}

/// A read, retried (see [`retrying`]).
pub async fn get(
    client: &Client,
    budget: Duration,
    key: &str,
    opts: Option<GetOptions>,
) -> Result<etcd_client::GetResponse, LedgerError> {
    retrying(budget, || {
        let (mut c, key, opts) = (client.clone(), key.to_string(), opts.clone());
        async move { c.get(key, opts).await }
    })
    .await
}

/// What a board's claim key must come back to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owed {
    /// Gone, if it holds this claim (ended here, or never granted).
    Remove(String),
    /// This claim (a release that failed: the claim stands).
    Restore(String),
}

/// Claims in etcd, events in the host's own database.
pub struct EtcdLedger {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    keys: Keys,
    host: String,
    timeout: Duration,
    events: DbWriter,
    /// Board → what its key must come back to, which etcd has not
    /// taken yet.
    owed: Mutex<HashMap<String, Owed>>,
}

impl EtcdLedger {
    /// A ledger on `client` for `host`'s boards. Starts the retries of
    /// owed removals (a task on the current runtime, ended with the
    /// ledger).
    pub fn new(client: Client, prefix: &str, host: &str, timeout: Duration, events: DbWriter) -> EtcdLedger {
        let inner = Arc::new(Inner {
            client,
            keys: Keys::new(prefix),
            host: host.to_string(),
            timeout,
            events,
            owed: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(inner) = weak.upgrade() else { return };
                let boards: Vec<String> = inner.owed().keys().cloned().collect();
                for b in boards {
                    if inner.pay(&b).await.is_ok() {
                        info!(board = %b, "etcd answers again: the board's claim record is made right");
                    }
                }
            }
        });
        EtcdLedger { inner }
    }
}

impl Inner {
    fn owed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owed>> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, c: &Claim) -> String {
        let r = Record {
            handle: c.handle.clone(),
            user: c.user.clone(),
            claimed_at: c.claimed_at,
            expires_at: c.expires_at,
            host: self.host.clone(),
        };
        serde_json::to_string(&r).unwrap_or_default()
    }

    /// Logs an event about `subject`'s claim (None: about no claim).
    fn event(&self, kind: &'static str, board: &str, user: &str, subject: Option<&str>, detail: Option<String>) {
        let (board, user, subject) = (board.to_string(), user.to_string(), subject.map(str::to_string));
        self.events.fire(move |d| {
            if let Err(e) = d.event_about(kind, Some(&board), Some(&user), subject.as_deref(), detail.as_deref()) {
                warn!("event log: {e}");
            }
        });
    }

    /// Removes `board`'s claim key if it still holds `value`'s handle.
    async fn remove(&self, board: &str, value: &str) -> Result<(), LedgerError> {
        let key = self.keys.claim(board);
        let handle = serde_json::from_str::<Record>(value).map(|r| r.handle).unwrap_or_default();
        let t = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, value)])
            .and_then([TxnOp::delete(key.clone(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let r = txn(&self.client, self.timeout, t).await?;
        if r.succeeded() {
            return Ok(());
        }
        // Not the value we wrote: the same claim renewed elsewhere, or
        // another claim, or none. Only our claim's key is removed.
        let Some(kv) = first_kv(&r) else { return Ok(()) };
        let ours = serde_json::from_slice::<Record>(&kv.0).is_ok_and(|r| r.handle == handle);
        if !ours {
            return Ok(());
        }
        let t = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, kv.1)])
            .and_then([TxnOp::delete(key, None)]);
        txn(&self.client, self.timeout, t).await.map(|_| ())
    }

    /// Puts `value` back as `board`'s claim unless the key holds another
    /// claim (then that one stands, and is said).
    async fn restore(&self, board: &str, value: &str) -> Result<(), LedgerError> {
        let key = self.keys.claim(board);
        let t = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), value, None)])
            .or_else([TxnOp::get(key, None)]);
        let r = txn(&self.client, self.timeout, t).await?;
        if !r.succeeded() && first_kv(&r).is_none_or(|(v, _)| v != value.as_bytes()) {
            warn!(board = %board, "etcd holds another claim on the board than the one a failed release left");
        }
        Ok(())
    }

    /// Makes what `board` owes, if anything.
    async fn pay(&self, board: &str) -> Result<(), LedgerError> {
        let Some(owed) = self.owed().get(board).cloned() else { return Ok(()) };
        match &owed {
            Owed::Remove(v) => self.remove(board, v).await?,
            Owed::Restore(v) => self.restore(board, v).await?,
        }
        let mut all = self.owed();
        if all.get(board) == Some(&owed) {
            all.remove(board);
        }
        Ok(())
    }
}

/// The value and mod revision of a failed transaction's `get`.
fn first_kv(r: &etcd_client::TxnResponse) -> Option<(Vec<u8>, i64)> {
    r.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision())),
        _ => None,
    })
}

impl Ledger for EtcdLedger {
    fn load(&self) -> LedgerFuture<(Vec<Claim>, HashSet<String>)> {
        let inner = self.inner.clone();
        async move {
            let prefix = inner.keys.claims();
            let r = get(&inner.client, inner.timeout, &prefix, Some(GetOptions::new().with_prefix())).await?;
            let mut claims = Vec::new();
            for kv in r.kvs() {
                let board = kv.key_str().unwrap_or_default().strip_prefix(&prefix).unwrap_or_default().to_string();
                match serde_json::from_slice::<Record>(kv.value()) {
                    Ok(rec) if rec.host == inner.host => claims.push(Claim {
                        handle: rec.handle,
                        board,
                        user: rec.user,
                        claimed_at: rec.claimed_at,
                        expires_at: rec.expires_at,
                    }),
                    Ok(_) => {}
                    Err(e) => warn!(board = %board, "etcd holds a claim labd cannot read ({e}); left as it is"),
                }
            }
            let prefix = inner.keys.maintenances();
            let r = get(&inner.client, inner.timeout, &prefix, Some(GetOptions::new().with_prefix())).await?;
            let maintenance =
                r.kvs().iter().filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix).map(str::to_string)).collect();
            Ok((claims, maintenance))
        }
        .boxed()
    }

    fn claim(&self, claim: &Claim) -> LedgerFuture<()> {
        let (inner, claim) = (self.inner.clone(), claim.clone());
        async move {
            inner.pay(&claim.board).await?;
            let key = inner.keys.claim(&claim.board);
            let value = inner.record(&claim);
            let t = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), value.clone(), None)])
                .or_else([TxnOp::get(key, None)]);
            let r = match txn(&inner.client, inner.timeout, t).await {
                Ok(r) => r,
                Err(e) => {
                    // Refused here; if etcd applies it later, it is removed.
                    inner.owed().insert(claim.board.clone(), Owed::Remove(value));
                    return Err(e);
                }
            };
            // Not created: another claim's, unless it is this one's own
            // (an attempt that timed out after etcd applied it).
            if !r.succeeded() && first_kv(&r).is_none_or(|(v, _)| v != value.as_bytes()) {
                return Err(LedgerError::Taken(claim.board));
            }
            inner.event("claim", &claim.board, &claim.user, Some(&claim.user), None);
            Ok(())
        }
        .boxed()
    }

    fn end(&self, claim: &Claim, how: Ending, by: &str, detail: Option<String>) -> LedgerFuture<()> {
        let (inner, claim, by) = (self.inner.clone(), claim.clone(), by.to_string());
        async move {
            let value = inner.record(&claim);
            let asked = matches!(how, Ending::Release | Ending::ForceRelease);
            let done = match inner.pay(&claim.board).await {
                Ok(()) => inner.remove(&claim.board, &value).await,
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => inner.event(how.as_str(), &claim.board, &by, Some(&claim.user), detail),
                Err(LedgerError::Unavailable(_)) if asked => {
                    // A release fails and the claim stands, also if etcd
                    // applies the removal later.
                    inner.owed().insert(claim.board.clone(), Owed::Restore(value));
                }
                Err(LedgerError::Unavailable(_)) => {
                    // An expiry (or an undone claim) ended here whatever
                    // etcd says; etcd hears of it when it answers.
                    inner.owed().insert(claim.board.clone(), Owed::Remove(value));
                    inner.event(how.as_str(), &claim.board, &by, Some(&claim.user), detail);
                }
                Err(_) => {}
            }
            done
        }
        .boxed()
    }

    fn renew(&self, claim: &Claim, by: &str) -> LedgerFuture<()> {
        let (inner, claim, by) = (self.inner.clone(), claim.clone(), by.to_string());
        async move {
            inner.pay(&claim.board).await?;
            let key = inner.keys.claim(&claim.board);
            let value = inner.record(&claim);
            // Read, then write where nothing changed since; a write that
            // lost the race (or whose answer was lost) is read again.
            let mut tries = 0;
            loop {
                let r = get(&inner.client, inner.timeout, &key, None).await?;
                let Some(kv) = r.kvs().first() else {
                    return Err(LedgerError::Storage(format!("etcd no longer holds the claim on {}", claim.board)));
                };
                if kv.value() == value.as_bytes() {
                    break;
                }
                if serde_json::from_slice::<Record>(kv.value()).map(|r| r.handle).ok().as_deref() != Some(&claim.handle)
                {
                    return Err(LedgerError::Storage(format!("etcd holds another claim on {}", claim.board)));
                }
                tries += 1;
                if tries > 3 {
                    return Err(LedgerError::Storage(format!("the claim on {} keeps changing in etcd", claim.board)));
                }
                let t = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision())])
                    .and_then([TxnOp::put(key.clone(), value.clone(), None)]);
                if txn(&inner.client, inner.timeout, t).await?.succeeded() {
                    break;
                }
            }
            inner.event(
                "renew",
                &claim.board,
                &by,
                Some(&claim.user),
                Some(format!("expires {}", crate::util::rfc3339_ms(claim.expires_at))),
            );
            Ok(())
        }
        .boxed()
    }

    fn maintenance(&self, board: &str, on: bool, by: &str, reason: Option<String>) -> LedgerFuture<()> {
        let (inner, board, by) = (self.inner.clone(), board.to_string(), by.to_string());
        async move {
            let key = inner.keys.maintenance(&board);
            let op = if on { TxnOp::put(key, by.clone(), None) } else { TxnOp::delete(key, None) };
            txn(&inner.client, inner.timeout, Txn::new().and_then([op])).await?;
            inner.event(if on { "maintenance_on" } else { "maintenance_off" }, &board, &by, None, reason);
            Ok(())
        }
        .boxed()
    }
}
