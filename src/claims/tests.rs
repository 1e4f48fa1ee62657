//! The book's rules one by one, then its invariants under random
//! sequences of everything that can happen to a lab.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::protocol::Code;

const POLICY: Policy = Policy::leases(Duration::from_secs(3600), Duration::from_secs(86400));

fn book(boards: &[(&str, &str)]) -> ClaimBook {
    let v: Vec<(String, String)> = boards.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect();
    let mut b = ClaimBook::new(POLICY, &v);
    for (n, _) in boards {
        b.health(n, true, None);
    }
    b
}

fn handles() -> impl FnMut() -> String {
    let n = Cell::new(0u32);
    move || {
        n.set(n.get() + 1);
        format!("bl-{:032x}", n.get())
    }
}

fn alice() -> Asker<'static> {
    Asker { user: "alice", admin: false, jail_handle: None }
}

fn granted(o: Outcome) -> Claim {
    match o {
        Outcome::Granted(c) => c,
        Outcome::Queued(id) => panic!("queued as {id}"),
    }
}

#[test]
fn claims_go_to_free_boards_in_name_order_then_none_is_left() {
    let mut b = book(&[("rp-2", "rockpro64"), ("rp-1", "rockpro64"), ("pine-1", "pine64")]);
    let mut h = handles();
    let live = |_: u64| true;
    let c1 = granted(b.claim("alice", "rockpro64", POLICY.lease_default, false, false, 1000, &mut h, &live).unwrap());
    assert_eq!((c1.board.as_str(), c1.expires_at), ("rp-1", 1000 + 3_600_000));
    let c2 = granted(b.claim("bob", "rockpro64", POLICY.lease_default, false, false, 1000, &mut h, &live).unwrap());
    assert_eq!(c2.board, "rp-2");
    let e = b.claim("carol", "rockpro64", POLICY.lease_default, false, false, 1000, &mut h, &live).unwrap_err();
    assert_eq!(e, BookError::NoneAvailable { class: "rockpro64".into(), summary: "2 claimed".into() });
    assert_eq!(e.code(), Code::NoDeviceAvailable);
    let e = b.claim("carol", "nope", POLICY.lease_default, false, false, 1000, &mut h, &live).unwrap_err();
    assert_eq!(e.to_string(), "no class \"nope\" (classes: pine64, rockpro64)");
    assert_eq!(b.classes(true), vec![ClassCount { class: "pine64".into(), total: 1, available: 1 }]);
}

#[test]
fn a_board_under_selftest_is_never_granted_and_a_claimed_one_never_tested() {
    let mut b = book(&[("rp-1", "rockpro64"), ("rp-2", "rockpro64")]);
    let mut h = handles();
    let live = |_: u64| true;
    let c = granted(b.claim("alice", "rockpro64", POLICY.lease_default, false, false, 1000, &mut h, &live).unwrap());
    let e = b.begin_test(&c.board).unwrap_err();
    assert_eq!((e.code(), e.to_string().contains("claimed by alice")), (Code::Busy, true), "{e}");
    b.begin_test("rp-2").unwrap();
    assert_eq!(b.state("rp-2"), BoardState::Maintenance);
    assert_eq!(b.begin_test("rp-2").unwrap_err().code(), Code::Busy);
    // Nothing is free while rp-2 is tested; a waiter is served once it ends.
    let e = b.claim("bob", "rockpro64", POLICY.lease_default, false, false, 1000, &mut h, &live).unwrap_err();
    assert_eq!(e.code(), Code::NoDeviceAvailable);
    let q = b.claim("bob", "rockpro64", POLICY.lease_default, false, true, 1000, &mut h, &live).unwrap();
    assert!(matches!(q, Outcome::Queued(_)));
    assert!(b.serve_waiters("rockpro64", 1000, &mut h, &live).is_empty());
    // Maintenance switched off meanwhile does not end the test.
    b.set_maintenance("rp-2", false).unwrap();
    assert!(!b.claimable("rp-2"));
    assert_eq!(b.end_test("rp-2").as_deref(), Some("rockpro64"));
    let served = b.serve_waiters("rockpro64", 1000, &mut h, &live);
    assert_eq!(served.len(), 1);
    assert_eq!((served[0].0.user.as_str(), served[0].1.board.as_str()), ("bob", "rp-2"));
    assert_eq!(b.begin_test("nope").unwrap_err().code(), Code::UnknownBoard);
}

