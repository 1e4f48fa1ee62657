//! Console logs on disk: one file set per claim, rotated by size.
//!
//! All file I/O for one console runs on a dedicated std thread fed by a
//! channel ([`LogSender`]). Why a thread and not `tokio::fs`:
//! - a write to a busy disk can block for a long time (journal commits,
//!   another process calling `fsync`); the pump and the actor loop must not
//!   notice, and `tokio::fs` would pay one `spawn_blocking` hop per chunk;
//! - one thread serialises data, claim switches, rotation, reads and deletes
//!   in the order they were asked for, so `read_log` never sees a half-done
//!   rotation and `set_claim(B)` never lets queued bytes of A land in B's log.
//!
//! The pump never waits for the thread: data is dropped (and the drop noted in
//! the log) when more than [`BACKLOG_MAX`] bytes are queued.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::warn;

use crate::ids::valid_handle;

/// Most bytes [`read_log`](super::Console::read_log) returns: the end of the log.
pub const READ_CAP: u64 = 1 << 20;

/// Bytes queued for the log thread beyond which new output is not logged
/// (the disk is stuck); the loss is written to the log once it catches up.
pub const BACKLOG_MAX: u64 = 8 << 20;

fn invalid_handle(handle: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("claim handle {handle:?} is not 1 to 64 letters, digits, '-' or '_'"),
    )
}

/// Requests to the log thread, applied in order.
pub(crate) enum LogCmd {
    /// Console output, for the current claim's log (dropped when unclaimed).
    Data(Bytes),
    /// A line of our own (vanished/back), written on a line of its own.
    Note(String),
    SetClaim(Option<String>),
    Read {
        handle: String,
        tail: Option<u64>,
        reply: oneshot::Sender<io::Result<Vec<u8>>>,
    },
    Remove(String),
}

/// The sending side, shared by the pump and the handles.
#[derive(Clone)]
pub(crate) struct LogSender {
    tx: mpsc::Sender<LogCmd>,
    /// Data bytes queued and not yet written.
    queued: Arc<AtomicU64>,
}

