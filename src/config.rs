//! Configuration: `DIR/lab.toml` and `DIR/boards.d/*.toml`.
//!
//! Loading is two steps, as in cloud-hypervisor: serde structs with explicit
//! defaults (unknown keys are errors), then a `validate` pass that checks what
//! serde cannot (names, ranges, references between files). Every problem is
//! reported with its file and line, and all problems are collected, so that
//! `labd check` tells an operator everything to fix in one run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::jail::{Ipv4Net, JailSettings, Uplink};
use crate::util::{parse_duration, valid_name};

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
    daemon: RawDaemon,
    #[serde(default)]
    lease: RawLease,
    #[serde(default)]
    power: RawPower,
    #[serde(default)]
    console: RawConsoleLogs,
    #[serde(default)]
    switches: BTreeMap<String, Spanned<RawSwitch>>,
    #[serde(default)]
    jail: RawJail,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJail {
    root_dir: Option<Spanned<String>>,
    pool: Option<Spanned<String>>,
    board_net: Option<Spanned<String>>,
    nat_interface: Option<Spanned<String>>,
    uplink: Option<Spanned<String>>,
    macvlan_parent: Option<Spanned<String>>,
    uid_base: Option<Spanned<i64>>,
    keep_host_key: Option<bool>,
    keys_dir: Option<Spanned<String>>,
    ssh_port: Option<Spanned<i64>>,
    nfsroot_size: Option<Spanned<String>>,
    data_size: Option<Spanned<String>>,
    #[serde(default)]
    deny_out: Vec<Spanned<String>>,
    pids_max: Option<Spanned<i64>>,
    memory_max: Option<Spanned<String>>,
    cpu_weight: Option<Spanned<i64>>,
    parallel_builds: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<Spanned<String>>,
    socket_mode: Option<Spanned<String>>,
    socket_group: Option<Spanned<String>>,
    state: Option<Spanned<String>>,
    log_dir: Option<Spanned<String>>,
    #[serde(default)]
    admins: Vec<Spanned<String>>,
    #[serde(default)]
    trusted_gateways: Vec<Spanned<String>>,
    jail: Option<Spanned<String>>,
    connections_per_user: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLease {
    default: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPower {
    cycle_delay: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConsoleLogs {
    log_max_bytes: Option<Spanned<i64>>,
    log_keep: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwitch {
    host: Spanned<String>,
    #[serde(default = "default_community")]
    community: String,
    #[serde(default = "default_version")]
    version: Spanned<String>,
    timeout: Option<Spanned<String>>,
    #[serde(default = "default_retries")]
    retries: Spanned<u32>,
}

fn default_community() -> String {
    "private".into()
}
fn default_version() -> Spanned<String> {
    Spanned::new(0..0, "2c".into())
}
fn default_retries() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    name: Spanned<String>,
    class: Spanned<String>,
    power: Spanned<RawBoardPower>,
    console: Option<Spanned<RawConsole>>,
    network: Option<Spanned<RawNetwork>>,
    #[serde(default)]
    power_on_claim: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoardPower {
    switch: Spanned<String>,
    port: Spanned<i64>,
    #[serde(default = "default_group")]
    group: Spanned<i64>,
}

fn default_group() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    #[serde(rename = "match")]
    match_props: Option<BTreeMap<String, String>>,
    path: Option<String>,
    #[serde(default = "default_baud")]
    baud: u32,
}

fn default_baud() -> u32 {
    115_200
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    vlan: Option<i64>,
    trunk: Option<String>,
    interface: Option<String>,
}

// ---------------------------------------------------------------------------
// Validated form.
// ---------------------------------------------------------------------------

/// How a claim's jail is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailMode {
    /// No jail: claims carry `"jail": null`.
    None,
    /// Linux namespaces jail.
    Linux,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub daemon: Daemon,
    pub lease: Lease,
    pub power: PowerPolicy,
    pub console: ConsoleLogs,
    pub switches: BTreeMap<String, Switch>,
    /// `[jail]`: used when `daemon.jail = "linux"`.
    pub jail: JailConfig,
    /// Boards in a stable order (by name).
    pub boards: Vec<Board>,
}

#[derive(Debug, Clone)]
pub struct Daemon {
    pub socket: PathBuf,
    /// Permission bits of the main socket.
    pub socket_mode: u32,
    /// Group owning the main socket, if any.
    pub socket_group: Option<String>,
    pub state: PathBuf,
    pub log_dir: PathBuf,
    pub admins: HashSet<String>,
    pub trusted_gateways: HashSet<String>,
    pub jail: JailMode,
    /// Connections one user (one uid on the main socket, one jail on its
    /// socket) may hold at once; trusted gateways, which carry many
    /// users, count only towards `max_connections`.
    pub connections_per_user: usize,
    /// Connections labd holds at once, all sockets together.
    pub max_connections: usize,
    /// A connection that sends no request for this long is closed (a
    /// console session or a request being answered is never idle).
    pub idle_timeout: Duration,
}

/// Defaults of the connection limits (see [`Daemon`]).
pub const DEFAULT_CONNECTIONS_PER_USER: usize = 64;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub default: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct PowerPolicy {
    /// Off time during a power cycle.
    pub cycle_delay: Duration,
    /// Ceiling of the back-off between probes of a switch that does not answer.
    pub retry_max: Duration,
}

/// How console output is kept on disk.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleLogs {
    /// Size at which a claim's console log is rotated.
    pub log_max_bytes: u64,
    /// Rotated files kept per claim besides the current one.
    pub log_keep: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnmpVersion {
    V1,
    V2c,
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
}

/// Default location of the configuration.
pub const DEFAULT_DIR: &str = "/etc/boardlab";

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    fn line_of(&self, span: &std::ops::Range<usize>) -> usize {
        if span.start == 0 && span.end == 0 {
            return 0;
        }
        let start = span.start.min(self.text.len());
        self.text[..start].bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn err(&mut self, span: &std::ops::Range<usize>, message: impl Into<String>) {
        let line = self.line_of(span);
        self.errors.push(ConfigError { file: self.file.to_path_buf(), line, message: message.into() });
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
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

fn parse_toml<T: for<'de> Deserialize<'de>>(file: &Path, text: &str, errors: &mut Vec<ConfigError>) -> Option<T> {
    match toml::from_str::<T>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1)
                .unwrap_or(0);
            errors.push(ConfigError { file: file.to_path_buf(), line, message: e.message().trim().to_string() });
            None
        }
    }
}

impl Config {
    /// Loads and validates `dir/lab.toml` and `dir/boards.d/*.toml`.
    pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
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
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&boards_dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().map(|x| x == "toml").unwrap_or(false))
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
        Self::from_texts(dir, &lab_text, &texts, errors)
    }

    /// Validates a configuration given as texts: `lab.toml` and the board
    /// files (path, text) in order. `errors` holds problems found while
    /// reading, reported with the rest. Pure: used by `load` and the fuzzer.
    pub fn from_texts(
        dir: &Path,
        lab_text: &str,
        board_texts: &[(PathBuf, String)],
        mut errors: Vec<ConfigError>,
    ) -> Result<Config, ConfigErrors> {
        let lab_path = dir.join("lab.toml");
        let mut raw_lab: RawLab = parse_toml(&lab_path, lab_text, &mut errors).unwrap_or_default();
        let mut ctx = Ctx { file: &lab_path, text: lab_text, errors: &mut errors };
        let raw_jail = std::mem::take(&mut raw_lab.jail);
        let (daemon, lease, power, console, switches) = validate_lab(&mut ctx, raw_lab);
        let jail = validate_jail(&mut ctx, raw_jail, dir);

        let mut boards: Vec<Board> = Vec::new();
        let mut seen_names: HashMap<String, PathBuf> = HashMap::new();
        let mut seen_ports: HashMap<(String, u32, u32), String> = HashMap::new();
        let mut seen_ifaces: HashMap<String, String> = HashMap::new();
        for (file, text) in board_texts {
            let Some(raw) = parse_toml::<RawBoard>(file, text, &mut errors) else { continue };
            let mut ctx = Ctx { file, text, errors: &mut errors };
            let Some(board) = validate_board(&mut ctx, raw, &switches) else { continue };
            if let Some(other) = seen_names.get(&board.name) {
                let span = 0..0;
                ctx.err(&span, format!("board name {:?} is already used by {}", board.name, other.display()));
                continue;
            }
            let port_key = (board.switch.clone(), board.group, board.port);
            if let Some(other) = seen_ports.get(&port_key) {
                ctx.err(
                    &(0..0),
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
                    ctx.err(&(0..0), format!("network link {key:?} is already used by board {other:?}"));
                    continue;
                }
                seen_ifaces.insert(key, board.name.clone());
            }
            seen_ports.insert(port_key, board.name.clone());
            seen_names.insert(board.name.clone(), file.clone());
            boards.push(board);
        }
        if daemon.jail == JailMode::Linux {
            jail_capacity(&jail, boards.len(), &lab_path, &mut errors);
        }
        if errors.is_empty() {
            boards.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Config { dir: dir.to_path_buf(), daemon, lease, power, console, switches, jail, boards })
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

fn validate_lab(ctx: &mut Ctx<'_>, raw: RawLab) -> (Daemon, Lease, PowerPolicy, ConsoleLogs, BTreeMap<String, Switch>) {
    let d = raw.daemon;
    let path = |v: &Option<Spanned<String>>, def: &str| -> PathBuf {
        v.as_ref().map(|s| PathBuf::from(s.get_ref())).unwrap_or_else(|| PathBuf::from(def))
    };
    let socket = path(&d.socket, "/run/boardlab/labd.sock");
    let state = path(&d.state, "/var/lib/boardlab/state.db");
    let log_dir = path(&d.log_dir, "/var/log/boardlab");
    for (v, key) in [(&d.socket, "socket"), (&d.state, "state"), (&d.log_dir, "log_dir")] {
        if let Some(s) = v {
            if !Path::new(s.get_ref()).is_absolute() {
                ctx.err(&s.span(), format!("daemon.{key} must be an absolute path, not {:?}", s.get_ref()));
            }
        }
    }
    let socket_mode = match &d.socket_mode {
        None => 0o660,
        Some(s) => match u32::from_str_radix(s.get_ref().trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 => m,
            _ => {
                ctx.err(
                    &s.span(),
                    format!("daemon.socket_mode {:?} is not an octal mode such as \"0660\"", s.get_ref()),
                );
                0o660
            }
        },
    };
    let jail = match d.jail.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("none", _)) => JailMode::None,
        Some(("linux", _)) => JailMode::Linux,
        Some((other, span)) => {
            ctx.err(&span, format!("daemon.jail {other:?} is not one of \"none\", \"linux\""));
            JailMode::None
        }
    };
    let names = |list: &[Spanned<String>], key: &str, ctx: &mut Ctx<'_>| -> HashSet<String> {
        let mut out = HashSet::new();
        for n in list {
            if n.get_ref().is_empty() || n.get_ref().contains(|c: char| c.is_whitespace() || c == ':') {
                ctx.err(&n.span(), format!("daemon.{key}: {:?} is not a user name", n.get_ref()));
            } else {
                out.insert(n.get_ref().clone());
            }
        }
        out
    };
    let admins = names(&d.admins, "admins", ctx);
    let trusted_gateways = names(&d.trusted_gateways, "trusted_gateways", ctx);
    let count = |ctx: &mut Ctx<'_>, v: &Option<Spanned<i64>>, key: &str, default: usize, max: usize| match v {
        None => default,
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(x) if (1..=max).contains(&x) => x,
            _ => {
                ctx.err(&n.span(), format!("daemon.{key} ({}) must be between 1 and {max}", n.get_ref()));
                default
            }
        },
    };
    let connections_per_user =
        count(ctx, &d.connections_per_user, "connections_per_user", DEFAULT_CONNECTIONS_PER_USER, 1 << 20);
    let max_connections = count(ctx, &d.max_connections, "max_connections", DEFAULT_MAX_CONNECTIONS, 1 << 20);
    let idle_timeout = ctx.duration(&d.idle_timeout, "daemon.idle_timeout", DEFAULT_IDLE_TIMEOUT);
    let daemon = Daemon {
        socket,
        socket_mode,
        socket_group: d.socket_group.map(|s| s.into_inner()),
        state,
        log_dir,
        admins,
        trusted_gateways,
        jail,
        connections_per_user,
        max_connections,
        idle_timeout,
    };

    let default = ctx.duration(&raw.lease.default, "lease.default", Duration::from_secs(4 * 3600));
    let max = ctx.duration(&raw.lease.max, "lease.max", Duration::from_secs(86400));
    if default > max {
        let span = raw.lease.default.as_ref().map(|s| s.span()).unwrap_or(0..0);
        ctx.err(
            &span,
            format!(
                "lease.default ({}) is longer than lease.max ({})",
                crate::util::format_duration(default),
                crate::util::format_duration(max)
            ),
        );
    }
    let power = PowerPolicy {
        cycle_delay: ctx.duration(&raw.power.cycle_delay, "power.cycle_delay", Duration::from_secs(2)),
        retry_max: ctx.duration(&raw.power.retry_max, "power.retry_max", Duration::from_secs(60)),
    };

    let log_max_bytes = match &raw.console.log_max_bytes {
        None => 4 << 20,
        Some(v) => match u64::try_from(*v.get_ref()) {
            Ok(n) if n >= 4096 => n,
            _ => {
                ctx.err(&v.span(), format!("console.log_max_bytes ({}) must be at least 4096", v.get_ref()));
                4 << 20
            }
        },
    };
    let log_keep = match &raw.console.log_keep {
        None => 2,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if n <= 100 => n,
            _ => {
                ctx.err(&v.span(), format!("console.log_keep ({}) must be between 0 and 100", v.get_ref()));
                2
            }
        },
    };
    let console = ConsoleLogs { log_max_bytes, log_keep };

    let mut switches = BTreeMap::new();
    for (name, sw) in raw.switches {
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
        let version = match sw.version.get_ref().as_str() {
            "1" => SnmpVersion::V1,
            "2c" => SnmpVersion::V2c,
            other => {
                ctx.err(&sw.version.span(), format!("switches.{name}.version {other:?} is not \"1\" or \"2c\""));
                SnmpVersion::V2c
            }
        };
        let timeout = ctx.duration(&sw.timeout, &format!("switches.{name}.timeout"), Duration::from_secs(2));
        if *sw.retries.get_ref() > 10 {
            ctx.err(&sw.retries.span(), format!("switches.{name}.retries ({}) is more than 10", sw.retries.get_ref()));
        }
        switches.insert(
            name.clone(),
            Switch { name, host, community: sw.community, version, timeout, retries: *sw.retries.get_ref() },
        );
    }
    (daemon, Lease { default, max }, power, console, switches)
}

