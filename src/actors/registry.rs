//! The registry: routes every request, owns the claims, supervises boards.
//!
//! All claim decisions happen inside this one actor, one message at a time,
//! so two clients racing for the last board are serialised here; the claim
//! is written to SQLite (whose `UNIQUE(board)` backs this up) before anyone
//! hears about it. The registry keeps a view of every board (claim, power,
//! health) fed by the board actors, so `status` never waits on hardware.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use super::board::{Attach, BoardActor, BoardParts, Detach, JailCtx, Power, PowerAction, Reinit, Shutdown};
use super::Identity;
use crate::config::{self, Config, JailMode};
use crate::console::{Console, ConsoleSettings};
use crate::db::{Claim, Db, DbError};
use crate::protocol::{ApiError, BoardState, BoardView, Call, Code, PowerState};
use crate::server::{self, Front};
use crate::util::{format_duration, new_handle, now_unix_ms, rfc3339_ms};

/// Longest `--wait` honoured (a year): beyond it the number is a mistake.
const MAX_WAIT: Duration = Duration::from_secs(365 * 86400);

type Reply = Result<Value, ApiError>;
type Fut = ResponseActFuture<Registry, Reply>;

struct Entry {
    cfg: Arc<config::Board>,
    /// The board's console, shared with its actor (which owns it): the
    /// registry only routes attach and log requests to it.
    console: Option<Console>,
    /// The current claim's handle, watched by console sessions so that a
    /// claimant's session ends with the claim.
    claim_tx: watch::Sender<Option<String>>,
    switch: Arc<config::Switch>,
    addr: Option<Addr<BoardActor>>,
    claim: Option<Claim>,
    lease_timer: Option<SpawnHandle>,
    maintenance: bool,
    power: PowerState,
    fault: Option<String>,
    /// False between a restart and the new incarnation's first report.
    alive: bool,
    /// Released, power-off still in flight: not yet claimable.
    releasing: bool,
    /// What the claimant is told about the claim's jail.
    jail_info: Option<Value>,
    /// The task serving the claim's jail socket.
    jail_socket: Option<tokio::task::JoinHandle<()>>,
    restarts: u32,
}

impl Entry {
    fn claimable(&self) -> bool {
        self.alive && !self.maintenance && self.fault.is_none() && self.claim.is_none() && !self.releasing
    }

    fn state(&self) -> BoardState {
        if !self.alive {
            BoardState::Offline
        } else if self.maintenance {
            BoardState::Maintenance
        } else if self.fault.is_some() {
            BoardState::Faulted
        } else if self.claim.is_some() {
            BoardState::Claimed
        } else {
            BoardState::Available
        }
    }

    fn view(&self) -> BoardView {
        BoardView {
            board: self.cfg.name.clone(),
            class: self.cfg.class.clone(),
            state: self.state(),
            user: self.claim.as_ref().map(|c| c.user.clone()),
            power: self.power,
            claimed_at: self.claim.as_ref().map(|c| rfc3339_ms(c.claimed_at)),
            expires_at: self.claim.as_ref().map(|c| rfc3339_ms(c.expires_at)),
            fault: self.fault.clone(),
            console: self.console.as_ref().map(|c| c.status().state().to_string()),
        }
    }
}

struct Waiter {
    user: String,
    lease: Duration,
    power: bool,
    tx: oneshot::Sender<Reply>,
}

pub struct Registry {
    cfg: Arc<Config>,
    /// The socket front end's shared state, for serving jail sockets.
    front: Option<Rc<Front>>,
    /// Board name → jail index, from SQLite.
    jail_indexes: HashMap<String, u32>,
    /// The jails' settings, with the switches' addresses added to the
    /// destinations jails may never reach.
    jail_settings: crate::jail::JailSettings,
    /// Jails built at once, shared by every board (`[jail] parallel_builds`).
    jail_builds: Arc<tokio::sync::Semaphore>,
    /// Where jail cgroups go on this host (found at start).
    jail_cgroups: crate::jail::cgroup::Hierarchy,
    /// Board name → its link's identity as last recorded, from SQLite.
    link_ids: HashMap<String, crate::link::LinkId>,
    db: Db,
    boards: BTreeMap<String, Entry>,
    by_handle: HashMap<String, String>,
    classes: BTreeMap<String, Vec<String>>,
    waiters: HashMap<String, VecDeque<Waiter>>,
    initial_power: HashMap<String, PowerState>,
    /// Boards whose last release's power-off never happened (from the
    /// event log at start); their actors finish it.
    owed_off: std::collections::HashSet<String>,
    started: Instant,
    restarts_total: u64,
}

fn db_err(e: DbError) -> ApiError {
    error!("state database: {e}");
    ApiError::new(Code::Internal, format!("state database error: {e}"))
}

fn ready(r: Reply) -> Fut {
    Box::pin(actix::fut::ready(r))
}

fn view_json(v: &BoardView) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A user-supplied string, shortened for an error message.
fn shown(s: &str) -> String {
    let mut t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    format!("{t:?}")
}

