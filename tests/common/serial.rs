//! A board's serial line as a test sees it: the pty slave opened raw, as
//! labd opens it. Included by path by the tests that play labd's part.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios;

pub struct Serial {
    f: File,
    pub seen: Vec<u8>,
}

impl Serial {
    pub fn open(path: &Path) -> Serial {
        let f = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut t = termios::tcgetattr(&f).expect("tcgetattr");
        termios::cfmakeraw(&mut t);
        termios::cfsetspeed(&mut t, termios::BaudRate::B115200).expect("cfsetspeed");
        termios::tcsetattr(&f, termios::SetArg::TCSANOW, &t).expect("tcsetattr");
        Serial { f, seen: Vec::new() }
    }

    fn has(&self, want: &[u8]) -> bool {
        !want.is_empty() && self.seen.windows(want.len()).any(|w| w == want)
    }

    /// Reads for up to `limit`, stopping early once `want` has been seen
    /// (since the last `take`).
    pub fn read_until(&mut self, want: impl AsRef<[u8]>, limit: Duration) -> bool {
        let want = want.as_ref();
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < limit {
            if self.has(want) {
                return true;
            }
            let mut fds = [PollFd::new(self.f.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(50u8)).unwrap_or(0) > 0 {
                if let Ok(n) = self.f.read(&mut buf) {
                    self.seen.extend_from_slice(&buf[..n]);
                }
            }
        }
        self.has(want)
    }

    /// What was read so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// What was read so far, forgetting it.
    pub fn take(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.seen)).into_owned()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.f.write_all(bytes).expect("write serial");
    }
}