impl LogSender {
    /// Queues output; false when it was dropped because the backlog is full
    /// or the thread is gone.
    pub fn data(&self, b: Bytes) -> bool {
        let n = b.len() as u64;
        if self.queued.load(Ordering::Relaxed).saturating_add(n) > BACKLOG_MAX {
            return false;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        if self.tx.send(LogCmd::Data(b)).is_err() {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn send(&self, cmd: LogCmd) -> bool {
        self.tx.send(cmd).is_ok()
    }
}

/// Starts the log thread of one board. Never fails: if the thread cannot be
/// started, the returned sender's messages go nowhere and reads report it.
pub(crate) fn spawn(board: &str, dir: PathBuf, max_bytes: u64, keep: u32) -> LogSender {
    let (tx, rx) = mpsc::channel::<LogCmd>();
    let queued = Arc::new(AtomicU64::new(0));
    let q = queued.clone();
    let board_name = board.to_string();
    let res = std::thread::Builder::new().name(format!("console-log-{board}")).spawn(move || {
        let mut files = LogFiles::new(board_name, dir, max_bytes, keep);
        while let Ok(cmd) = rx.recv() {
            match cmd {
                LogCmd::Data(b) => {
                    files.write(&b);
                    q.fetch_sub(b.len() as u64, Ordering::Relaxed);
                }
                LogCmd::Note(s) => files.note(&s),
                LogCmd::SetClaim(h) => files.set_claim(h),
                LogCmd::Read { handle, tail, reply } => {
                    let _ = reply.send(files.read(&handle, tail));
                }
                LogCmd::Remove(h) => files.remove(&h),
            }
        }
    });
    if let Err(e) = res {
        warn!(board, "cannot start the console log thread, output will not be logged: {e}");
    }
    LogSender { tx, queued }
}

/// The open log of the current claim.
struct Current {
    handle: String,
    file: File,
    size: u64,
    /// Last byte written, to start notes on a fresh line.
    last: Option<u8>,
}

/// The log files of one board: `<dir>/<handle>.log` and `.log.1` .. `.log.<keep>`.
pub(crate) struct LogFiles {
    board: String,
    dir: PathBuf,
    /// Rotation size; 0 means never rotate.
    max_bytes: u64,
    keep: u32,
    claim: Option<String>,
    current: Option<Current>,
    /// The last error reported, so that a full disk is logged once, not per chunk.
    last_error: Option<String>,
}

impl LogFiles {
    pub fn new(board: String, dir: PathBuf, max_bytes: u64, keep: u32) -> LogFiles {
        LogFiles { board, dir, max_bytes, keep, claim: None, current: None, last_error: None }
    }

    fn path(&self, handle: &str, n: u32) -> PathBuf {
        if n == 0 {
            self.dir.join(format!("{handle}.log"))
        } else {
            self.dir.join(format!("{handle}.log.{n}"))
        }
    }

    fn report(&mut self, what: String) {
        if self.last_error.as_deref() != Some(what.as_str()) {
            warn!(board = %self.board, "console log: {what}");
            self.last_error = Some(what);
        }
    }

    pub fn set_claim(&mut self, handle: Option<String>) {
        let handle = match handle {
            Some(h) if !valid_handle(&h) => {
                self.report(format!("not logging: {}", invalid_handle(&h)));
                None
            }
            h => h,
        };
        self.current = None;
        self.claim = handle;
    }

    /// The current claim's file, opened (append, 0600) on first use.
    fn current(&mut self) -> Option<&mut Current> {
        let handle = self.claim.clone()?;
        if self.current.is_none() {
            match self.open(&handle) {
                Ok(c) => {
                    self.last_error = None;
                    self.current = Some(c);
                }
                Err(e) => {
                    let p = self.path(&handle, 0);
                    self.report(format!("cannot open {}: {e}", p.display()));
                    return None;
                }
            }
        }
        self.current.as_mut()
    }

    fn open(&self, handle: &str) -> io::Result<Current> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.path(handle, 0))?;
        let size = file.metadata()?.len();
        Ok(Current { handle: handle.to_string(), file, size, last: None })
    }

    /// Shifts `.log` to `.log.1`, `.log.1` to `.log.2`, ..., dropping the
    /// oldest beyond `keep`.
    fn rotate(&mut self, handle: &str) -> io::Result<()> {
        self.current = None;
        if self.keep == 0 {
            return remove_if_exists(&self.path(handle, 0));
        }
        remove_if_exists(&self.path(handle, self.keep))?;
        for n in (1..self.keep).rev() {
            rename_if_exists(&self.path(handle, n), &self.path(handle, n + 1))?;
        }
        rename_if_exists(&self.path(handle, 0), &self.path(handle, 1))
    }

    /// Appends `data`, rotating whenever the file reaches `max_bytes`, so that
    /// no file grows past it.
    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let max = self.max_bytes;
            let Some(cur) = self.current() else { return };
            let room = if max == 0 { data.len() as u64 } else { max.saturating_sub(cur.size) };
            if room == 0 {
                let handle = cur.handle.clone();
                if let Err(e) = self.rotate(&handle) {
                    self.report(format!("cannot rotate {}: {e}", self.path(&handle, 0).display()));
                    // Keep appending rather than lose output.
                    self.max_bytes = 0;
                }
                continue;
            }
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
            let (now, rest) = data.split_at(n);
            match cur.file.write_all(now) {
                Ok(()) => {
                    cur.size += n as u64;
                    cur.last = now.last().copied();
                }
                Err(e) => {
                    let handle = cur.handle.clone();
                    let p = self.path(&handle, 0);
                    self.current = None;
                    self.report(format!("cannot write {}: {e}", p.display()));
                    return;
                }
            }
            data = rest;
        }
    }

    /// Writes `[boardlab] <text>` on a line of its own.
    pub fn note(&mut self, text: &str) {
        let fresh_line = match self.current() {
            Some(c) => c.last.is_none_or(|b| b == b'\n'),
            None => return,
        };
        let line = format!("{}[boardlab] {text}\r\n", if fresh_line { "" } else { "\r\n" });
        self.write(line.as_bytes());
    }

    pub fn remove(&mut self, handle: &str) {
        if !valid_handle(handle) {
            self.report(format!("not removing logs: {}", invalid_handle(handle)));
            return;
        }
        if self.current.as_ref().is_some_and(|c| c.handle == handle) {
            self.current = None; // reopened, empty, on the next write
        }
        for n in 0..=self.keep {
            let p = self.path(handle, n);
            if let Err(e) = remove_if_exists(&p) {
                self.report(format!("cannot remove {}: {e}", p.display()));
            }
        }
    }

    /// The last `tail` lines (or everything), at most [`READ_CAP`] bytes,
    /// oldest file first.
    pub fn read(&self, handle: &str, tail: Option<u64>) -> io::Result<Vec<u8>> {
        if !valid_handle(handle) {
            return Err(invalid_handle(handle));
        }
        // Newest first, reading each file's end, until the cap is reached.
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut budget = READ_CAP;
        let mut any = false;
        for n in 0..=self.keep {
            if budget == 0 {
                break;
            }
            let p = self.path(handle, n);
            let mut f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&p) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("cannot open {}: {e}", p.display()))),
            };
            any = true;
            let len = f.metadata()?.len();
            let take = len.min(budget);
            f.seek(SeekFrom::Start(len - take))?;
            let mut buf = Vec::with_capacity(usize::try_from(take).unwrap_or(0));
            f.take(take).read_to_end(&mut buf)?;
            budget -= buf.len() as u64;
            parts.push(buf);
            if let Some(t) = tail {
                // Enough lines already? (+1: the newest part may end in a newline.)
                let lines: u64 = parts.iter().map(|p| count_newlines(p)).sum();
                if lines > t {
                    break;
                }
            }
        }
        if !any {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no console log for this claim in {}", self.dir.display()),
            ));
        }
        let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for p in parts.iter().rev() {
            out.extend_from_slice(p);
        }
        if let Some(t) = tail {
            let start = tail_start(&out, t);
            out.drain(..start);
        }
        Ok(out)
    }
}

