//! Boards in and out of service: back from a claim, alive or faulted
//! (their actors say), under an operator's selftest, in maintenance. Each
//! change says when it made a board claimable, so its class's waiters can
//! be served.

use super::{BookError, ClaimBook};

impl ClaimBook {
    /// The board is back from its last claim: claimable again. Returns its
    /// class, whose waiters the caller should now serve.
    pub fn returned(&mut self, board: &str) -> Option<String> {
        let slot = self.boards.get_mut(board)?;
        slot.returning = false;
        Some(slot.class.clone())
    }

    /// What the board's actor says of its health. Returns the board's
    /// class when it became claimable by this (its waiters may be served).
    pub fn health(&mut self, board: &str, alive: bool, fault: Option<String>) -> Option<String> {
        let slot = self.boards.get_mut(board)?;
        let was = slot.claimable();
        slot.alive = alive;
        slot.fault = fault;
        (!was && slot.claimable()).then(|| slot.class.clone())
    }

    /// An operator's selftest begins on `board`: it must be neither
    /// claimed, nor being returned from a claim, nor under test already;
    /// no claim is granted on it until [`ClaimBook::end_test`].
    pub fn begin_test(&mut self, board: &str) -> Result<(), BookError> {
        let slot = self.boards.get_mut(board).ok_or_else(|| BookError::UnknownBoard(board.into()))?;
        if let Some(c) = &slot.claim {
            return Err(BookError::Claimed { board: board.into(), user: c.user.clone() });
        }
        if slot.returning || slot.testing || slot.checking {
            let what = if slot.testing {
                "under a selftest already"
            } else if slot.checking {
                "under a health check"
            } else {
                "being returned from a claim"
            };
            return Err(BookError::Busy(format!("board {board} is {what}; try again in a moment")));
        }
        slot.testing = true;
        Ok(())
    }

    /// The selftest on `board` ended. Returns its class when the board
    /// became claimable by this (its waiters may be served).
    pub fn end_test(&mut self, board: &str) -> Option<String> {
        let slot = self.boards.get_mut(board)?;
        let was = slot.claimable();
        slot.testing = false;
        (!was && slot.claimable()).then(|| slot.class.clone())
    }

    /// Takes a board out of service or puts it back (operators). A claimed
    /// board cannot go into maintenance. Returns its class when it became
    /// claimable by this.
    pub fn set_maintenance(&mut self, board: &str, on: bool) -> Result<Option<String>, BookError> {
        let slot = self.boards.get_mut(board).ok_or_else(|| BookError::UnknownBoard(board.into()))?;
        if on {
            if let Some(c) = &slot.claim {
                return Err(BookError::Claimed { board: board.into(), user: c.user.clone() });
            }
        }
        let was = slot.claimable();
        slot.maintenance = on;
        Ok((!was && slot.claimable()).then(|| slot.class.clone()))
    }
}
