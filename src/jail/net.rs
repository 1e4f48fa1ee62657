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

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::plan::{Ipv4Net, Plan, JAIL_BOARD_IF, JAIL_UPLINK_IF};
use super::{JailError, JailSettings};

/// Runs a program with explicit arguments (and optional stdin).
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, JailError> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let cmdline = || format!("{program} {}", args.join(" "));
    let mut child =
        cmd.spawn().map_err(|e| JailError::Command { command: cmdline(), detail: format!("cannot start: {e}") })?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes())
            .map_err(|e| JailError::Command { command: cmdline(), detail: format!("writing input: {e}") })?;
    }
    let out = child.wait_with_output().map_err(|e| JailError::Command { command: cmdline(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(JailError::Command {
            command: cmdline(),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
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

/// The host's nftables for one jail (routed uplink): one table per jail so
/// it is added and removed atomically. Base chains of all tables see every
/// packet and a drop in any is final, so each jail's table only needs to
/// speak for its own uplink.
pub fn host_ruleset(plan: &Plan, s: &JailSettings) -> String {
    let t = &plan.nft_table;
    let up = &plan.uplink_host;
    let pool = s.pool;
    let boards = s.board_net;
    let masq = match &s.nat_interface {
        Some(i) => format!("ip saddr {} oifname \"{i}\" masquerade", plan.jail_ip),
        None => format!("ip saddr {} ip daddr != {{ {pool}, {boards} }} masquerade", plan.jail_ip),
    };
    format!(
        "table inet {t} {{
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"{up}\" ip saddr != {jail} drop
\t\tiifname \"{up}\" ip daddr {pool} drop
\t\tiifname \"{up}\" ip daddr {boards} drop
\t\tiifname \"{up}\" meta nfproto ipv6 drop
\t\toifname \"{up}\" ip saddr {pool} drop
\t\toifname \"{up}\" ip saddr {boards} drop
\t}}
\tchain input {{
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"{up}\" ct state established,related accept
\t\tiifname \"{up}\" ip daddr {gw} icmp type echo-request accept
\t\tiifname \"{up}\" drop
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\t{masq}
\t}}
}}
",
        jail = plan.jail_ip,
        gw = plan.gateway,
    )
}

/// The jail's own nftables: the board network leaves through the uplink
/// masqueraded, so everything a board does appears from the jail's address.
pub fn jail_ruleset(board_net: &Ipv4Net) -> String {
    format!(
        "table ip boardlab {{
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"{JAIL_UPLINK_IF}\" ip saddr {board_net} masquerade
\t}}
}}
"
    )
}

/// Runs `args` inside the jail's network namespace (host root, so nothing
/// of the jail's user namespace limits it).
fn in_netns(plan: &Plan, args: &[&str], stdin: Option<&str>) -> Result<String, JailError> {
    let mut a = vec!["netns", "exec", plan.netns.as_str()];
    a.extend_from_slice(args);
    run("ip", &a, stdin)
}

/// Names the init's network namespace, moves the board link in, creates
/// the uplink, addresses, routes and both rulesets. Each step records
/// itself in `done` so a failure can be undone by [`teardown`].
pub fn setup(plan: &Plan, s: &JailSettings, init_pid: i32, done: &mut Done) -> Result<(), JailError> {
    let ns = plan.netns.as_str();
    let pid = init_pid.to_string();
    // 1. A name for the namespace: `ip -n` works from here on, and the
    //    namespace outlives nothing (the init holds it; the name is removed
    //    at teardown).
    ip(&["netns", "attach", ns, &pid])?;
    done.netns = true;

    // 2. The board link. A VLAN sub-interface is created first (real
    //    hosts); a dedicated interface (a NIC, labsim's veth end) must exist
    //    and be free (not in another jail).
    let host_if = plan.board_if_host.as_str();
    let vlan_id;
    let mut host: Vec<Vec<&str>> = Vec::new();
    if let Some((trunk, vlan)) = &plan.board_if_created {
        vlan_id = vlan.to_string();
        host.push(vec!["link", "add", "link", trunk, "name", host_if, "type", "vlan", "id", &vlan_id]);
    } else if !link_exists(host_if) {
        return Err(JailError::Command {
            command: format!("ip link show {host_if}"),
            detail: "the board's interface is not in the host namespace (in use by another jail?)".into(),
        });
    }
    host.push(vec!["link", "set", "dev", host_if, "down"]);
    host.push(vec!["link", "set", "dev", host_if, "netns", ns]);
    // Marked before the batch: teardown then also looks for what a
    // half-run batch may have done.
    done.vlan_created = plan.board_if_created.is_some();
    done.board_moved = true;
    ip_batch(None, &host)?;
    done.board_renamed = true;
    let alias = format!("{ALIAS_PREFIX}{host_if}");
    let board_cidr = format!("{}/24", plan.board_addr);
    ip_batch(
        Some(ns),
        &[
            vec!["link", "set", "dev", "lo", "up"],
            vec!["link", "set", "dev", host_if, "name", JAIL_BOARD_IF],
            vec!["link", "set", "dev", JAIL_BOARD_IF, "alias", &alias],
            vec!["addr", "add", &board_cidr, "dev", JAIL_BOARD_IF],
            vec!["link", "set", "dev", JAIL_BOARD_IF, "up"],
        ],
    )?;

    // 3. The uplink.
    let jail_cidr = format!("{}/{}", plan.jail_ip, plan.uplink_prefix);
    let host_cidr = format!("{}/{}", plan.gateway, plan.uplink_prefix);
    done.uplink = true;
    if plan.routed {
        ip_batch(
            None,
            &[
                vec!["link", "add", &plan.uplink_host, "type", "veth", "peer", "name", JAIL_UPLINK_IF, "netns", ns],
                vec!["addr", "add", &host_cidr, "dev", &plan.uplink_host],
                vec!["link", "set", "dev", &plan.uplink_host, "up"],
            ],
        )?;
    } else {
        let super::Uplink::Macvlan { parent } = &s.uplink else { unreachable!("plan.routed is false") };
        ip_batch(
            None,
            &[
                vec!["link", "add", "link", parent, "name", &plan.uplink_host, "type", "macvlan", "mode", "bridge"],
                vec!["link", "set", "dev", &plan.uplink_host, "netns", ns],
            ],
        )?;
        ip(&["-n", ns, "link", "set", "dev", &plan.uplink_host, "name", JAIL_UPLINK_IF])?;
    }
    let gateway = plan.gateway.to_string();
    ip_batch(
        Some(ns),
        &[
            vec!["addr", "add", &jail_cidr, "dev", JAIL_UPLINK_IF],
            vec!["link", "set", "dev", JAIL_UPLINK_IF, "up"],
            vec!["route", "add", "default", "via", &gateway],
        ],
    )?;

    // 4. Inside: forward board traffic, masqueraded out of the uplink.
    in_netns(plan, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], None)?;
    in_netns(plan, &["nft", "-f", "-"], Some(&jail_ruleset(&plan.board_net)))?;

    // 5. Host side (routed only; a macvlan jail is a host on the parent's
    //    LAN and the LAN's router does the rest).
    if plan.routed {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| JailError::Io {
            what: "enabling forwarding",
            path: "/proc/sys/net/ipv4/ip_forward".into(),
            source,
        })?;
        // Replace any stale table of the same jail in the same transaction.
        let text = format!("table inet {t}\ndelete table inet {t}\n{}", host_ruleset(plan, s), t = plan.nft_table);
        run("nft", &["-f", "-"], Some(&text))?;
        done.nft = true;
    }
    Ok(())
}

