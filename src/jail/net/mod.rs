//! The jail's network: the board link moved in, the uplink, addresses and
//! routes, and nftables on both sides. Everything is done from the host (as
//! host root) into the jail's network namespace, which the init created and
//! which is named here with `ip netns attach`.
//!
//! Plan (routed uplink, board index i):
//!
//! ```text
//!  board netns (labsim) / NIC      jail netns                       host
//!  eth0 <--veth/VLAN--> board 172.30.i.1/24   uplink 10.240.x.(4i+2)/30 <--veth--> blju<i> .(4i+1)/30 -> nat_interface
//!                       dnsmasq DHCP+TFTP     masquerade 172.30.i.0/24  table inet boardlab_j<i>:
//!                                             out of uplink             forward: jail -> pool/board_net dropped,
//!                                                                       input: jail -> host only ping/replies,
//!                                                                       postrouting: masquerade jail ip
//! ```
//!
//! Every name that reaches `ip` or nft text comes from [`Plan`], which was
//! built from validated identifiers; commands get explicit argument vectors
//! and never pass through a shell.

use std::path::Path;

use serde::{Deserialize, Serialize};

mod rules;

pub use rules::{
    host_ruleset, jail_ruleset, macvlan_mac, macvlan_script, Egress, HOST_LINK_LOCAL, JAIL_LINK_LOCAL, MACVLAN_TABLE,
};

use super::plan::{Plan, JAIL_BOARD_IF, JAIL_UPLINK_IF};
use super::{JailError, JailSettings};
use crate::link::{self, LinkId};

/// Runs a program with explicit arguments (and optional stdin); see
/// [`link::run`].
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, JailError> {
    link::run(program, args, stdin).map_err(|e| match e {
        link::LinkError::Command { command, detail } => JailError::Command { command, detail },
        other => JailError::Command { command: program.to_string(), detail: other.to_string() },
    })
}

fn ip(args: &[&str]) -> Result<String, JailError> {
    run("ip", args, None)
}

/// Several `ip` commands in one process (`ip -batch`), in the host's
/// namespace or in `ns`: a fork and exec each costs milliseconds, and a
/// jail's setup has a dozen. Every word is a validated name or an address,
/// so no line can carry a second command. ip stops at the first failure.
fn ip_batch(ns: Option<&str>, lines: &[Vec<&str>]) -> Result<String, JailError> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.join(" "));
        text.push('\n');
    }
    match ns {
        Some(ns) => run("ip", &["-n", ns, "-batch", "-"], Some(&text)),
        None => run("ip", &["-batch", "-"], Some(&text)),
    }
}

/// Whether a host interface exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether a named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Marker put in the board link's alias while it is in a jail, so that
/// [`super::sweep`] can return it under its host name after a crash.
pub const ALIAS_PREFIX: &str = "boardlab-host-name=";

/// The host's own IPv4 addresses (all interfaces, loopback too).
pub fn host_ipv4_addresses() -> Vec<String> {
    let Ok(out) = run("ip", &["-j", "-4", "addr", "show"], None) else { return Vec::new() };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let mut addrs = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            if let Some(ip) = a["local"].as_str() {
                addrs.push(ip.to_string());
            }
        }
    }
    addrs
}

/// The interface of the host's default route, where jails are
/// masqueraded when `nat_interface` is not set.
pub fn default_route_interface() -> Option<String> {
    default_route_in(&std::fs::read_to_string("/proc/net/route").ok()?)
}

/// The interface of the host's IPv6 default route, where jails' IPv6
/// leaves when `nat_interface` is not set.
pub fn default_route6_interface() -> Option<String> {
    default_route6_in(&std::fs::read_to_string("/proc/net/ipv6_route").ok()?)
}

/// The interface of the first IPv6 default route (destination ::/0, not
/// a reject route on loopback) in /proc/net/ipv6_route's text.
pub fn default_route6_in(table: &str) -> Option<String> {
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 10 && f[0] == "0".repeat(32) && f[1] == "00" && f[9] != "lo").then(|| f[9].to_string())
    })
}

