//! The SDWire family, through usbfs (`/dev/bus/usb/BBB/DDD`), no libusb.
//!
//! - SDWire and SDWireC (FTDI FT200XD, USB 04e8:6001, the card reader a
//!   sibling on the board's own hub): CBUS pin 0 selects the side. The
//!   reference tools (`sd-mux-ctrl --ts/--dut`, `sdwire switch`) set CBUS
//!   bit-bang mode with the upper nibble as the output mask and bit 0 as
//!   the value: 0xF1 host, 0xF0 board. libftdi's and pyftdi's
//!   `set_bitmode` send that as the vendor control request SET_BITMODE
//!   (0x0B, bmRequestType 0x40) with wValue = mode << 8 | value (CBUS mode
//!   0x20) and wIndex = 1 (interface A).
//! - SDWire3 (USB 1209:2404, itself the card reader): the card is on the
//!   host's side while the host's mass-storage driver is bound to its
//!   interface 0, on the board's once it is unbound; `sdwire switch` binds
//!   or unbinds it and resets the device. usbfs does the same with
//!   USBDEVFS_IOCTL(CONNECT or DISCONNECT, interface 0) then USBDEVFS_RESET.
//!
//! Neither has an "off" position: off is the host's side with the card's
//! device shown to no one. The unit tests check the encodings; no SDWire
//! was at hand to run them against (see README).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::sysfs;
use super::{Mux, Side, StorageError};
use crate::config::SdWireVariant;

/// USB ids of the variants.
pub const SDWIREC_ID: (&str, &str) = ("04e8", "6001");
pub const SDWIRE3_ID: (&str, &str) = ("1209", "2404");

/// Linux's `usbdevfs_ctrltransfer`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrlTransfer {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
    pub timeout: u32,
    pub data: *mut libc::c_void,
}

/// Linux's `usbdevfs_ioctl`.
#[repr(C)]
struct UsbIoctl {
    ifno: libc::c_int,
    ioctl_code: libc::c_int,
    data: *mut libc::c_void,
}

const fn io(nr: u64) -> u64 {
    (b'U' as u64) << 8 | nr
}
const fn iowr(nr: u64, size: usize) -> u64 {
    (3u64 << 30) | ((size as u64) << 16) | (b'U' as u64) << 8 | nr
}
pub const USBDEVFS_CONTROL: u64 = iowr(0, std::mem::size_of::<CtrlTransfer>());
pub const USBDEVFS_IOCTL: u64 = iowr(18, std::mem::size_of::<UsbIoctl>());
pub const USBDEVFS_RESET: u64 = io(20);
pub const USBDEVFS_DISCONNECT: u64 = io(22);
pub const USBDEVFS_CONNECT: u64 = io(23);

/// FTDI's SET_BITMODE request and its CBUS bit-bang mode.
const SIO_SET_BITMODE: u8 = 0x0B;
const BITMODE_CBUS: u16 = 0x20;

/// The control transfer that puts an SDWireC's card on `side` (off is
/// the host's side).
pub fn sdwirec_transfer(side: Side) -> CtrlTransfer {
    let pins: u16 = 0xF0 | u16::from(side != Side::Board);
    CtrlTransfer {
        request_type: 0x40,
        request: SIO_SET_BITMODE,
        value: BITMODE_CBUS << 8 | pins,
        index: 1,
        length: 0,
        timeout: 1000,
        data: std::ptr::null_mut(),
    }
}

/// What an SDWire3 does for `side`: bind the host's driver to interface
/// 0 (CONNECT) or unbind it (DISCONNECT), then reset.
pub fn sdwire3_requests(side: Side) -> [u64; 2] {
    let code = if side == Side::Board { USBDEVFS_DISCONNECT } else { USBDEVFS_CONNECT };
    [code, USBDEVFS_RESET]
}

pub struct SdWire {
    variant: SdWireVariant,
    serial: String,
}

impl SdWire {
    pub fn new(variant: SdWireVariant, serial: String) -> SdWire {
        SdWire { variant, serial }
    }

    fn device(&self, sys: &Path) -> Result<sysfs::UsbDevice, StorageError> {
        let (vid, pid) = match self.variant {
            SdWireVariant::SdWireC => SDWIREC_ID,
            SdWireVariant::SdWire3 => SDWIRE3_ID,
        };
        let want = [
            ("ID_VENDOR_ID".to_string(), vid.to_string()),
            ("ID_MODEL_ID".to_string(), pid.to_string()),
            ("ID_SERIAL_SHORT".to_string(), self.serial.clone()),
        ]
        .into();
        let found = sysfs::matching(sys, &want);
        match found.as_slice() {
            [d] => Ok(d.clone()),
            _ => Err(StorageError::Missing(format!("{} devices match {}", found.len(), sysfs::describe(&want)))),
        }
    }

