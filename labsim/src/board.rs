//! One simulated board: `labsim board --dir DIR --name NAME`, started
//! detached by `labsim up`.
//!
//! The process joins the board's network namespace first (setns needs a
//! single-threaded process), brings its link up, plugs in its serial adapter
//! and then loops every ~25 ms:
//!
//! * it reads its switch port file and follows power transitions: power-on
//!   prints a boot banner, boots from its microSD card when the lab has
//!   cards (`--sd`) and the card is on the board's side (see
//!   [`super::sdcard`]), and otherwise starts a net boot (DHCP, then TFTP of the boot
//!   file, then, if DHCP named an NFS root (option 17), an NFSv4 read of
//!   `hello.txt` from it) in a worker thread; power-off cancels the worker,
//!   drops the lease and goes silent at once;
//! * while powered it echoes every byte typed on the serial line (byte
//!   transparent) and answers a tiny U-Boot-like prompt on CR;
//! * SIGUSR1 unplugs the serial adapter, SIGUSR2 plugs a new one, SIGTERM
//!   ends the board.
//!
//! Worker output carries the power-cycle generation it belongs to, so lines
//! from an abandoned boot are never printed after a power-off.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::ports::{PortStore, ON};
use super::pty::Console;
use super::state::LabState;
use super::{dhcp, net, proc, slaac, tftp, Result, SimError, GROUP};

/// Set by SIGUSR1: unplug the serial adapter.
static UNPLUG: AtomicBool = AtomicBool::new(false);
/// Set by SIGUSR2: plug a serial adapter in.
static PLUG: AtomicBool = AtomicBool::new(false);
/// Set by SIGTERM/SIGINT: end the board process.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    match sig {
        libc::SIGUSR1 => UNPLUG.store(true, Ordering::SeqCst),
        libc::SIGUSR2 => PLUG.store(true, Ordering::SeqCst),
        _ => STOP.store(true, Ordering::SeqCst),
    }
}

fn install_signals() -> Result<()> {
    let act = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to static atomics, which is
        // async-signal-safe, and it stays valid for the life of the process.
        unsafe { sigaction(sig, &act) }?;
    }
    for sig in [Signal::SIGPIPE, Signal::SIGHUP] {
        // SAFETY: SIG_IGN installs no code of ours.
        unsafe { sigaction(sig, &ignore) }?;
    }
    Ok(())
}

/// A message from the net-boot worker.
enum Msg {
    /// A line for the serial console.
    Line(String),
    /// The boot sequence ended; show the prompt.
    Done,
}

