//! `[switches.NAME]`: the PoE switches and how to reach them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;
use crate::ids::valid_name;

mod usm;
pub use usm::{AuthProtocol, PrivProtocol, Secret, Usm};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSwitch {
    pub(super) host: Spanned<String>,
    #[serde(default = "default_community")]
    pub(super) community: String,
    /// `"1"`, `"2c"` or `3` (a string or a number).
    #[serde(default = "default_version")]
    pub(super) version: Spanned<toml::Value>,
    pub(super) timeout: Option<Spanned<String>>,
    #[serde(default = "default_retries")]
    pub(super) retries: Spanned<u32>,
    // SNMPv3 (`version = 3`): see `usm`.
    pub(super) user: Option<Spanned<String>>,
    pub(super) auth_protocol: Option<Spanned<String>>,
    pub(super) auth_key: Option<Spanned<String>>,
    pub(super) auth_key_file: Option<Spanned<String>>,
    pub(super) priv_protocol: Option<Spanned<String>>,
    pub(super) priv_key: Option<Spanned<String>>,
    pub(super) priv_key_file: Option<Spanned<String>>,
    #[serde(default = "default_max_in_flight")]
    pub(super) max_in_flight: Spanned<u32>,
}

fn default_community() -> String {
    "private".into()
}
fn default_version() -> Spanned<toml::Value> {
    Spanned::new(0..0, toml::Value::String("2c".into()))
}
fn default_retries() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_max_in_flight() -> Spanned<u32> {
    Spanned::new(0..0, DEFAULT_MAX_IN_FLIGHT as u32)
}

/// SNMP requests labd has in flight to one switch at most, unless its
/// `max_in_flight` says otherwise: cheap switches drop SETs that arrive
/// while they are busy with another.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 2;
/// The largest `max_in_flight` accepted.
pub const MAX_IN_FLIGHT_LIMIT: u32 = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpVersion {
    V1,
    V2c,
    /// SNMPv3 with the user-based security model, authPriv.
    V3,
}

#[derive(Debug, Clone)]
pub struct Switch {
    pub name: String,
    pub host: String,
    pub community: String,
    pub version: SnmpVersion,
    /// Time allowed for one request before it is retried.
    pub timeout: Duration,
    /// Extra attempts after the first one.
    pub retries: u32,
    /// SNMPv3's user and keys (`version = 3` only).
    pub usm: Option<Usm>,
    /// SNMP requests in flight to the switch at once, across all its boards.
    pub max_in_flight: usize,
}

/// Validates every `[switches.NAME]`.
pub(super) fn validate(ctx: &mut Ctx<'_>, raw: BTreeMap<String, Spanned<RawSwitch>>) -> BTreeMap<String, Switch> {
    let mut switches = BTreeMap::new();
    for (name, sw) in raw {
        let span = sw.span();
        let sw = sw.into_inner();
        if !valid_name(&name) {
            ctx.err(&span, format!("switch name {name:?} may only use letters, digits, '-', '_' and '.'"));
            continue;
        }
        let host = sw.host.get_ref().clone();
        let host = if host.contains(':') && !host.ends_with(']') { host } else { format!("{host}:161") };
        if host.rsplit_once(':').map(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()).unwrap_or(true) {
            ctx.err(&sw.host.span(), format!("switches.{name}.host {:?} is not HOST or HOST:PORT", sw.host.get_ref()));
        }
        let version = match sw.version.get_ref() {
            toml::Value::String(s) if s == "1" => SnmpVersion::V1,
            toml::Value::Integer(1) => SnmpVersion::V1,
            toml::Value::String(s) if s == "2c" => SnmpVersion::V2c,
            toml::Value::String(s) if s == "3" => SnmpVersion::V3,
            toml::Value::Integer(3) => SnmpVersion::V3,
            other => {
                ctx.err(&sw.version.span(), format!("switches.{name}.version {other} is not \"1\", \"2c\" or 3"));
                SnmpVersion::V2c
            }
        };
        let timeout = ctx.duration(&sw.timeout, &format!("switches.{name}.timeout"), Duration::from_secs(2));
        if *sw.retries.get_ref() > 10 {
            ctx.err(&sw.retries.span(), format!("switches.{name}.retries ({}) is more than 10", sw.retries.get_ref()));
        }
        let usm = usm::validate(ctx, &name, &span, &sw, version == SnmpVersion::V3);
        let retries = *sw.retries.get_ref();
        let max_in_flight = *sw.max_in_flight.get_ref();
        if max_in_flight == 0 || max_in_flight > MAX_IN_FLIGHT_LIMIT {
            ctx.err(
                &sw.max_in_flight.span(),
                format!("switches.{name}.max_in_flight ({max_in_flight}) must be between 1 and {MAX_IN_FLIGHT_LIMIT}"),
            );
        }
        let max_in_flight = max_in_flight.clamp(1, MAX_IN_FLIGHT_LIMIT) as usize;
        switches.insert(
            name.clone(),
            Switch { name, host, community: sw.community, version, timeout, retries, usm, max_in_flight },
        );
    }
    switches
}
