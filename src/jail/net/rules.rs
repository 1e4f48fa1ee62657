//! The nftables text of a jail's network: the host's table for a routed
//! jail, the shared filter of macvlan jails, and the jail's own table.
//! Pure: built from the plan and the settings, so every rule and its order
//! is unit-tested; [`super`] loads them.

use super::{Plan, JAIL_BOARD_IF, JAIL_UPLINK_IF};
use crate::addr::Ipv4Net;
use crate::jail::JailSettings;

/// The host's nftables for one jail (routed uplink): one table per jail so
/// it is added and removed atomically. Base chains of all tables see every
/// packet and a drop in any is final, so each jail's table only needs to
/// speak for its own uplink.
///
/// Egress is default-deny: what comes from the jail's uplink is forwarded
/// only with the jail's own source address (IPv4) or one of its claim's
/// /64 (IPv6: the jail's and its board's, routed, not translated), only
/// out of `out.v4` / `out.v6` (none: nowhere), and never to the jail
/// pools, the board networks or a `deny_out` prefix (the operators'
/// management networks and every switch). Without a /64, no IPv6 at all.
/// Replies to connections made *to* the jail (ssh from a user) pass, and
/// only its own /64 is routed to it. Input from the jail to the host
/// itself is only ping of its gateway, neighbour discovery on the link
/// (from the jail's link-local address), and replies. Whatever comes in
/// by the uplink with another source than the jail's own (its IPv4
/// address; its /64 or its link-local address) is dropped first, in
/// prerouting: nothing of the host answers, complains or delivers to a
/// forged source.
pub fn host_ruleset(plan: &Plan, s: &JailSettings, out: &Egress) -> String {
    let t = &plan.nft_table;
    let up = &plan.uplink_host;
    let pool = s.pool;
    let boards = s.board_net;
    let v6 = plan.board_prefix.zip(s.ipv6.map(|v| v.pool));
    let v4: Vec<String> =
        s.deny_out.iter().filter(|n| matches!(n, ipnet::IpNet::V4(_))).map(|n| n.to_string()).collect();
    let deny6: Vec<String> =
        s.deny_out.iter().filter(|n| matches!(n, ipnet::IpNet::V6(_))).map(|n| n.to_string()).collect();
    let mut from_jail = format!("\t\tip saddr != {jail} drop\n", jail = plan.jail_ip);
    if let Some((prefix, _)) = v6 {
        from_jail.push_str(&format!("\t\tip6 saddr != {prefix} drop\n"));
    }
    from_jail.push_str(&format!(
        "\t\tct state invalid drop
\t\tct state established,related accept
\t\tip daddr {{ {pool}, {boards} }} drop
"
    ));
    if let Some((_, v6pool)) = v6 {
        from_jail.push_str(&format!("\t\tip6 daddr {v6pool} drop\n"));
    }
    if !v4.is_empty() {
        from_jail.push_str(&format!("\t\tip daddr {{ {} }} drop\n", v4.join(", ")));
    }
    if !deny6.is_empty() {
        from_jail.push_str(&format!("\t\tip6 daddr {{ {} }} drop\n", deny6.join(", ")));
    }
    if v6.is_none() {
        from_jail.push_str("\t\tmeta nfproto ipv6 drop\n");
    }
    from_jail.push_str("\t\tfib daddr type local drop\n");
    match &out.v4 {
        Some(i) => from_jail.push_str(&format!("\t\tmeta nfproto ipv4 oifname != \"{i}\" drop\n")),
        None => from_jail.push_str("\t\tmeta nfproto ipv4 drop\n"),
    }
    if v6.is_some() {
        match &out.v6 {
            Some(i) => from_jail.push_str(&format!("\t\tmeta nfproto ipv6 oifname != \"{i}\" drop\n")),
            None => from_jail.push_str("\t\tmeta nfproto ipv6 drop\n"),
        }
    }
    // The host's connection tracking is one table for every jail and the
    // host: a jail's new flows beyond its share are dropped, so a flood of
    // them (a new source port a packet) cannot fill it for everyone.
    from_jail.push_str(&format!("\t\tct state new ct count over {} drop\n", s.limits.connections_max));
    let masq = match &out.v4 {
        Some(i) => format!("ip saddr {} oifname \"{i}\" masquerade", plan.jail_ip),
        None => String::new(),
    };
    let to_jail6 = match v6 {
        Some((prefix, v6pool)) => {
            format!("\t\toifname \"{up}\" ip6 saddr {v6pool} drop\n\t\toifname \"{up}\" ip6 daddr != {prefix} drop\n")
        }
        None => format!("\t\toifname \"{up}\" meta nfproto ipv6 drop\n"),
    };
    // What comes in by the uplink carries the jail's own source or is
    // dropped before anything looks at it (conntrack, routing, the
    // forward path's ICMP errors, local sockets): a forged source would
    // otherwise pass as a reply of a flow the host has open (input accepts
    // "established"), or make the host ping or complain (time exceeded,
    // sent before the forward chain sees the packet) to someone else.
    // IPv6: the claim's /64, or the jail's link-local address.
    let (spoof6, input6) = match v6 {
        Some((prefix, _)) => (
            format!("\t\tiifname \"{up}\" ip6 saddr != {{ {prefix}, {JAIL_LINK_LOCAL} }} drop\n"),
            // Neighbour discovery from the jail's link-local address only:
            // every other source of a solicitation becomes a neighbour
            // entry of the host's one table, and a full table resolves
            // nothing on any interface.
            format!(
                "\t\tiifname \"{up}\" ip6 saddr {JAIL_LINK_LOCAL} ip6 hoplimit 255 icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
\t\tiifname \"{up}\" ip6 daddr {HOST_LINK_LOCAL} icmpv6 type echo-request accept
"
            ),
        ),
        None => (format!("\t\tiifname \"{up}\" meta nfproto ipv6 drop\n"), String::new()),
    };
    format!(
        "table inet {t} {{
\tchain prerouting {{
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tiifname \"{up}\" ip saddr != {jail} drop
{spoof6}\t}}
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"{up}\" jump from_jail
\t\toifname \"{up}\" ip saddr {pool} drop
\t\toifname \"{up}\" ip saddr {boards} drop
{to_jail6}\t}}
\tchain from_jail {{
{from_jail}\t}}
\tchain input {{
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"{up}\" ct state established,related accept
\t\tiifname \"{up}\" ip daddr {gw} icmp type echo-request accept
{input6}\t\tiifname \"{up}\" drop
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\t{masq}
\t}}
}}
",
        gw = plan.gateway,
        jail = plan.jail_ip,
    )
}

