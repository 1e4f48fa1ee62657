//! The claim book: who holds which board and until when, who waits for
//! which class and in what order, which board a claim gets, and every rule
//! about who may do what to a claim.
//!
//! Pure: no actors, no I/O, no clock (times come in as arguments), so each
//! rule is tested on its own, with property tests for the invariants (no
//! board held twice, waiters served in order, an ended claim frees its
//! board). The registry is the book's only user: it asks the book, then
//! does what the answer says (persist through a [`Ledger`], attach or
//! detach the board, reply).

mod error;
pub mod etcd;
mod health;
pub mod ledger;
mod limits;
mod service;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

pub use error::{shown, BookError};
pub use health::{CheckEnd, CheckResult};
pub use ledger::{Ledger, LedgerError};

use crate::protocol::BoardState;
use crate::util::format_duration;

/// A claim: a board held by a user until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `bl-` and 32 hex digits: a bearer secret of the claimant's.
    pub handle: String,
    pub board: String,
    pub user: String,
    /// Unix milliseconds.
    pub claimed_at: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// How long claims last, and how much one user may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The lease of a claim that asks for none.
    pub lease_default: Duration,
    /// The longest lease anyone may ask for.
    pub lease_max: Duration,
    /// `[lease] max_total`: the longest a claim may be held from its grant
    /// to its lease's end, renewals included.
    pub max_total: Option<Duration>,
    /// `[policy] max_claims_per_user`: claims one user may hold at once,
    /// waiting claims (`claim --wait`) included.
    pub max_claims_per_user: Option<usize>,
}

impl Policy {
    /// Leases only, no per-user limits.
    pub const fn leases(lease_default: Duration, lease_max: Duration) -> Policy {
        Policy { lease_default, lease_max, max_total: None, max_claims_per_user: None }
    }
}

/// Who is asking, as far as the rules care.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub user: &'a str,
    /// Operators: root and `daemon.admins` (never on a jail's socket).
    pub admin: bool,
    /// On a jail's socket: the handle of the jail's own claim.
    pub jail_handle: Option<&'a str>,
}

/// Someone waiting for a board of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    /// The book's number for it; the registry keeps the reply channel.
    pub id: u64,
    pub user: String,
    pub lease: Duration,
    pub power: bool,
}

/// A claim that ended lately, as its claimant is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub board: String,
    pub user: String,
    /// "expired", "was force-released by alice", "was released".
    pub how: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// How many ended claims the book remembers for their claimants.
pub const ENDED_KEPT: usize = 4096;

/// What a claim request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A board, now.
    Granted(Claim),
    /// A place in the class's queue.
    Queued(u64),
}

/// A class and how many of its boards there are and are free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCount {
    pub class: String,
    pub total: usize,
    pub available: usize,
}

/// One board, as the book sees it.
#[derive(Debug, Clone)]
struct Slot {
    class: String,
    claim: Option<Claim>,
    maintenance: bool,
    /// The board's actor has answered since its last (re)start.
    alive: bool,
    fault: Option<String>,
    /// A claim ended and the board is still being returned (its jail
    /// removed, its power switched off): not claimable yet.
    returning: bool,
    /// An operator's selftest runs on it: out of service until it ends.
    testing: bool,
    /// A health check runs on it: not claimable until it ends.
    checking: bool,
    /// It failed its class's health check that many times in a row: why
    /// (the last failure). Not claimable until a check passes.
    unhealthy: Option<String>,
    /// Health checks failed in a row, and the last one's failure.
    failures: u32,
    last_failure: Option<String>,
}

impl Slot {
    fn claimable(&self) -> bool {
        self.alive
            && !self.maintenance
            && !self.testing
            && !self.checking
            && self.unhealthy.is_none()
            && self.fault.is_none()
            && self.claim.is_none()
            && !self.returning
    }

    fn state(&self) -> BoardState {
        if !self.alive {
            BoardState::Offline
        } else if self.maintenance || self.testing {
            BoardState::Maintenance
        } else if self.fault.is_some() {
            BoardState::Faulted
        } else if self.checking {
            BoardState::Checking
        } else if self.unhealthy.is_some() {
            BoardState::Unhealthy
        } else if self.claim.is_some() {
            BoardState::Claimed
        } else {
            BoardState::Available
        }
    }
}

