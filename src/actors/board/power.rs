//! The board's PoE port: switching it (every set read back), the fault
//! state of its switch, and probing a silent switch with back-off until it
//! answers again.

use actix::prelude::*;
use tracing::{debug, info, warn};

use super::{BoardActor, Duty, FIRST_BACKOFF};
use crate::actors::catch;
use crate::power::{Detection, PortState, PowerError};

/// How long after the port went on its power detection is read: a PoE
/// switch classifies a powered device within a second or so.
const DETECT_AFTER: std::time::Duration = std::time::Duration::from_secs(2);
use crate::protocol::{ApiError, Code, PowerState};

/// What the switch says, as users see it.
impl From<PortState> for PowerState {
    fn from(p: PortState) -> PowerState {
        match p {
            PortState::On => PowerState::On,
            PortState::Off => PowerState::Off,
        }
    }
}

impl BoardActor {
    pub(super) fn healthy(&mut self, power: PowerState, ctx: &mut Context<Self>) {
        if let Some(old) = self.fault.take() {
            info!(board = %self.name(), "switch answers again; fault cleared (was: {old})");
            self.event("recovered", None, None);
        }
        self.backoff = FIRST_BACKOFF;
        let was = self.power;
        self.power = power;
        if power != PowerState::On {
            self.delivery = None;
        } else if was != PowerState::On || self.delivery.is_none() {
            self.check_delivery(ctx);
        }
        self.report();
    }

