//! systemd's service protocol (`Type=notify`, `WatchdogSec=`): `READY=1`
//! once labd serves, `WATCHDOG=1` from the registry's own loop while it
//! answers, `STOPPING=1` on the way out. Each is one datagram to the unix
//! socket `$NOTIFY_SOCKET` names (a path, or `@name` in the abstract
//! namespace); without it (not started by systemd) nothing is sent.
//!
//! labd reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` once,
//! at start ([`take_env`], before any thread exists), and removes them
//! from its environment, so that the jails' processes (sshd, dnsmasq)
//! never see systemd's socket.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// Where notifications go and how often the watchdog wants them.
#[derive(Debug, Clone, Default)]
struct Env {
    socket: Option<OsString>,
    watchdog: Option<Duration>,
}

static ENV: OnceLock<Env> = OnceLock::new();

fn read_env() -> Env {
    let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
    let usec = std::env::var("WATCHDOG_USEC").ok().and_then(|s| s.trim().parse::<u64>().ok()).filter(|u| *u > 0);
    // WATCHDOG_PID, when set, names the process the watchdog is for.
    let pid_ok = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_none_or(|pid| pid == std::process::id());
    Env { socket, watchdog: usec.filter(|_| pid_ok).map(Duration::from_micros) }
}

fn env() -> &'static Env {
    ENV.get_or_init(read_env)
}

/// Reads systemd's variables and removes them from the environment.
///
/// # Safety
///
/// Changes the process environment: call it while the process has one
/// thread, before any runtime starts (as `labd`'s `main` does).
pub unsafe fn take_env() {
    let _ = ENV.set(read_env());
    for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        // SAFETY: the caller guarantees no other thread exists, so none
        // reads the environment meanwhile.
        unsafe { std::env::remove_var(v) };
    }
}

/// How often to ping the watchdog: half its timeout (None: no watchdog).
pub fn watchdog_interval() -> Option<Duration> {
    env().watchdog.map(|d| (d / 2).max(Duration::from_millis(1)))
}

/// Sends `state` (`READY=1`, `WATCHDOG=1`, ...) when systemd listens.
fn notify(state: &str) -> std::io::Result<()> {
    let Some(path) = &env().socket else { return Ok(()) };
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// labd serves: its socket (and page) listen.
pub fn ready(status: &str) {
    let msg = format!("READY=1\nSTATUS={}\n", status.replace('\n', " "));
    if let Err(e) = notify(&msg) {
        tracing::warn!("cannot tell systemd labd is ready: {e}");
    }
}

/// The registry answered: labd is alive.
pub fn watchdog() {
    if let Err(e) = notify("WATCHDOG=1\n") {
        tracing::warn!("cannot ping systemd's watchdog: {e}");
    }
}

/// labd is stopping.
pub fn stopping() {
    let _ = notify("STOPPING=1\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        let _ = ENV.set(Env { socket: Some(p.into_os_string()), watchdog: Some(Duration::from_secs(10)) });
        // Another test may have set it first (a process-wide value): only
        // check what this one set.
        if env().watchdog == Some(Duration::from_secs(10)) {
            ready("1 board");
            watchdog();
            let mut buf = [0u8; 256];
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"READY=1\nSTATUS=1 board\n");
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"WATCHDOG=1\n");
            assert_eq!(watchdog_interval(), Some(Duration::from_secs(5)));
        }
    }
}
