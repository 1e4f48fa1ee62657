//! The `sd` request on a board's card: host, board, off, status, flash.

use std::sync::atomic::Ordering;

use actix::prelude::*;
use tracing::info;

use super::{away, card_size, flash_api, open_api, open_bmap, ready, After, CardError, CardUpdate, Fut, JailFacts};
use crate::actors::board::{BoardActor, PowerAction};
use crate::protocol::{ApiError, Code, PowerState, SdAction, SdArgs, SdFlashed, SdView};
use crate::storage::flash::{self, Packing};
use crate::storage::jailfile;
use crate::storage::{node, Side, StorageError};

/// A claimant's request on the card of the claim `handle`.
#[derive(Message)]
#[rtype(result = "Result<SdView, ApiError>")]
pub struct Sd {
    pub handle: String,
    pub by: String,
    pub args: SdArgs,
}

fn busy(board: &str, what: &str) -> ApiError {
    ApiError::new(Code::Busy, format!("the microSD card of {board} is being {what}; try again when it is done"))
}

impl Handler<Sd> for BoardActor {
    type Result = Fut<Result<SdView, ApiError>>;

    fn handle(&mut self, msg: Sd, _ctx: &mut Context<Self>) -> Self::Result {
        let name = self.name().to_string();
        let Some(card) = &self.card else {
            return ready(Err(ApiError::new(
                Code::BadRequest,
                format!("board {name} has no microSD card (its board file has no `storage`)"),
            )));
        };
        if let Err(e) = self.duty.can_power(&name, Some(&msg.handle)) {
            return ready(Err(e));
        }
        let action = msg.args.action;
        if action == SdAction::Status {
            return ready(self.sd_view().ok_or_else(|| ApiError::new(Code::Internal, "no card")));
        }
        if let Some(what) = card.state().busy {
            return ready(Err(busy(&name, what)));
        }
        if action == SdAction::Flash {
            let Some(path) = msg.args.path.clone() else {
                return ready(Err(ApiError::new(Code::BadRequest, "sd flash needs the image's path in the jail")));
            };
            if let Err(e) = jailfile::check_path(&path) {
                return ready(Err(open_api(e)));
            }
            if self.jail_ctx.is_none() {
                return ready(Err(ApiError::new(
                    Code::BadRequest,
                    "sd flash reads the image from the claim's jail, and this lab has no jails (daemon.jail = \"none\")",
                )));
            }
        } else if msg.args.path.is_some() {
            return ready(Err(ApiError::new(Code::BadRequest, format!("sd {} takes no path", action.as_str()))));
        }
        let to_host = matches!(action, SdAction::Host | SdAction::Flash);
        // The board may be using the card unless it is known to be off.
        let powered = self.power != PowerState::Off || self.power_inflight > 0;
        if to_host && powered && !msg.args.power_off {
            return ready(Err(ApiError::new(
                Code::Busy,
                format!(
                    "board {name} is powered ({}): the card goes to the host only while the board is off; \
                     power it off first, or ask for both (labcli sd {} --power-off)",
                    self.power.as_str(),
                    action.as_str()
                ),
            )));
        }
        let what = if action == SdAction::Flash { "flashing" } else { "switching" };
        card.state().busy = Some(what);
        let pre: Fut<Result<(), ApiError>> = if to_host && powered {
            Box::pin(self.switch_power(PowerAction::Off, msg.by.clone()).map(|r, _, _| r.map(|_| ())))
        } else {
            ready(Ok(()))
        };
        let handle = msg.handle.clone();
        Box::pin(pre.then(move |r, act: &mut Self, _| -> Fut<Result<SdView, ApiError>> {
            if let Err(e) = r {
                if let Some(c) = &act.card {
                    c.state().busy = None;
                }
                return ready(Err(e));
            }
            if !act.serves(&handle) {
                if let Some(c) = &act.card {
                    c.state().busy = None;
                }
                return ready(Err(ApiError::new(Code::NotClaimed, "the claim ended meanwhile")));
            }
            let work = match action {
                SdAction::Host => act.card_host(),
                SdAction::Flash => act.card_flash(msg.args.path.unwrap_or_default()),
                SdAction::Board => act.card_away(Side::Board),
                _ => act.card_away(Side::Off),
            };
            Box::pin(work.map(|r, act: &mut Self, _| {
                r?;
                act.sd_view().ok_or_else(|| ApiError::new(Code::Internal, "no card"))
            }))
        }))
    }
}

impl BoardActor {
    /// The card to the host, its node into the jail.
    fn card_host(&mut self) -> Fut<Result<(), ApiError>> {
        let dir = self.card_dir();
        self.card_work(true, move |mux, jail| {
            let dev = mux.set(Side::Host).map_err(|e| CardError::unknown(super::api(e)))?;
            let Some(dev) = dev else {
                return Err(CardError::unknown(ApiError::new(Code::DeviceFault, "the mux gave no card device")));
            };
            let mut up = CardUpdate {
                side: Side::Host,
                device: Some(dev.clone()),
                in_jail: false,
                flashed: None,
                size: card_size(&dev),
            };
            if let (Some(d), Some(j)) = (&dir, jail) {
                if let Err(e) = node::plug(d, &dev, j.uid) {
                    let _ = mux.set(Side::Off);
                    return Err(CardError::at(
                        Side::Off,
                        ApiError::new(Code::Internal, format!("putting the card in the jail: {e}")),
                    ));
                }
                up.in_jail = true;
            }
            Ok(((), up))
        })
    }