/// A running net boot.
struct Worker {
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The board's state between loop iterations.
struct Board {
    name: String,
    class: String,
    port: u32,
    lab_state_file: PathBuf,
    store: PortStore,
    /// Board MAC, when the board has a network link.
    mac: Option<[u8; 6]>,
    console: Option<Console>,
    link: PathBuf,
    /// `DIR/tty/wire.NAME` holding `cut`: the board's transmit wire to its
    /// serial adapter is broken, so nothing it sends arrives (read at each
    /// power-on and every second).
    wire: PathBuf,
    wire_cut: bool,
    powered: bool,
    /// Power-on count; tags worker output.
    generation: u64,
    worker: Option<Worker>,
    tx: Sender<(u64, Msg)>,
    rx: Receiver<(u64, Msg)>,
    /// The command line being typed.
    line: Vec<u8>,
    /// The microSD card's image and mux control file (`labsim up --sd`).
    card: Option<(PathBuf, PathBuf)>,
}

/// Longest command line kept; extra bytes are still echoed.
const MAX_LINE: usize = 256;

/// Entry point of `labsim board`.
pub fn run(dir: &Path, name: &str) -> Result<()> {
    let state = LabState::load_existing(dir)?;
    let me = state.board(name)?.clone();
    // Namespace first: setns(CLONE_NEWNET) affects only the calling thread,
    // so it must happen before any thread exists.
    if let Some(ns) = &me.netns {
        net::enter(ns)?;
        setup_link()?;
    }
    install_signals()?;
    let link = state.tty_link(name);
    let console = if state.console { Some(Console::create(&link)?) } else { None };
    let mac = match &me.mac {
        Some(m) => Some(dhcp::parse_mac(m).ok_or_else(|| SimError::Refused(format!("bad MAC {m:?} in lab state")))?),
        None => None,
    };
    let ready = state.ready_file(name);
    std::fs::write(&ready, std::process::id().to_string()).map_err(SimError::io("writing", &ready))?;
    tracing::info!(board = name, tty = ?console.as_ref().map(|c| c.slave().to_path_buf()), "board ready");
    let (tx, rx) = channel();
    let mut board = Board {
        name: me.name.clone(),
        class: me.class.clone(),
        port: me.port,
        lab_state_file: LabState::path(dir),
        store: PortStore::new(dir),
        mac,
        console,
        wire: dir.join("tty").join(format!("wire.{name}")),
        wire_cut: false,
        link,
        powered: false,
        generation: 0,
        worker: None,
        tx,
        rx,
        line: Vec::new(),
        card: state.sd.then(|| super::sdcard::paths(dir, name)),
    };
    board.run_loop();
    board.power_off();
    if let Some(c) = board.console.take() {
        c.unplug();
    }
    let _ = std::fs::remove_file(&ready);
    tracing::info!(board = name, "board stopped");
    Ok(())
}

/// Inside the namespace: loopback and eth0 up, and no reverse-path filter
/// (a DHCP OFFER comes from an address we cannot route before we have a
/// lease, and rp_filter would drop it).
fn setup_link() -> Result<()> {
    for conf in ["all", "default", "eth0"] {
        let p = format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter");
        if let Err(e) = std::fs::write(&p, "0") {
            tracing::warn!("cannot write {p}: {e}");
        }
    }
    slaac::setup("eth0");
    proc::run("ip", &["link", "set", "dev", "lo", "up"])?;
    proc::run("ip", &["link", "set", "dev", "eth0", "up"])
}

impl Board {
    fn run_loop(&mut self) {
        self.draw(false);
        let mut last_lab_check = Instant::now();
        while !STOP.load(Ordering::SeqCst) {
            if UNPLUG.swap(false, Ordering::SeqCst) {
                if let Some(c) = self.console.take() {
                    tracing::info!("serial adapter unplugged");
                    c.unplug();
                }
            }
            if PLUG.swap(false, Ordering::SeqCst) && self.console.is_none() {
                match Console::create(&self.link) {
                    Ok(c) => {
                        tracing::info!(tty = %c.slave().display(), "serial adapter plugged in");
                        self.console = Some(c);
                    }
                    Err(e) => tracing::error!("plugging serial adapter: {e}"),
                }
            }
            // An orphaned board (its lab removed without us) ends itself.
            if last_lab_check.elapsed() > Duration::from_secs(1) {
                last_lab_check = Instant::now();
                if !self.lab_state_file.exists() {
                    tracing::warn!("lab state file is gone; stopping");
                    break;
                }
                self.check_wire();
            }
            // A dead splitter: the port may be on, no power reaches us.
            let on = self.store.get(GROUP, self.port) == ON && !self.store.splitter_dead(GROUP, self.port);
            if on && !self.powered {
                self.power_on();
            } else if !on && self.powered {
                self.power_off();
            }
            self.drain_worker();
            self.serve_console();
        }
        // A board that ends draws nothing.
        self.draw(false);
    }

    /// Tells the switch (its detection) whether we draw power.
    fn draw(&self, yes: bool) {
        if let Err(e) = self.store.set_draws(GROUP, self.port, yes) {
            tracing::warn!("cannot record the power draw: {e}");
        }
    }

    /// Whether the console's transmit wire is cut (see `wire`).
    fn check_wire(&mut self) {
        self.wire_cut = std::fs::read_to_string(&self.wire).is_ok_and(|s| s.trim() == "cut");
    }

    /// Writes to the serial line (dropped if unplugged, nobody listens or
    /// the wire is cut).
    fn emit(&mut self, bytes: &[u8]) {
        if self.wire_cut {
            return;
        }
        if let Some(c) = self.console.as_mut() {
            c.write(bytes);
        }
    }

