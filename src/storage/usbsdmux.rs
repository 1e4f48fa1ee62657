//! The Linux Automation USB-SD-Mux: a Microchip USB2642 card reader whose
//! auxiliary I2C bus drives a PCA9536 GPIO expander (7-bit address 0x41)
//! that switches the card. The reader's SCSI device takes vendor commands
//! (opcode 0xCF) that run I2C transactions, sent through the SCSI generic
//! node (`/dev/sgN`) with the SG_IO ioctl; the card itself is the same
//! SCSI device's disk (`/dev/sdX`).
//!
//! The encodings follow Microchip's "I2C over USB" user guide as the
//! reference tool (`usbsdmux`, Pengutronix) sends them, and so do the
//! sequences: the expander's output register (1) first, then its pins made
//! outputs (configuration register 3, read and written back with pins 0-3
//! cleared); GPIO 0 disables the data lines, 1 the card's power, 2 selects
//! the board (DUT), 3 reports the card removed. Off is data and power off,
//! host selected, card removed, then a second for the card's supply to
//! drain; host and board switch from off. The unit tests below check the
//! bytes; no USB-SD-Mux was at hand to run them against (see README).

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use super::sysfs;
use super::{Mux, Side, StorageError};
use crate::config::UsbSdMuxFind;

/// The PCA9536's 7-bit I2C address.
pub const PCA9536: u8 = 0x41;
const OPCODE: u8 = 0xCF;
const I2C_WRITE: u8 = 0x23;
const I2C_WRITE_READ: u8 = 0x22;
const REG_OUTPUT: u8 = 0x01;
const REG_CONFIG: u8 = 0x03;
const DAT_DISABLE: u8 = 0x01;
const PWR_DISABLE: u8 = 0x02;
const SELECT_DUT: u8 = 0x04;
const CARD_REMOVED: u8 = 0x08;
const PINS: u8 = 0x0F;
/// Both I2C commands carry a 512-byte data phase buffer.
const BUF: usize = 512;

/// The CDB of an I2C write of `len` bytes to `addr` (the bytes go in the
/// data phase).
pub fn write_cdb(addr: u8, len: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = I2C_WRITE;
    c[2] = addr.wrapping_mul(2);
    c[4..6].copy_from_slice(&len.to_be_bytes());
    c
}

/// The CDB of an I2C write of `write` (at most 9 bytes, in the CDB) then a
/// read of `read_len` bytes from `addr`.
pub fn write_read_cdb(addr: u8, write: &[u8], read_len: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = OPCODE;
    c[1] = I2C_WRITE_READ;
    c[2] = addr.wrapping_mul(2);
    c[3] = addr.wrapping_mul(2).wrapping_add(1);
    c[4..6].copy_from_slice(&read_len.to_be_bytes());
    let n = write.len().min(9);
    c[6] = n as u8; // at most 9
    c[7..7 + n].copy_from_slice(&write[..n]);
    c
}

/// One step of switching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write `value` to the expander's register `reg`.
    Write(u8, u8),
    /// Read register `reg`, clear the bits `mask`, write it back.
    ClearBits(u8, u8),
    Sleep(Duration),
}

/// The steps that put the card on `side`.
pub fn steps(side: Side) -> Vec<Step> {
    let mut s = vec![
        Step::Write(REG_OUTPUT, DAT_DISABLE | PWR_DISABLE | CARD_REMOVED),
        Step::ClearBits(REG_CONFIG, PINS),
        Step::Sleep(Duration::from_secs(1)),
    ];
    match side {
        Side::Off => {}
        Side::Board => {
            s.push(Step::Write(REG_OUTPUT, DAT_DISABLE | PWR_DISABLE | SELECT_DUT | CARD_REMOVED));
            s.push(Step::Write(REG_OUTPUT, SELECT_DUT | CARD_REMOVED));
        }
        Side::Host => s.push(Step::Write(REG_OUTPUT, 0x00)),
    }
    s
}

/// The side the output register's value means.
pub fn decode(output: u8) -> Side {
    if output & PWR_DISABLE != 0 {
        Side::Off
    } else if output & SELECT_DUT != 0 {
        Side::Board
    } else {
        Side::Host
    }
}

/// Linux's `sg_io_hdr` (<scsi/sg.h>).
#[repr(C)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: libc::c_int,
    duration: u32,
    info: u32,
}

const SG_IO: libc::c_ulong = 0x2285;
const SG_DXFER_TO_DEV: libc::c_int = -2;
const SG_DXFER_FROM_DEV: libc::c_int = -3;