/// Turns on the host's IPv6 forwarding (once): interfaces that took
/// router advertisements (`accept_ra` 1, which forwarding would silence)
/// keep taking them (`accept_ra` 2), so the host keeps its own
/// autoconfigured addresses and routes.
pub fn enable_ipv6_forwarding() -> Result<(), JailError> {
    let all = Path::new("/proc/sys/net/ipv6/conf/all/forwarding");
    if std::fs::read_to_string(all).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    if let Ok(dirs) = std::fs::read_dir("/proc/sys/net/ipv6/conf") {
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().to_string();
            let ra = d.path().join("accept_ra");
            if name != "all" && name != "default" && std::fs::read_to_string(&ra).is_ok_and(|v| v.trim() == "1") {
                match std::fs::write(&ra, "2") {
                    Ok(()) => {
                        tracing::info!(interface = %name, "accept_ra 1 -> 2: the host keeps taking router advertisements while it forwards IPv6")
                    }
                    Err(e) => tracing::warn!(interface = %name, "cannot keep router advertisements on: {e}"),
                }
            }
        }
    }
    std::fs::write(all, "1").map_err(|source| JailError::Io {
        what: "enabling IPv6 forwarding",
        path: all.into(),
        source,
    })
}

/// The interface of the first IPv4 default route (destination and mask
/// 0) in /proc/net/route's text.
pub fn default_route_in(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

/// `ip` arguments making a board's VLAN link: `name` on `trunk`, tagged
/// `vlan` (802.1Q). Only names from a validated plan reach here.
pub fn vlan_create_args(trunk: &str, name: &str, vlan: u16) -> Vec<String> {
    ["link", "add", "link", trunk, "name", name, "type", "vlan", "id"]
        .iter()
        .map(|s| s.to_string())
        .chain([vlan.to_string()])
        .collect()
}

/// `ip` arguments deleting the VLAN link `name`, on the host or in the
/// jail's namespace `ns`.
pub fn vlan_delete_args(ns: Option<&str>, name: &str) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if let Some(ns) = ns {
        a.extend(["-n".to_string(), ns.to_string()]);
    }
    a.extend(["link", "del", "dev", name].iter().map(|s| s.to_string()));
    a
}

