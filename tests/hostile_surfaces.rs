//! A hostile *user* against the surfaces one user's input reaches others
//! by: the status page (its event stream, `/metrics`, its password), the
//! replies on the socket (request ids echoed back), `history` and `queue`,
//! and `console_log` of someone else's board. Each test attacks, checks
//! that the attack got nothing, and that the lab still serves another
//! user afterwards. Only loopback is ever spoken to.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http::{base64, get, Stream};
use common::ports::free_port;
use common::{code, ok, Lab, ALICE, BOB};
use serde_json::{json, Value};

/// A lab of 3 boards whose labd serves the page on a free loopback port.
fn lab_with_page(extra: &str) -> (Lab, SocketAddr) {
    let port = free_port();
    let extra = extra.to_string();
    let lab = Lab::up(3, "rockpro64,pine64", move |t| format!("{t}\n[web]\nlisten = \"127.0.0.1:{port}\"\n{extra}"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    lab.wait_for(Duration::from_secs(20), "the status page", || TcpStream::connect(addr).is_ok());
    (lab, addr)
}

/// A page with a password (`ops` / `correct horse`).
fn lab_with_password() -> (Lab, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("web.pass");
    let mut labd = std::process::Command::new(common::LABD)
        .args(["web-password"])
        .arg(&pass)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    labd.stdin.take().unwrap().write_all(b"correct horse\n").unwrap();
    let out = labd.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let extra = format!("user = \"ops\"\npassword_file = \"{}\"\n", pass.display());
    let (lab, addr) = lab_with_page(&extra);
    (lab, addr, dir)
}

/// Sends `raw` and reads the answer until the server closes or `limit`
/// passes; None when nothing at all came back in time.
fn raw_within(addr: SocketAddr, raw: &[u8], limit: Duration) -> Option<(u16, String)> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    // A server that closes early may reset the rest of a big request.
    let _ = s.write_all(raw);
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while t0.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                // An answer with a length is complete once it all came.
                if complete(&got) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if got.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Some((status, text))
}

/// Whether `got` holds a whole answer with a Content-Length.
fn complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    head.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

/// A GET of `path`, HTTP/1.0, within `limit`.
fn get_within(addr: SocketAddr, path: &str, auth: Option<(&str, &str)>, limit: Duration) -> Option<(u16, String)> {
    let mut r = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n");
    if let Some((u, p)) = auth {
        r.push_str(&format!("Authorization: Basic {}\r\n", base64(format!("{u}:{p}").as_bytes())));
    }
    r.push_str("\r\n");
    raw_within(addr, r.as_bytes(), limit)
}

/// The lab still serves a user: alice claims a board and releases it.
fn still_serves(lab: &Lab) {
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64"})]);
    let h = ok(&r[0])["handle"].as_str().unwrap().to_string();
    let r = lab.as_user(ALICE, &[json!({"fn": "release", "handle": h})]);
    ok(&r[0]);
}

/// Attack: a local user holds the page's connections with event streams
/// (one request each, then nothing), hundreds of them, and trickles
/// request heads byte by byte on more (slowloris). The page, `/metrics`
/// and a new event stream must still be served to someone else, and the
/// socket too.
#[test]
fn held_event_streams_and_slow_heads_do_not_take_the_page() {
    let (lab, addr) = lab_with_page("");
    let mut held = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
                held.push(s);
            }
            Err(_) => break,
        }
    }
    // Slow heads: a byte now and then, never the end of the head.
    let mut slow = Vec::new();
    for _ in 0..40 {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nX-a: ");
            slow.push(s);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    for s in &mut slow {
        let _ = s.write_all(b"a");
    }
    let t0 = Instant::now();
    let m = get_within(addr, "/metrics", None, Duration::from_secs(15));
    let page = get_within(addr, "/", None, Duration::from_secs(15));
    let took = t0.elapsed();
    // The socket serves meanwhile, whatever the page does.
    still_serves(&lab);
    assert!(
        m.as_ref().is_some_and(|(s, b)| *s == 200 && b.contains("boardlab_boards")),
        "with {} event streams held, /metrics was not served to someone else within 15 s: {m:?}",
        held.len()
    );
    assert!(page.as_ref().is_some_and(|(s, _)| *s == 200), "the page was not served: {page:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Beyond the streams' share a new stream is refused at once (not left
    // hanging); once the attacker's go, a browser's stream starts again.
    let refused = get_within(addr, "/events", None, Duration::from_secs(15));
    assert!(refused.as_ref().is_some_and(|(s, _)| *s == 503), "a stream beyond the cap: {refused:?}");
    drop(slow);
    drop(held);
    let mut st = Stream::open(addr, None);
    let fresh = st.until(Duration::from_secs(30), |t| t.contains("event: lab"));
    assert!(fresh, "no stream after the attacker left: {}", st.text);
    still_serves(&lab);
}
