//! The board's microSD card (`storage` in its board file): which side of
//! its mux it is on, its node in the claim's jail, flashing images from
//! the jail. Mechanisms are in [`crate::storage`].
//!
//! The rule: the board and the host never have the card at once. The
//! card goes to the host only while the board is off (a request may ask
//! to switch it off first), and the board is not powered on while the
//! card is on the host side or being switched or flashed. The card's work
//! is blocking and runs on tokio's blocking pool, one operation at a time
//! (the mux's lock); a second request meanwhile is told the card is busy.
//! A claim's end (release, expiry, reinit) and labd's start put the card
//! off, its node gone from the jail; a flash under way is cancelled.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tracing::{info, warn};

use super::{BoardActor, PowerAction};
use crate::config::Storage;
use crate::protocol::{ApiError, Code, SdFlashed, SdProgress, SdView};
use crate::storage::flash::{self, FlashError, Progress};
use crate::storage::jailfile::{self, OpenError};
use crate::storage::{node, Mux, Side, StorageError};

type Fut<T> = ResponseActFuture<BoardActor, T>;

fn ready<T: 'static>(v: T) -> Fut<T> {
    Box::pin(actix::fut::ready(v))
}

/// What the card is doing and where it is.
#[derive(Default)]
struct CardState {
    /// Where it is (None: unknown, before the start-up switch or after a
    /// failed one).
    side: Option<Side>,
    /// Its block device on the host, while on the host side.
    device: Option<PathBuf>,
    /// Its node is in the jail.
    in_jail: bool,
    busy: Option<&'static str>,
    flashed: Option<SdFlashed>,
    error: Option<String>,
    /// The card's size, once seen on the host side: an image too large
    /// for it is refused before the card is touched.
    size: Option<u64>,
}

/// The board's card, kept across a supervised restart of its actor.
pub struct Card {
    cfg: Storage,
    mux: Arc<Mutex<Box<dyn Mux>>>,
    state: Arc<Mutex<CardState>>,
    progress: Arc<Progress>,
    /// The board's node directory (with jails).
    dir: Option<PathBuf>,
    wipe: bool,
    started: bool,
}

