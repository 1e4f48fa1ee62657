//! `[jail]`: what every jail is made with (addresses, ids, sizes, limits)
//! and what labd needs to make one.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{parse_size, ConfigError, Ctx};
use crate::addr::Ipv4Net;
use crate::ids::valid_ifname;
use crate::sshca::HostCa;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJail {
    pub(super) root_dir: Option<Spanned<String>>,
    pub(super) pool: Option<Spanned<String>>,
    pub(super) board_net: Option<Spanned<String>>,
    pub(super) nat_interface: Option<Spanned<String>>,
    pub(super) uplink: Option<Spanned<String>>,
    pub(super) macvlan_parent: Option<Spanned<String>>,
    pub(super) uid_base: Option<Spanned<i64>>,
    pub(super) keep_host_key: Option<bool>,
    pub(super) keys_dir: Option<Spanned<String>>,
    pub(super) ssh_port: Option<Spanned<i64>>,
    pub(super) nfsroot_size: Option<Spanned<String>>,
    pub(super) data_size: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) deny_out: Vec<Spanned<String>>,
    pub(super) pids_max: Option<Spanned<i64>>,
    pub(super) memory_max: Option<Spanned<String>>,
    pub(super) cpu_weight: Option<Spanned<i64>>,
    pub(super) connections_max: Option<Spanned<i64>>,
    pub(super) parallel_builds: Option<Spanned<i64>>,
    pub(super) ipv6_pool: Option<Spanned<String>>,
    pub(super) ipv6_cooldown: Option<Spanned<String>>,
    pub(super) ipv6_fresh_per_user: Option<Spanned<i64>>,
    pub(super) host_ca: Option<Spanned<String>>,
}

/// How the jail reaches the outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Uplink {
    /// A veth pair to the host with a /30 from the pool; the host routes
    /// and masquerades it.
    Routed,
    /// A macvlan on `parent`: the jail is a host on that LAN, with the
    /// pool's `.2 + index` and the pool's `.1` as its router.
    Macvlan { parent: String },
}

/// Lab-wide jail settings (lab.toml `[jail]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailSettings {
    /// Per-claim data lives in `root_dir/<board>/`.
    pub root_dir: PathBuf,
    /// Uplink addresses: a /30 per jail by index (routed), or the LAN
    /// subnet jails take addresses from (macvlan).
    pub pool: Ipv4Net,
    /// Board links: a /24 per board by index; the jail is `.1`, DHCP hands
    /// out `.100`-`.199`.
    pub board_net: Ipv4Net,
    /// Host interface to masquerade jail traffic out of; `None`: any
    /// interface except towards other jails and boards.
    pub nat_interface: Option<String>,
    pub uplink: Uplink,
    /// Host uid of jail 0's root; jail i's root is `uid_base + i*65536`.
    pub uid_base: u32,
    pub ssh_port: u16,
    /// The `labjail` binary (the jail's init).
    pub init_exe: PathBuf,
    /// Size in bytes of each claim's nfsroot file system (a sparse image).
    pub nfsroot_size: u64,
    /// Size in bytes of the file system of each claim's writable
    /// directories (a sparse image).
    pub data_size: u64,
    /// Where jails may never send to, besides the host, other jails and
    /// boards: the operators' `deny_out` prefixes and the switches.
    pub deny_out: Vec<ipnet::IpNet>,
    /// Each jail's caps on processes, memory and CPU share.
    pub limits: Limits,
    /// IPv6 for the claims' boards (`ipv6_pool`): none, IPv4 only.
    pub ipv6: Option<Ipv6Pool>,
}

/// `[jail] ipv6_pool`: each claim draws a /64 from `pool` at random, one
/// not in use and not released within `reuse_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Pool {
    pub pool: ipnet::Ipv6Net,
    /// `ipv6_cooldown`, or `lease.max` plus the certificates' clock skew
    /// if that is longer: a released /64 comes back only once no host
    /// certificate naming it can be valid, even to a client whose clock
    /// is behind.
    pub reuse_after: std::time::Duration,
    /// `ipv6_fresh_per_user`: how many of a user's /64s may cool down at
    /// once; beyond that the user's next claim or reinit gets back the
    /// one of their own that cooled longest, so no user drains the pool
    /// for everyone by claiming, releasing or reiniting in a loop.
    pub fresh_per_user: u32,
}

