//! A claim's own file systems: sparse ext4 images, loop-mounted by host
//! root, so what a jail writes fills its own cap and never the host's
//! disk. Two per claim (see [`super::fs`] and [`super::nfs`]):
//!
//! * `data.img` on `root_dir/BOARD`: everything the jail may write
//!   (`/root`, `/home`, `/var`, `/tmp`, `/etc`, `/tftpboot`, `/usr/local`,
//!   and the upper layers of `/usr`), `[jail] data_size`;
//! * `nfsroot.img` on `root_dir/BOARD/nfsroot`: what the board mounts over
//!   NFS, `[jail] nfsroot_size`, a file system of its own so NFS file
//!   handles resolve nowhere else.
//!
//! The images live in `root_dir/.state/BOARD` (host root, 0700): neither
//! the jail nor the board ever writes an image itself, only files through
//! the kernel's ext4, so no crafted file system is ever mounted. An image
//! is made under a temporary name and renamed once mkfs succeeded; an
//! existing one gets `e2fsck -p` before it is mounted again.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::JailError;

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JailError {
    let path = path.to_path_buf();
    move |source| JailError::Io { what, path, source }
}

/// Runs a program with explicit arguments and a clean environment.
pub fn run(prog: &str, args: &[&OsStr]) -> Result<(), JailError> {
    let command = || format!("{prog} {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let o = Command::new(prog)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| JailError::Command { command: command(), detail: e.to_string() })?;
    if o.status.success() {
        Ok(())
    } else {
        Err(JailError::Command {
            command: command(),
            detail: format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
        })
    }
}

/// Makes `dir` (host root, `mode`) if needed; it must be a real directory.
pub fn ensure_private_dir(dir: &Path, mode: u32) -> Result<(), JailError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
        Ok(_) => return Err(JailError::Unsafe { path: dir.to_path_buf(), why: "not a directory" }),
        Err(_) => std::fs::create_dir_all(dir).map_err(io("creating", dir))?,
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io("setting mode of", dir))
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(d), Some(Ok(p))) = (std::fs::symlink_metadata(dir), dir.parent().map(std::fs::symlink_metadata)) else {
        return false;
    };
    d.is_dir() && !d.file_type().is_symlink() && d.dev() != p.dev()
}

/// Gives `dir` a file system of its own: the sparse ext4 image `img` of
/// `size` bytes (made if missing, its root directory owned by
/// `root_owner`, else checked with `e2fsck -p`), loop-mounted nosuid,
/// nodev. A mount left on the directory (a crashed labd) is replaced.
/// Returns whether the image was made now.
pub fn mount(img: &Path, dir: &Path, size: u64, root_owner: u32) -> Result<bool, JailError> {
    let mut left = Vec::new();
    unmount(img, dir, &mut left);
    if !left.is_empty() {
        return Err(JailError::Exists(left.join("; ")));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
        Err(_) => std::fs::create_dir(dir).map_err(io("creating", dir))?,
        _ => return Err(JailError::Unsafe { path: dir.to_path_buf(), why: "a mount point must be a plain directory" }),
    }
    let fresh = match std::fs::symlink_metadata(img) {
        Ok(m) if m.is_file() => false,
        Ok(_) => return Err(JailError::Unsafe { path: img.to_path_buf(), why: "an image must be a plain file" }),
        Err(_) => true,
    };
    if fresh {
        make(img, size, root_owner)?;
    } else if !cleanly_unmounted(img) {
        run("e2fsck", &["-p".as_ref(), img.as_os_str()])?;
    }
    run(
        "mount",
        &[
            "-t".as_ref(),
            "ext4".as_ref(),
            "-o".as_ref(),
            "loop,nosuid,nodev".as_ref(),
            img.as_os_str(),
            dir.as_os_str(),
        ],
    )?;
    if fresh {
        // mkfs's lost+found belongs to host root; e2fsck makes it again
        // if it ever needs one.
        let _ = std::fs::remove_dir(dir.join("lost+found"));
    }
    Ok(fresh)
}

/// Makes the empty image `img` of `size` bytes, its root directory owned
/// by `root_owner`, unless it exists: what a board prepares for its next
/// claim once a claim's images are gone, off the claim's path.
pub fn prepare(img: &Path, size: u64, root_owner: u32) -> Result<(), JailError> {
    if std::fs::symlink_metadata(img).is_ok() {
        return Ok(());
    }
    make(img, size, root_owner)
}

