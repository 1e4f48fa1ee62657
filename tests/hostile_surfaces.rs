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

use common::http::{base64, get, lab_with_page, web_password, Stream};
use common::{code, ok, Lab, ALICE, BOB};
use serde_json::json;

/// A page with a password (`ops` / `correct horse`).
fn lab_with_password() -> (Lab, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (lab, addr) = lab_with_page(&web_password(dir.path(), "correct horse"));
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
/// Flooding threads, told to stop and joined when dropped (also when
/// the test fails).
struct Stop(std::sync::Arc<std::sync::atomic::AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

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
    // A browser's page meanwhile: its stream is refused, and the page
    // tries again by itself (a browser does not, after a 503).
    let driver = common::browser::Driver::start(lab.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let c = rt.block_on(async {
        let c = driver.session(&lab.path().join("chrome")).await;
        c.goto(&format!("http://{addr}/")).await.unwrap();
        let refused = "return document.body.dataset.live === '0';";
        common::browser::until_true(&c, Duration::from_secs(30), "the stream refused", refused).await;
        c
    });
    drop(slow);
    drop(held);
    rt.block_on(async {
        let live = "return document.body.dataset.live === '1';";
        common::browser::until_true(&c, Duration::from_secs(30), "the page live again", live).await;
        let _ = c.close().await;
    });
    let mut st = Stream::open(addr, None);
    let fresh = st.until(Duration::from_secs(30), |t| t.contains("event: lab"));
    assert!(fresh, "no stream after the attacker left: {}", st.text);
    still_serves(&lab);
}

/// The body of an answer (after its head).
fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Whether `t` holds `bl-` and 32 hex digits (a claim handle).
fn handle_shaped(t: &str) -> bool {
    t.match_indices("bl-").any(|(i, _)| {
        t.as_bytes()
            .get(i + 3..i + 35)
            .is_some_and(|h| h.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)))
    })
}

