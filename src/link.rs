//! Board links on the host.
//!
//! A board's network link (a dedicated NIC, or labsim's veth end) is
//! hostile on both sides: the board runs whatever its user flashed, and
//! while a jail holds the link, the jail's root can rename it, change its
//! address, delete it or make others in its place. So a link is known by
//! what the kernel says it is ([`LinkId`]: its kind, the bus device of a
//! NIC, the peer of a veth), never by its name, and while no jail holds it
//! it is *parked* ([`park`]): down, addresses flushed, IPv6 off and no
//! router advertisements taken, and every packet from it dropped by the
//! host table [`TABLE`] (defence in depth: a down link receives nothing).
//!
//! Everything here runs `ip` and `nft` with explicit argument vectors and
//! interface names validated by the configuration; it is blocking.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Something `ip`, `nft` or a sysctl refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{what} {path}: {source}")]
    Sysctl { what: &'static str, path: String, source: std::io::Error },
    #[error("reading the links of {netns}: {detail}")]
    Parse { netns: String, detail: String },
}

/// Runs a program with explicit arguments (and optional stdin); its
/// stdout, or its stderr in the error.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, LinkError> {
    let cmdline = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LinkError::Command { command: cmdline(), detail: format!("cannot start: {e}") })?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes())
            .map_err(|e| LinkError::Command { command: cmdline(), detail: format!("writing input: {e}") })?;
    }
    let out = child.wait_with_output().map_err(|e| LinkError::Command { command: cmdline(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LinkError::Command {
            command: cmdline(),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}

/// One link as `ip -j -d link show` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub name: String,
    pub mac: String,
    /// `veth`, `vlan`, `macvlan`...; `None` for hardware.
    pub kind: Option<String>,
    /// `bus/device` of hardware (`pci/0000:03:00.0`).
    pub parent: Option<String>,
    /// A veth whose peer is in another namespace: that namespace's id as
    /// seen from the namespace that was asked, and the peer's ifindex.
    pub peer: Option<(i64, u32)>,
    /// A veth whose peer is in the same namespace (a pair made there).
    pub peer_here: bool,
    pub up: bool,
}

impl LinkInfo {
    /// A device software made (and can unmake), as opposed to hardware.
    pub fn is_virtual(&self) -> bool {
        self.kind.is_some()
    }
}

/// What makes a link the board's, as recorded on the host while it is
/// parked (and kept in the state database and in a jail's record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkId {
    /// The address it had on the host; restored when it comes back.
    pub mac: String,
    pub kind: Option<String>,
    pub parent: Option<String>,
    /// A veth: the host's id of its peer's namespace and the peer's
    /// ifindex there.
    pub peer: Option<(i64, u32)>,
}

impl LinkId {
    pub fn of(l: &LinkInfo) -> LinkId {
        LinkId { mac: l.mac.clone(), kind: l.kind.clone(), parent: l.parent.clone(), peer: l.peer }
    }

    /// Whether `l`, seen from the host, is this device; the reason if not.
    /// The address is not compared (a jail may change it; it is restored).
    pub fn matches_on_host(&self, l: &LinkInfo) -> Result<(), String> {
        if self.kind != l.kind {
            return Err(format!("{} is a {} link, the board's is a {}", l.name, kind(&l.kind), kind(&self.kind)));
        }
        if self.parent != l.parent {
            return Err(format!(
                "{} sits on {}, the board's link on {}",
                l.name,
                l.parent.as_deref().unwrap_or("no device"),
                self.parent.as_deref().unwrap_or("no device")
            ));
        }
        if self.peer.is_some() && self.peer != l.peer {
            return Err(format!("{}'s other end is not the board's", l.name));
        }
        Ok(())
    }

    /// Whether `l`, seen from inside a jail (where namespace ids differ),
    /// may be this device: the same kind, on the same hardware, and for a
    /// veth one whose other end is outside the jail.
    pub fn may_be_in_jail(&self, l: &LinkInfo) -> bool {
        self.kind == l.kind && self.parent == l.parent && (self.peer.is_none() || (l.peer.is_some() && !l.peer_here))
    }
}

fn kind(k: &Option<String>) -> &str {
    k.as_deref().unwrap_or("hardware")
}

/// Parses `ip -j -d link show`.
pub fn parse_links(json: &str) -> Result<Vec<LinkInfo>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let arr = v.as_array().ok_or("not a list")?;
    let mut out = Vec::new();
    for l in arr {
        let (Some(ifindex), Some(name)) =
            (l["ifindex"].as_u64().and_then(|i| u32::try_from(i).ok()), l["ifname"].as_str())
        else {
            continue;
        };
        let kind = l["linkinfo"]["info_kind"].as_str().map(str::to_string);
        let parent = match (l["parentbus"].as_str(), l["parentdev"].as_str()) {
            (Some(b), Some(d)) => Some(format!("{b}/{d}")),
            _ => None,
        };
        let peer = match (l["link_netnsid"].as_i64(), l["link_index"].as_u64().and_then(|i| u32::try_from(i).ok())) {
            (Some(ns), Some(i)) => Some((ns, i)),
            _ => None,
        };
        let up = l["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"));
        out.push(LinkInfo {
            ifindex,
            name: name.to_string(),
            mac: l["address"].as_str().unwrap_or("").to_string(),
            peer_here: kind.as_deref() == Some("veth") && peer.is_none(),
            kind,
            parent,
            peer,
            up,
        });
    }
    Ok(out)
}