#[test]
fn an_ended_claim_tells_its_claimant_how_and_no_one_else() {
    let mut b = book(&[("rp-1", "rockpro64")]);
    let c = granted(
        b.claim("alice", "rockpro64", POLICY.lease_default, false, false, 0, &mut handles(), &|_| true).unwrap(),
    );
    let c = b.end(&c.handle, true).unwrap();
    b.remember_end(&c, "was force-released by root".into(), 1_796_000_000_000);
    let e = b.resolve(&alice(), Some(&c.handle)).unwrap_err();
    assert_eq!(e.code(), Code::ClaimEnded);
    assert_eq!(e.to_string(), "your claim on rp-1 was force-released by root at 2026-11-30T00:53:20Z");
    // Another user learns nothing from the handle.
    let bob = Asker { user: "bob", admin: true, jail_handle: None };
    assert_eq!(b.resolve(&bob, Some(&c.handle)).unwrap_err().code(), Code::NotClaimed);
    // Only the latest ENDED_KEPT are remembered.
    for i in 0..ENDED_KEPT {
        let other = Claim { handle: format!("bl-f{i:031x}"), ..c.clone() };
        b.remember_end(&other, "expired".into(), 0);
    }
    assert_eq!(b.resolve(&alice(), Some(&c.handle)).unwrap_err().code(), Code::NotClaimed);
    assert!(b.ended(&format!("bl-f{:031x}", ENDED_KEPT - 1)).is_some());
}

#[test]
fn who_may_act_on_a_claim() {
    let mut b = book(&[("rp-1", "rockpro64")]);
    let c = granted(
        b.claim("alice", "rockpro64", POLICY.lease_default, false, false, 0, &mut handles(), &|_| true).unwrap(),
    );
    assert_eq!(b.resolve(&alice(), Some(&c.handle)).unwrap(), &c);
    let bob = Asker { user: "bob", admin: true, jail_handle: None };
    // Another user's handle and a made-up one get the same answer; being
    // an operator does not help.
    let theirs = b.resolve(&bob, Some(&c.handle)).unwrap_err();
    let made_up = b.resolve(&bob, Some("bl-00000000000000000000000000000000")).unwrap_err();
    assert_eq!(theirs.code(), made_up.code());
    assert!(theirs.to_string().starts_with("you hold no claim with handle"));
    assert_eq!(b.resolve(&alice(), None).unwrap_err(), BookError::HandleRequired);
    // A jail's socket acts on its own claim, without or with its handle.
    let jail = Asker { user: "alice", admin: false, jail_handle: Some(&c.handle) };
    assert_eq!(b.resolve(&jail, None).unwrap().board, "rp-1");
    assert_eq!(b.resolve(&jail, Some("bl-1")).unwrap_err(), BookError::HandleMismatch);
    // Operators' functions.
    assert!(b.operator(&bob, "dump").is_ok());
    assert_eq!(b.operator(&alice(), "dump").unwrap_err().code(), Code::PermissionDenied);
    let jail_admin = Asker { user: "root", admin: true, jail_handle: Some(&c.handle) };
    assert!(b.operator(&jail_admin, "dump").is_err(), "a jail is never an operator");
}

#[test]
fn leases_are_bounded() {
    let b = book(&[("rp-1", "rockpro64")]);
    assert_eq!(b.lease(None).unwrap(), POLICY.lease_default);
    assert_eq!(b.lease(Some(90)).unwrap(), Duration::from_secs(90));
    assert_eq!(b.lease(Some(0)).unwrap_err().code(), Code::BadRequest);
    assert_eq!(b.lease(Some(86401)).unwrap_err().to_string(), "lease 86401s is longer than the maximum 1d");
}

#[test]
fn an_ended_claim_frees_its_board_once_it_is_back() {
    let mut b = book(&[("rp-1", "rockpro64")]);
    let c = granted(
        b.claim("alice", "rockpro64", Duration::from_secs(60), false, false, 0, &mut handles(), &|_| true).unwrap(),
    );
    assert!(!b.expired(&c.handle, 59_999));
    assert!(b.expired(&c.handle, 60_000));
    assert_eq!(b.end(&c.handle, true), Some(c.clone()));
    assert_eq!(b.end(&c.handle, true), None, "ended once");
    assert!(!b.claimable("rp-1"), "not before its power-off is done");
    assert_eq!(b.returned("rp-1").as_deref(), Some("rockpro64"));
    assert!(b.claimable("rp-1"));
    assert!(!b.renew(&c.handle, 1), "a renew after the end");
}

