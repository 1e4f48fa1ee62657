//! `claim --wait` in a lab of several hosts: one queue per class for the
//! whole lab. The waiter takes a ticket in etcd and, whenever the lab
//! changes (a board here or elsewhere), tries a claim anywhere once its
//! ticket is the oldest of its class; the ticket goes when the claim is
//! granted, the wait times out, or the claim fails for another reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::routing::claim_now;
use super::Front;
use crate::actors::Identity;
use crate::cluster::queue::Queue;
use crate::protocol::{self, ApiError, Call, Code};
use crate::util::format_duration;

static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// Waits in the lab's queue of `call`'s class, then claims.
pub async fn wait(front: &Front, queue: &Queue, who: Identity, id: Value, call: Call, raw: Value) -> String {
    let Call::Claim { class, power, lease, wait: Some(secs) } = call else {
        return protocol::err_reply(&id, &ApiError::new(Code::Internal, "not a waiting claim"));
    };
    let limit = Duration::from_secs(secs);
    let deadline_ms = crate::util::now_unix_ms() + i64::try_from(limit.as_millis()).unwrap_or(i64::MAX / 2);
    let ticket = queue.ticket(&class, NEXT_TICKET.fetch_add(1, Ordering::Relaxed));
    match queue.join(&ticket, &who.user, deadline_ms).await {
        Ok(()) => {}
        Err(e) => {
            // A write whose answer was lost may still be applied.
            leave(queue, ticket);
            let e =
                ApiError::new(Code::Unavailable, format!("the lab's queue cannot be reached, nothing changed: {e}"));
            return protocol::err_reply(&id, &e);
        }
    }
    let deadline = Instant::now() + limit;
    let now_call = Call::Claim { class: class.clone(), power, lease, wait: None };
    let mut now_raw = raw;
    if let Some(m) = now_raw.as_object_mut() {
        m.remove("wait");
    }
    let mut lab = front.lab.clone();
    let mut snapshots = front.snapshots.clone();
    loop {
        if queue.head(&class).await.ok().flatten().as_deref() == Some(ticket.as_str()) {
            let line = claim_now(front, who.clone(), id.clone(), now_call.clone(), now_raw.clone()).await;
            let v = serde_json::from_str::<Value>(&line).unwrap_or(Value::Null);
            if v["ok"] == true || v["error"]["code"] != "no_device_available" {
                if let Some(h) = v["result"]["handle"].as_str() {
                    tracing::info!(
                        board = v["result"]["board"].as_str().unwrap_or("?"),
                        handle_id = %crate::util::handle_id(h),
                        "a waiter of the lab's queue is served"
                    );
                }
                leave(queue, ticket);
                return line;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            leave(queue, ticket);
            let e = ApiError::new(
                Code::Timeout,
                format!("no {class} board became available within {}", format_duration(limit)),
            );
            return protocol::err_reply(&id, &e);
        }
        // A board freed here or on another host, or a ticket ahead gone.
        tokio::select! {
            _ = async { match lab.as_mut() { Some(l) => { let _ = l.changed().await; } None => std::future::pending().await } } => {}
            _ = snapshots.changed() => {}
            _ = tokio::time::sleep(left.min(Duration::from_millis(500))) => {}
        }
    }
}

/// Gives the ticket back without making the reply wait for it.
fn leave(queue: &Queue, ticket: String) {
    let queue = queue.clone();
    tokio::task::spawn_local(async move { queue.leave(&ticket).await });
}