/// Every link of the host (`netns` None) or of a named network namespace.
pub fn list(netns: Option<&str>) -> Result<Vec<LinkInfo>, LinkError> {
    let out = match netns {
        Some(ns) => run("ip", &["-n", ns, "-j", "-d", "link", "show"], None)?,
        None => run("ip", &["-j", "-d", "link", "show"], None)?,
    };
    parse_links(&out).map_err(|detail| LinkError::Parse { netns: netns.unwrap_or("the host").into(), detail })
}

/// The host link named `name`, if there is one.
pub fn host_link(name: &str) -> Result<Option<LinkInfo>, LinkError> {
    if !Path::new("/sys/class/net").join(name).exists() {
        return Ok(None);
    }
    let out = match run("ip", &["-j", "-d", "link", "show", "dev", name], None) {
        Ok(o) => o,
        // Gone between the check and the question.
        Err(_) if !Path::new("/sys/class/net").join(name).exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    let links = parse_links(&out).map_err(|detail| LinkError::Parse { netns: "the host".into(), detail })?;
    Ok(links.into_iter().find(|l| l.name == name))
}

/// Sets `net.ipv6.conf.NAME.KEY` of a host interface.
pub fn sysctl(name: &str, key: &str, value: &str) -> Result<(), LinkError> {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/{key}");
    std::fs::write(&path, value).map_err(|source| LinkError::Sysctl { what: "writing", path, source })
}

/// IPv6 off and no router advertisements on a host interface (a link that
/// moved namespaces gets the defaults of its new one).
pub fn ipv6_off(name: &str) -> Result<(), LinkError> {
    sysctl(name, "accept_ra", "0")?;
    sysctl(name, "disable_ipv6", "1")
}

/// Parks the host link `name`: IPv6 off first (so bringing it down and up
/// never gives it a link-local address), then down, addresses flushed.
pub fn park(name: &str) -> Result<(), LinkError> {
    ipv6_off(name)?;
    run("ip", &["link", "set", "dev", name, "down"], None)?;
    run("ip", &["addr", "flush", "dev", name], None)?;
    Ok(())
}

/// Finds the board's link on the host under `name` and parks it. With a
/// recorded identity, the link must be that device: hardware that came
/// back from a dead namespace under another name is found by its bus
/// device and renamed. Whatever sits under `name` is parked before it is
/// judged. Returns the identity, or why the board has no usable link.
pub fn check_and_park(name: &str, expected: Option<&LinkId>) -> Result<LinkId, String> {
    let links = list(None).map_err(|e| e.to_string())?;
    let found = links.iter().find(|l| l.name == name).cloned();
    let found = match (found, expected) {
        (Some(l), _) => l,
        (None, Some(id)) if id.parent.is_some() => {
            let Some(l) = links.iter().find(|l| l.parent == id.parent && l.kind == id.kind) else {
                return Err(format!("the board's link {name} is missing"));
            };
            run("ip", &["link", "set", "dev", &l.name, "down"], None).map_err(|e| e.to_string())?;
            run("ip", &["link", "set", "dev", &l.name, "name", name], None).map_err(|e| e.to_string())?;
            LinkInfo { name: name.to_string(), ..l.clone() }
        }
        (None, _) => return Err(format!("the board's link {name} is missing")),
    };
    park(name).map_err(|e| format!("parking the board's link {name}: {e}"))?;
    if let Some(id) = expected {
        id.matches_on_host(&found).map_err(|why| format!("the board's link {name} is not the recorded one: {why}"))?;
        if found.mac != id.mac && !id.mac.is_empty() {
            run("ip", &["link", "set", "dev", name, "address", &id.mac], None).map_err(|e| e.to_string())?;
        }
        return Ok(id.clone());
    }
    Ok(LinkId::of(&found))
}

/// The host table that drops everything arriving from a parked board link
/// (input and forward). One table for every labd on the host; each adds
/// and removes its own links' names in the set `parked`.
pub const TABLE: &str = "boardlab_links";

/// The table, its set and chains, made if missing and their rules
/// rewritten (so applying it twice changes nothing), and `names` added to
/// the set. One `nft -f` transaction.
pub fn table_script(names: &[String]) -> String {
    let mut s = format!(
        "add table inet {TABLE}
add set inet {TABLE} parked {{ type ifname; }}
add chain inet {TABLE} input {{ type filter hook input priority filter - 10; policy accept; }}
add chain inet {TABLE} forward {{ type filter hook forward priority filter - 10; policy accept; }}
flush chain inet {TABLE} input
flush chain inet {TABLE} forward
add rule inet {TABLE} input iifname @parked drop
add rule inet {TABLE} forward iifname @parked drop
add rule inet {TABLE} forward oifname @parked drop
"
    );
    if !names.is_empty() {
        let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        s.push_str(&format!("add element inet {TABLE} parked {{ {} }}\n", list.join(", ")));
    }
    s
}

/// Installs the table with `names` (the names must be valid interface
/// names: they become nft text).
pub fn install_table(names: &[String]) -> Result<(), LinkError> {
    run("nft", &["-f", "-"], Some(&table_script(names))).map(|_| ())
}

/// Takes `names` out of the set, and the table away once no labd has a
/// name in it.
pub fn remove_from_table(names: &[String]) -> Result<(), LinkError> {
    for n in names {
        let _ = run("nft", &["delete", "element", "inet", TABLE, "parked", &format!("{{ \"{n}\" }}")], None);
    }
    if set_is_empty("inet", TABLE, "parked") {
        run("nft", &["delete", "table", "inet", TABLE], None)?;
    }
    Ok(())
}

/// Whether the nft set `family table set` exists and holds no element.
pub fn set_is_empty(family: &str, table: &str, set: &str) -> bool {
    let Ok(left) = run("nft", &["-j", "list", "set", family, table, set], None) else { return false };
    serde_json::from_str::<Value>(&left)
        .ok()
        .and_then(|v| {
            v["nftables"].as_array()?.iter().find_map(|e| {
                e.get("set").map(|s| s.get("elem").is_none_or(|x| x.as_array().is_none_or(|a| a.is_empty())))
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = r#"[
      {"ifindex":4,"ifname":"eth0","flags":["BROADCAST","UP"],"address":"02:fc:00:00:00:01","parentbus":"virtio","parentdev":"virtio2"},
      {"ifindex":730,"ifname":"bl12h1","flags":["BROADCAST"],"address":"06:b1:00:12:00:01","link_index":2,"link_netnsid":0,"linkinfo":{"info_kind":"veth"}},
      {"ifindex":9,"ifname":"fake","flags":[],"address":"fa:8c:42:67:be:cd","link":"fakep","linkinfo":{"info_kind":"veth"}}
    ]"#;

    #[test]
    fn parses_what_identifies_a_link() {
        let l = parse_links(HOST).unwrap();
        assert_eq!(l[0].parent.as_deref(), Some("virtio/virtio2"));
        assert!(l[0].up && !l[0].is_virtual());
        assert_eq!(l[1].peer, Some((0, 2)));
        assert!(!l[1].peer_here && !l[1].up);
        assert!(l[2].peer_here && l[2].peer.is_none());
    }

    #[test]
    fn a_fake_is_not_the_board_link() {
        let l = parse_links(HOST).unwrap();
        let nic = LinkId::of(&l[0]);
        let veth = LinkId::of(&l[1]);
        assert!(nic.matches_on_host(&l[0]).is_ok());
        assert!(veth.matches_on_host(&l[1]).is_ok());
        // A veth made in the jail, with its peer beside it, is not the
        // board's veth and not its NIC.
        assert!(!veth.may_be_in_jail(&l[2]));
        assert!(!nic.may_be_in_jail(&l[2]));
        assert!(veth.may_be_in_jail(&l[1]));
        assert!(nic.matches_on_host(&l[1]).unwrap_err().contains("veth"));
        // A veth whose peer is elsewhere, but not where the board's is.
        let other = LinkInfo { peer: Some((3, 2)), ..l[1].clone() };
        assert!(veth.matches_on_host(&other).is_err());
    }

    #[test]
    fn the_table_script_is_idempotent_text() {
        let s = table_script(&["bl12h1".into(), "enp3s0".into()]);
        assert!(s.contains("flush chain inet boardlab_links input"), "{s}");
        assert!(s.contains("add rule inet boardlab_links input iifname @parked drop"), "{s}");
        assert!(s.ends_with("add element inet boardlab_links parked { \"bl12h1\", \"enp3s0\" }\n"), "{s}");
        assert!(!table_script(&[]).contains("add element"));
    }
}
