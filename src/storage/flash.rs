//! Writing an image to a card: raw, or only the blocks a `.bmap` maps,
//! from a plain, gzip or xz file (streamed, never unpacked on disk), with
//! progress, then verified by reading the written blocks back and
//! comparing their SHA-256 with what was written (and, with a bmap, each
//! range's checksum from the bmap with what the image held).
//!
//! The image can be anything a jail's root made: its size, its bmap and
//! its compression are checked against the card before and while it is
//! written, and nothing is written past the card's end.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// Chunk of one read and one write.
const CHUNK: usize = 1 << 20;
/// Longest bmap file read (a bmap of a 1 TiB image in 4 KiB blocks with
/// every other block mapped would be far smaller).
const MAX_BMAP: u64 = 64 << 20;

/// How the image file is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    Raw,
    Gzip,
    Xz,
}

impl Packing {
    /// By the file's first bytes (the name may lie; the magic does not).
    pub fn sniff(head: &[u8]) -> Packing {
        if head.starts_with(&[0x1f, 0x8b]) {
            Packing::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Packing::Xz
        } else {
            Packing::Raw
        }
    }
}

/// Where a flash is.
#[derive(Default, Debug)]
pub struct Progress {
    /// 0 idle, 1 writing, 2 verifying, 3 switching to the board.
    pub phase: AtomicU8,
    pub done: AtomicU64,
    pub total: AtomicU64,
    /// Set to stop a flash (the claim ended): it fails at the next chunk.
    pub cancel: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub fn phase_name(&self) -> &'static str {
        match self.phase.load(Ordering::Relaxed) {
            1 => "writing",
            2 => "verifying",
            3 => "switching",
            _ => "idle",
        }
    }

    fn start(&self, phase: u8, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }
}

/// Why a flash failed. `Image` is the image's (the user's) fault and
/// comes before anything is written, or when a range's bytes do not
/// match its bmap; `Card` is the card's or the host's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlashError {
    #[error("{0}")]
    Image(String),
    #[error("{0}")]
    Card(String),
    #[error("verification failed: {0}")]
    Verify(String),
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Flashed {
    /// The image's size (what the card now holds from offset 0).
    pub image_bytes: u64,
    /// Bytes written (and read back).
    pub written: u64,
    /// Ranges written (1 without a bmap).
    pub ranges: u64,
    /// The bmap's block size, and how many blocks were written.
    pub block_size: u64,
    pub blocks: u64,
    /// SHA-256 of the written bytes, in order.
    pub sha256: String,
    pub seconds: f64,
}

/// One range to write: offset, length, and the SHA-256 its bytes must
/// have (from the bmap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub offset: u64,
    pub length: u64,
    pub sha256: Option<[u8; 32]>,
}