    fn power_on(&mut self) {
        tracing::info!("power on");
        self.check_wire();
        self.powered = true;
        self.draw(true);
        self.generation += 1;
        self.line.clear();
        let banner = format!(
            "\r\n\r\nboardlab-sim U-Boot 2024.01 ({name})\r\n\r\nDRAM:  4 GiB\r\nCore:  {class}, PoE port {port}\r\nNet:   {net}\r\n",
            name = self.name,
            class = self.class,
            port = self.port,
            net = if self.mac.is_some() { "eth0" } else { "no network" },
        );
        self.emit(banner.as_bytes());
        if let Some((img, mux)) = self.card.clone() {
            let (lines, booted) = super::sdcard::boot_lines(&img, &mux);
            for l in lines {
                self.emit(format!("{l}\r\n").as_bytes());
            }
            if booted {
                self.emit(b"=> ");
                return;
            }
        }
        self.start_boot();
    }

    fn power_off(&mut self) {
        if !self.powered {
            return;
        }
        tracing::info!("power off");
        self.powered = false;
        self.draw(false);
        if let Some(w) = self.worker.take() {
            w.cancel.store(true, Ordering::SeqCst);
            // The worker checks `cancel` at least every 25 ms.
            let _ = w.handle.join();
        }
        while self.rx.try_recv().is_ok() {}
        self.line.clear();
        if self.mac.is_some() {
            if let Err(e) = proc::run("ip", &["-4", "addr", "flush", "dev", "eth0"]) {
                tracing::warn!("dropping lease: {e}");
            }
        }
    }

