//! The board's console as a device node inside its claim's jail: a pty
//! pair whose slave the jail binds at /dev/console-board, relayed by labd
//! to and from the console pump like any other session.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tracing::debug;

use super::Console;

/// A running relay. Dropping it stops the relay and closes the pty.
pub struct Relay {
    task: JoinHandle<()>,
    /// The slave's path (/dev/pts/N), for the jail to bind.
    pub slave: PathBuf,
    /// Kept open so that the master never sees a hang-up while the jail
    /// has the device closed: output then waits in (or overflows) the
    /// pty's buffer, as on a wire nobody reads.
    _slave_fd: OwnedFd,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Makes the pty pair and starts relaying.
    pub fn start(console: &Console) -> io::Result<Relay> {
        let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
        let mut t = nix::sys::termios::tcgetattr(&pty.slave).map_err(io::Error::from)?;
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).map_err(io::Error::from)?;
        let slave = nix::unistd::ttyname(pty.slave.as_fd()).map_err(io::Error::from)?;
        let flags =
            nix::fcntl::fcntl(pty.master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(pty.master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
        // SAFETY: `pty.master` is an OwnedFd moved into the AsyncFd: it is a
        // valid open descriptor, nothing else can close it, and an OwnedFd's
        // as_raw_fd always returns the same descriptor until it is dropped
        // together with the AsyncFd.
        let master = unsafe { AsyncFd::register(pty.master) }.map_err(|e| io::Error::other(e.to_string()))?;
        let mut session = console.attach(false);
        let writer = console.device_writer();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                tokio::select! {
                    chunk = session.output.recv() => {
                        let Some(chunk) = chunk else { return };
                        // Non-blocking: if the jail does not read, the
                        // pty fills and the rest is dropped, never queued
                        // without bound.
                        let mut rest = &chunk[..];
                        while !rest.is_empty() {
                            match nix::unistd::write(master.get_ref(), rest) {
                                Ok(n) => rest = &rest[n..],
                                Err(nix::errno::Errno::EINTR) => {}
                                Err(_) => break,
                            }
                        }
                    }
                    ready = master.readable() => {
                        let Ok(mut guard) = ready else { return };
                        match guard.try_io(|fd| nix::unistd::read(fd.get_ref().as_raw_fd(), &mut buf).map_err(io::Error::from)) {
                            Ok(Ok(0)) => {}
                            Ok(Ok(n)) => {
                                if let Err(e) = writer.write(&buf[..n]).await {
                                    debug!("jail console input dropped: {e}");
                                }
                            }
                            Ok(Err(e)) => {
                                debug!("jail console relay: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                            Err(_would_block) => {}
                        }
                    }
                }
            }
        });
        Ok(Relay { task, slave, _slave_fd: pty.slave })
    }
}