/// The book. See the module documentation.
#[derive(Debug, Clone)]
pub struct ClaimBook {
    policy: Policy,
    boards: BTreeMap<String, Slot>,
    classes: BTreeMap<String, Vec<String>>,
    by_handle: HashMap<String, String>,
    waiters: HashMap<String, VecDeque<Waiter>>,
    next_waiter: u64,
    /// Claims that ended lately, by handle (the oldest forgotten first),
    /// so that their claimants learn how and when instead of "no claim".
    ended: HashMap<String, Ended>,
    ended_order: VecDeque<String>,
    /// Claims each user holds on the other hosts of a lab of several (see
    /// [`ClaimBook::held_elsewhere`]): counted against their limit.
    elsewhere: HashMap<String, usize>,
}

impl ClaimBook {
    /// A book of `boards` (name, class), none claimed, none alive yet.
    pub fn new(policy: Policy, boards: &[(String, String)]) -> ClaimBook {
        let mut classes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut slots = BTreeMap::new();
        for (name, class) in boards {
            classes.entry(class.clone()).or_default().push(name.clone());
            slots.insert(
                name.clone(),
                Slot {
                    class: class.clone(),
                    claim: None,
                    maintenance: false,
                    alive: false,
                    fault: None,
                    returning: false,
                    testing: false,
                    checking: false,
                    unhealthy: None,
                    failures: 0,
                    last_failure: None,
                },
            );
        }
        for names in classes.values_mut() {
            names.sort();
        }
        ClaimBook {
            policy,
            boards: slots,
            classes,
            by_handle: HashMap::new(),
            waiters: HashMap::new(),
            next_waiter: 1,
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            elsewhere: HashMap::new(),
        }
    }

    /// Puts back what the ledger kept: the claims (those on boards no
    /// longer configured are returned, dropped) and the boards in
    /// maintenance.
    pub fn restore(&mut self, claims: Vec<Claim>, maintenance: &HashSet<String>) -> Vec<Claim> {
        let mut dropped = Vec::new();
        for c in claims {
            match self.boards.get_mut(&c.board) {
                Some(slot) if slot.claim.is_none() => {
                    self.by_handle.insert(c.handle.clone(), c.board.clone());
                    slot.claim = Some(c);
                }
                _ => dropped.push(c),
            }
        }
        for (name, slot) in &mut self.boards {
            slot.maintenance = maintenance.contains(name);
        }
        dropped
    }

    // --- Questions -------------------------------------------------------

    /// The lease a claim or renew gets for `secs` (None: the default).
    pub fn lease(&self, secs: Option<u64>) -> Result<Duration, BookError> {
        match secs {
            None => Ok(self.policy.lease_default),
            Some(0) => Err(BookError::BadLease("lease must be at least 1 second".into())),
            Some(s) if Duration::from_secs(s) > self.policy.lease_max => Err(BookError::BadLease(format!(
                "lease {} is longer than the maximum {}",
                format_duration(Duration::from_secs(s)),
                format_duration(self.policy.lease_max)
            ))),
            Some(s) => Ok(Duration::from_secs(s)),
        }
    }

    /// The claim a request acts on: the jail's own (on a jail's socket),
    /// else the one `handle` names if the caller holds it. Another user's
    /// handle and an unknown one get the same answer.
    pub fn resolve(&self, who: &Asker<'_>, handle: Option<&str>) -> Result<&Claim, BookError> {
        let handle = match (who.jail_handle, handle) {
            (Some(own), Some(h)) if own != h => return Err(BookError::HandleMismatch),
            (Some(own), _) => own,
            (None, Some(h)) => h,
            (None, None) => return Err(BookError::HandleRequired),
        };
        let not_yours = || BookError::NotYours(handle.to_string());
        let Some(board) = self.by_handle.get(handle) else {
            // Its own claimant learns how it ended; anyone else nothing.
            return Err(match self.ended.get(handle) {
                Some(e) if e.user == who.user => {
                    BookError::Ended { board: e.board.clone(), how: e.how.clone(), at: e.at }
                }
                _ => not_yours(),
            });
        };
        match self.boards.get(board).and_then(|s| s.claim.as_ref()) {
            Some(c) if c.user == who.user && c.handle == handle => Ok(c),
            _ => Err(not_yours()),
        }
    }

