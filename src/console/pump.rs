//! The pump: finds the device, reads it, writes to it, survives hot-plug.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};
use tracing::{debug, info, warn};

use super::log::LogCmd;
use super::resolve::{self, Uevents};
use super::{ConsoleSettings, ConsoleState, Shared, READ_CHUNK, RECHECK};
use crate::config::ConsoleSource;
use crate::util::{now_unix_ms, rfc3339_ms};

/// Re-scan period of a `match` console while missing, besides uevents.
const RESCAN: Duration = Duration::from_secs(1);
/// Longest wait between attempts to open a device that exists but fails.
const RETRY_MAX: Duration = Duration::from_secs(4);

/// Why the attached phase ended.
enum End {
    Stopped,
    Lost(String),
}

pub(super) async fn run(
    shared: Arc<Shared>,
    s: ConsoleSettings,
    mut stop: watch::Receiver<bool>,
    mut write_rx: mpsc::Receiver<Bytes>,
) {
    let uevents = match &s.source {
        ConsoleSource::Match(_) => match Uevents::open() {
            Ok(u) => Some(u),
            Err(e) => {
                debug!(board = %s.board, "no uevent socket ({e}); re-scanning every {RESCAN:?}");
                None
            }
        },
        ConsoleSource::Path(_) => None,
    };
    let mut was_lost = false;
    loop {
        let Some((port, device)) = acquire(&shared, &s, &mut stop, &mut write_rx, uevents.as_ref()).await else {
            break;
        };
        info!(board = %s.board, device = %device, "console attached");
        shared.set_status(ConsoleState::Attached, Some(device.clone()), None);
        if was_lost {
            let at = rfc3339_ms(now_unix_ms());
            shared.log.send(LogCmd::Note(format!("console adapter back at {at}")));
            shared.broadcast(Bytes::from(format!("\r\n[boardlab: console adapter back at {at}]\r\n")));
        }
        let watch = Watch { uevents: uevents.as_ref(), source: &s.source, device: PathBuf::from(&device) };
        match attached(&shared, port, &mut stop, &mut write_rx, watch).await {
            End::Stopped => break,
            End::Lost(why) => {
                was_lost = true;
                let at = rfc3339_ms(now_unix_ms());
                warn!(board = %s.board, device = %device, "console adapter vanished: {why}");
                shared.set_status(ConsoleState::Missing, None, Some(format!("adapter vanished: {why}")));
                shared.log.send(LogCmd::Note(format!("console adapter vanished at {at}")));
                shared.broadcast(Bytes::from(format!(
                    "\r\n[boardlab: console adapter vanished at {at}; waiting for it]\r\n"
                )));
                // Keystrokes typed for the old device are not for the new one.
                while write_rx.try_recv().is_ok() {}
            }
        }
    }
    shared.set_status(ConsoleState::Missing, None, Some("console stopped".into()));
    // Sessions see the end of their stream.
    super::lock(&shared.output).tx = None;
    debug!(board = %s.board, "console pump ended");
}