/// Attack: get past the page's password without it (HEAD, other
/// methods, encoded and doubled paths, a query, absolute-form targets,
/// broken and oversized `Authorization` headers), tell a wrong user from
/// a wrong password by time, and lock the operator out with a flood of
/// guesses (the checks run one at a time).
#[test]
fn the_pages_password_has_no_way_around_and_guesses_do_not_lock_the_operator_out() {
    let (lab, addr, _dir) = lab_with_password();
    let good = ("ops", "correct horse");
    let long_auth = "A".repeat(64 * 1024);
    let b = |s: &str| base64(s.as_bytes());
    let mut tries: Vec<String> = Vec::new();
    for path in [
        "/metrics",
        "//metrics",
        "/metrics?",
        "/metrics?x=1",
        "/metrics/",
        "/./metrics",
        "/%6detrics",
        "/%2fmetrics",
        "/events/../metrics",
        "/app.js/../metrics",
        "/METRICS",
        "/events",
        "/%65vents",
        "/",
        "/index.html",
        "/app.js",
    ] {
        for method in ["GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE", "PATCH", "TRACE", "CONNECT", "FOO"] {
            tries.push(format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"));
        }
        for auth in [
            "Basic".to_string(),
            "Basic ".to_string(),
            format!("Basic {}", b("ops")),
            format!("Basic {}", b("ops:")),
            format!("Basic {}", b(":correct horse")),
            format!("Basic {}", b("ops:correct horse ")),
            format!("Basic {}", b("OPS:correct horse")),
            format!("Basic {}", b("ops:correct horse\0")),
            format!("basic {}", b("ops:wrong")),
            format!("Bearer {}", b("ops:correct horse")),
            format!("Basic {}=====", b("ops:correct hors")),
            format!("Basic {long_auth}"),
        ] {
            tries.push(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: {auth}\r\n\r\n"));
        }
        tries.push(format!("GET http://localhost{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
    }
    for t in &tries {
        let a = raw_within(addr, t.as_bytes(), Duration::from_secs(10));
        let Some((status, text)) = a else { continue }; // closed without an answer: nothing given
        let first = t.lines().next().unwrap_or("");
        assert!(
            status != 200 && !(200..300).contains(&status),
            "{first:?} got through: {}",
            &text[..text.len().min(300)]
        );
        let body = body(&text);
        assert!(
            !body.contains("boardlab_") && !body.contains("event: lab") && !body.contains("<table"),
            "{first:?} showed the lab: {}",
            &text[..text.len().min(300)]
        );
    }

    // The password works, and is remembered (no check a request).
    let ok200 = get_within(addr, "/metrics", Some(good), Duration::from_secs(10));
    assert!(ok200.as_ref().is_some_and(|(s, _)| *s == 200), "{ok200:?}");

    // Timing: a wrong user costs what a wrong password does.
    let time = |auth: (&str, &str)| {
        let mut v: Vec<Duration> = (0..7)
            .map(|_| {
                let t0 = Instant::now();
                let a = get_within(addr, "/metrics", Some(auth), Duration::from_secs(10));
                assert_eq!(a.map(|a| a.0), Some(401));
                t0.elapsed()
            })
            .collect();
        v.sort();
        v[3]
    };
    let (wrong_user, wrong_pass) = (time(("root", "correct horse")), time(("ops", "correct horsf")));
    eprintln!("median refusal: wrong user {wrong_user:?}, wrong password {wrong_pass:?}");
    let (lo, hi) = if wrong_user < wrong_pass { (wrong_user, wrong_pass) } else { (wrong_pass, wrong_user) };
    assert!(
        hi < lo * 3 + Duration::from_millis(20),
        "a wrong user name is told apart by time: {wrong_user:?} vs {wrong_pass:?}"
    );

    // A flood of guesses (as many at once as a local user cares to
    // send) while the operator logs in with a password not yet
    // remembered (another browser: the cache is by user and password,
    // so a new scrape with the same password would pass; the first one
    // must not wait behind every guess).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guesses = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let (stop, guesses) = (stop.clone(), guesses.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let pw = format!("guess {i} {}", guesses.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                    let _ = get_within(addr, "/metrics", Some(("ops", &pw)), Duration::from_secs(30));
                }
            })
        })
        .collect();
    let flood = Stop(stop, threads);
    std::thread::sleep(Duration::from_secs(3));
    // The socket is not slowed by the guessing.
    let t0 = Instant::now();
    still_serves(&lab);
    let socket_took = t0.elapsed();
    // A remembered credential passes at once; the operator's first login
    // waits behind the guesses in flight.
    let t0 = Instant::now();
    let remembered = get_within(addr, "/metrics", Some(good), Duration::from_secs(30));
    let remembered_took = t0.elapsed();
    drop(flood);
    let n = guesses.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{n} guesses; socket claim+release took {socket_took:?}; a remembered login took {remembered_took:?}");
    assert!(remembered.as_ref().is_some_and(|(s, _)| *s == 200), "{remembered:?}");
    assert!(remembered_took < Duration::from_secs(5), "the operator waited {remembered_took:?} behind the guesses");
    assert!(socket_took < Duration::from_secs(10), "the socket waited {socket_took:?}");
    still_serves(&lab);
}

