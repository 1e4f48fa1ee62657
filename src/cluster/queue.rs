//! One queue per class for the whole lab (`claim --wait` on any host).
//! A waiter holds a ticket, `P/queue/CLASS/HOST-ID`, under its front
//! door's lease (a door that is gone takes its tickets with it); tickets
//! are served in the order etcd created them. Only the waiter at the head
//! of its class's queue tries to claim, and a claim that does not wait is
//! refused while anyone waits for the class. A ticket carries its
//! waiter's deadline: one left behind (its removal failed while etcd did
//! not answer) is passed over once the deadline is gone, so it never
//! blocks the queue for longer than its wait.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};

use crate::claims::etcd::{get, txn, Keys};
use crate::claims::LedgerError;

/// How long after its waiter's deadline a ticket still counts (clocks of
/// the lab's hosts differ a little).
pub const STALE_AFTER_MS: i64 = 2000;

/// A ticket's waiter's deadline (Unix ms), from its value.
pub fn deadline_of(value: &[u8]) -> i64 {
    serde_json::from_slice::<serde_json::Value>(value).ok().and_then(|v| v["deadline_ms"].as_i64()).unwrap_or(0)
}

/// The lab's queues, as one front door uses them.
#[derive(Clone)]
pub struct Queue {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    pub(crate) timeout: Duration,
    pub(crate) lease: Arc<AtomicI64>,
    pub(crate) me: String,
}

impl Queue {
    fn prefix(&self, class: &str) -> String {
        format!("{}queue/{class}/", self.keys.root())
    }

    /// The key of this door's ticket number `id` for `class`.
    pub fn ticket(&self, class: &str, id: u64) -> String {
        format!("{}{}-{id}", self.prefix(class), self.me)
    }

    /// Takes the ticket `key` (see [`Queue::ticket`]) until `deadline_ms`
    /// (Unix ms). On an error the ticket may still be made later (a
    /// write etcd applies after its answer was lost): give it back.
    pub async fn join(&self, key: &str, user: &str, deadline_ms: i64) -> Result<(), LedgerError> {
        let key = key.to_string();
        let lease = self.lease.load(Ordering::Relaxed);
        let value = serde_json::json!({ "door": self.me, "deadline_ms": deadline_ms, "user": user }).to_string();
        let put = TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(lease)));
        txn(&self.client, self.timeout, Txn::new().and_then([put])).await.map(|_| ())
    }

    /// The live tickets for `class`, oldest first.
    async fn live(&self, class: &str) -> Result<Vec<String>, LedgerError> {
        let opts = GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend);
        let r = get(&self.client, self.timeout, &self.prefix(class), Some(opts)).await?;
        let now = crate::util::now_unix_ms();
        Ok(r.kvs()
            .iter()
            .filter(|kv| deadline_of(kv.value()) + STALE_AFTER_MS > now)
            .filter_map(|kv| kv.key_str().ok().map(str::to_string))
            .collect())
    }

    /// Where `user`'s tickets stand in the lab's queues: (class, place
    /// from 1, how many wait), live tickets only.
    pub async fn places(&self, user: &str) -> Result<Vec<(String, usize, usize)>, LedgerError> {
        let all = format!("{}queue/", self.keys.root());
        let opts = GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend);
        let r = get(&self.client, self.timeout, &all, Some(opts)).await?;
        let now = crate::util::now_unix_ms();
        // Class -> the users of its live tickets, oldest first.
        let mut by: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for kv in r.kvs().iter().filter(|kv| deadline_of(kv.value()) + STALE_AFTER_MS > now) {
            let Some(class) = kv.key_str().ok().and_then(|k| k.strip_prefix(&all)).and_then(|k| k.split('/').next())
            else {
                continue;
            };
            let who = serde_json::from_slice::<serde_json::Value>(kv.value())
                .ok()
                .and_then(|v| v["user"].as_str().map(str::to_string))
                .unwrap_or_default();
            by.entry(class.to_string()).or_default().push(who);
        }
        let mut out = Vec::new();
        for (class, users) in by {
            for (i, u) in users.iter().enumerate() {
                if u == user {
                    out.push((class.clone(), i + 1, users.len()));
                }
            }
        }
        Ok(out)
    }

    /// The oldest live ticket for `class`, if any.
    pub async fn head(&self, class: &str) -> Result<Option<String>, LedgerError> {
        Ok(self.live(class).await?.into_iter().next())
    }

    /// Removes this door's tickets whose waiter's deadline is long gone:
    /// a ticket whose write etcd applied after its answer was lost, or
    /// whose removal etcd never took. Every `every`, while the task lives.
    pub async fn sweep_own(self, every: Duration) {
        let mine = format!("{}queue/", self.keys.root());
        loop {
            tokio::time::sleep(every).await;
            let Ok(r) = get(&self.client, self.timeout, &mine, Some(GetOptions::new().with_prefix())).await else {
                continue;
            };
            let now = crate::util::now_unix_ms();
            for kv in r.kvs() {
                let Ok(key) = kv.key_str() else { continue };
                let door = key.rsplit('/').next().and_then(|t| t.rsplit_once('-')).map(|(d, _)| d);
                if door == Some(self.me.as_str()) && deadline_of(kv.value()) + STALE_AFTER_MS <= now {
                    let del = Txn::new()
                        .when([etcd_client::Compare::mod_revision(
                            key,
                            etcd_client::CompareOp::Equal,
                            kv.mod_revision(),
                        )])
                        .and_then([TxnOp::delete(key, None)]);
                    let _ = txn(&self.client, self.timeout, del).await;
                }
            }
        }
    }

    /// Gives a ticket back (served, timed out, or its client left); while
    /// etcd does not answer, tried again every second for a minute.
    pub async fn leave(&self, key: &str) {
        for _ in 0..60 {
            let del = Txn::new().and_then([TxnOp::delete(key, None)]);
            if txn(&self.client, self.timeout, del).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
