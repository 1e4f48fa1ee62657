//! labsim's mux: the card is an image file, and the mux's position is a
//! small control file the simulated board reads at power-on (`off`,
//! `host` or `board`). On the host side the image is attached to a loop
//! device, the card reader a USB-SD-Mux would show; leaving the host side
//! flushes and detaches it. The loop device is only ever labd's: a
//! process that still holds it open (a jail's `dd` left running) keeps
//! the card on the host side, as a card in use would, and the switch is
//! refused, naming the processes.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Mux, Side, StorageError};

pub struct SimMux {
    board: String,
    image: PathBuf,
    control: PathBuf,
    /// The loop device while the card is on the host side.
    attached: Option<PathBuf>,
}

impl SimMux {
    pub fn new(board: &str, image: PathBuf, control: PathBuf) -> SimMux {
        SimMux { board: board.to_string(), image, control, attached: None }
    }

    fn write_control(&self, side: Side) -> Result<(), StorageError> {
        let tmp = self.control.with_extension("new");
        let res = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(format!("{}\n", side.as_str()).as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &self.control));
        res.map_err(|e| StorageError::device(&format!("writing the sim mux {}", self.control.display()), e))
    }

    /// The loop devices backed by the card's image (attached by us, or
    /// by a labd that died).
    fn loops(&self) -> Vec<PathBuf> {
        let Ok(o) = Command::new("losetup").arg("-n").arg("-O").arg("NAME").arg("-j").arg(&self.image).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| PathBuf::from(l.trim()))
            .filter(|p| p.is_absolute())
            .collect()
    }

    fn attach(&mut self) -> Result<PathBuf, StorageError> {
        if let Some(dev) = self.attached.clone().filter(|d| self.loops().contains(d)) {
            return Ok(dev);
        }
        let meta = std::fs::metadata(&self.image)
            .map_err(|e| StorageError::Missing(format!("the sim card {}: {e}", self.image.display())))?;
        if !meta.is_file() {
            return Err(StorageError::Missing(format!("the sim card {} is not a file", self.image.display())));
        }
        let o = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&self.image)
            .output()
            .map_err(|e| StorageError::device("running losetup", e))?;
        if !o.status.success() {
            return Err(StorageError::Device(format!(
                "attaching the sim card {} to a loop device: {}",
                self.image.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        let dev = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        self.attached = Some(dev.clone());
        Ok(dev)
    }

    /// Flushes and detaches every loop device of the image; refused while
    /// a process holds one open.
    fn detach(&mut self) -> Result<(), StorageError> {
        let devs = self.loops();
        for dev in &devs {
            let holders = holders_of(dev);
            if !holders.is_empty() {
                return Err(StorageError::Busy(format!(
                    "the card of {} is still open on the host side (process {}): close it first",
                    self.board,
                    holders.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        for dev in &devs {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(dev) {
                let _ = f.sync_all();
            }
            let o = Command::new("losetup")
                .arg("-d")
                .arg(dev)
                .output()
                .map_err(|e| StorageError::device("running losetup -d", e))?;
            if !o.status.success() {
                return Err(StorageError::Device(format!(
                    "detaching {}: {}",
                    dev.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
        }
        self.attached = None;
        Ok(())
    }
}

/// Processes that have the block device `dev` open (by its device
/// number, whatever node they opened it through).
pub fn holders_of(dev: &Path) -> Vec<i32> {
    let Ok(rdev) = std::fs::metadata(dev).map(|m| m.rdev()) else { return Vec::new() };
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if u32::try_from(pid).ok() == Some(me) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == rdev));
        if holds {
            found.push(pid);
        }
    }
    found
}

impl Mux for SimMux {
    fn set(&mut self, side: Side) -> Result<Option<PathBuf>, StorageError> {
        match side {
            Side::Host => {
                // The board lets go of the card before the host takes it.
                self.write_control(Side::Off)?;
                let dev = self.attach()?;
                self.write_control(Side::Host)?;
                Ok(Some(dev))
            }
            Side::Board | Side::Off => {
                self.detach()?;
                self.write_control(side)?;
                Ok(None)
            }
        }
    }

    fn get(&mut self) -> Result<Option<Side>, StorageError> {
        let text = match std::fs::read_to_string(&self.control) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::device(&format!("reading {}", self.control.display()), e)),
        };
        Ok(match text.trim() {
            "host" => Some(Side::Host),
            "board" => Some(Side::Board),
            "off" => Some(Side::Off),
            _ => None,
        })
    }

    fn describe(&self) -> String {
        format!("sim card {}", self.image.display())
    }
}

/// What a simulated board reads: the mux's position in `control`.
pub fn read_side(control: &Path) -> Option<Side> {
    match std::fs::read_to_string(control).ok()?.trim() {
        "host" => Some(Side::Host),
        "board" => Some(Side::Board),
        "off" => Some(Side::Off),
        _ => None,
    }
}
