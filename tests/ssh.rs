//! The ssh forced command through a real OpenSSH server on loopback:
//! per-user keys with `command="labcli ..."`, a shared gateway account with
//! `labcli --as NAME`, stdin mode, and hostile command strings.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_sshd(dir: &Path, keys: &[(&str, String)]) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let keydir = dir.join("keys");
    std::fs::create_dir_all(&keydir).unwrap();
    for (user, line) in keys {
        std::fs::write(keydir.join(user), line).unwrap();
    }
    keygen(&dir.join("host_key"));
    let port = free_port();
    let conf = dir.join("sshd_config");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/keys/%u\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin no\n\
             AllowTcpForwarding no\nX11Forwarding no\nLogLevel VERBOSE\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // The test dir must be readable by the users sshd switches to.
    for p in [dir, &keydir] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&conf)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("sshd");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "sshd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Sshd { child, port, dir: dir.to_path_buf() }
}

impl Sshd {
    fn run(&self, user: &str, key: &Path, command: Option<&str>, stdin: &str) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.args(["-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i"])
            .arg(key)
            .args(["-p", &self.port.to_string()])
            .arg(format!("{user}@127.0.0.1"));
        if let Some(c) = command {
            // `--`: ssh would read a command starting with `-` as its own option.
            cmd.arg("--").arg(c);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        {
            use std::io::Write;
            let mut i = child.stdin.take().unwrap();
            i.write_all(stdin.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        if out.status.code() == Some(255) {
            panic!(
                "ssh itself failed: {}\nsshd log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
            );
        }
        out
    }
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect()
}

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
        assert!(code == Some(2) || code == Some(1), "{hostile:?} gave {code:?}: {}", String::from_utf8_lossy(&o.stdout));
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
