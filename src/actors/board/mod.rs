//! The board actor: owns one board's devices, one file each: its PoE port
//! ([`power`]), its network link ([`link`]) and the claim's jail
//! ([`jail`]); its serial console's pump runs as a task of its own.
//!
//! It is the only code that touches the board's switch port, so power
//! requests for one board are serialised by the port mutex while other
//! boards proceed in parallel; its jail work is ordered by its
//! [`jail::JailCell`]. It reports every change of power or health to the
//! registry, which keeps the view users see.
//!
//! Failure handling, in three layers:
//! - a device error (switch silent, agent error) marks the board faulted,
//!   logs an event and probes the switch with exponential back-off until it
//!   answers again;
//! - a panic in a handler or in a power future is caught here, logged, and
//!   the actor stops; its `Supervisor` restarts the same struct, which
//!   resets itself in `restarting` and re-reads the port in `started`;
//! - should an actor die some other way, the registry notices the closed
//!   mailbox and starts a fresh one (see `Registry::board_addr`).

mod jail;
mod link;
mod power;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::error;

use super::registry::{BoardRestarted, BoardStatus, Registry};
use crate::config::{self, PowerPolicy};
use crate::console::relay::Relay;
use crate::console::Console;
use crate::link::LinkId;

use crate::db::{Claim, Db};
use crate::power::SwitchClient;
use crate::protocol::{ApiError, PowerState};
pub use jail::{JailCtx, Reinit, Shutdown};
pub use link::LinkPhase;
pub use power::{Power, PowerAction};

/// First delay before re-probing a silent switch.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

pub struct BoardActor {
    cfg: Arc<config::Board>,
    policy: PowerPolicy,
    db: Db,
    registry: Addr<Registry>,
    /// The board's own SNMP session to its switch. A tokio mutex because it
    /// is held across awaits; it also queues power requests in order.
    port: Arc<tokio::sync::Mutex<SwitchClient>>,
    power: PowerState,
    fault: Option<String>,
    backoff: Duration,
    probe_pending: Option<SpawnHandle>,
    /// Power changes started and not yet finished. While one runs, `power`
    /// is what the port was before it, so `EnsureOff` must not trust it.
    power_inflight: u32,
    /// A claim ended but its power-off failed (switch silent): the board
    /// is powered off as soon as the switch answers again, unless a new
    /// claim took it meanwhile.
    owe_off: bool,
    /// Bumped on every restart so that results of futures started by a
    /// previous incarnation are ignored.
    generation: u64,
    /// The port state read by the start-up walk, used by the first start
    /// only (a restart re-reads the port).
    initial_power: Option<PowerState>,
    /// The claim this board serves, as stored in SQLite (the registry
    /// decides claims; the board keeps the devices in step with them).
    claim: Option<Claim>,
    /// The serial console's pump. It runs as its own task and outlives a
    /// restart of this actor, so no console byte is lost to a panic here.
    console: Option<Console>,
    /// How to build this board's jails; None when `daemon.jail = "none"`.
    pub(super) jail_ctx: Option<Arc<JailCtx>>,
    /// The current claim's jail and the order of the board's jail work.
    /// Kept across a supervised restart (the struct is reused); a jail is
    /// adopted from SQLite after a labd restart.
    jail_cell: Arc<jail::JailCell>,
    /// The console device relayed into the jail.
    relay: Option<Relay>,
    /// The board's network link.
    link: link::LinkState,
}

/// What a board actor is made of; the registry assembles it.
pub struct BoardParts {
    pub cfg: Arc<config::Board>,
    pub switch: Arc<config::Switch>,
    pub policy: PowerPolicy,
    pub db: Db,
    pub registry: Addr<Registry>,
    /// The port state read by the start-up walk, if it was.
    pub initial_power: Option<PowerState>,
    /// The last claim's power-off never happened (see `Db::owed_power_offs`).
    pub owe_off: bool,
    pub console: Option<Console>,
    pub jail_ctx: Option<Arc<JailCtx>>,
    /// The link's identity as last recorded on the host.
    pub link_id: Option<LinkId>,
    /// The claim the board serves, as the registry's claim book holds it.
    pub claim: Option<Claim>,
}

