use super::*;

fn claim(h: &str, b: &str, u: &str) -> Claim {
    Claim { handle: h.into(), board: b.into(), user: u.into(), claimed_at: 1, expires_at: 2 }
}

#[test]
fn a_second_opener_is_told_who_holds_the_state() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("s.db");
    let db = Db::open(&path).unwrap();
    let t0 = std::time::Instant::now();
    match Db::open(&path) {
        Err(DbError::Running { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened twice"),
    }
    assert!(t0.elapsed() < std::time::Duration::from_secs(1), "at once, not after a busy wait");
    drop(db);
    Db::open(&path).unwrap();
}

fn pool_picker(pool: &str) -> impl Fn(&std::collections::HashSet<String>) -> Option<String> + Copy + '_ {
    move |blocked: &std::collections::HashSet<String>| {
        let pool: ipnet::Ipv6Net = pool.parse().unwrap();
        let blocked = blocked.iter().filter_map(|p| p.parse().ok()).collect();
        crate::jail::v6pool::pick(&pool, &blocked, crate::jail::v6pool::os_random).map(|p| p.to_string())
    }
}

const HOUR: Cooling = Cooling { reuse_after_ms: 3_600_000, per_user: 4 };

#[test]
fn ipv6_prefixes_are_held_per_claim_and_cool_down() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("s.db");
    let pick = pool_picker("2001:db8:4200:10::/62");
    let db = Db::open(&path).unwrap();
    let a = db.take_ipv6_prefix("b1", "h1", "alice", HOUR, pick).unwrap().unwrap();
    // A rebuild of the same claim keeps its /64, also after a restart.
    drop(db);
    let db = Db::open(&path).unwrap();
    assert_eq!(db.take_ipv6_prefix("b1", "h1", "alice", HOUR, pick).unwrap().as_ref(), Some(&a));
    let b = db.take_ipv6_prefix("b2", "h2", "bob", HOUR, pick).unwrap().unwrap();
    assert_ne!(a, b);
    // The next claim of b1 gets another; a is cooling down, and with
    // a, b and c taken only the fourth is left.
    let c = db.take_ipv6_prefix("b1", "h3", "carol", HOUR, pick).unwrap().unwrap();
    assert!(c != a && c != b);
    db.release_ipv6_prefix("b2", HOUR.reuse_after_ms).unwrap();
    let d4 = db.take_ipv6_prefix("b3", "h4", "dave", HOUR, pick).unwrap().unwrap();
    assert!(![&a, &b, &c].contains(&&d4));
    assert_eq!(db.take_ipv6_prefix("b4", "h5", "erin", HOUR, pick).unwrap(), None, "all four held or cooling");
    // With no cool-down, a released /64 comes back.
    db.release_ipv6_prefix("b3", 0).unwrap();
    assert_eq!(db.take_ipv6_prefix("b4", "h5", "erin", HOUR, pick).unwrap(), Some(d4));
}

