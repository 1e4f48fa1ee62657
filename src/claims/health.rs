//! Health checks in the book: a board being checked is not claimable, and
//! one that failed its class's check `failures` times in a row is
//! `unhealthy` (never granted) until a check passes.

use std::collections::HashMap;

use super::{BookError, ClaimBook};

/// How a health check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Pass,
    /// It ran and failed: the step and why.
    Fail(String),
    /// It could not run (the board was busy, its actor restarted): it
    /// counts neither way.
    NotRun,
}

/// What a check's end changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckEnd {
    /// The board's class, when the board became claimable by this.
    pub became: Option<String>,
    /// It just went unhealthy: the note (why).
    pub unhealthy: Option<String>,
    /// It was unhealthy and is healthy again.
    pub healthy: bool,
    /// Failed checks in a row now.
    pub failures: u32,
}

impl ClaimBook {
    /// Puts back the boards' health as the state database kept it when
    /// labd stopped: the unhealthy ones (board → why), as having failed
    /// their class's `threshold` checks in a row at least, and the failed
    /// checks in a row of the others (board → count, last note), so that
    /// a restart between two failures forgets neither.
    pub fn restore_health(
        &mut self,
        unhealthy: &HashMap<String, String>,
        failures: &HashMap<String, (u32, String)>,
        threshold: &dyn Fn(&str) -> u32,
    ) {
        for (name, slot) in &mut self.boards {
            slot.unhealthy = unhealthy.get(name).cloned();
            let (n, note) = failures.get(name).map_or((0, None), |(n, note)| (*n, Some(note.clone())));
            slot.failures = n;
            slot.last_failure = note.filter(|n| !n.is_empty());
            if slot.unhealthy.is_some() {
                slot.failures = slot.failures.max(threshold(&slot.class));
            }
        }
    }

    /// The note of `board`'s last failed check, while its failures in a
    /// row count.
    pub fn last_failure(&self, board: &str) -> Option<&str> {
        self.boards.get(board)?.last_failure.as_deref()
    }

    /// A health check may begin on `board`: it must be neither claimed (a
    /// claimed board is never touched), nor in maintenance (maintenance
    /// wins), nor faulted or offline, nor returning, under a selftest or
    /// checked already. No claim is granted on it until
    /// [`ClaimBook::end_check`].
    pub fn begin_check(&mut self, board: &str) -> Result<(), BookError> {
        let slot = self.boards.get_mut(board).ok_or_else(|| BookError::UnknownBoard(board.into()))?;
        if let Some(c) = &slot.claim {
            return Err(BookError::Claimed { board: board.into(), user: c.user.clone() });
        }
        let busy = if slot.maintenance {
            Some("in maintenance (maintenance wins over health checks; take it out of maintenance first)".to_string())
        } else if !slot.alive {
            Some("offline (its actor is starting)".to_string())
        } else if let Some(f) = &slot.fault {
            Some(format!("faulted ({f})"))
        } else if slot.testing {
            Some("under a selftest".to_string())
        } else if slot.checking {
            Some("being checked already".to_string())
        } else if slot.returning {
            Some("being returned from a claim".to_string())
        } else {
            None
        };
        if let Some(why) = busy {
            return Err(BookError::Busy(format!("board {board} is {why}; no health check now")));
        }
        slot.checking = true;
        Ok(())
    }

    /// The check on `board` ended; `threshold`: failures in a row that
    /// make it unhealthy.
    pub fn end_check(&mut self, board: &str, result: &CheckResult, threshold: u32) -> CheckEnd {
        let Some(slot) = self.boards.get_mut(board) else { return CheckEnd::default() };
        let was = slot.claimable();
        slot.checking = false;
        let mut end = CheckEnd::default();
        match result {
            CheckResult::Pass => {
                end.healthy = slot.unhealthy.take().is_some();
                slot.failures = 0;
                slot.last_failure = None;
            }
            CheckResult::Fail(why) => {
                slot.failures = slot.failures.saturating_add(1);
                let n = slot.failures;
                let note = if n <= threshold {
                    format!("failed {n} of {threshold} health checks in a row: {why}")
                } else {
                    format!("failed {n} health checks in a row ({threshold} make it unhealthy): {why}")
                };
                if slot.failures >= threshold && slot.unhealthy.is_none() {
                    end.unhealthy = Some(note.clone());
                }
                if slot.unhealthy.is_some() || slot.failures >= threshold {
                    slot.unhealthy = Some(note.clone());
                }
                slot.last_failure = Some(note);
            }
            CheckResult::NotRun => {}
        }
        end.failures = slot.failures;
        end.became = (!was && slot.claimable()).then(|| slot.class.clone());
        end
    }

    /// Whether `board` is idle: up, unclaimed, in service (not in
    /// maintenance, faulted, returning, tested or checked): what a
    /// scheduled check may run on. An unhealthy board is idle too (a
    /// passing check brings it back).
    pub fn idle(&self, board: &str) -> bool {
        self.boards.get(board).is_some_and(|s| {
            s.alive
                && s.claim.is_none()
                && !s.maintenance
                && s.fault.is_none()
                && !s.returning
                && !s.testing
                && !s.checking
        })
    }

    pub fn checking(&self, board: &str) -> bool {
        self.boards.get(board).is_some_and(|s| s.checking)
    }

    pub fn unhealthy(&self, board: &str) -> Option<&str> {
        self.boards.get(board)?.unhealthy.as_deref()
    }