/// Default `[jail] ipv6_fresh_per_user`.
pub const DEFAULT_IPV6_FRESH_PER_USER: u32 = 4;

/// Shortest and longest `[jail] ipv6_pool` prefix.
pub const IPV6_POOL_PREFIXES: std::ops::RangeInclusive<u8> = 40..=60;

/// Default `[jail] ipv6_cooldown`.
pub const DEFAULT_IPV6_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(3600);

/// Default `[jail] nfsroot_size`: 8 GiB (sparse: only what is written
/// takes space).
pub const DEFAULT_NFSROOT_SIZE: u64 = 8 << 30;

/// Default `[jail] data_size`: 4 GiB (sparse likewise).
pub const DEFAULT_DATA_SIZE: u64 = 4 << 30;

impl Default for JailSettings {
    fn default() -> Self {
        JailSettings {
            root_dir: PathBuf::from("/var/lib/boardlab/jails"),
            pool: Ipv4Net::new(Ipv4Addr::new(10, 240, 0, 0), 16).unwrap_or_else(|| unreachable!()),
            board_net: Ipv4Net::new(Ipv4Addr::new(172, 30, 0, 0), 16).unwrap_or_else(|| unreachable!()),
            nat_interface: None,
            uplink: Uplink::Routed,
            uid_base: 1 << 30,
            ssh_port: 22,
            init_exe: default_init_exe(),
            nfsroot_size: DEFAULT_NFSROOT_SIZE,
            data_size: DEFAULT_DATA_SIZE,
            deny_out: Vec::new(),
            limits: Limits::default(),
            ipv6: None,
        }
    }
}

/// `labjail` next to the running executable (labd and labjail are
/// installed side by side).
pub fn default_init_exe() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("labjail")))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/labjail"))
}

/// The caps of one jail (lab.toml `[jail]` `pids_max`, `memory_max`,
/// `cpu_weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Processes and threads at once.
    pub pids_max: u64,
    /// Bytes of memory (page cache and tmpfs included), no swap beyond it.
    pub memory_max: u64,
    /// CPU share under contention, 1 to 10000; 100 is a normal process's.
    pub cpu_weight: u32,
    /// Connections (flows) through the host at once: the host's connection
    /// tracking is one table for every jail and the host itself.
    pub connections_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { pids_max: 1024, memory_max: 1 << 30, cpu_weight: 100, connections_max: 4096 }
    }
}

/// Default `[jail] parallel_builds`.
pub const DEFAULT_PARALLEL_BUILDS: usize = 4;

/// `[jail]` of lab.toml, validated: the settings every jail is created
/// with, and what labd itself needs to make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailConfig {
    /// Jails built at once; more claims wait their turn, first come first
    /// served.
    pub parallel_builds: usize,
    /// Per-claim data dir, pools, uplink, uid base, ssh port.
    pub settings: JailSettings,
    /// Keep one ssh host key per board across claims (else a fresh key per claim).
    pub keep_host_key: bool,
    /// `USER.pub` files with claimants' keys (default DIR/keys.d).
    pub keys_dir: PathBuf,
    /// The lab's SSH host CA, loaded and checked: every jail's host key
    /// gets a certificate of it (see [`crate::sshca`]).
    pub host_ca: Option<HostCa>,
}