    /// A while after the port went on: does it deliver power? A port that
    /// is on and delivers nothing (no board, a dead splitter, a board that
    /// does not draw) is shown as such and logged once. A switch without
    /// the detection column is no fault: delivery stays unknown.
    fn check_delivery(&mut self, ctx: &mut Context<Self>) {
        let generation = self.generation;
        ctx.run_later(DETECT_AFTER, move |act, ctx| {
            if generation != act.generation || act.power != PowerState::On {
                return;
            }
            let port = act.port.clone();
            let (group, portno) = (act.cfg.group, act.cfg.port);
            let fut = catch(async move { port.lock().await.detection(group, portno).await });
            ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(move |res, act, _| {
                if generation != act.generation || act.power != PowerState::On {
                    return;
                }
                match res {
                    Ok(Ok(d)) => {
                        let was = act.delivery.replace(d);
                        if d != Detection::Delivering && was != Some(d) {
                            warn!(board = %act.name(), "the port is on but {}: no power reaches the board", d.as_str());
                            act.event("power_not_delivered", None, Some(d.as_str()));
                        }
                        act.report();
                    }
                    Ok(Err(e)) => debug!(board = %act.name(), "no power detection from the switch: {e}"),
                    Err(p) => debug!(board = %act.name(), "reading power detection failed: {p}"),
                }
            }));
        });
    }

    pub(super) fn faulted(&mut self, ctx: &mut Context<Self>, e: &PowerError) {
        let msg = e.to_string();
        if self.fault.as_deref() != Some(msg.as_str()) {
            warn!(board = %self.name(), "power fault: {msg}");
            self.event("fault", None, Some(&msg));
        }
        self.fault = Some(msg);
        self.power = PowerState::Unknown;
        self.report();
        self.schedule_probe(ctx);
    }

    pub(super) fn schedule_probe(&mut self, ctx: &mut Context<Self>) {
        if self.probe_pending.is_some() {
            return;
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.policy.retry_max);
        self.probe_pending = Some(ctx.run_later(delay, |act, ctx| {
            act.probe_pending = None;
            act.probe(ctx);
        }));
    }

    /// Reads the port's real state.
    pub(super) fn probe(&mut self, ctx: &mut Context<Self>) {
        let port = self.port.clone();
        let (group, portno) = (self.cfg.group, self.cfg.port);
        let generation = self.generation;
        let fut = catch(async move { port.lock().await.get(group, portno).await });
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(move |res, act, ctx| {
            if generation != act.generation {
                return;
            }
            match res {
                Ok(Ok(state)) => {
                    act.healthy(state.into(), ctx);
                    act.pay_owed_off(ctx);
                }
                Ok(Err(e)) => act.faulted(ctx, &e),
                Err(p) => act.crashed(ctx, &p),
            }
        }));
    }

    /// Switches off an unclaimed board found on at start (or whose
    /// release's power-off the switch did not take), once the port answers.
    pub(super) fn pay_owed_off(&mut self, ctx: &mut Context<Self>) {
        if !self.owe_off || self.duty.claim().is_some() || self.duty == Duty::Testing || self.fault.is_some() {
            return;
        }
        if self.power == PowerState::Off && self.power_inflight == 0 {
            self.owe_off = false;
            return;
        }
        info!(board = %self.name(), "unclaimed board is on: powering it off");
        let f = self.switch_power(PowerAction::Off, "labd".into());
        ctx.spawn(f.map(|r, act, _| {
            if r.is_ok() {
                act.owe_off = false;
            }
        }));
    }

    /// Switches the port off the actor's loop; the result updates the
    /// board's view, its fault state and the event log.
    pub(super) fn switch_power(
        &mut self,
        action: PowerAction,
        by: String,
    ) -> ResponseActFuture<Self, Result<PowerState, ApiError>> {
        if action == PowerAction::EnsureOff
            && self.power == PowerState::Off
            && self.fault.is_none()
            && self.power_inflight == 0
        {
            return Box::pin(actix::fut::ready(Ok(PowerState::Off)));
        }
        self.power_inflight += 1;
        let port = self.port.clone();
        let (group, portno) = (self.cfg.group, self.cfg.port);
        let delay = self.policy.cycle_delay;
        let generation = self.generation;
        let fut = catch(async move {
            let mut c = port.lock().await;
            match action {
                PowerAction::On => (None, c.set(group, portno, true).await.map(|_| PowerState::On)),
                PowerAction::Off | PowerAction::EnsureOff => {
                    (None, c.set(group, portno, false).await.map(|_| PowerState::Off))
                }
                PowerAction::Cycle => {
                    if let Err(e) = c.set(group, portno, false).await {
                        return (None, Err(e));
                    }
                    tokio::time::sleep(delay).await;
                    (Some(PowerState::Off), c.set(group, portno, true).await.map(|_| PowerState::On))
                }
            }
        });
        Box::pin(actix::fut::wrap_future::<_, Self>(fut).map(move |res, act, ctx| {
            if generation == act.generation {
                act.power_inflight = act.power_inflight.saturating_sub(1);
            }
            let (partial, res) = match res {
                Ok(r) => r,
                Err(p) => {
                    act.crashed(ctx, &p);
                    return Err(ApiError::new(
                        Code::Internal,
                        format!("board {} failed while switching power and was restarted; try again", act.name()),
                    ));
                }
            };
            let m = &act.power_metrics;
            let (ops, failures) = match action {
                PowerAction::On => (&m.on, &m.on_failed),
                PowerAction::Off | PowerAction::EnsureOff => (&m.off, &m.off_failed),
                PowerAction::Cycle => (&m.cycle, &m.cycle_failed),
            };
            ops.inc();
            if res.is_err() {
                failures.inc();
            }
            if generation != act.generation {
                return Err(ApiError::new(Code::Internal, "board restarted during the request; try again"));
            }
            match res {
                Ok(state) => {
                    act.event(action.name(), Some(&by), Some(state.as_str()));
                    if matches!(action, PowerAction::On | PowerAction::Cycle) {
                        // A board that draws power anew is detected anew.
                        act.delivery = None;
                    }
                    act.healthy(state, ctx);
                    Ok(state)
                }
                Err(e) => {
                    act.faulted(ctx, &e);
                    if let Some(p) = partial {
                        // The first half of a cycle worked: say so.
                        act.power = p;
                        act.report();
                    }
                    Err(ApiError::new(Code::DeviceFault, format!("{}: {e}", action.name())))
                }
            }
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    On,
    Off,
    Cycle,
    /// Off, unless the port is known to be off already (last read back or
    /// read from the switch, no fault since): what release and expiry use,
    /// so that returning an idle board costs no SNMP round trip.
    EnsureOff,
}

impl PowerAction {
    fn name(self) -> &'static str {
        match self {
            PowerAction::On => "power_on",
            PowerAction::Off | PowerAction::EnsureOff => "power_off",
            PowerAction::Cycle => "power_cycle",
        }
    }
}

/// Switch the board's power and read it back; answers the state reached.
#[derive(Message)]
#[rtype(result = "Result<PowerState, ApiError>")]
pub struct Power {
    pub action: PowerAction,
    /// Who asked (a user, or `labd` for expiry), for the event log.
    pub by: String,
    /// The claim it is for (None: labd's own).
    pub handle: Option<String>,
}

impl Handler<Power> for BoardActor {
    type Result = ResponseActFuture<Self, Result<PowerState, ApiError>>;

    /// Runs the SNMP work off the actor's loop.
    fn handle(&mut self, msg: Power, _ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.duty.can_power(self.name(), msg.handle.as_deref()) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        if let Err(e) = self.card_allows_power(msg.action) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        self.switch_power(msg.action, msg.by)
    }
}
