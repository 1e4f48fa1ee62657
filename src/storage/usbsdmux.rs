//! The Linux Automation USB-SD-Mux: a Microchip USB2642 card reader whose
//! auxiliary I2C bus drives a GPIO expander that switches the card; the
//! card itself is the reader's disk (`/dev/sdX`), and the expander is
//! reached through the reader's SCSI generic node ([`super::sg`]).
//!
//! Two models, told apart as the reference tool (`usbsdmux`, Pengutronix)
//! does, by the SCSI model the reader reports
//! (`/sys/class/scsi_generic/sgN/device/model`):
//!
//! * the classic USB-SD-Mux (`sdmux HS-SD/MMC`): a PCA9536 at 0x41. GPIO 0
//!   disables the data lines, 1 the card's power, 2 selects the board
//!   (DUT), 3 reports the card removed. Switching writes the output
//!   register, then makes pins 0-3 outputs (configuration register read
//!   and written back with them cleared).
//! * the USB-SD-Mux FAST (`sdFST HS-SD/MMC`): a TCA6408 at 0x20. GPIO 0
//!   selects the board, 1 disables power, 2 the data lines, 3 reports the
//!   card removed; 4 and 5 are the user GPIOs, left as they are. At power-up
//!   every pin is an input and pull resistors put the card on the board:
//!   labd first drives that same state (as the reference tool does), then
//!   changes pins 0-3 only (read, modify, write).
//!
//! Off is data and power off, host selected, card removed, then a second
//! for the card's supply to drain; host and board switch from off, the
//! board with its select line set before power and data come on. The
//! position is read back from the expander's input register (the pins'
//! levels). The unit tests below check the bytes and the sequences
//! against the reference tool's; no USB-SD-Mux was at hand to run them
//! against (see README).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sg::{i2c_read_register, i2c_write};
use super::sysfs;
use super::{Mux, Side, StorageError};
use crate::config::UsbSdMuxFind;

const REG_INPUT: u8 = 0x00;
const REG_OUTPUT: u8 = 0x01;
const REG_CONFIG: u8 = 0x03;
/// How long the card's supply takes to drain once it is off.
const SETTLE: Duration = Duration::from_secs(1);

/// A USB-SD-Mux model: its expander's address and what each pin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    pub name: &'static str,
    /// The expander's 7-bit I2C address.
    pub addr: u8,
    dat_disable: u8,
    pwr_disable: u8,
    select_dut: u8,
    card_removed: u8,
    /// Pins made outputs when the expander is found as it powers up
    /// (FAST only: the classic's are made outputs at every switch).
    adopt_pins: Option<u8>,
}

/// The classic USB-SD-Mux (PCA9536).
pub const CLASSIC: Model = Model {
    name: "USB-SD-Mux",
    addr: 0x41,
    dat_disable: 0x01,
    pwr_disable: 0x02,
    select_dut: 0x04,
    card_removed: 0x08,
    adopt_pins: None,
};

/// The USB-SD-Mux FAST (TCA6408).
pub const FAST: Model = Model {
    name: "USB-SD-Mux FAST",
    addr: 0x20,
    dat_disable: 0x04,
    pwr_disable: 0x02,
    select_dut: 0x01,
    card_removed: 0x08,
    adopt_pins: Some(0x3F),
};

/// Pins 0-3: the ones that switch the card.
const CARD_PINS: u8 = 0x0F;

impl Model {
    /// The model whose reader reports `scsi_model`.
    pub fn of_scsi_model(scsi_model: &str) -> Option<Model> {
        match scsi_model.trim() {
            "sdmux HS-SD/MMC" => Some(CLASSIC),
            "sdFST HS-SD/MMC" => Some(FAST),
            _ => None,
        }
    }

    /// The model behind the SCSI generic node `control` (its SCSI model
    /// in sysfs below `sys`).
    pub fn of_node(sys: &Path, control: &Path) -> Result<Model, StorageError> {
        let real = std::fs::canonicalize(control).unwrap_or_else(|_| control.to_path_buf());
        let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = sys.join("class/scsi_generic").join(&name).join("device/model");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            StorageError::Missing(format!(
                "{} is no USB-SD-Mux's SCSI generic node: {}: {e}",
                control.display(),
                file.display()
            ))
        })?;
        Model::of_scsi_model(&text).ok_or_else(|| {
            StorageError::Device(format!(
                "{} reports SCSI model {:?}, which is no USB-SD-Mux this labd knows \
                 (\"sdmux HS-SD/MMC\" or \"sdFST HS-SD/MMC\")",
                control.display(),
                text.trim()
            ))
        })
    }

    /// The output pins' values for `side` (pins 0-3).
    fn pins(&self, side: Side) -> u8 {
        match side {
            Side::Off => self.dat_disable | self.pwr_disable | self.card_removed,
            Side::Board => self.select_dut | self.card_removed,
            Side::Host => 0,
        }
    }

    /// The side the expander's pins (its input register) say.
    pub fn decode(&self, pins: u8) -> Side {
        if pins & self.pwr_disable != 0 {
            Side::Off
        } else if pins & self.select_dut != 0 {
            Side::Board
        } else {
            Side::Host
        }
    }

    /// Sets pins 0-3 to `value`: the classic writes its whole output
    /// register (it has only those pins); the FAST changes those pins only.
    fn set_pins(&self, value: u8) -> Step {
        match self.adopt_pins {
            None => Step::Write(REG_OUTPUT, value),
            Some(_) => Step::Update(REG_OUTPUT, CARD_PINS, value),
        }
    }

    /// The steps that put the card on `side`.
    pub fn steps(&self, side: Side) -> Vec<Step> {
        let off = self.pins(Side::Off);
        let mut s = Vec::new();
        match self.adopt_pins {
            Some(pins) => {
                s.push(Step::Adopt { output: self.pins(Side::Board), pins });
                s.push(self.set_pins(off));
            }
            None => {
                s.push(self.set_pins(off));
                s.push(Step::Update(REG_CONFIG, CARD_PINS, 0));
            }
        }
        s.push(Step::Sleep(SETTLE));
        match side {
            Side::Off => {}
            Side::Board => {
                s.push(self.set_pins(off | self.select_dut));
                s.push(self.set_pins(self.pins(Side::Board)));
            }
            Side::Host => s.push(self.set_pins(self.pins(Side::Host))),
        }
        s
    }
}

