//! `history`: the event log as a caller may see it, and its pruning
//! after `[events] keep`; and, for the per-user limits in a lab of
//! several hosts, the other hosts' claims ([`FollowLab`]).
//!
//! Who sees what: everyone sees every board's events (what happened, when,
//! who did it, whose claim it was about, an operator's reason), as
//! everyone sees who holds which board in `status`. What a claim's jail
//! was given (its address, why it failed) is its claimant's and the
//! operators' only. Nothing secret is ever written to the log: no handle,
//! key, password or console content.

use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, error, info};

use super::claims::Answer;
use super::Registry;
use crate::actors::Identity;
use crate::db::{DbWriter, EventQuery};
use crate::protocol::{ApiError, Code, EventView, HistoryQuery, Reply, HISTORY_LIMIT};
use crate::util::{now_unix_ms, rfc3339_ms};

/// How often old events are pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Events deleted per statement: a few milliseconds, so a claim queued
/// behind a prune of millions waits for one batch at most.
const PRUNE_BATCH: u32 = 2000;

/// Kinds whose detail is the claimant's own: a jail's address, why it
/// failed.
const PRIVATE_DETAIL: &[&str] = &["jail_up", "jail_failed"];

/// An event as `caller` sees it (`admin`: an operator, who sees all).
pub fn visible(e: crate::db::Event, caller: &str, admin: bool) -> EventView {
    let theirs = e.user.as_deref() == Some(caller) || e.subject.as_deref() == Some(caller);
    let detail = if admin || theirs || !PRIVATE_DETAIL.contains(&e.kind.as_str()) { e.detail } else { None };
    let subject = e.subject.filter(|s| e.user.as_deref() != Some(s.as_str()));
    EventView { at: rfc3339_ms(e.at), kind: e.kind, board: e.board, user: e.user, subject, detail }
}

/// The other hosts' boards (a lab of several), for the per-user limits.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FollowLab(pub tokio::sync::watch::Receiver<std::sync::Arc<crate::cluster::view::LabView>>);

impl Handler<FollowLab> for Registry {
    type Result = ();

    fn handle(&mut self, msg: FollowLab, _ctx: &mut Context<Self>) {
        self.lab = Some(msg.0);
    }
}

impl Registry {
    /// Tells the book how many claims `user` holds on the other hosts of
    /// the lab, as this host last saw them.
    pub(super) fn count_elsewhere(&mut self, user: &str) {
        let Some(lab) = &self.lab else { return };
        let n = lab.borrow().claimants.values().filter(|(u, _)| u == user).count();
        self.book.held_elsewhere([(user.to_string(), n)].into());
    }

    /// The events `q` asks for, read on the database's thread.
    ///
    /// One query at a time: the database's one thread also writes every
    /// claim, and a query may scan the whole log (a filter no event
    /// matches). Before, one user's 60 connections asking at once put 60
    /// scans ahead of every other user's claim; now a claim waits for one
    /// at most, and the other queries wait their turn here, off that
    /// thread.
    pub(super) fn history(&mut self, who: &Identity, q: HistoryQuery) -> ResponseActFuture<Self, Answer> {
        let admin = who.admin && who.jail_handle.is_none();
        let caller = who.user.clone();
        let since = q.since.map(|s| now_unix_ms().saturating_sub(i64::try_from(s.saturating_mul(1000)).unwrap_or(0)));
        let eq =
            EventQuery { board: q.board, user: q.user, since, kind: q.kind, limit: q.limit.unwrap_or(HISTORY_LIMIT) };
        let (db, turn) = (self.db.clone(), self.history_turn.clone());
        Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            let Ok(_turn) = turn.acquire_owned().await else {
                return Err(ApiError::new(Code::Internal, "the event log is closing"));
            };
            match db.run(move |db| db.events(&eq)).await {
                Ok(Ok(events)) => Ok(Reply::History(events.into_iter().map(|e| visible(e, &caller, admin)).collect())),
                Ok(Err(e)) | Err(e) => {
                    error!("reading the event log for history: {e}");
                    Err(ApiError::new(Code::Internal, format!("the event log cannot be read: {e}")))
                }
            }
        }))
    }

    /// Prunes now and every [`PRUNE_EVERY`].
    pub(super) fn start_pruning(&self, ctx: &mut Context<Self>) {
        let keep = self.cfg.events.keep;
        prune(self.db.clone(), keep);
        ctx.run_interval(PRUNE_EVERY, move |act, _| prune(act.db.clone(), keep));
    }
}

/// Deletes the events older than `keep`, one batch per job on the
/// database's thread: what was queued meanwhile runs between batches, and
/// a labd killed halfway has lost nothing (the next prune goes on).
fn prune(db: DbWriter, keep: Duration) {
    let before = now_unix_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
    batch(db, before, 0);
}

fn batch(db: DbWriter, before: i64, so_far: usize) {
    let next = db.clone();
    db.fire(move |d| match d.prune_events(before, PRUNE_BATCH) {
        Ok(n) if n == PRUNE_BATCH as usize => {
            debug!(events = so_far + n, "pruning the event log");
            batch(next, before, so_far + n);
        }
        Ok(n) if so_far + n > 0 => {
            info!(events = so_far + n, before = %rfc3339_ms(before), "pruned old events ([events] keep)")
        }
        Ok(_) => {}
        Err(e) => error!("pruning the event log: {e}"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Event;

    fn ev(kind: &str, user: &str, subject: Option<&str>, detail: &str) -> Event {
        Event {
            id: 1,
            at: 0,
            kind: kind.into(),
            board: Some("b1".into()),
            user: Some(user.into()),
            subject: subject.map(String::from),
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn jail_details_are_the_claimants_and_subjects_show_when_someone_else() {
        let up = ev("jail_up", "alice", None, "10.240.0.6");
        assert_eq!(visible(up.clone(), "bob", false).detail, None);
        assert_eq!(visible(up.clone(), "alice", false).detail.as_deref(), Some("10.240.0.6"));
        assert_eq!(visible(up, "root", true).detail.as_deref(), Some("10.240.0.6"));
        let fr = ev("force_release", "root", Some("alice"), "PSU swap");
        let v = visible(fr, "bob", false);
        assert_eq!((v.subject.as_deref(), v.detail.as_deref()), (Some("alice"), Some("PSU swap")));
        let own = visible(ev("release", "alice", Some("alice"), ""), "bob", false);
        assert_eq!(own.subject, None, "no subject when it is the user");
    }
}
