//! labsim: a whole board lab on one machine, with no hardware.
//!
//! The pieces are real wherever that is cheap, so that `labd` is tested
//! against the same behaviour it meets in a rack:
//!
//! * the PoE switch is a real net-snmp `snmpd` ([`snmpd`]) whose port table is
//!   served by `labsim pass-persist` ([`pass_persist`]) from small files in
//!   `DIR/switch/` ([`ports`]), so port state survives agent restarts;
//! * each serial adapter is a pseudo-terminal pair ([`pty`]) owned by a board
//!   process ([`board`]) and reachable through the symlink `DIR/tty/<board>`;
//! * each board's network link is a veth pair into its own network namespace
//!   ([`net`]), on which the board does real DHCP ([`dhcp`]) and TFTP
//!   ([`tftp`]) when it powers on.
//!
//! [`lab`] builds and removes the whole thing and records what it created in
//! `DIR/labsim.json` ([`state`]), so `down` removes exactly that and nothing
//! else, even after a partial `up`.
//!
//! Layout of a lab directory:
//!
//! ```text
//! DIR/labsim.json            what up created (PIDs, names, port) — read by every subcommand
//! DIR/lab.toml, boards.d/    configuration for labd (loads with config::Config::load)
//! DIR/snmpd.conf, snmpd.pid  the switch agent
//! DIR/snmp-persist/          SNMP_PERSISTENT_DIR of that snmpd
//! DIR/switch/port.1.<i>      port admin state, `1` on / `2` off
//! DIR/tty/<board>            symlink to the board's /dev/pts/N (absent while unplugged)
//! DIR/run/<board>.ready      board process is up (console plugged, link up)
//! DIR/logs/                  snmpd.log, snmpd.stdio.log, board-<board>.log
//! ```
//!
//! Cost: one process per board (about 6 MB RSS each in a debug build, most of
//! it shared), each reading its port file every 25 ms, plus one pty and one
//! netns/veth pair. 100 boards come up in about half a second; `--no-console`
//! and `--no-net` drop the pty and the namespace, and with both there are no
//! board processes at all (only the switch).

pub mod board;
pub mod cli;
pub mod dhcp;
pub mod lab;
pub mod net;
pub mod pass_persist;
pub mod peer_certs;
pub mod ports;
pub mod proc;
pub mod pty;
pub mod sdcard;
pub mod slaac;
pub mod snmpd;
pub mod state;
pub mod tftp;

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in labsim. Variants name the operation and
/// carry the path or program, so a message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file system operation on a path failed.
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    /// An external program could not be run or reported failure.
    #[error("{program}: {detail}")]
    Command { program: String, detail: String },
    /// A socket or kernel operation that is not about a path.
    #[error("{what}: {source}")]
    Sys { what: String, source: io::Error },
    /// The request cannot be carried out as asked (wrong arguments, lab state).
    #[error("{0}")]
    Refused(String),
}

impl SimError {
    /// Shorthand for `map_err` on file operations.
    pub fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SimError {
        let path = path.to_path_buf();
        move |source| SimError::Io { what, path, source }
    }

    /// Shorthand for `map_err` on non-path system calls.
    pub fn sys(what: impl Into<String>) -> impl FnOnce(io::Error) -> SimError {
        let what = what.into();
        move |source| SimError::Sys { what, source }
    }
}

impl From<nix::Error> for SimError {
    fn from(e: nix::Error) -> Self {
        SimError::Sys { what: "system call".into(), source: io::Error::from(e) }
    }
}

/// Result alias for labsim.
pub type Result<T> = std::result::Result<T, SimError>;

/// The POE-MIB column labsim serves: `pethPsePortAdminEnable`
/// (`1.3.6.1.2.1.105.1.1.1.3`), indexed by `<group>.<port>`.
pub const ADMIN_ENABLE_OID: [u32; 11] = [1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 3];

/// `pethPsePortEntry`: the table's rows, whose columns labsim serves
/// `AdminEnable` (3) and `DetectionStatus` (6) of.
pub const PORT_ENTRY_OID: [u32; 10] = [1, 3, 6, 1, 2, 1, 105, 1, 1, 1];

/// The `pethPsePortDetectionStatus` column: `disabled` (1) while off,
/// `deliveringPower` (3) while on and the board draws power, `searching`
/// (2) while on and nothing draws (its splitter dead, its process gone).
pub const DETECTION_OID: [u32; 11] = [1, 3, 6, 1, 2, 1, 105, 1, 1, 1, 6];

/// labsim models one PoE group, as most real switches have.
pub const GROUP: u32 = 1;

/// Writes `contents` to `path` atomically: readers (the board processes, a
/// restarted pass-persist helper) see the old or the new file, never half.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(SimError::io("creating", &tmp))?;
    f.write_all(contents).map_err(SimError::io("writing", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(SimError::io("renaming into place", path))
}
