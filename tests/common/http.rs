//! A small HTTP/1.0 client for labd's status page: one request a
//! connection, read until the server closes it; a chunked body (an
//! event stream) is put back together.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An answer: the status code, the header block and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn request(path: &str, auth: Option<(&str, &str)>) -> String {
    let mut r = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n");
    if let Some((u, p)) = auth {
        r.push_str(&format!("Authorization: Basic {}\r\n", base64(format!("{u}:{p}").as_bytes())));
    }
    r.push_str("\r\n");
    r
}

fn split(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { body_of(raw) } else { body.to_string() };
    Answer { status, head: head.to_string(), body }
}

/// GETs `path` (with basic auth when given).
pub fn get(addr: SocketAddr, path: &str, auth: Option<(&str, &str)>) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connecting to the page");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request(path, auth).as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the page's answer");
    split(&raw)
}

/// An open event stream.
pub struct Stream {
    s: TcpStream,
    raw: Vec<u8>,
    /// The body so far (chunks joined).
    pub text: String,
}

/// The body of a raw answer so far: after the header block, chunks
/// joined when it is chunked (a chunk not complete yet is left out).
fn body_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let Some((head, mut rest)) = text.split_once("\r\n\r\n") else { return String::new() };
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return rest.to_string();
    }
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        let (Some(chunk), Some(next)) = (after.get(..n), after.get(n + 2..)) else { break };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        rest = next;
    }
    out
}

impl Stream {
    /// Opens `/events`.
    pub fn open(addr: SocketAddr, auth: Option<(&str, &str)>) -> Stream {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connecting to the page");
        s.write_all(request("/events", auth).as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Stream { s, raw: Vec::new(), text: String::new() }
    }

    /// Reads until `done(everything so far)` or `limit`; whether it held.
    pub fn until(&mut self, limit: Duration, mut done: impl FnMut(&str) -> bool) -> bool {
        let t0 = Instant::now();
        let mut buf = [0u8; 8192];
        while !done(&self.text) {
            if t0.elapsed() > limit {
                return false;
            }
            match self.s.read(&mut buf) {
                Ok(0) => return done(&self.text),
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.text = body_of(&self.raw);
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading the event stream: {e}"),
            }
        }
        true
    }

    /// The `data:` lines of the events named `name`, parsed.
    pub fn events(&self, name: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for block in self.text.split("\n\n") {
            let mut lines = block.lines();
            let is = lines.clone().any(|l| l == format!("event: {name}"));
            if let (true, Some(data)) = (is, lines.find_map(|l| l.strip_prefix("data: "))) {
                out.push(serde_json::from_str(data).unwrap_or_else(|e| panic!("bad event data {data:?}: {e}")));
            }
        }
        out
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The samples of a scrape, parsed by a Prometheus text-format parser.
pub fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let a = get(addr, "/metrics", None);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.header("content-type").is_some_and(|c| c.starts_with("application/openmetrics-text")), "{a:?}");
    let lines = a.body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the metrics parse")
}

/// The value of `name` with the labels `want` (0 when absent).
pub fn value(s: &prometheus_parse::Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value as V;
    s.samples
        .iter()
        .filter(|x| x.metric == name && want.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => *v,
            V::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            V::Summary(_) => f64::NAN,
        })
        .sum()
}

/// A lab of 3 boards whose labd serves the page on a free loopback port,
/// with `extra` lines in its `[web]`.
pub fn lab_with_page(extra: &str) -> (super::Lab, SocketAddr) {
    let port = super::ports::free_port();
    let extra = extra.to_string();
    let lab =
        super::Lab::up(3, "rockpro64,pine64", move |t| format!("{t}\n[web]\nlisten = \"127.0.0.1:{port}\"\n{extra}"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The page listens right after the socket does.
    lab.wait_for(Duration::from_secs(20), "the status page", || TcpStream::connect(addr).is_ok());
    (lab, addr)
}

/// The `[web]` lines of a page that asks for `ops` / `password`, its hash
/// made by `labd web-password` in `dir`.
pub fn web_password(dir: &std::path::Path, password: &str) -> String {
    let pass = dir.join("web.pass");
    let mut labd = std::process::Command::new(super::LABD)
        .args(["web-password"])
        .arg(&pass)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    labd.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = labd.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    format!("user = \"ops\"\npassword_file = \"{}\"\n", pass.display())
}