/// Attack: ask the page for files (path traversal, encoded dots, the
/// assets' source paths), put markup in the Host header and the path,
/// send oversized and countless headers, a smuggled second request
/// (Content-Length with Transfer-Encoding), a bare HTTP/0.9 line and
/// garbage. Nothing but the page's own answers comes back, nothing is
/// reflected, and the page and socket still serve.
#[test]
fn the_page_serves_no_files_reflects_nothing_and_survives_odd_requests() {
    let (lab, addr) = lab_with_page("");
    let marker = "<script>alert(1)</script>";
    for path in [
        "/../../../../etc/passwd",
        "/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/app.js/../../../../etc/passwd",
        "/app.js%00.html",
        "/assets/index.html",
        "/src/web/assets/app.js",
        "/static/../../../../proc/self/environ",
        "/.git/config",
        "/%3Cscript%3Ealert(1)%3C/script%3E",
        "/<script>alert(1)</script>",
    ] {
        let req = format!("GET {path} HTTP/1.0\r\nHost: {marker}\r\n\r\n");
        let (status, text) = raw_within(addr, req.as_bytes(), Duration::from_secs(10)).unwrap_or((0, String::new()));
        assert!(status == 404 || status == 400 || status == 0, "{path}: {status}: {text}");
        assert!(!text.contains("root:x:0:0") && !text.contains("[core]") && !text.contains("PATH="), "{path}: {text}");
        assert!(!text.contains("<script>"), "{path} reflected: {text}");
    }
    let (status, text) =
        raw_within(addr, format!("GET / HTTP/1.0\r\nHost: {marker}\r\n\r\n").as_bytes(), Duration::from_secs(10))
            .unwrap();
    assert_eq!(status, 200);
    assert!(!text.contains(marker) && !text.contains("alert(1)"), "the Host header is reflected: {text}");

    let big = "x".repeat(200 * 1024);
    let many: String = (0..2000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let odd: Vec<Vec<u8>> = vec![
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").into_bytes(),
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes(),
        // Smuggling: which length counts? Either way one answer for /
        // and never a second for the smuggled /metrics... a second
        // request on a kept-alive connection is fine, but only if the
        // server read the body as the length said.
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n".to_vec(),
        b"GET /\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
        b"GET /\xff\xfe HTTP/1.1\r\nHost: \xff\r\n\r\n".to_vec(),
        vec![b'\n'; 100_000],
    ];
    for req in &odd {
        let a = raw_within(addr, req, Duration::from_secs(10));
        if let Some((status, text)) = &a {
            assert!(!text.contains("<script>"), "{status}: {text}");
        }
        // The page still answers someone else after each.
        let p = get_within(addr, "/", None, Duration::from_secs(15));
        assert!(
            p.is_some_and(|(s, _)| s == 200),
            "the page stopped after {:?}",
            String::from_utf8_lossy(&req[..req.len().min(80)])
        );
    }
    assert!(get(addr, "/metrics", None).status == 200);
    still_serves(&lab);
}

/// Attack: a request `id` crafted to break the reply line apart or to
/// forge another reply (a newline, U+2028, `{"ok":true}` inside, an id
/// that is itself a reply), on the socket and through labcli; and
/// hostile text in arguments that labcli's human output must not pass
/// to the terminal as escapes.
#[test]
fn request_ids_cannot_split_or_forge_replies_and_errors_do_not_drive_terminals() {
    let lab = Lab::up(2, "rockpro64,pine64", |t| t);
    let ids = vec![
        json!("a\n{\"id\":1,\"ok\":true,\"result\":{\"board\":\"x\"}}\n"),
        json!("\u{2028}{\"ok\":true}\u{2029}"),
        json!("\r\n\r\n\u{1b}]0;pwned\u{7}"),
        json!({"ok": true, "result": {"handle": "bl-00"}}),
        json!([[[[[["deep"]]]]]]),
        json!("x".repeat(60_000)),
        json!(1e308),
        json!(-0),
    ];
    let mut bytes = Vec::new();
    for id in &ids {
        bytes.extend_from_slice(json!({"id": id, "fn": "whoami"}).to_string().as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(json!({"id": id, "fn": "claim", "class": "\u{1b}[2J<b>"}).to_string().as_bytes());
        bytes.push(b'\n');
    }
    for (how, replies) in [("socket", lab.socket_raw_as(BOB, &bytes)), ("labcli stdin", lab.stdin_raw_as(BOB, &bytes))]
    {
        assert_eq!(replies.len(), ids.len() * 2, "{how}: one reply line per request: {replies:?}");
        for (i, id) in ids.iter().enumerate() {
            let (w, c) = (&replies[2 * i], &replies[2 * i + 1]);
            assert_eq!(&w["id"], id, "{how}");
            assert_eq!(ok(w)["user"], json!(BOB), "{how}: {w}");
            assert_eq!(&c["id"], id, "{how}");
            assert_eq!(code(c), "unknown_class", "{how}: {c}");
        }
    }
    // Human output quotes hostile words escaped.
    for args in [
        vec!["claim", "\u{1b}]0;pwned\u{7}\u{1b}[2J"],
        vec!["history", "--board", "\u{1b}[31mred"],
        vec!["console-log", "\u{9b}2J\u{202e}"],
        vec!["release", "bl-\u{1b}[8m"],
    ] {
        let out = lab.labcli_as(BOB).args(&args).stdin(std::process::Stdio::null()).output().unwrap();
        let all = [out.stdout, out.stderr].concat();
        assert!(!out.status.success(), "{args:?}");
        assert!(
            !all.contains(&0x1b) && !common::contains(&all, "\u{9b}".as_bytes()),
            "{args:?}: {}",
            String::from_utf8_lossy(&all)
        );
    }
    still_serves(&lab);
}

/// The state database of a labsim lab (from lab.toml).
fn state_db(lab: &Lab) -> std::path::PathBuf {
    let t = std::fs::read_to_string(lab.path().join("lab.toml")).unwrap();
    let line = t.lines().find(|l| l.trim_start().starts_with("state =")).expect("state line");
    line.split_once('=').unwrap().1.trim().trim_matches('"').into()
}

/// Attack: `history` as a user, with SQL-shaped filters, absurd limits and
/// dates, and then a flood of the most expensive query there is (a filter
/// no row matches, over a log of 300,000 events: a full scan each, with
/// the largest limit) from as many connections as labd lets one user
/// hold, while alice claims: her claim must not wait behind the flood.
#[test]
fn history_filters_are_strict_and_a_flood_of_history_does_not_stall_claims() {
    let mut lab = Lab::up(2, "rockpro64,pine64", |t| t);
    let a = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64"})]);
    let handle = ok(&a[0])["handle"].as_str().unwrap().to_string();
    for q in [
        json!({"fn": "history", "board": "x' OR '1'='1"}),
        json!({"fn": "history", "about": "%"}),
        json!({"fn": "history", "about": "alice' --"}),
        json!({"fn": "history", "kind": "claim OR 1=1"}),
        json!({"fn": "history", "kind": "*"}),
        json!({"fn": "history", "limit": 4294967295u64}),
        json!({"fn": "history", "limit": 4294967296u64}),
        json!({"fn": "history", "since": 18446744073709551615u64}),
        json!({"fn": "history", "since": "2026-01-01"}),
        json!({"fn": "history", "since": -1}),
        json!({"fn": "history", "until": 1}),
        json!({"fn": "history", "board": "b1\u{0}"}),
    ] {
        let r = lab.as_user(BOB, std::slice::from_ref(&q));
        assert_eq!(code(&r[0]), "bad_request", "{q}: {}", r[0]);
    }
    // What bob may read holds no handle of alice's.
    let r = lab.as_user(BOB, &[json!({"fn": "history", "about": ALICE, "limit": 10000})]);
    let text = ok(&r[0]).to_string();
    assert!(!text.contains(&handle) && !handle_shaped(&text), "{text}");
    let r = lab.as_user(ALICE, &[json!({"fn": "release", "handle": handle})]);
    ok(&r[0]);

    // A big event log, as months of a busy lab make it.
    lab.stop_labd();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300000) \
         INSERT INTO events(at, kind, board, user, detail) \
         SELECT {now} - 300000 + i, 'claim', 'rockpro64-1', 'someone', NULL FROM n;"
    );
    let st = std::process::Command::new("sqlite3").arg(state_db(&lab)).arg(sql).status().unwrap();
    assert!(st.success());
    lab.start_labd();
    // Alone: how long a claim and release take.
    let t0 = Instant::now();
    still_serves(&lab);
    let alone = t0.elapsed();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..60)
        .map(|i| {
            let (stop, asked, sock) = (stop.clone(), asked.clone(), lab.sock());
            std::thread::spawn(move || {
                // As bob (SO_PEERCRED), on a connection of its own.
                let (uid, gid) = common::uid_of(BOB);
                let mut c = std::process::Command::new("socat");
                use std::os::unix::process::CommandExt;
                let mut child = c
                    .args(["-t", "60", "-"])
                    .arg(format!("UNIX-CONNECT:{}", sock.display()))
                    .uid(uid)
                    .gid(gid)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let mut w = child.stdin.take().unwrap();
                let mut r = std::io::BufReader::new(child.stdout.take().unwrap());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A scan that finds nothing, or the largest answer.
                    let q = match i % 3 {
                        0 => json!({"fn": "history", "about": "nobody", "limit": 10000}),
                        1 => json!({"fn": "history", "about": "nobody", "kind": "claim", "limit": 10000}),
                        _ => json!({"fn": "history", "limit": 10000}),
                    };
                    if writeln!(w, "{q}").is_err() {
                        break;
                    }
                    let mut line = String::new();
                    if std::io::BufRead::read_line(&mut r, &mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                drop(w);
                let _ = child.kill();
                let _ = child.wait();
            })
        })
        .collect();
    let flood = Stop(stop, threads);
    std::thread::sleep(Duration::from_secs(3));
    let t0 = Instant::now();
    still_serves(&lab);
    let during = t0.elapsed();
    let t0 = Instant::now();
    let s = lab.as_user(ALICE, &[json!({"fn": "status"})]);
    ok(&s[0]);
    let status_during = t0.elapsed();
    drop(flood);
    let n = asked.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("alone {alone:?}; during {n} history queries: claim+release {during:?}, status {status_during:?}");
    assert!(
        during < alone * 5 + Duration::from_secs(2),
        "a flood of history from bob made alice's claim and release take {during:?} (alone {alone:?})"
    );
    still_serves(&lab);
}

