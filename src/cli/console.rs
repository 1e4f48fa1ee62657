//! The client side of `console`: after the daemon's `{"ok":true}`, the
//! connection carries raw serial bytes both ways.
//!
//! One thread and `poll(2)` over stdin and the socket, so that the daemon
//! closing ends the session without a second thread left blocked (the end
//! of stdin does not: the output keeps coming, as with `ssh -n`). When stdin
//! is a terminal it is put in raw mode (so Ctrl-C reaches the board) and
//! restored by a guard on every way out of [`run`], panics included. Typing
//! `~.` right after a newline detaches, as in ssh; `~~` sends one `~`.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

/// Detects the `~.` escape in what the user types.
#[derive(Debug, Clone)]
pub struct Escape {
    line_start: bool,
    tilde: bool,
}

impl Default for Escape {
    fn default() -> Self {
        Escape { line_start: true, tilde: false }
    }
}

impl Escape {
    /// Appends the bytes to forward to `out`; returns true when the user
    /// asked to detach (the rest of `input` is then dropped).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if self.tilde {
                self.tilde = false;
                match b {
                    b'.' => return true,
                    b'~' => {
                        out.push(b'~');
                        self.line_start = false;
                        continue;
                    }
                    _ => out.push(b'~'),
                }
            } else if self.line_start && b == b'~' {
                self.tilde = true;
                self.line_start = false;
                continue;
            }
            out.push(b);
            self.line_start = b == b'\r' || b == b'\n';
        }
        false
    }
}

/// Restores the terminal settings it saved, when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSAFLUSH, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(io::stdin().as_fd(), SetArg::TCSAFLUSH, &self.saved);
    }
}

fn write_out(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// Runs the session. `pending` holds console bytes that arrived with the
/// reply. Returns when the user detaches or the daemon closes: whether the
/// session ended with the claim (the daemon's last line says how).
pub fn run(stream: UnixStream, pending: &[u8], read_only: bool) -> io::Result<bool> {
    let mut stdout = io::stdout().lock();
    let raw = RawMode::enter();
    if raw.is_some() {
        let _ = io::stderr().write_all(b"[console attached; type ~. at line start to detach]\r\n");
    }
    let result = write_out(&mut stdout, pending).and_then(|()| pump(&stream, &mut stdout, read_only));
    // Notices only for a person at a terminal; scripts get the bytes alone.
    let interactive = raw.is_some();
    drop(raw);
    match result {
        _ if !interactive => {}
        Ok(End::Detached) => {
            let _ = io::stderr().write_all(b"\n[console detached]\n");
        }
        Ok(End::Closed { .. }) => {
            let _ = io::stderr().write_all(b"\n[console closed by labd]\n");
        }
        Err(_) => {}
    }
    result.map(|e| matches!(e, End::Closed { claim_ended: true }))
}

/// The daemon's last line when a claim's session ends with the claim:
/// `[boardlab: your claim on B expired at T; console closed]`.
const CLAIM_ENDED: &[u8] = b"; console closed]";

/// How a session ended.
enum End {
    /// The user typed `~.`.
    Detached,
    /// The daemon closed the connection (`claim_ended`: saying the claim
    /// ended).
    Closed { claim_ended: bool },
}

fn pump(stream: &UnixStream, stdout: &mut impl Write, read_only: bool) -> io::Result<End> {
    let stdin = io::stdin();
    let stdin_fd = stdin.as_fd();
    let sock_fd = stream.as_fd();
    let mut escape = Escape::default();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    let mut fwd = Vec::with_capacity(buf.len() + 1);
    // The last bytes the daemon sent, for its closing line.
    let mut tail: Vec<u8> = Vec::with_capacity(256);
    let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
    loop {
        let mut fds = vec![PollFd::new(sock_fd, PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let sock_ready = fds[0].revents().is_some_and(|r| r.intersects(ready | PollFlags::POLLNVAL));
        let stdin_ready = stdin_open
            && fds.get(1).and_then(|f| f.revents()).is_some_and(|r| r.intersects(ready | PollFlags::POLLNVAL));
        drop(fds);
        if sock_ready {
            match nix::unistd::read(sock_fd.as_raw_fd(), &mut buf) {
                Ok(0) => {
                    let text = String::from_utf8_lossy(&tail);
                    let claim_ended = text.trim_end().ends_with(std::str::from_utf8(CLAIM_ENDED).unwrap_or("]"));
                    return Ok(End::Closed { claim_ended });
                }
                Ok(n) => {
                    let got = buf.get(..n).unwrap_or_default();
                    tail.extend_from_slice(got);
                    if tail.len() > 256 {
                        tail.drain(..tail.len() - 256);
                    }
                    write_out(stdout, got)?
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if stdin_ready {
            match nix::unistd::read(stdin_fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => {
                    // Nothing more to send (`</dev/null`, as `ssh -n`):
                    // keep showing output until the daemon closes (the
                    // claim ended) or we are stopped. The connection stays
                    // open both ways: its end would end the session.
                    stdin_open = false;
                }
                Ok(n) => {
                    fwd.clear();
                    let detach = escape.feed(buf.get(..n).unwrap_or_default(), &mut fwd);
                    if !read_only && !fwd.is_empty() {
                        (&*stream).write_all(&fwd)?;
                    }
                    if detach {
                        return Ok(End::Detached);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(e: &mut Escape, s: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let d = e.feed(s, &mut out);
        (out, d)
    }

    #[test]
    fn detach_at_line_start_only() {
        assert_eq!(feed(&mut Escape::default(), b"~."), (vec![], true));
        assert_eq!(feed(&mut Escape::default(), b"ls\r~.rest"), (b"ls\r".to_vec(), true));
        assert_eq!(feed(&mut Escape::default(), b"a~.b"), (b"a~.b".to_vec(), false));
        assert_eq!(feed(&mut Escape::default(), b"~~.\n"), (b"~.\n".to_vec(), false));
        assert_eq!(feed(&mut Escape::default(), b"~x"), (b"~x".to_vec(), false));
    }

    #[test]
    fn escape_split_across_reads() {
        let mut e = Escape::default();
        assert_eq!(feed(&mut e, b"x\n"), (b"x\n".to_vec(), false));
        assert_eq!(feed(&mut e, b"~"), (vec![], false));
        assert_eq!(feed(&mut e, b"."), (vec![], true));
    }
}
