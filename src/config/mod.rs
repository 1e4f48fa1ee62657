//! Configuration: `DIR/lab.toml` and `DIR/boards.d/*.toml`.
//!
//! Loading is two steps, as in cloud-hypervisor: serde structs with explicit
//! defaults (unknown keys are errors), then a `validate` pass that checks what
//! serde cannot (names, ranges, references between files). Every problem is
//! reported with its file and line, and all problems are collected, so that
//! `labd check` tells an operator everything to fix in one run.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::util::parse_duration;

mod board;
mod cluster;
mod daemon;
mod health;
pub mod jail;
mod policy;
pub mod storage;
mod switch;
#[cfg(test)]
mod tests;
pub mod web;

pub use board::{Board, Console, ConsoleSource, Network};
pub use cluster::{Cluster, PeerTls};
pub use daemon::{Daemon, JailMode, DEFAULT_CONNECTIONS_PER_USER, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use health::Health;
pub use jail::{Ipv6Pool, JailConfig, JailSettings, Uplink};
pub use policy::{ConsoleLogs, Events, Lease, PowerPolicy, UserPolicy, DEFAULT_EVENTS_KEEP};
pub use storage::{SdWireVariant, Storage, StorageLab, UsbSdMuxFind};
pub use switch::{SnmpVersion, Switch};
/// `[switches.NAME]`'s SNMPv3 user and keys.
pub mod switch_usm {
    pub use super::switch::{AuthProtocol, PrivProtocol, Secret, Usm};
}
pub use web::{Web, WebAuth};

/// One configuration problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, 0 when the problem concerns the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// All the problems found in a configuration directory.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------
// Raw (serde) form. Spanned where validation needs to point at a line.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLab {
    #[serde(default)]
    daemon: daemon::RawDaemon,
    #[serde(default)]
    lease: policy::RawLease,
    #[serde(default)]
    policy: policy::RawUserPolicy,
    #[serde(default)]
    events: policy::RawEvents,
    #[serde(default)]
    power: policy::RawPower,
    #[serde(default)]
    console: policy::RawConsoleLogs,
    #[serde(default)]
    switches: BTreeMap<String, Spanned<switch::RawSwitch>>,
    #[serde(default)]
    jail: jail::RawJail,
    cluster: Option<Spanned<cluster::RawCluster>>,
    web: Option<Spanned<web::RawWeb>>,
    #[serde(default)]
    health: BTreeMap<String, Spanned<health::RawHealth>>,
    #[serde(default)]
    storage: storage::RawStorageLab,
}

// ---------------------------------------------------------------------------
// Validated form.
// ---------------------------------------------------------------------------

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub daemon: Daemon,
    pub lease: Lease,
    /// `[policy]`: per-user limits.
    pub policy: UserPolicy,
    /// `[events]`: how long the event log is kept.
    pub events: Events,
    pub power: PowerPolicy,
    pub console: ConsoleLogs,
    pub switches: BTreeMap<String, Switch>,
    /// `[jail]`: used when `daemon.jail = "linux"`.
    pub jail: JailConfig,
    /// Boards in a stable order (by name).
    pub boards: Vec<Board>,
    /// `[cluster]`: claims kept in etcd, shared with other hosts.
    pub cluster: Option<Cluster>,
    /// `[web]`: the status page and `/metrics` (None: not served).
    pub web: Option<Web>,
    /// `[health.CLASS]`: health checks by class.
    pub health: BTreeMap<String, Health>,
    /// `[storage]`: what happens to the boards' microSD cards.
    pub storage: StorageLab,
    /// What is not wrong but probably not meant (a `boards.d/notes.txt`
    /// that is not read): `labd check` prints them, labd logs them.
    pub warnings: Vec<String>,
}

/// Default location of the configuration.
pub const DEFAULT_DIR: &str = "/etc/boardlab";

pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    text: &'a str,
    pub(super) errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    fn line_of(&self, span: &std::ops::Range<usize>) -> usize {
        if span.start == 0 && span.end == 0 {
            return 0;
        }
        let start = span.start.min(self.text.len());
        self.text[..start].bytes().filter(|&b| b == b'\n').count() + 1
    }

    pub(super) fn err(&mut self, span: &std::ops::Range<usize>, message: impl Into<String>) {
        let line = self.line_of(span);
        self.errors.push(ConfigError { file: self.file.to_path_buf(), line, message: message.into() });
    }

    pub(super) fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.err(&s.span(), format!("{key} must be longer than zero"));
                    default
                }
                Err(e) => {
                    self.err(&s.span(), format!("{key}: {e}"));
                    default
                }
            },
        }
    }
}

/// Where the top-level key `key` (`name = ...`) starts in a board file's
/// text, for errors about its value as a whole; the file's start if absent.
fn key_span(text: &str, key: &str) -> std::ops::Range<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            let start = at + (line.len() - t.len());
            return start..start + key.len();
        }
        if t.starts_with('[') {
            break;
        }
        at += line.len();
    }
    0..0
}

/// `text` as a `T`, or every mistake in it: serde stops at the first, so
/// the `key = value` line it names is set aside and the rest read again,
/// until the file reads or a mistake is not on such a line (a syntax error:
/// what follows it cannot be trusted). A field missing only because its
/// line was set aside is not a mistake of its own.
fn parse_toml<T: for<'de> Deserialize<'de>>(file: &Path, text: &str, errors: &mut Vec<ConfigError>) -> Option<T> {
    const MORE: usize = 20;
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut set_aside: Vec<String> = Vec::new();
    for round in 0..=MORE {
        let current: String = lines.concat();
        let e = match toml::from_str::<T>(&current) {
            Ok(v) => return (round == 0).then_some(v),
            Err(e) => e,
        };
        let message = e.message().trim().to_string();
        // A syntax error: reported once, and nothing after it is read.
        let syntax = round == 0 && current.parse::<toml::Table>().is_err();
        let caused_by_us = set_aside.iter().any(|k| message.starts_with(&format!("missing field `{k}`")));
        let at = e.span().map(|s| current[..s.start.min(current.len())].bytes().filter(|&b| b == b'\n').count());
        if !caused_by_us {
            errors.push(ConfigError { file: file.to_path_buf(), line: at.map_or(0, |l| l + 1), message });
        }
        // The key of the line the mistake is on, if it is a `key = value`
        // line whose value ends on it.
        let key = at.and_then(|l| lines.get(l)).and_then(|line| {
            let t = line.trim();
            let (k, v) = t.split_once('=')?;
            let k = k.trim();
            let simple = !k.is_empty()
                && !t.starts_with('[')
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let v = v.trim();
            let closed = v.starts_with('{') == v.ends_with('}') && v.starts_with('[') == v.ends_with(']');
            (simple && closed).then(|| k.to_string())
        });
        let (Some(l), Some(k), false) = (at, key, syntax) else { return None };
        if set_aside.contains(&k) && caused_by_us {
            return None;
        }
        lines[l] = "\n";
        set_aside.push(k);
    }
    None
}