/// Names the init's network namespace, moves the board link in, creates
/// the uplink, addresses, routes and both rulesets. Each step records
/// itself in `done` so a failure can be undone by [`teardown`].
pub fn setup(
    plan: &Plan,
    s: &JailSettings,
    init_pid: i32,
    expected: Option<&LinkId>,
    done: &mut Done,
) -> Result<(), JailError> {
    let ns = plan.netns.as_str();
    let pid = init_pid.to_string();
    let t0 = std::time::Instant::now();
    let mut marks: Vec<(&str, u128)> = Vec::new();
    // 1. A name for the namespace: `ip -n` works from here on, and the
    //    namespace outlives nothing (the init holds it; the name is removed
    //    at teardown).
    ip(&["netns", "attach", ns, &pid])?;
    done.netns = true;
    marks.push(("attach", t0.elapsed().as_micros()));

    // 2. The board link. A VLAN sub-interface is created first (real
    //    hosts); a dedicated interface (a NIC, labsim's veth end) must be
    //    on the host and be the device recorded for the board (see
    //    crate::link). Its identity and its index inside the jail are
    //    recorded: teardown brings back that device, whatever its name.
    let host_if = plan.board_if_host.as_str();
    let moved_ifindex;
    let mut host: Vec<Vec<&str>> = Vec::new();
    if let Some((trunk, vlan)) = &plan.board_if_created {
        let args = vlan_create_args(trunk, host_if, *vlan);
        ip(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        done.vlan_created = true;
        let made = link::host_link(host_if)
            .map_err(|e| JailError::Link(e.to_string()))?
            .ok_or_else(|| JailError::Link(format!("the VLAN link {host_if} vanished after it was made")))?;
        moved_ifindex = made.ifindex;
        done.link = Some(BoardLinkRecord { id: LinkId::of(&made), jail_ifindex: None });
    } else {
        let found = link::host_link(host_if).map_err(|e| JailError::Link(e.to_string()))?.ok_or_else(|| {
            JailError::Link(format!("the board's link {host_if} is not on the host (missing, or held by another jail)"))
        })?;
        if let Some(id) = expected {
            id.matches_on_host(&found)
                .map_err(|why| JailError::Link(format!("the board's link {host_if} is not the recorded one: {why}")))?;
        }
        moved_ifindex = found.ifindex;
        done.link =
            Some(BoardLinkRecord { id: expected.cloned().unwrap_or_else(|| LinkId::of(&found)), jail_ifindex: None });
    }
    marks.push(("identify", t0.elapsed().as_micros()));
    host.push(vec!["link", "set", "dev", host_if, "down"]);
    host.push(vec!["link", "set", "dev", host_if, "netns", ns]);
    // Marked before the batch: teardown then also looks for what a
    // half-run batch may have done.
    done.board_moved = true;
    ip_batch(None, &host)?;
    marks.push(("move", t0.elapsed().as_micros()));
    let alias = format!("{ALIAS_PREFIX}{host_if}");
    let board_cidr = format!("{}/24", plan.board_addr);
    // The jail is ::1 of the claim's /64 on the board link, at once (no
    // duplicate detection: the link is the jail's own), so dnsmasq and
    // sshd can bind it as they start.
    let board_cidr6 = plan.board_prefix.map(|p| format!("{}/64", super::v6pool::jail_address(&p)));
    let mut board_lines = vec![
        vec!["link", "set", "dev", "lo", "up"],
        vec!["link", "set", "dev", host_if, "name", JAIL_BOARD_IF],
        vec!["link", "set", "dev", JAIL_BOARD_IF, "alias", &alias],
        vec!["addr", "add", &board_cidr, "dev", JAIL_BOARD_IF],
    ];
    let router_ll = format!("{HOST_LINK_LOCAL}/64");
    if let Some(c) = &board_cidr6 {
        // Router advertisements must come from a link-local address, and
        // one that is usable at once: fe80::1, no generated one.
        board_lines.push(vec!["link", "set", "dev", JAIL_BOARD_IF, "addrgenmode", "none"]);
        board_lines.push(vec!["addr", "add", &router_ll, "dev", JAIL_BOARD_IF, "nodad"]);
        board_lines.push(vec!["addr", "add", c, "dev", JAIL_BOARD_IF, "nodad"]);
    }
    board_lines.push(vec!["link", "set", "dev", JAIL_BOARD_IF, "up"]);
    ip_batch(Some(ns), &board_lines)?;
    // A link keeps its index when it moves into a namespace where that
    // index is free, and the jail's namespace holds only `lo` (1) yet.
    if let Some(rec) = done.link.as_mut() {
        rec.jail_ifindex = Some(moved_ifindex);
    }

    marks.push(("board addr", t0.elapsed().as_micros()));
    // 3. The uplink.
    let jail_cidr = format!("{}/{}", plan.jail_ip, plan.uplink_prefix);
    let host_cidr = format!("{}/{}", plan.gateway, plan.uplink_prefix);
    done.uplink = true;
    if plan.routed {
        ip_batch(
            None,
            &[
                vec!["link", "add", &plan.uplink_host, "type", "veth", "peer", "name", JAIL_UPLINK_IF, "netns", ns],
                // No link-local address on the host's end...
                vec!["link", "set", "dev", &plan.uplink_host, "addrgenmode", "none"],
                vec!["addr", "add", &host_cidr, "dev", &plan.uplink_host],
                vec!["link", "set", "dev", &plan.uplink_host, "up"],
            ],
        )?;
        if plan.board_prefix.is_some() {
            // IPv6 on the link, by our two link-local addresses only: the
            // host takes no router advertisement from the jail.
            for (key, value) in [("accept_ra", "0"), ("autoconf", "0"), ("disable_ipv6", "0")] {
                link::sysctl(&plan.uplink_host, key, value).map_err(|e| JailError::Link(e.to_string()))?;
            }
            let host_ll = format!("{HOST_LINK_LOCAL}/64");
            ip(&["addr", "add", &host_ll, "dev", &plan.uplink_host, "nodad"])?;
        } else {
            // ...and no IPv6 at all: the jail has none to route (its input
            // to the host is dropped anyway, see host_ruleset).
            link::ipv6_off(&plan.uplink_host).map_err(|e| JailError::Link(e.to_string()))?;
        }
    } else {
        let super::Uplink::Macvlan { parent } = &s.uplink else { unreachable!("plan.routed is false") };
        // `private`: macvlans of one parent never reach each other, not
        // even through a switch that hairpins. The address is ours and is
        // what the parent's egress filter lets out (see macvlan_script).
        let mac = macvlan_mac(plan.index);
        ip_batch(
            None,
            &[
                vec![
                    "link",
                    "add",
                    "link",
                    parent,
                    "name",
                    &plan.uplink_host,
                    "address",
                    &mac,
                    "type",
                    "macvlan",
                    "mode",
                    "private",
                ],
                vec!["link", "set", "dev", &plan.uplink_host, "netns", ns],
            ],
        )?;
        ip(&["-n", ns, "link", "set", "dev", &plan.uplink_host, "name", JAIL_UPLINK_IF])?;
        let parent_mac = link::host_link(parent)
            .map_err(|e| JailError::Link(e.to_string()))?
            .ok_or_else(|| JailError::Link(format!("the macvlan parent {parent} is missing")))?
            .mac;
        let host_v4 = host_ipv4_addresses();
        run("nft", &["-f", "-"], Some(&macvlan_script(parent, &parent_mac, plan, s, &host_v4)))?;
        done.nft = true;
    }
    marks.push(("uplink", t0.elapsed().as_micros()));
    let gateway = plan.gateway.to_string();
    let jail_ll = format!("{JAIL_LINK_LOCAL}/64");
    let mut uplink_lines = vec![
        vec!["addr", "add", &jail_cidr, "dev", JAIL_UPLINK_IF],
        vec!["link", "set", "dev", JAIL_UPLINK_IF, "up"],
        vec!["route", "add", "default", "via", &gateway],
    ];
    if plan.board_prefix.is_some() {
        uplink_lines.insert(0, vec!["link", "set", "dev", JAIL_UPLINK_IF, "addrgenmode", "none"]);
        uplink_lines.push(vec!["addr", "add", &jail_ll, "dev", JAIL_UPLINK_IF, "nodad"]);
        uplink_lines.push(vec!["route", "add", "::/0", "via", HOST_LINK_LOCAL, "dev", JAIL_UPLINK_IF]);
    }
    ip_batch(Some(ns), &uplink_lines)?;
    if let Some(p) = plan.board_prefix {
        // The claim's /64 is the jail's: routed to it, not translated.
        enable_ipv6_forwarding()?;
        let p = p.to_string();
        ip(&["route", "add", &p, "via", JAIL_LINK_LOCAL, "dev", &plan.uplink_host])?;
    }

    marks.push(("jail addr", t0.elapsed().as_micros()));
    // 4. Inside, forwarding the board's traffic masqueraded out of the
    //    uplink is the jail init's to set up (it is root of this network
    //    namespace, and the rules are the jail's own): see init::go.

    // 5. Host side (routed only; a macvlan jail is a host on the parent's
    //    LAN and the LAN's router does the rest).
    if plan.routed {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| JailError::Io {
            what: "enabling forwarding",
            path: "/proc/sys/net/ipv4/ip_forward".into(),
            source,
        })?;
        // Replace any stale table of the same jail in the same transaction.
        let nat_if = s.nat_interface.clone().or_else(default_route_interface);
        let out = Egress { v4: nat_if.clone(), v6: s.nat_interface.clone().or_else(default_route6_interface) };
        if nat_if.is_none() {
            tracing::warn!(board = %plan.board, "no jail.nat_interface and no default route: the jail reaches nothing outside");
        }
        let text =
            format!("table inet {t}\ndelete table inet {t}\n{}", host_ruleset(plan, s, &out), t = plan.nft_table);
        run("nft", &["-f", "-"], Some(&text))?;
        done.nft = true;
    }
    marks.push(("host nft", t0.elapsed().as_micros()));
    tracing::debug!(board = %plan.board, "network set up: {marks:?} (us)");
    Ok(())
}

