//! The board actor: owns one board's four resources, one file each: its
//! PoE port ([`power`]), its serial console ([`console`]: adapter, pump,
//! log, sessions), its network link ([`link`]: the VLAN sub-interface or
//! dedicated interface, parked while the board is free), the claim's
//! jail ([`jail`]) and, where it has one, its microSD card ([`storage`]). What it does for the lab is one [`Duty`]; claims come
//! and go through [`claim`] (Attach, Detach).
//!
//! It is the only code that touches the board's switch port, so power
//! requests for one board are serialised by the port mutex while other
//! boards proceed in parallel; its jail work is ordered by its
//! [`jail::JailCell`]. It reports every change of power, health, console
//! or jail to the registry, which keeps the view users see.
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

mod claim;
mod console;
mod duty;
mod jail;
mod link;
mod power;
mod selftest;
mod storage;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;
use tracing::error;

use super::registry::{BoardRestarted, BoardStatus, Registry};
use crate::claims::Claim;
use crate::config::{self, PowerPolicy};
use crate::console::relay::Relay;
use crate::console::{Console, ConsoleSettings};
use crate::db::{Db, DbWriter};
use crate::link::LinkId;
use crate::metrics::{Metrics, SwitchMetrics};
use crate::power::SwitchClient;
#[cfg(feature = "fault-injection")]
use crate::protocol::ApiError;
use crate::protocol::PowerState;
pub use claim::{Attach, Attached, Detach, Renewed};
pub use console::{ConsoleDetail, GetConsole};
pub use duty::Duty;
pub use jail::{JailCtx, Reinit, Shutdown};
pub use link::LinkPhase;
pub use power::{Power, PowerAction};
pub use selftest::{HealthCheck, Selftest};
pub use storage::{Sd, SdDetail};

/// First delay before re-probing a silent switch.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

pub struct BoardActor {
    cfg: Arc<config::Board>,
    policy: PowerPolicy,
    /// The state database, for the jail work (on blocking threads only).
    db: Db,
    /// The state database's thread, for events.
    events: DbWriter,
    registry: Addr<Registry>,
    /// The board's own SNMP session to its switch. A tokio mutex because it
    /// is held across awaits; it also queues power requests in order.
    port: Arc<tokio::sync::Mutex<SwitchClient>>,
    power: PowerState,
    /// The port's power detection since the last power-on, when the switch
    /// has answered it (see power::Detection).
    delivery: Option<crate::power::Detection>,
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
    /// What the board is doing for the lab (the registry decides claims;
    /// the board keeps its resources in step with them).
    duty: Duty,
    /// The current claim's handle, watched by console sessions so that a
    /// claimant's session ends with the claim.
    claim_tx: watch::Sender<Option<String>>,
    /// The serial console's pump. It runs as its own task and outlives a
    /// restart of this actor, so no console byte is lost to a panic here;
    /// it stops when the actor (and every session) is gone.
    console: Option<Console>,
    /// How to build this board's jails; None when `daemon.jail = "none"`.
    pub(super) jail_ctx: Option<Arc<JailCtx>>,
    /// The current claim's jail and the order of the board's jail work.
    /// Kept across a supervised restart (the struct is reused).
    jail_cell: Arc<jail::JailCell>,
    /// The record of the claim's jail from the last labd, to adopt at the
    /// first start (handle, JSON).
    jail_record: Option<(String, String)>,
    /// The console device relayed into the jail.
    relay: Option<Relay>,
    /// The board's network link.
    link: link::LinkState,
    /// Its switch's counters (power operations, failures, SNMP latency).
    power_metrics: Arc<SwitchMetrics>,
    /// labd's counters (jail build times).
    metrics: Arc<Metrics>,
    /// The board's microSD card and its mux, if it has one.
    card: Option<storage::Card>,
}

/// What a board actor is made of; the registry assembles it.
pub struct BoardParts {
    pub cfg: Arc<config::Board>,
    pub switch: Arc<config::Switch>,
    /// The switch's bound on requests in flight, shared by its boards.
    pub switch_limit: Arc<tokio::sync::Semaphore>,
    pub policy: PowerPolicy,
    pub db: Db,
    pub events: DbWriter,
    pub registry: Addr<Registry>,
    /// The port state read by the start-up walk, if it was.
    pub initial_power: Option<PowerState>,
    /// The board must be switched off once its port answers (it is
    /// unclaimed at start: nothing may have left it on).
    pub owe_off: bool,
    /// The board's serial console, if it has one.
    pub console: Option<ConsoleSettings>,
    pub jail_ctx: Option<Arc<JailCtx>>,
    /// The link's identity as last recorded on the host.
    pub link_id: Option<LinkId>,
    /// The claim the board serves, as the registry's claim book holds it.
    pub claim: Option<Claim>,
    /// The record of the claim's running jail, from the state database.
    pub jail_record: Option<(String, String)>,
    pub metrics: Arc<Metrics>,
    /// `[storage] wipe_on_release`: the card is wiped when a claim ends.
    pub sd_wipe: bool,
}

