//! `sd`: a claim's microSD card. The book says whose claim it is; the
//! board's actor does the work (see `actors/board/storage.rs`).

use actix::prelude::*;

use super::claims::{asker, ready, unavailable, vanished, Fut};
use super::Registry;
use crate::actors::board::Sd;
use crate::actors::Identity;
use crate::protocol::{Reply, SdArgs};

impl Registry {
    pub(super) fn sd(&mut self, who: &Identity, args: SdArgs, ctx: &mut Context<Self>) -> Fut {
        let c = match self.book.resolve(&asker(who), args.handle.as_deref()) {
            Ok(c) => c.clone(),
            Err(e) => return ready(Err(e.into())),
        };
        let Some(addr) = self.board_addr(&c.board, ctx) else { return ready(Err(vanished())) };
        let req = addr.send(Sd { handle: c.handle.clone(), by: who.user.clone(), args });
        Box::pin(
            actix::fut::wrap_future::<_, Self>(req)
                .map(|res, _, _| Ok(Reply::Sd(Box::new(res.map_err(unavailable).and_then(|r| r)?)))),
        )
    }
}