#[test]
fn maintenance_health_and_states() {
    let mut b = book(&[("rp-1", "rockpro64")]);
    assert_eq!(b.state("rp-1"), BoardState::Available);
    assert_eq!(b.health("rp-1", true, Some("switch silent".into())), None);
    assert_eq!(b.state("rp-1"), BoardState::Faulted);
    assert!(b.pick("rockpro64").is_none());
    assert_eq!(b.health("rp-1", true, None).as_deref(), Some("rockpro64"), "claimable again: serve its waiters");
    assert_eq!(b.set_maintenance("rp-1", true).unwrap(), None);
    assert_eq!(b.state("rp-1"), BoardState::Maintenance);
    assert_eq!(b.set_maintenance("rp-1", false).unwrap().as_deref(), Some("rockpro64"));
    let c = granted(
        b.claim("alice", "rockpro64", POLICY.lease_default, false, false, 0, &mut handles(), &|_| true).unwrap(),
    );
    let e = b.set_maintenance("rp-1", true).unwrap_err();
    assert_eq!((e.code(), e.to_string().contains("alice")), (Code::Busy, true));
    b.health("rp-1", false, None);
    assert_eq!(b.state("rp-1"), BoardState::Offline, "a restarting actor");
    assert_eq!(b.claim_of("rp-1"), Some(&c), "keeps its claim");
    assert_eq!(b.set_maintenance("nope", true).unwrap_err().code(), Code::UnknownBoard);
}

#[test]
fn waiters_come_first_and_in_order() {
    let mut b = book(&[("rp-1", "rockpro64")]);
    let mut h = handles();
    let gone: HashSet<u64> = HashSet::new();
    let c = granted(b.claim("alice", "rockpro64", POLICY.lease_default, false, false, 0, &mut h, &|_| true).unwrap());
    let q1 =
        b.claim("bob", "rockpro64", POLICY.lease_default, true, true, 0, &mut h, &|id| !gone.contains(&id)).unwrap();
    let q2 = b.claim("carol", "rockpro64", POLICY.lease_default, false, true, 0, &mut h, &|_| true).unwrap();
    assert!(matches!((&q1, &q2), (Outcome::Queued(1), Outcome::Queued(2))));
    b.end(&c.handle, true);
    b.returned("rp-1");
    // A newcomer does not jump the queue while someone waits.
    let e = b.claim("dave", "rockpro64", POLICY.lease_default, false, false, 0, &mut h, &|_| true).unwrap_err();
    assert_eq!(e.code(), Code::NoDeviceAvailable);
    let served = b.serve_waiters("rockpro64", 5, &mut h, &|_| true);
    assert_eq!(served.len(), 1);
    assert_eq!((served[0].0.user.as_str(), served[0].0.power, served[0].1.claimed_at), ("bob", true, 5));
    // Carol leaves; when the board comes back nobody is served.
    b.end(&served[0].1.handle, false);
    b.leave_queue(2);
    assert!(b.serve_waiters("rockpro64", 6, &mut h, &|_| true).is_empty());
    assert!(b.waiting().is_empty());
}

#[test]
fn restore_keeps_claims_on_known_boards() {
    let mut b = book(&[("rp-1", "rockpro64")]);
    let kept =
        Claim { handle: "bl-1".into(), board: "rp-1".into(), user: "alice".into(), claimed_at: 0, expires_at: 9 };
    let gone = Claim { board: "old".into(), handle: "bl-2".into(), ..kept.clone() };
    let dropped = b.restore(vec![kept.clone(), gone.clone()], &HashSet::from(["rp-1".to_string()]));
    assert_eq!(dropped, vec![gone]);
    assert_eq!(b.claim_of("rp-1"), Some(&kept));
    assert_eq!(b.board_of_handle("bl-1"), Some("rp-1"));
    assert!(b.maintenance("rp-1"));
}

// --- Invariants under random histories ------------------------------------

/// Everything that can happen to a lab, as the book sees it.
#[derive(Debug, Clone)]
enum Op {
    Claim { user: u8, class: u8, wait: bool },
    End { pick: u8, returning: bool },
    Returned { board: u8 },
    Health { board: u8, alive: bool, fault: bool },
    Maintenance { board: u8, on: bool },
    Leave { pick: u8 },
    Serve { class: u8 },
    Renew { pick: u8, to: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u8..2, any::<bool>()).prop_map(|(user, class, wait)| Op::Claim { user, class, wait }),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(pick, returning)| Op::End { pick, returning }),
        2 => (0u8..5).prop_map(|board| Op::Returned { board }),
        2 => (0u8..5, any::<bool>(), any::<bool>()).prop_map(|(board, alive, fault)| Op::Health { board, alive, fault }),
        1 => (0u8..5, any::<bool>()).prop_map(|(board, on)| Op::Maintenance { board, on }),
        1 => any::<u8>().prop_map(|pick| Op::Leave { pick }),
        2 => (0u8..2).prop_map(|class| Op::Serve { class }),
        1 => (any::<u8>(), any::<u16>()).prop_map(|(pick, to)| Op::Renew { pick, to }),
    ]
}

