//! Claims coming and going: Attach brings the board's resources into a
//! claim's service (console log, jail, power), Renewed carries a new lease
//! end to them (the jail's host certificate), Detach returns them.

use actix::prelude::*;
use tracing::{error, info};

use super::{BoardActor, Duty, PowerAction};
use crate::claims::Claim;
use crate::jail::hostcert;
use crate::protocol::{ApiError, Code, JailInfo, PowerState};

/// A claim was granted: bring the board's devices into its service.
#[derive(Message)]
#[rtype(result = "Result<Attached, ApiError>")]
pub struct Attach {
    pub claim: Claim,
    /// Power the board on as part of the claim.
    pub power: bool,
}

/// What a claim got from its board.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The power state reached, when the claim asked for power.
    pub power: Option<PowerState>,
    /// The jail built for the claim (`jail = "linux"`).
    pub jail: Option<JailInfo>,
}

type AttachFut = ResponseActFuture<BoardActor, Result<Attached, ApiError>>;

impl BoardActor {
    /// The claim `handle` is served from now on (console log, sessions,
    /// jail work); None: no claim.
    fn follow_claim(&mut self, handle: Option<String>) {
        if let Some(c) = &self.console {
            c.set_claim(handle.clone());
        }
        self.jail_cell.set_current(handle.clone());
        self.claim_tx.send_replace(handle);
    }
}

impl Handler<Attach> for BoardActor {
    type Result = AttachFut;

    /// Builds the claim's jail and powers the board on if asked, unless
    /// the claim ended meanwhile.
    fn handle(&mut self, msg: Attach, _ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.duty.can_attach(self.name()) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        let by = msg.claim.user.clone();
        let handle = msg.claim.handle.clone();
        self.duty = Duty::Attaching(msg.claim.clone());
        self.follow_claim(Some(handle.clone()));
        self.owe_off = false;
        let power = msg.power;
        // The jail first: the board netboots from it when powered.
        let jail = self.build_jail(msg.claim);
        Box::pin(jail.then(move |res, act: &mut Self, _ctx| -> AttachFut {
            let jail = match res {
                Ok(j) => j,
                Err(e) => return Box::pin(actix::fut::ready(Err(e))),
            };
            if !act.serves(&handle) {
                return Box::pin(actix::fut::ready(Err(ApiError::new(
                    Code::NotClaimed,
                    "the claim ended (released or expired) while its board was being prepared",
                ))));
            }
            let done = move |act: &mut Self, power| {
                if let Duty::Attaching(c) = &act.duty {
                    if c.handle == handle {
                        act.duty = Duty::Serving(c.clone());
                    }
                }
                Attached { power, jail }
            };
            if !power {
                return Box::pin(actix::fut::ready(Ok(done(act, None))));
            }
            Box::pin(act.switch_power(PowerAction::On, by).map(move |r, act, _| r.map(|p| done(act, Some(p)))))
        }))
    }
}

/// A claim ended (release, expiry, force-release, or a claim undone):
/// return the board to the lab, powered off (`EnsureOff`: no SNMP when
/// the port is known to be off).
#[derive(Message)]
#[rtype(result = "Result<PowerState, ApiError>")]
pub struct Detach {
    pub handle: String,
    pub by: String,
}

impl Handler<Detach> for BoardActor {
    type Result = ResponseActFuture<Self, Result<PowerState, ApiError>>;

    /// Forgets the claim, removes its jail, then powers the board off; the
    /// answer is the power state reached (an error leaves the board
    /// faulted, the claim gone). A Detach for a claim the board no longer
    /// serves while it serves another (an undo that arrives late) leaves
    /// the new claim's jail and power alone.
    fn handle(&mut self, msg: Detach, _ctx: &mut Context<Self>) -> Self::Result {
        if self.duty.claim().is_some() && !self.serves(&msg.handle) {
            return Box::pin(actix::fut::ready(Ok(self.power)));
        }
        if self.duty != Duty::Stopped {
            self.duty = Duty::Detaching(msg.handle.clone());
        }
        self.follow_claim(None);
        if let Some(c) = &self.console {
            // The claim's console output goes with it: the next claimant
            // starts with an empty log.
            c.remove_logs(&msg.handle);
        }
        let (by, handle) = (msg.by, msg.handle);
        // The jail first (its processes gone, nothing holds the card),
        // then the card off.
        let teardown = self.teardown_jail(&handle, true).then(|_, act: &mut Self, _| act.card_release(true));
        Box::pin(teardown.then(move |_, act: &mut Self, ctx| {
            act.prepare_next(ctx);
            act.switch_power(PowerAction::EnsureOff, by).map(move |r, act: &mut Self, _| {
                if r.is_err() && act.duty.claim().is_none() {
                    act.owe_off = true;
                }
                if act.duty == Duty::Detaching(handle) {
                    act.duty = Duty::Free;
                }
                r
            })
        }))
    }
}

/// The claim's lease was renewed (the ledger has it): the board serves it
/// until the new end, and its jail's host certificate is issued again to
/// that end.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Renewed {
    pub claim: Claim,
}

impl Handler<Renewed> for BoardActor {
    type Result = ResponseActFuture<Self, ()>;

    /// In turn with the board's other jail work: a jail being built gets
    /// its certificate once it is up (the build's own ends at the old
    /// lease end).
    fn handle(&mut self, msg: Renewed, _ctx: &mut Context<Self>) -> Self::Result {
        let claim = msg.claim;
        if !self.duty.renewed(&claim.handle, claim.expires_at) {
            return Box::pin(actix::fut::ready(()));
        }
        let Some(cert) = self.jail_ctx.as_ref().and_then(|jc| jc.cert(&claim)) else {
            return Box::pin(actix::fut::ready(()));
        };
        let (slot, board, handle) = (self.jail_cell.slot.clone(), self.name().to_string(), claim.handle);
        let work = async move {
            let slot = slot.lock_owned().await;
            let _ = tokio::task::spawn_blocking(move || {
                let Some(jail) = slot.as_ref().filter(|j| j.handle == handle) else { return };
                match hostcert::renew(jail, &cert) {
                    Ok(()) => {
                        info!(board = %board, "the jail's host certificate was issued again to the new lease end")
                    }
                    Err(e) => error!(board = %board, "renewing the jail's host certificate: {e}"),
                }
            })
            .await;
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(work))
    }
}
