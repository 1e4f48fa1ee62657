//! A board's serial console: one pump task per board plus cheap handles.
//!
//! [`Console::start`] spawns the *pump*, a tokio task that owns the device.
//! It finds and opens the tty (see [`resolve`]), reads it continuously, and
//! hands every chunk to two consumers that can never slow it down:
//! - the sessions, through a `broadcast` channel (see [`OUTPUT_CHUNKS`] and
//!   [`Output::recv`] for what a lagging reader sees);
//! - the log thread (see [`log`]), which writes the current claim's log.
//!
//! Bytes from the one [`Writer`] reach the pump through a bounded `mpsc` and
//! are written between reads, never stalling them.
//!
//! When the device goes away (read error, end of file) the pump notes the gap
//! in the log, tells the sessions, and waits for it to come back: a uevent, or
//! a cheap `stat` every [`RECHECK`] (ptys send no uevents). Sessions stay
//! connected throughout.
//!
//! The pump future is `Send`, so `start` uses `tokio::spawn`; it only needs a
//! tokio runtime (a current-thread runtime under actix's `LocalSet` is fine).

pub mod log;
mod pump;
pub mod relay;
pub mod resolve;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config;
use crate::util::{now_unix_ms, rfc3339_ms};
use log::{LogCmd, LogSender};

/// Chunks the output channel holds for a reader that is behind. A chunk is
/// one read of the device: at most [`READ_CHUNK`] bytes, usually far fewer
/// (a pty hands out at most 4 KiB, a USB adapter 64 to 512 bytes). 4096
/// chunks are seconds of output at any serial rate, enough that a reader that
/// keeps up on average never lags.
pub const OUTPUT_CHUNKS: usize = 4096;

/// Largest single read from the device.
pub const READ_CHUNK: usize = 16 * 1024;

/// Writes queued to the device before [`Writer::write`] waits.
pub const WRITE_QUEUE: usize = 256;

/// How often a missing device's path is checked (ptys send no uevents).
pub const RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// What a board's console needs to know.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub board: String,
    pub source: config::ConsoleSource,
    pub baud: u32,
    /// Logs go to `<log_dir>/<board>/`.
    pub log_dir: PathBuf,
    /// Size at which a claim's log is rotated (0: never).
    pub log_max_bytes: u64,
    /// Rotated files kept per claim.
    pub log_keep: u32,
    /// Bytes read and dropped, for `/metrics`.
    pub metrics: crate::metrics::ConsoleMetrics,
}

/// Errors seen by clients of the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The adapter is not there (unplugged, or never found).
    #[error("console of board {board} is not attached: {why}")]
    Missing { board: String, why: String },
    /// The console was stopped (board shut down).
    #[error("console of board {board} is stopped")]
    Stopped { board: String },
}

pub use crate::protocol::{ConsoleState, ConsoleStatus};

/// An item of the output channel: the stream offset of its first byte, so a
/// reader that lagged knows exactly how many bytes it missed.
type Chunk = (u64, Bytes);

struct DeviceStatus {
    state: ConsoleState,
    device: Option<String>,
    since_ms: i64,
    message: Option<String>,
}

struct OutputSide {
    /// `None` once the pump has ended: new sessions get a closed stream.
    tx: Option<broadcast::Sender<Chunk>>,
    /// Bytes sent so far (the offset of the next chunk).
    offset: u64,
}

/// State shared by the pump, the handles, the sessions and the writer.
struct Shared {
    board: String,
    status: Mutex<DeviceStatus>,
    /// A std mutex: held for a few instructions, never across an await.
    output: Mutex<OutputSide>,
    writer_taken: AtomicBool,
    /// Told when the writer slot is given back: the session that has
    /// waited longest for it takes it (FIFO).
    writer_freed: tokio::sync::Notify,
    readers: AtomicUsize,
    write_tx: mpsc::Sender<Bytes>,
    log: LogSender,
    /// The device's state, for those who show it (the board actor).
    state_tx: watch::Sender<ConsoleState>,
    /// Bytes read and dropped (atomic counters).
    metrics: crate::metrics::ConsoleMetrics,
}

