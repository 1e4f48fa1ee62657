//! Who may use which board's console, and how: the claimant their own
//! (typing), operators any (watching). The console itself is the board
//! actor's; the registry only decides and hands it over.

use actix::prelude::*;
use tokio::sync::watch;

use super::claims::Answer;
use super::Registry;
use crate::actors::board::GetConsole;
use crate::actors::Identity;
use crate::claims::Asker;
use crate::console::Console;
use crate::protocol::{ApiError, Code, LogView, Reply};

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

/// A board's console and a watch of the board's current claim.
type BoardConsole = (Console, watch::Receiver<Option<String>>);

/// Whose console a request may use.
struct Target {
    board: String,
    /// The board's current claim.
    handle: Option<String>,
    /// The caller is the claimant (else an operator).
    claimant: bool,
}

impl Registry {
    /// The claimant's own console (by handle), or for operators any
    /// board's (by handle or by board name).
    fn console_target(&self, who: &Identity, handle: Option<String>) -> Result<Target, ApiError> {
        let asker = Asker { user: &who.user, admin: who.admin, jail_handle: who.jail_handle.as_deref() };
        match self.book.resolve(&asker, handle.as_deref()) {
            Ok(c) => Ok(Target { board: c.board.clone(), handle: Some(c.handle.clone()), claimant: true }),
            Err(e) if who.admin && who.jail_handle.is_none() => {
                let key = handle.unwrap_or_default();
                let board = match self.book.board_of_handle(&key) {
                    Some(b) => b.to_string(),
                    None if self.book.board(&key).is_ok() => key,
                    None => return Err(e.into()),
                };
                let handle = self.book.claim_of(&board).map(|c| c.handle.clone());
                Ok(Target { board, handle, claimant: false })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The board's console from its actor.
    fn console_of(
        &mut self,
        board: &str,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<BoardConsole, ApiError>> {
        let Some(addr) = self.board_addr(board, ctx) else {
            return Box::pin(actix::fut::ready(Err(ApiError::new(Code::Internal, "board vanished"))));
        };
        let board = board.to_string();
        Box::pin(actix::fut::wrap_future::<_, Self>(addr.send(GetConsole)).map(move |r, _, _| match r {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                Err(ApiError::new(Code::DeviceFault, format!("board {board} has no serial console configured")))
            }
            Err(e) => Err(ApiError::new(Code::Internal, format!("board actor unavailable: {e}"))),
        }))
    }

    /// The claim's console log (the last `tail` lines).
    pub(super) fn console_log(
        &mut self,
        who: &Identity,
        handle: Option<String>,
        tail: Option<u64>,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Answer> {
        let t = match self.console_target(who, handle) {
            Ok(t) => t,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let Some(claim) = t.handle else {
            return Box::pin(actix::fut::ready(Err(ApiError::new(
                Code::NotClaimed,
                format!("board {} is not claimed: there is no claim log", t.board),
            ))));
        };
        let board = t.board.clone();
        Box::pin(self.console_of(&t.board, ctx).then(move |r, _, _| {
            let work = async move {
                let (console, _) = r?;
                match console.read_log(&claim, tail).await {
                    Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                    Err(e) => Err(ApiError::new(Code::Internal, format!("reading the console log of {board}: {e}"))),
                }
            };
            let board = t.board;
            actix::fut::wrap_future::<_, Self>(work).map(move |log, _, _| Ok(Reply::Log(LogView { board, log: log? })))
        }))
    }
}

impl Handler<OpenConsole> for Registry {
    type Result = ResponseActFuture<Self, Result<ConsoleGrant, ApiError>>;

    /// Checks who may see the console, and how.
    fn handle(&mut self, msg: OpenConsole, ctx: &mut Context<Self>) -> Self::Result {
        let t = match self.console_target(&msg.who, msg.handle) {
            Ok(t) => t,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let may_write = t.claimant && !msg.read_only;
        let board = t.board.clone();
        Box::pin(self.console_of(&t.board, ctx).map(move |r, _, _| {
            let (console, claims) = r?;
            let claim = match (t.claimant, t.handle) {
                (true, Some(h)) => Some((h, claims)),
                _ => None,
            };
            Ok(ConsoleGrant { board, console, may_write, claim })
        }))
    }
}

/// Where a console session's claim stands: live until its lease end
/// (Unix ms), or ended as its claimant is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimNow {
    Live { expires_at: i64 },
    Ended(String),
    Unknown,
}

/// Asks where `handle`'s claim stands (a console session warns before it
/// expires, and says how it ended).
#[derive(Message)]
#[rtype(result = "ClaimNow")]
pub struct HowIsClaim {
    pub handle: String,
}

impl Handler<HowIsClaim> for Registry {
    type Result = MessageResult<HowIsClaim>;

    fn handle(&mut self, msg: HowIsClaim, _: &mut Context<Self>) -> Self::Result {
        let live = self.book.board_of_handle(&msg.handle).and_then(|b| self.book.claim_of(b));
        MessageResult(match (live, self.book.ended(&msg.handle)) {
            (Some(c), _) if c.handle == msg.handle => ClaimNow::Live { expires_at: c.expires_at },
            (_, Some(e)) => {
                ClaimNow::Ended(format!("your claim on {} {} at {}", e.board, e.how, crate::util::rfc3339_ms(e.at)))
            }
            _ => ClaimNow::Unknown,
        })
    }
}