/// The board link while a jail holds it: which device it is (as recorded
/// on the host) and its index inside the jail, which the jail cannot
/// change (it can rename the link, not renumber it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardLinkRecord {
    pub id: LinkId,
    pub jail_ifindex: Option<u32>,
}

/// What [`setup`] got done, for undoing exactly that.
#[derive(Debug, Default, Clone)]
pub struct Done {
    pub netns: bool,
    pub vlan_created: bool,
    pub board_moved: bool,
    pub link: Option<BoardLinkRecord>,
    pub uplink: bool,
    pub nft: bool,
}

impl Done {
    /// Everything, for destroying a jail that was fully created; `link` is
    /// its board link's record.
    pub fn all(link: Option<BoardLinkRecord>) -> Done {
        Done { netns: true, vlan_created: true, board_moved: true, link, uplink: true, nft: true }
    }
}

/// Brings the board link back to the host, parked, or deletes the VLAN
/// sub-interface we made. Runs after every process of the jail is gone
/// (nothing inside can rename, swap or use a link any more) and while the
/// namespace still exists (a veth would die with it).
///
/// Only the recorded device comes back: the link with the recorded index
/// inside the jail, and of the recorded kind; it moves to the host under
/// its host name in one request (the kernel brings it down as it moves)
/// and is checked there against the recorded identity before it is
/// parked. Anything else the jail made dies with the namespace. Returns
/// false, with the reason in `errors`, when the board's link is gone.
pub fn return_board_link(plan: &Plan, done: &Done, errors: &mut Vec<String>) -> bool {
    let ns = plan.netns.as_str();
    let host_if = plan.board_if_host.as_str();
    if !done.board_moved || !netns_exists(ns) {
        return true;
    }
    let links = match link::list(Some(ns)) {
        Ok(l) => l,
        Err(e) => {
            errors.push(e.to_string());
            return false;
        }
    };
    if plan.board_if_created.is_some() {
        // A VLAN link of ours: delete it if it is still there; whatever
        // else is in the namespace dies with it.
        let ours = done.link.as_ref().and_then(|r| r.jail_ifindex);
        if let Some(l) = links.iter().find(|l| Some(l.ifindex) == ours && l.kind.as_deref() == Some("vlan")) {
            let args = vlan_delete_args(Some(ns), &l.name);
            if let Err(e) = ip(&args.iter().map(String::as_str).collect::<Vec<_>>()) {
                errors.push(e.to_string());
            }
        }
        return true;
    }
    let candidates: Vec<&link::LinkInfo> = match &done.link {
        Some(BoardLinkRecord { id, jail_ifindex: Some(i) }) => {
            links.iter().filter(|l| l.ifindex == *i && id.may_be_in_jail(l)).collect()
        }
        Some(BoardLinkRecord { id, jail_ifindex: None }) => links.iter().filter(|l| id.may_be_in_jail(l)).collect(),
        // A jail recorded by an older labd: the link by its jail name.
        None => links.iter().filter(|l| l.name == JAIL_BOARD_IF).collect(),
    };
    let me = std::process::id().to_string();
    for l in candidates {
        let _ = ip(&["-n", ns, "addr", "flush", "dev", &l.name]);
        if let Err(e) = ip(&["-n", ns, "link", "set", "dev", &l.name, "netns", &me, "name", host_if]) {
            errors.push(e.to_string());
            continue;
        }
        let _ = ip(&["link", "set", "dev", host_if, "alias", ""]);
        match link::check_and_park(host_if, done.link.as_ref().map(|r| &r.id)) {
            Ok(_) => return true,
            Err(why) => {
                errors.push(why);
                if l.is_virtual() {
                    let _ = ip(&["link", "del", "dev", host_if]);
                }
            }
        }
    }
    errors
        .push(format!("the board's link {host_if} did not come back from the jail (deleted, or moved away inside it)"));
    false
}

