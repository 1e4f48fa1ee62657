//! The board actor's jail: built when a claim starts, rebuilt by reinit,
//! removed (and its data wiped) when the claim ends, stopped with its data
//! kept when labd stops, and adopted or rebuilt when labd starts again.
//!
//! All jail work is blocking (namespaces, mounts, netlink, processes), so it
//! runs on tokio's blocking pool; the actor only records the outcome.

use std::path::PathBuf;

use actix::prelude::*;
use tracing::{error, info, warn};

use super::BoardActor;
use crate::console::relay::Relay;
use crate::db::Claim;
use crate::jail::services::{kept_host_key, read_authorized_keys};
use crate::jail::{Jail, JailInfo, JailSettings, JailSpec};
use crate::protocol::{ApiError, Code};

/// What a board needs to build its jails.
#[derive(Debug, Clone)]
pub struct JailCtx {
    pub settings: JailSettings,
    /// The board's stable index (addresses, uids).
    pub index: u32,
    pub keys_dir: PathBuf,
    pub keep_host_key: bool,
    /// labcli, made available inside the jail.
    pub labcli: PathBuf,
    /// The directory of this board's jail socket (labd binds `jail.sock`
    /// in it; the jail binds the directory at /run/boardlab).
    pub socket_dir: PathBuf,
}

impl JailCtx {
    /// Where a claim's own ssh host key is kept on the host (root only),
    /// so that a jail rebuilt after a labd restart keeps its host key.
    fn claim_keys(&self) -> PathBuf {
        self.settings.root_dir.join(".claimkeys")
    }
}

type JailFut<T> = ResponseActFuture<BoardActor, T>;

fn ready<T: 'static>(v: T) -> JailFut<T> {
    Box::pin(actix::fut::ready(v))
}