/// Validates `[jail]` (`dir`: the configuration directory, home of the
/// default `keys.d`).
pub(super) fn validate(ctx: &mut Ctx<'_>, raw: RawJail, dir: &Path, lease_max: std::time::Duration) -> JailConfig {
    let d = JailSettings::default();
    let abs = |ctx: &mut Ctx<'_>, v: &Option<Spanned<String>>, key: &str, default: PathBuf| match v {
        None => default,
        Some(s) if Path::new(s.get_ref()).is_absolute() => PathBuf::from(s.get_ref()),
        Some(s) => {
            ctx.err(&s.span(), format!("jail.{key} must be an absolute path, not {:?}", s.get_ref()));
            default
        }
    };
    let root_dir = abs(ctx, &raw.root_dir, "root_dir", d.root_dir.clone());
    let keys_dir = abs(ctx, &raw.keys_dir, "keys_dir", dir.join("keys.d"));
    let net = |ctx: &mut Ctx<'_>, v: &Option<Spanned<String>>, key: &str, default: Ipv4Net| match v {
        None => default,
        Some(s) => match s.get_ref().parse::<Ipv4Net>() {
            Ok(n) => n,
            Err(e) => {
                ctx.err(&s.span(), format!("jail.{key}: {e}"));
                default
            }
        },
    };
    let pool = net(ctx, &raw.pool, "pool", d.pool);
    let board_net = net(ctx, &raw.board_net, "board_net", d.board_net);
    if board_net.prefix() > 24 {
        let span = raw.board_net.as_ref().map(|s| s.span()).unwrap_or(0..0);
        ctx.err(&span, format!("jail.board_net ({board_net}) must be /24 or larger: each board gets a /24"));
    }
    if pool.overlaps(&board_net) {
        let span = raw.board_net.as_ref().or(raw.pool.as_ref()).map(|s| s.span()).unwrap_or(0..0);
        ctx.err(&span, format!("jail.pool ({pool}) overlaps jail.board_net ({board_net})"));
    }
    let ifname = |ctx: &mut Ctx<'_>, v: &Option<Spanned<String>>, key: &str| -> Option<String> {
        let s = v.as_ref()?;
        if valid_ifname(s.get_ref()) {
            Some(s.get_ref().clone())
        } else {
            ctx.err(&s.span(), format!("jail.{key} {:?} is not an interface name", s.get_ref()));
            None
        }
    };
    let nat_interface = ifname(ctx, &raw.nat_interface, "nat_interface");
    let parent = ifname(ctx, &raw.macvlan_parent, "macvlan_parent");
    let uplink = match raw.uplink.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("routed", _)) => {
            if let Some(p) = &raw.macvlan_parent {
                ctx.err(&p.span(), "jail.macvlan_parent is only used with uplink = \"macvlan\"");
            }
            if pool.prefix() > 30 {
                let span = raw.pool.as_ref().map(|s| s.span()).unwrap_or(0..0);
                ctx.err(&span, format!("jail.pool ({pool}) must be /30 or larger: each routed jail gets a /30"));
            }
            Uplink::Routed
        }
        Some(("macvlan", span)) => match parent {
            Some(parent) => Uplink::Macvlan { parent },
            None => {
                if raw.macvlan_parent.is_none() {
                    ctx.err(&span, "jail.uplink = \"macvlan\" needs jail.macvlan_parent");
                }
                Uplink::Routed
            }
        },
        Some((other, span)) => {
            ctx.err(&span, format!("jail.uplink {other:?} is not one of \"routed\", \"macvlan\""));
            Uplink::Routed
        }
    };
    let uid_base = match &raw.uid_base {
        None => d.uid_base,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if n >= 65536 => n,
            _ => {
                ctx.err(
                    &v.span(),
                    format!(
                        "jail.uid_base ({}) must be between 65536 and {} (jail ids must not overlap the host's users)",
                        v.get_ref(),
                        u32::MAX
                    ),
                );
                d.uid_base
            }
        },
    };
    let ssh_port = match &raw.ssh_port {
        None => 22,
        Some(v) => match u16::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => {
                ctx.err(&v.span(), format!("jail.ssh_port ({}) is not a TCP port", v.get_ref()));
                22
            }
        },
    };
    let size = |ctx: &mut Ctx<'_>, v: &Option<Spanned<String>>, key: &str, default: u64| match v {
        None => default,
        Some(v) => match parse_size(v.get_ref()) {
            Some(n) if (MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&n) => n,
            Some(_) => {
                ctx.err(&v.span(), format!("jail.{key} ({}) must be between 64M and 16T", v.get_ref()));
                default
            }
            None => {
                ctx.err(
                    &v.span(),
                    format!(
                        "jail.{key} {:?} is not a size such as \"8G\" (a whole number with K, M, G or T)",
                        v.get_ref()
                    ),
                );
                default
            }
        },
    };
    let nfsroot_size = size(ctx, &raw.nfsroot_size, "nfsroot_size", d.nfsroot_size);
    let data_size = size(ctx, &raw.data_size, "data_size", d.data_size);
    let mut deny_out = Vec::new();
    for v in &raw.deny_out {
        match v.get_ref().parse::<ipnet::IpNet>() {
            Ok(n) if n.trunc() == n => deny_out.push(n),
            Ok(n) => ctx.err(
                &v.span(),
                format!("jail.deny_out {:?} has host bits set (did you mean \"{}\"?)", v.get_ref(), n.trunc()),
            ),
            Err(_) => ctx.err(
                &v.span(),
                format!("jail.deny_out {:?} is not an IPv4 or IPv6 prefix such as \"192.168.0.0/16\"", v.get_ref()),
            ),
        }
    }
    let dl = Limits::default();
    let pids_max = match &raw.pids_max {
        None => dl.pids_max,
        Some(v) => match u64::try_from(*v.get_ref()) {
            Ok(n) if (16..=1 << 22).contains(&n) => n,
            _ => {
                ctx.err(&v.span(), format!("jail.pids_max ({}) must be between 16 and 4194304", v.get_ref()));
                dl.pids_max
            }
        },
    };
    let memory_max = match &raw.memory_max {
        None => dl.memory_max,
        Some(v) => match parse_size(v.get_ref()) {
            Some(n) if n >= MIN_MEMORY_MAX => n,
            Some(_) => {
                ctx.err(&v.span(), format!("jail.memory_max ({}) must be at least 64M", v.get_ref()));
                dl.memory_max
            }
            None => {
                ctx.err(
                    &v.span(),
                    format!(
                        "jail.memory_max {:?} is not a size such as \"1G\" (a whole number with K, M, G or T)",
                        v.get_ref()
                    ),
                );
                dl.memory_max
            }
        },
    };
    let cpu_weight = match &raw.cpu_weight {
        None => dl.cpu_weight,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if (1..=10000).contains(&n) => n,
            _ => {
                ctx.err(
                    &v.span(),
                    format!(
                        "jail.cpu_weight ({}) must be between 1 and 10000 (100: a normal process's share)",
                        v.get_ref()
                    ),
                );
                dl.cpu_weight
            }
        },
    };
    let connections_max = match &raw.connections_max {
        None => dl.connections_max,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if (16..=1 << 20).contains(&n) => n,
            _ => {
                ctx.err(&v.span(), format!("jail.connections_max ({}) must be between 16 and 1048576", v.get_ref()));
                dl.connections_max
            }
        },
    };
    let parallel_builds = match &raw.parallel_builds {
        None => DEFAULT_PARALLEL_BUILDS,
        Some(v) => match usize::try_from(*v.get_ref()) {
            Ok(n) if (1..=256).contains(&n) => n,
            _ => {
                ctx.err(&v.span(), format!("jail.parallel_builds ({}) must be between 1 and 256", v.get_ref()));
                DEFAULT_PARALLEL_BUILDS
            }
        },
    };
    let ipv6 = ipv6_pool(ctx, &raw, &uplink, lease_max);
    let host_ca = host_ca(ctx, &raw.host_ca).map(|ca| match &ipv6 {
        Some(v6) => ca.with_ipv6_pool(&v6.pool),
        None => ca,
    });
    JailConfig {
        parallel_builds,
        settings: JailSettings {
            root_dir,
            pool,
            board_net,
            nat_interface,
            uplink,
            uid_base,
            ssh_port,
            init_exe: d.init_exe,
            nfsroot_size,
            data_size,
            deny_out,
            limits: Limits { pids_max, memory_max, cpu_weight, connections_max },
            ipv6,
        },
        keep_host_key: raw.keep_host_key.unwrap_or(false),
        keys_dir,
        host_ca,
    }
}

