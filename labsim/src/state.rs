//! `DIR/labsim.json`: everything a lab is made of, written before each piece
//! is created, so that `down` removes exactly what `up` made, also after an
//! `up` that failed half-way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{write_atomic, Result, SimError};

/// File name of the state record inside the lab directory.
pub const STATE_FILE: &str = "labsim.json";

/// The whole lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// Absolute lab directory.
    pub dir: PathBuf,
    /// Whether `up` created `dir` (then `down` removes it entirely).
    pub created_dir: bool,
    /// Four hex digits that keep this lab's netns and interface names apart
    /// from other labs on the same host.
    pub lab_id: String,
    /// The labsim binary snmpd runs for pass_persist.
    pub exe: PathBuf,
    /// UDP port of the lab's snmpd on 127.0.0.1.
    pub snmp_port: u16,
    /// PID of the running snmpd, if any.
    pub snmpd_pid: Option<i32>,
    /// Whether boards have network namespaces (`--no-net` clears it).
    pub net: bool,
    /// Whether boards have serial consoles (`--no-console` clears it).
    pub console: bool,
    /// Whether boards have simulated microSD cards (`--sd`).
    #[serde(default)]
    pub sd: bool,
    /// One entry per board, in port order.
    pub boards: Vec<BoardState>,
    /// `--host` and `--etcd`: this lab is one host of a lab on etcd.
    #[serde(default)]
    pub cluster: Option<SimCluster>,
    /// `--snmpv3`: the switch takes writes over SNMPv3 only.
    #[serde(default)]
    pub snmpv3: bool,
}

/// One host of a lab whose claims are kept in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCluster {
    /// labd's `cluster.host`, and the first part of every board's name.
    pub host: String,
    /// etcd's client URLs.
    pub etcd: Vec<String>,
    /// Where the lab's CA is kept (made when missing): the same for every
    /// host of one lab. Default: the lab directory's `peer-ca`.
    #[serde(default)]
    pub ca_dir: Option<PathBuf>,
    /// The TCP port of labd's peer channel on 127.0.0.1 (chosen by `up`).
    #[serde(default)]
    pub peer_port: u16,
}

/// One simulated board.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoardState {
    /// `<class>-<k>`.
    pub name: String,
    pub class: String,
    /// Switch port (group 1); also the board's 1-based index in the lab.
    pub port: u32,
    /// Network namespace (`bl<id>-<port>`), when the lab has networking.
    pub netns: Option<String>,
    /// Host end of the veth pair (`bl<id>h<port>`).
    pub host_if: Option<String>,
    /// MAC address of the board's `eth0`, fixed so DHCP servers can reserve.
    pub mac: Option<String>,
    /// PID of the board process, once started.
    pub pid: Option<i32>,
}

impl LabState {
    /// Path of the state file for a lab directory.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Loads the state of the lab in `dir`; `Ok(None)` when there is no lab.
    pub fn load(dir: &Path) -> Result<Option<LabState>> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SimError::io("reading", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SimError::Refused(format!("{} is not a labsim state file: {e}", path.display())))
    }

    /// Like [`LabState::load`], but a missing lab is an error.
    pub fn load_existing(dir: &Path) -> Result<LabState> {
        Self::load(dir)?.ok_or_else(|| {
            SimError::Refused(format!("no lab in {} (no {STATE_FILE}; run `labsim up` first)", dir.display()))
        })
    }

    /// Writes the state atomically.
    pub fn save(&self) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| SimError::Refused(format!("encoding lab state: {e}")))?;
        write_atomic(&Self::path(&self.dir), text.as_bytes())
    }

    /// A board by name.
    pub fn board(&self, name: &str) -> Result<&BoardState> {
        self.boards
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| SimError::Refused(format!("unknown board {name:?} in lab {}", self.dir.display())))
    }

    /// Where a board's serial symlink lives.
    pub fn tty_link(&self, board: &str) -> PathBuf {
        self.dir.join("tty").join(board)
    }

    /// Marker a board process creates once its console and link are ready.
    pub fn ready_file(&self, board: &str) -> PathBuf {
        self.dir.join("run").join(format!("{board}.ready"))
    }
}
