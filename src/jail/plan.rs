//! Pure planning: identifier validation and the names, addresses and ids a
//! jail gets from its board's index. Nothing here touches the system, so all
//! of it is unit-tested without root.
//!
//! Every user-supplied string (board, handle, user, interface names) is
//! checked here before it becomes a path, an interface name or nft text.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{JailError, JailSettings, JailSpec, Uplink};
use crate::addr::Ipv4Net;
use crate::config::Network;
use crate::ids::{valid_handle, valid_ifname, valid_name, valid_user};

/// Host ids each jail's user namespace maps (0..65535 inside).
pub const IDS_PER_JAIL: u32 = 65536;

/// Prefix of every network namespace a jail gets (`blj<index>-<board>`).
/// labsim's namespaces are `bl<4 hex digits>-<port>`; `j` is not a hex
/// digit, so the two never collide.
pub const NETNS_PREFIX: &str = "blj";
/// Prefix of the host end of a routed uplink (`blju<index>`).
pub const UPLINK_PREFIX: &str = "blju";
/// Prefix of a macvlan uplink before it moves into the jail (`bljm<index>`).
pub const MACVLAN_PREFIX: &str = "bljm";
/// Prefix of a VLAN board link created for a jail (`bljv<index>`).
pub const VLAN_PREFIX: &str = "bljv";
/// Prefix of the per-jail host nftables tables (`boardlab_j<index>`).
pub const NFT_PREFIX: &str = "boardlab_j";
/// Name of the board link inside the jail.
pub const JAIL_BOARD_IF: &str = "board";
/// Name of the uplink inside the jail.
pub const JAIL_UPLINK_IF: &str = "uplink";

/// Everything a jail's names, addresses and ids derive to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub board: String,
    pub index: u32,
    /// Named network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// Host name of the board link before it moves in (and after it comes back).
    pub board_if_host: String,
    /// Whether the board link is a VLAN sub-interface we create (and delete).
    pub board_if_created: Option<(String, u16)>,
    /// Host-side interface of the uplink: the routed veth end, or the
    /// macvlan before it moves into the jail.
    pub uplink_host: String,
    /// The uplink is routed (veth + host nft) rather than a macvlan.
    pub routed: bool,
    /// The jail's uplink address and its prefix length.
    pub jail_ip: Ipv4Addr,
    pub uplink_prefix: u8,
    /// Next hop from the jail: the host end of the veth (routed), or the
    /// pool's first address (macvlan).
    pub gateway: Ipv4Addr,
    /// The board network and the jail's address on it (`.1`).
    pub board_net: Ipv4Net,
    pub board_addr: Ipv4Addr,
    pub dhcp_first: Ipv4Addr,
    pub dhcp_last: Ipv4Addr,
    /// Host uid (and gid) of the jail's root.
    pub host_uid: u32,
    /// Host nftables table (routed uplink only).
    pub nft_table: String,
    /// Per-claim data: `root_dir/<board>`.
    pub data_dir: PathBuf,
    /// The claim's /64 on the board link (the jail is its `::1`), routed
    /// to the jail by the host; `None`: IPv4 only.
    #[serde(default)]
    pub board_prefix: Option<ipnet::Ipv6Net>,
}

fn invalid(what: &'static str, value: &str) -> JailError {
    JailError::Invalid { what, value: value.to_string() }
}

impl Plan {
    /// Validates the spec's identifiers and derives the plan.
    pub fn new(spec: &JailSpec) -> Result<Plan, JailError> {
        if !valid_handle(&spec.handle) {
            return Err(invalid("claim handle", &spec.handle));
        }
        if !valid_user(&spec.user) {
            return Err(invalid("user name", &spec.user));
        }
        let mut plan = Plan::for_board(&spec.board, spec.index, &spec.link, &spec.settings)?;
        if let Some(p) = spec.ipv6_prefix {
            let inside = spec.settings.ipv6.is_some_and(|v6| v6.pool.contains(&p));
            if p.prefix_len() != 64 || p.trunc() != p || !inside || !plan.routed {
                return Err(invalid("IPv6 prefix (a /64 of the routed jails' ipv6_pool)", &p.to_string()));
            }
            plan.board_prefix = Some(p);
        }
        Ok(plan)
    }

