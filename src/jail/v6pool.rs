//! The claims' IPv6 prefixes: each claim (and each reinit) draws a /64 at
//! random from `[jail] ipv6_pool`, one that no jail holds and none
//! released within the pool's `reuse_after`, so an address seen on the
//! network says nothing about which board it was, or whose earlier claim.
//! The choice is pure ([`pick`]); the state database keeps which /64s are
//! held and which cool down (`Db::take_ipv6_prefix`), so a labd killed
//! at any moment neither forgets a held /64 nor hands out a cooling one.

use std::collections::HashSet;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

/// Random tries in a big pool before giving up (each fails with a
/// probability of at most one half, when half the pool is taken).
const TRIES: u32 = 256;
/// Pools of at most this many /64s are searched in full.
const SEARCH_ALL: u128 = 1 << 16;

/// How many /64s `pool` holds.
pub fn size(pool: &Ipv6Net) -> u128 {
    1u128 << (64 - u32::from(pool.prefix_len().min(64)))
}

/// The `n`th /64 of `pool`.
pub fn nth(pool: &Ipv6Net, n: u128) -> Option<Ipv6Net> {
    if n >= size(pool) {
        return None;
    }
    let base = u128::from(pool.network());
    Ipv6Net::new(Ipv6Addr::from(base | (n << 64)), 64).ok()
}

/// A /64 of `pool` not in `blocked`, chosen with `random` (uniform over
/// the free ones in a small pool; uniform over the pool, retried, in a
/// big one); `None` when none is free.
pub fn pick(pool: &Ipv6Net, blocked: &HashSet<Ipv6Net>, mut random: impl FnMut() -> u128) -> Option<Ipv6Net> {
    let n = size(pool);
    if n <= SEARCH_ALL {
        let free: Vec<Ipv6Net> = (0..n).filter_map(|i| nth(pool, i)).filter(|p| !blocked.contains(p)).collect();
        if free.is_empty() {
            return None;
        }
        let len = u128::try_from(free.len()).unwrap_or(u128::MAX);
        return free.get(usize::try_from(random() % len).unwrap_or(0)).copied();
    }
    (0..TRIES).filter_map(|_| nth(pool, random() % n)).find(|p| !blocked.contains(p))
}

/// A random number from the kernel.
pub fn os_random() -> u128 {
    let mut b = [0u8; 16];
    // Without the kernel's randomness the choice is still valid, only
    // predictable; getrandom does not fail on Linux ≥ 3.17.
    let _ = getrandom::getrandom(&mut b);
    u128::from_le_bytes(b)
}

/// The jail's own address in its claim's /64 (`::1`): the board link's
/// router, DHCPv6 and TFTP server, and sshd.
pub fn jail_address(prefix: &Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix.network()) | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_are_64s_of_the_pool() {
        let pool = net("2001:db8:4200::/48");
        assert_eq!(size(&pool), 65536);
        assert_eq!(nth(&pool, 0), Some(net("2001:db8:4200::/64")));
        assert_eq!(nth(&pool, 0xab12), Some(net("2001:db8:4200:ab12::/64")));
        assert_eq!(nth(&pool, 65536), None);
        assert_eq!(size(&net("2001:db8:4200:10::/60")), 16);
        assert_eq!(size(&net("2001:db8::/40")), 1 << 24);
        assert_eq!(jail_address(&net("2001:db8:4200:ab12::/64")).to_string(), "2001:db8:4200:ab12::1");
    }

    #[test]
    fn a_small_pool_is_searched_in_full_and_never_gives_a_blocked_one() {
        let pool = net("2001:db8:4200:10::/62");
        let mut blocked: HashSet<Ipv6Net> = HashSet::new();
        let mut seed = 7u128;
        let mut rnd = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 64
        };
        for _ in 0..4 {
            let p = pick(&pool, &blocked, &mut rnd).unwrap();
            assert!(pool.contains(&p) && p.prefix_len() == 64, "{p}");
            assert!(blocked.insert(p), "{p} given twice");
        }
        assert_eq!(pick(&pool, &blocked, &mut rnd), None, "all four are taken");
    }

    #[test]
    fn a_big_pool_draws_at_random() {
        let pool = net("2001:db8::/40");
        let blocked = HashSet::new();
        let picks: HashSet<Ipv6Net> = (0..50).filter_map(|_| pick(&pool, &blocked, os_random)).collect();
        assert_eq!(picks.len(), 50, "50 draws of 16M are all different");
        assert!(picks.iter().all(|p| pool.contains(p)));
        // Even with the generator stuck on blocked ones, it gives up.
        let stuck: HashSet<Ipv6Net> = [nth(&pool, 3).unwrap()].into();
        assert_eq!(pick(&pool, &stuck, || 3), None);
    }
}
