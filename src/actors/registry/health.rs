//! Health checks (`[health.CLASS]`): after each release before the board
//! is offered again, on a schedule for idle boards, and when an operator
//! asks (`health`). The book holds the board out of service meanwhile
//! (`checking`); the board's actor runs the selftest's machinery with the
//! class's pattern and the port left off; `failures` failed checks in a
//! row make the board `unhealthy`, kept in the state database, until a
//! check passes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{error, info, warn};

use super::claims::{asker, Answer};
use super::Registry;
use crate::actors::board::{HealthCheck, Selftest};
use crate::actors::Identity;
use crate::claims::{BookError, CheckResult};
use crate::protocol::{ApiError, Code, HealthReport, Reply};

/// How often the schedule looks for boards that are due.
const TICK: Duration = Duration::from_secs(1);
/// Scheduled checks running at once on this host: a lab's boards due
/// together (after a restart) are checked a few at a time.
const MAX_SCHEDULED: usize = 4;

/// The schedule's memory: when each board was last checked (or labd
/// started), and how many scheduled checks run.
#[derive(Default)]
pub(super) struct Schedule {
    last: HashMap<String, Instant>,
    running: usize,
}

/// Why a check runs, for its events and notes.
enum Trigger {
    /// After `claimant`'s claim ended.
    Release(String),
    Schedule,
    /// An operator asked.
    Asked,
}

type CheckFut = ResponseActFuture<Registry, Result<HealthReport, ApiError>>;

impl Registry {
    /// Starts the schedule of idle boards' checks (classes with `every`).
    pub(super) fn start_health_schedule(&mut self, ctx: &mut Context<Self>) {
        if !self.cfg.health.values().any(|h| h.every.is_some()) {
            return;
        }
        let now = Instant::now();
        for name in self.boards.keys() {
            self.schedule.last.insert(name.clone(), now);
        }
        ctx.run_interval(TICK, |act, ctx| act.scheduled_checks(ctx));
    }

    fn scheduled_checks(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let due: Vec<String> = self
            .boards
            .values()
            .filter_map(|e| {
                let every = self.cfg.health.get(&e.cfg.class)?.every?;
                let last = self.schedule.last.get(&e.cfg.name).copied().unwrap_or(now);
                (now.duration_since(last) >= every && self.book.idle(&e.cfg.name)).then(|| e.cfg.name.clone())
            })
            .collect();
        for board in due {
            if self.schedule.running >= MAX_SCHEDULED {
                break;
            }
            match self.check(&board, "labd", Trigger::Schedule, ctx) {
                Ok(f) => {
                    self.schedule.running += 1;
                    ctx.spawn(f.map(|_, act, _| act.schedule.running = act.schedule.running.saturating_sub(1)));
                }
                Err(e) => info!(board = %board, "scheduled health check not run: {}", e.message),
            }
        }
    }

    /// After a release (the board is back, not yet offered): checks it
    /// when its class says so. True when a check started; its end serves
    /// the class's waiters.
    pub(super) fn check_after_release(&mut self, board: &str, claimant: &str, ctx: &mut Context<Self>) -> bool {
        let Some(class) = self.book.class_of(board) else { return false };
        if !self.cfg.health.get(class).is_some_and(|h| h.after_release) {
            return false;
        }
        match self.check(board, "labd", Trigger::Release(claimant.to_string()), ctx) {
            Ok(f) => {
                ctx.spawn(f.map(|_, _, _| ()));
                true
            }
            Err(e) => {
                info!(board = %board, "health check after the release not run: {}", e.message);
                false
            }
        }
    }

