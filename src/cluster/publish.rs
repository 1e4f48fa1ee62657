//! This host's boards as the other hosts see them: every `status` line
//! that changed, put under `P/status/BOARD` with this host's lease (so
//! they go when the host does), as soon as they change, at most every
//! 20 ms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::actors::registry::{Snapshot, StatusRow};
use crate::claims::etcd::{txn, Keys};

/// etcd's default limit of operations in one transaction is 128.
const PER_TXN: usize = 100;

/// Publishes `snapshots` until the registry is gone. `lease` is the host
/// key's (a new lease, after the old one ran out, is published to again
/// in full).
pub async fn publish(
    client: Client,
    prefix: String,
    lease: Arc<AtomicI64>,
    timeout: Duration,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
) {
    let keys = Keys::new(&prefix);
    let mut sent: HashMap<String, Arc<StatusRow>> = HashMap::new();
    let mut sent_under = 0;
    let mut failing = false;
    loop {
        let snap = snapshots.borrow_and_update().clone();
        let under = lease.load(Ordering::Relaxed);
        if under != sent_under {
            sent.clear();
            sent_under = under;
        }
        let changed: Vec<Arc<StatusRow>> =
            snap.rows().iter().filter(|r| sent.get(&r.board).is_none_or(|s| !Arc::ptr_eq(s, r))).cloned().collect();
        for chunk in changed.chunks(PER_TXN) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|r| {
                    TxnOp::put(keys.status(&r.board), r.json.as_bytes(), Some(PutOptions::new().with_lease(under)))
                })
                .collect();
            match txn(&client, timeout, Txn::new().and_then(ops)).await {
                Ok(_) => {
                    for r in chunk {
                        sent.insert(r.board.clone(), r.clone());
                    }
                    if failing {
                        info!("the boards' status reaches etcd again");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        warn!("publishing the boards' status to etcd: {e}");
                        failing = true;
                    }
                    break;
                }
            }
        }
        // At most every 20 ms: a burst of changes is one publication.
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A change, or a second (to retry, or to notice a new lease).
        tokio::select! {
            r = snapshots.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
