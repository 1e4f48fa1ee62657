//! A simulated board's microSD card (`labsim up --sd`): an image file per
//! board, `DIR/sd/BOARD.img` (sparse, [`CARD_SIZE`]), and the mux's
//! position in `DIR/sd/BOARD.mux`, which labd's `sim` mux writes (`off`,
//! `host`, `board`).
//!
//! At power-on a board whose card is on its side boots from it before
//! trying the network, the way U-Boot's distro boot does: it reads the
//! card's partition table (MBR), prints it, looks for `boot.scr` on the
//! first partition (FAT, read with the `fatfs` crate), and prints the
//! script it would run. Without a card, a partition table, a FAT file
//! system or a `boot.scr`, it says so and netboots.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use boardlab::storage::Side;

/// Each simulated card's size: room for `make bench`'s 256 MiB image.
pub const CARD_SIZE: u64 = 1 << 30;
/// Longest boot script printed.
const MAX_SCRIPT: u64 = 16 * 1024;

/// The card's image and control file of `board` in the lab `dir`.
pub fn paths(dir: &Path, board: &str) -> (PathBuf, PathBuf) {
    let d = dir.join("sd");
    (d.join(format!("{board}.img")), d.join(format!("{board}.mux")))
}

/// Makes a board's blank card (sparse) and its mux, off.
pub fn create(dir: &Path, board: &str) -> std::io::Result<()> {
    let (img, mux) = paths(dir, board);
    std::fs::create_dir_all(dir.join("sd"))?;
    let f = File::create(&img)?;
    f.set_len(CARD_SIZE)?;
    std::fs::write(mux, "off\n")
}

/// One MBR partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub number: u8,
    pub bootable: bool,
    pub kind: u8,
    pub start: u32,
    pub sectors: u32,
}

/// The primary partitions of an MBR (None: no boot signature).
pub fn mbr(sector0: &[u8; 512]) -> Option<(u32, Vec<Part>)> {
    if sector0[510..512] != [0x55, 0xAA] {
        return None;
    }
    let disk_id = u32::from_le_bytes([sector0[440], sector0[441], sector0[442], sector0[443]]);
    let parts = (0..4u8)
        .filter_map(|i| {
            let e = &sector0[446 + 16 * usize::from(i)..446 + 16 * (usize::from(i) + 1)];
            let kind = e[4];
            let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            let sectors = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
            (kind != 0 && sectors != 0).then_some(Part { number: i + 1, bootable: e[0] == 0x80, kind, start, sectors })
        })
        .collect();
    Some((disk_id, parts))
}

/// A window of the card: one partition, read-only (fatfs wants Write too;
/// every write fails).
struct Window {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(0);
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Window {
    fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "the board only reads its card"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = p.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

/// Reads `boot.scr` from the FAT file system of `part` on `card`.
fn boot_script(card: &Path, part: &Part) -> Result<Vec<u8>, String> {
    let file = File::open(card).map_err(|e| e.to_string())?;
    let w = Window { file, start: u64::from(part.start) * 512, len: u64::from(part.sectors) * 512, pos: 0 };
    let fs = fatfs::FileSystem::new(w, fatfs::FsOptions::new()).map_err(|e| format!("no FAT file system: {e}"))?;
    let mut f = fs.root_dir().open_file("boot.scr").map_err(|e| format!("no boot.scr: {e}"))?;
    let mut bytes = Vec::new();
    (&mut f).take(MAX_SCRIPT).read_to_end(&mut bytes).map_err(|e| format!("reading boot.scr: {e}"))?;
    Ok(bytes)
}

/// The lines the board prints at power-on when its card is on its side;
/// `true` when it booted from the card (found a boot script).
pub fn boot_lines(card: &Path, control: &Path) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    if boardlab::storage::sim::read_side(control) != Some(Side::Board) {
        out.push("MMC:   no card".to_string());
        return (out, false);
    }
    let mut sector0 = [0u8; 512];
    let read = File::open(card).and_then(|f| f.read_exact_at(&mut sector0, 0));
    out.push("MMC:   mmc@fe320000: 0".to_string());
    if let Err(e) = read {
        out.push(format!("mmc0: cannot read the card: {e}"));
        return (out, false);
    }
    let Some((disk_id, parts)) = mbr(&sector0) else {
        out.push("## Unknown partition table type 0".to_string());
        out.push("MMC: no boot device; trying the network".to_string());
        return (out, false);
    };
    out.push(String::new());
    out.push("Partition Map for MMC device 0  --   Partition Type: DOS".to_string());
    out.push(String::new());
    out.push("Part\tStart Sector\tNum Sectors\tUUID\t\tType".to_string());
    for p in &parts {
        out.push(format!(
            "  {}\t{:<10}\t{:<10}\t{:08x}-{:02x}\t{:02x}{}",
            p.number,
            p.start,
            p.sectors,
            disk_id,
            p.number,
            p.kind,
            if p.bootable { " Boot" } else { "" }
        ));
    }
    let Some(first) = parts.first() else {
        out.push("MMC: no partitions; trying the network".to_string());
        return (out, false);
    };
    out.push(format!("Scanning mmc 0:{}...", first.number));
    match boot_script(card, first) {
        Ok(script) => {
            out.push("Found U-Boot script /boot.scr".to_string());
            out.push(format!("{} bytes read from mmc 0:{}", script.len(), first.number));
            out.push("## Executing script at 00500000".to_string());
            // A mkimage'd script: its 64-byte header and 8-byte length
            // table are not text.
            let body = if script.starts_with(&[0x27, 0x05, 0x19, 0x56]) && script.len() > 72 {
                &script[72..]
            } else {
                &script[..]
            };
            for line in String::from_utf8_lossy(body).lines() {
                out.push(line.chars().filter(|c| !c.is_control() || *c == '\t').collect());
            }
            (out, true)
        }
        Err(e) => {
            out.push(format!("mmc 0:{}: {e}; trying the network", first.number));
            (out, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbrs_are_read() {
        let mut s = [0u8; 512];
        assert_eq!(mbr(&s), None);
        s[510] = 0x55;
        s[511] = 0xAA;
        s[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        s[446] = 0x80;
        s[446 + 4] = 0x0c;
        s[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        s[446 + 12..446 + 16].copy_from_slice(&65536u32.to_le_bytes());
        let (id, parts) = mbr(&s).unwrap();
        assert_eq!(id, 0x1234_5678);
        assert_eq!(parts, vec![Part { number: 1, bootable: true, kind: 0x0c, start: 2048, sectors: 65536 }]);
    }

    #[test]
    fn a_card_on_the_host_side_is_no_card() {
        let d = tempfile::tempdir().unwrap();
        create(d.path(), "b").unwrap();
        let (img, mux) = paths(d.path(), "b");
        assert_eq!(std::fs::metadata(&img).unwrap().len(), CARD_SIZE);
        assert_eq!(boot_lines(&img, &mux), (vec!["MMC:   no card".to_string()], false));
        std::fs::write(&mux, "board\n").unwrap();
        let (lines, booted) = boot_lines(&img, &mux);
        assert!(!booted);
        assert!(lines.iter().any(|l| l.contains("Unknown partition table")), "{lines:?}");
    }
}
