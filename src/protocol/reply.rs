//! What requests get: the registry answers with these types and the
//! socket front end writes them as JSON (`{"id", "ok", "result"}`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::BoardView;

/// A successful request's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Classes(Vec<ClassView>),
    Claim(Box<ClaimView>),
    Board(BoardView),
    Released(Released),
    Log(LogView),
    Whoami(WhoamiView),
    Queue(Vec<QueuePlace>),
    Dump(Box<Dump>),
    Panicked(Panicked),
    History(Vec<EventView>),
    Selftest(super::SelftestReport),
    Health(super::HealthReport),
    Sd(Box<super::SdView>),
}

/// A class and its counts (`classes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassView {
    pub class: String,
    pub total: usize,
    pub available: usize,
    /// Claims waiting for a board of the class (`claim --wait`), in the
    /// whole lab.
    #[serde(default)]
    pub waiting: usize,
}

/// One of the caller's waiting claims (`queue`): its place in its class's
/// queue (1: next), of how many waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePlace {
    pub class: String,
    pub place: usize,
    pub waiting: usize,
}

/// A claim as its claimant sees it (`claim`, `renew`, `reinit`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimView {
    #[serde(flatten)]
    pub board: BoardView,
    pub handle: String,
    /// The claim's jail, when jails are on and it is up.
    pub jail: Option<JailInfo>,
}

/// A released claim (`release`, `force_release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    pub board: String,
    pub released: bool,
    pub user: String,
    /// The power state the board was left in (`unknown` if the switch
    /// did not answer).
    pub power: super::PowerState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A claim's console log (`console_log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogView {
    pub board: String,
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhoamiView {
    pub user: String,
    pub uid: u32,
    pub admin: bool,
}

/// `known_hosts` (answered by the socket front end from labd's
/// configuration): what a user adds to `~/.ssh/known_hosts` to trust every
/// jail of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownHostsView {
    /// `@cert-authority *.jail.boardlab ssh-ed25519 AAAA... boardlab-host-ca`.
    pub known_hosts: String,
}

/// `debug_panic` (test builds): the board actor panicked as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Panicked {
    pub panicked: bool,
}

/// The operators' status dump.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dump {
    pub daemon: DaemonView,
    pub boards: Vec<DumpBoard>,
    /// Waiting claims per class.
    pub waiters: BTreeMap<String, usize>,
    /// The latest events, newest first.
    pub events: Vec<EventView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonView {
    pub config: String,
    pub uptime_s: u64,
    pub boards: usize,
    pub claims: usize,
    pub restarts: u64,
}

/// A board in the dump: what users see and where it is wired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DumpBoard {
    #[serde(flatten)]
    pub view: BoardView,
    pub switch: String,
    pub group: u32,
    pub port: u32,
    pub maintenance: bool,
    pub restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_detail: Option<ConsoleStatus>,
    /// The board's microSD card, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sd: Option<super::SdView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventView {
    pub at: String,
    pub kind: String,
    pub board: Option<String>,
    /// Who did it (`labd` for what labd did by itself).
    pub user: Option<String>,
    /// Whose claim it was about, when that is someone else (a
    /// force-release: the claimant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub detail: Option<String>,
}

/// What the claimant is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailInfo {
    pub ip: Ipv4Addr,
    /// Ready to run: `ssh root@10.240.0.6`; with the lab's host CA
    /// `ssh -o HostKeyAlias=<host_name> root@10.240.0.6`.
    pub ssh: String,
    /// The line to trust the jail by: its `host_key`, or with the lab's
    /// host CA the CA's `@cert-authority *.jail.boardlab ssh-ed25519 AAAA...`.
    pub known_hosts: String,
    /// The jail's IPv6 address, `::1` of the claim's /64 (a lab with an
    /// `ipv6_pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// The claim's /64, advertised on the board link (SLAAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board_prefix: Option<ipnet::Ipv6Net>,
    /// The claim's name, `<16 hex>.jail.boardlab`: the one principal of the
    /// jail's host certificate (see `crate::sshca`). Empty in records of
    /// an older labd.
    #[serde(default)]
    pub host_name: String,
    /// The jail's own host key line, `10.240.0.6 ssh-ed25519 AAAA...`.
    #[serde(default)]
    pub host_key: String,
}

/// The state of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleState {
    /// Open and being read.
    Attached,
    /// Not present (unplugged, no match, console stopped); waiting for it.
    Missing,
    /// Present but unusable (open failed, ambiguous match); retried.
    Error,
}

impl ConsoleState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleState::Attached => "attached",
            ConsoleState::Missing => "missing",
            ConsoleState::Error => "error",
        }
    }
}

/// For `status` and `dump`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleStatus {
    pub state: ConsoleState,
    /// The open device, symlinks resolved (`/dev/pts/3`, `/dev/ttyUSB0`).
    pub device: Option<String>,
    /// RFC 3339 time of the last state change.
    pub since: String,
    /// Why the console is missing or in error.
    pub message: Option<String>,
    /// Whether a client holds the writer slot.
    pub writer: bool,
    /// Attached sessions.
    pub readers: usize,
}

impl ConsoleStatus {
    pub fn state(&self) -> &'static str {
        self.state.as_str()
    }
}