    /// The plan of a board's jails, whoever claims it: names, addresses
    /// and ids derive from the board alone (sweeps need no claim).
    pub fn for_board(board: &str, index: u32, link: &Network, s: &JailSettings) -> Result<Plan, JailError> {
        if !valid_name(board) {
            return Err(invalid("board name", board));
        }
        if !s.root_dir.is_absolute() {
            return Err(invalid("jail root_dir (must be absolute)", &s.root_dir.display().to_string()));
        }
        if let Some(n) = &s.nat_interface {
            if !valid_ifname(n) {
                return Err(invalid("nat interface", n));
            }
        }
        let (board_if_host, board_if_created) = match link {
            Network::Interface(n) => {
                if !valid_ifname(n) {
                    return Err(invalid("board interface", n));
                }
                (n.clone(), None)
            }
            Network::Vlan { vlan, trunk } => {
                if !valid_ifname(trunk) {
                    return Err(invalid("trunk interface", trunk));
                }
                if !(1..=4094).contains(vlan) {
                    return Err(invalid("vlan id", &vlan.to_string()));
                }
                (format!("{VLAN_PREFIX}{index}"), Some((trunk.clone(), *vlan)))
            }
        };
        let host_uid = index
            .checked_mul(IDS_PER_JAIL)
            .and_then(|o| o.checked_add(s.uid_base))
            .filter(|u| u.checked_add(IDS_PER_JAIL - 1).is_some())
            .ok_or_else(|| {
                JailError::Allocation(format!("uid_base {} + index {index} * 65536 overflows", s.uid_base))
            })?;
        if s.uid_base < IDS_PER_JAIL {
            return Err(JailError::Allocation(format!(
                "uid_base ({}) must be at least 65536 so jail ids never overlap the host's own users",
                s.uid_base
            )));
        }
        let board_net = s
            .board_net
            .subnet(24, index)
            .ok_or_else(|| JailError::Allocation(format!("board_net {} has no /24 number {index}", s.board_net)))?;
        let at = |n: u64| board_net.nth(n).ok_or_else(|| JailError::Allocation(format!("{board_net} too small")));
        let (routed, uplink_host, jail_ip, uplink_prefix, gateway) = match &s.uplink {
            Uplink::Routed => {
                let p = s
                    .pool
                    .subnet(30, index)
                    .ok_or_else(|| JailError::Allocation(format!("pool {} has no /30 number {index}", s.pool)))?;
                let host = p.nth(1).ok_or_else(|| JailError::Allocation(format!("{p}")))?;
                let jail = p.nth(2).ok_or_else(|| JailError::Allocation(format!("{p}")))?;
                (true, format!("{UPLINK_PREFIX}{index}"), jail, 30, host)
            }
            Uplink::Macvlan { parent } => {
                if !valid_ifname(parent) {
                    return Err(invalid("macvlan parent", parent));
                }
                // The pool is a subnet of the parent's LAN: .1 is its router,
                // jails take .2, .3, ... by index.
                let gw = s.pool.nth(1).ok_or_else(|| JailError::Allocation(format!("pool {} too small", s.pool)))?;
                let jail = s
                    .pool
                    .nth(u64::from(index) + 2)
                    .filter(|a| Some(*a) != s.pool.nth(s.pool.size().saturating_sub(1)))
                    .ok_or_else(|| {
                        JailError::Allocation(format!("pool {} has no address for index {index}", s.pool))
                    })?;
                (false, format!("{MACVLAN_PREFIX}{index}"), jail, s.pool.prefix(), gw)
            }
        };
        Ok(Plan {
            board: board.to_string(),
            index,
            netns: format!("{NETNS_PREFIX}{index}-{board}"),
            board_if_host,
            board_if_created,
            uplink_host,
            routed,
            jail_ip,
            uplink_prefix,
            gateway,
            board_net,
            board_addr: at(1)?,
            dhcp_first: at(100)?,
            dhcp_last: at(199)?,
            host_uid,
            nft_table: format!("{NFT_PREFIX}{index}"),
            data_dir: s.root_dir.join(board),
            board_prefix: None,
        })
    }

    /// `ssh root@IP` (with `-p` when not on 22).
    pub fn ssh_command(&self, port: u16) -> String {
        if port == 22 {
            format!("ssh root@{}", self.jail_ip)
        } else {
            format!("ssh -p {port} root@{}", self.jail_ip)
        }
    }