/// Locks, ignoring poisoning: the data behind these locks stays consistent
/// even if a holder panicked (plain field stores).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn is_attached(&self) -> Result<(), ConsoleError> {
        let s = lock(&self.status);
        match s.state {
            ConsoleState::Attached => Ok(()),
            _ => Err(ConsoleError::Missing {
                board: self.board.clone(),
                why: s.message.clone().unwrap_or_else(|| s.state.as_str().to_string()),
            }),
        }
    }

    /// Sends to every session; a send with no session is not an error.
    fn broadcast(&self, b: Bytes) {
        let mut o = lock(&self.output);
        let off = o.offset;
        o.offset += b.len() as u64;
        if let Some(tx) = &o.tx {
            let _ = tx.send((off, b));
        }
    }

    /// Records a state change; returns whether anything changed.
    fn set_status(&self, state: ConsoleState, device: Option<String>, message: Option<String>) -> bool {
        let mut s = lock(&self.status);
        if s.state == state && s.device == device && s.message == message {
            return false;
        }
        if s.state != state || s.device != device {
            s.since_ms = now_unix_ms();
        }
        s.state = state;
        s.device = device;
        s.message = message;
        self.state_tx.send_if_modified(|old| std::mem::replace(old, state) != state);
        true
    }
}

/// Owned by the handles only: when the last handle goes, `stop` drops and
/// the pump ends.
struct Handle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// A board's console. Cloning is cheap; the pump stops when the last clone
/// is dropped or [`Console::stop`] is called.
#[derive(Clone)]
pub struct Console {
    h: Arc<Handle>,
}

impl Console {
    /// Starts the pump on the current tokio runtime. Never fails: a missing
    /// device is a state, not an error.
    ///
    /// Must be called from within a tokio runtime (it spawns a task).
    pub fn start(s: ConsoleSettings) -> Console {
        let (out_tx, _) = broadcast::channel(OUTPUT_CHUNKS);
        let (write_tx, write_rx) = mpsc::channel(WRITE_QUEUE);
        let (stop_tx, stop_rx) = watch::channel(false);
        let log = log::spawn(&s.board, s.log_dir.join(&s.board), s.log_max_bytes, s.log_keep);
        let shared = Arc::new(Shared {
            board: s.board.clone(),
            status: Mutex::new(DeviceStatus {
                state: ConsoleState::Missing,
                device: None,
                since_ms: now_unix_ms(),
                message: Some("looking for the device".into()),
            }),
            output: Mutex::new(OutputSide { tx: Some(out_tx), offset: 0 }),
            state_tx: watch::channel(ConsoleState::Missing).0,
            writer_taken: AtomicBool::new(false),
            writer_freed: tokio::sync::Notify::new(),
            readers: AtomicUsize::new(0),
            write_tx,
            log,
            metrics: s.metrics.clone(),
        });
        tokio::spawn(pump::run(shared.clone(), s, stop_rx, write_rx));
        Console { h: Arc::new(Handle { shared, stop: stop_tx }) }
    }

    /// Stops the pump and closes the device (idempotent). Sessions see the
    /// end of their output; logs stay readable.
    pub fn stop(&self) {
        let _ = self.h.stop.send(true);
    }

    pub fn status(&self) -> ConsoleStatus {
        let sh = &self.h.shared;
        let s = lock(&sh.status);
        ConsoleStatus {
            state: s.state,
            device: s.device.clone(),
            since: rfc3339_ms(s.since_ms),
            message: s.message.clone(),
            writer: sh.writer_taken.load(Ordering::SeqCst),
            readers: sh.readers.load(Ordering::SeqCst),
        }
    }

    /// The device's state, changes included.
    pub fn watch_state(&self) -> watch::Receiver<ConsoleState> {
        self.h.shared.state_tx.subscribe()
    }

    /// From now on, logs into `<log_dir>/<board>/<handle>.log` (None: output
    /// is read and shown to sessions, but not kept). An invalid handle is
    /// logged as a warning and treated as None.
    pub fn set_claim(&self, handle: Option<String>) {
        self.h.shared.log.send(LogCmd::SetClaim(handle));
    }

