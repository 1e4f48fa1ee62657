//! The board's network link (see [`crate::link`]): parked on the host
//! while no jail holds it, and checked again every time a jail lets go of
//! it. With jails on, a link that is missing or is not the recorded
//! device faults the board (it is never offered to a claim) until a check
//! finds it back; with jails off the state only shows in the dump.
//!
//! A VLAN board has nothing on the host between claims (its jail makes
//! and removes the sub-interface): its trunk must exist.

use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;
use tracing::{error, info, warn};

use super::BoardActor;
use crate::config::Network;
use crate::link::{self, LinkId};

/// How often a missing link is looked for again.
const RECHECK: Duration = Duration::from_secs(5);

/// Where the board's link is, as far as labd knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkPhase {
    /// No network configured.
    None,
    /// Not checked yet.
    Unknown,
    /// On the host, down, IPv6 off, dropped by the host table.
    Parked,
    /// Held by the claim's jail.
    InJail,
    /// Missing or not the recorded device (the message says which).
    Missing(String),
}

/// The board's link and what is known of it.
pub struct LinkState {
    pub network: Option<Network>,
    /// Its identity, recorded while parked (kept in the state database).
    pub id: Option<LinkId>,
    pub phase: LinkPhase,
    pub recheck: Option<SpawnHandle>,
}

impl LinkState {
    pub fn new(network: Option<Network>, id: Option<LinkId>) -> LinkState {
        let phase = if network.is_some() { LinkPhase::Unknown } else { LinkPhase::None };
        LinkState { network, id, phase, recheck: None }
    }
}

/// Checks the board's link on the host and parks it (blocking): the
/// dedicated interface must be the recorded device, a VLAN's trunk must
/// exist. Run only while no jail holds the link.
pub fn check_blocking(network: &Network, id: Option<&LinkId>) -> Result<Option<LinkId>, String> {
    match network {
        Network::Interface(name) => link::check_and_park(name, id).map(Some),
        Network::Vlan { trunk, .. } => match link::host_link(trunk) {
            Ok(Some(_)) => Ok(None),
            Ok(None) => Err(format!("the trunk {trunk} of the board's VLAN is missing")),
            Err(e) => Err(e.to_string()),
        },
    }
}

impl BoardActor {
    /// The link's fault, when it keeps the board from being claimed.
    pub(super) fn link_fault(&self) -> Option<String> {
        match (&self.link.phase, self.jail_ctx.is_some()) {
            (LinkPhase::Missing(m), true) => Some(m.clone()),
            _ => None,
        }
    }

    /// Records the outcome of a check (`None`: a jail holds the link).
    pub(super) fn link_checked(&mut self, res: Option<Result<Option<LinkId>, String>>, ctx: &mut Context<Self>) {
        let before = self.link_fault();
        match res {
            None => self.link.phase = LinkPhase::InJail,
            Some(Ok(id)) => {
                if let LinkPhase::Missing(m) = &self.link.phase {
                    info!(board = %self.name(), "the board's link is back (was: {m})");
                    self.event("link_back", None, None);
                }
                self.link.phase = LinkPhase::Parked;
                if id.is_some() && id != self.link.id {
                    self.link.id = id;
                    if let Some(json) = self.link.id.as_ref().and_then(|i| serde_json::to_string(i).ok()) {
                        let board = self.name().to_string();
                        self.events.fire(move |db| {
                            if let Err(e) = db.set_link_id(&board, &json) {
                                error!(board = %board, "cannot record the link's identity: {e}");
                            }
                        });
                    }
                }
            }
            Some(Err(m)) => {
                if self.link.phase != LinkPhase::Missing(m.clone()) {
                    warn!(board = %self.name(), "{m}");
                    self.event("link_fault", None, Some(&m));
                }
                self.link.phase = LinkPhase::Missing(m);
                if self.link.recheck.is_none() {
                    self.link.recheck = Some(ctx.run_later(RECHECK, |act, ctx| {
                        act.link.recheck = None;
                        act.check_link(ctx);
                    }));
                }
            }
        }
        if before != self.link_fault() {
            self.report();
        }
    }

    /// Checks the link off the actor's loop, in turn with the board's jail
    /// work (never while a jail is being built or taken down), unless a
    /// jail holds it.
    pub(super) fn check_link(&mut self, ctx: &mut Context<Self>) {
        let Some(network) = self.link.network.clone() else { return };
        let id = self.link.id.clone();
        let cell = self.jail_cell.clone();
        let fut = async move {
            let slot = cell.slot.clone().lock_owned().await;
            if slot.is_some() {
                return None;
            }
            let r = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                check_blocking(&network, id.as_ref())
            })
            .await;
            Some(r.unwrap_or_else(|e| Err(format!("checking the board's link failed: {e}"))))
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(|res, act, ctx| act.link_checked(res, ctx)));
    }
}