impl Registry {
    /// Builds the registry from the configuration and the stored state.
    /// `initial_power` holds the port states read at start, by board.
    pub fn new(cfg: Arc<Config>, db: Db, initial_power: HashMap<String, PowerState>) -> Result<Self, DbError> {
        let pairs: Vec<(String, String)> = cfg.boards.iter().map(|b| (b.name.clone(), b.class.clone())).collect();
        for orphan in db.sync_boards(&pairs)? {
            warn!(board = %orphan.board, user = %orphan.user, "dropped the claim on a board that is no longer configured");
        }
        let maintenance = db.maintenance()?;
        let mut boards = BTreeMap::new();
        for b in &cfg.boards {
            let switch = match cfg.switches.get(&b.switch) {
                Some(s) => Arc::new(s.clone()),
                // Config::load guarantees the switch exists.
                None => continue,
            };
            boards.insert(
                b.name.clone(),
                Entry {
                    console: None,
                    claim_tx: watch::channel(None).0,
                    cfg: Arc::new(b.clone()),
                    switch,
                    addr: None,
                    claim: None,
                    lease_timer: None,
                    maintenance: maintenance.contains(&b.name),
                    power: PowerState::Unknown,
                    fault: None,
                    alive: false,
                    releasing: false,
                    jail_info: None,
                    jail_socket: None,
                    restarts: 0,
                },
            );
        }
        let mut by_handle = HashMap::new();
        for c in db.claims()? {
            if let Some(e) = boards.get_mut(&c.board) {
                by_handle.insert(c.handle.clone(), c.board.clone());
                e.claim_tx.send_replace(Some(c.handle.clone()));
                e.claim = Some(c);
            }
        }
        let jail_settings = jail_settings(&cfg);
        let jail_indexes = db.jail_indexes()?;
        let link_ids = db
            .link_ids()?
            .into_iter()
            .filter_map(|(b, json)| serde_json::from_str(&json).ok().map(|id| (b, id)))
            .collect();
        let owed_off = db.owed_power_offs()?;
        Ok(Registry {
            owed_off,
            front: None,
            jail_builds: Arc::new(tokio::sync::Semaphore::new(cfg.jail.parallel_builds)),
            jail_cgroups: jail_cgroups(&cfg),
            jail_settings,
            jail_indexes,
            link_ids,
            classes: cfg.classes(),
            cfg,
            db,
            boards,
            by_handle,
            waiters: HashMap::new(),
            initial_power,
            started: Instant::now(),
            restarts_total: 0,
        })
    }

    fn spawn_board(&mut self, name: &str, ctx: &mut Context<Self>) -> Option<Addr<BoardActor>> {
        let socket_dir = self.jail_socket_dir(name);
        let e = self.boards.get_mut(name)?;
        let (cfg, switch) = (e.cfg.clone(), e.switch.clone());
        let (policy, db, me) = (self.cfg.power, self.db.clone(), ctx.address());
        let initial = self.initial_power.remove(name);
        let owe_off = self.owed_off.remove(name);
        if e.console.is_none() {
            e.console = cfg.console.as_ref().map(|c| {
                Console::start(ConsoleSettings {
                    board: cfg.name.clone(),
                    source: c.source.clone(),
                    baud: c.baud,
                    log_dir: self.cfg.daemon.log_dir.clone(),
                    log_max_bytes: self.cfg.console.log_max_bytes,
                    log_keep: self.cfg.console.log_keep,
                })
            });
        }
        let console = e.console.clone();
        let jail_ctx = match (self.cfg.daemon.jail, self.jail_indexes.get(name)) {
            (JailMode::Linux, Some(&index)) => Some(Arc::new(JailCtx {
                settings: self.jail_settings.clone(),
                index,
                keys_dir: self.cfg.jail.keys_dir.clone(),
                keep_host_key: self.cfg.jail.keep_host_key,
                labcli: labcli_path(),
                socket_dir,
                build_delay: build_delay(),
                builds: self.jail_builds.clone(),
                cgroups: self.jail_cgroups.clone(),
            })),
            _ => None,
        };
        let link_id = self.link_ids.get(name).cloned();
        let parts = BoardParts {
            cfg,
            switch,
            policy,
            db,
            registry: me,
            initial_power: initial,
            owe_off,
            console,
            jail_ctx,
            link_id,
            claim: e.claim.clone(),
        };
        let addr = Supervisor::start(move |_| BoardActor::new(parts));
        e.addr = Some(addr.clone());
        Some(addr)
    }

    /// The directory of a board's jail socket.
    fn jail_socket_dir(&self, board: &str) -> PathBuf {
        let base =
            self.cfg.daemon.socket.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/run/boardlab"));
        base.join("jail-sockets").join(board)
    }

    /// Starts serving the jail socket of `board`'s claim.
    fn open_jail_socket(&mut self, board: &str) -> Result<(), ApiError> {
        if self.cfg.daemon.jail != JailMode::Linux {
            return Ok(());
        }
        let path = self.jail_socket_dir(board).join("jail.sock");
        let Some(front) = self.front.clone() else { return Ok(()) };
        let Some(e) = self.boards.get_mut(board) else { return Ok(()) };
        let Some(c) = &e.claim else { return Ok(()) };
        if let Some(old) = e.jail_socket.take() {
            old.abort();
        }
        let task = server::serve_jail(front, &path, c.user.clone(), c.handle.clone())
            .map_err(|err| ApiError::new(Code::Internal, format!("opening the jail socket of {board}: {err}")))?;
        e.jail_socket = Some(task);
        Ok(())
    }

