//! Socket I/O: a blocking JSON-lines connection to labd.
//!
//! Blocking std I/O on purpose: one request and one reply need no runtime,
//! and `labcli status` must start and finish in a few milliseconds.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Longest reply line accepted. Replies (a `dump` of a big lab) may be far
/// longer than requests, but a bound keeps a broken peer from filling memory.
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

/// The jail socket, preferred when present.
pub const JAIL_SOCKET: &str = "/run/boardlab/jail.sock";
/// The main socket.
pub const MAIN_SOCKET: &str = "/run/boardlab/labd.sock";

/// Picks the socket: `--socket`, else `$LABD_SOCKET`, else the jail socket if
/// it exists, else the main socket.
pub fn socket_path(option: Option<&str>, env: Option<&str>, jail_exists: impl FnOnce() -> bool) -> PathBuf {
    match (option, env) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
        _ if jail_exists() => PathBuf::from(JAIL_SOCKET),
        _ => PathBuf::from(MAIN_SOCKET),
    }
}

/// What one bounded line read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, without its `\n`, is in the buffer.
    Full,
    /// The last line had no `\n`; it is in the buffer.
    Partial,
    /// The line was longer than the limit; it has been consumed and dropped.
    TooLong,
    /// End of input, nothing read.
    Eof,
}

/// Reads one line into `buf` (cleared first) without ever holding more than
/// `max` bytes of it: a longer line is skipped to its end and reported.
pub fn read_line_bounded(r: &mut impl BufRead, max: usize, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Eof,
                (false, false) => Line::Partial,
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(n) => (n, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Full });
        }
    }
}

/// Why talking to the daemon failed. All of these mean exit status 3.
#[derive(Debug)]
pub enum ClientError {
    Connect {
        path: PathBuf,
        err: io::Error,
    },
    Send {
        path: PathBuf,
        err: io::Error,
    },
    Receive {
        path: PathBuf,
        err: io::Error,
    },
    /// The daemon closed the connection before replying.
    Closed {
        path: PathBuf,
    },
    /// A reply longer than [`MAX_REPLY`].
    ReplyTooLong {
        path: PathBuf,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { path, err } => {
                write!(f, "cannot connect to labd at {}: {err}; {}", path.display(), connect_hint(err))
            }
            ClientError::Send { path, err } => {
                write!(f, "cannot send to labd at {}: {err}", path.display())
            }
            ClientError::Receive { path, err } => {
                write!(f, "cannot read from labd at {}: {err}", path.display())
            }
            ClientError::Closed { path } => {
                write!(f, "labd at {} closed the connection before replying", path.display())
            }
            ClientError::ReplyTooLong { path } => {
                write!(f, "labd at {} sent a reply longer than {MAX_REPLY} bytes", path.display())
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// What to check when the socket does not answer.
fn connect_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::NotFound => {
            "no socket there: is labd running, and does --socket or LABD_SOCKET name its socket (daemon.socket)?"
        }
        io::ErrorKind::PermissionDenied => {
            "you may not use that socket: is your account in its group (daemon.socket_group)? \
             (a new group needs a new login)"
        }
        io::ErrorKind::ConnectionRefused => {
            "nobody listens there: labd is not running (the file is left from one that stopped)"
        }
        _ => "is labd running, and does --socket or LABD_SOCKET name its socket?",
    }
}

/// One connection to labd.
pub struct Client {
    path: PathBuf,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let connect_err = |err| ClientError::Connect { path: path.to_path_buf(), err };
        let writer = UnixStream::connect(path).map_err(connect_err)?;
        let reader = BufReader::new(writer.try_clone().map_err(connect_err)?);
        Ok(Client { path: path.to_path_buf(), writer, reader, buf: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request line and returns the reply line (without newline).
    pub fn call(&mut self, line: &str) -> Result<String, ClientError> {
        let mut out = Vec::with_capacity(line.len() + 1);
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        self.writer.write_all(&out).map_err(|err| ClientError::Send { path: self.path.clone(), err })?;
        let got = read_line_bounded(&mut self.reader, MAX_REPLY, &mut self.buf)
            .map_err(|err| ClientError::Receive { path: self.path.clone(), err })?;
        match got {
            Line::Full => Ok(String::from_utf8_lossy(&self.buf).into_owned()),
            // A reply cut short by a close is not a reply.
            Line::Partial | Line::Eof => Err(ClientError::Closed { path: self.path.clone() }),
            Line::TooLong => Err(ClientError::ReplyTooLong { path: self.path.clone() }),
        }
    }

    /// Gives up the line framing: the stream, plus any bytes the daemon sent
    /// after the last reply that are already buffered (console output).
    pub fn into_raw(self) -> (UnixStream, Vec<u8>) {
        let pending = self.reader.buffer().to_vec();
        (self.writer, pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        // A tiny buffer so that lines straddle refills.
        let mut r = BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let l = read_line_bounded(&mut r, max, &mut buf).unwrap();
            if l == Line::Eof {
                return out;
            }
            out.push((l, buf.clone()));
        }
    }

    #[test]
    fn bounded_lines() {
        let got = lines(b"ab\n\nabcdefgh\nxyz\nlast", 4);
        assert_eq!(
            got,
            vec![
                (Line::Full, b"ab".to_vec()),
                (Line::Full, b"".to_vec()),
                (Line::TooLong, b"".to_vec()),
                (Line::Full, b"xyz".to_vec()),
                (Line::Partial, b"last".to_vec()),
            ]
        );
        assert_eq!(lines(b"abcd\n", 4), vec![(Line::Full, b"abcd".to_vec())]);
        assert_eq!(lines(b"abcde", 4), vec![(Line::TooLong, b"".to_vec())]);
        assert!(lines(b"", 4).is_empty());
    }

    #[test]
    fn socket_choice() {
        assert_eq!(socket_path(Some("/a"), Some("/b"), || true), PathBuf::from("/a"));
        assert_eq!(socket_path(None, Some("/b"), || true), PathBuf::from("/b"));
        assert_eq!(socket_path(None, Some(""), || true), PathBuf::from(JAIL_SOCKET));
        assert_eq!(socket_path(None, None, || true), PathBuf::from(JAIL_SOCKET));
        assert_eq!(socket_path(None, None, || false), PathBuf::from(MAIN_SOCKET));
    }
}