/// `[jail] host_ca`: an absolute path to the CA's key, which is read and
/// checked here (mode, owner, an ed25519 OpenSSH private key), so that
/// `labd check` finds what labd would stumble on.
fn host_ca(ctx: &mut Ctx<'_>, v: &Option<Spanned<String>>) -> Option<HostCa> {
    let s = v.as_ref()?;
    let path = Path::new(s.get_ref());
    if !path.is_absolute() {
        ctx.err(&s.span(), format!("jail.host_ca must be an absolute path, not {:?}", s.get_ref()));
        return None;
    }
    match HostCa::load(path) {
        Ok(ca) => Some(ca),
        Err(e) => {
            ctx.err(&s.span(), format!("jail.host_ca {e}"));
            None
        }
    }
}

/// `[jail] ipv6_pool` and `ipv6_cooldown`, validated.
fn ipv6_pool(ctx: &mut Ctx<'_>, raw: &RawJail, uplink: &Uplink, lease_max: std::time::Duration) -> Option<Ipv6Pool> {
    let Some(v) = &raw.ipv6_pool else {
        if let Some(c) = &raw.ipv6_cooldown {
            ctx.err(&c.span(), "jail.ipv6_cooldown is only used with jail.ipv6_pool");
        }
        if let Some(c) = &raw.ipv6_fresh_per_user {
            ctx.err(&c.span(), "jail.ipv6_fresh_per_user is only used with jail.ipv6_pool");
        }
        return None;
    };
    let pool = match v.get_ref().parse::<ipnet::Ipv6Net>() {
        Ok(n) if n.trunc() != n => {
            ctx.err(
                &v.span(),
                format!("jail.ipv6_pool {:?} has host bits set (did you mean \"{}\"?)", v.get_ref(), n.trunc()),
            );
            return None;
        }
        Ok(n) if !IPV6_POOL_PREFIXES.contains(&n.prefix_len()) => {
            ctx.err(
                &v.span(),
                format!("jail.ipv6_pool ({n}) must be a /40 to /60: each claim gets a /64 of it, at random"),
            );
            return None;
        }
        Ok(n) => n,
        Err(_) => {
            ctx.err(
                &v.span(),
                format!("jail.ipv6_pool {:?} is not an IPv6 prefix such as \"2001:db8:4200::/48\"", v.get_ref()),
            );
            return None;
        }
    };
    if !matches!(uplink, Uplink::Routed) {
        ctx.err(&v.span(), "jail.ipv6_pool needs uplink = \"routed\" (the host routes each claim's /64 to its jail)");
        return None;
    }
    let cooldown = ctx.duration(&raw.ipv6_cooldown, "jail.ipv6_cooldown", DEFAULT_IPV6_COOLDOWN);
    let fresh_per_user = match &raw.ipv6_fresh_per_user {
        None => DEFAULT_IPV6_FRESH_PER_USER,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(k) if (1..=1024).contains(&k) => k,
            _ => {
                ctx.err(&n.span(), format!("jail.ipv6_fresh_per_user ({}) must be between 1 and 1024", n.get_ref()));
                DEFAULT_IPV6_FRESH_PER_USER
            }
        },
    };
    // A certificate of the last claim to hold a /64 lasts until that
    // claim's lease end, at most `lease.max` after the release, and a
    // client whose clock is behind accepts it up to the skew certificates
    // allow for longer; the /64 comes back only after both (and the
    // second the validity is rounded up by).
    let certs_done = lease_max + std::time::Duration::from_secs(crate::sshca::CLOCK_SKEW_SECS + 1);
    Some(Ipv6Pool { pool, reuse_after: cooldown.max(certs_done), fresh_per_user })
}