    fn close_jail_socket(&mut self, board: &str) {
        let path = self.jail_socket_dir(board).join("jail.sock");
        if let Some(e) = self.boards.get_mut(board) {
            e.jail_info = None;
            if let Some(t) = e.jail_socket.take() {
                t.abort();
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// The board's actor, started afresh if its mailbox is closed (an actor
    /// that died outside the supervisor's reach).
    fn board_addr(&mut self, name: &str, ctx: &mut Context<Self>) -> Option<Addr<BoardActor>> {
        let e = self.boards.get_mut(name)?;
        if let Some(a) = &e.addr {
            if a.connected() {
                return Some(a.clone());
            }
        }
        error!(board = %name, "board actor is gone; starting a new one");
        e.restarts += 1;
        e.alive = false;
        self.restarts_total += 1;
        let _ = self.db.event("respawn", Some(name), None, None);
        self.spawn_board(name, ctx)
    }

    fn arm_lease(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Some(e) = self.boards.get_mut(name) else { return };
        if let Some(h) = e.lease_timer.take() {
            ctx.cancel_future(h);
        }
        let Some(c) = &e.claim else { return };
        let left = Duration::from_millis(u64::try_from(c.expires_at - now_unix_ms()).unwrap_or(0));
        let (board, handle) = (name.to_string(), c.handle.clone());
        e.lease_timer = Some(ctx.run_later(left, move |act, ctx| {
            let current = act.boards.get(&board).and_then(|e| e.claim.as_ref()).map(|c| c.handle == handle);
            if current == Some(true) {
                info!(board = %board, "lease expired; releasing");
                if let Some(e) = act.boards.get_mut(&board) {
                    e.lease_timer = None;
                }
                let f = act.release(&board, "labd", "expire", ctx);
                ctx.spawn(f.map(|_, _, _| ()));
            }
        }));
    }

    fn lease_for(&self, secs: Option<u64>) -> Result<Duration, ApiError> {
        let max = self.cfg.lease.max;
        match secs {
            None => Ok(self.cfg.lease.default),
            Some(0) => Err(ApiError::new(Code::BadRequest, "lease must be at least 1 second")),
            Some(s) if Duration::from_secs(s) > max => Err(ApiError::new(
                Code::BadRequest,
                format!(
                    "lease {} is longer than the maximum {}",
                    format_duration(Duration::from_secs(s)),
                    format_duration(max)
                ),
            )),
            Some(s) => Ok(Duration::from_secs(s)),
        }
    }

    /// The board a request's handle names, if the caller holds it.
    fn resolve(&self, who: &Identity, handle: Option<String>) -> Result<String, ApiError> {
        let handle = match (&who.jail_handle, handle) {
            (Some(own), Some(h)) if *own != h => {
                return Err(ApiError::new(Code::HandleMismatch, "a jail's socket acts only on the jail's own claim"))
            }
            (Some(own), _) => own.clone(),
            (None, Some(h)) => h,
            (None, None) => {
                return Err(ApiError::new(Code::BadRequest, "a HANDLE is required (the one `claim` returned)"))
            }
        };
        let not_yours = || ApiError::new(Code::NotClaimed, format!("you hold no claim with handle {}", shown(&handle)));
        let board = self.by_handle.get(&handle).ok_or_else(not_yours)?;
        let e = self.boards.get(board).ok_or_else(not_yours)?;
        match &e.claim {
            Some(c) if c.user == who.user && c.handle == handle => Ok(board.clone()),
            _ => Err(not_yours()),
        }
    }

    fn board_named(&self, board: &str) -> Result<&Entry, ApiError> {
        self.boards
            .get(board)
            .ok_or_else(|| ApiError::new(Code::UnknownBoard, format!("no board is named {}", shown(board))))
    }

    fn admin_only(who: &Identity, what: &str) -> Result<(), ApiError> {
        if who.admin {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::PermissionDenied,
                format!("{what} is for operators (root and daemon.admins); you are {}", who.user),
            ))
        }
    }

    fn claim_reply(&self, name: &str) -> Reply {
        let e = self.boards.get(name).ok_or_else(|| ApiError::new(Code::Internal, "board vanished"))?;
        let mut v = view_json(&e.view());
        if let (Value::Object(m), Some(c)) = (&mut v, &e.claim) {
            m.insert("handle".into(), json!(c.handle));
            m.insert("jail".into(), e.jail_info.clone().unwrap_or(Value::Null));
        }
        Ok(v)
    }

    fn pick(&self, class: &str) -> Option<String> {
        self.classes.get(class)?.iter().find(|n| self.boards.get(*n).map(|e| e.claimable()).unwrap_or(false)).cloned()
    }

    fn class_summary(&self, class: &str) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for n in self.classes.get(class).into_iter().flatten() {
            if let Some(e) = self.boards.get(n) {
                *counts.entry(e.state().as_str()).or_default() += 1;
            }
        }
        counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
    }

