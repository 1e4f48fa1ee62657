//! The switch's port table, kept in files: `DIR/switch/port.<group>.<port>`
//! holds `1` (on) or `2` (off).
//!
//! Files rather than memory because three kinds of process share the table:
//! the pass-persist helper (restarted whenever snmpd restarts; a real switch
//! keeps port state across an agent restart), the board processes (which
//! watch their port) and `labsim up` (which creates it all off).

use std::path::{Path, PathBuf};

use super::{write_atomic, Result};

/// `pethPsePortAdminEnable` value for a powered port.
pub const ON: i64 = 1;
/// `pethPsePortAdminEnable` value for an unpowered port.
pub const OFF: i64 = 2;

/// The port files of one lab.
#[derive(Debug, Clone)]
pub struct PortStore {
    /// `DIR/switch`.
    dir: PathBuf,
}

impl PortStore {
    /// The store of the lab in `lab_dir`.
    pub fn new(lab_dir: &Path) -> Self {
        PortStore { dir: lab_dir.join("switch") }
    }

    /// Path of one port's file.
    pub fn path(&self, group: u32, port: u32) -> PathBuf {
        self.dir.join(format!("port.{group}.{port}"))
    }

    /// A port's admin state. A missing or unreadable file reads as off: a
    /// switch that lost its state comes up with ports unpowered, the safe side.
    pub fn get(&self, group: u32, port: u32) -> i64 {
        match std::fs::read_to_string(self.path(group, port)) {
            Ok(s) if s.trim() == "1" => ON,
            _ => OFF,
        }
    }

    /// Whether the board on a port draws power now (it is on, and its
    /// splitter works): `DIR/switch/draw.<group>.<port>`, kept by the board.
    pub fn draws(&self, group: u32, port: u32) -> bool {
        std::fs::read_to_string(self.dir.join(format!("draw.{group}.{port}"))).is_ok_and(|s| s.trim() == "1")
    }

    /// The board says whether it draws power.
    pub fn set_draws(&self, group: u32, port: u32, yes: bool) -> Result<()> {
        write_atomic(&self.dir.join(format!("draw.{group}.{port}")), if yes { b"1\n" } else { b"0\n" })
    }

    /// Whether the board's PoE splitter is dead (`DIR/switch/splitter.<group>.<port>`
    /// holds `dead`): the port may be on, no power reaches the board.
    pub fn splitter_dead(&self, group: u32, port: u32) -> bool {
        std::fs::read_to_string(self.dir.join(format!("splitter.{group}.{port}"))).is_ok_and(|s| s.trim() == "dead")
    }

    /// Sets a port's admin state (`ON` or `OFF`), atomically.
    pub fn set(&self, group: u32, port: u32, value: i64) -> Result<()> {
        let text = if value == ON { "1\n" } else { "2\n" };
        write_atomic(&self.path(group, port), text.as_bytes())
    }
}