    /// The card's disk: below the SDWire3 itself, or below the SDWireC's
    /// own hub (the FTDI's parent).
    fn card(&self, sys: &Path, d: &sysfs::UsbDevice) -> Option<PathBuf> {
        let below = match self.variant {
            SdWireVariant::SdWire3 => d.dir.clone(),
            SdWireVariant::SdWireC => d.dir.parent()?.to_path_buf(),
        };
        sysfs::nodes_below(sys, Path::new("/dev"), "block", &below).into_iter().next()
    }
}

fn ioctl(f: &std::fs::File, req: u64, arg: *mut libc::c_void) -> std::io::Result<()> {
    // SAFETY: the requests used here take no argument or a pointer to a
    // struct of the kernel's layout that lives on the caller's frame for
    // the whole (synchronous) call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), req as _, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Mux for SdWire {
    fn set(&mut self, side: Side) -> Result<Option<PathBuf>, StorageError> {
        let sys = Path::new("/sys");
        let d = self.device(sys)?;
        if side != Side::Host {
            if let Some(card) = self.card(sys, &d) {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&card) {
                    let _ = f.sync_all();
                }
            }
        }
        let node = d.usbfs(Path::new("/dev"));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&node)
            .map_err(|e| StorageError::Missing(format!("the SDWire's usbfs node {}: {e}", node.display())))?;
        let fail = |e: std::io::Error| StorageError::Device(format!("SDWire {}: {e}", self.serial));
        match self.variant {
            SdWireVariant::SdWireC => {
                let mut t = sdwirec_transfer(side);
                ioctl(&f, USBDEVFS_CONTROL, (&mut t as *mut CtrlTransfer).cast()).map_err(fail)?;
            }
            SdWireVariant::SdWire3 => {
                let [code, reset] = sdwire3_requests(side);
                let mut req = UsbIoctl { ifno: 0, ioctl_code: code as libc::c_int, data: std::ptr::null_mut() };
                // Already bound or unbound is the state wanted.
                match ioctl(&f, USBDEVFS_IOCTL, (&mut req as *mut UsbIoctl).cast()) {
                    Err(e) if !matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::EBUSY)) => {
                        return Err(fail(e))
                    }
                    _ => {}
                }
                ioctl(&f, reset, std::ptr::null_mut()).map_err(fail)?;
            }
        }
        if side != Side::Host {
            return Ok(None);
        }
        // The reader enumerates its disk after the switch.
        for _ in 0..50 {
            if let Some(card) = self.card(sys, &d) {
                return Ok(Some(card));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(StorageError::Missing(format!("SDWire {}: no card reader disk appeared on the host", self.serial)))
    }

    fn get(&mut self) -> Result<Option<Side>, StorageError> {
        // Neither variant reports its position; the disk's presence says
        // whether the host has the card.
        let d = self.device(Path::new("/sys"))?;
        Ok(self.card(Path::new("/sys"), &d).map(|_| Side::Host))
    }

    fn describe(&self) -> String {
        format!("{} {}", self.variant.as_str(), self.serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sd-mux-ctrl's selectTarget and sdwire's _set_sdwire: 0xF0 | target
    /// in CBUS mode, through libftdi's control request.
    #[test]
    fn sdwirec_requests_are_the_reference_tools() {
        let t = sdwirec_transfer(Side::Host);
        assert_eq!((t.request_type, t.request, t.value, t.index, t.length), (0x40, 0x0B, 0x20F1, 1, 0));
        assert_eq!(sdwirec_transfer(Side::Board).value, 0x20F0);
        assert_eq!(sdwirec_transfer(Side::Off).value, 0x20F1);
    }

    #[test]
    fn usbfs_ioctl_numbers_are_the_kernels() {
        if cfg!(target_pointer_width = "64") {
            assert_eq!(USBDEVFS_CONTROL, 0xC018_5500);
            assert_eq!(USBDEVFS_IOCTL, 0xC010_5512);
        }
        assert_eq!((USBDEVFS_RESET, USBDEVFS_DISCONNECT, USBDEVFS_CONNECT), (0x5514, 0x5516, 0x5517));
        assert_eq!(sdwire3_requests(Side::Board), [0x5516, 0x5514]);
        assert_eq!(sdwire3_requests(Side::Host), [0x5517, 0x5514]);
    }
}