    /// The last `tail` lines (or everything), at most 1 MiB, of claim
    /// `handle`'s log across its rotated files, oldest first.
    pub async fn read_log(&self, handle: &str, tail: Option<u64>) -> std::io::Result<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        let gone = || std::io::Error::other("the console log writer is not running");
        if !self.h.shared.log.send(LogCmd::Read { handle: handle.to_string(), tail, reply }) {
            return Err(gone());
        }
        rx.await.map_err(|_| gone())?
    }

    /// Deletes every log file of claim `handle`.
    pub fn remove_logs(&self, handle: &str) {
        self.h.shared.log.send(LogCmd::Remove(handle.to_string()));
    }

    /// A writer outside the one-writer rule, for the console device relayed
    /// into the claim's jail: the jail's root owns the board's serial port
    /// as a device, as they would own a cable.
    pub fn device_writer(&self) -> Writer {
        Writer { shared: self.h.shared.clone(), slot: false }
    }

    /// Attaches a client: it receives every byte the board sends from now
    /// on, and gets the writer if `want_write` and the slot is free.
    pub fn attach(&self, want_write: bool) -> Session {
        let sh = &self.h.shared;
        let rx = {
            let o = lock(&sh.output);
            o.tx.as_ref().map(|tx| (tx.subscribe(), o.offset))
        };
        let (rx, next) = match rx {
            Some(r) => r,
            // Stopped: a stream that is already at its end.
            None => (broadcast::channel(1).1, 0),
        };
        sh.readers.fetch_add(1, Ordering::SeqCst);
        let output = Output { rx, next, held: None, shared: sh.clone() };
        let writer = (want_write
            && sh.writer_taken.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok())
        .then(|| Writer { shared: sh.clone(), slot: true });
        Session { output, writer }
    }
}

impl Console {
    /// The writer slot, once it is this caller's turn: sessions that
    /// wanted to type and found another typing wait here, and the one that
    /// has waited longest gets the slot when the writer leaves. Keep the
    /// future (poll it by reference in a loop) to keep the place in line.
    pub async fn next_writer(&self) -> Writer {
        let sh = self.h.shared.clone();
        loop {
            let freed = sh.writer_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if sh.writer_taken.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                return Writer { shared: sh.clone(), slot: true };
            }
            freed.await;
        }
    }
}

/// An attached client.
pub struct Session {
    /// Everything the board sends from the moment of `attach`.
    pub output: Output,
    /// Present if this session got the writer slot.
    pub writer: Option<Writer>,
}

/// A session's view of the board's output.
pub struct Output {
    rx: broadcast::Receiver<Chunk>,
    /// The offset of the next byte this reader expects.
    next: u64,
    /// A chunk received right after a gap, returned after the marker.
    held: Option<Bytes>,
    shared: Arc<Shared>,
}

impl Output {
    /// The next chunk of output; `None` once the console is stopped.
    ///
    /// A reader that fell more than [`OUTPUT_CHUNKS`] chunks behind loses the
    /// oldest ones and instead receives, in the stream, the line
    /// `\r\n[boardlab: N bytes dropped]\r\n`, then the output resumes. It is
    /// not disconnected: a console user would rather see a gap than lose the
    /// session.
    ///
    /// Cancel-safe: it may be used in `select!`.
    pub async fn recv(&mut self) -> Option<Bytes> {
        if let Some(b) = self.held.take() {
            return Some(b);
        }
        loop {
            match self.rx.recv().await {
                Ok((off, b)) => {
                    if off > self.next {
                        let lost = off - self.next;
                        self.shared.metrics.dropped.inc_by(lost);
                        self.next = off + b.len() as u64;
                        self.held = Some(b);
                        return Some(Bytes::from(format!("\r\n[boardlab: {lost} bytes dropped]\r\n")));
                    }
                    self.next = off + b.len() as u64;
                    return Some(b);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.shared.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The right to type into the console. Dropping it frees the slot.
pub struct Writer {
    shared: Arc<Shared>,
    /// Whether this writer holds the one writer slot (a device relay does
    /// not: it stands for the board's own port inside the jail).
    slot: bool,
}

impl Writer {
    /// Queues `bytes` for the device. Fails at once if the device is not
    /// attached, or the console is stopped; waits only if the queue is full.
    pub async fn write(&self, bytes: &[u8]) -> Result<(), ConsoleError> {
        self.shared.is_attached()?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.shared
            .write_tx
            .send(Bytes::copy_from_slice(bytes))
            .await
            .map_err(|_| ConsoleError::Stopped { board: self.shared.board.clone() })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.slot {
            self.shared.writer_taken.store(false, Ordering::SeqCst);
            self.shared.writer_freed.notify_one();
        }
    }
}