    /// Gives board `name` to `user`: the claim is stored first, then the
    /// board is powered on if asked; a failed power-on undoes the claim.
    fn grant(&mut self, name: &str, user: &str, lease: Duration, power: bool, ctx: &mut Context<Self>) -> Fut {
        let handle = match new_handle() {
            Ok(h) => h,
            Err(e) => return ready(Err(ApiError::new(Code::Internal, format!("cannot make a handle: {e}")))),
        };
        let now = now_unix_ms();
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let claim = Claim {
            handle: handle.clone(),
            board: name.to_string(),
            user: user.to_string(),
            claimed_at: now,
            expires_at: now.saturating_add(lease_ms),
        };
        if let Err(e) = self.db.insert_claim(&claim) {
            return ready(Err(match e {
                DbError::AlreadyClaimed(b) => {
                    ApiError::new(Code::Busy, format!("board {b} was claimed meanwhile; try again"))
                }
                e => db_err(e),
            }));
        }
        let Some(e) = self.boards.get_mut(name) else {
            return ready(Err(ApiError::new(Code::Internal, "board vanished")));
        };
        let power_on = power || e.cfg.power_on_claim;
        e.claim_tx.send_replace(Some(handle.clone()));
        e.claim = Some(claim.clone());
        self.by_handle.insert(handle.clone(), name.to_string());
        self.arm_lease(name, ctx);
        info!(board = %name, user = %user, "claimed");
        if let Err(err) = self.open_jail_socket(name) {
            self.undo_claim(name, &handle, user, &err, ctx);
            return ready(Err(err));
        }
        let Some(addr) = self.board_addr(name, ctx) else {
            return ready(Err(ApiError::new(Code::Internal, "board vanished")));
        };
        let (name, user) = (name.to_string(), user.to_string());
        let req = addr.send(Attach { claim, power: power_on });
        Box::pin(actix::fut::wrap_future::<_, Self>(req).map(move |res, act, ctx| {
            let res = match res {
                Ok(r) => r,
                Err(e) => Err(ApiError::new(Code::Internal, format!("board actor unavailable: {e}"))),
            };
            #[cfg(feature = "fault-injection")]
            let res = match res {
                // The board did the work and its answer got lost (as when it
                // restarts mid-claim).
                Ok(_) if std::env::var_os("LABD_FAULT_LOSE_ATTACH_REPLY").is_some() => {
                    Err(ApiError::new(Code::Internal, "board actor unavailable: the answer was lost (injected)"))
                }
                r => r,
            };
            match res {
                Ok(attached) => {
                    if let Some(e) = act.boards.get_mut(&name) {
                        if let Some(p) = attached.power {
                            e.power = p;
                        }
                        e.jail_info = attached.jail.and_then(|j| serde_json::to_value(j).ok());
                    }
                    act.claim_reply(&name)
                }
                Err(err) => {
                    act.undo_claim(&name, &handle, &user, &err, ctx);
                    Err(ApiError::new(err.code, format!("claim of {name} undone: {}", err.message)))
                }
            }
        }))
    }

    fn undo_claim(&mut self, name: &str, handle: &str, user: &str, why: &ApiError, ctx: &mut Context<Self>) {
        if let Err(e) = self.db.delete_claim(handle, "claim_rolled_back", user, Some(&why.message)) {
            error!(board = %name, "cannot roll back claim: {e}");
        }
        self.by_handle.remove(handle);
        // The claim may have ended already (a release or an expiry while
        // its board was being prepared): then there is nothing of it left
        // to undo here, and whatever the board holds now is not its.
        let current = self.boards.get(name).and_then(|e| e.claim.as_ref()).is_some_and(|c| c.handle == handle);
        if let Some(e) = self.boards.get_mut(name) {
            if current {
                e.claim = None;
                e.claim_tx.send_replace(None);
            }
            if why.code == Code::DeviceFault && e.fault.is_none() {
                // The board actor reports the fault too; set it now so the
                // board is not handed out before that report arrives.
                e.fault = Some(why.message.clone());
            }
            if current {
                if let Some(h) = e.lease_timer.take() {
                    ctx.cancel_future(h);
                }
            }
        }
        if current {
            self.close_jail_socket(name);
        }
        // Powered off whatever happened: the power-on may have reached the
        // switch even when its answer did not reach us (the board actor
        // restarted mid-claim, say). A port known to be off costs no SNMP;
        // a silent switch makes the power-off owed until it answers.
        if let Some(addr) = self.board_addr(name, ctx) {
            addr.do_send(Detach { handle: handle.to_string(), by: user.to_string(), power_off: true });
        }
    }

