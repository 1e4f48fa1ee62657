//! The board's serial console: its pump (adapter, log, sessions) runs as
//! a task the actor owns; the actor hands it to the sessions the registry
//! allowed and reports its state.

use actix::prelude::*;
use tokio::sync::watch;

use super::BoardActor;
use crate::console::Console;
use crate::protocol::ConsoleStatus;

impl BoardActor {
    /// Reports every change of the console's state (adapter plugged,
    /// unplugged, failing) to the registry.
    pub(super) fn watch_console(&mut self, ctx: &mut Context<Self>) {
        let Some(mut rx) = self.console.as_ref().map(Console::watch_state) else { return };
        rx.mark_unchanged();
        let changes = futures::stream::unfold(rx, |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) });
        ctx.add_stream(changes);
    }
}

impl StreamHandler<()> for BoardActor {
    fn handle(&mut self, _item: (), _ctx: &mut Context<Self>) {
        self.report();
    }

    /// The console stopped: nothing more to report (and the actor goes on).
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// The board's console, for a session the registry allowed, with a watch
/// of the board's current claim (None: the board has no console).
#[derive(Message)]
#[rtype(result = "Option<(Console, watch::Receiver<Option<String>>)>")]
pub struct GetConsole;

impl Handler<GetConsole> for BoardActor {
    type Result = Option<(Console, watch::Receiver<Option<String>>)>;

    fn handle(&mut self, _msg: GetConsole, _ctx: &mut Context<Self>) -> Self::Result {
        self.console.clone().map(|c| (c, self.claim_tx.subscribe()))
    }
}

/// The console's details, for the operators' dump.
#[derive(Message)]
#[rtype(result = "Option<ConsoleStatus>")]
pub struct ConsoleDetail;

impl Handler<ConsoleDetail> for BoardActor {
    type Result = Option<ConsoleStatus>;

    fn handle(&mut self, _msg: ConsoleDetail, _ctx: &mut Context<Self>) -> Self::Result {
        self.console.as_ref().map(Console::status)
    }
}
