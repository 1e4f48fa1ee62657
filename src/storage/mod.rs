//! A board's microSD card behind a mux: which side the card is on (the
//! host's card reader, the board, or neither), the card's block device on
//! the host side, its node in the claim's jail, and writing images to it.
//!
//! One module per mux ([`usbsdmux`], [`sdwire`], [`sim`]) behind the
//! [`Mux`] trait; finding USB devices in sysfs ([`sysfs`]); opening a
//! jail's file as the jail's root ([`jailfile`]); flashing ([`flash`]).
//! Everything here blocks: the board actor runs it on tokio's blocking
//! pool, one operation at a time per board.

pub mod flash;
pub mod jailfile;
pub mod node;
pub mod sdwire;
mod sg;
pub mod sim;
pub mod sysfs;
pub mod usbsdmux;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Storage;

/// Where the card is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Connected to neither (SDWire, which has no such position: the
    /// host's side, its device shown to no one).
    Off,
    /// The host's card reader: a block device on the host.
    Host,
    /// The board.
    Board,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Off => "off",
            Side::Host => "host",
            Side::Board => "board",
        }
    }
}

/// A mux failed, or its device is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The mux or its card reader is not on the host (unplugged, not
    /// found by its match).
    #[error("{0}")]
    Missing(String),
    /// The device answered with an error, or an operation on it failed.
    #[error("{0}")]
    Device(String),
    /// The card is in use on the host side (open by a process) and cannot
    /// be taken away from it safely.
    #[error("{0}")]
    Busy(String),
}

impl StorageError {
    pub fn device(what: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Device(format!("{what}: {e}"))
    }
}

/// One mux and its card.
pub trait Mux: Send {
    /// Puts the card on `side`. On [`Side::Host`] the answer is the card's
    /// block device on the host; otherwise None. Going from the host side
    /// to another, the card's writes are flushed first.
    fn set(&mut self, side: Side) -> Result<Option<PathBuf>, StorageError>;
    /// The position the device reports, where it can tell.
    fn get(&mut self) -> Result<Option<Side>, StorageError>;
    /// For messages and the dump: which device this is.
    fn describe(&self) -> String;
}

/// The driver for a board's `storage`.
pub fn driver(board: &str, cfg: &Storage) -> Box<dyn Mux> {
    match cfg {
        Storage::Sim { image, control } => Box::new(sim::SimMux::new(board, image.clone(), control.clone())),
        Storage::UsbSdMux(find) => Box::new(usbsdmux::UsbSdMux::new(find.clone())),
        Storage::SdWire { variant, serial } => Box::new(sdwire::SdWire::new(*variant, serial.clone())),
    }
}

/// The size of a block device (or file) open as `f`, in bytes.
pub fn size_of(f: &std::fs::File) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let meta = f.metadata()?;
    if !std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
        return Ok(meta.len());
    }
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    let mut size = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is
    // valid for the call; the descriptor is open.
    unsafe { blkgetsize64(f.as_raw_fd(), &mut size) }.map_err(std::io::Error::from)?;
    Ok(size)
}