impl BoardActor {
    pub fn new(p: BoardParts) -> Self {
        let BoardParts { cfg, switch, policy, db, registry, initial_power, owe_off, console, jail_ctx, link_id, claim } =
            p;
        let link = link::LinkState::new(cfg.network.clone(), link_id);
        BoardActor {
            cfg,
            policy,
            db,
            registry,
            port: Arc::new(tokio::sync::Mutex::new(SwitchClient::new(switch))),
            power: PowerState::Unknown,
            fault: None,
            backoff: FIRST_BACKOFF,
            probe_pending: None,
            power_inflight: 0,
            owe_off,
            generation: 0,
            initial_power,
            claim,
            console,
            jail_ctx,
            jail_cell: Arc::default(),
            relay: None,
            link,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.cfg.name
    }

    pub(super) fn cfg(&self) -> &config::Board {
        &self.cfg
    }

    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    pub(super) fn console(&self) -> Option<&Console> {
        self.console.as_ref()
    }

    pub(super) fn claim(&self) -> Option<&Claim> {
        self.claim.as_ref()
    }

    /// Tells the registry the board's power and health: faulted by its
    /// switch, or (with jails on) by its link.
    fn report(&self) {
        self.registry.do_send(BoardStatus {
            board: self.cfg.name.clone(),
            power: self.power,
            fault: self.fault.clone().or_else(|| self.link_fault()),
        });
    }

    /// Whether `handle` is the claim this board serves now.
    fn serves(&self, handle: &str) -> bool {
        self.claim.as_ref().is_some_and(|c| c.handle == handle)
    }

    pub(super) fn event(&self, kind: &str, user: Option<&str>, detail: Option<&str>) {
        if let Err(e) = self.db.event(kind, Some(self.name()), user, detail) {
            error!(board = %self.name(), "cannot log event {kind}: {e}");
        }
    }

    /// A panic was caught: record it and stop, so the supervisor restarts us.
    fn crashed(&mut self, ctx: &mut Context<Self>, what: &str) {
        error!(board = %self.name(), "board actor panicked: {what}; restarting it");
        self.event("panic", None, Some(what));
        ctx.stop();
    }
}

impl Actor for BoardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The claim is the registry's (given at the first start, kept by
        // Attach and Detach across restarts).
        if let Some(c) = &self.console {
            c.set_claim(self.claim.as_ref().map(|c| c.handle.clone()));
        }
        self.adopt_jail(ctx);
        match self.initial_power.take() {
            Some(state) => {
                self.healthy(state);
                self.pay_owed_off(ctx);
            }
            None => {
                self.report();
                self.probe(ctx);
            }
        }
    }
}

impl Supervised for BoardActor {
    /// Reset everything that belonged to the dead incarnation; `started`
    /// then re-reads the port. Claims live in the registry and SQLite, so
    /// nothing a user holds is touched.
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.generation += 1;
        self.power = PowerState::Unknown;
        self.fault = None;
        self.backoff = FIRST_BACKOFF;
        self.probe_pending = None;
        self.power_inflight = 0;
        self.initial_power = None;
        self.event("restart", None, None);
        self.registry.do_send(BoardRestarted { board: self.cfg.name.clone() });
    }
}

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
    pub jail: Option<crate::jail::JailInfo>,
}

impl Handler<Attach> for BoardActor {
    type Result = ResponseActFuture<Self, Result<Attached, ApiError>>;

