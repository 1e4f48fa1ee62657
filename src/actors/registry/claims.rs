//! Requests: the book decides, the ledger keeps the decision, the board's
//! actor does the work, and the caller gets a typed [`Reply`].

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{ledger_err, Registry, Waiting};
use crate::actors::board::{Attach, Detach, PowerAction};
use crate::actors::Identity;
use crate::claims::ledger::{Ending, LedgerFuture};
use crate::claims::{Asker, BookError, Claim, Outcome};
use crate::protocol::{ApiError, Call, Code, PowerState, Released, Reply, WhoamiView};
use crate::util::{format_duration, new_handle, now_unix_ms};

/// Longest `--wait` honoured (a year): beyond it the number is a mistake.
const MAX_WAIT: Duration = Duration::from_secs(365 * 86400);

pub(super) type Answer = Result<Reply, ApiError>;
pub(super) type Fut = ResponseActFuture<Registry, Answer>;

pub(super) fn ready(r: Answer) -> Fut {
    Box::pin(actix::fut::ready(r))
}

pub(super) fn asker(who: &Identity) -> Asker<'_> {
    Asker { user: &who.user, admin: who.admin, jail_handle: who.jail_handle.as_deref() }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, format!("board actor unavailable: {e}"))
}

pub(super) fn vanished() -> ApiError {
    ApiError::new(Code::Internal, "board vanished")
}

/// A fresh claim handle (empty if the kernel has no randomness to give,
/// which [`Registry::grant`] refuses).
fn fresh_handle() -> String {
    new_handle().unwrap_or_else(|e| {
        error!("cannot make a claim handle: {e}");
        String::new()
    })
}

/// A request from a client, with the caller's identity.
#[derive(Message)]
#[rtype(result = "Result<Reply, ApiError>")]
pub struct Exec {
    pub who: Identity,
    pub call: Call,
}

impl Handler<Exec> for Registry {
    type Result = ResponseActFuture<Self, Answer>;