/// One step of switching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write `value` to the expander's register `reg`.
    Write(u8, u8),
    /// Read register `reg`, replace the bits of `mask` with `value`'s,
    /// write it back.
    Update(u8, u8, u8),
    /// If every pin is still an input (configuration 0xFF, as at power-up),
    /// write `output` to the output register, then make `pins` outputs.
    Adopt {
        output: u8,
        pins: u8,
    },
    Sleep(Duration),
}

pub struct UsbSdMux {
    find: UsbSdMuxFind,
}

impl UsbSdMux {
    pub fn new(find: UsbSdMuxFind) -> UsbSdMux {
        UsbSdMux { find }
    }

    /// The control node and the card's disk.
    fn nodes(&self) -> Result<(PathBuf, PathBuf), StorageError> {
        match &self.find {
            UsbSdMuxFind::Paths { control, card } => Ok((control.clone(), card.clone())),
            UsbSdMuxFind::Match(want) => {
                let (sys, dev) = (std::path::Path::new("/sys"), std::path::Path::new("/dev"));
                let found = sysfs::matching(sys, want);
                let [mux] = found.as_slice() else {
                    return Err(StorageError::Missing(format!(
                        "{} USB devices match {} (one USB-SD-Mux expected)",
                        found.len(),
                        sysfs::describe(want)
                    )));
                };
                let sg = sysfs::nodes_below(sys, dev, "scsi_generic", &mux.dir);
                let disk = sysfs::nodes_below(sys, dev, "block", &mux.dir);
                match (sg.first(), disk.first()) {
                    (Some(s), Some(d)) => Ok((s.clone(), d.clone())),
                    _ => Err(StorageError::Missing(format!(
                        "the USB-SD-Mux {} has no SCSI generic node or no disk (is the sg module loaded?)",
                        sysfs::describe(want)
                    ))),
                }
            }
        }
    }

    /// The control node, opened, with its path (for errors) and the
    /// model behind it.
    fn control(&self) -> Result<(std::fs::File, PathBuf, Model), StorageError> {
        let (control, _) = self.nodes()?;
        let model = Model::of_node(Path::new("/sys"), &control)?;
        let dev =
            std::fs::OpenOptions::new().read(true).write(true).open(&control).map_err(|e| {
                StorageError::Missing(format!("the {}'s control {}: {e}", model.name, control.display()))
            })?;
        Ok((dev, control, model))
    }

    /// Puts the card on `side`, with the steps of the model found.
    fn switch(&self, side: Side) -> Result<(), StorageError> {
        let (dev, control, model) = self.control()?;
        let fail = |e: String| StorageError::Device(format!("{} {}: {e}", model.name, control.display()));
        let write = |reg: u8, value: u8| i2c_write(&dev, model.addr, &[reg, value]).map_err(fail);
        let read = |reg: u8| i2c_read_register(&dev, model.addr, reg).map_err(fail);
        for s in model.steps(side) {
            match s {
                Step::Write(reg, value) => write(reg, value)?,
                Step::Update(reg, mask, value) => {
                    let now = read(reg)?;
                    write(reg, (now & !mask) | (value & mask))?;
                }
                Step::Adopt { output, pins } => {
                    if read(REG_CONFIG)? == 0xFF {
                        write(REG_OUTPUT, output)?;
                        write(REG_CONFIG, !pins)?;
                    }
                }
                Step::Sleep(d) => std::thread::sleep(d),
            }
        }
        Ok(())
    }
}

