//! Pure planning: identifier validation and the names, addresses and ids a
//! jail gets from its board's index. Nothing here touches the system, so all
//! of it is unit-tested without root.
//!
//! Every user-supplied string (board, handle, user, interface names) is
//! checked here before it becomes a path, an interface name or nft text.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{JailError, JailSettings, JailSpec, Uplink};
use crate::config::{valid_ifname, Network};
use crate::util::valid_name;

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

/// An IPv4 network `a.b.c.d/len`, kept normalised (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// A network; host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        (prefix <= 32).then(|| Ipv4Net { addr: Ipv4Addr::from(u32::from(addr) & Self::mask_bits(prefix)), prefix })
    }
    fn mask_bits(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_bits(self.prefix))
    }
    /// Number of addresses (saturating at u32::MAX for /0).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
    /// The `n`-th address of the network, if inside it.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.size() {
            return None;
        }
        let n = u32::try_from(n).ok()?;
        Some(Ipv4Addr::from(u32::from(self.addr).checked_add(n)?))
    }
    /// The `index`-th subnet of length `prefix` inside this network.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Ipv4Net> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if u64::from(index) >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let start = self.nth(u64::from(index) * step)?;
        Ipv4Net::new(start, prefix)
    }
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & Self::mask_bits(self.prefix) == u32::from(self.addr)
    }
    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) =
            s.split_once('/').ok_or_else(|| format!("{s:?} is not an IPv4 network such as \"10.240.0.0/16\""))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|&p| p <= 32).ok_or_else(|| format!("{p:?} is not a prefix length (0-32)"))?;
        let net = Ipv4Net::new(addr, prefix).ok_or_else(|| format!("{s:?} is not an IPv4 network"))?;
        if net.addr != addr {
            return Err(format!("{s:?} has host bits set (did you mean \"{net}\"?)"));
        }
        Ok(net)
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

/// Claim handles are `bl-` and 32 lowercase hex digits (util::new_handle).
pub fn valid_handle(h: &str) -> bool {
    h.len() == 35 && h.starts_with("bl-") && h[3..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Portable POSIX user names: a letter or '_' first, then letters, digits,
/// '_', '-', '.'; at most 32 bytes.
pub fn valid_user(u: &str) -> bool {
    let b = u.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

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
        Plan::for_board(&spec.board, spec.index, &spec.link, &spec.settings)
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
            jail_socket: None,
            console: None,
            labcli: PathBuf::from("/usr/local/bin/labcli"),
            link_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::spec;
    use super::*;
    use crate::jail::JailSettings;

    #[test]
    fn nets_parse_and_allocate() {
        let p: Ipv4Net = "10.240.0.0/16".parse().unwrap();
        assert_eq!(p.subnet(30, 1).unwrap().to_string(), "10.240.0.4/30");
        assert_eq!(p.subnet(30, 16383).unwrap().to_string(), "10.240.255.252/30");
        assert!(p.subnet(30, 16384).is_none());
        assert!("10.240.0.1/16".parse::<Ipv4Net>().unwrap_err().contains("10.240.0.0/16"));
        assert!("10.240.0.0/33".parse::<Ipv4Net>().is_err());
        let b: Ipv4Net = "172.30.0.0/16".parse().unwrap();
        assert!(b.overlaps(&"172.30.5.0/24".parse().unwrap()));
        assert!(!b.overlaps(&p));
    }

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
        assert!(valid_handle(&crate::util::new_handle().unwrap()));
        assert!(valid_user("bltest-alice") && valid_user("_svc"));
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