/// What the bmap says: the image size, block size and ranges, checked to
/// be in order, inside the image and not overlapping.
pub fn read_bmap(mut f: File) -> Result<(u64, u64, Vec<Range>), FlashError> {
    let bad = |m: String| FlashError::Image(format!("the bmap: {m}"));
    let len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    if len > MAX_BMAP {
        return Err(bad(format!("{len} bytes is too large for a bmap")));
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(|e| bad(e.to_string()))?;
    // bmap-parser panics on some malformed ranges (a range that is not a
    // number): a hostile bmap must get an error, not take labd's thread.
    let parsed = std::panic::catch_unwind(|| bmap_parser::Bmap::from_xml(&text))
        .map_err(|_| bad("malformed block ranges".into()))?;
    let map = parsed.map_err(|e| bad(e.to_string()))?;
    if map.block_size() == 0 {
        return Err(bad("a block size of 0".into()));
    }
    let size = map.image_size();
    let mut ranges = Vec::new();
    let mut end = 0u64;
    for r in map.block_map() {
        let offset = r.offset();
        if offset < end || offset >= size.max(1) {
            return Err(bad(format!("range at byte {offset} is out of order or past the image's end ({size})")));
        }
        // The last block may be partial: the image ends inside it.
        let length = r.length().min(size - offset);
        let bmap_parser::HashValue::Sha256(sum) = r.checksum() else {
            return Err(bad("only SHA-256 checksums are supported".into()));
        };
        end = offset + length;
        ranges.push(Range { offset, length, sha256: Some(sum) });
    }
    Ok((size, map.block_size(), ranges))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `image` (packed as `packing`; `bmap`: image size, block size
/// and ranges) to `card`, verifies it, and says what was written.
pub fn flash(
    image: File,
    packing: Packing,
    bmap: Option<(u64, u64, Vec<Range>)>,
    card: &Path,
    progress: &Progress,
) -> Result<Flashed, FlashError> {
    let t0 = Instant::now();
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(card)
        .map_err(|e| FlashError::Card(format!("opening the card {}: {e}", card.display())))?;
    let card_size = super::size_of(&dev).map_err(|e| FlashError::Card(format!("the card's size: {e}")))?;
    let file_size = image.metadata().map_err(|e| FlashError::Image(e.to_string()))?.len();
    let (image_size, block_size, ranges) = match bmap {
        Some(b) => b,
        None if packing == Packing::Raw => (file_size, 512, vec![Range { offset: 0, length: file_size, sha256: None }]),
        // Unknown until unpacked: up to the card's end, and an error if
        // more comes.
        None => (u64::MAX, 512, vec![Range { offset: 0, length: u64::MAX, sha256: None }]),
    };
    if image_size != u64::MAX && image_size > card_size {
        return Err(FlashError::Image(format!(
            "the image is {image_size} bytes and the card only {card_size}: it does not fit"
        )));
    }
    if packing == Packing::Raw && image_size != u64::MAX && file_size < image_size {
        return Err(FlashError::Image(format!("the image file is {file_size} bytes, its bmap says {image_size}")));
    }
    let total: u64 = ranges.iter().map(|r| r.length.min(card_size)).sum();
    progress.start(1, total);
    let mut src = match packing {
        Packing::Raw => Source::Raw(image, 0),
        Packing::Gzip => {
            Source::Packed(Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(CHUNK, image))))
        }
        Packing::Xz => {
            Source::Packed(Box::new(xz2::read::XzDecoder::new_multi_decoder(BufReader::with_capacity(CHUNK, image))))
        }
    };
    let mut pos = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut whole = Sha256::new();
    let mut written = 0u64;
    let mut done_ranges: Vec<(u64, u64)> = Vec::new();
    let unpack = |e: std::io::Error| FlashError::Image(format!("reading the image: {e}"));
    for r in &ranges {
        // To the range's start: skipped (seek when raw, read and dropped
        // when packed).
        if r.offset > pos {
            src.skip(r.offset - pos).map_err(unpack)?;
            pos = r.offset;
        }
        let mut range_hash = Sha256::new();
        let mut left = r.length;
        let start = pos;
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            if progress.cancel.load(Ordering::Relaxed) {
                return Err(FlashError::Card("cancelled: the claim ended".into()));
            }
            let n = src.read(&mut buf[..want]).map_err(unpack)?;
            if n == 0 {
                if r.length == u64::MAX {
                    break; // a packed image without a bmap ends where it ends
                }
                return Err(FlashError::Image(format!("the image ends at byte {pos}, before its size or bmap says")));
            }
            if pos + n as u64 > card_size {
                return Err(FlashError::Image(format!(
                    "the image is larger than the card ({card_size} bytes): nothing past the card's end was written"
                )));
            }
            dev.write_all_at(&buf[..n], pos)
                .map_err(|e| FlashError::Card(format!("writing the card at byte {pos}: {e}")))?;
            range_hash.update(&buf[..n]);
            whole.update(&buf[..n]);
            pos += n as u64;
            left = left.saturating_sub(n as u64);
            written += n as u64;
            progress.done.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some(want) = r.sha256 {
            let got: [u8; 32] = range_hash.finalize().into();
            if got != want {
                return Err(FlashError::Image(format!(
                    "the image's bytes {}..{} do not match its bmap (sha256 {} instead of {})",
                    start,
                    pos,
                    hex(&got),
                    hex(&want)
                )));
            }
        }
        done_ranges.push((start, pos - start));
    }
    dev.sync_data().map_err(|e| FlashError::Card(format!("flushing the card: {e}")))?;
    let sha = hex(&whole.finalize());
    // Read back from the card, not from the page cache.
    drop_cache(&dev);
    progress.start(2, written);
    let mut back = Sha256::new();
    for &(off, len) in &done_ranges {
        let mut at = off;
        while at < off + len {
            let n = usize::try_from((off + len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            dev.read_exact_at(&mut buf[..n], at)
                .map_err(|e| FlashError::Card(format!("reading the card back at byte {at}: {e}")))?;
            back.update(&buf[..n]);
            at += n as u64;
            progress.done.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    let sha_back = hex(&back.finalize());
    if sha_back != sha {
        return Err(FlashError::Verify(format!("the card reads back sha256 {sha_back}, {sha} was written")));
    }
    let image_bytes = if image_size == u64::MAX { pos } else { image_size };
    Ok(Flashed {
        image_bytes,
        written,
        ranges: done_ranges.len() as u64,
        block_size,
        blocks: written.div_ceil(block_size.max(1)),
        sha256: sha,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The image, unpacked: a raw file is read where it is needed (holes
/// skipped by position), a packed one as a stream.
enum Source {
    Raw(File, u64),
    Packed(Box<dyn Read>),
}

impl Source {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        match self {
            Source::Raw(_, pos) => {
                *pos += n;
                Ok(())
            }
            Source::Packed(r) => {
                let got = std::io::copy(&mut r.as_mut().take(n), &mut std::io::sink())?;
                if got < n {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the image ends before its bmap's last range",
                    ));
                }
                Ok(())
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Raw(f, pos) => {
                let at = *pos;
                let n = fill(buf, |b, done| f.read_at(b, at + done as u64))?;
                *pos += n as u64;
                Ok(n)
            }
            Source::Packed(r) => read_full(r.as_mut(), buf),
        }
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    fill(buf, |b, _| r.read(b))
}

/// Fills `buf` with `read(rest of buf, bytes so far)` until it is full or
/// `read` gives 0 (the end), retrying an interrupted read.
fn fill(buf: &mut [u8], mut read: impl FnMut(&mut [u8], usize) -> std::io::Result<usize>) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match read(&mut buf[n..], n) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Drops the device's cached pages (and a block device's buffers), so
/// that what is read next comes from the card.
fn drop_cache(dev: &File) {
    use std::os::fd::AsRawFd;
    let _ = nix::fcntl::posix_fadvise(dev.as_raw_fd(), 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    if dev.metadata().is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type())) {
        nix::ioctl_none!(blkflsbuf, 0x12, 97);
        // SAFETY: BLKFLSBUF takes no argument; the descriptor is open.
        let _ = unsafe { blkflsbuf(dev.as_raw_fd()) };
    }
}

/// Zeroes the whole card (wipe on release): discarded where it can be,
/// else written with zeros.
pub fn wipe(card: &Path) -> Result<(), FlashError> {
    use std::os::fd::AsRawFd;
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(card)
        .map_err(|e| FlashError::Card(format!("opening the card {}: {e}", card.display())))?;
    let size = super::size_of(&dev).map_err(|e| FlashError::Card(e.to_string()))?;
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
    let range = [0u64, size];
    // SAFETY: BLKZEROOUT reads two u64 (start, length) through the pointer,
    // valid for the call.
    if unsafe { blkzeroout(dev.as_raw_fd(), &range) }.is_ok() {
        return dev.sync_all().map_err(|e| FlashError::Card(e.to_string()));
    }
    let zeros = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < size {
        let n = usize::try_from((size - at).min(CHUNK as u64)).unwrap_or(CHUNK);
        dev.write_all_at(&zeros[..n], at).map_err(|e| FlashError::Card(format!("wiping at byte {at}: {e}")))?;
        at += n as u64;
    }
    dev.sync_all().map_err(|e| FlashError::Card(e.to_string()))
}

/// Reads the first bytes of `f` (for [`Packing::sniff`]) and rewinds it.
pub fn head(f: &mut File) -> std::io::Result<[u8; 8]> {
    let mut h = [0u8; 8];
    let n = read_full(f, &mut h)?;
    h[n..].fill(0);
    f.seek(SeekFrom::Start(0))?;
    Ok(h)
}

#[cfg(test)]
#[path = "flash_tests.rs"]
mod tests;