impl Mux for UsbSdMux {
    fn set(&mut self, side: Side) -> Result<Option<PathBuf>, StorageError> {
        if side != Side::Host {
            if let Ok((_, card)) = self.nodes() {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&card) {
                    let _ = f.sync_all();
                }
            }
        }
        self.switch(side)?;
        Ok(if side == Side::Host { Some(self.nodes()?.1) } else { None })
    }

    fn get(&mut self) -> Result<Option<Side>, StorageError> {
        let (dev, control, model) = self.control()?;
        let pins = i2c_read_register(&dev, model.addr, REG_INPUT)
            .map_err(|e| StorageError::Device(format!("{} {}: {e}", model.name, control.display())))?;
        Ok(Some(model.decode(pins)))
    }

    fn describe(&self) -> String {
        match &self.find {
            UsbSdMuxFind::Paths { control, card } => format!("USB-SD-Mux {} ({})", control.display(), card.display()),
            UsbSdMuxFind::Match(m) => format!("USB-SD-Mux {}", sysfs::describe(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sysfs::fake::Tree;

    /// mode_disconnect, mode_DUT and mode_host of the reference tool's
    /// classic driver (UsbSdMuxClassic).
    #[test]
    fn classic_sequences_are_the_reference_tools() {
        let off = [Step::Write(1, 0x0B), Step::Update(3, 0x0F, 0), Step::Sleep(Duration::from_secs(1))];
        assert_eq!(CLASSIC.steps(Side::Off), off);
        let mut board = off.to_vec();
        board.extend([Step::Write(1, 0x0F), Step::Write(1, 0x0C)]);
        assert_eq!(CLASSIC.steps(Side::Board), board);
        let mut host = off.to_vec();
        host.push(Step::Write(1, 0x00));
        assert_eq!(CLASSIC.steps(Side::Host), host);
    }

    /// The reference tool's FAST driver (UsbSdMuxFast): the power-up state
    /// adopted (DUT, card removed, pins 0-5 outputs), then read-modify-write
    /// of pins 0-3 only, leaving the user GPIOs 4 and 5 alone.
    #[test]
    fn fast_sequences_are_the_reference_tools() {
        let off = [
            Step::Adopt { output: 0x09, pins: 0x3F },
            Step::Update(1, 0x0F, 0x0E),
            Step::Sleep(Duration::from_secs(1)),
        ];
        assert_eq!(FAST.steps(Side::Off), off);
        let mut board = off.to_vec();
        board.extend([Step::Update(1, 0x0F, 0x0F), Step::Update(1, 0x0F, 0x09)]);
        assert_eq!(FAST.steps(Side::Board), board);
        let mut host = off.to_vec();
        host.push(Step::Update(1, 0x0F, 0x00));
        assert_eq!(FAST.steps(Side::Host), host);
    }

    /// get_mode: power disabled is off, else the select pin says which.
    #[test]
    fn the_pins_decode_as_the_reference_tool() {
        assert_eq!(CLASSIC.decode(0x0B), Side::Off);
        assert_eq!(CLASSIC.decode(0x0C), Side::Board);
        assert_eq!(CLASSIC.decode(0x00), Side::Host);
        assert_eq!(CLASSIC.decode(0x0F), Side::Off);
        assert_eq!(FAST.decode(0x0E), Side::Off);
        assert_eq!(FAST.decode(0x09), Side::Board);
        assert_eq!(FAST.decode(0x39), Side::Board, "user GPIOs do not matter");
        assert_eq!(FAST.decode(0x30), Side::Host);
        // Power-up: every pin an input, pulled to DUT with the card removed.
        assert_eq!(FAST.decode(0xF9), Side::Board);
    }

    /// The model comes from the reader's SCSI model, through the node's
    /// real name (a udev symlink such as /dev/usb-sd-mux/id-... works).
    #[test]
    fn the_model_is_told_by_the_readers_scsi_model() {
        let t = Tree::new();
        let dev = t.0.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for (sg, model) in [("sg1", "sdmux HS-SD/MMC"), ("sg2", "sdFST HS-SD/MMC"), ("sg3", "Flash Reader")] {
            let usb = t.usb("pci0000:00/usb1", &format!("1-{sg}"), &[]);
            t.class_dev(&usb, "scsi_generic", sg);
            let device = t.sys().join("class/scsi_generic").join(sg).join("device");
            std::fs::create_dir_all(&device).unwrap();
            std::fs::write(device.join("model"), format!("{model:<16}\n")).unwrap();
            std::fs::write(dev.join(sg), "").unwrap();
        }
        std::os::unix::fs::symlink(dev.join("sg2"), dev.join("usb-sd-mux-fast")).unwrap();
        assert_eq!(Model::of_node(&t.sys(), &dev.join("sg1")).unwrap(), CLASSIC);
        assert_eq!(Model::of_node(&t.sys(), &dev.join("sg2")).unwrap(), FAST);
        assert_eq!(Model::of_node(&t.sys(), &dev.join("usb-sd-mux-fast")).unwrap(), FAST);
        let e = Model::of_node(&t.sys(), &dev.join("sg3")).unwrap_err().to_string();
        assert!(e.contains("\"Flash Reader\"") && e.contains("sdFST HS-SD/MMC"), "{e}");
        let e = Model::of_node(&t.sys(), &dev.join("sg9")).unwrap_err().to_string();
        assert!(e.contains("no USB-SD-Mux's SCSI generic node"), "{e}");
    }
}