/// Attack: learn or use someone else's claim through `queue`, `status`,
/// `history` and `console_log` (the board's name, wildcards, an empty
/// handle in place of a handle), while alice holds the only pine64 and
/// waits for a second one.
#[test]
fn queue_status_and_console_log_tell_a_user_nothing_of_anothers_claim() {
    let lab = Lab::up(2, "rockpro64,pine64", |t| t);
    let a = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "pine64"})]);
    let handle = ok(&a[0])["handle"].as_str().unwrap().to_string();
    let board = ok(&a[0])["board"].as_str().unwrap().to_string();
    // alice also waits for another pine64 (there is none): a queue entry.
    let mut waiting = lab.spawn_cli_as(ALICE, &["claim", "pine64", "--wait=60s"]);
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _w = Kill(&mut waiting);
    lab.wait_for(Duration::from_secs(20), "alice's wait", || {
        let r = lab.as_user(ALICE, &[json!({"fn": "queue"})]);
        r[0]["result"].as_array().is_some_and(|q| !q.is_empty())
    });
    let r = lab.as_user(
        BOB,
        &[
            json!({"fn": "queue"}),
            json!({"fn": "status"}),
            json!({"fn": "status", "mine": true}),
            json!({"fn": "history", "limit": 10000}),
            json!({"fn": "classes"}),
        ],
    );
    assert_eq!(ok(&r[0]), &json!([]), "bob learns of alice's place: {}", r[0]);
    for x in &r {
        let t = x.to_string();
        assert!(!t.contains(&handle) && !handle_shaped(&t), "{t}");
    }
    for h in [board.as_str(), "*", "%", "bl-%", "", " ", "bl-", &handle.to_uppercase(), &handle[..20]] {
        for f in ["console_log", "console", "power_off", "release", "renew"] {
            let r = lab.as_user(BOB, &[json!({"fn": f, "handle": h})]);
            let c = code(&r[0]);
            assert!(c == "not_claimed" || c == "bad_request", "{f} with {h:?}: {}", r[0]);
        }
    }
    // labcli's board-name convenience looks only at bob's own claims.
    let out = lab.cli_as(BOB, &["console-log", &board]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains(&handle), "{text}");
    assert_eq!(lab.board(&board)["user"], json!(ALICE));
    // alice's claim is whole, and her own log is hers to read.
    let r = lab.as_user(ALICE, &[json!({"fn": "console_log", "handle": handle})]);
    ok(&r[0]);
    let r = lab.as_user(BOB, &[json!({"fn": "claim", "class": "rockpro64"})]);
    let h = ok(&r[0])["handle"].as_str().unwrap().to_string();
    ok(&lab.as_user(BOB, &[json!({"fn": "release", "handle": h})])[0]);
}