/// Where a routed jail's traffic may leave the host, per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    /// IPv4, masqueraded: `nat_interface`, else the default route's.
    pub v4: Option<String>,
    /// IPv6, routed: `nat_interface`, else the IPv6 default route's.
    pub v6: Option<String>,
}

/// The host's end of a routed uplink, as the jail's IPv6 next hop.
pub const HOST_LINK_LOCAL: &str = "fe80::1";
/// The jail's end of a routed uplink, as the host's next hop to the
/// claim's /64.
pub const JAIL_LINK_LOCAL: &str = "fe80::2";

/// The shared host table that filters what macvlan jails send: a jail on
/// a macvlan is a host on the parent's LAN, and its frames never pass the
/// host's forward chain, so they are judged on the parent's egress hook.
pub const MACVLAN_TABLE: &str = "boardlab_macvlan";

/// The address of jail `index`'s macvlan: locally administered, unicast.
pub fn macvlan_mac(index: u32) -> String {
    let b = index.to_be_bytes();
    format!("0a:b1:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// The macvlan jails' filter on `parent`'s egress, made if missing, its
/// rules and denied destinations rewritten, and this jail's (address, IP)
/// pair added. Default-deny: the host's own frames pass; from a jail only
/// ARP and IPv4 with its own address pair leave, never to a board
/// network, a `deny_out` prefix (the switches among them) or one of the
/// host's own addresses; a jail that changes its address or its IP, or
/// sends anything else, is dropped.
pub fn macvlan_script(parent: &str, parent_mac: &str, plan: &Plan, s: &JailSettings, host_v4: &[String]) -> String {
    let t = MACVLAN_TABLE;
    let mut deny: Vec<String> = vec![s.board_net.to_string()];
    deny.extend(s.deny_out.iter().filter(|n| matches!(n, ipnet::IpNet::V4(_))).map(|n| n.to_string()));
    deny.extend(host_v4.iter().cloned());
    format!(
        "add table netdev {t}
add set netdev {t} jails {{ type ether_addr . ipv4_addr; }}
add set netdev {t} deny {{ type ipv4_addr; flags interval; auto-merge; }}
add chain netdev {t} egress {{ type filter hook egress device \"{parent}\" priority filter; policy accept; }}
flush chain netdev {t} egress
flush set netdev {t} deny
add rule netdev {t} egress ether saddr {parent_mac} accept
add rule netdev {t} egress ether type arp arp saddr ether . arp saddr ip @jails accept
add rule netdev {t} egress ether type != ip drop
add rule netdev {t} egress ether saddr . ip saddr != @jails drop
add rule netdev {t} egress ip daddr @deny drop
add element netdev {t} deny {{ {deny} }}
add element netdev {t} jails {{ {mac} . {ip} }}
",
        deny = deny.join(", "),
        mac = macvlan_mac(plan.index),
        ip = plan.jail_ip,
    )
}

/// The jail's own nftables: the board network leaves through the uplink
/// masqueraded, so everything a board does appears from the jail's
/// address. With IPv6 the board's /64 is routed instead, and what comes
/// in for the board is only replies and ICMPv6 (the claimant, root here,
/// may open more).
pub fn jail_ruleset(board_net: &Ipv4Net, ipv6: bool) -> String {
    let mut r = format!(
        "table ip boardlab {{
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"{JAIL_UPLINK_IF}\" ip saddr {board_net} masquerade
\t}}
}}
"
    );
    if ipv6 {
        r.push_str(&format!(
            "table ip6 boardlab {{
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"{JAIL_UPLINK_IF}\" oifname \"{JAIL_BOARD_IF}\" ct state established,related accept
\t\tiifname \"{JAIL_UPLINK_IF}\" oifname \"{JAIL_BOARD_IF}\" meta l4proto ipv6-icmp accept
\t\tiifname \"{JAIL_UPLINK_IF}\" oifname \"{JAIL_BOARD_IF}\" drop
\t}}
}}
"
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::plan::tests_support::spec;
    use crate::jail::JailError;

    #[test]
    fn host_rules_isolate_masquerade_and_deny_by_default() {
        let mut s = spec(3);
        s.settings.deny_out = vec!["192.168.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let p = Plan::new(&s).unwrap();
        let out = Egress { v4: Some("eth0".into()), v6: Some("eth0".into()) };
        let r = host_ruleset(&p, &s.settings, &out);
        assert!(r.starts_with("table inet boardlab_j3 {"), "{r}");
        assert!(r.contains("iifname \"blju3\" jump from_jail"), "{r}");
        assert!(r.contains("ip saddr != 10.240.0.14 drop"), "{r}");
        assert!(r.contains("ip daddr { 10.240.0.0/16, 172.30.0.0/16 } drop"), "{r}");
        assert!(r.contains("ip daddr { 192.168.0.0/16 } drop"), "{r}");
        assert!(r.contains("ip6 daddr { fd00::/8 } drop"), "{r}");
        assert!(r.contains("meta nfproto ipv4 oifname != \"eth0\" drop"), "{r}");
        assert!(r.contains("ip saddr 10.240.0.14 oifname \"eth0\" masquerade"), "{r}");
        assert!(r.contains("iifname \"blju3\" ip daddr 10.240.0.13 icmp type echo-request accept"), "{r}");
        // Forged sources die before conntrack, routing and input.
        let pre = &r[r.find("chain prerouting").unwrap()..r.find("chain forward").unwrap()];
        assert!(pre.contains("type filter hook prerouting priority raw;"), "{pre}");
        assert!(pre.contains("iifname \"blju3\" ip saddr != 10.240.0.14 drop"), "{pre}");
        assert!(pre.contains("iifname \"blju3\" meta nfproto ipv6 drop"), "{pre}");
        // Without a /64, no IPv6 either way, and no neighbour discovery.
        assert!(r.contains("\t\tmeta nfproto ipv6 drop\n"), "{r}");
        assert!(r.contains("oifname \"blju3\" meta nfproto ipv6 drop"), "{r}");
        assert!(!r.contains("icmpv6"), "{r}");
        // Every drop of the jail's chain comes before anything is let out;
        // last, its share of the host's connection tracking.
        let chain = &r[r.find("chain from_jail").unwrap()..r.find("chain input").unwrap()];
        assert!(!chain.contains("accept") || chain.find("accept") > chain.find("saddr"), "{chain}");
        assert!(
            chain
                .trim_end()
                .trim_end_matches('}')
                .trim_end()
                .ends_with("oifname != \"eth0\" drop\n\t\tct state new ct count over 4096 drop"),
            "{chain}"
        );
        // No NAT interface at all: nothing leaves.
        let r = host_ruleset(&p, &s.settings, &Egress::default());
        let chain = &r[r.find("chain from_jail").unwrap()..r.find("chain input").unwrap()];
        assert!(chain.contains("\t\tmeta nfproto ipv4 drop\n"), "{chain}");
        assert!(chain.contains("\t\tmeta nfproto ipv6 drop\n"), "{chain}");
        assert!(!r.contains("masquerade"), "{r}");
    }

    #[test]
    fn host_rules_route_the_claims_64_and_nothing_else() {
        let mut s = spec(3);
        s.settings.ipv6 = Some(crate::config::Ipv6Pool {
            pool: "2001:db8:4200::/48".parse().unwrap(),
            reuse_after: std::time::Duration::from_secs(3600),
            fresh_per_user: 4,
        });
        s.settings.deny_out = vec!["fd00::/8".parse().unwrap()];
        s.ipv6_prefix = Some("2001:db8:4200:ab12::/64".parse().unwrap());
        let p = Plan::new(&s).unwrap();
        let out = Egress { v4: Some("eth0".into()), v6: Some("wan6".into()) };
        let r = host_ruleset(&p, &s.settings, &out);
        let chain = &r[r.find("chain from_jail").unwrap()..r.find("chain input").unwrap()];
        // Spoofed sources first, then the other jails, denied prefixes,
        // the host, and any other way out.
        let order = [
            "ip6 saddr != 2001:db8:4200:ab12::/64 drop",
            "ct state established,related accept",
            "ip6 daddr 2001:db8:4200::/48 drop",
            "ip6 daddr { fd00::/8 } drop",
            "fib daddr type local drop",
            "meta nfproto ipv6 oifname != \"wan6\" drop",
        ];
        let at: Vec<usize> = order.iter().map(|o| chain.find(o).unwrap_or_else(|| panic!("{o} in {chain}"))).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{chain}");
        assert!(!chain.contains("\t\tmeta nfproto ipv6 drop\n"), "{chain}");
        // Towards the jail: only its own /64, never from another jail's.
        assert!(r.contains("oifname \"blju3\" ip6 saddr 2001:db8:4200::/48 drop"), "{r}");
        assert!(r.contains("oifname \"blju3\" ip6 daddr != 2001:db8:4200:ab12::/64 drop"), "{r}");
        // Forged sources die before conntrack, routing and input: only
        // the claim's /64 and the jail's link-local address come in.
        let pre = &r[r.find("chain prerouting").unwrap()..r.find("chain forward").unwrap()];
        assert!(pre.contains("iifname \"blju3\" ip6 saddr != { 2001:db8:4200:ab12::/64, fe80::2 } drop"), "{pre}");
        assert!(pre.contains("iifname \"blju3\" ip saddr != 10.240.0.14 drop"), "{pre}");
        assert!(!pre.replace("policy accept", "").contains("accept"), "{pre}");
        // The host: neighbour discovery on the link, from the jail's
        // link-local address only, and ping, nothing else.
        let input = &r[r.find("chain input").unwrap()..r.find("chain postrouting").unwrap()];
        assert!(input.contains(
            "ip6 saddr fe80::2 ip6 hoplimit 255 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"
        ));
        assert!(input.trim_end().trim_end_matches('}').trim_end().ends_with("iifname \"blju3\" drop"), "{input}");
        // Not masqueraded: routed.
        assert!(!r.contains("ip6 saddr 2001:db8:4200:ab12::/64 oifname"), "{r}");
        // A prefix that is not a /64 of the pool is refused.
        for bad in ["2001:db8:4200:ab12::/56", "2001:db8:4300::/64", "2001:db8:4200:ab12::5/64"] {
            s.ipv6_prefix = Some(bad.parse().unwrap());
            assert!(matches!(Plan::new(&s), Err(JailError::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn jail_rules_masquerade_the_board_net() {
        let r = jail_ruleset(&"172.30.3.0/24".parse().unwrap(), false);
        assert!(r.contains("oifname \"uplink\" ip saddr 172.30.3.0/24 masquerade"), "{r}");
        assert!(!r.contains("ip6"), "{r}");
        let r = jail_ruleset(&"172.30.3.0/24".parse().unwrap(), true);
        assert!(r.contains("table ip6 boardlab"), "{r}");
        assert!(r.contains("iifname \"uplink\" oifname \"board\" drop"), "{r}");
    }
}