    /// Ends the claim on `name` (`kind`: release, expire, force_release),
    /// then powers the board off; the board is claimable again once the
    /// power-off is done.
    fn release(&mut self, name: &str, by: &str, kind: &'static str, ctx: &mut Context<Self>) -> Fut {
        let Some(e) = self.boards.get_mut(name) else {
            return ready(Err(ApiError::new(Code::UnknownBoard, "no such board")));
        };
        let Some(claim) = e.claim.clone() else {
            return ready(Err(ApiError::new(Code::NotClaimed, format!("board {name} is not claimed"))));
        };
        if let Err(err) = self.db.delete_claim(&claim.handle, kind, by, None) {
            return ready(Err(db_err(err)));
        }
        e.claim = None;
        e.claim_tx.send_replace(None);
        e.releasing = true;
        if let Some(h) = e.lease_timer.take() {
            ctx.cancel_future(h);
        }
        self.by_handle.remove(&claim.handle);
        self.close_jail_socket(name);
        info!(board = %name, user = %claim.user, by = %by, "{kind}");
        let Some(addr) = self.board_addr(name, ctx) else {
            return ready(Err(ApiError::new(Code::Internal, "board vanished")));
        };
        let name = name.to_string();
        let req = addr.send(Detach { handle: claim.handle.clone(), by: by.to_string(), power_off: true });
        Box::pin(actix::fut::wrap_future::<_, Self>(req).map(move |res, act, ctx| {
            let mut reply = json!({"board": name, "released": true, "user": claim.user});
            match flatten(res) {
                Ok(state) => reply["power"] = json!(state.as_str()),
                Err(e) => {
                    warn!(board = %name, "power-off after {kind} failed: {}", e.message);
                    reply["power"] = json!("unknown");
                    reply["warning"] = json!(format!("the board could not be powered off: {}", e.message));
                }
            }
            let class = match act.boards.get_mut(&name) {
                Some(e) => {
                    e.releasing = false;
                    e.cfg.class.clone()
                }
                None => return Ok(reply),
            };
            act.dispatch(&class, ctx);
            Ok(reply)
        }))
    }

    /// Hands free boards of `class` to its waiters, first come first served.
    fn dispatch(&mut self, class: &str, ctx: &mut Context<Self>) {
        loop {
            let Some(q) = self.waiters.get_mut(class) else { return };
            while q.front().map(|w| w.tx.is_closed()).unwrap_or(false) {
                q.pop_front();
            }
            if q.is_empty() {
                self.waiters.remove(class);
                return;
            }
            let Some(board) = self.pick(class) else { return };
            let Some(w) = self.waiters.get_mut(class).and_then(|q| q.pop_front()) else { return };
            let f = self.grant(&board, &w.user, w.lease, w.power, ctx);
            let tx = w.tx;
            ctx.spawn(f.map(move |res, act, ctx| {
                if let Err(Ok(v)) = tx.send(res) {
                    // The waiter left while its board was being prepared.
                    if let Some(b) = v.get("board").and_then(|b| b.as_str()) {
                        let b = b.to_string();
                        info!(board = %b, "waiter left; releasing the board it was given");
                        let f = act.release(&b, "labd", "release", ctx);
                        ctx.spawn(f.map(|_, _, _| ()));
                    }
                }
            }));
        }
    }