    /// Routes one request; hardware work runs as a future so the registry
    /// keeps answering meanwhile.
    fn handle(&mut self, msg: Exec, ctx: &mut Context<Self>) -> Self::Result {
        let who = msg.who;
        if who.jail_handle.is_some() && !msg.call.allowed_in_jail() {
            return ready(Err(ApiError::new(
                Code::PermissionDenied,
                format!(
                    "{} is not available inside a jail: a jail's socket acts only on the jail's own claim",
                    msg.call.name()
                ),
            )));
        }
        let name = msg.call.name();
        match msg.call {
            Call::Claim { class, power, lease, wait } => self.claim(&who, &class, power, lease, wait, ctx),
            Call::Renew { handle, lease } => self.renew(&who, handle.as_deref(), lease, ctx),
            Call::Reinit { handle } => self.reinit(&who, handle.as_deref(), ctx),
            Call::Release { handle } => match self.book.resolve(&asker(&who), handle.as_deref()) {
                Ok(c) => {
                    let h = c.handle.clone();
                    self.end_claim(&h, Ending::Release, &who.user, None, ctx)
                }
                Err(e) => {
                    if let Some(h) = handle.as_deref() {
                        info!(handle_id = %crate::util::handle_id(h), "release refused here: {e}");
                    }
                    ready(Err(e.into()))
                }
            },
            Call::PowerOn { handle } => self.power(&who, handle.as_deref(), PowerAction::On, ctx),
            Call::PowerOff { handle } => self.power(&who, handle.as_deref(), PowerAction::Off, ctx),
            Call::PowerCycle { handle } => self.power(&who, handle.as_deref(), PowerAction::Cycle, ctx),
            Call::ConsoleLog { handle, tail } => self.console_log(&who, handle, tail, ctx),
            Call::Sd(args) => self.sd(&who, args, ctx),
            // The front end answers these itself (from the published
            // snapshot, or by turning the connection into a console).
            Call::Classes { .. } | Call::Status { .. } | Call::Console { .. } | Call::KnownHosts => ready(Err(
                ApiError::new(Code::Internal, format!("{name} is answered by the socket front end, not the registry")),
            )),
            Call::Whoami => {
                ready(Ok(Reply::Whoami(WhoamiView { user: who.user.clone(), uid: who.uid, admin: who.admin })))
            }
            Call::Queue => {
                let waiters = &self.waiters;
                let live = |id: u64| waiters.get(&id).is_some_and(|w| !w.tx.is_closed());
                let places = self.book.places(&who.user, &live);
                ready(Ok(Reply::Queue(
                    places
                        .into_iter()
                        .map(|(class, place, waiting)| crate::protocol::QueuePlace { class, place, waiting })
                        .collect(),
                )))
            }
            Call::Dump => match self.book.operator(&asker(&who), "dump") {
                Ok(()) => Box::pin(self.dump().map(|d, _, _| Ok(Reply::Dump(Box::new(d))))),
                Err(e) => ready(Err(e.into())),
            },
            Call::Maintenance { board, on, reason } => self.maintenance(&who, &board, on, reason, ctx),
            Call::History(q) => self.history(&who, q),
            Call::Selftest { board, wait } => self.selftest(&who, &board, wait, ctx),
            Call::Health { board } => self.health_now(&who, &board, ctx),
            Call::ForceRelease { board, reason } => {
                let a = asker(&who);
                let checked = self.book.operator(&a, "force-release").and_then(|()| self.book.board(&board));
                if let Err(e) = checked {
                    return ready(Err(e.into()));
                }
                match self.book.claim_of(&board).map(|c| c.handle.clone()) {
                    Some(h) => self.end_claim(&h, Ending::ForceRelease, &who.user, reason, ctx),
                    None => ready(Err(BookError::NotClaimed(board).into())),
                }
            }
            #[cfg(feature = "fault-injection")]
            Call::DebugPanic { board } => {
                let a = asker(&who);
                if let Err(e) = self.book.operator(&a, "debug_panic").and_then(|()| self.book.board(&board)) {
                    return ready(Err(e.into()));
                }
                let Some(addr) = self.board_addr(&board, ctx) else { return ready(Err(vanished())) };
                Box::pin(actix::fut::wrap_future::<_, Self>(addr.send(crate::actors::board::DebugPanic)).map(
                    |r, _, _| {
                        r.map_err(unavailable)??;
                        Ok(Reply::Panicked(crate::protocol::Panicked { panicked: true }))
                    },
                ))
            }
        }
    }
}

