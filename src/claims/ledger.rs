//! Where the book's decisions are kept. A claim is written before anyone
//! hears of it, so a claim a user was told of survives `kill -9`.
//!
//! The registry calls these in the order it decides, and a ledger keeps
//! that order. Each write is a future: the registry answers once it is
//! done. SQLite ([`super::sqlite`]) is the embedded ledger; a lab of
//! several hosts keeps its claims elsewhere behind the same trait.

use std::collections::HashSet;

use futures::future::BoxFuture;

use super::Claim;

/// A write that did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The board has a claim already: the ledger's own guard against a
    /// board given twice.
    #[error("board {0} is already claimed")]
    Taken(String),
    #[error("the claims ledger: {0}")]
    Storage(String),
    /// The ledger cannot be reached (a lab's etcd without quorum, or this
    /// host cut off from it): nothing was written.
    #[error("{0}")]
    Unavailable(String),
}

/// A write's outcome, when it is done.
pub type LedgerFuture<T> = BoxFuture<'static, Result<T, LedgerError>>;

/// How a claim ended (its event's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Release,
    Expire,
    ForceRelease,
    /// The claim was undone before its claimant heard of it.
    RolledBack,
    /// Its board is no longer configured.
    Dropped,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Release => "release",
            Ending::Expire => "expire",
            Ending::ForceRelease => "force_release",
            Ending::RolledBack => "claim_rolled_back",
            Ending::Dropped => "claim_dropped",
        }
    }
}

pub trait Ledger: Send + Sync + 'static {
    /// Everything kept: the claims and the boards in maintenance (at start).
    fn load(&self) -> LedgerFuture<(Vec<Claim>, HashSet<String>)>;
    /// A new claim, with its event.
    fn claim(&self, c: &Claim) -> LedgerFuture<()>;
    /// A claim ended, with its event (`by`: who ended it; `detail`: why,
    /// an operator's reason for a force-release). A release
    /// (asked for) the ledger cannot keep fails and changes nothing; any
    /// other end (the registry ended it regardless) is kept as soon as
    /// the ledger can, before anything else about its board.
    fn end(&self, c: &Claim, how: Ending, by: &str, detail: Option<String>) -> LedgerFuture<()>;
    /// A claim's new lease end, with its event.
    fn renew(&self, c: &Claim, by: &str) -> LedgerFuture<()>;
    /// A board into maintenance or out of it, with its event (`reason`:
    /// the operator's, checked by [`crate::ids::check_reason`]).
    fn maintenance(&self, board: &str, on: bool, by: &str, reason: Option<String>) -> LedgerFuture<()>;
}
