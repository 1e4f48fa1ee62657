//! labd under systemd's `Type=notify` with `WatchdogSec=`: the test
//! plays systemd, with a unix datagram socket of its own as
//! `NOTIFY_SOCKET`. labd says `READY=1` once its socket listens, pings
//! `WATCHDOG=1` from the registry's loop at half `WATCHDOG_USEC`, stops
//! pinging when the registry stalls (injected: `fault-injection`), and
//! says `STOPPING=1` on SIGTERM.

mod common;

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, Instant};

use common::Lab;
use serde_json::json;

/// The test's end of `NOTIFY_SOCKET`.
struct Systemd {
    sock: UnixDatagram,
    path: String,
}

impl Systemd {
    fn bind(lab: &Lab) -> Systemd {
        let p = lab.path().join("notify.sock");
        let sock = UnixDatagram::bind(&p).unwrap();
        Systemd { sock, path: p.display().to_string() }
    }

    /// The next notification, if one comes within `limit`.
    fn next(&self, limit: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).to_string()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
            Err(e) => panic!("notify socket: {e}"),
        }
    }

    /// Waits (up to `limit`) for a notification holding `line`.
    fn expect(&self, line: &str, limit: Duration, lab: &Lab) -> Instant {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(m) = self.next(limit.saturating_sub(t0.elapsed()).max(Duration::from_millis(1))) {
                if m.lines().any(|l| l == line) {
                    return Instant::now();
                }
            }
        }
        panic!("no {line} within {limit:?}; labd log:\n{}", lab.log());
    }
}

#[test]
fn ready_then_watchdog_pings_which_stop_when_the_registry_stalls() {
    let mut lab = Lab::create(2, "rockpro64", &[], |t| t);
    let systemd = Systemd::bind(&lab);
    let stall = lab.path().join("stall");
    let stall_s = stall.display().to_string();
    // 600 ms: a ping every 300 ms.
    lab.start_labd_env(&[
        ("NOTIFY_SOCKET", &systemd.path),
        ("WATCHDOG_USEC", "600000"),
        ("LABD_FAULT_STALL_REGISTRY_FILE", &stall_s),
    ]);
    let slow = Duration::from_secs(30);
    systemd.expect("READY=1", slow, &lab);
    // Ready means serving: the socket answers.
    assert!(UnixStream::connect(lab.sock()).is_ok());
    common::ok(&lab.req(json!({"fn": "whoami"})));
    // Pings keep coming (generous bounds: a loaded machine is slow, not
    // silent for seconds).
    let mut at = systemd.expect("WATCHDOG=1", slow, &lab);
    for _ in 0..5 {
        let next = systemd.expect("WATCHDOG=1", Duration::from_secs(10), &lab);
        assert!(next.duration_since(at) < Duration::from_secs(5), "pings too far apart");
        at = next;
    }
    // The registry stalls: at most the ping already under way arrives,
    // then none for many intervals.
    std::fs::write(&stall, b"").unwrap();
    let stalled = Instant::now();
    let mut last_ping = None;
    while let Some(m) = systemd.next(Duration::from_secs(4)) {
        assert!(stalled.elapsed() < Duration::from_secs(30), "pings go on after the stall: {m:?}");
        last_ping = Some(Instant::now());
    }
    let quiet_from = last_ping.unwrap_or(stalled);
    assert!(quiet_from.elapsed() >= Duration::from_secs(4));
    lab.wait_for(Duration::from_secs(10), "the stall in the log", || lab.log().contains("registry stalled (injected)"));
    // A stalled labd is what systemd kills (SIGABRT after WatchdogSec);
    // here, SIGKILL.
    lab.kill9_labd();
}

#[test]
fn no_watchdog_without_watchdog_usec_and_stopping_on_sigterm() {
    let mut lab = Lab::create(1, "rockpro64", &[], |t| t);
    let systemd = Systemd::bind(&lab);
    lab.start_labd_env(&[("NOTIFY_SOCKET", &systemd.path)]);
    let slow = Duration::from_secs(30);
    systemd.expect("READY=1", slow, &lab);
    assert_eq!(systemd.next(Duration::from_secs(2)), None, "no pings without WATCHDOG_USEC");
    let st = lab.stop_labd();
    assert!(st.success(), "{st}");
    systemd.expect("STOPPING=1", slow, &lab);
}