fn validate_jail(ctx: &mut Ctx<'_>, raw: RawJail, dir: &Path) -> JailConfig {
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
    let dl = crate::jail::cgroup::Limits::default();
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
            limits: crate::jail::cgroup::Limits { pids_max, memory_max, cpu_weight },
            cgroups: d.cgroups,
        },
        keep_host_key: raw.keep_host_key.unwrap_or(false),
        keys_dir,
    }
}

/// Least `[jail] memory_max`: sshd, dnsmasq and ganesha must fit.
const MIN_MEMORY_MAX: u64 = 64 << 20;

/// Bounds of `[jail] nfsroot_size` and `data_size` (ext4 wants some
/// room; 16T is ext4's limit with 4k blocks).
const MIN_IMAGE_SIZE: u64 = 64 << 20;
const MAX_IMAGE_SIZE: u64 = 16 << 40;

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

/// Whether the pools and the uid range have room for every board.
fn jail_capacity(j: &JailConfig, boards: usize, file: &Path, errors: &mut Vec<ConfigError>) {
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

fn validate_board(ctx: &mut Ctx<'_>, raw: RawBoard, switches: &BTreeMap<String, Switch>) -> Option<Board> {
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
    if !switches.contains_key(&switch) {
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
        Console { source, baud: c.baud }
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
    })
}

