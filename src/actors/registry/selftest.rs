//! `selftest` (operators): the book takes the board out of service for
//! the test (no claim is granted on it meanwhile, a claimed board is
//! refused), its actor runs the test, and the board is put back.

use std::time::Duration;

use actix::prelude::*;

use super::claims::Answer;
use super::Registry;
use crate::actors::board::Selftest;
use crate::actors::Identity;
use crate::claims::Asker;
use crate::protocol::{ApiError, Code, Reply};

/// How long each sign of life is waited for, unless the caller says.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest wait accepted.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

impl Registry {
    pub(super) fn selftest(
        &mut self,
        who: &Identity,
        board: &str,
        wait: Option<u64>,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Answer> {
        let ready = |r: Answer| -> ResponseActFuture<Self, Answer> { Box::pin(actix::fut::ready(r)) };
        let a = Asker { user: &who.user, admin: who.admin, jail_handle: who.jail_handle.as_deref() };
        if let Err(e) = self.book.operator(&a, "selftest").and_then(|()| self.book.board(board)) {
            return ready(Err(e.into()));
        }
        let wait = match wait.map(Duration::from_secs) {
            None => DEFAULT_WAIT,
            Some(w) if w.is_zero() || w > MAX_WAIT => {
                return ready(Err(ApiError::new(
                    Code::BadRequest,
                    format!("selftest: wait must be between 1 and {} seconds", MAX_WAIT.as_secs()),
                )))
            }
            Some(w) => w,
        };
        if let Err(e) = self.book.begin_test(board) {
            return ready(Err(e.into()));
        }
        self.changed(board);
        self.event("selftest_begin", board, Some(&who.user), None);
        let Some(addr) = self.board_addr(board, ctx) else {
            self.book.end_test(board);
            self.changed(board);
            return ready(Err(ApiError::new(Code::Internal, "board vanished")));
        };
        let board = board.to_string();
        let by = who.user.clone();
        Box::pin(actix::fut::wrap_future::<_, Self>(addr.send(Selftest { wait, health: None })).map(
            move |r, act, ctx| {
                let became = act.book.end_test(&board);
                act.changed(&board);
                if let Some(class) = became {
                    act.serve(&class, ctx);
                }
                let report =
                    r.map_err(|e| ApiError::new(Code::Internal, format!("board actor unavailable: {e}")))??;
                let verdict = match report.first_failure() {
                    None => "pass".to_string(),
                    Some(s) => format!("fail at {}: {}", s.step, s.detail),
                };
                act.event("selftest", &board, Some(&by), Some(verdict));
                Ok(Reply::Selftest(report))
            },
        ))
    }
}