    fn claim(
        &mut self,
        who: Identity,
        class: String,
        power: bool,
        lease: Option<u64>,
        wait: Option<u64>,
        ctx: &mut Context<Self>,
    ) -> Fut {
        if !self.classes.contains_key(&class) {
            let known: Vec<&str> = self.classes.keys().map(|s| s.as_str()).collect();
            return ready(Err(ApiError::new(
                Code::UnknownClass,
                format!("no class {} (classes: {})", shown(&class), known.join(", ")),
            )));
        }
        let lease = match self.lease_for(lease) {
            Ok(l) => l,
            Err(e) => return ready(Err(e)),
        };
        let queued = self.waiters.get(&class).map(|q| q.iter().any(|w| !w.tx.is_closed())).unwrap_or(false);
        if !queued {
            if let Some(board) = self.pick(&class) {
                return self.grant(&board, &who.user, lease, power, ctx);
            }
        }
        let Some(wait) = wait else {
            return ready(Err(ApiError::new(
                Code::NoDeviceAvailable,
                format!("no {class} board is available ({})", self.class_summary(&class)),
            )));
        };
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(class.clone()).or_default().push_back(Waiter { user: who.user, lease, power, tx });
        let limit = Duration::from_secs(wait).min(MAX_WAIT);
        Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            match tokio::time::timeout(limit, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(ApiError::new(Code::Internal, "the wait was cancelled")),
                Err(_) => Err(ApiError::new(
                    Code::Timeout,
                    format!("no {class} board became available within {}", format_duration(limit)),
                )),
            }
        }))
    }

    fn power(&mut self, who: &Identity, handle: Option<String>, action: PowerAction, ctx: &mut Context<Self>) -> Fut {
        let name = match self.resolve(who, handle) {
            Ok(n) => n,
            Err(e) => return ready(Err(e)),
        };
        let Some(addr) = self.board_addr(&name, ctx) else {
            return ready(Err(ApiError::new(Code::Internal, "board vanished")));
        };
        let req = addr.send(Power { action, by: who.user.clone() });
        Box::pin(actix::fut::wrap_future::<_, Self>(req).map(move |res, act, _ctx| {
            let state = flatten(res)?;
            let e = act.boards.get_mut(&name).ok_or_else(|| ApiError::new(Code::Internal, "board vanished"))?;
            e.power = state;
            Ok(view_json(&e.view()))
        }))
    }

    /// The console a request may use: the claimant's own (handle), or for
    /// operators any board's (by handle or by board name). Returns the
    /// board, the console, whether the caller is the claimant, and the
    /// claim handle it concerns.
    fn console_target(
        &self,
        who: &Identity,
        handle: Option<String>,
    ) -> Result<(String, Console, Option<String>, bool), ApiError> {
        let (board, claimant) = match self.resolve(who, handle.clone()) {
            Ok(b) => (b, true),
            Err(e) if who.admin && who.jail_handle.is_none() => {
                let key = handle.unwrap_or_default();
                match self.by_handle.get(&key) {
                    Some(b) => (b.clone(), false),
                    None if self.boards.contains_key(&key) => (key, false),
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let e = self.boards.get(&board).ok_or_else(|| ApiError::new(Code::Internal, "board vanished"))?;
        let console = e.console.clone().ok_or_else(|| {
            ApiError::new(Code::DeviceFault, format!("board {board} has no serial console configured"))
        })?;
        Ok((board, console, e.claim.as_ref().map(|c| c.handle.clone()), claimant))
    }

    fn console_log(&mut self, who: &Identity, handle: Option<String>, tail: Option<u64>) -> Fut {
        let (board, console, claim, _) = match self.console_target(who, handle) {
            Ok(t) => t,
            Err(e) => return ready(Err(e)),
        };
        let Some(claim) = claim else {
            return ready(Err(ApiError::new(
                Code::NotClaimed,
                format!("board {board} is not claimed: there is no claim log"),
            )));
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(async move {
            match console.read_log(&claim, tail).await {
                Ok(bytes) => Ok(json!({"board": board, "log": String::from_utf8_lossy(&bytes)})),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({"board": board, "log": ""})),
                Err(e) => Err(ApiError::new(Code::Internal, format!("reading the console log of {board}: {e}"))),
            }
        }))
    }

    fn reinit(&mut self, who: &Identity, handle: Option<String>, ctx: &mut Context<Self>) -> Fut {
        let name = match self.resolve(who, handle) {
            Ok(n) => n,
            Err(e) => return ready(Err(e)),
        };
        let handle =
            self.boards.get(&name).and_then(|e| e.claim.as_ref()).map(|c| c.handle.clone()).unwrap_or_default();
        let Some(addr) = self.board_addr(&name, ctx) else {
            return ready(Err(ApiError::new(Code::Internal, "board vanished")));
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(addr.send(Reinit { handle })).map(move |res, act, _| {
            let info = res.map_err(|e| ApiError::new(Code::Internal, format!("board actor unavailable: {e}")))??;
            if let Some(e) = act.boards.get_mut(&name) {
                e.jail_info = info.and_then(|j| serde_json::to_value(j).ok());
            }
            act.claim_reply(&name)
        }))
    }

    fn renew(&mut self, who: &Identity, handle: Option<String>, lease: Option<u64>, ctx: &mut Context<Self>) -> Reply {
        let name = self.resolve(who, handle)?;
        let lease = self.lease_for(lease)?;
        let expires = now_unix_ms().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let handle =
            self.boards.get(&name).and_then(|e| e.claim.as_ref()).map(|c| c.handle.clone()).unwrap_or_default();
        if !self.db.renew_claim(&handle, expires, &who.user).map_err(db_err)? {
            return Err(ApiError::new(Code::NotClaimed, "the claim ended meanwhile"));
        }
        if let Some(c) = self.boards.get_mut(&name).and_then(|e| e.claim.as_mut()) {
            c.expires_at = expires;
        }
        self.arm_lease(&name, ctx);
        self.claim_reply(&name)
    }

    fn maintenance(&mut self, who: &Identity, board: &str, on: bool, ctx: &mut Context<Self>) -> Reply {
        Self::admin_only(who, "maintenance")?;
        let e = self.board_named(board)?;
        if on {
            if let Some(c) = &e.claim {
                return Err(ApiError::new(
                    Code::Busy,
                    format!("board {board} is claimed by {}; wait for the release or force-release it first", c.user),
                ));
            }
        }
        let class = e.cfg.class.clone();
        self.db.set_maintenance(board, on, &who.user).map_err(db_err)?;
        if let Some(e) = self.boards.get_mut(board) {
            e.maintenance = on;
        }
        if !on {
            self.dispatch(&class, ctx);
        }
        let e = self.board_named(board)?;
        Ok(view_json(&e.view()))
    }

    fn classes_reply(&self, available_only: bool) -> Reply {
        let mut out = Vec::new();
        for (class, names) in &self.classes {
            let available =
                names.iter().filter(|n| self.boards.get(*n).map(|e| e.claimable()).unwrap_or(false)).count();
            if available_only && available == 0 {
                continue;
            }
            out.push(json!({"class": class, "total": names.len(), "available": available}));
        }
        Ok(Value::Array(out))
    }

    fn status_reply(&self, who: &Identity, mine: bool) -> Reply {
        let v: Vec<Value> = self
            .boards
            .values()
            .filter(|e| !mine || e.claim.as_ref().map(|c| c.user == who.user).unwrap_or(false))
            .map(|e| view_json(&e.view()))
            .collect();
        Ok(Value::Array(v))
    }

    /// The operators' status dump.
    pub fn dump(&self) -> Value {
        let boards: Vec<Value> = self
            .boards
            .values()
            .map(|e| {
                let mut v = view_json(&e.view());
                if let Value::Object(m) = &mut v {
                    m.insert("switch".into(), json!(e.cfg.switch));
                    m.insert("group".into(), json!(e.cfg.group));
                    m.insert("port".into(), json!(e.cfg.port));
                    m.insert("maintenance".into(), json!(e.maintenance));
                    m.insert("restarts".into(), json!(e.restarts));
                    if let Some(c) = &e.console {
                        m.insert("console_detail".into(), serde_json::to_value(c.status()).unwrap_or(Value::Null));
                    }
                }
                v
            })
            .collect();
        let waiters: BTreeMap<&String, usize> = self
            .waiters
            .iter()
            .map(|(c, q)| (c, q.iter().filter(|w| !w.tx.is_closed()).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        let events: Vec<Value> = self
            .db
            .recent_events(50)
            .unwrap_or_default()
            .into_iter()
            .map(|e| json!({"at": rfc3339_ms(e.at), "kind": e.kind, "board": e.board, "user": e.user, "detail": e.detail}))
            .collect();
        json!({
            "daemon": {
                "config": self.cfg.dir,
                "uptime_s": self.started.elapsed().as_secs(),
                "boards": self.boards.len(),
                "claims": self.by_handle.len(),
                "restarts": self.restarts_total,
            },
            "boards": boards,
            "waiters": waiters,
            "events": events,
        })
    }
}

fn flatten(r: Result<Result<PowerState, ApiError>, MailboxError>) -> Result<PowerState, ApiError> {
    match r {
        Ok(r) => r,
        Err(e) => Err(ApiError::new(Code::Internal, format!("board actor unavailable: {e}"))),
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Many boards and clients, one mailbox: the default capacity (16)
        // would make senders wait behind a burst of requests.
        ctx.set_mailbox_capacity(1 << 16);
        let names: Vec<String> = self.boards.keys().cloned().collect();
        for n in &names {
            self.spawn_board(n, ctx);
        }
        self.front = Some(Front::new(ctx.address(), self.cfg.clone()));
        for n in &names {
            if self.boards.get(n).map(|e| e.claim.is_some()).unwrap_or(false) {
                self.arm_lease(n, ctx);
                if let Err(e) = self.open_jail_socket(n) {
                    error!(board = %n, "{}", e.message);
                }
            }
        }
        info!(boards = names.len(), claims = self.by_handle.len(), "registry started");
    }
}

/// A request from a client, with the caller's identity.
#[derive(Message)]
#[rtype(result = "Result<Value, ApiError>")]
pub struct Exec {
    pub who: Identity,
    pub call: Call,
}

impl Handler<Exec> for Registry {
    type Result = ResponseActFuture<Self, Reply>;

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
        match msg.call {
            Call::Classes { available } => ready(self.classes_reply(available)),
            Call::Status { mine } => ready(self.status_reply(&who, mine)),
            Call::Claim { class, power, lease, wait } => self.claim(who, class, power, lease, wait, ctx),
            Call::Renew { handle, lease } => ready(self.renew(&who, handle, lease, ctx)),
            Call::Reinit { handle } => self.reinit(&who, handle, ctx),
            Call::Release { handle } => match self.resolve(&who, handle) {
                Ok(name) => self.release(&name, &who.user.clone(), "release", ctx),
                Err(e) => ready(Err(e)),
            },
            Call::PowerOn { handle } => self.power(&who, handle, PowerAction::On, ctx),
            Call::PowerOff { handle } => self.power(&who, handle, PowerAction::Off, ctx),
            Call::PowerCycle { handle } => self.power(&who, handle, PowerAction::Cycle, ctx),
            Call::ConsoleLog { handle, tail } => self.console_log(&who, handle, tail),
            Call::Console { .. } => ready(Err(ApiError::new(
                Code::BadRequest,
                "console turns the connection into a byte stream; labd handles it before routing",
            ))),
            Call::Whoami => ready(Ok(json!({"user": who.user, "uid": who.uid, "admin": who.admin}))),
            Call::Dump => ready(Self::admin_only(&who, "dump").map(|_| self.dump())),
            Call::Maintenance { board, on } => ready(self.maintenance(&who, &board, on, ctx)),
            Call::ForceRelease { board } => {
                if let Err(e) =
                    Self::admin_only(&who, "force-release").and_then(|_| self.board_named(&board).map(|_| ()))
                {
                    return ready(Err(e));
                }
                self.release(&board, &who.user.clone(), "force_release", ctx)
            }
            #[cfg(feature = "fault-injection")]
            Call::DebugPanic { board } => {
                if let Err(e) = Self::admin_only(&who, "debug_panic").and_then(|_| self.board_named(&board).map(|_| ()))
                {
                    return ready(Err(e));
                }
                let Some(addr) = self.board_addr(&board, ctx) else {
                    return ready(Err(ApiError::new(Code::Internal, "board vanished")));
                };
                Box::pin(actix::fut::wrap_future::<_, Self>(addr.send(super::board::DebugPanic)).map(|r, _, _| {
                    r.map_err(|e| ApiError::new(Code::Internal, e.to_string()))?.map(|_| json!({"panicked": true}))
                }))
            }
        }
    }
}

/// A board actor's report of its power and health.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BoardStatus {
    pub board: String,
    pub power: PowerState,
    pub fault: Option<String>,
}

impl Handler<BoardStatus> for Registry {
    type Result = ();

    /// Updates the view; a board that became claimable serves waiters.
    fn handle(&mut self, msg: BoardStatus, ctx: &mut Context<Self>) {
        let Some(e) = self.boards.get_mut(&msg.board) else { return };
        let was = e.claimable();
        e.power = msg.power;
        e.fault = msg.fault;
        e.alive = true;
        if !was && e.claimable() {
            let class = e.cfg.class.clone();
            self.dispatch(&class, ctx);
        }
    }
}

/// A board actor is being restarted by its supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BoardRestarted {
    pub board: String,
}