/// Removes the host side: uplink, VLAN link, nft table, the netns name.
/// Idempotent: what is already gone is skipped.
pub fn teardown(plan: &Plan, done: &Done, errors: &mut Vec<String>) {
    if done.uplink && link_exists(&plan.uplink_host) {
        if let Err(e) = ip(&["link", "del", "dev", &plan.uplink_host]) {
            errors.push(e.to_string());
        }
    }
    if done.vlan_created && link_exists(&plan.board_if_host) && plan.board_if_created.is_some() {
        let args = vlan_delete_args(None, &plan.board_if_host);
        if let Err(e) = ip(&args.iter().map(String::as_str).collect::<Vec<_>>()) {
            errors.push(e.to_string());
        }
    }
    if done.nft && plan.routed && nft_table_exists(&plan.nft_table) {
        if let Err(e) = run("nft", &["delete", "table", "inet", &plan.nft_table], None) {
            errors.push(e.to_string());
        }
    }
    if done.nft && !plan.routed {
        // Only this jail's pair: the table serves every macvlan jail.
        let pair = format!("{{ {} . {} }}", macvlan_mac(plan.index), plan.jail_ip);
        let _ = run("nft", &["delete", "element", "netdev", MACVLAN_TABLE, "jails", &pair], None);
        if link::set_is_empty("netdev", MACVLAN_TABLE, "jails") {
            let _ = run("nft", &["delete", "table", "netdev", MACVLAN_TABLE], None);
        }
    }
    if done.netns && netns_exists(&plan.netns) {
        if let Err(e) = ip(&["netns", "delete", &plan.netns]) {
            errors.push(e.to_string());
        }
    }
}