    /// Records the claim, builds its jail, and powers the board on if
    /// asked, unless the claim ended meanwhile.
    fn handle(&mut self, msg: Attach, _ctx: &mut Context<Self>) -> Self::Result {
        let by = msg.claim.user.clone();
        let handle = msg.claim.handle.clone();
        if let Some(c) = &self.console {
            c.set_claim(Some(handle.clone()));
        }
        self.claim = Some(msg.claim.clone());
        self.jail_cell.set_current(Some(handle.clone()));
        self.owe_off = false;
        let power = msg.power;
        // The jail first: the board netboots from it when powered.
        let jail = self.build_jail(msg.claim);
        Box::pin(jail.then(move |res, act: &mut Self, _ctx| -> ResponseActFuture<Self, Result<Attached, ApiError>> {
            let jail = match res {
                Ok(j) => j,
                Err(e) => return Box::pin(actix::fut::ready(Err(e))),
            };
            if !act.serves(&handle) {
                return Box::pin(actix::fut::ready(Err(ApiError::new(
                    crate::protocol::Code::NotClaimed,
                    "the claim ended (released or expired) while its board was being prepared",
                ))));
            }
            if !power {
                return Box::pin(actix::fut::ready(Ok(Attached { power: None, jail })));
            }
            Box::pin(
                act.switch_power(PowerAction::On, by).map(move |r, _, _| r.map(|p| Attached { power: Some(p), jail })),
            )
        }))
    }
}

/// A claim ended (release, expiry, force-release, or a claim undone):
/// return the board to the lab.
#[derive(Message)]
#[rtype(result = "Result<PowerState, ApiError>")]
pub struct Detach {
    pub handle: String,
    pub by: String,
    /// Power the board off (`EnsureOff`: no SNMP when the port is known
    /// to be off).
    pub power_off: bool,
}

impl Handler<Detach> for BoardActor {
    type Result = ResponseActFuture<Self, Result<PowerState, ApiError>>;

    /// Forgets the claim, removes its jail, then powers the board off; the
    /// answer is the power state reached (an error leaves the board
    /// faulted, the claim gone). A Detach for a claim the board no longer
    /// serves while it serves another (an undo that arrives late) leaves
    /// the new claim's jail and power alone.
    fn handle(&mut self, msg: Detach, _ctx: &mut Context<Self>) -> Self::Result {
        if self.claim.is_some() && !self.serves(&msg.handle) {
            return Box::pin(actix::fut::ready(Ok(self.power)));
        }
        self.claim = None;
        self.jail_cell.set_current(None);
        if let Some(c) = &self.console {
            // The claim's console output goes with it: the next claimant
            // starts with an empty log.
            c.set_claim(None);
            c.remove_logs(&msg.handle);
        }
        let power_off = msg.power_off;
        let by = msg.by;
        let teardown = self.teardown_jail(&msg.handle, true);
        Box::pin(teardown.then(
            move |_, act: &mut Self, ctx| -> ResponseActFuture<Self, Result<PowerState, ApiError>> {
                act.prepare_next(ctx);
                if !power_off {
                    return Box::pin(actix::fut::ready(Ok(act.power)));
                }
                Box::pin(act.switch_power(PowerAction::EnsureOff, by).map(|r, act: &mut Self, _| {
                    if r.is_err() && act.claim.is_none() {
                        act.owe_off = true;
                    }
                    r
                }))
            },
        ))
    }
}

/// Test-only: panic inside a handler.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct DebugPanic;

#[cfg(feature = "fault-injection")]
impl Handler<DebugPanic> for BoardActor {
    type Result = Result<(), ApiError>;

    /// Panics on purpose; the catch turns it into a supervised restart.
    fn handle(&mut self, _msg: DebugPanic, ctx: &mut Context<Self>) -> Self::Result {
        let r = std::panic::catch_unwind(|| -> () { panic!("debug_panic requested") });
        if let Err(p) = r {
            let m = super::panic_message(p);
            self.crashed(ctx, &m);
        }
        Ok(())
    }
}
