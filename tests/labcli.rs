//! End-to-end tests of the `labcli` binary against a protocol-level fake.
//!
//! `FakeLabd` is NOT labd: it is a minimal JSON-lines server on a Unix socket
//! in a temp dir that records every request line verbatim and answers with
//! canned replies. It exists only because the daemon is not written yet, and
//! only tests the client side of the wire protocol: exactly which bytes labcli
//! sends, how it renders replies, and its exit statuses. Tests against the
//! real labd replace it once the daemon exists.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LABCLI: &str = env!("CARGO_BIN_EXE_labcli");

#[derive(Default)]
struct Log {
    /// Request lines, verbatim, in arrival order.
    lines: Vec<String>,
    connections: usize,
    /// Raw bytes received after a `console` reply.
    console_input: Vec<u8>,
    console_done: bool,
}

struct FakeLabd {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    log: Arc<Mutex<Log>>,
}

fn board(name: &str, state: &str, user: Value) -> Value {
    json!({"board": name, "class": "rockpro64", "state": state, "user": user,
           "power": "off", "claimed_at": null, "expires_at": null})
}

/// The canned answer to one request; `None` drops the connection instead.
fn answer(req: &Value) -> Option<Value> {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let ok = |result: Value| Some(json!({"id": id, "ok": true, "result": result}));
    let fail =
        |code: &str, message: &str| Some(json!({"id": id, "ok": false, "error": {"code": code, "message": message}}));
    match req.get("fn").and_then(Value::as_str) {
        Some("whoami") => ok(json!({"user": "alice", "uid": 1000, "admin": false})),
        Some("classes") => ok(json!([{"class": "rockpro64", "total": 3, "available": 2}])),
        Some("status") if req.get("mine") == Some(&json!(true)) => {
            let mut b = board("rockpro64-2", "claimed", json!("alice"));
            b["handle"] = json!("bl-0000000000000000000000000000beef");
            ok(json!([b]))
        }
        Some("known_hosts") => ok(json!({"known_hosts": "@cert-authority * ssh-ed25519 AAAAC3Nz lab"})),
        Some("status") => {
            ok(json!(
                [board("rockpro64-1", "available", Value::Null), board("rockpro64-2", "claimed", json!("alice")),]
            ))
        }
        Some("claim") => {
            let mut b = board("rockpro64-1", "claimed", json!("alice"));
            b["handle"] = json!("bl-0123456789abcdef");
            b["jail"] = Value::Null;
            ok(b)
        }
        Some("release") if req.get("handle") == Some(&json!("bad")) => fail("not_claimed", "no such handle"),
        Some("release") => ok(json!({"board": "rockpro64-1", "released": true})),
        Some("dump") => None,
        Some("console") => ok(Value::Null),
        _ => ok(json!({"echo": req})),
    }
}

fn serve(stream: UnixStream, log: Arc<Mutex<Log>>) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = line.trim_end_matches('\n').to_string();
        log.lock().unwrap().lines.push(text.clone());
        let req: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let Some(reply) = answer(&req) else { return };
        if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
        if req.get("fn") == Some(&json!("console")) {
            // Raw mode from here on: a banner, then everything until the
            // client closes or stops typing for a while (labcli keeps the
            // session open when its input ends; the daemon ends it).
            let _ = writer.write_all(b"U-Boot banner\n");
            let mut input = Vec::new();
            let _ = reader.get_ref().set_read_timeout(Some(std::time::Duration::from_millis(700)));
            let mut chunk = [0u8; 1024];
            input.extend_from_slice(reader.buffer());
            reader.consume(reader.buffer().len());
            loop {
                match std::io::Read::read(&mut reader, &mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => input.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = writer.write_all(b"bye\n");
            let mut l = log.lock().unwrap();
            l.console_input = input;
            l.console_done = true;
            return;
        }
    }
}

impl FakeLabd {
    fn start() -> FakeLabd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("labd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let l = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                l.lock().unwrap().connections += 1;
                let l = l.clone();
                std::thread::spawn(move || serve(stream, l));
            }
        });
        FakeLabd { _dir: dir, socket, log }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().lines.clone()
    }

    fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }

    fn run(&self, args: &[&str]) -> Output {
        run(&self.socket, args, None, None)
    }
}

/// Runs labcli with `$LABD_SOCKET` pointing at `socket`, optionally with
/// `$SSH_ORIGINAL_COMMAND` and a stdin text (else stdin is /dev/null).
fn run(socket: &Path, args: &[&str], ssh_cmd: Option<&str>, stdin: Option<&str>) -> Output {
    run_env(socket, args, ssh_cmd, stdin, &[])
}