/// Whether the host has the inet table `name`.
pub fn nft_table_exists(name: &str) -> bool {
    run("nft", &["list", "tables", "inet"], None)
        .map(|t| t.lines().any(|l| l.trim() == format!("table inet {name}")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::plan::tests_support::spec;

    #[test]
    fn a_boards_vlan_link_is_made_and_removed_by_exactly_these_commands() {
        let mut s = spec(7);
        s.link = crate::config::Network::Vlan { vlan: 101, trunk: "enp1s0".into() };
        let p = Plan::new(&s).unwrap();
        let Some((trunk, vlan)) = &p.board_if_created else { panic!("a VLAN plan") };
        assert_eq!(
            vlan_create_args(trunk, &p.board_if_host, *vlan).join(" "),
            "link add link enp1s0 name bljv7 type vlan id 101"
        );
        // In the jail (by its name there), or left on the host.
        assert_eq!(vlan_delete_args(Some(&p.netns), "board").join(" "), "-n blj7-rockpro64-1 link del dev board");
        assert_eq!(vlan_delete_args(None, &p.board_if_host).join(" "), "link del dev bljv7");
        // A VLAN id out of 802.1Q's range never makes a plan.
        s.link = crate::config::Network::Vlan { vlan: 4095, trunk: "enp1s0".into() };
        assert!(matches!(Plan::new(&s), Err(JailError::Invalid { .. })));
    }

    #[test]
    fn default_route_from_proc() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
blju0\t0000F00A\t00000000\t0001\t0\t0\t0\tFCFFFFFF\t0\t0\t0
eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
";
        assert_eq!(default_route_in(t).as_deref(), Some("eth0"));
        assert_eq!(default_route_in("Iface\tDestination\n"), None);
    }

    #[test]
    fn default_route6_from_proc() {
        let z = "0".repeat(32);
        let t = format!(
            "{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200       lo
fd000000000000000000000000000000 40 {z} 00 {z} 00000100 00000001 00000000 00000001     eth0
{z} 00 {z} 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
"
        );
        assert_eq!(default_route6_in(&t).as_deref(), Some("eth0"));
        assert_eq!(default_route6_in(""), None);
    }
}