impl BoardActor {
    /// Builds the claim's jail (when jails are on). Any stale jail of this
    /// board is removed first.
    pub(super) fn build_jail(&mut self, claim: Claim) -> JailFut<Result<Option<JailInfo>, ApiError>> {
        let Some(jc) = self.jail_ctx.clone() else { return ready(Ok(None)) };
        let board = self.cfg().name.clone();
        let Some(link) = self.cfg().network.clone() else {
            return ready(Err(ApiError::new(
                Code::DeviceFault,
                format!("board {board} has no network link configured, and jails need one"),
            )));
        };
        let root_dir = Some(jc.settings.root_dir.display().to_string());
        let stale = self.jail.take();
        self.relay = None;
        let relay = match self.console().map(Relay::start) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                warn!(board = %board, "no console device for the jail: {e}");
                None
            }
            None => None,
        };
        let console_path = relay.as_ref().map(|r| r.slave.clone());
        let user = claim.user.clone();
        let handle = claim.handle.clone();
        self.jail_busy = true;
        let name = board.clone();
        let work = tokio::task::spawn_blocking(move || -> Result<(Jail, JailInfo), String> {
            if let Some(old) = stale {
                if let Err(e) = old.destroy(false) {
                    warn!(board = %name, "removing a stale jail: {e}");
                }
            }
            let keys =
                read_authorized_keys(&jc.keys_dir, &claim.user).map_err(|e| format!("the claimant's ssh keys: {e}"))?;
            let host_key = if jc.keep_host_key {
                kept_host_key(&jc.settings.root_dir, &name)
            } else {
                kept_host_key(&jc.claim_keys(), &claim.handle)
            }
            .map_err(|e| format!("the jail's host key: {e}"))?;
            let spec = JailSpec {
                board: name,
                handle: claim.handle,
                user: claim.user,
                index: jc.index,
                link,
                settings: jc.settings.clone(),
                authorized_keys: keys,
                host_key: Some(host_key),
                jail_socket: Some(jc.socket_dir.clone()),
                console: console_path,
                labcli: jc.labcli.clone(),
            };
            // A jail nobody knows of (its labd was killed mid-build, or
            // its state was lost) must not block the board forever.
            match crate::jail::sweep_board(&spec) {
                Ok(done) => {
                    for line in done {
                        warn!(board = %spec.board, "{line}");
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
            Jail::create(&spec).map_err(|e| e.to_string())
        });
        Box::pin(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, _| {
            act.jail_busy = false;
            let res = res.map_err(|e| format!("the jail builder failed: {e}")).and_then(|r| r);
            match res {
                Ok((jail, info)) => {
                    match serde_json::to_string(&jail) {
                        Ok(json) => {
                            if let Err(e) = act.db().set_claim_jail(&handle, Some(&json)) {
                                error!(board = %board, "cannot record the jail: {e}");
                            }
                        }
                        Err(e) => error!(board = %board, "cannot encode the jail: {e}"),
                    }
                    act.event("jail_up", Some(&user), Some(&info.ip.to_string()));
                    info!(board = %board, ip = %info.ip, "jail ready");
                    act.jail = Some(jail);
                    act.relay = relay;
                    Ok(Some(info))
                }
                Err(e) => {
                    act.event("jail_failed", Some(&user), Some(&e));
                    error!(board = %board, "building the jail: {e}");
                    // The claimant learns what failed, not where the host
                    // keeps its jails (the operators' log has the paths).
                    let shown = match &root_dir {
                        Some(r) if !r.is_empty() => e.replace(r.as_str(), "<jail root_dir>"),
                        _ => e,
                    };
                    Err(ApiError::new(Code::Internal, format!("building the jail of {board}: {shown}")))
                }
            }
        }))
    }

    /// Stops and removes the jail. `wipe` also deletes the claim's data
    /// and host key (release, reinit); without it both stay for a rebuild
    /// (labd stopping).
    pub(super) fn teardown_jail(&mut self, handle: &str, wipe: bool) -> JailFut<()> {
        self.relay = None;
        let jail = self.jail.take();
        let Some(keys) = self.jail_ctx.as_ref().map(|jc| jc.claim_keys()) else {
            // Jails are off: nothing to tear down, and no thread hop.
            return ready(());
        };
        let (board, handle) = (self.name().to_string(), handle.to_string());
        if jail.is_none() && !wipe {
            return ready(());
        }
        self.jail_busy = true;
        let work = tokio::task::spawn_blocking(move || {
            if let Some(j) = jail {
                if let Err(e) = j.destroy(wipe) {
                    error!(board = %board, "removing the jail: {e}");
                }
            }
            if wipe && crate::console::log::valid_handle(&handle) {
                // Where kept_host_key put it.
                let dir = keys.join(".hostkeys");
                let _ = std::fs::remove_file(dir.join(&handle));
                let _ = std::fs::remove_file(dir.join(format!("{handle}.pub")));
            }
        });
        Box::pin(actix::fut::wrap_future::<_, Self>(work).map(|_, act, _| {
            act.jail_busy = false;
        }))
    }

    /// At start: adopt the claim's jail if it still runs (labd was killed),
    /// or build it again (labd was stopped, or the jail died).
    pub(super) fn adopt_jail(&mut self, ctx: &mut Context<Self>) {
        if self.jail.is_some() || self.jail_ctx.is_none() || self.jail_busy {
            return;
        }
        let Some(claim) = self.claim().cloned() else { return };
        let stored: Option<Jail> = claim.jail.as_deref().and_then(|j| serde_json::from_str(j).ok());
        if let Some(state) = stored {
            if state.alive() && state.handle == claim.handle {
                info!(board = %self.name(), "adopted the running jail of the claim");
                self.event("jail_adopted", Some(&claim.user), None);
                self.jail = Some(state);
                return;
            }
            // Leftovers of a dead jail are removed before the rebuild.
            self.jail = Some(state);
        }
        info!(board = %self.name(), "rebuilding the jail of the claim");
        let f = self.build_jail(claim);
        ctx.spawn(f.map(|_, _, _| ()));
    }
}

/// Rebuild the claim's jail from scratch, keeping the claim.
#[derive(Message)]
#[rtype(result = "Result<Option<JailInfo>, ApiError>")]
pub struct Reinit {
    pub handle: String,
}

impl Handler<Reinit> for BoardActor {
    type Result = ResponseActFuture<Self, Result<Option<JailInfo>, ApiError>>;

    /// Tears the jail down (wiping its data) and builds a clean one; a
    /// failed rebuild is reported, and the claim stays.
    fn handle(&mut self, msg: Reinit, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(claim) = self.claim().cloned().filter(|c| c.handle == msg.handle) else {
            return ready(Err(ApiError::new(Code::NotClaimed, "the claim ended meanwhile")));
        };
        if self.jail_busy {
            return ready(Err(ApiError::new(Code::Busy, "the jail is being built or removed; try again")));
        }
        self.event("reinit", Some(&claim.user), None);
        let down = self.teardown_jail(&claim.handle, true);
        Box::pin(down.then(move |_, act: &mut Self, _| act.build_jail(claim)))
    }
}

/// labd is stopping: stop the jail, keep its data for the next start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for BoardActor {
    type Result = ResponseActFuture<Self, ()>;

    /// Removes every namespace, link, mount and process of the jail.
    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        let handle = self.claim().map(|c| c.handle.clone()).unwrap_or_default();
        self.teardown_jail(&handle, false)
    }
}