/// [`run`] with extra environment variables.
fn run_env(socket: &Path, args: &[&str], ssh_cmd: Option<&str>, stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(LABCLI);
    cmd.args(args)
        .env("LABD_SOCKET", socket)
        .env_remove("SSH_ORIGINAL_COMMAND")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.env_remove("LABD_HANDLE").envs(env.iter().copied());
    if let Some(c) = ssh_cmd {
        cmd.env("SSH_ORIGINAL_COMMAND", c);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn sends_the_exact_request_json() {
    let lab = FakeLabd::start();
    let cases: &[(&[&str], &str)] = &[
        (
            &["claim", "rockpro64", "--power", "--lease", "4h", "--wait", "30m"],
            r#"{"id":1,"fn":"claim","class":"rockpro64","power":true,"lease":14400,"wait":1800}"#,
        ),
        (
            &["--wait", "claim", "rockpro64"],
            r#"{"id":1,"fn":"claim","class":"rockpro64","power":false,"wait":31536000}"#,
        ),
        (&["status", "--mine"], r#"{"id":1,"fn":"status","mine":true}"#),
        (&["classes"], r#"{"id":1,"fn":"classes","available":false}"#),
        (&["release", "bl-1"], r#"{"id":1,"fn":"release","handle":"bl-1"}"#),
        (&["renew", "bl-1", "--lease", "1d"], r#"{"id":1,"fn":"renew","handle":"bl-1","lease":86400}"#),
        (&["power-cycle", "bl-1"], r#"{"id":1,"fn":"power_cycle","handle":"bl-1"}"#),
        (&["log", "--tail", "20", "bl-1"], r#"{"id":1,"fn":"console_log","handle":"bl-1","tail":20}"#),
        (&["maintenance", "rockpro64-2", "off"], r#"{"id":1,"fn":"maintenance","board":"rockpro64-2","on":false}"#),
        (&["force-release", "rockpro64-2"], r#"{"id":1,"fn":"force_release","board":"rockpro64-2"}"#),
        (&["whoami", "--as", "alice"], r#"{"id":1,"fn":"whoami","as":"alice"}"#),
    ];
    for (args, _) in cases {
        let o = lab.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    let want: Vec<String> = cases.iter().map(|(_, l)| l.to_string()).collect();
    assert_eq!(lab.lines(), want);
}

#[test]
fn human_output_and_exit_0() {
    let lab = FakeLabd::start();
    let o = lab.run(&["status"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "BOARD        CLASS      STATE      USER   POWER  EXPIRES\n\
         rockpro64-1  rockpro64  available  -      off    -\n\
         rockpro64-2  rockpro64  claimed    alice  off    -\n"
    );
    let o = lab.run(&["whoami"]);
    assert_eq!(stdout(&o), "alice (uid 1000), not an admin\n");
    let o = lab.run(&["claim", "rockpro64"]);
    assert!(stdout(&o).contains("handle: bl-0123456789abcdef"), "{}", stdout(&o));
    assert!(stdout(&o).contains("rockpro64-1"));
}

#[test]
fn json_output() {
    let lab = FakeLabd::start();
    let o = lab.run(&["--json", "classes"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 1);
    let result: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(result, json!([{"class": "rockpro64", "total": 3, "available": 2}]));
    let o = lab.run(&["release", "bad", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let reply: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(reply["error"]["code"], json!("not_claimed"));
    assert_eq!(stdout(&o).lines().count(), 1);
}

#[test]
fn error_reply_is_exit_1_with_code_on_stderr() {
    let lab = FakeLabd::start();
    let o = lab.run(&["release", "bad"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "labcli: no such handle (not_claimed)\n");
    assert_eq!(stdout(&o), "");
}

#[test]
fn usage_errors_are_exit_2_and_send_nothing() {
    let lab = FakeLabd::start();
    let long = "x".repeat(70 * 1024);
    for args in [
        &["frobnicate"][..],
        &["status", "--colour"],
        &["claim"],
        &["claim", "a", "b"],
        &["claim", "x", "--lease", "0s"],
        &["claim", "x", "--lease", "30"],
        &["claim", "x", "--wait", "500ms"],
        &["maintenance", "b1", "maybe"],
        &["status", "--available"],
        &["claim", long.as_str()],
    ] {
        let o = lab.run(args);
        assert_eq!(o.status.code(), Some(2), "{:?}", &args[..1]);
        assert!(stderr(&o).starts_with("labcli: "), "{}", stderr(&o));
    }
    assert!(lab.lines().is_empty());
    assert_eq!(lab.connections(), 0);
}

#[test]
fn help_and_version_are_exit_0() {
    let o = run(Path::new("/nonexistent"), &["--help"], None, None);
    assert_eq!(o.status.code(), Some(0));
    for needle in ["Usage: labcli", "--power", "--as", "--json", "LABD_SOCKET", "LABD_HANDLE", "Exit status"] {
        assert!(stdout(&o).contains(needle), "{needle}: {}", stdout(&o));
    }
    for args in [&["help"][..], &["help", "claim"], &["claim", "--help"], &["release", "-h"], &["run", "--help"]] {
        let o = run(Path::new("/nonexistent"), args, None, None);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage: labcli"), "{args:?}");
    }
    assert!(stdout(&run(Path::new("/x"), &["help", "claim"], None, None)).contains("--wait"));
    let o = run(Path::new("/nonexistent"), &["--version"], None, None);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), format!("labcli {}\n", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn missing_handle_is_a_usage_error_outside_a_jail() {
    let lab = FakeLabd::start();
    for args in [&["release"][..], &["power-cycle"], &["renew", "--lease", "1h"], &["log"], &["console"]] {
        let o = lab.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("needs a HANDLE"), "{}", stderr(&o));
    }
    assert_eq!(lab.connections(), 0);
    // LABD_HANDLE is the default; a board name is looked up in `status --mine`.
    let o = run_env(&lab.socket, &["release"], None, None, &[("LABD_HANDLE", "bl-9")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run_env(&lab.socket, &["power-on"], None, None, &[("LABD_HANDLE", "rockpro64-2")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = lab.run(&["renew", "rockpro64-2", "--lease", "1h30m"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A name the caller does not hold goes to labd as it is.
    let o = lab.run(&["log", "rockpro64-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let beef = "bl-0000000000000000000000000000beef";
    assert_eq!(
        lab.lines(),
        vec![
            r#"{"id":1,"fn":"release","handle":"bl-9"}"#.to_string(),
            r#"{"id":1,"fn":"status","mine":true}"#.to_string(),
            format!(r#"{{"id":2,"fn":"power_on","handle":"{beef}"}}"#),
            r#"{"id":1,"fn":"status","mine":true}"#.to_string(),
            format!(r#"{{"id":2,"fn":"renew","handle":"{beef}","lease":5400}}"#),
            r#"{"id":1,"fn":"status","mine":true}"#.to_string(),
            r#"{"id":2,"fn":"console_log","handle":"rockpro64-1"}"#.to_string(),
        ]
    );
}

#[test]
fn every_error_has_one_json_shape_under_json() {
    let lab = FakeLabd::start();
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone.sock");
    for (socket, args, exit, code) in [
        (&lab.socket, &["--json", "frob"][..], 2, "usage"),
        (&lab.socket, &["claim", "--json"], 2, "usage"),
        (&lab.socket, &["release", "--json"], 2, "usage"),
        (&lab.socket, &["release", "bad", "--json"], 1, "not_claimed"),
        (&gone, &["status", "--json"], 3, "unreachable"),
    ] {
        let o = run(socket, args, None, None);
        assert_eq!(o.status.code(), Some(exit), "{args:?}");
        let v: Value = serde_json::from_str(stdout(&o).trim_end()).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(v["ok"], json!(false), "{args:?}");
        assert_eq!(v["error"]["code"], json!(code), "{args:?}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{args:?}");
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
        assert_eq!(stdout(&o).lines().count(), 1);
        assert!(stderr(&o).starts_with("labcli: "), "{args:?}: {}", stderr(&o));
    }
    // Unreachable names the socket and what to check.
    let o = run(&gone, &["status"], None, None);
    let e = stderr(&o);
    assert!(e.contains(&gone.display().to_string()) && e.contains("is labd running"), "{e}");
}

#[test]
fn known_hosts_prints_the_line() {
    let lab = FakeLabd::start();
    let o = lab.run(&["known-hosts"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "@cert-authority * ssh-ed25519 AAAAC3Nz lab\n");
    assert_eq!(lab.lines(), vec![r#"{"id":1,"fn":"known_hosts"}"#.to_string()]);
}

#[test]
fn unreachable_daemon_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody.sock");
    let o = run(&missing, &["status"], None, None);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains(&missing.display().to_string()), "{}", stderr(&o));

    // A daemon that drops the connection before replying.
    let lab = FakeLabd::start();
    let o = lab.run(&["dump"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("closed the connection"), "{}", stderr(&o));
}

fn canary() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("labcli-canary-{}-{nanos}", std::process::id()))
}

#[test]
fn forced_command_never_runs_a_shell() {
    let lab = FakeLabd::start();
    let c = canary();
    let c = c.display();
    for cmd in [
        format!("status; touch {c}"),
        format!("status && touch {c}"),
        format!("status | touch {c}"),
        format!("`touch {c}`"),
        format!("$(touch {c})"),
        format!("status `touch {c}`"),
        format!("status $(touch {c})"),
        format!("status \"$(touch {c})\""),
        format!("status '$(touch {c})"),
        format!("status\ntouch {c}"),
        format!("labcli status --as root; touch {c}"),
    ] {
        let o = run(&lab.socket, &["--as", "alice"], Some(&cmd), None);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
    }
    // Quoted, the same text is just a literal argument.
    let cmd = format!("labcli claim '$(touch {c})'");
    let o = run(&lab.socket, &["--as", "alice"], Some(&cmd), None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let sent: Value = serde_json::from_str(&lab.lines()[0]).unwrap();
    assert_eq!(sent["class"], json!(format!("$(touch {c})")));
    assert_eq!(lab.lines().len(), 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!Path::new(&c.to_string()).exists(), "canary {c} was created");
}

#[test]
fn forced_command_identity_comes_from_argv_only() {
    let lab = FakeLabd::start();
    let o = run(&lab.socket, &["--as", "alice"], Some("labcli status --mine --json"), None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(lab.lines(), vec![r#"{"id":1,"fn":"status","mine":true,"as":"alice"}"#.to_string()]);
    assert!(stdout(&o).starts_with('['));
    for cmd in ["status --as root", "--socket /tmp/x status", "whoami --as=root"] {
        let o = run(&lab.socket, &["--as", "alice"], Some(cmd), None);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(stderr(&o).contains("not allowed"), "{}", stderr(&o));
    }
    assert_eq!(lab.lines().len(), 1);
}

#[test]
fn stdin_mode_answers_one_json_line_per_request() {
    let lab = FakeLabd::start();
    let input = "status --mine\n\
                 \n\
                 {\"id\":\"j1\",\"fn\":\"whoami\",\"as\":\"root\"}\n\
                 status; rm -rf /\n\
                 release bad\n\
                 {broken\n\
                 whoami\n";
    // Empty $SSH_ORIGINAL_COMMAND: read stdin, as with `ssh labhost labcli`.
    let o = run(&lab.socket, &["--as", "alice"], Some(""), Some(input));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let replies: Vec<Value> =
        stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert_eq!(replies.len(), 6, "{}", stdout(&o));
    assert_eq!(replies[0]["ok"], json!(true));
    assert_eq!(replies[0]["id"], json!(1));
    assert_eq!(replies[1]["id"], json!("j1"));
    assert_eq!(replies[1]["result"]["user"], json!("alice"));
    assert_eq!(
        replies[2],
        json!({"id": null, "ok": false,
        "error": {"code": "bad_request", "message": "unknown command \"status;\" (did you mean \"status\"?)"}})
    );
    assert_eq!(replies[3]["error"]["code"], json!("not_claimed"));
    assert_eq!(replies[4]["error"]["code"], json!("bad_request"));
    assert_eq!(replies[5]["id"], json!(3));
    let sent = lab.lines();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0], r#"{"id":1,"fn":"status","mine":true,"as":"alice"}"#);
    // A JSON line is passed through, with `as` replaced by --as.
    let j: Value = serde_json::from_str(&sent[1]).unwrap();
    assert_eq!(j, json!({"id": "j1", "fn": "whoami", "as": "alice"}));
    assert_eq!(sent[2], r#"{"id":2,"fn":"release","handle":"bad","as":"alice"}"#);
    assert_eq!(sent[3], r#"{"id":3,"fn":"whoami","as":"alice"}"#);
    assert_eq!(lab.connections(), 1, "one connection for the whole session");
}

#[test]
fn stdin_mode_without_any_command() {
    let lab = FakeLabd::start();
    let o = run(&lab.socket, &[], None, Some("whoami\n{\"fn\":\"classes\"}"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2);
    assert_eq!(lab.lines()[1], r#"{"fn":"classes"}"#);
    // A usage error only, no daemon needed.
    let o = run(Path::new("/nonexistent"), &[], None, Some("console bl-1\n"));
    assert_eq!(o.status.code(), Some(1));
    // The daemon is needed and gone.
    let o = run(Path::new("/nonexistent"), &[], None, Some("whoami\n"));
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn console_copies_both_ways_and_detaches() {
    let lab = FakeLabd::start();
    let o = run(&lab.socket, &["console", "bl-1"], None, Some("help\nprintenv\n"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "U-Boot banner\nbye\n");
    assert_eq!(lab.lines()[0], r#"{"id":1,"fn":"console","handle":"bl-1","read_only":false}"#);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.log.lock().unwrap().console_done && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lab.log.lock().unwrap().console_input, b"help\nprintenv\n");

    // `~.` after a newline detaches; what follows is never sent.
    let lab = FakeLabd::start();
    let o = run(&lab.socket, &["console", "bl-1"], None, Some("ls\n~.secret\n"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.log.lock().unwrap().console_done && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lab.log.lock().unwrap().console_input, b"ls\n");
}