fn count_newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Where the last `n` lines of `buf` start (as `tail -n`: a final line with
/// no newline counts as a line).
pub(crate) fn tail_start(buf: &[u8], n: u64) -> usize {
    if n == 0 {
        return buf.len();
    }
    let mut end = buf.len();
    if buf.last() == Some(&b'\n') {
        end -= 1;
    }
    let mut seen = 0u64;
    for (i, &c) in buf[..end].iter().enumerate().rev() {
        if c == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const H1: &str = "bl-00000000000000000000000000000001";
    const A: &str = "bl-0000000000000000000000000000000a";
    const B: &str = "bl-0000000000000000000000000000000b";
    const C: &str = "bl-0000000000000000000000000000000c";

    fn files(dir: &Path, max: u64, keep: u32) -> LogFiles {
        LogFiles::new("b".into(), dir.join("b"), max, keep)
    }

    #[test]
    fn tail_lines() {
        assert_eq!(tail_start(b"a\nb\nc\n", 2), 2);
        assert_eq!(tail_start(b"a\nb\nc", 2), 2);
        assert_eq!(tail_start(b"a\nb\nc\n", 5), 0);
        assert_eq!(tail_start(b"a\nb\nc\n", 0), 6);
        assert_eq!(tail_start(b"", 3), 0);
        assert_eq!(tail_start(b"\n\n", 1), 1);
    }

    #[test]
    fn rotation_keeps_n_files_of_at_most_max_bytes() {
        let t = tempfile::tempdir().unwrap();
        let mut f = files(t.path(), 100, 2);
        f.set_claim(Some(H1.into()));
        for i in 0..50 {
            f.write(format!("line {i:04}\n").as_bytes()); // 10 bytes a line
        }
        let d = t.path().join("b");
        let mut names: Vec<String> =
            fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [format!("{H1}.log"), format!("{H1}.log.1"), format!("{H1}.log.2")]);
        for n in &names {
            let md = fs::metadata(d.join(n)).unwrap();
            assert_eq!(md.len(), 100, "{n}");
            assert_eq!(md.permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(fs::read_to_string(d.join(format!("{H1}.log.2"))).unwrap().lines().next(), Some("line 0020"));
        assert_eq!(f.read(H1, Some(3)).unwrap(), b"line 0047\nline 0048\nline 0049\n");
        let all = f.read(H1, None).unwrap();
        assert_eq!(all.len(), 300);
        assert!(all.starts_with(b"line 0020\n"));
        // A chunk larger than a file is split across rotations.
        f.write(&[b'x'; 250]);
        assert_eq!(fs::metadata(d.join(format!("{H1}.log"))).unwrap().len(), 50);
        assert_eq!(fs::read(d.join(format!("{H1}.log.1"))).unwrap(), [b'x'; 100]);
    }

    #[test]
    fn keep_zero_and_claims() {
        let t = tempfile::tempdir().unwrap();
        let mut f = files(t.path(), 10, 0);
        f.write(b"unclaimed\n");
        assert!(!t.path().join("b").exists());
        f.set_claim(Some(A.into()));
        f.write(b"0123456789abc");
        assert_eq!(f.read(A, None).unwrap(), b"abc");
        f.set_claim(Some(B.into()));
        f.note("hello");
        f.write(b"x");
        f.note("bye");
        assert!(f.read(B, None).unwrap().len() <= 10, "rotated");
        f.set_claim(Some(C.into()));
        f.max_bytes = 0;
        f.write(b"partial");
        f.note("gap");
        assert_eq!(f.read(C, None).unwrap(), b"partial\r\n[boardlab] gap\r\n");
        f.remove(C);
        assert!(f.read(C, None).is_err());
        f.write(b"again");
        assert_eq!(f.read(C, None).unwrap(), b"again");
        assert_eq!(f.read("../etc", None).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        f.set_claim(Some("../x".into()));
        f.write(b"nowhere");
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