impl Handler<BoardRestarted> for Registry {
    type Result = ();

    /// Counts the restart; the board shows offline until it reports again.
    fn handle(&mut self, msg: BoardRestarted, _ctx: &mut Context<Self>) {
        if let Some(e) = self.boards.get_mut(&msg.board) {
            e.restarts += 1;
            e.alive = false;
            e.power = PowerState::Unknown;
            self.restarts_total += 1;
        }
    }
}

/// The dump, for SIGUSR1.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct GetDump;

impl Handler<GetDump> for Registry {
    type Result = MessageResult<GetDump>;

    /// The same dump operators get over the socket.
    fn handle(&mut self, _msg: GetDump, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.dump())
    }
}

/// A console attach request, answered with what the socket front end needs
/// to run the session.
#[derive(Message)]
#[rtype(result = "Result<ConsoleGrant, ApiError>")]
pub struct OpenConsole {
    pub who: Identity,
    pub handle: Option<String>,
    pub read_only: bool,
}

pub struct ConsoleGrant {
    pub board: String,
    pub console: Console,
    /// Whether the caller may type (the claimant, unless read-only asked).
    pub may_write: bool,
    /// The claim the session belongs to and a watch of the board's current
    /// claim: a claimant's session ends when its claim does. None for an
    /// operator watching.
    pub claim: Option<(String, watch::Receiver<Option<String>>)>,
}