impl Registry {
    fn claim(
        &mut self,
        who: &Identity,
        class: &str,
        power: bool,
        lease: Option<u64>,
        wait: Option<u64>,
        ctx: &mut Context<Self>,
    ) -> Fut {
        let lease = match self.book.lease(lease) {
            Ok(l) => l,
            Err(e) => return ready(Err(e.into())),
        };
        self.count_elsewhere(&who.user);
        let waiters = &self.waiters;
        let live = |id: u64| waiters.get(&id).is_some_and(|w| !w.tx.is_closed());
        let now = now_unix_ms();
        let outcome = self.book.claim(&who.user, class, lease, power, wait.is_some(), now, &mut fresh_handle, &live);
        match outcome {
            Err(e) => ready(Err(e.into())),
            Ok(Outcome::Granted(c)) => self.grant(c, power, ctx),
            Ok(Outcome::Queued(id)) => {
                let (tx, rx) = oneshot::channel();
                self.waiters.insert(id, Waiting { tx });
                self.publish();
                let limit = wait.map(Duration::from_secs).unwrap_or(MAX_WAIT).min(MAX_WAIT);
                let class = class.to_string();
                let waited = async move { tokio::time::timeout(limit, rx).await };
                Box::pin(actix::fut::wrap_future::<_, Self>(waited).map(move |r, act, _| match r {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) => Err(ApiError::new(Code::Internal, "the wait was cancelled")),
                    Err(_) => {
                        act.book.leave_queue(id);
                        act.waiters.remove(&id);
                        act.publish();
                        Err(ApiError::new(
                            Code::Timeout,
                            format!("no {class} board became available within {}", format_duration(limit)),
                        ))
                    }
                }))
            }
        }
    }

    /// The book gave `c` its board: keep it, then bring the board into
    /// its service (jail, power). If either fails the claim is undone.
    fn grant(&mut self, c: Claim, power: bool, ctx: &mut Context<Self>) -> Fut {
        let board = c.board.clone();
        if c.handle.is_empty() {
            self.book.end(&c.handle, false);
            self.changed(&board);
            return ready(Err(ApiError::new(Code::Internal, "labd cannot make a claim handle (no randomness)")));
        }
        self.changed(&board);
        self.arm_lease(&c, ctx);
        info!(board = %board, user = %c.user, handle_id = %crate::util::handle_id(&c.handle), "claimed");
        let power_on = power || self.boards.get(&board).is_some_and(|e| e.cfg.power_on_claim);
        let kept = self.ledger.claim(&c);
        Box::pin(actix::fut::wrap_future::<_, Self>(kept).then(move |res, act, ctx| -> Fut {
            if let Err(e) = res {
                // Never kept, so nobody may hear of it: the board is free
                // again as if it had never been claimed.
                if act.book.end(&c.handle, false).is_some() {
                    act.cancel_lease(&board, ctx);
                    act.changed(&board);
                    act.serve_class_of(&board, ctx);
                }
                return ready(Err(ledger_err(e)));
            }
            die_at("claim_kept");
            if act.book.claim_of(&board).is_none_or(|now| now.handle != c.handle) {
                return ready(Err(ApiError::new(
                    Code::NotClaimed,
                    format!("the claim on {board} ended (released or expired) before it was ready"),
                )));
            }
            let Some(addr) = act.board_addr(&board, ctx) else { return ready(Err(vanished())) };
            let attach = addr.send(Attach { claim: c.clone(), power: power_on });
            Box::pin(actix::fut::wrap_future::<_, Self>(attach).map(move |res, act, ctx| {
                let res = res.map_err(unavailable).and_then(|r| r);
                #[cfg(feature = "fault-injection")]
                let res = match res {
                    // The board did the work and its answer got lost (as
                    // when it restarts mid-claim).
                    Ok(_) if std::env::var_os("LABD_FAULT_LOSE_ATTACH_REPLY").is_some() => {
                        Err(unavailable("the answer was lost (injected)"))
                    }
                    r => r,
                };
                match res {
                    Ok(attached) => {
                        act.metrics.claims_granted.inc();
                        if let Some(e) = act.boards.get_mut(&board) {
                            if let Some(p) = attached.power {
                                e.power = p;
                            }
                            if attached.jail.is_some() {
                                e.jail = attached.jail;
                            }
                        }
                        act.changed(&board);
                        act.claim_view(&c.handle)
                            .map(|v| Reply::Claim(Box::new(v)))
                            .ok_or_else(|| ApiError::new(Code::NotClaimed, "the claim ended meanwhile"))
                    }
                    Err(err) => {
                        act.undo(&c, &err, ctx);
                        Err(ApiError::new(err.code, format!("claim of {board} undone: {}", err.message)))
                    }
                }
            }))
        }))
    }

    /// A granted claim whose board could not be brought into service:
    /// it ends (unless it did meanwhile) and the board is returned and
    /// left powered off whatever happened (the power-on may have reached
    /// the switch even when its answer did not reach us).
    fn undo(&mut self, c: &Claim, why: &ApiError, ctx: &mut Context<Self>) {
        let board = c.board.clone();
        if self.book.end(&c.handle, true).is_some() {
            self.cancel_lease(&board, ctx);
            self.forget_jail(&board);
            let kept = self.ledger.end(c, Ending::RolledBack, &c.user, Some(why.message.clone()));
            ctx.spawn(actix::fut::wrap_future::<_, Self>(kept).map(move |r, _, _| {
                if let Err(e) = r {
                    error!("cannot roll back a claim: {e}");
                }
            }));
        }
        if why.code == Code::DeviceFault && self.book.fault(&board).is_none() {
            // The board actor reports the fault too; set it now so the
            // board is not handed out before that report arrives.
            let alive = self.book.state(&board) != crate::protocol::BoardState::Offline;
            self.book.health(&board, alive, Some(why.message.clone()));
        }
        self.changed(&board);
        let Some(addr) = self.board_addr(&board, ctx) else { return };
        let detach = addr.send(Detach { handle: c.handle.clone(), by: c.user.clone() });
        let claimant = c.user.clone();
        ctx.spawn(actix::fut::wrap_future::<_, Self>(detach).map(move |r, act: &mut Self, ctx| {
            if let Ok(Ok(p)) = r {
                act.set_power(&board, p);
            }
            act.returned(&board, &claimant, ctx);
        }));
    }

    /// Ends `handle`'s claim (release, expiry, force-release); the board
    /// is claimable again once it is back.
    ///
    /// A release someone asked for is kept by the ledger first: when the
    /// ledger cannot keep it (a lab's etcd without quorum), it fails and
    /// nothing changed. An expiry happens whatever: the book first, the
    /// board detached, and the ledger keeps it when it can.
    /// `detail`: why, for the event log (an operator's reason).
    pub(super) fn end_claim(
        &mut self,
        handle: &str,
        how: Ending,
        by: &str,
        detail: Option<String>,
        ctx: &mut Context<Self>,
    ) -> Fut {
        if matches!(how, Ending::Release | Ending::ForceRelease) {
            die_at("release_asked");
            let Some(c) = self.book.board_of_handle(handle).and_then(|b| self.book.claim_of(b)).cloned() else {
                return ready(Err(ApiError::new(Code::NotClaimed, "the claim ended meanwhile")));
            };
            let kept = self.ledger.end(&c, how, by, detail.clone());
            let by = by.to_string();
            return Box::pin(actix::fut::wrap_future::<_, Self>(kept).then(move |kept, act, ctx| -> Fut {
                if let Err(e) = kept {
                    return ready(Err(ledger_err(e)));
                }
                die_at("release_kept");
                match act.book.end(&c.handle, true) {
                    Some(c) => act.detach(c, how, &by, detail.as_deref(), Box::pin(async { Ok(()) }), ctx),
                    None => ready(Err(ApiError::new(Code::NotClaimed, "the claim ended meanwhile"))),
                }
            }));
        }
        let Some(c) = self.book.end(handle, true) else {
            return ready(Err(ApiError::new(Code::NotClaimed, "the claim ended meanwhile")));
        };
        let kept = self.ledger.end(&c, how, by, detail.clone());
        self.detach(c, how, by, detail.as_deref(), kept, ctx)
    }

    /// `c` ended in the book: its board is detached (jail removed, power
    /// off) while `kept` finishes. Its claimant learns how, and an
    /// operator's reason (`detail`).
    fn detach(
        &mut self,
        c: Claim,
        how: Ending,
        by: &str,
        detail: Option<&str>,
        kept: LedgerFuture<()>,
        ctx: &mut Context<Self>,
    ) -> Fut {
        let board = c.board.clone();
        let said = match (how, detail) {
            (Ending::Expire, _) => "expired".to_string(),
            (Ending::ForceRelease, Some(why)) => format!("was force-released by {by} ({why})"),
            (Ending::ForceRelease, None) => format!("was force-released by {by}"),
            (Ending::Release, _) if by == c.user => "was released".to_string(),
            (Ending::Release, _) => format!("was released by {by}"),
            (Ending::RolledBack | Ending::Dropped, _) => "was undone".to_string(),
        };
        match how {
            Ending::Release => self.metrics.claims_released.inc(),
            Ending::ForceRelease => self.metrics.claims_force_released.inc(),
            Ending::Expire => self.metrics.claims_expired.inc(),
            Ending::RolledBack | Ending::Dropped => 0,
        };
        let at = if how == Ending::Expire { c.expires_at } else { crate::util::now_unix_ms() };
        self.book.remember_end(&c, said, at);
        self.cancel_lease(&board, ctx);
        self.forget_jail(&board);
        self.changed(&board);
        info!(board = %board, user = %c.user, by = %by, handle_id = %crate::util::handle_id(&c.handle), "{}", how.as_str());
        let detach =
            self.board_addr(&board, ctx).map(|a| a.send(Detach { handle: c.handle.clone(), by: by.to_string() }));
        let work = async move {
            let detached = match detach {
                Some(d) => d.await.map_err(unavailable).and_then(|r| r),
                None => Err(vanished()),
            };
            (kept.await, detached)
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(work).map(move |(kept, detached), act, ctx| {
            let mut reply = Released {
                board: board.clone(),
                released: true,
                user: c.user.clone(),
                power: PowerState::Unknown,
                warning: None,
            };
            match detached {
                Ok(p) => {
                    reply.power = p;
                    act.set_power(&board, p);
                }
                Err(e) => {
                    warn!(board = %board, "power-off after {} failed: {}", how.as_str(), e.message);
                    reply.warning = Some(format!("the board could not be powered off: {}", e.message));
                }
            }
            act.returned(&board, &c.user, ctx);
            match kept {
                Ok(()) => Ok(Reply::Released(reply)),
                Err(e) => Err(ApiError::new(
                    Code::Internal,
                    format!(
                        "board {board} was released, but the state database could not record it ({e}): \
                         the claim may come back after labd restarts"
                    ),
                )),
            }
        }))
    }

    /// The board is back from `claimant`'s claim: checked first when its
    /// class has a health check after releases (its end serves the
    /// waiters), else claimable again and the first waiters of its class
    /// get it.
    pub(super) fn returned(&mut self, board: &str, claimant: &str, ctx: &mut Context<Self>) {
        if self.book.returned(board).is_some() {
            if self.check_after_release(board, claimant, ctx) {
                return;
            }
            self.changed(board);
            self.serve_class_of(board, ctx);
        }
    }

    pub(super) fn serve_class_of(&mut self, board: &str, ctx: &mut Context<Self>) {
        if let Some(class) = self.book.class_of(board).map(str::to_string) {
            self.serve(&class, ctx);
        }
    }

    /// Hands free boards of `class` to its waiters, first come first
    /// served.
    pub(super) fn serve(&mut self, class: &str, ctx: &mut Context<Self>) {
        let waiters = &self.waiters;
        let live = |id: u64| waiters.get(&id).is_some_and(|w| !w.tx.is_closed());
        let served = self.book.serve_waiters(class, now_unix_ms(), &mut fresh_handle, &live);
        self.waiters.retain(|_, w| !w.tx.is_closed());
        for (w, c) in served {
            let Some(waiting) = self.waiters.remove(&w.id) else { continue };
            let f = self.grant(c, w.power, ctx);
            ctx.spawn(f.map(move |res, act, ctx| {
                if let Err(Ok(Reply::Claim(v))) = waiting.tx.send(res) {
                    // The waiter left while its board was being prepared.
                    info!(board = %v.board.board, "waiter left; releasing the board it was given");
                    let f = act.end_claim(&v.handle, Ending::Release, "labd", None, ctx);
                    ctx.spawn(f.map(|_, _, _| ()));
                }
            }));
        }
    }
}

/// Test-only (`fault-injection`): labd kills itself (SIGKILL, as a crash
/// or `kill -9` would) at `point` when `LABD_FAULT_DIE` names it: a host
/// that stops answering after it took a request (`claim_kept`,
/// `release_kept`) or before it did anything (`release_asked`).
fn die_at(point: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("LABD_FAULT_DIE").is_ok_and(|p| p == point) {
        tracing::warn!("dying at {point} (LABD_FAULT_DIE)");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = point;
}