    /// Starts a net boot in a worker thread (if none is running).
    fn start_boot(&mut self) {
        let Some(mac) = self.mac else {
            self.emit(b"DHCP: no network link\r\n=> ");
            return;
        };
        if self.worker.is_some() {
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let tx = self.tx.clone();
        let generation = self.generation;
        let c = cancel.clone();
        let spawned = std::thread::Builder::new().name("netboot".into()).spawn(move || {
            net_boot(mac, &c, &|m| {
                let _ = tx.send((generation, m));
            })
        });
        match spawned {
            Ok(handle) => self.worker = Some(Worker { cancel, handle }),
            Err(e) => {
                tracing::error!("starting net boot: {e}");
                self.emit(b"DHCP: internal error\r\n=> ");
            }
        }
    }

    fn drain_worker(&mut self) {
        while let Ok((generation, msg)) = self.rx.try_recv() {
            if !self.powered || generation != self.generation {
                continue;
            }
            match msg {
                Msg::Line(l) => self.emit(format!("{l}\r\n").as_bytes()),
                Msg::Done => self.emit(b"=> "),
            }
        }
        if self.worker.as_ref().is_some_and(|w| w.handle.is_finished()) {
            if let Some(w) = self.worker.take() {
                let _ = w.handle.join();
            }
        }
    }

    /// Waits up to 25 ms for serial input and handles it.
    fn serve_console(&mut self) {
        let listening = self.console.as_ref().is_some_and(|c| c.listening());
        if !listening {
            std::thread::sleep(Duration::from_millis(25));
            return;
        }
        let ready = match self.console.as_ref() {
            Some(c) => {
                let mut fds = [PollFd::new(c.fd(), PollFlags::POLLIN)];
                // EINTR (a signal) just ends this wait early.
                poll(&mut fds, PollTimeout::from(25u8)).unwrap_or(0) > 0
                    && fds[0].revents().unwrap_or(PollFlags::empty()).contains(PollFlags::POLLIN)
            }
            None => false,
        };
        if !ready {
            return;
        }
        let mut buf = [0u8; 1024];
        let n = self.console.as_mut().map(|c| c.read(&mut buf)).unwrap_or(0);
        if n == 0 || !self.powered {
            // Powered off: input goes nowhere, like typing into a dead board.
            return;
        }
        for &b in &buf[..n] {
            self.emit(&[b]);
            match b {
                b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    self.command(&String::from_utf8_lossy(&line));
                }
                b'\n' => {}
                0x08 | 0x7f => {
                    self.line.pop();
                }
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
    }

    /// `flood N`: sends N bytes of [`flood_byte`] between two marker lines,
    /// paced by the reader, for throughput benchmarks.
    fn flood(&mut self, n: u64, rate: u64) {
        let Some(c) = self.console.as_mut() else { return };
        if !c.write_paced(FLOOD_BEGIN) {
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        let t0 = std::time::Instant::now();
        while sent < n {
            if rate > 0 {
                // Ahead of the line's speed: wait until it has caught up.
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let len = usize::try_from((n - sent).min(buf.len() as u64)).unwrap_or(buf.len());
            for (i, b) in buf[..len].iter_mut().enumerate() {
                *b = flood_byte(sent + i as u64);
            }
            if !c.write_paced(&buf[..len]) {
                return;
            }
            sent += len as u64;
        }
        c.write_paced(FLOOD_END);
    }

    /// Runs one prompt command (after CR was echoed).
    fn command(&mut self, cmd: &str) {
        let mut out = String::from("\n");
        let cmd = cmd.trim();
        match cmd {
            "" => {}
            "help" => out.push_str(
                "dhcp    - get a lease and fetch the boot file\r\nflood N - send N test bytes\r\nhelp    - print this list\r\nversion - print the firmware version\r\n",
            ),
            "version" => out.push_str(&format!("boardlab-sim U-Boot 2024.01 ({})\r\n", self.name)),
            c if c.starts_with("flood ") => {
                self.emit(out.as_bytes());
                out.clear();
                // `flood N [BYTES_PER_SECOND]`: the rate, if given, paces the
                // board like a line of that speed (0 or none: as fast as the
                // reader takes it).
                let mut words = c["flood ".len()..].split_whitespace();
                let n = words.next().and_then(|w| w.parse::<u64>().ok());
                let rate = match words.next() {
                    None => Some(0),
                    Some(w) => w.parse::<u64>().ok(),
                };
                match (n, rate) {
                    (Some(n), Some(rate)) if n <= FLOOD_MAX => self.flood(n, rate),
                    _ => out.push_str(&format!("flood: give a byte count up to {FLOOD_MAX} and an optional rate in bytes/s\r\n")),
                }
            }
            "dhcp" if self.worker.is_none() && self.mac.is_some() => {
                self.emit(out.as_bytes());
                self.start_boot();
                return;
            }
            "dhcp" if self.mac.is_some() => out.push_str("dhcp: already running\r\n"),
            "dhcp" => out.push_str("dhcp: no network link\r\n"),
            other => out.push_str(&format!("Unknown command '{other}' - try 'help'\r\n")),
        }
        out.push_str("=> ");
        self.emit(out.as_bytes());
    }
}

/// Largest `flood` a board will send.
pub const FLOOD_MAX: u64 = 1 << 30;
/// The line before a flood's bytes.
pub const FLOOD_BEGIN: &[u8] = b"FLOOD-BEGIN\r\n";
/// The line after them.
pub const FLOOD_END: &[u8] = b"\r\nFLOOD-END\r\n";

/// Byte `i` of a flood: every value occurs, and a dropped or repeated
/// chunk shows as a mismatch.
pub fn flood_byte(i: u64) -> u8 {
    (i.wrapping_mul(7).wrapping_add(i >> 8) & 0xff) as u8
}

/// The net boot: DHCP on eth0, configure the lease, TFTP the boot file,
/// read `hello.txt` from the NFS root if the lease names one.
/// Returns early without `Done` when cancelled (power went off).
fn net_boot(mac: [u8; 6], cancel: &AtomicBool, send: &dyn Fn(Msg)) {
    let line = |s: String| send(Msg::Line(s));
    // A `dhcp` command re-runs this while a lease is configured.
    let _ = proc::run("ip", &["-4", "addr", "flush", "dev", "eth0"]);
    let v6_since = Instant::now();
    let v6_heard = slaac::restart("eth0");
    let lease = match dhcp::acquire("eth0", mac, Duration::from_secs(3), cancel) {
        Ok(dhcp::Outcome::Lease(l)) => l,
        Ok(dhcp::Outcome::Cancelled) => return,
        Ok(dhcp::Outcome::NoOffer) => {
            line("DHCP: no DHCP offer".into());
            return send(Msg::Done);
        }
        Ok(dhcp::Outcome::Nak(s)) => {
            line(format!("DHCP: request refused (NAK) by {s}"));
            return send(Msg::Done);
        }
        Err(e) => {
            line(format!("DHCP: failed: {e}"));
            return send(Msg::Done);
        }
    };
    if cancel.load(Ordering::SeqCst) {
        return;
    }
    let cidr = format!("{}/{}", lease.addr, lease.prefix);
    if let Err(e) = proc::run("ip", &["-4", "addr", "add", &cidr, "dev", "eth0"]) {
        line(format!("DHCP: lease {} from {} but configuring eth0 failed: {e}", lease.addr, lease.server));
        return send(Msg::Done);
    }
    line(format!("DHCP: lease {} from {}", lease.addr, lease.server));
    let Some(file) = lease.boot_file.clone() else {
        line("TFTP: no boot file offered".into());
        return send(Msg::Done);
    };
    line(format!("TFTP: fetching {file} from {}", lease.tftp_server));
    match tftp::fetch(lease.tftp_server.into(), &file, cancel) {
        Ok(f) => line(format!("TFTP: fetched {file} ({} bytes, sha256 {})", f.bytes, f.sha256)),
        Err(tftp::Failure::Cancelled) => return,
        Err(tftp::Failure::Failed(reason)) => line(format!("TFTP: {file} from {} failed: {reason}", lease.tftp_server)),
    }
    if let Some(rp) = &lease.root_path {
        let (server, dir) = nfs_root(rp, lease.server);
        let path = format!("{}/{NFS_PROBE}", dir.trim_end_matches('/'));
        match nfs_read(server, &path, cancel) {
            NfsRead::Read(n) => line(format!("NFS: read {path} ({n} bytes)")),
            NfsRead::Cancelled => return,
            NfsRead::Failed(reason) => line(format!("NFS: {server}:{path} failed: {reason}")),
        }
    }
    // IPv6, where the jail advertises a /64: the address, and the boot
    // file again from the jail over IPv6.
    if let Some(addr) = slaac::address("eth0", v6_since, v6_heard, cancel) {
        line(format!("IPv6: SLAAC address {addr}/64"));
        let jail = slaac::jail_of(addr);
        match tftp::fetch(jail.into(), &file, cancel) {
            Ok(f) => {
                line(format!("TFTP: fetched {file} over IPv6 from [{jail}] ({} bytes, sha256 {})", f.bytes, f.sha256))
            }
            Err(tftp::Failure::Cancelled) => return,
            Err(tftp::Failure::Failed(reason)) => line(format!("TFTP: {file} from [{jail}] failed: {reason}")),
        }
    }
    send(Msg::Done)
}

/// The file a board reads from its NFS root once it has one (a kernel
/// would mount the root; the simulation proves it can read).
const NFS_PROBE: &str = "hello.txt";
/// How long one NFS read may take.
const NFS_TIMEOUT: Duration = Duration::from_secs(10);

/// `server:/path` or `/path` (DHCP option 17) to (server, path).
fn nfs_root(root_path: &str, dhcp_server: std::net::Ipv4Addr) -> (std::net::Ipv4Addr, String) {
    match root_path.split_once(':') {
        Some((host, path)) => (host.parse().unwrap_or(dhcp_server), path.to_string()),
        None => (dhcp_server, root_path.to_string()),
    }
}

enum NfsRead {
    Read(u64),
    Cancelled,
    Failed(String),
}

/// Reads `path` from `server` over NFSv4 with libnfs's userspace client
/// (`nfs-cat`), counting the bytes; killed on cancel or after
/// [`NFS_TIMEOUT`].
fn nfs_read(server: std::net::Ipv4Addr, path: &str, cancel: &AtomicBool) -> NfsRead {
    use std::io::Read;
    use std::process::{Command, Stdio};
    if !path.starts_with('/')
        || path.contains("..")
        || path.bytes().any(|b| b.is_ascii_control() || b == b'?' || b == b'#')
    {
        return NfsRead::Failed(format!("unusable root path {path:?}"));
    }
    let url = format!("nfs://{server}{path}?version=4");
    let mut child = match Command::new("nfs-cat")
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return NfsRead::Failed(format!("nfs-cat: {e}")),
    };
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return NfsRead::Failed("no pipes to nfs-cat".into());
    };
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        let mut n = 0u64;
        while let Ok(k) = out.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if cancel.load(Ordering::SeqCst) || start.elapsed() > NFS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let _ = counter.join();
            let _ = errors.join();
            if cancel.load(Ordering::SeqCst) {
                return NfsRead::Cancelled;
            }
            return NfsRead::Failed(format!("timed out after {NFS_TIMEOUT:?}"));
        }
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return NfsRead::Failed(format!("waiting for nfs-cat: {e}")),
        }
    };
    let n = counter.join().unwrap_or(0);
    let msg = errors.join().unwrap_or_default();
    if status.success() {
        NfsRead::Read(n)
    } else {
        let msg: Vec<&str> = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        NfsRead::Failed(if msg.is_empty() { status.to_string() } else { msg.join("; ") })
    }
}
