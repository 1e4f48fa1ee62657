//! The USB2642 card reader's I2C bridge: SCSI vendor commands (opcode
//! 0xCF) that run an I2C transaction on its auxiliary bus, sent through the
//! reader's SCSI generic node (`/dev/sgN`) with the SG_IO ioctl. The
//! encodings follow Microchip's "I2C over USB" user guide as the reference
//! tool (`usbsdmux`, Pengutronix) sends them.

use std::os::fd::AsRawFd;

const OPCODE: u8 = 0xCF;
const I2C_WRITE: u8 = 0x23;
const I2C_WRITE_READ: u8 = 0x22;
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

/// Writes `bytes` (at most 512) to the I2C device at `addr`.
pub fn i2c_write(dev: &std::fs::File, addr: u8, bytes: &[u8]) -> Result<(), String> {
    let mut data = [0u8; BUF];
    let n = bytes.len().min(BUF);
    data[..n].copy_from_slice(&bytes[..n]);
    sg_io(dev, &write_cdb(addr, n as u16), &mut data, SG_DXFER_TO_DEV)
}

/// Writes `reg` to the I2C device at `addr`, then reads one byte back.
pub fn i2c_read_register(dev: &std::fs::File, addr: u8, reg: u8) -> Result<u8, String> {
    let mut data = [0u8; BUF];
    sg_io(dev, &write_read_cdb(addr, &[reg], 1), &mut data, SG_DXFER_FROM_DEV)?;
    Ok(data[0])
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
        // The USB-SD-Mux FAST's TCA6408 at 0x20.
        assert_eq!(
            write_read_cdb(0x20, &[0x00], 1),
            [0xCF, 0x22, 0x40, 0x41, 0x00, 0x01, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn the_sg_io_header_is_the_kernels() {
        assert_eq!(std::mem::size_of::<SgIoHdr>(), if cfg!(target_pointer_width = "64") { 88 } else { 64 });
    }
}
