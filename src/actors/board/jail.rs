//! The board actor's jail: built when a claim starts, rebuilt by reinit,
//! removed (and its data wiped) when the claim ends, stopped with its data
//! kept when labd stops, and adopted or rebuilt when labd starts again.
//!
//! All jail work is blocking (namespaces, mounts, links, processes) and
//! runs on tokio's blocking pool. It is ordered per board by [`JailCell`]:
//! every build, teardown and link check takes the board's jail lock, in
//! the order the actor asked, so no two of them ever overlap. The claim
//! the board serves (`current`) is checked by a build before it starts and
//! again when its jail is ready: a jail finished for a claim that ended
//! meanwhile (a release, an expiry, a force-release during the build) is
//! torn down at once, never stored, and its board never powered for it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{error, info, warn};

use super::link::check_blocking;
use super::{BoardActor, Duty};
use crate::actors::registry::JailStatus;
use crate::claims::Claim;
use crate::config::Network;
use crate::console::relay::Relay;
use crate::db::Db;
use crate::jail::hostcert::{self, CertSpec};
use crate::jail::services::{kept_host_key, read_authorized_keys};
use crate::jail::{v6pool, Jail, JailError, JailInfo, JailSettings, JailSpec};
use crate::link::LinkId;
use crate::protocol::{ApiError, Code};

/// What a board needs to build its jails.
#[derive(Debug, Clone)]
pub struct JailCtx {
    pub settings: JailSettings,
    /// The board's stable index (addresses, uids).
    pub index: u32,
    pub keys_dir: PathBuf,
    pub keep_host_key: bool,
    /// The lab's SSH host CA: each jail's host key gets a certificate.
    pub host_ca: Option<crate::sshca::HostCa>,
    /// labcli, made available inside the jail.
    pub labcli: PathBuf,
    /// The directory of this board's jail socket (labd binds `jail.sock`
    /// in it; the jail binds the directory at /run/boardlab).
    pub socket_dir: PathBuf,
    /// Test-only (`fault-injection`): every build waits this long first,
    /// so tests can end a claim while its jail is being built.
    pub build_delay: Duration,
    /// Shared by every board: jails built at once (`[jail]
    /// parallel_builds`); the rest wait in turn (the semaphore is fair).
    pub builds: Arc<tokio::sync::Semaphore>,
    /// Where jail cgroups go on this host.
    pub cgroups: crate::jail::cgroup::Hierarchy,
}

impl JailCtx {
    /// Where a claim's own ssh host key is kept on the host (root only),
    /// so that a jail rebuilt after a labd restart keeps its host key.
    fn claim_keys(&self) -> PathBuf {
        self.settings.root_dir.join(".claimkeys")
    }

    /// How `claim`'s jail certificate is made, with a host CA.
    pub(super) fn cert(&self, claim: &Claim) -> Option<CertSpec> {
        let ca = self.host_ca.clone()?;
        Some(CertSpec { ca, claimed_at_ms: claim.claimed_at, expires_at_ms: claim.expires_at })
    }
}

/// One board's jail across requests and actor restarts.
#[derive(Default)]
pub struct JailCell {
    /// The live jail. Its lock orders the board's jail work.
    pub slot: Arc<tokio::sync::Mutex<Option<Jail>>>,
    /// The handle of the claim the board serves; builds check it.
    current: std::sync::Mutex<Option<String>>,
}

impl JailCell {
    fn current(&self) -> Option<String> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set_current(&self, handle: Option<String>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = handle;
    }

    fn is_current(&self, handle: &str) -> bool {
        self.current().as_deref() == Some(handle)
    }
}

type JailFut<T> = ResponseActFuture<BoardActor, T>;

fn ready<T: 'static>(v: T) -> JailFut<T> {
    Box::pin(actix::fut::ready(v))
}

/// How a build ended.
enum Built {
    Ready(JailInfo),
    /// The claim ended before or while the jail was built; nothing of it
    /// is left. The link was checked again.
    Cancelled(Result<Option<LinkId>, String>),
    /// The build failed (everything it did undone); the link was checked.
    Failed(String, bool, Result<Option<LinkId>, String>),
}

/// Removes a claim's own host key (kept per claim for rebuilds).
fn remove_claim_key(jc: &JailCtx, handle: &str) {
    if crate::ids::valid_handle(handle) {
        let dir = jc.claim_keys().join(".hostkeys");
        let _ = std::fs::remove_file(dir.join(handle));
        let _ = std::fs::remove_file(dir.join(format!("{handle}.pub")));
    }
}

