//! The lab's per-user limits (`[policy] max_claims_per_user`, `[lease]
//! max_total`): the book refuses what would pass them, whichever ledger
//! keeps its claims. Operators are held to them like everyone: the limits
//! share the boards, and an operator takes a board out of service with
//! maintenance, which is no claim.

use std::collections::HashMap;
use std::time::Duration;

use super::{BookError, Claim, ClaimBook};
use crate::util::{format_duration, format_duration_compound, rfc3339_ms};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl ClaimBook {
    /// How many claims `user` holds here, waiting ones (still `live`)
    /// included, and on other hosts.
    pub fn held_by(&self, user: &str, live: &dyn Fn(u64) -> bool) -> (usize, usize) {
        let held = self.claims().filter(|c| c.user == user).count() + self.elsewhere.get(user).copied().unwrap_or(0);
        let waiting = self.waiters.values().flatten().filter(|w| w.user == user && live(w.id)).count();
        (held, waiting)
    }

    /// Refuses one more claim (granted or waiting) to a user at
    /// `max_claims_per_user`.
    pub(super) fn within_claims_limit(&self, user: &str, live: &dyn Fn(u64) -> bool) -> Result<(), BookError> {
        let Some(max) = self.policy.max_claims_per_user else { return Ok(()) };
        let (held, waiting) = self.held_by(user, live);
        if held + waiting < max {
            return Ok(());
        }
        let what = match waiting {
            0 => format!("{held} claims"),
            w => format!("{} claims ({held} held, {w} waiting)", held + waiting),
        };
        Err(BookError::Limit(format!(
            "{user} has {what}; the lab's limit policy.max_claims_per_user is {max}: release one first"
        )))
    }

    /// The new lease end of `c` renewed for `lease` from `now`, or why not:
    /// a claim is held at most `lease.max_total` from its grant.
    pub fn renewal(&self, c: &Claim, lease: Duration, now: i64) -> Result<i64, BookError> {
        let until = now.saturating_add(ms(lease));
        let Some(total) = self.policy.max_total else { return Ok(until) };
        let last = c.claimed_at.saturating_add(ms(total));
        if until <= last {
            return Ok(until);
        }
        let left = Duration::from_millis(u64::try_from(last.saturating_sub(now)).unwrap_or(0));
        let limit = format!("the lab's limit lease.max_total is {}", format_duration(total));
        Err(BookError::Limit(if left.as_secs() == 0 {
            format!(
                "the claim on {} cannot be renewed: {limit}, and it ends then, at {}; release it and claim again",
                c.board,
                rfc3339_ms(c.expires_at)
            )
        } else {
            format!(
                "renewing for {} would hold {} longer than {limit} (since {}): at most {} more (--lease {}s)",
                format_duration(lease),
                c.board,
                rfc3339_ms(c.claimed_at),
                format_duration_compound(Duration::from_secs(left.as_secs())),
                left.as_secs()
            )
        }))
    }

    /// What the other hosts of the lab hold, by user (from the lab's view):
    /// counted against `max_claims_per_user` with this host's own claims.
    pub fn held_elsewhere(&mut self, by_user: HashMap<String, usize>) {
        self.elsewhere = by_user;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::super::{ClaimBook, Outcome, Policy};
    use super::*;
    use crate::protocol::Code;

    const HOUR: Duration = Duration::from_secs(3600);

    fn book(policy: Policy, n: usize) -> ClaimBook {
        let boards: Vec<(String, String)> = (1..=n).map(|i| (format!("b{i}"), "c".to_string())).collect();
        let mut b = ClaimBook::new(policy, &boards);
        for (name, _) in &boards {
            b.health(name, true, None);
        }
        b
    }

    thread_local!(static NEXT: Cell<u32> = const { Cell::new(0) });

    fn handle() -> String {
        NEXT.with(|n| {
            n.set(n.get() + 1);
            format!("bl-{:032x}", n.get())
        })
    }

    fn claim(b: &mut ClaimBook, user: &str, wait: bool, live: &dyn Fn(u64) -> bool) -> Result<Outcome, BookError> {
        b.claim(user, "c", HOUR, false, wait, 0, &mut handle, live)
    }

    #[test]
    fn a_user_holds_at_most_max_claims_waiting_ones_included() {
        let policy = Policy { max_claims_per_user: Some(2), ..Policy::leases(HOUR, 4 * HOUR) };
        let mut b = book(policy, 3);
        let live = |_: u64| true;
        let first = claim(&mut b, "alice", false, &live).unwrap();
        claim(&mut b, "alice", false, &live).unwrap();
        let e = claim(&mut b, "alice", false, &live).unwrap_err();
        assert_eq!(e.code(), Code::LimitReached);
        assert_eq!(
            e.to_string(),
            "alice has 2 claims; the lab's limit policy.max_claims_per_user is 2: release one first"
        );
        assert_eq!(claim(&mut b, "alice", true, &live).unwrap_err().code(), Code::LimitReached, "nor wait");
        assert_eq!(b.claims().count(), 2, "the refusal changed nothing");
        // Others are not held to alice's count.
        assert!(matches!(claim(&mut b, "bob", false, &live).unwrap(), Outcome::Granted(_)));
        // A claim that ends gives its place back.
        let Outcome::Granted(c) = first else { panic!("granted") };
        b.end(&c.handle, false);
        claim(&mut b, "carol", false, &live).unwrap();
        // All three boards are held now: alice waits, and that counts.
        assert!(matches!(claim(&mut b, "alice", true, &live).unwrap(), Outcome::Queued(_)));
        let e = claim(&mut b, "alice", true, &live).unwrap_err();
        assert!(e.to_string().contains("2 claims (1 held, 1 waiting)"), "{e}");
        // A waiter that left does not count.
        let gone = |_: u64| false;
        assert!(matches!(claim(&mut b, "alice", true, &gone).unwrap(), Outcome::Queued(_)));
    }

    #[test]
    fn claims_on_other_hosts_count_too() {
        let policy = Policy { max_claims_per_user: Some(2), ..Policy::leases(HOUR, 4 * HOUR) };
        let mut b = book(policy, 2);
        let live = |_: u64| true;
        b.held_elsewhere([("alice".to_string(), 2)].into());
        assert_eq!(claim(&mut b, "alice", false, &live).unwrap_err().code(), Code::LimitReached);
        b.held_elsewhere([("alice".to_string(), 1)].into());
        claim(&mut b, "alice", false, &live).unwrap();
        assert_eq!(b.held_by("alice", &live), (2, 0));
    }

    #[test]
    fn no_limits_without_a_policy() {
        let mut b = book(Policy::leases(HOUR, 4 * HOUR), 5);
        let live = |_: u64| true;
        for _ in 0..5 {
            claim(&mut b, "alice", false, &live).unwrap();
        }
        let c = b.claims().next().unwrap().clone();
        assert_eq!(b.renewal(&c, 4 * HOUR, 100 * 3_600_000), Ok(104 * 3_600_000));
    }

    #[test]
    fn renewals_stop_at_max_total() {
        let policy = Policy { max_total: Some(3 * HOUR), ..Policy::leases(HOUR, 2 * HOUR) };
        let mut b = book(policy, 1);
        let live = |_: u64| true;
        let Outcome::Granted(c) = claim(&mut b, "alice", false, &live).unwrap() else { panic!("granted") };
        let h = 3_600_000;
        assert_eq!(b.renewal(&c, HOUR, h), Ok(2 * h));
        assert_eq!(b.renewal(&c, 2 * HOUR, h), Ok(3 * h), "up to the limit exactly");
        let e = b.renewal(&c, HOUR, 5 * h / 2).unwrap_err();
        assert_eq!(e.code(), Code::LimitReached);
        assert!(e.to_string().contains("lease.max_total is 3h"), "{e}");
        assert!(e.to_string().contains("at most 30m more (--lease 1800s)"), "{e}");
        let e = b.renewal(&c, HOUR, 3 * h).unwrap_err();
        assert!(e.to_string().contains("cannot be renewed"), "{e}");
    }
}
