//! `boards.d/*.toml`: one board a file, its power port, console and link.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::switch::Switch;
use super::Ctx;
use crate::ids::{valid_ifname, valid_name};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBoard {
    pub(super) name: Spanned<String>,
    pub(super) class: Spanned<String>,
    pub(super) power: Spanned<RawBoardPower>,
    pub(super) console: Option<Spanned<RawConsole>>,
    pub(super) network: Option<Spanned<RawNetwork>>,
    #[serde(default)]
    pub(super) power_on_claim: bool,
    pub(super) storage: Option<Spanned<super::storage::RawStorage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBoardPower {
    pub(super) switch: Spanned<String>,
    pub(super) port: Spanned<i64>,
    #[serde(default = "default_group")]
    pub(super) group: Spanned<i64>,
}

fn default_group() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    #[serde(rename = "match")]
    pub(super) match_props: Option<BTreeMap<String, String>>,
    pub(super) path: Option<String>,
    #[serde(default = "default_baud")]
    pub(super) baud: u32,
    pub(super) selftest: Option<String>,
}

fn default_baud() -> u32 {
    115_200
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub(super) vlan: Option<i64>,
    pub(super) trunk: Option<String>,
    pub(super) interface: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleSource {
    /// Found by udev properties (ID_SERIAL_SHORT, ID_PATH, ...).
    Match(BTreeMap<String, String>),
    /// A fixed device path.
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Console {
    pub source: ConsoleSource,
    pub baud: u32,
    /// What `labd selftest` waits for on the console after power-on (a
    /// regular expression, checked at load); None: any byte.
    pub selftest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A VLAN sub-interface created on `trunk`.
    Vlan { vlan: u16, trunk: String },
    /// A dedicated interface (a NIC, or labsim's veth end).
    Interface(String),
}

#[derive(Debug, Clone)]
pub struct Board {
    pub name: String,
    pub class: String,
    pub file: PathBuf,
    pub switch: String,
    pub group: u32,
    pub port: u32,
    pub console: Option<Console>,
    pub network: Option<Network>,
    pub power_on_claim: bool,
    /// The board's microSD card and its mux.
    pub storage: Option<super::storage::Storage>,
}

/// Validates one board file.
/// `lab_parsed`: lab.toml parsed (else its switches are unknown, and a
/// board is not blamed for naming one).
pub(super) fn validate(
    ctx: &mut Ctx<'_>,
    raw: RawBoard,
    switches: &BTreeMap<String, Switch>,
    lab_parsed: bool,
) -> Option<Board> {
    let before = ctx.errors.len();
    let name = raw.name.get_ref().clone();
    if !valid_name(&name) {
        ctx.err(
            &raw.name.span(),
            format!("board name {name:?} may only use letters, digits, '-', '_' and '.' (at most 64)"),
        );
    }
    let class = raw.class.get_ref().clone();
    if !valid_name(&class) {
        ctx.err(
            &raw.class.span(),
            format!("class {class:?} may only use letters, digits, '-', '_' and '.' (at most 64)"),
        );
    }
    let p = raw.power.get_ref();
    let switch = p.switch.get_ref().clone();
    if lab_parsed && !switches.contains_key(&switch) {
        let known: Vec<&str> = switches.keys().map(|s| s.as_str()).collect();
        ctx.err(
            &p.switch.span(),
            format!(
                "power.switch {switch:?} is not a switch in lab.toml (known: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        );
    }
    let port = u32::try_from(*p.port.get_ref()).ok().filter(|&n| n >= 1);
    if port.is_none() {
        ctx.err(&p.port.span(), format!("power.port ({}) must be a positive port number", p.port.get_ref()));
    }
    let group = u32::try_from(*p.group.get_ref()).ok().filter(|&n| n >= 1);
    if group.is_none() {
        ctx.err(&p.group.span(), format!("power.group ({}) must be a positive group number", p.group.get_ref()));
    }
    let console = raw.console.map(|c| {
        let span = c.span();
        let c = c.into_inner();
        let source = match (c.match_props, c.path) {
            (Some(m), None) if !m.is_empty() => ConsoleSource::Match(m),
            (None, Some(p)) if Path::new(&p).is_absolute() => ConsoleSource::Path(PathBuf::from(p)),
            (None, Some(p)) => {
                ctx.err(&span, format!("console.path {p:?} must be an absolute path"));
                ConsoleSource::Path(PathBuf::from(p))
            }
            (Some(_), Some(_)) => {
                ctx.err(&span, "console takes either `match` or `path`, not both");
                ConsoleSource::Match(BTreeMap::new())
            }
            _ => {
                ctx.err(&span, "console needs `match = { ID_SERIAL_SHORT = \"...\" }` or `path = \"/dev/...\"`");
                ConsoleSource::Match(BTreeMap::new())
            }
        };
        if c.baud == 0 || c.baud > 12_000_000 {
            ctx.err(&span, format!("console.baud ({}) is not a usable baud rate", c.baud));
        }
        if let Some(Err(e)) = c.selftest.as_deref().map(regex::bytes::Regex::new) {
            ctx.err(&span, format!("console.selftest is not a regular expression: {e}"));
        }
        Console { source, baud: c.baud, selftest: c.selftest }
    });
    let network = raw.network.and_then(|n| {
        let span = n.span();
        let n = n.into_inner();
        match (n.vlan, n.trunk, n.interface) {
            (Some(v), Some(t), None) => {
                if !(1..=4094).contains(&v) {
                    ctx.err(&span, format!("network.vlan ({v}) must be between 1 and 4094"));
                    None
                } else if !valid_ifname(&t) {
                    ctx.err(&span, format!("network.trunk {t:?} is not an interface name"));
                    None
                } else {
                    Some(Network::Vlan { vlan: u16::try_from(v).ok()?, trunk: t })
                }
            }
            (None, None, Some(i)) => {
                if valid_ifname(&i) {
                    Some(Network::Interface(i))
                } else {
                    ctx.err(&span, format!("network.interface {i:?} is not an interface name"));
                    None
                }
            }
            _ => {
                ctx.err(&span, "network takes `vlan` and `trunk` together, or `interface` alone");
                None
            }
        }
    });
    let storage = raw.storage.and_then(|s| super::storage::validate(ctx, s));
    if ctx.errors.len() > before {
        return None;
    }
    Some(Board {
        name,
        class,
        file: ctx.file.to_path_buf(),
        switch,
        group: group?,
        port: port?,
        console,
        network,
        power_on_claim: raw.power_on_claim,
        storage,
    })
}