const BOARDS: [(&str, &str); 5] = [("a-1", "a"), ("a-2", "a"), ("a-3", "a"), ("b-1", "b"), ("b-2", "b")];
const CLASSES: [&str; 2] = ["a", "b"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// No board is ever granted to two claims; every claim is findable by
    /// its handle; a claimable board has no claim; waiters of a class are
    /// served strictly in the order they queued; an ended claim's board is
    /// claimable once it is back and healthy.
    #[test]
    fn no_board_twice_waiters_in_order_ended_claims_free_boards(ops in prop::collection::vec(op(), 1..120)) {
        let mut b = book(&BOARDS);
        let mut h = handles();
        let mut live_claims: Vec<Claim> = Vec::new();
        let mut queue: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut left: HashSet<u64> = HashSet::new();
        let mut served_order: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut coming_back: HashSet<String> = HashSet::new();
        let mut now = 0i64;
        for op in ops {
            now += 1;
            match op {
                Op::Claim { user, class, wait } => {
                    let class = CLASSES[usize::from(class)];
                    let live = |id: u64| !left.contains(&id);
                    match b.claim(&format!("u{user}"), class, POLICY.lease_default, false, wait, now, &mut h, &live) {
                        Ok(Outcome::Granted(c)) => {
                            let served = served_order.get(class);
                            let waiting = |id: &u64| !left.contains(id) && !served.is_some_and(|s| s.contains(id));
                            prop_assert!(queue.get(class).is_none_or(|q| !q.iter().any(waiting)),
                                "granted past a live queue");
                            live_claims.push(c);
                        }
                        Ok(Outcome::Queued(id)) => queue.entry(class).or_default().push(id),
                        Err(e) => {
                            let none_available = matches!(e, BookError::NoneAvailable { .. });
                            prop_assert!(none_available, "unexpected refusal: {:?}", e);
                        }
                    }
                }
                Op::End { pick, returning } => {
                    if !live_claims.is_empty() {
                        let c = live_claims.remove(usize::from(pick) % live_claims.len());
                        let back = returning;
                        prop_assert_eq!(b.end(&c.handle, back), Some(c.clone()));
                        if back {
                            coming_back.insert(c.board.clone());
                        }
                    }
                }
                Op::Returned { board } => {
                    let name = BOARDS[usize::from(board)].0;
                    b.returned(name);
                    coming_back.remove(name);
                }
                Op::Health { board, alive, fault } => {
                    b.health(BOARDS[usize::from(board)].0, alive, fault.then(|| "fault".to_string()));
                }
                Op::Maintenance { board, on } => {
                    let name = BOARDS[usize::from(board)].0;
                    let r = b.set_maintenance(name, on);
                    prop_assert_eq!(r.is_err(), on && b.claim_of(name).is_some());
                }
                Op::Leave { pick } => {
                    let all: Vec<u64> = queue.values().flatten().copied().filter(|id| !left.contains(id)).collect();
                    if !all.is_empty() {
                        let id = all[usize::from(pick) % all.len()];
                        left.insert(id);
                        b.leave_queue(id);
                    }
                }
                Op::Serve { class } => {
                    let class = CLASSES[usize::from(class)];
                    let live = |id: u64| !left.contains(&id);
                    for (w, c) in b.serve_waiters(class, now, &mut h, &live) {
                        prop_assert!(!left.contains(&w.id), "a waiter that left was served");
                        served_order.entry(class).or_default().push(w.id);
                        live_claims.push(c);
                    }
                }
                Op::Renew { pick, to } => {
                    if !live_claims.is_empty() {
                        let i = usize::from(pick) % live_claims.len();
                        prop_assert!(b.renew(&live_claims[i].handle, i64::from(to)));
                        live_claims[i].expires_at = i64::from(to);
                    }
                }
            }
            // No board held twice, every claim known by its handle, and the
            // book agrees with what was granted and not ended.
            let mut boards = HashSet::new();
            for c in b.claims() {
                prop_assert!(boards.insert(c.board.clone()), "{} held twice", c.board);
                prop_assert_eq!(b.board_of_handle(&c.handle), Some(c.board.as_str()));
            }
            let mut mine: Vec<&Claim> = live_claims.iter().collect();
            let mut theirs: Vec<&Claim> = b.claims().collect();
            mine.sort_by_key(|c| c.handle.clone());
            theirs.sort_by_key(|c| c.handle.clone());
            prop_assert_eq!(mine, theirs);
            // A board is claimable exactly when it is available (healthy,
            // in service, not held) and back from its last claim: so an
            // ended claim frees its board.
            for (name, _) in BOARDS {
                let want = b.state(name) == BoardState::Available && !coming_back.contains(name);
                prop_assert_eq!(b.claimable(name), want, "{}", name);
            }
        }
        // Served in the order they queued (those who left skipped).
        for (class, served) in served_order {
            let expected: Vec<u64> = queue[class].iter().copied().filter(|id| served.contains(id)).collect();
            prop_assert_eq!(served, expected, "class {} served out of order", class);
        }
    }
}