    /// The card away from the host: to the board, or off.
    fn card_away(&mut self, side: Side) -> Fut<Result<(), ApiError>> {
        let dir = self.card_dir();
        let back = self.card.as_ref().and_then(|c| {
            let st = c.state();
            st.in_jail.then(|| st.device.clone()).flatten()
        });
        self.card_work(true, move |mux, jail| {
            let back = back.zip(jail.map(|j| j.uid));
            match away(mux, dir.as_ref(), back.clone(), side) {
                Ok(()) => Ok(((), CardUpdate::at(side))),
                // Still open on the host side: nothing changed.
                Err(e) if e.code == Code::Busy => Err(CardError::from(e)),
                Err(e) => Err(CardError::unknown(e)),
            }
        })
    }

    /// The image at `path` in the jail onto the card, verified, then the
    /// card to the board.
    fn card_flash(&mut self, path: String) -> Fut<Result<(), ApiError>> {
        let Some(jc) = self.jail_ctx.clone() else {
            return ready(Err(ApiError::new(Code::BadRequest, "no jail")));
        };
        let Some(card) = &self.card else { return ready(Err(ApiError::new(Code::Internal, "no card"))) };
        let (dir, progress, board) = (card.dir.clone(), card.progress.clone(), self.name().to_string());
        let (known_size, back) = {
            let st = card.state();
            (st.size, st.in_jail.then(|| st.device.clone()).flatten())
        };
        progress.phase.store(0, Ordering::Relaxed);
        progress.done.store(0, Ordering::Relaxed);
        progress.total.store(0, Ordering::Relaxed);
        let exe = jc.settings.init_exe.clone();
        self.card_work(true, move |mux, jail| {
            let Some(j): Option<JailFacts> = jail else {
                return Err(ApiError::new(Code::BadRequest, "the claim's jail is not up (being built?)").into());
            };
            let mut image = jailfile::open_in_jail(&exe, j.pid, j.start, &path).map_err(open_api)?;
            let bmap = match open_bmap(&exe, j, &path)? {
                Some(f) => Some(flash::read_bmap(f).map_err(flash_api)?),
                None => None,
            };
            let head = flash::head(&mut image)
                .map_err(|e| ApiError::new(Code::BadRequest, format!("reading the image: {e}")))?;
            let packing = Packing::sniff(&head);
            let used_bmap = bmap.is_some();
            // Too large for the card as last seen: refused before the card
            // is touched (a packed image without a bmap is checked while
            // it is written).
            let need = match &bmap {
                Some((size, _, _)) => Some(*size),
                None if packing == Packing::Raw => image.metadata().ok().map(|m| m.len()),
                None => None,
            };
            if let (Some(need), Some(card)) = (need, known_size) {
                if need > card {
                    return Err(ApiError::new(
                        Code::BadRequest,
                        format!("the image is {need} bytes and the card only {card}: it does not fit"),
                    )
                    .into());
                }
            }
            // Through off: the jail lets go of the card (a card it still
            // holds open is refused, its node put back) before labd writes.
            let back = back.zip(Some(j.uid));
            match away(mux, dir.as_ref(), back, Side::Off) {
                Ok(()) => {}
                Err(e) if e.code == Code::Busy => return Err(CardError::from(e)),
                Err(e) => return Err(CardError::unknown(e)),
            }
            let dev = match mux.set(Side::Host) {
                Ok(Some(d)) => d,
                Ok(None) => return Err(CardError::unknown(ApiError::new(Code::DeviceFault, "no card device"))),
                Err(e) => return Err(CardError::unknown(super::api(e))),
            };
            let size = card_size(&dev);
            let done = match flash::flash(image, packing, bmap, &dev, &progress) {
                Ok(d) => d,
                Err(e) => {
                    progress.phase.store(0, Ordering::Relaxed);
                    let after = match mux.set(Side::Off) {
                        Ok(_) => After::At(Side::Off),
                        Err(_) => After::Unknown,
                    };
                    return Err(CardError { e: flash_api(e), after });
                }
            };
            progress.phase.store(3, Ordering::Relaxed);
            let switched = mux.set(Side::Board);
            progress.phase.store(0, Ordering::Relaxed);
            switched.map_err(|e: StorageError| CardError::unknown(super::api(e)))?;
            let seconds = done.seconds;
            info!(board = %board, written = done.written, seconds, "the card was flashed and is on the board's side");
            let flashed = SdFlashed {
                path: path.clone(),
                image_bytes: done.image_bytes,
                written: done.written,
                block_size: done.block_size,
                blocks: done.blocks,
                ranges: done.ranges,
                bmap: used_bmap,
                packing: match packing {
                    Packing::Raw => "raw",
                    Packing::Gzip => "gzip",
                    Packing::Xz => "xz",
                }
                .into(),
                sha256: done.sha256,
                seconds,
                mb_per_s: if seconds > 0.0 { done.written as f64 / seconds / 1e6 } else { 0.0 },
            };
            Ok(((), CardUpdate { side: Side::Board, device: None, in_jail: false, flashed: Some(flashed), size }))
        })
    }
}