    /// Operators only (checked before anything else of the request, so a
    /// user learns nothing about board names from it).
    pub fn operator(&self, who: &Asker<'_>, what: &str) -> Result<(), BookError> {
        if who.admin && who.jail_handle.is_none() {
            Ok(())
        } else {
            Err(BookError::Operators { what: what.into(), user: who.user.into() })
        }
    }

    /// Whether a board of that name exists.
    pub fn board(&self, name: &str) -> Result<(), BookError> {
        if self.boards.contains_key(name) {
            Ok(())
        } else {
            Err(BookError::UnknownBoard(name.into()))
        }
    }

    /// The board of a handle, whoever holds it (for operators' by-handle
    /// console access).
    pub fn board_of_handle(&self, handle: &str) -> Option<&str> {
        self.by_handle.get(handle).map(String::as_str)
    }

    pub fn claim_of(&self, board: &str) -> Option<&Claim> {
        self.boards.get(board)?.claim.as_ref()
    }

    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.boards.values().filter_map(|s| s.claim.as_ref())
    }

    pub fn class_of(&self, board: &str) -> Option<&str> {
        self.boards.get(board).map(|s| s.class.as_str())
    }

    pub fn state(&self, board: &str) -> BoardState {
        self.boards.get(board).map(Slot::state).unwrap_or(BoardState::Offline)
    }

    pub fn fault(&self, board: &str) -> Option<&str> {
        self.boards.get(board)?.fault.as_deref()
    }

    pub fn maintenance(&self, board: &str) -> bool {
        self.boards.get(board).is_some_and(|s| s.maintenance)
    }

    pub fn claimable(&self, board: &str) -> bool {
        self.boards.get(board).is_some_and(Slot::claimable)
    }

    /// The first claimable board of `class`, in name order.
    pub fn pick(&self, class: &str) -> Option<&str> {
        self.classes.get(class)?.iter().find(|n| self.claimable(n)).map(String::as_str)
    }

    /// Every class with its counts (`available_only`: those with a free
    /// board).
    pub fn classes(&self, available_only: bool) -> Vec<ClassCount> {
        self.classes
            .iter()
            .map(|(class, names)| ClassCount {
                class: class.clone(),
                total: names.len(),
                available: names.iter().filter(|n| self.claimable(n)).count(),
            })
            .filter(|c| !available_only || c.available > 0)
            .collect()
    }

    /// "2 claimed, 1 faulted": a class's boards by state.
    pub fn summary(&self, class: &str) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for n in self.classes.get(class).into_iter().flatten() {
            *counts.entry(self.state(n).as_str()).or_default() += 1;
        }
        counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
    }

    /// Waiters per class (for the dump).
    pub fn waiting(&self) -> BTreeMap<String, usize> {
        self.waiters.iter().filter(|(_, q)| !q.is_empty()).map(|(c, q)| (c.clone(), q.len())).collect()
    }

    /// Where `user`'s waiting claims stand: (class, place from 1, how many
    /// wait), counting only waiters still there (`live`).
    pub fn places(&self, user: &str, live: &dyn Fn(u64) -> bool) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        for (class, q) in &self.waiters {
            let here: Vec<&Waiter> = q.iter().filter(|w| live(w.id)).collect();
            for (i, w) in here.iter().enumerate() {
                if w.user == user {
                    out.push((class.clone(), i + 1, here.len()));
                }
            }
        }
        out.sort();
        out
    }

    /// Whether `handle`'s claim is still the board's and its lease has run
    /// out by `now` (what a lease timer checks before it ends a claim).
    pub fn expired(&self, handle: &str, now: i64) -> bool {
        let Some(board) = self.by_handle.get(handle) else { return false };
        self.claim_of(board).is_some_and(|c| c.handle == handle && c.expires_at <= now)
    }

    // --- Changes ---------------------------------------------------------

    /// A claim of `class` for `user`: a free board now if nobody is
    /// waiting for the class (first come, first served), else a place in
    /// the queue if `wait`, else no. `handle` makes the new claim's
    /// handle; `live` says whether a queued waiter is still there.
    #[allow(clippy::too_many_arguments)]
    pub fn claim(
        &mut self,
        user: &str,
        class: &str,
        lease: Duration,
        power: bool,
        wait: bool,
        now: i64,
        handle: &mut dyn FnMut() -> String,
        live: &dyn Fn(u64) -> bool,
    ) -> Result<Outcome, BookError> {
        if !self.classes.contains_key(class) {
            let known: Vec<&str> = self.classes.keys().map(String::as_str).collect();
            return Err(BookError::UnknownClass { class: class.into(), known: known.join(", ") });
        }
        self.within_claims_limit(user, live)?;
        let queued = self.waiters.get(class).is_some_and(|q| q.iter().any(|w| live(w.id)));
        if !queued {
            if let Some(board) = self.pick(class).map(str::to_string) {
                return Ok(Outcome::Granted(self.grant(&board, user, lease, now, handle())));
            }
        }
        if !wait {
            return Err(BookError::NoneAvailable { class: class.into(), summary: self.summary(class) });
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.entry(class.into()).or_default().push_back(Waiter { id, user: user.into(), lease, power });
        Ok(Outcome::Queued(id))
    }

    /// Gives `board` to `user` (it must be claimable).
    fn grant(&mut self, board: &str, user: &str, lease: Duration, now: i64, handle: String) -> Claim {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let c = Claim {
            handle: handle.clone(),
            board: board.into(),
            user: user.into(),
            claimed_at: now,
            expires_at: now.saturating_add(lease_ms),
        };
        if let Some(slot) = self.boards.get_mut(board) {
            debug_assert!(slot.claimable(), "granting {board}, which is not claimable");
            slot.claim = Some(c.clone());
        }
        self.by_handle.insert(handle, board.into());
        c
    }

    /// Free boards of `class` to its waiters, in the order they came;
    /// waiters that left (`live` false) are dropped on the way.
    pub fn serve_waiters(
        &mut self,
        class: &str,
        now: i64,
        handle: &mut dyn FnMut() -> String,
        live: &dyn Fn(u64) -> bool,
    ) -> Vec<(Waiter, Claim)> {
        let mut out = Vec::new();
        while let Some(q) = self.waiters.get_mut(class) {
            while q.front().is_some_and(|w| !live(w.id)) {
                q.pop_front();
            }
            if q.is_empty() {
                self.waiters.remove(class);
                break;
            }
            let Some(board) = self.pick(class).map(str::to_string) else { break };
            let Some(w) = self.waiters.get_mut(class).and_then(VecDeque::pop_front) else { break };
            let c = self.grant(&board, &w.user, w.lease, now, handle());
            out.push((w, c));
        }
        out
    }

    /// Takes a waiter out of its queue (it gave up, or timed out).
    pub fn leave_queue(&mut self, id: u64) {
        for q in self.waiters.values_mut() {
            q.retain(|w| w.id != id);
        }
        self.waiters.retain(|_, q| !q.is_empty());
    }

    /// Ends `handle`'s claim (release, expiry, force-release, undo) and
    /// returns it. With `returning`, its board is claimable again only
    /// once [`ClaimBook::returned`] says it is back.
    pub fn end(&mut self, handle: &str, returning: bool) -> Option<Claim> {
        let board = self.by_handle.remove(handle)?;
        let slot = self.boards.get_mut(&board)?;
        if slot.claim.as_ref().is_some_and(|c| c.handle == handle) {
            slot.returning |= returning;
            slot.claim.take()
        } else {
            None
        }
    }

    /// Remembers how `c` ended, for its claimant (see [`Ended`]).
    pub fn remember_end(&mut self, c: &Claim, how: String, at: i64) {
        if self.ended.len() >= ENDED_KEPT {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
        let e = Ended { board: c.board.clone(), user: c.user.clone(), how, at };
        if self.ended.insert(c.handle.clone(), e).is_none() {
            self.ended_order.push_back(c.handle.clone());
        }
    }

    /// How `handle`'s claim ended, if it did lately.
    pub fn ended(&self, handle: &str) -> Option<&Ended> {
        self.ended.get(handle)
    }

    /// A new lease end for `handle`'s claim; false if it ended meanwhile.
    pub fn renew(&mut self, handle: &str, expires_at: i64) -> bool {
        let Some(board) = self.by_handle.get(handle) else { return false };
        match self.boards.get_mut(board).and_then(|s| s.claim.as_mut()) {
            Some(c) if c.handle == handle => {
                c.expires_at = expires_at;
                true
            }
            _ => false,
        }
    }
}