/// What [`setup`] got done, for undoing exactly that.
#[derive(Debug, Default, Clone)]
pub struct Done {
    pub netns: bool,
    pub vlan_created: bool,
    pub board_moved: bool,
    pub board_renamed: bool,
    pub uplink: bool,
    pub nft: bool,
}

impl Done {
    /// Everything, for destroying a jail that was fully created.
    pub fn all() -> Done {
        Done { netns: true, vlan_created: true, board_moved: true, board_renamed: true, uplink: true, nft: true }
    }
}

/// Gives the board link back to the host under its host name (a veth end
/// would otherwise die with the namespace, and the board with it), or
/// deletes the VLAN sub-interface we created. Must run while the namespace
/// still exists, i.e. before the init is stopped.
pub fn return_board_link(plan: &Plan, done: &Done, errors: &mut Vec<String>) {
    let ns = plan.netns.as_str();
    if !done.board_moved || !netns_exists(ns) {
        return;
    }
    let inside = if done.board_renamed { JAIL_BOARD_IF } else { plan.board_if_host.as_str() };
    if plan.board_if_created.is_some() {
        if let Err(e) = ip(&["-n", ns, "link", "del", "dev", inside]) {
            errors.push(e.to_string());
        }
        return;
    }
    let me = std::process::id().to_string();
    let steps: [&[&str]; 4] = [
        &["-n", ns, "link", "set", "dev", inside, "down"],
        &["-n", ns, "addr", "flush", "dev", inside],
        &["-n", ns, "link", "set", "dev", inside, "name", &plan.board_if_host],
        // Our own PID's network namespace is the host's.
        &["-n", ns, "link", "set", "dev", &plan.board_if_host, "netns", &me],
    ];
    for s in steps {
        if let Err(e) = ip(s) {
            errors.push(e.to_string());
            return;
        }
    }
    let _ = ip(&["link", "set", "dev", &plan.board_if_host, "alias", ""]);
    let _ = ip(&["link", "set", "dev", &plan.board_if_host, "up"]);
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
        if let Err(e) = ip(&["link", "del", "dev", &plan.board_if_host]) {
            errors.push(e.to_string());
        }
    }
    if done.nft && nft_table_exists(&plan.nft_table) {
        if let Err(e) = run("nft", &["delete", "table", "inet", &plan.nft_table], None) {
            errors.push(e.to_string());
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
    fn host_rules_isolate_and_masquerade() {
        let mut s = spec(3);
        let p = Plan::new(&s).unwrap();
        let r = host_ruleset(&p, &s.settings);
        assert!(r.starts_with("table inet boardlab_j3 {"), "{r}");
        assert!(r.contains("iifname \"blju3\" ip daddr 10.240.0.0/16 drop"), "{r}");
        assert!(r.contains("iifname \"blju3\" ip daddr 172.30.0.0/16 drop"), "{r}");
        assert!(r.contains("iifname \"blju3\" ip saddr != 10.240.0.14 drop"), "{r}");
        assert!(r.contains("ip saddr 10.240.0.14 ip daddr != { 10.240.0.0/16, 172.30.0.0/16 } masquerade"), "{r}");
        assert!(r.contains("iifname \"blju3\" ip daddr 10.240.0.13 icmp type echo-request accept"), "{r}");
        s.settings.nat_interface = Some("eth0".into());
        let r = host_ruleset(&p, &s.settings);
        assert!(r.contains("ip saddr 10.240.0.14 oifname \"eth0\" masquerade"), "{r}");
    }

    #[test]
    fn jail_rules_masquerade_the_board_net() {
        let r = jail_ruleset(&"172.30.3.0/24".parse().unwrap());
        assert!(r.contains("oifname \"uplink\" ip saddr 172.30.3.0/24 masquerade"), "{r}");
    }
}