/// The claim's /64, if the lab has IPv6: the one its jail holds (a
/// rebuild), else a fresh random one (see [`crate::jail::v6pool`]).
fn take_prefix(jc: &JailCtx, db: &Db, board: &str, claim: &Claim) -> Result<Option<ipnet::Ipv6Net>, String> {
    let Some(v6) = jc.settings.ipv6 else { return Ok(None) };
    let reuse_after = i64::try_from(v6.reuse_after.as_millis()).unwrap_or(i64::MAX);
    let pick = |blocked: &std::collections::HashSet<String>| {
        let blocked = blocked.iter().filter_map(|p| p.parse().ok()).collect();
        v6pool::pick(&v6.pool, &blocked, v6pool::os_random).map(|p| p.to_string())
    };
    let cooling = crate::db::Cooling { reuse_after_ms: reuse_after, per_user: v6.fresh_per_user };
    match db.take_ipv6_prefix(board, &claim.handle, &claim.user, cooling, pick) {
        Ok(Some(p)) => p.parse().map(Some).map_err(|e| format!("the claim's IPv6 prefix {p:?}: {e}")),
        Ok(None) => Err(format!(
            "no /64 of the IPv6 pool {} is free (all held, or released within {})",
            v6.pool,
            crate::util::format_duration(v6.reuse_after)
        )),
        Err(e) => Err(format!("the claim's IPv6 prefix: {e}")),
    }
}

/// Gives back the /64 the board's jail held, if any; it cools down.
fn release_prefix(jc: &JailCtx, db: &Db, board: &str) {
    let Some(v6) = jc.settings.ipv6 else { return };
    let reuse_after = i64::try_from(v6.reuse_after.as_millis()).unwrap_or(i64::MAX);
    if let Err(e) = db.release_ipv6_prefix(board, reuse_after) {
        error!(board = %board, "cannot release the jail's IPv6 prefix: {e}");
    }
}

/// One build of a claim's jail, with everything it needs off the actor.
struct BuildJob {
    jc: Arc<JailCtx>,
    cell: Arc<JailCell>,
    board: String,
    network: Network,
    link_id: Option<LinkId>,
    claim: Claim,
    console: Option<PathBuf>,
    /// The board's card directory, when it has a card.
    sdcard: Option<PathBuf>,
    db: Db,
}

/// Builds the claim's jail (blocking, holding the board's jail lock).
fn build_blocking(job: BuildJob, slot: &mut Option<Jail>) -> Built {
    let BuildJob { jc, cell, board, network, link_id, claim, console, sdcard, db } = job;
    let (board, network) = (board.as_str(), &network);
    let check = || check_blocking(network, link_id.as_ref());
    if !cell.is_current(&claim.handle) {
        return Built::Cancelled(check());
    }
    if let Some(old) = slot.take() {
        if let Err(e) = old.destroy(false) {
            warn!(board = %board, "removing a stale jail: {e}");
        }
    }
    if !jc.build_delay.is_zero() {
        std::thread::sleep(jc.build_delay);
    }
    let spec = (|| -> Result<JailSpec, String> {
        let keys =
            read_authorized_keys(&jc.keys_dir, &claim.user).map_err(|e| format!("the claimant's ssh keys: {e}"))?;
        let host_key = if jc.keep_host_key {
            kept_host_key(&jc.settings.root_dir, board)
        } else {
            kept_host_key(&jc.claim_keys(), &claim.handle)
        }
        .map_err(|e| format!("the jail's host key: {e}"))?;
        Ok(JailSpec {
            board: board.to_string(),
            handle: claim.handle.clone(),
            user: claim.user.clone(),
            index: jc.index,
            link: network.clone(),
            settings: jc.settings.clone(),
            authorized_keys: keys,
            host_key: Some(host_key),
            host_cert: jc.cert(&claim),
            jail_socket: Some(jc.socket_dir.clone()),
            console,
            sdcard: sdcard.clone(),
            labcli: jc.labcli.clone(),
            link_id: link_id.clone(),
            cgroups: jc.cgroups.clone(),
            ipv6_prefix: take_prefix(&jc, &db, board, &claim)?,
        })
    })();
    let spec = match spec {
        Ok(s) => s,
        Err(e) => return Built::Failed(e, false, check()),
    };
    // The socket itself comes with the claim (the front end binds it).
    if let Err(e) = crate::jail::socket_dir(&jc.socket_dir) {
        return Built::Failed(format!("the jail socket's directory: {e}"), false, check());
    }
    // A jail nobody knows of (its labd was killed mid-build, or its state
    // was lost) must not block the board forever.
    match crate::jail::sweep_board(&spec) {
        Ok(done) => done.iter().for_each(|l| warn!(board = %board, "{l}")),
        Err(e) => return Built::Failed(e.to_string(), false, check()),
    }
    let (jail, info) = match Jail::create(&spec) {
        Ok(j) => j,
        Err(e) => {
            release_prefix(&jc, &db, board);
            let link = matches!(e, JailError::Link(_));
            return Built::Failed(e.to_string(), link, check());
        }
    };
    if !cell.is_current(&claim.handle) {
        info!(board = %board, "the claim ended while its jail was built; removing the jail");
        if let Err(e) = jail.destroy(true) {
            error!(board = %board, "removing the jail of an ended claim: {e}");
        }
        remove_claim_key(&jc, &claim.handle);
        release_prefix(&jc, &db, board);
        return Built::Cancelled(check());
    }
    match serde_json::to_string(&jail) {
        Ok(json) => {
            if let Err(e) = db.set_jail(board, Some((&claim.handle, &json))) {
                error!(board = %board, "cannot record the jail: {e}");
            }
        }
        Err(e) => error!(board = %board, "cannot encode the jail: {e}"),
    }
    *slot = Some(jail);
    Built::Ready(info)
}