/// Least `[jail] memory_max`: sshd, dnsmasq and ganesha must fit.
const MIN_MEMORY_MAX: u64 = 64 << 20;

/// Bounds of `[jail] nfsroot_size` and `data_size` (ext4 wants some
/// room; 16T is ext4's limit with 4k blocks).
const MIN_IMAGE_SIZE: u64 = 64 << 20;
const MAX_IMAGE_SIZE: u64 = 16 << 40;

/// Whether the pools and the uid range have room for every board.
pub(super) fn capacity(j: &JailConfig, boards: usize, file: &Path, errors: &mut Vec<ConfigError>) {
    let j = &j.settings;
    let n = u64::try_from(boards).unwrap_or(u64::MAX);
    let mut err = |message: String| errors.push(ConfigError { file: file.to_path_buf(), line: 0, message });
    let per24 = 1u64 << (24 - u32::from(j.board_net.prefix().min(24)));
    if n > per24 {
        err(format!("jail.board_net ({}) has {per24} /24s for {n} boards", j.board_net));
    }
    let uplinks = match j.uplink {
        Uplink::Routed => j.pool.size() / 4,
        Uplink::Macvlan { .. } => j.pool.size().saturating_sub(3),
    };
    if n > uplinks {
        err(format!("jail.pool ({}) has room for {uplinks} jails, not {n} boards", j.pool));
    }
    if u64::from(j.uid_base) + n * 65536 > u64::from(u32::MAX) {
        err(format!("jail.uid_base ({}) leaves no room for {n} boards of 65536 ids each", j.uid_base));
    }
}