/// Waits for `stop` (or every handle gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Opens `path` as a raw 8N1 port with no flow control, off the runtime
/// thread (an open can block on real hardware).
async fn open(path: PathBuf, baud: u32) -> Result<SerialStream, String> {
    let p = path.clone();
    let res = tokio::task::spawn_blocking(move || {
        tokio_serial::new(p.to_string_lossy(), baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .open_native_async()
    })
    .await;
    match res {
        Ok(Ok(port)) => Ok(port),
        Ok(Err(e)) => Err(format!("cannot open {}: {e}", path.display())),
        Err(e) => Err(format!("cannot open {}: {e}", path.display())),
    }
}

/// Closes the port without waiting for unsent output to drain (a tty close
/// can otherwise block for up to 30 s on a stuck adapter).
fn close(port: SerialStream) {
    // SAFETY: the fd belongs to `port`, which is alive for this call;
    // tcflush only discards queued data and has no memory effects.
    unsafe {
        libc::tcflush(port.as_raw_fd(), libc::TCOFLUSH);
    }
    // The close itself off the runtime thread; dropped inline if the runtime
    // is shutting down.
    drop(tokio::task::spawn_blocking(move || drop(port)));
}

/// Finds and opens the device; `None` when stopped first.
async fn acquire(
    shared: &Shared,
    s: &ConsoleSettings,
    stop: &mut watch::Receiver<bool>,
    write_rx: &mut mpsc::Receiver<Bytes>,
    uevents: Option<&Uevents>,
) -> Option<(SerialStream, String)> {
    // Identity of the last device that failed to open, and when to retry it.
    let mut failed: Option<(PathBuf, u64, u64)> = None;
    let mut retry_at = Instant::now();
    let mut backoff = Duration::from_millis(250);
    loop {
        if *stop.borrow() {
            return None;
        }
        let candidate: Result<Option<PathBuf>, String> = match &s.source {
            ConsoleSource::Path(p) => match std::fs::canonicalize(p) {
                Ok(real) => Ok(Some(real)),
                Err(_) => Err(format!("{} does not exist", p.display())),
            },
            ConsoleSource::Match(want) => {
                let w = want.clone();
                match tokio::task::spawn_blocking(move || resolve::find(&w)).await {
                    Ok(Ok(found)) => match resolve::choose(found, want) {
                        resolve::Choice::One(dev) => Ok(Some(dev)),
                        resolve::Choice::Missing(why) => Err(why),
                        resolve::Choice::Ambiguous(why) => {
                            shared.set_status(ConsoleState::Error, None, Some(why));
                            Ok(None)
                        }
                    },
                    Ok(Err(e)) => Err(format!("cannot list ttys: {e}")),
                    Err(e) => Err(format!("cannot list ttys: {e}")),
                }
            }
        };
        match candidate {
            Err(why) => {
                failed = None;
                if shared.set_status(ConsoleState::Missing, None, Some(why.clone())) {
                    debug!(board = %s.board, "console missing: {why}");
                }
            }
            Ok(None) => {}
            Ok(Some(dev)) => {
                use std::os::unix::fs::MetadataExt;
                let id = std::fs::metadata(&dev).map(|m| (dev.clone(), m.dev(), m.ino())).ok();
                let changed = id.is_some() && id != failed;
                if changed || Instant::now() >= retry_at {
                    match open(dev.clone(), s.baud).await {
                        Ok(port) => return Some((port, dev.display().to_string())),
                        Err(why) => {
                            if changed {
                                backoff = Duration::from_millis(250);
                            } else {
                                backoff = (backoff * 2).min(RETRY_MAX);
                            }
                            retry_at = Instant::now() + backoff;
                            failed = id;
                            if shared.set_status(ConsoleState::Error, None, Some(why.clone())) {
                                warn!(board = %s.board, "console: {why}; retrying");
                            }
                        }
                    }
                }
            }
        }
        let period = match s.source {
            ConsoleSource::Path(_) => RECHECK,
            ConsoleSource::Match(_) => RESCAN,
        };
        let deadline = Instant::now() + period;
        // Wait for the period, a uevent, or stop; drop keystrokes meanwhile.
        loop {
            tokio::select! {
                _ = stopped(stop) => return None,
                _ = tokio::time::sleep_until(deadline) => break,
                ev = async {
                    match uevents {
                        Some(u) => u.changed().await,
                        None => std::future::pending().await,
                    }
                } => match ev {
                    Ok(true) => {
                        // Give udev a moment to finish with the device.
                        sleep(Duration::from_millis(100)).await;
                        failed = None;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        debug!(board = %s.board, "uevent socket: {e}");
                        sleep(period).await;
                        break;
                    }
                },
                // Never `None`: `shared` holds a sender.
                _ = write_rx.recv() => {}
            }
        }
    }
}

/// What an attached `match` console listens for: a tty added or removed
/// anywhere makes it look again, and an adapter found elsewhere by its
/// properties (unplugged and plugged back under another name) is taken
/// there, whether or not the old device has failed yet.
struct Watch<'a> {
    uevents: Option<&'a Uevents>,
    source: &'a ConsoleSource,
    /// The device open now.
    device: PathBuf,
}

impl Watch<'_> {
    /// After a tty uevent: why the open device is no longer the adapter
    /// (None: it still is, or several match and it is one of them).
    async fn moved(&self) -> Option<String> {
        let ConsoleSource::Match(want) = self.source else { return None };
        // Give udev a moment to finish with the device.
        sleep(Duration::from_millis(100)).await;
        let w = want.clone();
        let found = match tokio::task::spawn_blocking(move || resolve::find(&w)).await {
            Ok(Ok(found)) => found,
            _ => return None,
        };
        match resolve::choose(found, want) {
            resolve::Choice::One(dev) if dev != self.device => {
                Some(format!("the adapter is now {} (found by its properties)", dev.display()))
            }
            resolve::Choice::Missing(why) => Some(format!("the adapter is gone: {why}")),
            _ => None,
        }
    }
}

/// Waits for a tty uevent (never, without a uevent socket).
async fn tty_event(uevents: Option<&Uevents>) {
    loop {
        match uevents {
            Some(u) => match u.changed().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(_) => std::future::pending::<()>().await,
            },
            None => std::future::pending::<()>().await,
        }
    }
}

/// Reads and writes the open device until it fails, the adapter is found
/// elsewhere, or the console stops.
async fn attached(
    shared: &Shared,
    port: SerialStream,
    stop: &mut watch::Receiver<bool>,
    write_rx: &mut mpsc::Receiver<Bytes>,
    watch: Watch<'_>,
) -> End {
    let (mut rd, mut wr) = tokio::io::split(port);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending = Bytes::new();
    // Bytes not logged because the log thread was behind, reported once it catches up.
    let mut unlogged: u64 = 0;
    let end = loop {
        tokio::select! {
            _ = stopped(stop) => break End::Stopped,
            r = rd.read(&mut buf) => match r {
                Ok(0) => break End::Lost("end of file".into()),
                Ok(n) => {
                    shared.metrics.read.inc_by(n as u64);
                    let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    if unlogged > 0 && shared.log.send(LogCmd::Note(format!("{unlogged} bytes not logged: disk too slow"))) {
                        unlogged = 0;
                    }
                    if !shared.log.data(chunk.clone()) {
                        unlogged += n as u64;
                        shared.metrics.dropped.inc_by(n as u64);
                    }
                    shared.broadcast(chunk);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break End::Lost(e.to_string()),
            },
            w = wr.write(&pending), if !pending.is_empty() => match w {
                Ok(n) => { let _ = pending.split_to(n.min(pending.len())); }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break End::Lost(e.to_string()),
            },
            m = write_rx.recv(), if pending.is_empty() => {
                if let Some(b) = m { pending = b; }
            }
            () = tty_event(watch.uevents) => {
                if let Some(why) = watch.moved().await {
                    break End::Lost(why);
                }
            }
        }
    };
    close(rd.unsplit(wr));
    end
}
