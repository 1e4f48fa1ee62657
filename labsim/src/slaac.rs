//! A board's IPv6, as a booting board's stack does it: at power-on the
//! link's IPv6 starts afresh (a router solicitation goes out), the
//! kernel takes an address by SLAAC from the router advertisement of the
//! jail's dnsmasq, and the board then reaches the jail at `::1` of that
//! /64 (labd always puts the jail there). Interface ids are random
//! (`addr_gen_mode` 3), as a privacy-minded board's would be: the
//! address says nothing about the board either.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long after a restart a router must have answered a link where
/// none was heard before (a lab without IPv6 costs a boot no more).
const NEW_ROUTER_WITHIN: Duration = Duration::from_millis(1000);
/// Solicitations, a little over a second apart, on a link where a router
/// was heard before the restart: an advertisement may be lost, and a real
/// board keeps asking too.
const SOLICITATIONS: u32 = 3;
const SOLICIT_EVERY: Duration = Duration::from_millis(1200);
/// How long an address may then take.
const ADDRESS_WITHIN: Duration = Duration::from_secs(3);

fn set(ifname: &str, key: &str, value: &str) {
    let p = format!("/proc/sys/net/ipv6/conf/{ifname}/{key}");
    if let Err(e) = std::fs::write(&p, value) {
        tracing::warn!("cannot write {p}: {e}");
    }
}

/// Once, before the link first comes up: random interface ids, no
/// duplicate detection (the link is the board's and its jail's alone) and
/// no delay before soliciting a router.
pub fn setup(ifname: &str) {
    set(ifname, "addr_gen_mode", "3");
    set(ifname, "accept_dad", "0");
    set(ifname, "dad_transmits", "0");
    set(ifname, "router_solicitation_delay", "0");
}

/// At power-on: the link's IPv6 from scratch (addresses and learned
/// routes gone, a router solicitation sent). Returns whether a router
/// had advertised itself on the link before.
pub fn restart(ifname: &str) -> bool {
    let heard = router(ifname);
    set(ifname, "disable_ipv6", "1");
    set(ifname, "disable_ipv6", "0");
    heard
}

/// Whether a router advertised itself on `ifname` (a default route it
/// gave is in /proc/net/ipv6_route).
fn router(ifname: &str) -> bool {
    let z = "0".repeat(32);
    std::fs::read_to_string("/proc/net/ipv6_route").is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 10 && f[0] == z && f[1] == "00" && f[9] == ifname
        })
    })
}

/// The global, usable address of `ifname`, from /proc/net/if_inet6.
pub fn global_address(ifname: &str) -> Option<Ipv6Addr> {
    let t = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    t.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // address, ifindex, prefix length, scope, flags, name; scope 00
        // is global, flag 0x40 tentative.
        let flags = u32::from_str_radix(f.get(4)?, 16).ok()?;
        if f.len() != 6 || f[5] != ifname || f[3] != "00" || flags & 0x40 != 0 {
            return None;
        }
        u128::from_str_radix(f[0], 16).ok().map(Ipv6Addr::from)
    })
}

/// After a restart at `since` (`heard`: what it returned): the board's
/// SLAAC address, once it has one; `None` when no router answered (a lab
/// without IPv6) or power went off.
pub fn address(ifname: &str, since: Instant, heard: bool, cancel: &AtomicBool) -> Option<Ipv6Addr> {
    let tick = Duration::from_millis(25);
    let mut asked = 1;
    let mut last = since;
    while !router(ifname) {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        if !heard && since.elapsed() > NEW_ROUTER_WITHIN {
            return None;
        }
        if heard && last.elapsed() > SOLICIT_EVERY {
            if asked == SOLICITATIONS {
                return None;
            }
            restart(ifname);
            asked += 1;
            last = Instant::now();
        }
        std::thread::sleep(tick);
    }
    let t0 = Instant::now();
    loop {
        if let Some(a) = global_address(ifname) {
            return Some(a);
        }
        if cancel.load(Ordering::Relaxed) || t0.elapsed() > ADDRESS_WITHIN {
            return None;
        }
        std::thread::sleep(tick);
    }
}

/// `::1` of `addr`'s /64: the jail.
pub fn jail_of(addr: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(addr) & !((1u128 << 64) - 1)) | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jail_is_one_of_the_64() {
        let a: Ipv6Addr = "2001:db8:4200:ab12:5c1e:9f3:aa:1".parse().unwrap();
        assert_eq!(jail_of(a).to_string(), "2001:db8:4200:ab12::1");
    }
}