/// Whether an ext4 image's superblock says it was cleanly unmounted and
/// needs neither a check nor a journal replay (what `e2fsck -p` would
/// find before saying "clean").
pub fn cleanly_unmounted(img: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = std::fs::File::open(img) else { return false };
    let mut sb = [0u8; 100];
    if f.read_exact_at(&mut sb, 1024).is_err() {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    let magic = u16_at(56) == 0xEF53;
    // s_state: VALID (1) set, ERROR (2) not; s_feature_incompat: no
    // RECOVER (4, a journal to replay).
    magic && u16_at(58) & 3 == 1 && u32_at(96) & 4 == 0
}

/// mkfs under a temporary name, renamed once it succeeded: a crash never
/// leaves a half-made image under the real name.
fn make(img: &Path, size: u64, root_owner: u32) -> Result<(), JailError> {
    let tmp = img.with_extension("img.new");
    let _ = std::fs::remove_file(&tmp);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    f.set_len(size).map_err(io("sizing", &tmp))?;
    drop(f);
    let owner = format!("lazy_itable_init=1,lazy_journal_init=1,root_owner={root_owner}:{root_owner}");
    let r = run(
        "mkfs.ext4",
        &["-q".as_ref(), "-F".as_ref(), "-m".as_ref(), "0".as_ref(), "-E".as_ref(), owner.as_ref(), tmp.as_os_str()],
    );
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, img).map_err(io("renaming", &tmp))
}

/// Loop devices backed by `img`.
fn loop_devices(img: &Path) -> Vec<String> {
    Command::new("losetup")
        .args(["-n", "-O", "NAME", "-j"])
        .arg(img)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
        })
        .unwrap_or_default()
}

/// Unmounts `dir` (every mount stacked on it) and detaches `img`'s loop
/// devices. Idempotent. Nothing may use the file system any more (the
/// jail's processes and its NFS server are gone). Failures go to `errors`.
pub fn unmount(img: &Path, dir: &Path, errors: &mut Vec<String>) {
    use nix::mount::{umount2, MntFlags};
    let mut n = 0;
    while is_mount_point(dir) {
        n += 1;
        if n > 8 {
            errors.push(format!("{} stays mounted", dir.display()));
            return;
        }
        if let Err(e) = umount2(dir, MntFlags::UMOUNT_NOFOLLOW) {
            if e == nix::errno::Errno::EBUSY {
                // Something on the host still uses it: detach it from the
                // tree now; the loop device goes when the last user does.
                tracing::warn!("{} busy, detaching it lazily", dir.display());
                if let Err(e) = umount2(dir, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                    errors.push(format!("unmounting {}: {e}", dir.display()));
                    return;
                }
            } else {
                errors.push(format!("unmounting {}: {e}", dir.display()));
                return;
            }
        }
    }
    if !img.exists() {
        return;
    }
    // mount -o loop sets autoclear: the device goes with the last unmount,
    // asynchronously on recent kernels. Wait a little, then detach.
    let t = Instant::now();
    let mut devs = loop_devices(img);
    while !devs.is_empty() && t.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(10));
        devs = loop_devices(img);
    }
    for d in devs {
        if let Err(e) = run("losetup", &["-d".as_ref(), d.as_ref()]) {
            errors.push(format!("detaching {d} ({}): {e}", img.display()));
        }
    }
}

/// The images of a claim and ganesha's files: `root_dir/.state/BOARD`.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    let board = data_dir.file_name().unwrap_or_default();
    data_dir.parent().unwrap_or(Path::new("/")).join(".state").join(board)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_image_needs_no_check_and_a_used_one_does() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("t.img");
        // Not an image at all.
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        assert!(!cleanly_unmounted(&img));
        std::fs::remove_file(&img).unwrap();
        prepare(&img, 64 << 20, 0).expect("mkfs.ext4 (e2fsprogs, installed by make deps)");
        assert!(cleanly_unmounted(&img), "a fresh image is clean");
        // An error state, or a journal to replay (RECOVER): checked.
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&img).unwrap();
        f.write_all_at(&[3, 0], 1024 + 58).unwrap();
        assert!(!cleanly_unmounted(&img), "an image in error state is checked");
        f.write_all_at(&[1, 0], 1024 + 58).unwrap();
        assert!(cleanly_unmounted(&img));
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 1024 + 96).unwrap();
        let incompat = u32::from_le_bytes(b) | 4;
        f.write_all_at(&incompat.to_le_bytes(), 1024 + 96).unwrap();
        assert!(!cleanly_unmounted(&img), "an image with a journal to replay is checked");
    }
}
