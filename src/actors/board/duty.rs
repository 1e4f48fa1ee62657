//! What a board is doing for the lab, as one state: every message that
//! changes it (Attach, Detach, Reinit, Shutdown) sees what the others
//! started, and one the state forbids gets an error naming the state.

use crate::claims::Claim;
use crate::protocol::{ApiError, Code};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duty {
    /// No claim: the link parked, the board off (or being switched off).
    Free,
    /// A claim's jail and power are being prepared.
    Attaching(Claim),
    /// Serving a claim.
    Serving(Claim),
    /// The claim's jail is being rebuilt (the claim stays).
    Reinitializing(Claim),
    /// A claim ended: its jail is being removed, the board switched off.
    Detaching(String),
    /// An operator's selftest runs (the registry grants no claim meanwhile).
    Testing,
    /// labd is stopping: no new work.
    Stopped,
}

impl Duty {
    /// The claim being served or prepared.
    pub fn claim(&self) -> Option<&Claim> {
        match self {
            Duty::Attaching(c) | Duty::Serving(c) | Duty::Reinitializing(c) => Some(c),
            Duty::Free | Duty::Detaching(_) | Duty::Testing | Duty::Stopped => None,
        }
    }

    /// Whether `handle` is the claim being served or prepared.
    pub fn serves(&self, handle: &str) -> bool {
        self.claim().is_some_and(|c| c.handle == handle)
    }

    /// `handle`'s lease now ends at `expires_at` (a rebuild of its jail
    /// certifies it until then); false when it is not this board's claim.
    pub fn renewed(&mut self, handle: &str, expires_at: i64) -> bool {
        match self {
            Duty::Attaching(c) | Duty::Serving(c) | Duty::Reinitializing(c) if c.handle == handle => {
                c.expires_at = expires_at;
                true
            }
            _ => false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Duty::Free => "free",
            Duty::Attaching(_) => "being prepared for a claim",
            Duty::Serving(_) => "serving a claim",
            Duty::Reinitializing(_) => "rebuilding its claim's jail",
            Duty::Detaching(_) => "being returned from a claim",
            Duty::Testing => "under a selftest",
            Duty::Stopped => "stopped (labd is stopping)",
        }
    }

    fn refused(&self, board: &str, what: &str, code: Code) -> ApiError {
        ApiError::new(code, format!("board {board} is {}: it cannot {what} now", self.name()))
    }

    /// A new claim may be attached: the board is free, or still being
    /// returned from the last one (its jail work is ordered after that).
    pub fn can_attach(&self, board: &str) -> Result<(), ApiError> {
        match self {
            Duty::Free | Duty::Detaching(_) => Ok(()),
            Duty::Stopped => Err(self.refused(board, "take a claim", Code::Internal)),
            _ => Err(self.refused(board, "take a claim", Code::Busy)),
        }
    }

    /// `handle`'s jail may be rebuilt: only while the claim is served.
    pub fn can_reinit(&self, board: &str, handle: &str) -> Result<Claim, ApiError> {
        match self {
            Duty::Serving(c) if c.handle == handle => Ok(c.clone()),
            Duty::Attaching(c) | Duty::Reinitializing(c) if c.handle == handle => {
                Err(self.refused(board, "rebuild the jail", Code::Busy))
            }
            Duty::Stopped => Err(self.refused(board, "rebuild the jail", Code::Internal)),
            _ => Err(ApiError::new(Code::NotClaimed, "the claim ended meanwhile")),
        }
    }

    /// A selftest may run: only on a free board.
    pub fn can_test(&self, board: &str) -> Result<(), ApiError> {
        match self {
            Duty::Free => Ok(()),
            Duty::Stopped => Err(self.refused(board, "run a selftest", Code::Internal)),
            _ => Err(self.refused(board, "run a selftest", Code::Busy)),
        }
    }

    /// The power may be switched for `handle`'s claim (None: by labd).
    pub fn can_power(&self, board: &str, handle: Option<&str>) -> Result<(), ApiError> {
        match (self, handle) {
            (Duty::Stopped, _) => Err(self.refused(board, "switch its power", Code::Internal)),
            (_, None) => Ok(()),
            (d, Some(h)) if d.serves(h) => Ok(()),
            _ => Err(ApiError::new(Code::NotClaimed, "the claim ended meanwhile")),
        }
    }

    /// What a supervised restart leaves: work in flight was dropped with
    /// the old incarnation, so a claim is simply served (the jail is
    /// adopted or rebuilt at start) and a return is done.
    pub fn after_restart(self) -> Duty {
        match self {
            Duty::Attaching(c) | Duty::Reinitializing(c) | Duty::Serving(c) => Duty::Serving(c),
            Duty::Detaching(_) | Duty::Testing | Duty::Free => Duty::Free,
            Duty::Stopped => Duty::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(h: &str) -> Claim {
        Claim { handle: h.into(), board: "b".into(), user: "u".into(), claimed_at: 0, expires_at: 1 }
    }

    #[test]
    fn each_state_says_what_it_allows() {
        let all = [
            Duty::Free,
            Duty::Attaching(claim("h")),
            Duty::Serving(claim("h")),
            Duty::Reinitializing(claim("h")),
            Duty::Detaching("h".into()),
            Duty::Testing,
            Duty::Stopped,
        ];
        let attach: Vec<bool> = all.iter().map(|d| d.can_attach("b").is_ok()).collect();
        assert_eq!(attach, [true, false, false, false, true, false, false]);
        let reinit: Vec<bool> = all.iter().map(|d| d.can_reinit("b", "h").is_ok()).collect();
        assert_eq!(reinit, [false, false, true, false, false, false, false]);
        let power: Vec<bool> = all.iter().map(|d| d.can_power("b", Some("h")).is_ok()).collect();
        assert_eq!(power, [false, true, true, true, false, false, false]);
        let test: Vec<bool> = all.iter().map(|d| d.can_test("b").is_ok()).collect();
        assert_eq!(test, [true, false, false, false, false, false, false]);
        assert!(Duty::Serving(claim("h")).can_power("b", Some("other")).is_err());
        assert!(Duty::Serving(claim("h")).can_reinit("b", "other").is_err());
    }

    #[test]
    fn refusals_name_the_state() {
        let e = Duty::Reinitializing(claim("h")).can_reinit("rp-1", "h").unwrap_err();
        assert_eq!(e.code, Code::Busy);
        assert!(e.message.contains("rp-1 is rebuilding its claim's jail"), "{}", e.message);
        let e = Duty::Serving(claim("h")).can_attach("rp-1").unwrap_err();
        assert!(e.message.contains("serving a claim"), "{}", e.message);
    }

    #[test]
    fn a_restart_keeps_the_claim_and_finishes_returns() {
        assert_eq!(Duty::Attaching(claim("h")).after_restart(), Duty::Serving(claim("h")));
        assert_eq!(Duty::Reinitializing(claim("h")).after_restart(), Duty::Serving(claim("h")));
        assert_eq!(Duty::Detaching("h".into()).after_restart(), Duty::Free);
        assert_eq!(Duty::Testing.after_restart(), Duty::Free);
    }
}