    /// What the board's health checks said lately, for `status` and the
    /// page: why it is unhealthy, or its failures so far (None: healthy,
    /// or never checked).
    pub fn health_note(&self, board: &str) -> Option<&str> {
        let s = self.boards.get(board)?;
        s.unhealthy.as_deref().or(s.last_failure.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::claims::{Outcome, Policy};
    use crate::protocol::{BoardState, Code};

    fn book() -> ClaimBook {
        let p = Policy::leases(Duration::from_secs(60), Duration::from_secs(600));
        let mut b = ClaimBook::new(p, &[("rp-1".into(), "rp".into())]);
        b.health("rp-1", true, None);
        b
    }

    #[test]
    fn failures_in_a_row_make_a_board_unhealthy_and_a_pass_brings_it_back() {
        let mut b = book();
        b.begin_check("rp-1").unwrap();
        assert_eq!(b.state("rp-1"), BoardState::Checking);
        assert!(b.pick("rp").is_none(), "not claimable while checked");
        let e = b.end_check("rp-1", &CheckResult::Fail("console: silent".into()), 2);
        assert_eq!((e.became.as_deref(), e.unhealthy.as_deref(), e.failures), (Some("rp"), None, 1));
        assert_eq!(b.state("rp-1"), BoardState::Available, "one failure of two: still offered");
        assert!(b.health_note("rp-1").unwrap().contains("failed 1 of 2"));
        b.begin_check("rp-1").unwrap();
        let e = b.end_check("rp-1", &CheckResult::Fail("console: silent".into()), 2);
        assert!(e.unhealthy.unwrap().contains("failed 2 of 2 health checks in a row: console: silent"));
        assert_eq!((e.became, b.state("rp-1")), (None, BoardState::Unhealthy));
        assert!(b.pick("rp").is_none(), "never granted");
        // A check that could not run changes nothing; a pass brings it back.
        b.begin_check("rp-1").unwrap();
        assert_eq!(b.end_check("rp-1", &CheckResult::NotRun, 2).failures, 2);
        assert_eq!(b.state("rp-1"), BoardState::Unhealthy);
        b.begin_check("rp-1").unwrap();
        let e = b.end_check("rp-1", &CheckResult::Pass, 2);
        assert_eq!((e.became.as_deref(), e.healthy, e.failures), (Some("rp"), true, 0));
        assert_eq!((b.state("rp-1"), b.health_note("rp-1")), (BoardState::Available, None));
    }

    #[test]
    fn claimed_maintenance_and_busy_boards_are_not_checked() {
        let mut b = book();
        let mut n = 0;
        let mut h = || {
            n += 1;
            format!("bl-{n:032x}")
        };
        let Ok(Outcome::Granted(c)) =
            b.claim("alice", "rp", Duration::from_secs(60), false, false, 0, &mut h, &|_| true)
        else {
            panic!("no grant")
        };
        assert_eq!(b.begin_check("rp-1").unwrap_err().code(), Code::Busy);
        assert!(!b.idle("rp-1"));
        b.end(&c.handle, true);
        assert!(b.begin_check("rp-1").unwrap_err().to_string().contains("returned"));
        b.returned("rp-1");
        b.set_maintenance("rp-1", true).unwrap();
        assert!(b.begin_check("rp-1").unwrap_err().to_string().contains("maintenance"));
        assert!(!b.idle("rp-1"));
        b.set_maintenance("rp-1", false).unwrap();
        assert!(b.idle("rp-1"));
        b.begin_check("rp-1").unwrap();
        assert!(b.begin_check("rp-1").unwrap_err().to_string().contains("already"));
        assert_eq!(b.begin_test("rp-1").unwrap_err().code(), Code::Busy, "no selftest under a check");
    }

    #[test]
    fn health_comes_back_from_the_database_and_maintenance_wins() {
        let p = Policy::leases(Duration::from_secs(60), Duration::from_secs(600));
        let mut b = ClaimBook::new(p, &[("rp-1".into(), "rp".into()), ("rp-2".into(), "rp".into())]);
        b.health("rp-1", true, None);
        b.health("rp-2", true, None);
        let failed = [("rp-2".to_string(), (1, "failed 1 of 2 health checks in a row: console".to_string()))];
        b.restore_health(
            &[("rp-1".to_string(), "why".to_string())].into_iter().collect(),
            &failed.into_iter().collect(),
            &|_| 2,
        );
        assert_eq!(b.state("rp-1"), BoardState::Unhealthy);
        // One failure kept across the restart: rp-2 is still offered, says
        // so, and its next failure is the second in a row.
        assert_eq!(b.state("rp-2"), BoardState::Available);
        assert!(b.health_note("rp-2").unwrap().starts_with("failed 1 of 2"));
        b.begin_check("rp-2").unwrap();
        let e = b.end_check("rp-2", &CheckResult::Fail("console: silent".into()), 2);
        assert_eq!((e.failures, e.unhealthy.is_some()), (2, true));
        b.begin_check("rp-1").unwrap();
        let e = b.end_check("rp-1", &CheckResult::Fail("console: silent".into()), 2);
        assert_eq!((e.unhealthy, e.failures), (None, 3), "unhealthy already");
        assert!(b.health_note("rp-1").unwrap().starts_with("failed 3 health checks in a row (2 make it unhealthy)"));
        b.set_maintenance("rp-1", true).unwrap();
        assert_eq!(b.state("rp-1"), BoardState::Maintenance);
        assert_eq!(b.set_maintenance("rp-1", false).unwrap(), None, "still unhealthy: not offered");
    }
}
