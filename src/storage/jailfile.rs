//! Opening a file of a claim's jail, as the jail's root would: the image
//! of `labcli sd flash PATH`.
//!
//! labd is host root; the jail's root is not. Opened by labd, a path in
//! the jail could reach what the jail's root cannot read (the host's
//! `/etc/shadow` is visible, unreadable, at `/.host-etc/shadow`) and the
//! card would hand it over. So a helper process, `labjail open PID START
//! PATH`, takes the jail's credentials first (its user namespace, then
//! uid and gid 0 there: the jail's root, with its capabilities over the
//! jail's own files only), resolves PATH with `openat2` from the jail
//! init's root directory with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`
//! (an absolute symlink or `..` stays inside the jail; `/proc/*/root`
//! leads nowhere), opens it read-only and non-blocking (a FIFO does not
//! hang it), refuses anything but a regular file, and passes the
//! descriptor back over its stdout, a Unix socket (SCM_RIGHTS).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path};
use std::process::{Command, Stdio};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Why a jail's file was not opened. `Refused` is the user's doing (the
/// message is for them); `Failed` is labd's or the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// No such file (a `.bmap` beside an image is optional).
    Missing(String),
    Refused(String),
    Denied(String),
    Failed(String),
}

/// A path as the jail's user gave it: absolute, no `..`, no NUL, not
/// absurdly long. Symlinks are resolved inside the jail by the helper.
pub fn check_path(path: &str) -> Result<(), OpenError> {
    if path.is_empty() || path.len() > 4096 || path.contains('\0') {
        return Err(OpenError::Refused("the image path must be 1 to 4096 bytes, without NUL".into()));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(OpenError::Refused(format!("the image path {path:?} must be absolute (a path in the jail)")));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(OpenError::Refused(format!("the image path {path:?} must not contain '..'")));
    }
    Ok(())
}

/// Opens `path` in the jail whose init is `pid` (started at `start`), as
/// the jail's root, through `labjail open`.
pub fn open_in_jail(init_exe: &Path, pid: i32, start: u64, path: &str) -> Result<std::fs::File, OpenError> {
    check_path(path)?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| OpenError::Failed(format!("a socket pair: {e}")))?;
    let child = Command::new(init_exe)
        .arg("open")
        .arg(pid.to_string())
        .arg(start.to_string())
        .arg(path)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| OpenError::Failed(format!("running {} open: {e}", init_exe.display())))?;
    let out = child.wait_with_output().map_err(|e| OpenError::Failed(format!("waiting for labjail open: {e}")))?;
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match out.status.code() {
        Some(0) => {}
        Some(3) => return Err(OpenError::Refused(msg)),
        Some(4) => return Err(OpenError::Denied(msg)),
        Some(5) => return Err(OpenError::Missing(msg)),
        _ => return Err(OpenError::Failed(if msg.is_empty() { out.status.to_string() } else { msg })),
    }
    let fd = receive_fd(ours.as_raw_fd()).map_err(OpenError::Failed)?;
    Ok(std::fs::File::from(fd))
}

fn receive_fd(sock: RawFd) -> Result<OwnedFd, String> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| format!("receiving the image's descriptor: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("reading the descriptor message: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed `fd` in this process
                // for us (SCM_RIGHTS); nobody else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                for &extra in &fds[1..] {
                    // SAFETY: as above; extra descriptors are closed at once.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                return Ok(owned);
            }
        }
    }
    Err("labjail open sent no descriptor".into())
}

/// `labjail open PID START PATH`. Exit 0: the descriptor went to stdout;
/// 3: refused (not a regular file, out of the jail); 4: the jail's root
/// may not read it; 5: no such file; 1: anything else.
pub fn open_main(pid: &str, start: &str, path: &str) -> i32 {
    match open_as_jail_root(pid, start, path) {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprintln!("{msg}");
            code
        }
    }
}

fn open_as_jail_root(pid: &str, start: &str, path: &str) -> Result<(), (i32, String)> {
    let fail = |m: String| (1, m);
    check_path(path).map_err(|e| match e {
        OpenError::Missing(m) | OpenError::Refused(m) | OpenError::Denied(m) | OpenError::Failed(m) => (3, m),
    })?;
    let pid: i32 = pid.parse().map_err(|_| fail(format!("bad PID {pid:?}")))?;
    let start: u64 = start.parse().map_err(|_| fail(format!("bad start time {start:?}")))?;
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .map_err(|e| fail(format!("the jail's user namespace: {e}")))?;
    let root = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| fail(format!("the jail's root: {e}")))?;
    // SAFETY: open just returned this descriptor; it is owned here.
    let root = unsafe { OwnedFd::from_raw_fd(root) };
    // Both held: now check they are still the jail's.
    if crate::jail::proc_start_time(pid) != Some(start) {
        return Err(fail(format!("process {pid} is not the jail's init any more")));
    }
    nix::unistd::setgroups(&[]).map_err(|e| fail(format!("dropping groups: {e}")))?;
    nix::sched::setns(&userns, nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| fail(format!("entering the jail's user namespace: {e}")))?;
    let zero_g = nix::unistd::Gid::from_raw(0);
    let zero_u = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(zero_g, zero_g, zero_g).map_err(|e| fail(format!("becoming the jail's root (gid): {e}")))?;
    nix::unistd::setresuid(zero_u, zero_u, zero_u).map_err(|e| fail(format!("becoming the jail's root (uid): {e}")))?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(root.as_raw_fd(), rel, how).map_err(|e| match e {
        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => (4, format!("{path}: the jail's root may not read it")),
        nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => (5, format!("{path}: no such file in the jail")),
        nix::errno::Errno::ELOOP => (3, format!("{path}: too many symlinks, or a /proc link")),
        nix::errno::Errno::EXDEV => (3, format!("{path}: leads out of the jail")),
        e => (1, format!("{path}: {e}")),
    })?;
    // SAFETY: openat2 just returned this descriptor; it is owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| fail(format!("{path}: {e}")))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err((3, format!("{path}: not a regular file (a device, FIFO, socket or directory is not an image)")));
    }
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))
        .map_err(|e| fail(format!("{path}: {e}")))?;
    let byte = [1u8];
    let iov = [IoSlice::new(&byte)];
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(1, &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map_err(|e| fail(format!("passing the descriptor to labd: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_before_any_helper_runs() {
        assert!(check_path("/root/card.img").is_ok());
        assert!(check_path("/").is_ok());
        for bad in ["", "card.img", "/root/../etc/shadow", "/a/..", "/a\0b"] {
            assert!(matches!(check_path(bad), Err(OpenError::Refused(_))), "{bad:?}");
        }
        assert!(check_path(&format!("/{}", "a".repeat(5000))).is_err());
    }
}