impl Config {
    /// Loads and validates `dir/lab.toml` and `dir/boards.d/*.toml`.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
        if dir.is_file() {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            return Err(ConfigErrors(vec![ConfigError {
                file: dir.to_path_buf(),
                line: 0,
                message: format!(
                    "is a file: --config takes the directory that holds lab.toml and boards.d (--config {})",
                    parent.display()
                ),
            }]));
        }
        let lab_path = dir.join("lab.toml");
        let lab_text = match std::fs::read_to_string(&lab_path) {
            Ok(t) => t,
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    file: lab_path,
                    line: 0,
                    message: format!("cannot read: {e}"),
                }]))
            }
        };
        let mut errors = Vec::new();
        let boards_dir = dir.join("boards.d");
        let mut skipped = Vec::new();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&boards_dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let toml = p.extension().is_some_and(|x| x == "toml");
                    let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
                    if !toml && !hidden {
                        skipped.push(p.clone());
                    }
                    toml
                })
                .collect(),
            Err(e) => {
                errors.push(ConfigError {
                    file: boards_dir.clone(),
                    line: 0,
                    message: format!("cannot read the boards directory: {e}"),
                });
                Vec::new()
            }
        };
        files.sort();
        let mut texts = Vec::with_capacity(files.len());
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(t) => texts.push((file, t)),
                Err(e) => errors.push(ConfigError { file, line: 0, message: format!("cannot read: {e}") }),
            }
        }
        let mut cfg = Self::from_texts(dir, &lab_text, &texts, errors)?;
        skipped.sort();
        cfg.warnings.extend(skipped.iter().map(|p| format!("{}: not read (board files end in .toml)", p.display())));
        Ok(cfg)
    }

    /// Validates a configuration given as texts: `lab.toml` and the board
    /// files (path, text) in order. `errors` holds problems found while
    /// reading, reported with the rest. Used by `load` and the fuzzer; pure
    /// but for the files a configuration is only valid with, those the keys
    /// `[jail] host_ca` and `[web] password_file` name, which are read and
    /// checked.
    pub fn from_texts(
        dir: &Path,
        lab_text: &str,
        board_texts: &[(PathBuf, String)],
        mut errors: Vec<ConfigError>,
    ) -> Result<Config, ConfigErrors> {
        let lab_path = dir.join("lab.toml");
        let parsed = parse_toml(&lab_path, lab_text, &mut errors);
        // A lab.toml that does not parse has no switches: its boards are
        // not blamed for naming them too.
        let lab_parsed = parsed.is_some();
        let mut raw_lab: RawLab = parsed.unwrap_or_default();
        let mut ctx = Ctx { file: &lab_path, text: lab_text, errors: &mut errors };
        let daemon = daemon::validate(&mut ctx, std::mem::take(&mut raw_lab.daemon));
        let lease = policy::validate_lease(&mut ctx, &raw_lab.lease);
        let user_policy = policy::validate_user_policy(&mut ctx, &raw_lab.policy);
        let events = policy::validate_events(&mut ctx, &raw_lab.events);
        let power = policy::validate_power(&mut ctx, &raw_lab.power);
        let console = policy::validate_console(&mut ctx, &raw_lab.console);
        let switches = switch::validate(&mut ctx, std::mem::take(&mut raw_lab.switches));
        let jail = jail::validate(&mut ctx, std::mem::take(&mut raw_lab.jail), dir, lease.max);
        let cluster = cluster::validate(&mut ctx, raw_lab.cluster.take());
        let web = web::validate(&mut ctx, raw_lab.web.take());
        let health_checks = health::validate(&mut ctx, std::mem::take(&mut raw_lab.health));
        let storage = storage::validate_lab(&raw_lab.storage);

        let mut boards: Vec<Board> = Vec::new();
        let mut seen_names: HashMap<String, PathBuf> = HashMap::new();
        let mut seen_ports: HashMap<(String, u32, u32), String> = HashMap::new();
        let mut seen_ifaces: HashMap<String, String> = HashMap::new();
        for (file, text) in board_texts {
            let Some(raw) = parse_toml::<board::RawBoard>(file, text, &mut errors) else { continue };
            let mut ctx = Ctx { file, text, errors: &mut errors };
            let Some(board) = board::validate(&mut ctx, raw, &switches, lab_parsed) else { continue };
            if let Some(other) = seen_names.get(&board.name) {
                let span = key_span(text, "name");
                ctx.err(&span, format!("board name {:?} is already used by {}", board.name, other.display()));
                continue;
            }
            let port_key = (board.switch.clone(), board.group, board.port);
            if let Some(other) = seen_ports.get(&port_key) {
                ctx.err(
                    &key_span(text, "power"),
                    format!(
                        "switch {:?} group {} port {} is already the power port of board {:?}",
                        board.switch, board.group, board.port, other
                    ),
                );
                continue;
            }
            if let Some(Network::Interface(i)) | Some(Network::Vlan { trunk: i, .. }) = &board.network {
                let key = match &board.network {
                    Some(Network::Vlan { vlan, trunk }) => format!("{trunk}.{vlan}"),
                    _ => i.clone(),
                };
                if let Some(other) = seen_ifaces.get(&key) {
                    ctx.err(
                        &key_span(text, "network"),
                        format!("network link {key:?} is already used by board {other:?}"),
                    );
                    continue;
                }
                seen_ifaces.insert(key, board.name.clone());
            }
            seen_ports.insert(port_key, board.name.clone());
            seen_names.insert(board.name.clone(), file.clone());
            boards.push(board);
        }
        let classes: std::collections::BTreeSet<String> = boards.iter().map(|b| b.class.clone()).collect();
        let mut ctx = Ctx { file: &lab_path, text: lab_text, errors: &mut errors };
        let health = health::check_classes(&mut ctx, health_checks, &classes);
        if daemon.jail == JailMode::Linux {
            jail::capacity(&jail, boards.len(), &lab_path, &mut errors);
        }
        if errors.is_empty() {
            boards.sort_by(|a, b| a.name.cmp(&b.name));
            let warnings = Vec::new();
            Ok(Config {
                dir: dir.to_path_buf(),
                daemon,
                lease,
                policy: user_policy,
                events,
                power,
                console,
                switches,
                jail,
                boards,
                cluster,
                web,
                health,
                storage,
                warnings,
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Board names by class, sorted.
    pub fn classes(&self) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for b in &self.boards {
            m.entry(b.class.clone()).or_default().push(b.name.clone());
        }
        m
    }
}

/// `[jail] host_ca` as `dir/lab.toml` names it, read without validating
/// anything else: `labd ca init` makes the key that the configuration
/// then needs to load. `None` when there is no lab.toml or it names none.
pub fn configured_host_ca(dir: &Path) -> Result<Option<PathBuf>, String> {
    let lab = dir.join("lab.toml");
    match jail_key(dir, "host_ca")? {
        None => Ok(None),
        Some(toml::Value::String(s)) if Path::new(&s).is_absolute() => Ok(Some(PathBuf::from(s))),
        Some(other) => Err(format!("{}: jail.host_ca must be an absolute path, not {other}", lab.display())),
    }
}

/// `[jail] ipv6_pool` of `dir`'s lab.toml, read on its own (for `labd ca
/// init`'s CA line, which covers the claims' IPv6 addresses); `None` when
/// absent or not a prefix (`labd check` says why).
pub fn configured_ipv6_pool(dir: &Path) -> Option<ipnet::Ipv6Net> {
    jail_key(dir, "ipv6_pool").ok()??.as_str()?.parse().ok()
}

/// `[jail] KEY` of `dir`'s lab.toml, nothing else read or checked: `None`
/// without lab.toml or the key.
fn jail_key(dir: &Path, key: &str) -> Result<Option<toml::Value>, String> {
    let path = dir.join("lab.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    let v: toml::Value = toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message().trim()))?;
    Ok(v.get("jail").and_then(|j| j.get(key)).cloned())
}

/// `"8G"`, `"512M"`: a whole number with a binary unit K, M, G or T
/// (case-insensitive), or plain bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 10),
        'M' => (&s[..s.len() - 1], 20),
        'G' => (&s[..s.len() - 1], 30),
        'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// The text of a secret's file (a password hash, an SNMPv3 key): a file
/// of root's (or labd's user's) that neither its group nor others may
/// read or write, of at most `max` bytes.
pub(crate) fn read_private_file(path: &Path, max: u64) -> Result<String, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !m.is_file() {
        return Err("is not a file".into());
    }
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("has mode {mode:04o}: its group and others may not read or write it (chmod 0600)"));
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != 0 && m.uid() != me {
        return Err(format!("belongs to uid {}: it must belong to root", m.uid()));
    }
    if m.len() > max {
        return Err(format!("is larger than {max} bytes: it should hold one secret"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// For the sections' unit tests: lab.toml with one switch `poe1` and
/// `extra` after it, one board `b1` of class `c` on it, loaded;
/// errors as `LINE: MESSAGE`.
#[cfg(test)]
pub(crate) mod test_lab {
    use std::path::Path;

    use super::Config;

    const LAB: &str = "[switches.poe1]\nhost = \"192.0.2.10:161\"\n";
    const BOARD: &str = "name = \"b1\"\nclass = \"c\"\npower = { switch = \"poe1\", port = 1 }\n";

    pub fn load(extra: &str) -> Result<Config, Vec<String>> {
        let lab = format!("{LAB}{extra}");
        Config::from_texts(Path::new("/x"), &lab, &[("/x/boards.d/b1.toml".into(), BOARD.into())], Vec::new())
            .map_err(|e| e.0.iter().map(|e| format!("{}: {}", e.line, e.message)).collect())
    }
}