/// Sends `cdb` with the 512-byte `data` buffer in `direction`.
fn sg_io(dev: &std::fs::File, cdb: &[u8; 16], data: &mut [u8; BUF], direction: libc::c_int) -> Result<(), String> {
    let mut sense = [0u8; 64];
    let mut h = SgIoHdr {
        interface_id: libc::c_int::from(b'S'),
        dxfer_direction: direction,
        cmd_len: 16,
        mx_sb_len: 64,
        iovec_count: 0,
        dxfer_len: BUF as u32,
        dxferp: data.as_mut_ptr().cast(),
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: 3000,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: SG_IO reads the header and the CDB, reads or writes `dxfer_len`
    // bytes of `data` and up to 64 bytes of `sense`; all of them live on this
    // frame for the whole (synchronous) call.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), SG_IO as _, &mut h as *mut SgIoHdr) };
    if r != 0 {
        return Err(format!("SG_IO: {}", std::io::Error::last_os_error()));
    }
    if h.status != 0 || h.host_status != 0 || h.driver_status != 0 {
        return Err(format!(
            "the I2C transaction failed (SCSI status {}, host {}, driver {})",
            h.status, h.host_status, h.driver_status
        ));
    }
    Ok(())
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

    /// The control node, opened, with its path (for errors).
    fn control(&self) -> Result<(std::fs::File, PathBuf), StorageError> {
        let (control, _) = self.nodes()?;
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&control)
            .map_err(|e| StorageError::Missing(format!("the USB-SD-Mux's control {}: {e}", control.display())))?;
        Ok((dev, control))
    }

    fn run(&self, steps: &[Step]) -> Result<(), StorageError> {
        let (dev, control) = self.control()?;
        let fail = |e: String| StorageError::Device(format!("USB-SD-Mux {}: {e}", control.display()));
        let write = |reg: u8, value: u8| {
            let mut data = [0u8; BUF];
            data[0] = reg;
            data[1] = value;
            sg_io(&dev, &write_cdb(PCA9536, 2), &mut data, SG_DXFER_TO_DEV).map_err(fail)
        };
        for s in steps {
            match *s {
                Step::Write(reg, value) => write(reg, value)?,
                Step::ClearBits(reg, mask) => {
                    let mut data = [0u8; BUF];
                    sg_io(&dev, &write_read_cdb(PCA9536, &[reg], 1), &mut data, SG_DXFER_FROM_DEV).map_err(fail)?;
                    write(reg, data[0] & !mask)?;
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
        self.run(&steps(side))?;
        Ok(if side == Side::Host { Some(self.nodes()?.1) } else { None })
    }

    fn get(&mut self) -> Result<Option<Side>, StorageError> {
        let (dev, control) = self.control()?;
        let mut data = [0u8; BUF];
        sg_io(&dev, &write_read_cdb(PCA9536, &[REG_OUTPUT], 1), &mut data, SG_DXFER_FROM_DEV)
            .map_err(|e| StorageError::Device(format!("USB-SD-Mux {}: {e}", control.display())))?;
        Ok(Some(decode(data[0])))
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

    /// What `usbsdmux` (Usb2642I2C) puts in the CDB for the expander's
    /// register writes and reads, byte for byte.
    #[test]
    fn cdbs_are_the_reference_tools() {
        assert_eq!(write_cdb(0x41, 2), [0xCF, 0x23, 0x82, 0x00, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            write_read_cdb(0x41, &[0x03], 1),
            [0xCF, 0x22, 0x82, 0x83, 0x00, 0x01, 0x01, 0x03, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(write_read_cdb(0x41, &[0x01], 1)[7], 0x01);
        assert_eq!(write_cdb(0x20, 0x1ff)[2..6], [0x40, 0x00, 0x01, 0xff]);
    }

    /// mode_disconnect, mode_DUT and mode_host of the reference tool.
    #[test]
    fn sequences_are_the_reference_tools() {
        let off = [Step::Write(1, 0x0B), Step::ClearBits(3, 0x0F), Step::Sleep(Duration::from_secs(1))];
        assert_eq!(steps(Side::Off), off);
        let mut board = off.to_vec();
        board.extend([Step::Write(1, 0x0F), Step::Write(1, 0x0C)]);
        assert_eq!(steps(Side::Board), board);
        let mut host = off.to_vec();
        host.push(Step::Write(1, 0x00));
        assert_eq!(steps(Side::Host), host);
    }

    /// get_mode: power disabled is off, else the select pin says which.
    #[test]
    fn the_output_register_decodes_as_the_reference_tool() {
        assert_eq!(decode(0x0B), Side::Off);
        assert_eq!(decode(0x0C), Side::Board);
        assert_eq!(decode(0x00), Side::Host);
        assert_eq!(decode(0x0F), Side::Off);
    }

    #[test]
    fn the_sg_io_header_is_the_kernels() {
        assert_eq!(std::mem::size_of::<SgIoHdr>(), if cfg!(target_pointer_width = "64") { 88 } else { 64 });
    }
}