impl Card {
    pub fn new(board: &str, cfg: Storage, dir: Option<PathBuf>, wipe: bool) -> Card {
        Card {
            mux: Arc::new(Mutex::new(crate::storage::driver(board, &cfg))),
            cfg,
            state: Arc::default(),
            progress: Arc::default(),
            dir,
            wipe,
            started: false,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn api(e: StorageError) -> ApiError {
    match e {
        StorageError::Busy(m) => ApiError::new(Code::Busy, m),
        StorageError::Missing(m) | StorageError::Device(m) => ApiError::new(Code::DeviceFault, m),
    }
}

fn flash_api(e: FlashError) -> ApiError {
    match e {
        FlashError::Image(m) => ApiError::new(Code::BadRequest, m),
        e => ApiError::new(Code::DeviceFault, e.to_string()),
    }
}

fn open_api(e: OpenError) -> ApiError {
    match e {
        OpenError::Missing(m) | OpenError::Refused(m) => ApiError::new(Code::BadRequest, m),
        OpenError::Denied(m) => ApiError::new(Code::PermissionDenied, m),
        OpenError::Failed(m) => ApiError::new(Code::Internal, format!("opening the image: {m}")),
    }
}

/// The jail a card operation works with: its root's host uid, and its
/// init (for opening files in it).
#[derive(Clone, Copy)]
struct JailFacts {
    uid: u32,
    pid: i32,
    start: u64,
}

/// Puts the card on `side` off the host side: its node leaves the jail
/// first (nothing new opens it), and comes back if the mux refuses.
fn away(mux: &mut dyn Mux, dir: Option<&PathBuf>, back: Option<(PathBuf, u32)>, side: Side) -> Result<(), ApiError> {
    if let Some(d) = dir {
        node::unplug(d).map_err(|e| ApiError::new(Code::Internal, format!("removing the card's node: {e}")))?;
    }
    if let Err(e) = mux.set(side) {
        if let (Some(d), Some((dev, uid))) = (dir, back) {
            let _ = node::plug(d, &dev, uid);
        }
        return Err(api(e));
    }
    Ok(())
}

/// The bmap beside `path`: `PATH.bmap`, else the name without `.gz` or
/// `.xz` and `.bmap` (as bmaptool looks). None when neither exists.
fn open_bmap(exe: &std::path::Path, f: JailFacts, path: &str) -> Result<Option<std::fs::File>, ApiError> {
    let mut names = vec![format!("{path}.bmap")];
    for ext in [".gz", ".xz"] {
        if let Some(stem) = path.strip_suffix(ext) {
            names.push(format!("{stem}.bmap"));
        }
    }
    for n in names {
        match jailfile::open_in_jail(exe, f.pid, f.start, &n) {
            Ok(file) => return Ok(Some(file)),
            Err(OpenError::Missing(_)) => continue,
            Err(e) => return Err(open_api(e)),
        }
    }
    Ok(None)
}

impl BoardActor {
    /// The card's node directory, for the jail's build: boards with a
    /// card, with jails on.
    pub(super) fn card_dir(&self) -> Option<PathBuf> {
        self.card.as_ref().and_then(|c| c.dir.clone())
    }

    /// Refuses to power the board on while the host may have the card.
    pub(super) fn card_allows_power(&self, action: PowerAction) -> Result<(), ApiError> {
        if !matches!(action, PowerAction::On | PowerAction::Cycle) {
            return Ok(());
        }
        let Some(card) = &self.card else { return Ok(()) };
        let st = card.state();
        if st.side == Some(Side::Host) || st.busy.is_some() {
            return Err(ApiError::new(
                Code::Busy,
                format!(
                    "the microSD card of {} is {}: switch it to the board (labcli sd board) or off (labcli sd off) \
                     before powering on; the board and the host never have the card at once",
                    self.name(),
                    st.busy.map(|b| format!("being {b}")).unwrap_or_else(|| "on the host side".into())
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn sd_view(&self) -> Option<SdView> {
        let card = self.card.as_ref()?;
        let st = card.state();
        let p = &card.progress;
        Some(SdView {
            board: self.name().to_string(),
            mux: card.cfg.mux().to_string(),
            side: st.side.map(Side::as_str).unwrap_or("unknown").to_string(),
            device: st.in_jail.then(|| "/dev/sdcard".to_string()),
            busy: st.busy.map(str::to_string),
            progress: (st.busy == Some("flashing")).then(|| SdProgress {
                phase: p.phase_name().to_string(),
                done: p.done.load(Ordering::Relaxed),
                total: p.total.load(Ordering::Relaxed),
            }),
            flashed: st.flashed.clone(),
            error: st.error.clone(),
        })
    }

    /// The current claim's jail, when it has one (read under the board's
    /// jail lock, so never half-built).
    fn jail_facts(&self) -> impl std::future::Future<Output = Option<JailFacts>> + 'static {
        let slot = self.jail_cell.slot.clone();
        async move {
            let s = slot.lock().await;
            s.as_ref().map(|j| JailFacts { uid: j.plan.host_uid, pid: j.init_pid, start: j.init_start })
        }
    }

    /// Runs `work` with the card's mux (blocking, in turn), then records
    /// what it did: the side reached (None: unchanged, Err: unknown).
    fn card_work<T: Send + 'static>(
        &mut self,
        facts: bool,
        work: impl FnOnce(&mut dyn Mux, Option<JailFacts>) -> Result<(T, CardUpdate), CardError> + Send + 'static,
    ) -> Fut<Result<T, ApiError>> {
        let Some(card) = &self.card else {
            return ready(Err(ApiError::new(Code::Internal, "no card")));
        };
        let (mux, state) = (card.mux.clone(), card.state.clone());
        let jail = facts.then(|| self.jail_facts());
        let job = async move {
            let f = match jail {
                Some(j) => j.await,
                None => None,
            };
            tokio::task::spawn_blocking(move || {
                let mut m = lock(&mux);
                work(m.as_mut(), f)
            })
            .await
            .unwrap_or_else(|e| {
                Err(CardError::unknown(ApiError::new(Code::Internal, format!("the card's work failed: {e}"))))
            })
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(job).map(move |r, _act, _| {
            let mut st = lock(&state);
            st.busy = None;
            match r {
                Ok((v, up)) => {
                    st.side = Some(up.side);
                    st.device = up.device;
                    st.in_jail = up.in_jail;
                    if let Some(f) = up.flashed {
                        st.flashed = Some(f);
                    }
                    if up.size.is_some() {
                        st.size = up.size;
                    }
                    st.error = None;
                    Ok(v)
                }
                Err(e) => {
                    st.error = Some(e.message.clone());
                    match e.after {
                        After::Unchanged => {}
                        After::Unknown => {
                            st.side = None;
                            st.in_jail = false;
                            st.device = None;
                        }
                        After::At(side) => {
                            st.side = Some(side);
                            st.in_jail = false;
                            st.device = None;
                        }
                    }
                    Err(e.into())
                }
            }
        }))
    }

    /// The claim ended (release, expiry, reinit): the card goes off (wiped
    /// first when the lab says so and `wipe`), its node out of the jail,
    /// a flash under way cancelled. Never refused.
    pub(super) fn card_release(&mut self, wipe: bool) -> Fut<()> {
        let Some(card) = &self.card else { return ready(()) };
        card.progress.cancel.store(true, Ordering::Relaxed);
        let (dir, wipe, board) = (card.dir.clone(), wipe && card.wipe, self.name().to_string());
        let progress = card.progress.clone();
        card.state().busy = Some("switched off");
        Box::pin(
            self.card_work(false, move |mux, _| {
                progress.cancel.store(false, Ordering::Relaxed);
                if let Some(d) = &dir {
                    let _ = node::unplug(d);
                }
                if wipe {
                    match mux.set(Side::Host) {
                        Ok(Some(dev)) => match flash::wipe(&dev) {
                            Ok(()) => info!(board = %board, "the card was wiped"),
                            Err(e) => warn!(board = %board, "wiping the card: {e}"),
                        },
                        Ok(None) => {}
                        Err(e) => warn!(board = %board, "wiping the card: {e}"),
                    }
                }
                mux.set(Side::Off).map_err(|e| {
                    warn!(board = %board, "switching the card off: {e}");
                    CardError::unknown(api(e))
                })?;
                Ok(((), CardUpdate::at(Side::Off)))
            })
            .map(|_, act: &mut Self, _| {
                if let Some(c) = &act.card {
                    c.state().flashed = None;
                }
            }),
        )
    }

    /// At labd's start: the card off, its node gone, unless a claim is
    /// served whose card the mux reports on the board's side.
    pub(super) fn card_start(&mut self, ctx: &mut Context<Self>) {
        let claimed = self.claim().is_some();
        let board = self.name().to_string();
        let Some(card) = self.card.as_mut().filter(|c| !c.started) else { return };
        card.started = true;
        let dir = card.dir.clone();
        card.state().busy = Some("switched off");
        let f = self.card_work(false, move |mux, _| {
            if let Some(d) = &dir {
                let _ = node::unplug(d);
            }
            if claimed && matches!(mux.get(), Ok(Some(Side::Board))) {
                return Ok(((), CardUpdate::at(Side::Board)));
            }
            mux.set(Side::Off).map_err(|e| {
                warn!(board = %board, "putting the card in a known state (off): {e}");
                CardError::unknown(api(e))
            })?;
            Ok(((), CardUpdate::at(Side::Off)))
        });
        ctx.spawn(f.map(|_, _, _| ()));
    }

    /// labd stopping: a card on the host side goes off (its loop device
    /// or node must not outlive labd); one on the board's stays.
    pub(super) fn card_shutdown(&mut self) -> Fut<()> {
        let Some(card) = &self.card else { return ready(()) };
        if card.state().side != Some(Side::Host) {
            return ready(());
        }
        Box::pin(self.card_release(false))
    }
}

/// What a card operation left.
struct CardUpdate {
    side: Side,
    device: Option<PathBuf>,
    in_jail: bool,
    flashed: Option<SdFlashed>,
    /// The card's size, when it was seen.
    size: Option<u64>,
}

impl CardUpdate {
    fn at(side: Side) -> CardUpdate {
        CardUpdate { side, device: None, in_jail: false, flashed: None, size: None }
    }
}

/// The size of the card at `dev`, if it can be read.
fn card_size(dev: &std::path::Path) -> Option<u64> {
    std::fs::File::open(dev).ok().and_then(|f| crate::storage::size_of(&f).ok())
}

/// Where a failed card operation left the card.
enum After {
    /// Where it was (refused before anything changed).
    Unchanged,
    /// Nobody knows (a switch failed half-way).
    Unknown,
    At(Side),
}

/// An error of a card operation, with where it left the card.
struct CardError {
    e: ApiError,
    after: After,
}

impl CardError {
    fn unknown(e: ApiError) -> CardError {
        CardError { e, after: After::Unknown }
    }
    fn at(side: Side, e: ApiError) -> CardError {
        CardError { e, after: After::At(side) }
    }
}

/// Refused before anything changed.
impl From<ApiError> for CardError {
    fn from(e: ApiError) -> CardError {
        CardError { e, after: After::Unchanged }
    }
}

impl From<CardError> for ApiError {
    fn from(c: CardError) -> ApiError {
        c.e
    }
}

impl std::ops::Deref for CardError {
    type Target = ApiError;
    fn deref(&self) -> &ApiError {
        &self.e
    }
}

#[path = "storage_sd.rs"]
mod sd;
pub use sd::Sd;

/// The card's state, for the operators' dump (None: the board has none).
#[derive(Message)]
#[rtype(result = "Option<SdView>")]
pub struct SdDetail;

impl Handler<SdDetail> for BoardActor {
    type Result = Option<SdView>;

    fn handle(&mut self, _msg: SdDetail, _ctx: &mut Context<Self>) -> Self::Result {
        self.sd_view()
    }
}
