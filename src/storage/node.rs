//! The card's device node for a claim's jail.
//!
//! Each board with a card has a directory of its own on the host,
//! `[jail] root_dir/.sd/BOARD` (host root, 0755, in a 0700 parent), which
//! every jail of the board sees at `/dev/.sd` (bound with device nodes
//! allowed; `/dev/sdcard` is a symlink to `.sd/sdcard`). With the card on
//! the host side labd makes `sdcard` there: a block node of the card's
//! device, owned by the jail's root (its host uid), mode 0600, so no one
//! else (no other jail's uid, no host user) may open it. Taking the card
//! away removes the node; the jail cannot make one itself (mknod needs
//! the host's capability) nor write in the directory (host root's).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};

/// The node's name in the board's directory.
pub const NODE: &str = "sdcard";

/// The board's directory under the jails' `root_dir`.
pub fn board_dir(root_dir: &Path, board: &str) -> PathBuf {
    root_dir.join(".sd").join(board)
}

/// Makes the board's directory (and its 0700 parent) if needed; it must
/// be a real directory.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if let Some(top) = dir.parent() {
        std::fs::create_dir_all(top)?;
        std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(io::Error::other(format!("{} is not a directory", dir.display()))),
        Err(_) => std::fs::create_dir(dir)?,
    }
    std::os::unix::fs::chown(dir, Some(0), Some(0))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// Makes `dir/sdcard` the block device `dev`, for `uid` alone.
pub fn plug(dir: &Path, dev: &Path, uid: u32) -> io::Result<()> {
    let meta = std::fs::metadata(dev)?;
    if !meta.file_type().is_block_device() {
        return Err(io::Error::other(format!("{} is not a block device", dev.display())));
    }
    ensure_dir(dir)?;
    let tmp = dir.join(format!(".{NODE}.new"));
    let _ = std::fs::remove_file(&tmp);
    nix::sys::stat::mknod(&tmp, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), meta.rdev())?;
    let done = std::os::unix::fs::chown(&tmp, Some(uid), Some(uid))
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)))
        .and_then(|()| std::fs::rename(&tmp, dir.join(NODE)));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Removes the node (nothing to do when there is none).
pub fn unplug(dir: &Path) -> io::Result<()> {
    for name in [NODE.to_string(), format!(".{NODE}.new")] {
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Whether the node is there.
pub fn plugged(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(NODE)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_per_board_under_root_dir() {
        assert_eq!(
            board_dir(Path::new("/var/lib/boardlab/jails"), "rp-1"),
            Path::new("/var/lib/boardlab/jails/.sd/rp-1")
        );
    }

    #[test]
    fn unplugging_nothing_is_fine_and_a_file_is_not_a_card() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join(".sd/b");
        unplug(&dir).unwrap();
        let f = d.path().join("plain");
        std::fs::write(&f, b"x").unwrap();
        assert!(plug(&dir, &f, 1234).is_err());
        assert!(!plugged(&dir));
    }
}