impl BoardActor {
    /// Tells the registry the claim's jail is up (built or adopted).
    fn jail_up(&self, handle: &str, info: JailInfo) {
        self.registry.do_send(JailStatus {
            board: self.name().to_string(),
            handle: handle.to_string(),
            info: Some(info),
        });
    }

    /// Builds the claim's jail (when jails are on), in turn with the
    /// board's other jail work.
    pub(super) fn build_jail(&mut self, claim: Claim) -> JailFut<Result<Option<JailInfo>, ApiError>> {
        let Some(jc) = self.jail_ctx.clone() else { return ready(Ok(None)) };
        let board = self.cfg().name.clone();
        let Some(network) = self.cfg().network.clone() else {
            return ready(Err(ApiError::new(
                Code::DeviceFault,
                format!("board {board} has no network link configured, and jails need one"),
            )));
        };
        let relay = match self.console().map(Relay::start) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                warn!(board = %board, "no console device for the jail: {e}");
                None
            }
            None => None,
        };
        let console_path = relay.as_ref().map(|r| r.slave.clone());
        let (user, handle) = (claim.user.clone(), claim.handle.clone());
        let (cell, db, link_id) = (self.jail_cell.clone(), self.db().clone(), self.link.id.clone());
        let root_dir = jc.settings.root_dir.display().to_string();
        let sdcard = self.card_dir();
        let job =
            BuildJob { jc, cell, board: board.clone(), network, link_id, claim, console: console_path, sdcard, db };
        let build_seconds = self.metrics.jail_build_seconds.clone();
        let work = async move {
            let mut slot = job.cell.slot.clone().lock_owned().await;
            // The board's turn first, then the lab's: a board waiting for
            // its own teardown holds no build slot.
            let permit = job.jc.builds.clone().acquire_owned().await;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let t0 = std::time::Instant::now();
                let built = build_blocking(job, &mut slot);
                if matches!(built, Built::Ready(_)) {
                    build_seconds.observe(t0.elapsed().as_secs_f64());
                }
                built
            })
            .await
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(work).map(move |res, act, ctx| {
            let res = res.unwrap_or_else(|e| Built::Failed(format!("the jail builder failed: {e}"), false, Ok(None)));
            match res {
                Built::Ready(info) => {
                    act.event("jail_up", Some(&user), Some(&info.ip.to_string()));
                    info!(board = %board, ip = %info.ip, "jail ready");
                    act.relay = relay;
                    act.jail_up(&handle, info.clone());
                    act.link_checked(None, ctx);
                    Ok(Some(info))
                }
                Built::Cancelled(link) => {
                    act.link_checked(Some(link), ctx);
                    Err(ApiError::new(
                        Code::NotClaimed,
                        format!("the claim on {board} ended (released or expired) while its jail was being built"),
                    ))
                }
                Built::Failed(e, link_fault, link) => {
                    act.link_checked(Some(link), ctx);
                    act.event("jail_failed", Some(&user), Some(&e));
                    error!(board = %board, handle = %handle, "building the jail: {e}");
                    // The claimant learns what failed, not where the host
                    // keeps its jails (the operators' log has the paths).
                    let shown = e.replace(root_dir.as_str(), "<jail root_dir>");
                    let code = if link_fault { Code::DeviceFault } else { Code::Internal };
                    Err(ApiError::new(code, format!("building the jail of {board}: {shown}")))
                }
            }
        }))
    }

    /// Stops and removes the board's jail, in turn with its other jail
    /// work, then checks the link it gave back. `wipe` also deletes the
    /// claim's data and host key (release, reinit); without it both stay
    /// for a rebuild (labd stopping).
    pub(super) fn teardown_jail(&mut self, handle: &str, wipe: bool) -> JailFut<()> {
        self.relay = None;
        let Some(jc) = self.jail_ctx.clone() else {
            // Jails are off: nothing to tear down, and no thread hop.
            return ready(());
        };
        let (board, handle) = (self.name().to_string(), handle.to_string());
        let (cell, network, link_id) = (self.jail_cell.clone(), self.cfg().network.clone(), self.link.id.clone());
        let db = self.db.clone();
        let work = async move {
            let mut slot = cell.slot.clone().lock_owned().await;
            tokio::task::spawn_blocking(move || {
                let had = slot.take();
                let was = had.is_some();
                if let Some(j) = had {
                    if let Err(e) = j.destroy(wipe) {
                        error!(board = %board, "removing the jail: {e}");
                    }
                }
                if let Err(e) = db.set_jail(&board, None) {
                    error!(board = %board, "cannot forget the jail record: {e}");
                }
                if wipe {
                    remove_claim_key(&jc, &handle);
                    release_prefix(&jc, &db, &board);
                }
                (was || wipe).then(|| network.map(|n| check_blocking(&n, link_id.as_ref())).unwrap_or(Ok(None)))
            })
            .await
            .unwrap_or_else(|e| Some(Err(format!("removing the jail failed: {e}"))))
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(work).map(|res, act, ctx| {
            if let Some(r) = res {
                act.link_checked(Some(r), ctx);
            }
        }))
    }

    /// In the background, in turn with the board's jail work: the empty
    /// file systems of the board's next claim, so that its build need not
    /// wait for mkfs (unless a jail holds the board meanwhile).
    pub(super) fn prepare_next(&mut self, ctx: &mut Context<Self>) {
        let (Some(jc), Some(network)) = (self.jail_ctx.clone(), self.cfg().network.clone()) else { return };
        let (cell, board) = (self.jail_cell.clone(), self.name().to_string());
        let fut = async move {
            let slot = cell.slot.clone().lock_owned().await;
            if slot.is_some() {
                return;
            }
            let _ = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                if let Err(e) = crate::jail::prepare_images(&board, jc.index, &network, &jc.settings) {
                    warn!(board = %board, "preparing the next claim's file systems: {e}");
                }
            })
            .await;
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut));
    }

    /// At start: adopt the claim's jail if it still runs (labd was killed),
    /// or build it again (labd was stopped, or the jail died); without a
    /// claim, check and park the board's link.
    pub(super) fn adopt_jail(&mut self, ctx: &mut Context<Self>) {
        let claim = self.claim().cloned();
        self.jail_cell.set_current(claim.as_ref().map(|c| c.handle.clone()));
        let held = self.jail_cell.slot.try_lock().map(|s| s.is_some()).unwrap_or(true);
        if held {
            // A supervised restart: the jail (or its build) carries on.
            return;
        }
        let Some(claim) = claim.filter(|_| self.jail_ctx.is_some()) else {
            if self.jail_ctx.is_some() {
                self.sweep_and_check(ctx);
            } else {
                self.check_link(ctx);
            }
            return;
        };
        let stored: Option<Jail> = self
            .jail_record
            .take()
            .filter(|(handle, _)| *handle == claim.handle)
            .and_then(|(_, record)| serde_json::from_str(&record).ok())
            .map(|mut j: Jail| {
                hostcert::complete_info(&mut j);
                j
            });
        if let Some(state) = stored {
            if state.alive() && state.handle == claim.handle {
                info!(board = %self.name(), "adopted the running jail of the claim");
                self.event("jail_adopted", Some(&claim.user), None);
                self.jail_up(&claim.handle, state.info.clone());
                self.replug_console(&state, ctx);
                if let Ok(mut s) = self.jail_cell.slot.try_lock() {
                    *s = Some(state);
                }
                self.link.phase = super::link::LinkPhase::InJail;
                return;
            }
            // Leftovers of a dead jail are removed before the rebuild.
            if let Ok(mut s) = self.jail_cell.slot.try_lock() {
                *s = Some(state);
            }
        }
        info!(board = %self.name(), "rebuilding the jail of the claim");
        let f = self.build_jail(claim);
        ctx.spawn(f.map(|_, _, _| ()));
    }

    /// An adopted jail's console: its relay died with the last labd, so a
    /// new one is made and its pty mounted in the jail.
    fn replug_console(&mut self, jail: &Jail, ctx: &mut Context<Self>) {
        let (Some(jc), Some(console)) = (self.jail_ctx.clone(), self.console()) else { return };
        let relay = match Relay::start(console) {
            Ok(r) => r,
            Err(e) => {
                warn!(board = %self.name(), "no console device for the adopted jail: {e}");
                return;
            }
        };
        let (jail, pty, board) = (jail.clone(), relay.slave.clone(), self.name().to_string());
        let exe = jc.settings.init_exe.clone();
        let work =
            tokio::task::spawn_blocking(move || crate::jail::console::replug(&exe, &jail, &pty).map(|()| jail.handle));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(work).map(move |r, act: &mut Self, _| match r {
            Ok(Ok(handle)) if act.serves(&handle) => {
                info!(board = %board, "the adopted jail's console is plugged in again");
                act.relay = Some(relay);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(board = %board, "{e}"),
            Err(e) => warn!(board = %board, "plugging the console into the adopted jail failed: {e}"),
        }));
    }

    /// An unclaimed board at start: whatever a jail of it left behind (a
    /// labd killed while building or removing it) is removed, which brings
    /// its link back, and the link is checked and parked.
    fn sweep_and_check(&mut self, ctx: &mut Context<Self>) {
        let (Some(jc), Some(network)) = (self.jail_ctx.clone(), self.cfg().network.clone()) else { return };
        let (cell, link_id, board) = (self.jail_cell.clone(), self.link.id.clone(), self.name().to_string());
        let db = self.db.clone();
        let fut = async move {
            let slot = cell.slot.clone().lock_owned().await;
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                // A /64 held by a jail labd was killed while removing.
                release_prefix(&jc, &db, &board);
                match crate::jail::sweep_leftovers(
                    &board,
                    jc.index,
                    &network,
                    &jc.settings,
                    &jc.cgroups,
                    link_id.as_ref(),
                ) {
                    Ok(done) => done.iter().for_each(|l| warn!(board = %board, "{l}")),
                    Err(e) => warn!(board = %board, "sweeping the board's jail leftovers: {e}"),
                }
                let checked = check_blocking(&network, link_id.as_ref());
                if let Err(e) = crate::jail::prepare_images(&board, jc.index, &network, &jc.settings) {
                    warn!(board = %board, "preparing the next claim's file systems: {e}");
                }
                checked
            })
            .await
            .unwrap_or_else(|e| Err(format!("checking the board's link failed: {e}")))
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(|res, act, ctx| act.link_checked(Some(res), ctx)));
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
        let claim = match self.duty.can_reinit(self.name(), &msg.handle) {
            Ok(c) => c,
            Err(e) => return ready(Err(e)),
        };
        self.duty = Duty::Reinitializing(claim.clone());
        self.event("reinit", Some(&claim.user), None);
        let claim2 = claim.clone();
        let down = self.teardown_jail(&claim.handle, true).then(|_, act: &mut Self, _| act.card_release(false));
        Box::pin(down.then(move |_, act: &mut Self, _| act.build_jail(claim2)).map(move |r, act: &mut Self, _| {
            if act.duty == Duty::Reinitializing(claim.clone()) {
                act.duty = Duty::Serving(claim);
            }
            r
        }))
    }
}

/// labd is stopping: stop the jail, keep its data for the next start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for BoardActor {
    type Result = ResponseActFuture<Self, ()>;

    /// Removes every namespace, link, mount and process of the jail; no
    /// build starts after this.
    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        let handle = self.claim().map(|c| c.handle.clone()).unwrap_or_default();
        self.duty = Duty::Stopped;
        self.jail_cell.set_current(None);
        Box::pin(self.teardown_jail(&handle, false).then(|_, act: &mut Self, _| act.card_shutdown()))
    }
}
