//! A real OpenSSH server on loopback for the forced-command tests: its own
//! host key and config in a temp dir, one authorized_keys file per user
//! (`AuthorizedKeysFile DIR/keys/%u`), no PAM, nothing system-wide touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ssh client options every test uses against the loopback sshd: no
/// prompts, no host key to remember (the server is the test's own).
pub const CLIENT_OPTS: &[&str] = &[
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
];

pub fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

use super::ports::free_port;

pub fn start_sshd(dir: &Path, keys: &[(&str, String)]) -> Sshd {
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
    pub fn run(&self, user: &str, key: &Path, command: Option<&str>, stdin: impl AsRef<[u8]>) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.arg("-T")
            .args(CLIENT_OPTS)
            .arg("-i")
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
            i.write_all(stdin.as_ref()).unwrap();
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

pub fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}
