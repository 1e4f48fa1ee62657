//! The two calls of Linux's new mount API boardlab needs and libc does not
//! wrap: clone a mount tree into a detached descriptor, and attach such a
//! tree somewhere (which may be in another mount namespace by then).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

/// `open_tree(OPEN_TREE_CLONE)` of `path` (with everything below it when
/// `recursive`): a detached copy of that mount, owned by the descriptor.
pub fn clone_tree(path: &Path, recursive: bool) -> std::io::Result<OwnedFd> {
    let c = cstr(path)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree takes a NUL-terminated path that outlives the call
    // and returns a new descriptor (or -1), owned from here on.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `move_mount` of the detached `tree` onto `target` (resolved in the
/// caller's current mount namespace).
pub fn attach(tree: &OwnedFd, target: &Path) -> std::io::Result<()> {
    let t = cstr(target)?;
    let empty = c"";
    // SAFETY: move_mount takes the detached tree's descriptor, an empty
    // NUL-terminated path (MOVE_MOUNT_F_EMPTY_PATH) and the target's
    // NUL-terminated path; all outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
