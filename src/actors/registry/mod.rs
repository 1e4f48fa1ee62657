//! The registry: routes every request, keeps the claim book, supervises
//! the board actors.
//!
//! Every claim decision is the [`ClaimBook`]'s, made inside this one actor
//! one message at a time, so two clients racing for the last board are
//! serialised here. A decision is kept by the [`Ledger`] (SQLite on its
//! own thread) before anyone hears of it. The boards' actors do the
//! hardware work and report their power and health back; from the book
//! and those reports the registry publishes a [`Snapshot`] that the
//! socket front end answers `status` from without asking anyone.
//!
//! Files: [`claims`] (claim, release, renew, maintenance, waiters,
//! leases), [`boards`] (starting and supervising board actors, their
//! reports), [`console`] (who may use which console), [`status`] (the
//! snapshot, the dump and the latest events), [`history`] (the event
//! log for `history`, and its pruning), [`watchdog`] (systemd's
//! watchdog, pinged from this actor's loop), [`selftest`] (operators'
//! selftests), [`health`] (health checks after releases, on a schedule,
//! and asked for).

mod boards;
mod claims;
mod console;
mod health;
mod held;
mod history;
mod selftest;
mod status;
mod storage;
mod watchdog;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use super::board::BoardActor;
use crate::claims::ledger::Ending;
use crate::claims::{Claim, ClaimBook, Ledger, LedgerError, Policy};
use crate::config::{self, Config};
use crate::db::{Db, DbError, DbWriter};
use crate::metrics::Metrics;
use crate::protocol::{ApiError, Code, ConsoleState, JailInfo, PowerState};

pub use boards::{BoardRestarted, BoardStatus, JailStatus, StopAll};
pub use claims::Exec;
pub use console::{ClaimNow, ConsoleGrant, HowIsClaim, OpenConsole};
pub use history::FollowLab;
pub use status::{with_handle, GetDump, GetEvents, Snapshot, StatusRow};
pub use watchdog::StartWatchdog;

/// What the registry knows of a board besides its claim (which is the
/// book's).
struct Entry {
    cfg: Arc<config::Board>,
    switch: Arc<config::Switch>,
    /// The switch's bound on requests in flight (one per switch).
    switch_limit: Arc<tokio::sync::Semaphore>,
    addr: Option<Addr<BoardActor>>,
    power: PowerState,
    console: Option<ConsoleState>,
    delivery: Option<crate::power::Detection>,
    /// The current claim's jail, as its board reported it.
    jail: Option<JailInfo>,
    lease_timer: Option<SpawnHandle>,
    restarts: u32,
    /// The board's line of `status`, rebuilt when the board changes.
    row: Arc<StatusRow>,
}

/// A claim waiting for a board: where its answer goes.
struct Waiting {
    tx: oneshot::Sender<Result<crate::protocol::Reply, ApiError>>,
}

/// What the board actors are started with, read once at start.
#[derive(Default)]
struct Boot {
    initial_power: HashMap<String, PowerState>,
    /// Board name → the record of its claim's running jail (handle, JSON).
    jails: HashMap<String, (String, String)>,
}