/// A user asks and never reads the answers: once the socket's buffer is
/// full, labd's write waits, and after `idle_timeout` labd closes the
/// connection, so it holds neither the connection nor its place under the
/// user's cap for good.
#[test]
fn a_client_that_never_reads_its_answers_is_closed_and_its_place_given_back() {
    const HOG: &str = "import socket,sys,time\n\
        s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n\
        try:\n  [s.sendall(b'{\"fn\":\"status\"}\\n'*1000) for _ in range(200)]\n\
        except OSError: print('closed', flush=True); sys.exit(0)\n\
        time.sleep(60)\n";
    let lab = Lab::up(2, "rockpro64", |t| {
        t.replacen("[daemon]\n", "[daemon]\nconnections_per_user = 2\nidle_timeout = \"2s\"\n", 1)
    });
    let hog = || common::command_as(BOB, "python3").args(["-c", HOG]).arg(lab.sock()).spawn().unwrap();
    let mut hogs = [hog(), hog()];
    for h in &hogs {
        common::sweep::started(lab.path(), h.id());
    }
    // Both of bob's places are taken while labd waits to write to them.
    lab.wait_for(Duration::from_secs(5), "bob's places to be taken", || {
        lab.as_user(BOB, &[json!({"fn": "whoami"})])[0]["error"]["code"] == "busy"
    });
    // Closed after idle_timeout of writes that do not go: bob is served.
    let t0 = Instant::now();
    lab.wait_for(Duration::from_secs(15), "bob served again", || {
        lab.as_user(BOB, &[json!({"fn": "whoami"})])[0]["ok"] == true
    });
    assert!(t0.elapsed() < Duration::from_secs(12), "took {:?}", t0.elapsed());
    for h in &mut hogs {
        let t0 = Instant::now();
        while h.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = h.kill();
        let _ = h.wait();
        let mut out = String::new();
        h.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out.trim(), "closed", "labd closed the hog's connection");
    }
    // Alice was never held up.
    assert_eq!(lab.as_user(ALICE, &[json!({"fn": "whoami"})])[0]["ok"], true);
}

