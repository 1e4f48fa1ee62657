//! A board's serial adapter: a pseudo-terminal pair. The board process owns
//! the master; `DIR/tty/<board>` points at the slave (`/dev/pts/N`), which
//! labd opens and configures like any serial device.
//!
//! Like a real UART, output nobody listens to is lost: when no process has
//! the slave open the master reports POLLHUP and we drop what we would have
//! written (the kernel would otherwise queue it and replay stale boot logs
//! to the next reader). A full buffer (EAGAIN) likewise drops output rather
//! than blocking the board.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::termios;

use super::{Result, SimError};

/// One plugged-in serial adapter.
pub struct Console {
    master: PtyMaster,
    /// The symlink labd opens.
    link: PathBuf,
    /// The slave device the link points to.
    slave: PathBuf,
}

impl Console {
    /// Creates a pty pair and points `link` at its slave (atomically, so a
    /// reader never sees a missing or half-made link during a re-plug).
    pub fn create(link: &Path) -> Result<Console> {
        let sys = |what: &'static str| move |e: nix::Error| SimError::Sys { what: what.into(), source: e.into() };
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(sys("posix_openpt"))?;
        grantpt(&master).map_err(sys("grantpt"))?;
        unlockpt(&master).map_err(sys("unlockpt"))?;
        let flags = fcntl(master.as_raw_fd(), FcntlArg::F_GETFL).map_err(sys("fcntl(F_GETFL) on pty master"))?;
        fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
            .map_err(sys("fcntl(F_SETFL) on pty master"))?;
        let slave = PathBuf::from(ptsname_r(&master).map_err(sys("ptsname_r"))?);
        // Open the slave once: set a serial-like raw 115200 line (kept while
        // the master lives), and leave it closed so the master starts in the
        // "nobody listening" (POLLHUP) state.
        let s = std::fs::File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(&slave)
            .map_err(SimError::io("opening pty slave", &slave))?;
        if let Ok(mut t) = termios::tcgetattr(&s) {
            termios::cfmakeraw(&mut t);
            let _ = termios::cfsetspeed(&mut t, termios::BaudRate::B115200);
            let _ = termios::tcsetattr(&s, termios::SetArg::TCSANOW, &t);
        }
        drop(s);
        let tmp = link.with_extension("plugging");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&slave, &tmp).map_err(SimError::io("creating symlink", &tmp))?;
        std::fs::rename(&tmp, link).map_err(SimError::io("renaming symlink into place", link))?;
        Ok(Console { master, link: link.to_path_buf(), slave })
    }

    /// The master, for polling.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Whether some process has the slave open.
    pub fn listening(&self) -> bool {
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => !fds[0].revents().unwrap_or(PollFlags::empty()).contains(PollFlags::POLLHUP),
            Err(_) => false,
        }
    }

    /// Writes to the line if anyone listens; drops output otherwise or when
    /// the buffer is full. Never blocks.
    pub fn write(&mut self, bytes: &[u8]) {
        if !self.listening() {
            return;
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.master.write(rest) {
                Ok(0) => return,
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EAGAIN (full), EIO (slave closed meanwhile): the bytes are lost, as on a wire.
                Err(_) => return,
            }
        }
    }

    /// Writes all of `bytes`, waiting while the line's buffer is full, as a
    /// UART with hardware flow control would. The wait polls for room and
    /// also simply tries again every 100 ms (a pty's "room again" wake-up
    /// has been seen to go missing under load); it gives up only when the
    /// reader has taken nothing for 10 s. Returns false then.
    pub fn write_paced(&mut self, bytes: &[u8]) -> bool {
        let mut rest = bytes;
        let mut stuck_since: Option<std::time::Instant> = None;
        while !rest.is_empty() {
            match self.master.write(rest) {
                Ok(0) => return false,
                Ok(n) => {
                    rest = &rest[n..];
                    stuck_since = None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let since = *stuck_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > std::time::Duration::from_secs(10) {
                        return false;
                    }
                    let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(100u16));
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads what the other side typed, if anything (non-blocking).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        // EAGAIN (nothing typed) and EIO (slave closed) both mean "no input".
        self.master.read(buf).unwrap_or_default()
    }

    /// The slave device path.
    pub fn slave(&self) -> &Path {
        &self.slave
    }

    /// Unplugs the adapter: the link goes away (if it is still ours) and the
    /// master closes, so whoever has the slave open sees a hang-up.
    pub fn unplug(self) {
        if std::fs::read_link(&self.link).map(|t| t == self.slave).unwrap_or(false) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}