    /// `health BOARD` (operators): the check now, its report.
    pub(super) fn health_now(
        &mut self,
        who: &Identity,
        board: &str,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Answer> {
        let checked = self.book.operator(&asker(who), "health").and_then(|()| self.book.board(board));
        let f = checked.map_err(ApiError::from).and_then(|()| self.check(board, &who.user, Trigger::Asked, ctx));
        match f {
            Ok(f) => Box::pin(f.map(|r, _, _| r.map(Reply::Health))),
            Err(e) => Box::pin(actix::fut::ready(Err(e))),
        }
    }

    /// Begins a check of `board` (the book takes it out of service) and
    /// returns the future that runs it and records its end.
    fn check(&mut self, board: &str, by: &str, why: Trigger, ctx: &mut Context<Self>) -> Result<CheckFut, ApiError> {
        let class = self.book.class_of(board).ok_or_else(|| BookError::UnknownBoard(board.into()))?.to_string();
        let Some(h) = self.cfg.health.get(&class).cloned() else {
            return Err(ApiError::new(
                Code::BadRequest,
                format!("class {class} has no health check (add [health.{class}] to lab.toml)"),
            ));
        };
        self.book.begin_check(board)?;
        self.schedule.last.insert(board.to_string(), Instant::now());
        self.changed(board);
        let Some(addr) = self.board_addr(board, ctx) else {
            self.book.end_check(board, &CheckResult::NotRun, h.failures);
            self.changed(board);
            return Err(ApiError::new(Code::Internal, "board vanished"));
        };
        info!(board = %board, "health check");
        let msg = Selftest { wait: h.timeout, health: Some(HealthCheck { pattern: h.console.clone(), dhcp: h.dhcp }) };
        let (board, by) = (board.to_string(), by.to_string());
        let when = match &why {
            Trigger::Release(c) => format!(" (after {c}'s claim)"),
            Trigger::Schedule => " (scheduled)".to_string(),
            Trigger::Asked => String::new(),
        };
        Ok(Box::pin(actix::fut::wrap_future::<_, Self>(addr.send(msg)).map(move |r, act, ctx| {
            let report = r.map_err(|e| ApiError::new(Code::Internal, format!("board actor unavailable: {e}")));
            let report = report.and_then(|r| r);
            let result = match &report {
                Ok(rep) => match rep.first_failure() {
                    None => CheckResult::Pass,
                    Some(s) => CheckResult::Fail(format!("{}: {}{when}", s.step, s.detail)),
                },
                Err(e) => {
                    warn!(board = %board, "health check not run: {}", e.message);
                    CheckResult::NotRun
                }
            };
            act.schedule.last.insert(board.clone(), Instant::now());
            let counted = match &result {
                CheckResult::Pass => "pass",
                CheckResult::Fail(_) => "fail",
                CheckResult::NotRun => "not_run",
            };
            act.metrics.health_checked(&board, counted);
            let end = act.book.end_check(&board, &result, h.failures);
            act.changed(&board);
            if !matches!(result, CheckResult::NotRun) {
                act.persist_failures(&board, end.failures);
            }
            let verdict = match &result {
                CheckResult::Pass => Some(format!("pass{when}")),
                CheckResult::Fail(f) => Some(format!("fail {}/{} at {f}", end.failures, h.failures)),
                CheckResult::NotRun => None,
            };
            if let Some(v) = verdict {
                act.event("health", &board, Some(&by), Some(v));
            }
            if let Some(note) = &end.unhealthy {
                warn!(board = %board, "unhealthy: {note}");
                act.persist_health(&board, Some(note.clone()), &by);
            } else if end.healthy {
                info!(board = %board, "healthy again");
                act.persist_health(&board, None, &by);
            }
            if let Some(class) = end.became {
                act.serve(&class, ctx);
            }
            let check = report?;
            Ok(HealthReport {
                check,
                state: act.book.state(&board),
                failures: end.failures,
                health: act.book.health_note(&board).map(str::to_string),
            })
        })))
    }

    /// Keeps a board's failed checks in a row and the last one's note.
    fn persist_failures(&self, board: &str, failures: u32) {
        let board = board.to_string();
        let note = self.book.last_failure(&board).map(str::to_string);
        self.db.fire(move |db| {
            if let Err(e) = db.set_health_failures(&board, failures, note.as_deref()) {
                error!(board = %board, "cannot keep the board's failed health checks: {e}");
            }
        });
    }

    /// Keeps a board's unhealthy state (None: healthy again) and its event.
    fn persist_health(&self, board: &str, why: Option<String>, by: &str) {
        let (board, by) = (board.to_string(), by.to_string());
        self.db.fire(move |db| {
            if let Err(e) = db.set_unhealthy(&board, why.as_deref(), &by) {
                error!(board = %board, "cannot keep the board's health: {e}");
            }
        });
    }
}
