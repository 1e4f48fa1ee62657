//! Flashing into files standing in for cards: raw, bmap (only mapped
//! blocks written, counted), gzip, xz, and the images that must be
//! refused.

use std::io::Write;

use super::*;

const BS: usize = 4096;

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// An image of `blocks` blocks where `mapped` are filled (each with its
/// own byte) and the rest zero, and its bmap text.
fn image(blocks: usize, mapped: &[std::ops::RangeInclusive<usize>]) -> (Vec<u8>, String) {
    let mut img = vec![0u8; blocks * BS];
    let mut ranges = String::new();
    let mut count = 0;
    for r in mapped {
        for b in r.clone() {
            img[b * BS..(b + 1) * BS].fill((b % 250 + 1) as u8);
            count += 1;
        }
        let bytes = &img[r.start() * BS..(r.end() + 1) * BS];
        let text = if r.start() == r.end() { r.start().to_string() } else { format!("{}-{}", r.start(), r.end()) };
        ranges.push_str(&format!("<Range chksum=\"{}\"> {text} </Range>\n", sha(bytes)));
    }
    let bmap = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n<ImageSize> {} </ImageSize>\n<BlockSize> {BS} </BlockSize>\n\
         <BlocksCount> {blocks} </BlocksCount>\n<MappedBlocksCount> {count} </MappedBlocksCount>\n\
         <ChecksumType> sha256 </ChecksumType>\n<BmapFileChecksum> {} </BmapFileChecksum>\n<BlockMap>\n{ranges}</BlockMap>\n</bmap>\n",
        blocks * BS,
        "0".repeat(64)
    );
    (img, bmap)
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> File {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    File::open(p).unwrap()
}

/// A "card" of `size` bytes filled with 0xEE, so unwritten blocks show.
fn card(dir: &Path, size: usize) -> std::path::PathBuf {
    let p = dir.join("card");
    std::fs::write(&p, vec![0xEEu8; size]).unwrap();
    p
}

#[test]
fn a_bmap_writes_only_the_mapped_blocks_and_verifies() {
    let d = tempfile::tempdir().unwrap();
    let (img, bmap) = image(64, &[0..=1, 10..=10, 40..=47]);
    let c = card(d.path(), 128 * BS);
    let b = read_bmap(file(d.path(), "i.bmap", bmap.as_bytes())).unwrap();
    assert_eq!((b.0, b.1, b.2.len()), (64 * BS as u64, BS as u64, 3));
    let p = Progress::default();
    let f = flash(file(d.path(), "i.img", &img), Packing::Raw, Some(b), &c, &p).unwrap();
    assert_eq!((f.written, f.blocks, f.ranges), (11 * BS as u64, 11, 3));
    let after = std::fs::read(&c).unwrap();
    for blk in 0..128 {
        let got = &after[blk * BS..(blk + 1) * BS];
        let mapped = [0, 1, 10].contains(&blk) || (40..=47).contains(&blk);
        let want = if mapped { img[blk * BS] } else { 0xEE };
        assert!(got.iter().all(|&x| x == want), "block {blk}");
    }
    assert_eq!(p.done.load(Ordering::Relaxed), 11 * BS as u64);
}

#[test]
fn raw_gzip_and_xz_images_land_whole() {
    let d = tempfile::tempdir().unwrap();
    let (img, _) = image(16, &[0..=3, 9..=9]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&img).unwrap();
    let gz = gz.finish().unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&img).unwrap();
    let xz = xz.finish().unwrap();
    for (name, bytes, packing) in
        [("raw", img.clone(), Packing::Raw), ("gz", gz, Packing::Gzip), ("xz", xz, Packing::Xz)]
    {
        assert_eq!(Packing::sniff(&bytes[..8]), packing, "{name}");
        let c = card(d.path(), 32 * BS);
        let f = flash(file(d.path(), name, &bytes), packing, None, &c, &Progress::default()).unwrap();
        assert_eq!(
            (f.written, f.image_bytes, f.sha256.clone()),
            (img.len() as u64, img.len() as u64, sha(&img)),
            "{name}"
        );
        assert_eq!(&std::fs::read(&c).unwrap()[..img.len()], &img[..], "{name}");
    }
}

#[test]
fn images_that_do_not_fit_or_lie_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (img, bmap) = image(16, &[0..=3]);
    // Larger than the card: refused before anything is written.
    let c = card(d.path(), 8 * BS);
    let e = flash(file(d.path(), "big", &img), Packing::Raw, None, &c, &Progress::default()).unwrap_err();
    assert!(matches!(&e, FlashError::Image(m) if m.contains("does not fit")), "{e}");
    assert!(std::fs::read(&c).unwrap().iter().all(|&x| x == 0xEE));
    // A packed one is stopped at the card's end.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&img).unwrap();
    let e = flash(file(d.path(), "big.gz", &gz.finish().unwrap()), Packing::Gzip, None, &c, &Progress::default())
        .unwrap_err();
    assert!(matches!(&e, FlashError::Image(m) if m.contains("larger than the card")), "{e}");
    assert_eq!(std::fs::metadata(&c).unwrap().len(), 8 * BS as u64);
    // Bytes that do not match the bmap's checksum.
    let mut other = img.clone();
    other[5] ^= 1;
    let c = card(d.path(), 32 * BS);
    let b = read_bmap(file(d.path(), "i.bmap", bmap.as_bytes())).unwrap();
    let e = flash(file(d.path(), "other", &other), Packing::Raw, Some(b), &c, &Progress::default()).unwrap_err();
    assert!(matches!(&e, FlashError::Image(m) if m.contains("do not match its bmap")), "{e}");
}

#[test]
fn hostile_bmaps_are_errors_not_panics() {
    let d = tempfile::tempdir().unwrap();
    let (_, bmap) = image(16, &[0..=3, 8..=9]);
    for bad in [
        bmap.replace("> 0-3 <", "> x-3 <"),
        bmap.replace("> 8-9 <", "> 1-2 <"),
        bmap.replace("<BlockSize> 4096", "<BlockSize> 0"),
        bmap.replace("> 8-9 <", "> 900-901 <"),
        "<bmap>".to_string(),
        String::from_utf8_lossy(&[0xff, 0xfe, 0x00]).into_owned(),
    ] {
        let r = read_bmap(file(d.path(), "bad.bmap", bad.as_bytes()));
        assert!(matches!(r, Err(FlashError::Image(_))), "{bad}: {r:?}");
    }
}

#[test]
fn a_wipe_zeroes_the_whole_card() {
    let d = tempfile::tempdir().unwrap();
    let c = card(d.path(), 3 * CHUNK + 512);
    wipe(&c).unwrap();
    let after = std::fs::read(&c).unwrap();
    assert_eq!(after.len(), 3 * CHUNK + 512);
    assert!(after.iter().all(|&x| x == 0));
}