impl BoardActor {
    /// Must be called on the actors' runtime (the console's pump starts).
    pub fn new(p: BoardParts) -> Self {
        let BoardParts {
            cfg,
            switch,
            switch_limit,
            policy,
            db,
            events,
            registry,
            initial_power,
            owe_off,
            console,
            jail_ctx,
            link_id,
            claim,
            jail_record,
            metrics,
            sd_wipe,
        } = p;
        let card = cfg.storage.clone().map(|s| {
            let dir = jail_ctx.as_ref().map(|jc| crate::storage::node::board_dir(&jc.settings.root_dir, &cfg.name));
            storage::Card::new(&cfg.name, s, dir, sd_wipe)
        });
        let power_metrics = metrics.switch(&switch.name);
        let link = link::LinkState::new(cfg.network.clone(), link_id);
        let console = console.map(Console::start);
        let handle = claim.as_ref().map(|c| c.handle.clone());
        if let Some(c) = &console {
            c.set_claim(handle.clone());
        }
        BoardActor {
            cfg,
            policy,
            db,
            events,
            registry,
            port: Arc::new(tokio::sync::Mutex::new(
                SwitchClient::new(switch).with_latency(power_metrics.snmp_seconds.clone()).with_limit(switch_limit),
            )),
            power: PowerState::Unknown,
            delivery: None,
            fault: None,
            backoff: FIRST_BACKOFF,
            probe_pending: None,
            power_inflight: 0,
            owe_off,
            generation: 0,
            initial_power,
            duty: claim.map(Duty::Serving).unwrap_or(Duty::Free),
            claim_tx: watch::channel(handle).0,
            console,
            jail_ctx,
            jail_cell: Arc::default(),
            jail_record,
            relay: None,
            link,
            power_metrics,
            metrics,
            card,
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
        self.duty.claim()
    }

    /// Tells the registry the board's power and health (faulted by its
    /// switch, or with jails on by its link) and its console's state.
    fn report(&self) {
        self.registry.do_send(BoardStatus {
            board: self.cfg.name.clone(),
            power: self.power,
            fault: self.fault.clone().or_else(|| self.link_fault()),
            console: self.console.as_ref().map(|c| *c.watch_state().borrow()),
            delivery: self.delivery,
        });
    }

    /// Whether `handle` is the claim this board serves now.
    fn serves(&self, handle: &str) -> bool {
        self.duty.serves(handle)
    }

    /// Logs an event (on the database's thread).
    pub(super) fn event(&self, kind: &'static str, user: Option<&str>, detail: Option<&str>) {
        let (board, user, detail) = (self.name().to_string(), user.map(str::to_string), detail.map(str::to_string));
        self.events.fire(move |db| {
            if let Err(e) = db.event(kind, Some(&board), user.as_deref(), detail.as_deref()) {
                error!(board = %board, "cannot log event {kind}: {e}");
            }
        });
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
        self.watch_console(ctx);
        self.adopt_jail(ctx);
        self.card_start(ctx);
        match self.initial_power.take() {
            Some(state) => {
                self.healthy(state, ctx);
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
    /// then re-reads the port. Claims live in the registry and the ledger,
    /// so nothing a user holds is touched.
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.generation += 1;
        self.power = PowerState::Unknown;
        self.fault = None;
        self.backoff = FIRST_BACKOFF;
        self.probe_pending = None;
        self.power_inflight = 0;
        self.initial_power = None;
        // A claim's end cut short: its power-off is owed, and done once
        // the port answers (unless a claim has the board by then).
        self.owe_off |= matches!(self.duty, Duty::Detaching(_));
        self.duty = std::mem::replace(&mut self.duty, Duty::Free).after_restart();
        self.event("restart", None, None);
        self.registry.do_send(BoardRestarted { board: self.cfg.name.clone() });
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