    /// The host part of a known_hosts line for this jail.
    pub fn known_hosts_host(&self, port: u16) -> String {
        if port == 22 {
            self.jail_ip.to_string()
        } else {
            format!("[{}]:{port}", self.jail_ip)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::jail::JailSettings;

    /// A valid spec for unit tests.
    pub(crate) fn spec(index: u32) -> JailSpec {
        JailSpec {
            board: "rockpro64-1".into(),
            handle: format!("bl-{}", "0123456789abcdef".repeat(2)),
            user: "alice".into(),
            index,
            link: Network::Interface("blab12h1".into()),
            settings: JailSettings::default(),
            authorized_keys: String::new(),
            host_key: None,
            host_cert: None,
            jail_socket: None,
            console: None,
            sdcard: None,
            labcli: PathBuf::from("/usr/local/bin/labcli"),
            link_id: None,
            cgroups: crate::jail::cgroup::Hierarchy::None { why: "unit test".into() },
            ipv6_prefix: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::spec;
    use super::*;
    use crate::jail::JailSettings;

    #[test]
    fn routed_plan_by_index() {
        let p = Plan::new(&spec(1)).unwrap();
        assert_eq!(p.jail_ip, Ipv4Addr::new(10, 240, 0, 6));
        assert_eq!(p.gateway, Ipv4Addr::new(10, 240, 0, 5));
        assert_eq!(p.board_addr, Ipv4Addr::new(172, 30, 1, 1));
        assert_eq!(p.dhcp_first, Ipv4Addr::new(172, 30, 1, 100));
        assert_eq!(p.dhcp_last, Ipv4Addr::new(172, 30, 1, 199));
        assert_eq!(p.netns, "blj1-rockpro64-1");
        assert_eq!(p.uplink_host, "blju1");
        assert_eq!(p.nft_table, "boardlab_j1");
        assert_eq!(p.host_uid, JailSettings::default().uid_base + 65536);
        assert_eq!(p.ssh_command(22), "ssh root@10.240.0.6");
        assert_eq!(p.ssh_command(2222), "ssh -p 2222 root@10.240.0.6");
        assert_eq!(p.known_hosts_host(2222), "[10.240.0.6]:2222");
        assert_eq!(p.data_dir, JailSettings::default().root_dir.join("rockpro64-1"));
    }

    #[test]
    fn vlan_and_macvlan_plans() {
        let mut s = spec(7);
        s.link = Network::Vlan { vlan: 101, trunk: "eth1".into() };
        s.settings.uplink = Uplink::Macvlan { parent: "eth0".into() };
        s.settings.pool = "192.0.2.0/24".parse().unwrap();
        let p = Plan::new(&s).unwrap();
        assert_eq!(p.board_if_host, "bljv7");
        assert_eq!(p.board_if_created, Some(("eth1".into(), 101)));
        assert_eq!(p.jail_ip, Ipv4Addr::new(192, 0, 2, 9));
        assert_eq!(p.gateway, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.uplink_prefix, 24);
        assert!(!p.routed);
        s.index = 253;
        assert!(matches!(Plan::new(&s), Err(JailError::Allocation(_))));
    }

    #[test]
    fn identifiers_are_validated() {
        for (field, bad) in [
            ("board", "../etc"),
            ("board", "a b"),
            ("handle", "bl-XYZ"),
            ("handle", "bl-0123456789abcdef0123456789abcde/"),
            ("user", "-rf"),
            ("user", "al ice"),
            ("user", "alice;reboot"),
            ("link", "eth0;x"),
            ("link", "averyveryverylongname"),
        ] {
            let mut s = spec(0);
            match field {
                "board" => s.board = bad.into(),
                "handle" => s.handle = bad.into(),
                "user" => s.user = bad.into(),
                _ => s.link = Network::Interface(bad.into()),
            }
            assert!(matches!(Plan::new(&s), Err(JailError::Invalid { .. })), "{field} {bad:?} accepted");
        }
    }

    #[test]
    fn allocation_limits() {
        let mut s = spec(256);
        assert!(matches!(Plan::new(&s), Err(JailError::Allocation(_))), "board_net /16 has 256 /24s");
        s.index = 1;
        s.settings.uid_base = 1000;
        assert!(matches!(Plan::new(&s), Err(JailError::Allocation(_))));
        s.settings.uid_base = u32::MAX - 70000;
        assert!(matches!(Plan::new(&s), Err(JailError::Allocation(_))));
    }
}