/// One ssh user's sessions come through the gateway (a trusted gateway's
/// connections with `as`): they are held to that user's
/// `connections_per_user`, not only to labd's `max_connections`, so one
/// remote user cannot take every connection; another user through the
/// same gateway is still served.
#[test]
fn one_user_through_the_gateway_holds_only_their_share_of_connections() {
    const SESSION: &str = "import json,socket,sys,time\n\
        s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n\
        s.sendall((json.dumps({'fn':'whoami','as':sys.argv[2]})+'\\n').encode())\n\
        print(s.makefile().readline().strip(), flush=True)\n\
        time.sleep(60)\n";
    // bob's uid plays the gateway (ssh's forced command runs as it).
    let lab = Lab::up(1, "rockpro64", |t| {
        t.replacen("[daemon]\n", &format!("[daemon]\nconnections_per_user = 3\ntrusted_gateways = [\"{BOB}\"]\n"), 1)
    });
    let session = |user: &str| {
        let mut c = common::command_as(BOB, "python3").args(["-c", SESSION]).arg(lab.sock()).arg(user).spawn().unwrap();
        common::sweep::started(lab.path(), c.id());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(c.stdout.take().unwrap()), &mut line).unwrap();
        (c, serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default())
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        let (c, r) = session(ALICE);
        assert_eq!(ok(&r)["user"], ALICE, "{r}");
        held.push(c);
    }
    // The fourth session of alice's: busy, saying whose limit.
    let (mut c, r) = session(ALICE);
    assert_eq!(code(&r), "busy", "{r}");
    let m = r["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains(&format!("{ALICE} holds 3 connections to labd through the gateway")), "{m}");
    let _ = c.kill();
    let _ = c.wait();
    // Another user through the same gateway is served.
    let (mut c, r) = session("bltest-carol");
    assert_eq!(ok(&r)["user"], "bltest-carol", "{r}");
    let _ = c.kill();
    let _ = c.wait();
    // A session of alice's ends: her next one is served.
    let mut first = held.remove(0);
    let _ = first.kill();
    let _ = first.wait();
    lab.wait_for(Duration::from_secs(5), "alice's place back", || {
        let (mut c, r) = session(ALICE);
        let _ = c.kill();
        let _ = c.wait();
        r["ok"] == true
    });
    for mut c in held {
        let _ = c.kill();
        let _ = c.wait();
    }
}
