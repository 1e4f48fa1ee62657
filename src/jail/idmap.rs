//! Writable `/usr` and `/var/lib/dpkg` in a jail, without touching the
//! host's: an overlay whose lower layer is an *idmapped*, read-only view
//! of the host directory, and whose upper layer is on the claim's own
//! file system.
//!
//! Why idmapped: the host's `/usr` belongs to host root, which is not
//! mapped in the jail's user namespace, so the jail's root could not copy
//! a file up to change it (or create one in a root-owned directory). The
//! view shifts host ids 0..65535 onto the jail's range, so inside the jail
//! the files belong to its root, while the host's own files stay read-only
//! (the view is a read-only mount) and unchanged (writes go to the upper
//! layer). The jail's init mounts the overlays itself, as root of its user
//! namespace (`userxattr`), so every copy-up runs with the jail's
//! credentials, never the host's.
//!
//! What this shows the jail beyond what it saw: the few host files under
//! these directories that are not world-readable (polkit's rules) and the
//! host's package database. Never `/etc`, whose secrets stay unreadable.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::JailError;

/// The overlays of a jail: (name, host directory, path in the jail).
pub const OVERLAYS: &[(&str, &str, &str)] = &[("usr", "/usr", "usr"), ("dpkg", "/var/lib/dpkg", "var/lib/dpkg")];

/// Where, under the jail's root, the lower views are mounted (host root
/// makes them) and the upper layers are bound (from the claim's data).
pub const LOWER_DIR: &str = ".boardlab/lower";
pub const UPPER_DIR: &str = ".boardlab/overlay";

fn sys(what: &'static str) -> impl FnOnce(std::io::Error) -> JailError {
    move |source| JailError::Sys { what, source }
}

/// Mounts at `dst` a read-only view of the host tree `src` whose owners
/// are shifted through the user namespace `userns` (host root, in a mount
/// namespace of its own).
pub fn idmapped_ro_bind(src: &Path, dst: &Path, userns: &File) -> Result<(), JailError> {
    let empty = c"";
    let tree = super::mount_api::clone_tree(src, true).map_err(sys("open_tree"))?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd()).unwrap_or(0),
    };
    // SAFETY: `tree` is a detached mount tree we own; `attr` lives across
    // the call and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(sys("mount_setattr (idmapped view)")(std::io::Error::last_os_error()));
    }
    super::mount_api::attach(&tree, dst).map_err(sys("move_mount"))?;
    Ok(())
}

/// The overlay options of one layer, with paths relative to the jail's
/// root (the caller's working directory): no host path, so no ',' or ':'
/// of root_dir can reach the option string.
pub fn overlay_options(name: &str) -> String {
    format!(
        "lowerdir=./{LOWER_DIR}/{name},upperdir=./{UPPER_DIR}/{name}/upper,workdir=./{UPPER_DIR}/{name}/work,userxattr"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_relative_and_userxattr() {
        assert_eq!(
            overlay_options("usr"),
            "lowerdir=./.boardlab/lower/usr,upperdir=./.boardlab/overlay/usr/upper,workdir=./.boardlab/overlay/usr/work,userxattr"
        );
        assert!(OVERLAYS.iter().all(|(_, host, inside)| host.trim_start_matches('/') == *inside));
    }
}
