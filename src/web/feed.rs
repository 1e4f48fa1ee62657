//! The page's feed: one task follows the registry's published snapshot
//! and turns each change into a [`Page`] (the rows that changed are made
//! anew, the others shared), and every page's event stream sends what
//! changed since the page it sent last.
//!
//! The latest events are read from the event log after each change. A
//! change is published, as a rule, after the writes that caused it were
//! queued on the database's thread, which runs them in order, so the read
//! sees them; an event written later (a lab on etcd writes a claim's once
//! etcd agreed) shows with the next change, which the claim's end of
//! preparation makes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use tokio::sync::watch;
use tracing::warn;

use super::page::{EventRow, Page, Row};
use crate::actors::registry::{GetEvents, Registry, Snapshot};

/// Events the page lists.
pub const EVENTS: u32 = 25;

/// Pages are made at most this often; changes in between are taken
/// together (the snapshot is a watch: only the latest counts).
const MIN_GAP: Duration = Duration::from_millis(100);

/// A comment sent on an idle stream, so that a page that went away is
/// noticed (the write fails) and proxies keep the stream open.
const KEEPALIVE: Duration = Duration::from_secs(25);

/// The page as of the snapshot `snap`, sharing what did not change with
/// `old`.
fn build(snap: &Snapshot, old: &Page, events: Arc<Vec<EventRow>>) -> Page {
    let rows = snap
        .rows()
        .iter()
        .enumerate()
        .map(|(i, r)| match old.rows.get(i) {
            Some((was, row)) if Arc::ptr_eq(was, r) => (was.clone(), row.clone()),
            _ => (r.clone(), Arc::new(Row::from_status(r))),
        })
        .collect();
    let waiting = snap.classes(false).into_iter().map(|c| (super::page::clean(&c.class), c.waiting)).collect();
    Page { rows, waiting, events }
}

/// Starts the feed on the current (actix) runtime; it ends when `stop`
/// turns true.
pub fn spawn(
    registry: Addr<Registry>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<Arc<Page>> {
    let first = build(&snapshots.borrow_and_update(), &Page::default(), Arc::default());
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::task::spawn_local(async move {
        loop {
            let last = tokio::time::Instant::now();
            // The rows at once, then the events read after them.
            let snap = snapshots.borrow_and_update().clone();
            let old = tx.borrow().clone();
            let page = build(&snap, &old, old.events.clone());
            if page.since(&old).is_some() {
                tx.send_replace(Arc::new(page.clone()));
            }
            let events = match tokio::time::timeout(Duration::from_secs(10), registry.send(GetEvents(EVENTS))).await {
                Ok(Ok(ev)) => ev.iter().map(EventRow::from_view).collect::<Vec<_>>(),
                Ok(Err(e)) => {
                    warn!("status page: the registry did not answer: {e}");
                    return;
                }
                Err(_) => page.events.to_vec(),
            };
            if events != *page.events {
                let now = tx.borrow().clone();
                tx.send_replace(Arc::new(Page { events: Arc::new(events), ..(*now).clone() }));
            }
            tokio::time::sleep_until(last + MIN_GAP).await;
            tokio::select! {
                r = snapshots.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    });
    rx
}

/// An open event stream's place in the count, given back when the
/// stream is dropped (its page went away, or labd stops).
pub struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    /// A place, unless `max` streams are open.
    pub fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<StreamSlot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(StreamSlot(open.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One page's event stream: everything first, then what changed, until
/// labd stops or the page goes away (which gives `slot` back).
pub fn stream(
    mut pages: watch::Receiver<Arc<Page>>,
    stop: watch::Receiver<bool>,
    slot: StreamSlot,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    struct State {
        pages: watch::Receiver<Arc<Page>>,
        stop: watch::Receiver<bool>,
        hello: Option<Bytes>,
        sent: Arc<Page>,
        _slot: StreamSlot,
    }
    let sent = pages.borrow_and_update().clone();
    let hello = Some(sse("lab", &sent.full()));
    let state = State { pages, stop, hello, sent, _slot: slot };
    futures::stream::unfold(state, |mut st| async move {
        if let Some(b) = st.hello.take() {
            return Some((Ok(b), st));
        }
        loop {
            if *st.stop.borrow() {
                return None;
            }
            tokio::select! {
                r = st.pages.changed() => {
                    if r.is_err() {
                        return None;
                    }
                    let now = st.pages.borrow_and_update().clone();
                    let msg = now.since(&st.sent).map(|m| sse("change", &m));
                    st.sent = now;
                    if let Some(b) = msg {
                        return Some((Ok(b), st));
                    }
                }
                _ = tokio::time::sleep(KEEPALIVE) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), st)),
                _ = st.stop.changed() => return None,
            }
        }
    })
}

/// One server-sent event (`event: NAME`, one `data:` line of JSON).
fn sse(name: &str, m: &super::page::Message<'_>) -> Bytes {
    let json = serde_json::to_string(m).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_slots_are_capped_and_given_back() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = StreamSlot::take(&open, 2).unwrap();
        let b = StreamSlot::take(&open, 2).unwrap();
        assert!(StreamSlot::take(&open, 2).is_none());
        drop(a);
        let c = StreamSlot::take(&open, 2).unwrap();
        drop((b, c));
        assert_eq!(open.load(Ordering::Acquire), 0);
    }
}
