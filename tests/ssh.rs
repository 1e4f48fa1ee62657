//! The ssh forced command through a real OpenSSH server on loopback:
//! per-user keys with `command="labcli ..."`, a shared gateway account with
//! `labcli --as NAME`, stdin mode, and hostile command strings.

mod common;

use common::ssh::{json_lines, keygen, start_sshd, CLIENT_OPTS};
use common::*;
use serde_json::{json, Value};

#[test]
fn forced_command_over_real_openssh() {
    let lab = Lab::up(2, "rockpro64", |t| t.replace("admins = []", "admins = []\ntrusted_gateways = [\"bltest-gw\"]"));
    let d = tempfile::Builder::new().prefix("bltest-ssh-").tempdir().unwrap();
    keygen(&d.path().join("alice"));
    keygen(&d.path().join("bob"));
    let pubkey = |n: &str| std::fs::read_to_string(d.path().join(format!("{n}.pub"))).unwrap();
    let sock = lab.sock();
    let alice_line = format!("command=\"{LABCLI} --socket {}\",restrict {}", sock.display(), pubkey("alice"));
    let gw_line = format!("command=\"{LABCLI} --socket {} --as {BOB}\",restrict {}", sock.display(), pubkey("bob"));
    let sshd = start_sshd(d.path(), &[(ALICE, alice_line), (GATEWAY, gw_line)]);
    let alice_key = d.path().join("alice");
    let bob_key = d.path().join("bob");

    // A command line in SSH_ORIGINAL_COMMAND.
    let o = sshd.run(ALICE, &alice_key, Some("claim rockpro64 --power --json"), "");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let claim: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(claim["user"], ALICE);
    let board = claim["board"].as_str().unwrap().to_string();
    assert_eq!(lab.switch_power(&board), "on");

    // No command: requests on stdin, text or JSON, one JSON reply a line.
    // The JSON line's `as` is not honoured for a non-gateway user.
    let o = sshd.run(ALICE, &alice_key, None, "status --mine\n{\"id\": 9, \"fn\": \"whoami\", \"as\": \"root\"}\n");
    let replies = json_lines(&o);
    assert_eq!(replies.len(), 2, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(replies[0]["result"][0]["board"], board.as_str());
    assert_eq!(replies[1]["id"], 9);
    assert_eq!(replies[1]["result"]["user"], ALICE);

    // The gateway account acts for bob, and only for bob.
    let o = sshd.run(GATEWAY, &bob_key, Some("whoami --json"), "");
    assert_eq!(o.status.code(), Some(0));
    let w: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(w["user"], BOB);
    let o = sshd.run(GATEWAY, &bob_key, Some("--as root whoami"), "");
    assert_eq!(o.status.code(), Some(2), "--as from the client is refused");
    let o = sshd.run(GATEWAY, &bob_key, None, "{\"fn\": \"whoami\", \"as\": \"root\"}\n");
    assert_eq!(json_lines(&o)[0]["result"]["user"], BOB);
    let o = sshd.run(GATEWAY, &bob_key, Some(&format!("release {} --json", claim["handle"].as_str().unwrap())), "");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not_claimed"));

    // Hostile strings run nothing.
    let canary = d.path().join("canary");
    let c = canary.display();
    for hostile in [
        format!("status; touch {c}"),
        format!("status && touch {c}"),
        format!("status | touch {c}"),
        format!("`touch {c}`"),
        format!("$(touch {c})"),
        format!("status $(touch {c})"),
        format!("claim '$(touch {c})'"),
        format!("status\ntouch {c}"),
        "; rm -rf /".to_string(),
        "--socket /tmp/x status".to_string(),
    ] {
        let o = sshd.run(ALICE, &alice_key, Some(&hostile), "");
        let code = o.status.code();
        assert!(
            code == Some(2) || code == Some(1),
            "{hostile:?} gave {code:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(!canary.exists(), "{hostile:?} ran a command");
    }
    // A quoted class name with metacharacters is just an unknown class.
    let o = sshd.run(ALICE, &alice_key, Some(&format!("claim '$(touch {c})' --json")), "");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown_class"));
    assert!(!canary.exists());

    // Nothing changed for alice.
    let o = sshd.run(ALICE, &alice_key, Some("status --mine --json"), "");
    let mine: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    ok(&lab.req(json!({"fn": "force_release", "board": board})));
}

/// `ssh -t labhost console HANDLE`: labcli gets a terminal on the far side,
/// relays keystrokes both ways, and detaches on `~.` after a newline.
#[test]
fn console_over_ssh_with_a_terminal() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let lab = Lab::up(1, "rockpro64", |t| t);
    let d = tempfile::Builder::new().prefix("bltest-ssh-").tempdir().unwrap();
    keygen(&d.path().join("alice"));
    let pubkey = std::fs::read_to_string(d.path().join("alice.pub")).unwrap();
    let line = format!("command=\"{LABCLI} --socket {}\",restrict,pty {pubkey}", lab.sock().display());
    let sshd = start_sshd(d.path(), &[(ALICE, line)]);
    let r = lab.as_user(ALICE, &[json!({"fn": "claim", "class": "rockpro64", "power": true})]).remove(0);
    let handle = ok(&r)["handle"].as_str().unwrap().to_string();
    lab.wait_for(Duration::from_secs(15), "the board to boot", || {
        lab.req(json!({"fn": "console_log", "handle": handle}))["result"]["log"].as_str().unwrap_or("").contains("=> ")
    });

    let mut child = Command::new("ssh")
        // -tt: a terminal on the far side although ours is a pipe; -e none:
        // our ssh must not eat the `~.`, labcli's own escape.
        .args(["-tt", "-e", "none"])
        .args(CLIENT_OPTS)
        .arg("-i")
        .arg(d.path().join("alice"))
        .args(["-p", &sshd.port.to_string()])
        .arg(format!("{ALICE}@127.0.0.1"))
        .arg("--")
        .arg(format!("console {handle}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        stdin.write_all(b"version\r").unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        // Detach: a newline, then ~.
        stdin.write_all(b"\r~.").unwrap();
        std::thread::sleep(Duration::from_millis(3000));
        drop(stdin);
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the console session did not end on ~.");
        std::thread::sleep(Duration::from_millis(50));
    };
    writer.join().unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(status.success(), "labcli console over ssh -t: {status:?}: {text}");
    assert!(text.contains("boardlab-sim U-Boot 2024.01 (rockpro64-1)"), "the board answered through ssh: {text}");
    // labcli on the far side saw `~.` and detached (the ssh client itself
    // then ends when its input does).
    assert!(text.contains("[console detached]"), "~. detached: {text}");
    // The claim is untouched by the detach.
    assert_eq!(lab.board("rockpro64-1")["user"], ALICE);
}

/// What labcli gained over ssh: help and version from the forced command,
/// a board named for its handle (the gateway's user's own), `console
/// --expect` for CI jobs, and `run` refused (it would run a command on the
/// lab host).
#[test]
fn help_board_names_expect_and_no_run_over_ssh() {
    let lab = Lab::up(1, "rockpro64", |t| t.replace("admins = []", "admins = []\ntrusted_gateways = [\"bltest-gw\"]"));
    let d = tempfile::Builder::new().prefix("bltest-ssh-").tempdir().unwrap();
    keygen(&d.path().join("bob"));
    let pubkey = std::fs::read_to_string(d.path().join("bob.pub")).unwrap();
    let line = format!("command=\"{LABCLI} --socket {} --as {BOB}\",restrict {pubkey}", lab.sock().display());
    let sshd = start_sshd(d.path(), &[(GATEWAY, line)]);
    let key = d.path().join("bob");
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let out = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();

    for cmd in ["--help", "help claim", "release --help", "--version"] {
        let o = sshd.run(GATEWAY, &key, Some(cmd), "");
        assert_eq!(o.status.code(), Some(0), "{cmd}: {}", err(&o));
        assert!(out(&o).starts_with("labcli") || out(&o).contains("Usage: labcli"), "{cmd}: {}", out(&o));
    }

    // `run` would run a command on the lab host: refused, nothing claimed.
    let canary = d.path().join("canary");
    for cmd in [
        format!("run rockpro64 -- touch {}", canary.display()),
        format!("--json run rockpro64 --power -- sh -c 'touch {}'", canary.display()),
    ] {
        let o = sshd.run(GATEWAY, &key, Some(&cmd), "");
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", err(&o));
        assert!(err(&o).contains("`run` is not available"), "{}", err(&o));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!canary.exists(), "run ran a command over ssh");
    assert!(lab.board("rockpro64-1")["user"].is_null(), "run claimed over ssh");
    let o = sshd.run(GATEWAY, &key, Some("--json run x -- id"), "");
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).unwrap()["error"]["code"], "usage");

    // Claim, wait for the boot prompt, act on the board by its name.
    let o = sshd.run(GATEWAY, &key, Some("claim rockpro64 --power --json"), "");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let claim: Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = sshd.run(GATEWAY, &key, Some("console rockpro64-1 --expect '=> ' --since-claim --timeout 30s"), "");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("boardlab-sim U-Boot"), "{}", out(&o));
    let o = sshd.run(GATEWAY, &key, Some("status --mine --json"), "");
    let mine: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(mine[0]["handle"], claim["handle"], "the gateway's user sees their own handle");
    let o = sshd.run(GATEWAY, &key, Some("release rockpro64-1"), "");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(lab.board("rockpro64-1")["user"].is_null(), "released by name over ssh");
    // No handle over ssh (no jail there): a usage error.
    let o = sshd.run(GATEWAY, &key, Some("power-on --json"), "");
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("needs a HANDLE"), "{}", err(&o));
}