/// A user who claims and releases (or reinits) in a loop cools down at
/// most `per_user` /64s: then they get their own back, the one that
/// cooled longest, and everyone else still finds fresh ones.
#[test]
fn a_user_cools_down_at_most_per_user_prefixes_and_then_gets_their_own_back() {
    let d = tempfile::tempdir().unwrap();
    let db = Db::open(&d.path().join("s.db")).unwrap();
    let pick = pool_picker("2001:db8:4200:10::/60");
    let two = Cooling { reuse_after_ms: 3_600_000, per_user: 2 };
    let mut mine = Vec::new();
    for i in 0..6 {
        let p = db.take_ipv6_prefix("b1", &format!("h{i}"), "alice", two, pick).unwrap().unwrap();
        db.release_ipv6_prefix("b1", two.reuse_after_ms).unwrap();
        mine.push(p);
        // Releases a millisecond apart, so "cooled longest" is one.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Two fresh ones, then (two cooling) the one of hers that cooled
    // longest, round and round.
    assert_ne!(mine[0], mine[1]);
    let (p0, p1) = (mine[0].clone(), mine[1].clone());
    assert_eq!(&mine[2..], &[p0.clone(), p1.clone(), p0, p1], "{mine:?}");
    // bob is unaffected: he gets a fresh one, none of alice's.
    let b = db.take_ipv6_prefix("b2", "hb", "bob", two, pick).unwrap().unwrap();
    assert!(!mine.contains(&b));
    // Survives a restart: the users of cooling /64s are kept.
    drop(db);
    let db = Db::open(&d.path().join("s.db")).unwrap();
    let again = db.take_ipv6_prefix("b1", "h9", "alice", two, pick).unwrap().unwrap();
    assert!(mine[..2].contains(&again), "{again} is one of hers");
}

#[test]
fn one_claim_per_board_and_events() {
    let d = tempfile::tempdir().unwrap();
    let db = Db::open(&d.path().join("s.db")).unwrap();
    db.sync_boards(&[("b1".into(), "c".into()), ("b2".into(), "c".into())]).unwrap();
    db.insert_claim(&claim("h1", "b1", "alice")).unwrap();
    assert!(matches!(db.insert_claim(&claim("h2", "b1", "bob")), Err(DbError::AlreadyClaimed(_))));
    assert!(db.renew_claim("h1", 99, "alice").unwrap());
    assert!(!db.renew_claim("nope", 99, "alice").unwrap());
    assert_eq!(db.claims().unwrap()[0].expires_at, 99);
    assert!(db.delete_claim("h1", "release", "alice", None).unwrap());
    assert!(!db.delete_claim("h1", "release", "alice", None).unwrap());
    let kinds: Vec<String> = db.recent_events(10).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec!["claim", "renew", "release"]);
}

#[test]
fn claims_survive_reopen_and_removed_boards_leave_the_table() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    {
        let db = Db::open(&p).unwrap();
        db.sync_boards(&[("b1".into(), "c".into()), ("b2".into(), "c".into())]).unwrap();
        db.insert_claim(&claim("h1", "b1", "alice")).unwrap();
        db.insert_claim(&claim("h2", "b2", "bob")).unwrap();
        db.set_maintenance("b2", true, "root", None).unwrap();
    }
    let db = Db::open(&p).unwrap();
    assert_eq!(db.claims().unwrap().len(), 2);
    db.sync_boards(&[("b1".into(), "c".into())]).unwrap();
    assert!(db.maintenance().unwrap().is_empty(), "b2 is gone from the boards table");
    // The claim on b2 is the claim book's to drop (through the ledger).
    assert_eq!(db.claims().unwrap().len(), 2);
    assert!(db.delete_claim("h2", "claim_dropped", "bob", None).unwrap());
    assert_eq!(db.claims().unwrap(), vec![claim("h1", "b1", "alice")]);
}

#[test]
fn jail_indexes_are_stable_and_reused() {
    let d = tempfile::tempdir().unwrap();
    let db = Db::open(&d.path().join("s.db")).unwrap();
    let b = |names: &[&str]| names.iter().map(|n| (n.to_string(), "c".to_string())).collect::<Vec<_>>();
    db.sync_boards(&b(&["b", "c", "a"])).unwrap();
    let m = db.jail_indexes().unwrap();
    assert_eq!((m["a"], m["b"], m["c"]), (0, 1, 2));
    db.sync_boards(&b(&["a", "c", "d"])).unwrap();
    let m = db.jail_indexes().unwrap();
    assert_eq!((m["a"], m["c"], m["d"]), (0, 2, 1), "d takes b's freed index; others keep theirs");
    db.set_jail("a", Some(("h1", "{}"))).unwrap();
    assert_eq!(db.jail_of("a").unwrap(), Some(("h1".to_string(), "{}".to_string())));
    db.set_jail("a", None).unwrap();
    assert_eq!(db.jail_of("a").unwrap(), None);
}
