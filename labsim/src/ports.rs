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

    /// Sets a port's admin state (`ON` or `OFF`), atomically.
    pub fn set(&self, group: u32, port: u32, value: i64) -> Result<()> {
        let text = if value == ON { "1\n" } else { "2\n" };
        write_atomic(&self.path(group, port), text.as_bytes())
    }
}
