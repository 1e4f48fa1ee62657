//! What a claimant does with a claim it holds (power, reinit, renew) and
//! its lease's timer; and operators taking boards in and out of service.

use std::time::Duration;

use actix::prelude::*;
use tracing::info;

use super::claims::{asker, ready, unavailable, vanished, Fut};
use super::{ledger_err, Registry};
use crate::actors::board::{Power, PowerAction, Reinit, Renewed};
use crate::actors::Identity;
use crate::claims::ledger::Ending;
use crate::claims::Claim;
use crate::protocol::{ApiError, Code, PowerState, Reply};
use crate::util::now_unix_ms;

impl Registry {
    pub(super) fn power(
        &mut self,
        who: &Identity,
        handle: Option<&str>,
        action: PowerAction,
        ctx: &mut Context<Self>,
    ) -> Fut {
        let c = match self.book.resolve(&asker(who), handle) {
            Ok(c) => c.clone(),
            Err(e) => return ready(Err(e.into())),
        };
        let Some(addr) = self.board_addr(&c.board, ctx) else { return ready(Err(vanished())) };
        let req = addr.send(Power { action, by: who.user.clone(), handle: Some(c.handle.clone()) });
        Box::pin(actix::fut::wrap_future::<_, Self>(req).map(move |res, act, _ctx| {
            let state = res.map_err(unavailable).and_then(|r| r)?;
            act.set_power(&c.board, state);
            act.view(&c.board).map(Reply::Board).ok_or_else(vanished)
        }))
    }

    pub(super) fn reinit(&mut self, who: &Identity, handle: Option<&str>, ctx: &mut Context<Self>) -> Fut {
        let c = match self.book.resolve(&asker(who), handle) {
            Ok(c) => c.clone(),
            Err(e) => return ready(Err(e.into())),
        };
        let Some(addr) = self.board_addr(&c.board, ctx) else { return ready(Err(vanished())) };
        self.forget_jail(&c.board);
        let req = addr.send(Reinit { handle: c.handle.clone() });
        Box::pin(actix::fut::wrap_future::<_, Self>(req).map(move |res, act, _| {
            let info = res.map_err(unavailable).and_then(|r| r)?;
            if act.book.claim_of(&c.board).is_some_and(|now| now.handle == c.handle) {
                if let Some(e) = act.boards.get_mut(&c.board) {
                    e.jail = info;
                }
            }
            act.claim_view(&c.handle)
                .map(|v| Reply::Claim(Box::new(v)))
                .ok_or_else(|| ApiError::new(Code::NotClaimed, "the claim ended meanwhile"))
        }))
    }

    pub(super) fn renew(
        &mut self,
        who: &Identity,
        handle: Option<&str>,
        lease: Option<u64>,
        ctx: &mut Context<Self>,
    ) -> Fut {
        let c = match self.book.resolve(&asker(who), handle) {
            Ok(c) => c.clone(),
            Err(e) => return ready(Err(e.into())),
        };
        let expires = match self.book.lease(lease).and_then(|l| self.book.renewal(&c, l, now_unix_ms())) {
            Ok(at) => at,
            Err(e) => return ready(Err(e.into())),
        };
        self.book.renew(&c.handle, expires);
        let renewed = Claim { expires_at: expires, ..c.clone() };
        self.arm_lease(&renewed, ctx);
        self.changed(&c.board);
        let kept = self.ledger.renew(&renewed, &who.user);
        Box::pin(actix::fut::wrap_future::<_, Self>(kept).then(move |r, act, ctx| -> Fut {
            if let Err(e) = r {
                // The old lease stands: it is what the ledger has.
                if act.book.renew(&c.handle, c.expires_at) {
                    act.arm_lease(&c, ctx);
                    act.changed(&c.board);
                }
                return ready(Err(ledger_err(e)));
            }
            // The board certifies the claim's jail until the new end; the
            // lease is renewed whether or not that works (the board logs).
            let told = act.board_addr(&c.board, ctx).map(|a| a.send(Renewed { claim: renewed }));
            let handle = c.handle;
            Box::pin(
                actix::fut::wrap_future::<_, Self>(async move {
                    if let Some(t) = told {
                        let _ = t.await;
                    }
                })
                .map(move |(), act, _| {
                    act.claim_view(&handle)
                        .map(|v| Reply::Claim(Box::new(v)))
                        .ok_or_else(|| ApiError::new(Code::NotClaimed, "the claim ended meanwhile"))
                }),
            )
        }))
    }

    pub(super) fn maintenance(
        &mut self,
        who: &Identity,
        board: &str,
        on: bool,
        reason: Option<String>,
        _ctx: &mut Context<Self>,
    ) -> Fut {
        let a = asker(who);
        let became = match self.book.operator(&a, "maintenance").and_then(|()| self.book.set_maintenance(board, on)) {
            Ok(b) => b,
            Err(e) => return ready(Err(e.into())),
        };
        self.changed(board);
        let kept = self.ledger.maintenance(board, on, &who.user, reason);
        let board = board.to_string();
        Box::pin(actix::fut::wrap_future::<_, Self>(kept).map(move |r, act, ctx| {
            if let Err(e) = r {
                let _ = act.book.set_maintenance(&board, !on);
                act.changed(&board);
                return Err(ledger_err(e));
            }
            if became.is_some() {
                act.serve_class_of(&board, ctx);
            }
            act.view(&board).map(Reply::Board).ok_or_else(vanished)
        }))
    }

    /// (Re)arms the timer that ends `c` when its lease runs out.
    pub(super) fn arm_lease(&mut self, c: &Claim, ctx: &mut Context<Self>) {
        self.cancel_lease(&c.board, ctx);
        let left = Duration::from_millis(u64::try_from(c.expires_at - now_unix_ms()).unwrap_or(0));
        let handle = c.handle.clone();
        let timer = ctx.run_later(left, move |act, ctx| {
            if !act.book.expired(&handle, now_unix_ms()) {
                return;
            }
            if let Some(b) = act.book.board_of_handle(&handle).map(str::to_string) {
                info!(board = %b, "lease expired; releasing");
                if let Some(e) = act.boards.get_mut(&b) {
                    e.lease_timer = None;
                }
            }
            let f = act.end_claim(&handle, Ending::Expire, "labd", None, ctx);
            ctx.spawn(f.map(|_, _, _| ()));
        });
        if let Some(e) = self.boards.get_mut(&c.board) {
            e.lease_timer = Some(timer);
        }
    }

    pub(super) fn cancel_lease(&mut self, board: &str, ctx: &mut Context<Self>) {
        if let Some(h) = self.boards.get_mut(board).and_then(|e| e.lease_timer.take()) {
            ctx.cancel_future(h);
        }
    }

    pub(super) fn forget_jail(&mut self, board: &str) {
        if let Some(e) = self.boards.get_mut(board) {
            e.jail = None;
        }
    }

    pub(super) fn set_power(&mut self, board: &str, p: PowerState) {
        if let Some(e) = self.boards.get_mut(board) {
            if e.power != p {
                e.power = p;
                self.changed(board);
            }
        }
    }
}