/// Linux interface names: 1 to 15 bytes, no '/', whitespace or ':'.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
[daemon]
socket = "/run/boardlab/labd.sock"
state = "/var/lib/boardlab/state.db"
admins = ["alice"]
jail = "none"

[lease]
default = "4h"
max = "1d"

[switches.poe1]
host = "192.0.2.10:161"
community = "private"
timeout = "1s"
retries = 1
"#;

    const BOARD: &str = r#"name  = "rockpro64-1"
class = "rockpro64"
power   = { switch = "poe1", port = 5 }
console = { match = { ID_SERIAL_SHORT = "A10K1234" }, baud = 1500000 }
network = { vlan = 101, trunk = "eth1" }
power_on_claim = true
"#;

    fn dir_with(lab: &str, boards: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("lab.toml"), lab).unwrap();
        std::fs::create_dir(d.path().join("boards.d")).unwrap();
        for (n, t) in boards {
            std::fs::write(d.path().join("boards.d").join(n), t).unwrap();
        }
        d
    }

    fn errs(lab: &str, boards: &[(&str, &str)]) -> Vec<String> {
        let d = dir_with(lab, boards);
        match Config::load(d.path()) {
            Ok(_) => vec![],
            Err(e) => {
                e.0.iter()
                    .map(|e| format!("{}:{}: {}", e.file.file_name().unwrap().to_string_lossy(), e.line, e.message))
                    .collect()
            }
        }
    }

    #[test]
    fn good_config_loads() {
        let d = dir_with(LAB, &[("a.toml", BOARD)]);
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.boards.len(), 1);
        let b = &c.boards[0];
        assert_eq!(b.port, 5);
        assert_eq!(b.group, 1);
        assert!(b.power_on_claim);
        assert_eq!(b.network, Some(Network::Vlan { vlan: 101, trunk: "eth1".into() }));
        assert_eq!(c.lease.max, Duration::from_secs(86400));
        assert!(c.daemon.admins.contains("alice"));
        assert_eq!(c.daemon.connections_per_user, DEFAULT_CONNECTIONS_PER_USER);
        assert_eq!(c.daemon.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(c.daemon.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    }

    #[test]
    fn connection_limits() {
        let lab = LAB.replacen(
            "[daemon]\n",
            "[daemon]\nconnections_per_user = 8\nmax_connections = 100\nidle_timeout = \"30s\"\n",
            1,
        );
        let c = Config::load(dir_with(&lab, &[("a.toml", BOARD)]).path()).unwrap();
        assert_eq!((c.daemon.connections_per_user, c.daemon.max_connections), (8, 100));
        assert_eq!(c.daemon.idle_timeout, Duration::from_secs(30));
        let lab = LAB.replacen("[daemon]\n", "[daemon]\nconnections_per_user = 0\n", 1);
        let e = errs(&lab, &[("a.toml", BOARD)]);
        assert_eq!(e, vec!["lab.toml:3: daemon.connections_per_user (0) must be between 1 and 1048576".to_string()]);
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let bad = BOARD.replace("power_on_claim = true", "power_on_claim = true\ncolour = \"red\"");
        let e = errs(LAB, &[("a.toml", &bad)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("a.toml:7: unknown field `colour`"), "{e:?}");
    }

    #[test]
    fn unknown_switch_names_the_line_and_known_switches() {
        let bad = BOARD.replace("switch = \"poe1\"", "switch = \"poe9\"");
        let e = errs(LAB, &[("a.toml", &bad)]);
        assert_eq!(e, vec!["a.toml:3: power.switch \"poe9\" is not a switch in lab.toml (known: poe1)".to_string()]);
    }

    #[test]
    fn every_error_is_reported() {
        let bad1 = BOARD.replace("port = 5", "port = 0");
        let bad2 = BOARD.replace("rockpro64-1", "rock pro").replace("vlan = 101", "vlan = 5000");
        let lab = LAB.replace("max = \"1d\"", "max = \"1h\"");
        let e = errs(&lab, &[("a.toml", &bad1), ("b.toml", &bad2)]);
        assert!(e.contains(&"lab.toml:9: lease.default (4h) is longer than lease.max (1h)".to_string()), "{e:?}");
        assert!(e.contains(&"a.toml:3: power.port (0) must be a positive port number".to_string()), "{e:?}");
        assert!(e.iter().any(|l| l.starts_with("b.toml:1: board name \"rock pro\"")), "{e:?}");
        assert!(e.contains(&"b.toml:5: network.vlan (5000) must be between 1 and 4094".to_string()), "{e:?}");
    }

    #[test]
    fn duplicate_names_and_ports_are_refused() {
        let other = BOARD.replace("vlan = 101", "vlan = 102");
        let e = errs(LAB, &[("a.toml", BOARD), ("b.toml", &other)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("already used by"), "{e:?}");
        let other = BOARD.replace("rockpro64-1", "rockpro64-2").replace("vlan = 101", "vlan = 102");
        let e = errs(LAB, &[("a.toml", BOARD), ("b.toml", &other)]);
        assert_eq!(
            e,
            vec!["b.toml:0: switch \"poe1\" group 1 port 5 is already the power port of board \"rockpro64-1\""
                .to_string()]
        );
    }

    #[test]
    fn jail_section_defaults_and_values() {
        let d = dir_with(LAB, &[("a.toml", BOARD)]);
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.jail.settings.pool.to_string(), "10.240.0.0/16");
        assert_eq!(c.jail.keys_dir, d.path().join("keys.d"));
        assert_eq!(c.jail.settings.uplink, Uplink::Routed);
        let lab = format!(
            "{LAB}\n[jail]\nroot_dir = \"/srv/jails\"\npool = \"10.9.0.0/24\"\nuplink = \"macvlan\"\nmacvlan_parent = \"eth0\"\nuid_base = 500000\nkeep_host_key = true\nnat_interface = \"wan0\"\n"
        );
        let d = dir_with(&lab, &[("a.toml", BOARD)]);
        let c = Config::load(d.path()).unwrap();
        assert_eq!(c.jail.settings.uplink, Uplink::Macvlan { parent: "eth0".into() });
        assert_eq!(c.jail.settings.uid_base, 500_000);
        assert!(c.jail.keep_host_key);
        let s = c.jail.settings.clone();
        assert_eq!(s.root_dir, PathBuf::from("/srv/jails"));
        assert_eq!(s.nat_interface.as_deref(), Some("wan0"));
        assert_eq!(s.nfsroot_size, 8 << 30);
        assert_eq!(s.data_size, 4 << 30);
        assert_eq!(s.limits, crate::jail::cgroup::Limits::default());
        assert!(s.deny_out.is_empty());
        let d = dir_with(
            &format!(
                "{LAB}\n[jail]\nnfsroot_size = \"512M\"\ndata_size = \"1G\"\npids_max = 300\nmemory_max = \"2G\"\ncpu_weight = 20\ndeny_out = [\"192.168.0.0/16\", \"fd00::/8\"]\n"
            ),
            &[("a.toml", BOARD)],
        );
        let s = Config::load(d.path()).unwrap().jail.settings;
        assert_eq!((s.nfsroot_size, s.data_size), (512 << 20, 1 << 30));
        assert_eq!(s.limits, crate::jail::cgroup::Limits { pids_max: 300, memory_max: 2 << 30, cpu_weight: 20 });
        let d = dir_with(&format!("{LAB}\n[jail]\nparallel_builds = 8\n"), &[("a.toml", BOARD)]);
        assert_eq!(Config::load(d.path()).unwrap().jail.parallel_builds, 8);
        let e = errs(&format!("{LAB}\n[jail]\nparallel_builds = 0\n"), &[("a.toml", BOARD)]);
        assert_eq!(e, vec!["lab.toml:19: jail.parallel_builds (0) must be between 1 and 256".to_string()]);
        assert_eq!(s.deny_out, vec!["192.168.0.0/16".parse().unwrap(), "fd00::/8".parse::<ipnet::IpNet>().unwrap()]);
    }

    #[test]
    fn jail_section_errors_name_the_line() {
        let with = |extra: &str| errs(&format!("{LAB}\n[jail]\n{extra}\n"), &[]);
        // "[jail]" is line 18 of LAB + jail, the first key line 19.
        assert_eq!(with("colour = 1"), vec!["lab.toml:19: unknown field `colour`, expected one of `root_dir`, `pool`, `board_net`, `nat_interface`, `uplink`, `macvlan_parent`, `uid_base`, `keep_host_key`, `keys_dir`, `ssh_port`, `nfsroot_size`, `data_size`, `deny_out`, `pids_max`, `memory_max`, `cpu_weight`, `parallel_builds`".to_string()]);
        assert_eq!(
            with("deny_out = [\"192.168.0.0/16\", \"10.0.0.1/8\", \"mgmt\"]"),
            vec![
                "lab.toml:19: jail.deny_out \"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)"
                    .to_string(),
                "lab.toml:19: jail.deny_out \"mgmt\" is not an IPv4 or IPv6 prefix such as \"192.168.0.0/16\""
                    .to_string()
            ]
        );
        assert_eq!(
            with("pids_max = 5\nmemory_max = \"1M\"\ncpu_weight = 0\ndata_size = \"lots\""),
            vec![
                "lab.toml:22: jail.data_size \"lots\" is not a size such as \"8G\" (a whole number with K, M, G or T)"
                    .to_string(),
                "lab.toml:19: jail.pids_max (5) must be between 16 and 4194304".to_string(),
                "lab.toml:20: jail.memory_max (1M) must be at least 64M".to_string(),
                "lab.toml:21: jail.cpu_weight (0) must be between 1 and 10000 (100: a normal process's share)"
                    .to_string(),
            ]
        );
        assert_eq!(
            with("pool = \"10.240.0.1/16\""),
            vec!["lab.toml:19: jail.pool: \"10.240.0.1/16\" has host bits set (did you mean \"10.240.0.0/16\"?)"
                .to_string()]
        );
        assert_eq!(
            with("uplink = \"bridge\""),
            vec!["lab.toml:19: jail.uplink \"bridge\" is not one of \"routed\", \"macvlan\"".to_string()]
        );
        assert_eq!(
            with("uplink = \"macvlan\""),
            vec!["lab.toml:19: jail.uplink = \"macvlan\" needs jail.macvlan_parent".to_string()]
        );
        assert_eq!(with("uid_base = 1000"), vec!["lab.toml:19: jail.uid_base (1000) must be between 65536 and 4294967295 (jail ids must not overlap the host's users)".to_string()]);
        assert_eq!(
            with("root_dir = \"jails\""),
            vec!["lab.toml:19: jail.root_dir must be an absolute path, not \"jails\"".to_string()]
        );
        assert_eq!(
            with("board_net = \"10.240.0.0/12\""),
            vec!["lab.toml:19: jail.pool (10.240.0.0/16) overlaps jail.board_net (10.240.0.0/12)".to_string()]
        );
        assert_eq!(
            with("nat_interface = \"eth0;x\""),
            vec!["lab.toml:19: jail.nat_interface \"eth0;x\" is not an interface name".to_string()]
        );
        assert_eq!(with("nfsroot_size = \"8 GB\""), vec!["lab.toml:19: jail.nfsroot_size \"8 GB\" is not a size such as \"8G\" (a whole number with K, M, G or T)".to_string()]);
        assert_eq!(
            with("nfsroot_size = \"1M\""),
            vec!["lab.toml:19: jail.nfsroot_size (1M) must be between 64M and 16T".to_string()]
        );
        assert_eq!(
            with("nfsroot_size = 8"),
            vec!["lab.toml:19: invalid type: integer `8`, expected a string".to_string()]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "G", "1.5G", "-1G", "8GB", "8 G", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn jail_capacity_is_checked_when_jails_are_on() {
        let lab = LAB.replace("jail = \"none\"", "jail = \"linux\"") + "\n[jail]\npool = \"10.9.0.0/30\"\n";
        let other = BOARD
            .replace("rockpro64-1", "rockpro64-2")
            .replace("vlan = 101", "vlan = 102")
            .replace("port = 5", "port = 6");
        let e = errs(&lab, &[("a.toml", BOARD), ("b.toml", &other)]);
        assert_eq!(e, vec!["lab.toml:0: jail.pool (10.9.0.0/30) has room for 1 jails, not 2 boards".to_string()]);
    }

    #[test]
    fn bad_durations_and_syntax() {
        let lab = LAB.replace("timeout = \"1s\"", "timeout = \"1 sec\"");
        let e = errs(&lab, &[]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("lab.toml:15: switches.poe1.timeout:"), "{e:?}");
        let e = errs("[daemon\n", &[]);
        assert!(e[0].starts_with("lab.toml:1:"), "{e:?}");
    }
}