pub struct Registry {
    cfg: Arc<Config>,
    book: ClaimBook,
    ledger: Arc<dyn Ledger>,
    /// The state database's thread, for events and the dump.
    db: DbWriter,
    /// The state database itself, for the board actors' jail work (done
    /// on blocking threads, never on this loop).
    jail_db: Db,
    boards: BTreeMap<String, Entry>,
    waiters: HashMap<u64, Waiting>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// A publication of the snapshot is scheduled (see `reported`).
    publish_pending: bool,
    /// Boards whose actor has not reported yet since labd started.
    unreported: HashSet<String>,
    jails: boards::JailShared,
    boot: Boot,
    started: Instant,
    restarts_total: u64,
    /// What `/metrics` counts (claims, restarts; the boards' own).
    metrics: Arc<Metrics>,
    /// The other hosts' boards, in a lab of several: their claims count
    /// against a user's `max_claims_per_user`.
    lab: Option<watch::Receiver<Arc<crate::cluster::view::LabView>>>,
    /// When idle boards were last health-checked (`[health.CLASS] every`).
    schedule: health::Schedule,
    /// One `history` in the database's queue at a time (see
    /// [`history`](Registry::history)).
    history_turn: Arc<tokio::sync::Semaphore>,
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl Registry {
    /// Builds the registry from the configuration and what the ledger
    /// kept. `initial_power` holds the port states read at start.
    pub async fn new(
        cfg: Arc<Config>,
        db: Db,
        writer: DbWriter,
        ledger: Arc<dyn Ledger>,
        initial_power: HashMap<String, PowerState>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RegistryError> {
        let pairs: Vec<(String, String)> = cfg.boards.iter().map(|b| (b.name.clone(), b.class.clone())).collect();
        db.sync_boards(&pairs)?;
        let policy = Policy {
            lease_default: cfg.lease.default,
            lease_max: cfg.lease.max,
            max_total: cfg.lease.max_total,
            max_claims_per_user: cfg.policy.max_claims_per_user,
        };
        let mut book = ClaimBook::new(policy, &pairs);
        let (claims, maintenance) = ledger.load().await?;
        for gone in book.restore(claims, &maintenance) {
            warn!(board = %gone.board, user = %gone.user, "dropped the claim on a board that is no longer configured");
            let detail = Some("board is no longer configured".to_string());
            if let Err(e) = ledger.end(&gone, Ending::Dropped, &gone.user, detail).await {
                error!(board = %gone.board, "cannot drop the claim: {e}");
            }
        }
        // Unhealthy boards stay so across restarts (this host's own
        // database, whichever ledger keeps the claims).
        let threshold = |class: &str| cfg.health.get(class).map_or(1, |h| h.failures);
        book.restore_health(&db.unhealthy()?, &db.health_failures()?, &threshold);
        let jails = boards::JailShared::new(&cfg, &db)?;
        let mut jail_records = HashMap::new();
        for b in &cfg.boards {
            if let Some(r) = db.jail_of(&b.name)? {
                jail_records.insert(b.name.clone(), r);
            }
        }
        let boot = Boot { initial_power, jails: jail_records };
        let limits: HashMap<&str, Arc<tokio::sync::Semaphore>> =
            cfg.switches.values().map(|sw| (sw.name.as_str(), crate::power::switch_limit(sw))).collect();
        let mut boards = BTreeMap::new();
        for b in &cfg.boards {
            // Config::load guarantees the switch exists.
            let (Some(switch), Some(limit)) = (cfg.switches.get(&b.switch), limits.get(b.switch.as_str())) else {
                continue;
            };
            let row = Arc::new(StatusRow::placeholder(&b.name, &b.class));
            boards.insert(
                b.name.clone(),
                Entry {
                    cfg: Arc::new(b.clone()),
                    switch: Arc::new(switch.clone()),
                    switch_limit: limit.clone(),
                    addr: None,
                    power: PowerState::Unknown,
                    console: None,
                    delivery: None,
                    jail: None,
                    lease_timer: None,
                    restarts: 0,
                    row,
                },
            );
        }
        let (snapshot, _) = watch::channel(Arc::new(Snapshot::default()));
        let unreported = names_of(&cfg);
        let mut r = Registry {
            cfg,
            book,
            ledger,
            db: writer,
            jail_db: db,
            boards,
            waiters: HashMap::new(),
            snapshot,
            publish_pending: false,
            unreported,
            jails,
            boot,
            started: Instant::now(),
            restarts_total: 0,
            metrics,
            lab: None,
            schedule: health::Schedule::default(),
            history_turn: Arc::new(tokio::sync::Semaphore::new(1)),
        };
        let names: Vec<String> = r.boards.keys().cloned().collect();
        for n in &names {
            r.refresh_row(n);
        }
        r.publish();
        Ok(r)
    }

    /// The published status, for the socket front end.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    /// Logs an event on the database's thread.
    fn event(&self, kind: &'static str, board: &str, user: Option<&str>, detail: Option<String>) {
        let (board, user) = (board.to_string(), user.map(str::to_string));
        self.db.fire(move |db| {
            if let Err(e) = db.event(kind, Some(&board), user.as_deref(), detail.as_deref()) {
                error!(board = %board, "cannot log event {kind}: {e}");
            }
        });
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
        let claims: Vec<Claim> = self.book.claims().cloned().collect();
        for c in &claims {
            self.arm_lease(c, ctx);
        }
        self.start_pruning(ctx);
        self.start_health_schedule(ctx);
        info!(boards = names.len(), claims = claims.len(), "registry started");
    }
}

fn names_of(cfg: &Config) -> HashSet<String> {
    cfg.boards.iter().map(|b| b.name.clone()).collect()
}

/// The protocol error for a ledger write that failed.
fn ledger_err(e: LedgerError) -> ApiError {
    error!("claims ledger: {e}");
    match e {
        LedgerError::Unavailable(why) => ApiError::new(
            Code::Unavailable,
            format!("the lab's shared state cannot be reached, nothing changed: {why}"),
        ),
        LedgerError::Taken(board) => ApiError::new(
            Code::NoDeviceAvailable,
            format!("board {board} is held by another claim in the lab's records; nothing changed, try again"),
        ),
        e => ApiError::new(Code::Internal, format!("state database error: {e}")),
    }
}