impl Handler<OpenConsole> for Registry {
    type Result = Result<ConsoleGrant, ApiError>;

    /// Checks who may see the console, and how.
    fn handle(&mut self, msg: OpenConsole, _ctx: &mut Context<Self>) -> Self::Result {
        let (board, console, claim, claimant) = self.console_target(&msg.who, msg.handle)?;
        let watch = match (claimant, claim) {
            (true, Some(h)) => {
                let rx = self.boards.get(&board).map(|e| e.claim_tx.subscribe());
                rx.map(|rx| (h, rx))
            }
            _ => None,
        };
        Ok(ConsoleGrant { board, console, may_write: claimant && !msg.read_only, claim: watch })
    }
}

/// labd is stopping: every board stops its jail (claims and data stay).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

impl Handler<StopAll> for Registry {
    type Result = ResponseFuture<()>;

    /// Waits for every board to finish.
    fn handle(&mut self, _msg: StopAll, _ctx: &mut Context<Self>) -> Self::Result {
        let names: Vec<String> = self.boards.keys().cloned().collect();
        for n in &names {
            if let Some(e) = self.boards.get_mut(n) {
                if let Some(t) = e.jail_socket.take() {
                    t.abort();
                }
            }
        }
        let addrs: Vec<Addr<BoardActor>> = self.boards.values().filter_map(|e| e.addr.clone()).collect();
        Box::pin(async move {
            futures::future::join_all(addrs.iter().map(|a| a.send(Shutdown))).await;
        })
    }
}

/// labcli next to the running labd (they are installed side by side).
fn labcli_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("labcli")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/labcli"))
}

/// Test-only (`fault-injection`): `LABD_FAULT_JAIL_BUILD_DELAY_MS` makes
/// every jail build wait that long first.
fn build_delay() -> Duration {
    #[cfg(feature = "fault-injection")]
    if let Some(ms) = std::env::var("LABD_FAULT_JAIL_BUILD_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        return Duration::from_millis(ms);
    }
    Duration::ZERO
}

/// The jails' settings from the configuration, with every switch's
/// addresses added to `deny_out`: a jail never talks to a switch.
fn jail_settings(cfg: &Config) -> crate::jail::JailSettings {
    use std::net::ToSocketAddrs;
    let mut s = cfg.jail.settings.clone();
    if cfg.daemon.jail != JailMode::Linux {
        return s;
    }
    for sw in cfg.switches.values() {
        // The configuration always carries the port (HOST:PORT).
        match sw.host.to_socket_addrs() {
            Ok(addrs) => {
                for a in addrs {
                    let net = ipnet::IpNet::from(a.ip());
                    if !s.deny_out.contains(&net) {
                        s.deny_out.push(net);
                    }
                }
            }
            Err(e) => warn!(switch = %sw.name, "cannot resolve {} to keep jails away from it: {e}", sw.host),
        }
    }
    s
}

/// The host's cgroup hierarchy for jails, said loudly when there is none.
fn jail_cgroups(cfg: &Config) -> crate::jail::cgroup::Hierarchy {
    use crate::jail::cgroup::{detect, Hierarchy};
    if cfg.daemon.jail != JailMode::Linux {
        return Hierarchy::None { why: "jails are off".into() };
    }
    let h = detect();
    let l = cfg.jail.settings.limits;
    match &h {
        Hierarchy::None { why } => error!("jails run WITHOUT resource limits (processes, memory, CPU): {why}"),
        h => info!(
            pids_max = l.pids_max,
            memory_max = l.memory_max,
            cpu_weight = l.cpu_weight,
            "jail limits through {h:?}"
        ),
    }
    h
}
