//! Jails' SSH host certificates (`[jail] host_ca`) with real OpenSSH: a
//! user who trusts the lab's CA line, and nothing else, logs into claim
//! after claim without touching known_hosts; reinit brings a new host key
//! that is still trusted; renew re-issues the certificate to the new lease
//! end and the jail's sshd loads it without dropping a session; a
//! claimant who copied their jail's key and certificate cannot pass for
//! the next claim's jail at the same address (unless keep_host_key keeps
//! the key for every claim: shown too); and a lab without a CA says so.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::jails::{jail_lab, key_of, netns_list, one_at_a_time, JailNet};
use common::*;
use serde_json::{json, Value};

/// A one-board lab (every claim's jail has the same address) whose host
/// CA `labd ca init` made where lab.toml's `[jail] host_ca` says; labd
/// running. `extra`: further `[jail]` keys. Returns the lab and the CA's
/// known_hosts line.
fn ca_lab(net: &JailNet, extra: &str) -> (Lab, String) {
    let mut lab = jail_lab(1, "rockpro64", net, extra, "");
    let dir = lab.path().to_path_buf();
    // [jail] is lab.toml's last table: the key lands in it.
    let mut toml = std::fs::OpenOptions::new().append(true).open(dir.join("lab.toml")).unwrap();
    writeln!(toml, "host_ca = \"{}\"", dir.join("host_ca").display()).unwrap();
    let init = || Command::new(LABD).args(["ca", "init", "--config"]).arg(&dir).output().unwrap();
    let o = init();
    assert!(o.status.success(), "labd ca init: {}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8(o.stdout).unwrap().trim_end().to_string();
    assert!(line.starts_with("@cert-authority *.jail.boardlab"), "{line}");
    assert!(line.contains(" ssh-ed25519 AAAA"), "{line}");
    assert!(line.ends_with(" boardlab-host-ca") && !line.contains('\n'), "{line}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("host_ca")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let again = init();
    assert_eq!(again.status.code(), Some(1), "never over the key");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let check = Command::new(LABD).arg("check").arg("--config").arg(&dir).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains(&line), "labd check shows the CA line");
    lab.start_labd();
    (lab, line)
}

/// A user's known_hosts file holding only `line`.
fn known_hosts(dir: &Path, user: &str, line: &str) -> PathBuf {
    let p = dir.join(format!("known_hosts.{user}"));
    std::fs::write(&p, format!("{line}\n")).unwrap();
    p
}

/// ssh as a careful user: only `known_hosts` is trusted, strictly, and
/// ssh may update it if it wants to (it must not need to). `words` are
/// what follows `ssh` (a claim reply's command without its `ssh`).
fn ssh(key: &Path, known_hosts: &Path, words: &[&str], cmd: &str) -> Command {
    let mut c = Command::new("ssh");
    c.args([
        "-F",
        "/dev/null",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
    ])
    .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=yes"])
    .args(["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5", "-o", "LogLevel=ERROR"])
    .arg("-o")
    .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
    .arg("-i")
    .arg(key)
    .args(words)
    .arg(cmd);
    c
}

/// The claim reply's `ssh` command run with [`ssh`]'s options.
fn reply_ssh(jail: &Value, key: &Path, known_hosts: &Path, cmd: &str) -> Command {
    let line = jail["ssh"].as_str().expect("jail.ssh");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "ssh", "{line}");
    ssh(key, known_hosts, &words[1..], cmd)
}

#[track_caller]
fn success(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed ({:?}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn claim(lab: &Lab, user: &str, lease: u64) -> Value {
    ok(&lab.as_user(user, &[json!({"fn": "claim", "class": "rockpro64", "lease": lease})]).remove(0)).clone()
}

fn release(lab: &Lab, user: &str, handle: &Value) {
    ok(&lab.as_user(user, &[json!({"fn": "release", "handle": handle})]).remove(0));
}

fn unix(rfc3339: &Value) -> u64 {
    let t = time::OffsetDateTime::parse(rfc3339.as_str().unwrap(), &time::format_description::well_known::Rfc3339);
    u64::try_from(t.unwrap().unix_timestamp()).unwrap()
}

/// The jail's certificate as labd wrote it, parsed, and as OpenSSH lists it.
fn cert_file(lab: &Lab, board: &str) -> (ssh_key::Certificate, String) {
    let f = lab.path().join(format!("jails/{board}/etc/ssh/ssh_host_ed25519_key-cert.pub"));
    let text = std::fs::read_to_string(&f).unwrap();
    let listed = Command::new("ssh-keygen").arg("-L").arg("-f").arg(&f).env("TZ", "UTC").output().unwrap();
    (ssh_key::Certificate::from_openssh(text.trim()).unwrap(), success(&listed))
}

/// The certificate the jail's sshd shows anyone who asks (`ssh-keyscan
/// -c`): `ssh-ed25519-cert-v01@openssh.com AAAA...`.
fn served_cert_line(ip: &str) -> Option<String> {
    let o = Command::new("ssh-keyscan").args(["-c", "-t", "ed25519", "-T", "5", ip]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines().find(|l| l.starts_with("ssh-ed25519-cert-v01@openssh.com ")).map(str::to_string)
}

/// [`served_cert_line`] encoded (its comment is not part of it).
fn served_cert(ip: &str) -> Option<Vec<u8>> {
    ssh_key::Certificate::from_openssh(&served_cert_line(ip)?).ok()?.to_bytes().ok()
}

/// `Valid: from ... to ...` of `ssh-keygen -L` (TZ=UTC) for Unix seconds.
fn valid_line(after: u64, before: u64) -> String {
    let f = |s: u64| {
        let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(s).unwrap()).unwrap();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    format!("Valid: from {} to {}", f(after), f(before))
}

#[test]
fn three_claims_in_a_row_are_trusted_by_one_ca_line_and_known_hosts_never_changes() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.198.0.0/24", board_net: "172.29.0.0/20", uid_base: 8_000_000 };
    let (lab, ca_line) = ca_lab(&NET, "");
    let dir = lab.path().to_path_buf();

    // What a user adds to known_hosts: `labcli known-hosts`, as is.
    let o = lab.labcli_as(ALICE).arg("known-hosts").stdin(Stdio::null()).output().unwrap();
    assert_eq!(success(&o), format!("{ca_line}\n"));
    let o = lab.cli_as(ALICE, &["known-hosts"]);
    assert_eq!(serde_json::from_str::<Value>(&success(&o)).unwrap(), json!({"known_hosts": ca_line}));
    let kh = known_hosts(&dir, ALICE, &ca_line);
    let before = std::fs::read(&kh).unwrap();

    let mut seen: Vec<(String, String, String)> = Vec::new();
    for round in 1..=3 {
        let c = claim(&lab, ALICE, 3600);
        let jail = &c["jail"];
        let (ip, name) = (jail["ip"].as_str().unwrap(), jail["host_name"].as_str().unwrap());
        assert_eq!(jail["known_hosts"], ca_line.as_str(), "round {round}: the CA line");
        let (hex, domain) = name.split_once('.').unwrap();
        assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && domain == "jail.boardlab", "{name}");
        assert!(!name.contains(&c["handle"].as_str().unwrap()[3..]), "the name is not the handle");
        assert_eq!(jail["ssh"], format!("ssh -o HostKeyAlias={name} root@{ip}"));
        let host_key = jail["host_key"].as_str().unwrap();
        assert!(host_key.starts_with(&format!("{ip} ssh-ed25519 AAAA")), "{host_key}");
        let out = success(
            &reply_ssh(jail, &key_of(&dir, ALICE), &kh, "id -u; cat /etc/ssh/ssh_host_ed25519_key.pub")
                .output()
                .unwrap(),
        );
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("0"), "root in the jail");
        assert!(host_key.ends_with(lines.next().unwrap().rsplit_once(' ').unwrap().0.split_once(' ').unwrap().1));
        assert_eq!(std::fs::read(&kh).unwrap(), before, "round {round}: known_hosts unchanged");
        seen.push((ip.to_string(), name.to_string(), host_key.to_string()));
        release(&lab, ALICE, &c["handle"]);
    }
    assert!(seen.iter().all(|s| s.0 == seen[0].0), "one board, one address: {seen:?}");
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            assert_ne!(a.1, b.1, "a name per claim");
            assert_ne!(a.2, b.2, "a host key per claim");
        }
    }
}

#[test]
fn renew_reissues_the_certificate_live_and_reinit_brings_a_new_trusted_key() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.198.1.0/24", board_net: "172.29.16.0/20", uid_base: 8_300_000 };
    let (lab, ca_line) = ca_lab(&NET, "");
    let dir = lab.path().to_path_buf();
    let kh = known_hosts(&dir, ALICE, &ca_line);
    let before = std::fs::read(&kh).unwrap();
    let key = key_of(&dir, ALICE);

    let c = claim(&lab, ALICE, 3600);
    let (board, jail) = (c["board"].as_str().unwrap().to_string(), c["jail"].clone());
    let (ip, name) = (jail["ip"].as_str().unwrap().to_string(), jail["host_name"].as_str().unwrap().to_string());
    let (cert, listed) = cert_file(&lab, &board);
    let after = unix(&c["claimed_at"]) - 300;
    assert_eq!(cert.valid_principals(), std::slice::from_ref(&name), "the claim's name only, never {ip}");
    assert_eq!(cert.key_id(), format!("boardlab:{board}:{name}"));
    assert_eq!(cert.cert_type(), ssh_key::certificate::CertType::Host);
    assert_eq!(cert.valid_after(), after);
    assert!(matches!(cert.valid_before().checked_sub(unix(&c["expires_at"])), Some(0 | 1)), "to the lease end");
    assert!(listed.contains(&valid_line(after, cert.valid_before())), "{listed}");
    assert!(listed.contains(&format!("Key ID: \"boardlab:{board}:{name}\"")), "{listed}");
    assert_eq!(served_cert(&ip), cert.to_bytes().ok(), "the jail's sshd presents it");

    // A session open across the renew.
    let mut session = reply_ssh(&jail, &key, &kh, "while read l; do echo \"got $l\"; done")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to = session.stdin.take().unwrap();
    let mut from = BufReader::new(session.stdout.take().unwrap());
    let mut echo = |to: &mut std::process::ChildStdin, word: &str| {
        writeln!(to, "{word}").unwrap();
        let mut l = String::new();
        from.read_line(&mut l).unwrap();
        l
    };
    assert_eq!(echo(&mut to, "one"), "got one\n");

    let r =
        ok(&lab.as_user(ALICE, &[json!({"fn": "renew", "handle": c["handle"], "lease": 3 * 3600})]).remove(0)).clone();
    let (renewed, listed) = cert_file(&lab, &board);
    assert!(matches!(renewed.valid_before().checked_sub(unix(&r["expires_at"])), Some(0 | 1)), "to the new lease end");
    assert!(renewed.valid_before() >= cert.valid_before() + 2 * 3600 - 5, "moved on by about two hours");
    assert_eq!(renewed.valid_after(), after, "still from the claim's start");
    assert_eq!(renewed.valid_principals(), cert.valid_principals());
    assert_eq!(renewed.public_key(), cert.public_key(), "the same host key");
    assert_ne!(renewed.serial(), cert.serial());
    assert!(listed.contains(&valid_line(after, renewed.valid_before())), "{listed}");
    let t0 = Instant::now();
    while served_cert(&ip) != renewed.to_bytes().ok() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the jail's sshd did not load the renewed certificate");
        std::thread::sleep(Duration::from_millis(100));
    }
    let init_log = std::fs::read_to_string(dir.join(format!("jails/{board}/init.log"))).unwrap_or_default();
    assert!(init_log.contains("labjail: reloading sshd"), "{init_log}");
    assert_eq!(echo(&mut to, "two"), "got two\n", "the session outlived the reload");
    success(&reply_ssh(&jail, &key, &kh, "true").output().unwrap());
    drop(to);
    let end = session.wait_with_output().unwrap();
    assert!(end.status.success(), "{}", String::from_utf8_lossy(&end.stderr));

    // Reinit: a new host key, the same claim name, trusted as before,
    // certified to the renewed lease end.
    let again = ok(&lab.as_user(ALICE, &[json!({"fn": "reinit", "handle": c["handle"]})]).remove(0)).clone();
    let j2 = &again["jail"];
    assert_ne!(j2["host_key"], jail["host_key"], "a new host key");
    assert_eq!(
        (&j2["host_name"], &j2["ssh"], &j2["known_hosts"]),
        (&jail["host_name"], &jail["ssh"], &jail["known_hosts"])
    );
    let out = success(&reply_ssh(j2, &key, &kh, "cat /etc/ssh/ssh_host_ed25519_key.pub").output().unwrap());
    assert!(j2["host_key"].as_str().unwrap().contains(out.split_whitespace().nth(1).unwrap()));
    let (rebuilt, _) = cert_file(&lab, &board);
    assert_ne!(rebuilt.public_key(), cert.public_key());
    assert_eq!(rebuilt.valid_before(), renewed.valid_before(), "the renewed end, not the first");
    assert_eq!(std::fs::read(&kh).unwrap(), before, "known_hosts unchanged");
    release(&lab, ALICE, &c["handle"]);
}

/// An sshd run by a thief: `key` and its certificate, on `ip:port` inside
/// the network namespace `netns` (host root, host files). Killed on drop.
struct Impostor(Child);

impl Impostor {
    fn start(dir: &Path, netns: &str, ip: &str, port: u16, loot: &Path) -> Impostor {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let conf = loot.join("sshd_config");
        std::fs::write(
            &conf,
            format!(
                "ListenAddress {ip}:{port}\nHostKey {l}/key\nHostCertificate {l}/key-cert.pub\n\
                 PidFile {l}/sshd.pid\nAuthorizedKeysFile none\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nLogLevel VERBOSE\n",
                l = loot.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(loot.join("sshd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        common::sweep::started(dir, child.id());
        let imp = Impostor(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect((ip, port)).is_err() {
            let log = std::fs::read_to_string(loot.join("sshd.log")).unwrap_or_default();
            assert!(t0.elapsed() < Duration::from_secs(10), "the impostor's sshd did not start: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
        imp
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The network namespace of `board`'s jail.
fn jail_netns(board: &str) -> String {
    let list = netns_list();
    let ns = list.lines().filter_map(|l| l.split_whitespace().next());
    ns.into_iter()
        .find(|n| n.starts_with("blj") && n.ends_with(&format!("-{board}")))
        .expect("the jail's netns")
        .to_string()
}

#[track_caller]
fn refused(o: &Output, why: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(255), "ssh must fail: {err}");
    assert!(err.contains("Host key verification failed."), "{err}");
    assert!(err.contains(why), "{why:?} in {err}");
    err
}

#[test]
fn a_copied_key_and_certificate_cannot_pass_for_the_next_claims_jail() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.198.2.0/24", board_net: "172.29.32.0/20", uid_base: 8_600_000 };
    let (lab, ca_line) = ca_lab(&NET, "");
    let dir = lab.path().to_path_buf();
    let (alice_kh, bob_kh) = (known_hosts(&dir, ALICE, &ca_line), known_hosts(&dir, BOB, &ca_line));
    let before = std::fs::read(&bob_kh).unwrap();

    // Claim 1: alice, root in her jail, copies out its key and certificate.
    let c1 = claim(&lab, ALICE, 3600);
    let j1 = c1["jail"].clone();
    let loot = dir.join("loot");
    std::fs::create_dir(&loot).unwrap();
    let grab = |file: &str| {
        success(&reply_ssh(&j1, &key_of(&dir, ALICE), &alice_kh, &format!("cat {file}")).output().unwrap())
    };
    std::fs::write(loot.join("key"), grab("/etc/ssh/ssh_host_ed25519_key")).unwrap();
    std::fs::set_permissions(loot.join("key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(loot.join("key-cert.pub"), grab("/etc/ssh/ssh_host_ed25519_key-cert.pub")).unwrap();
    release(&lab, ALICE, &c1["handle"]);

    // Claim 2: bob gets the same board, so the same jail address.
    let c2 = claim(&lab, BOB, 3600);
    let j2 = c2["jail"].clone();
    let ip = j2["ip"].as_str().unwrap().to_string();
    let (name1, name2) = (j1["host_name"].as_str().unwrap(), j2["host_name"].as_str().unwrap());
    assert_eq!(j1["ip"], j2["ip"], "every claim of the board has its address");
    assert_ne!(name1, name2);
    let bob = key_of(&dir, BOB);
    success(&reply_ssh(&j2, &bob, &bob_kh, "true").output().unwrap());

    // The thief's sshd on claim 2's address, inside claim 2's jail network.
    let board = c2["board"].as_str().unwrap();
    let netns = jail_netns(board);
    let imp = Impostor::start(&dir, &netns, &ip, 2222, &loot);
    let to = |alias: Option<&str>, port: &str, kh: &Path| {
        let mut words = vec!["-p", port];
        let a = alias.map(|a| format!("HostKeyAlias={a}"));
        if let Some(a) = &a {
            words.extend(["-o", a.as_str()]);
        }
        let dest = format!("root@{ip}");
        words.push(&dest);
        ssh(&bob, kh, &words, "true").output().unwrap()
    };

    // bob asks for claim 2 by its name: the stolen certificate names claim 1.
    let err = refused(&to(Some(name2), "2222", &bob_kh), "Certificate invalid: name is not a listed principal");
    assert!(err.contains(&format!("No ED25519 host key is known for {name2}")), "{err}");
    // Control: the certificate is genuine (by claim 1's name the host is
    // accepted, and only bob's key is turned away after that).
    let o = to(Some(name1), "2222", &bob_kh);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(255));
    assert!(err.contains("Permission denied (publickey)") && !err.contains("Host key verification failed"), "{err}");
    // By bare address the CA line vouches for nothing: the impostor and
    // the genuine jail alike are unknown.
    refused(&to(None, "2222", &bob_kh), &format!("No ED25519 host key is known for [{ip}]:2222"));
    refused(&to(None, "22", &bob_kh), &format!("No ED25519 host key is known for {ip}"));
    // The genuine jail still is claim 2's.
    success(&reply_ssh(&j2, &bob, &bob_kh, "true").output().unwrap());
    assert_eq!(std::fs::read(&bob_kh).unwrap(), before, "bob's known_hosts unchanged");
    drop(imp);
    release(&lab, BOB, &c2["handle"]);
}

#[test]
fn with_kept_host_keys_jails_are_certified_but_a_former_claimant_can_pass_for_the_next() {
    // What SECURITY.md says of keep_host_key = true, shown: every claimant
    // of the board holds its key, and a certificate is no secret.
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.198.3.0/24", board_net: "172.29.48.0/20", uid_base: 8_900_000 };
    let (lab, ca_line) = ca_lab(&NET, "keep_host_key = true");
    let dir = lab.path().to_path_buf();
    let (alice_kh, bob_kh) = (known_hosts(&dir, ALICE, &ca_line), known_hosts(&dir, BOB, &ca_line));
    let (alice, bob) = (key_of(&dir, ALICE), key_of(&dir, BOB));

    let c1 = claim(&lab, ALICE, 3600);
    let j1 = c1["jail"].clone();
    let stolen = success(&reply_ssh(&j1, &alice, &alice_kh, "cat /etc/ssh/ssh_host_ed25519_key").output().unwrap());
    release(&lab, ALICE, &c1["handle"]);
    let c2 = claim(&lab, BOB, 3600);
    let j2 = c2["jail"].clone();
    assert_eq!(j2["host_key"], j1["host_key"], "the board's kept key");
    assert_ne!(j2["host_name"], j1["host_name"]);
    success(&reply_ssh(&j2, &bob, &bob_kh, "true").output().unwrap());
    let (cert, _) = cert_file(&lab, c2["board"].as_str().unwrap());
    assert_eq!(cert.valid_principals(), [j2["host_name"].as_str().unwrap().to_string()]);

    // Claim 1's key with claim 2's certificate, fetched like anyone can.
    let ip = j2["ip"].as_str().unwrap().to_string();
    let loot = dir.join("loot");
    std::fs::create_dir(&loot).unwrap();
    std::fs::write(loot.join("key"), stolen).unwrap();
    std::fs::set_permissions(loot.join("key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(loot.join("key-cert.pub"), format!("{}\n", served_cert_line(&ip).unwrap())).unwrap();
    let board = c2["board"].as_str().unwrap();
    let netns = jail_netns(board);
    let imp = Impostor::start(&dir, &netns, &ip, 2222, &loot);
    let alias = format!("HostKeyAlias={}", j2["host_name"].as_str().unwrap());
    let dest = format!("root@{ip}");
    let o = ssh(&bob, &bob_kh, &["-p", "2222", "-o", &alias, &dest], "true").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(255));
    assert!(
        err.contains("Permission denied (publickey)") && !err.contains("Host key verification failed"),
        "the impostor passes the host check: {err}"
    );
    drop(imp);
    release(&lab, BOB, &c2["handle"]);
}

/// With `ipv6_pool`, the claim's IPv6 address is a principal of its own
/// claim's certificate and the CA line covers the pool: a user connects
/// to the jail's IPv6 address without an alias, with only the CA line.
#[test]
fn a_claims_ipv6_address_is_trusted_by_the_ca_line_for_that_claim_only() {
    let _turn = one_at_a_time();
    const NET: JailNet = JailNet { pool: "10.198.4.0/24", board_net: "172.29.64.0/20", uid_base: 9_200_000 };
    let (lab, ca_line) = ca_lab(&NET, "ipv6_pool = \"2001:db8:4300::/48\"");
    assert!(ca_line.starts_with("@cert-authority *.jail.boardlab,2001:db8:4300:* ssh-ed25519 "), "{ca_line}");
    let dir = lab.path().to_path_buf();
    let kh = known_hosts(&dir, ALICE, &ca_line);
    let before = std::fs::read(&kh).unwrap();
    let c = claim(&lab, ALICE, 3600);
    let ip6 = c["jail"]["ipv6"].as_str().expect("the jail's IPv6 address").to_string();
    assert!(ip6.starts_with("2001:db8:4300:"), "{ip6}");
    let (cert, _) = cert_file(&lab, c["board"].as_str().unwrap());
    assert_eq!(cert.valid_principals(), [c["jail"]["host_name"].as_str().unwrap().to_string(), ip6.clone()]);
    let target = format!("root@{ip6}");
    let out = success(&ssh(&key_of(&dir, ALICE), &kh, &[&target], "id -u").output().unwrap());
    assert_eq!(out.trim(), "0");
    assert_eq!(std::fs::read(&kh).unwrap(), before, "known_hosts unchanged");
    // The next claim of the board has another /64: the first claim's
    // address is nobody's, and a certificate for it names nothing else.
    release(&lab, ALICE, &c["handle"]);
    let c2 = claim(&lab, ALICE, 3600);
    assert_ne!(c2["jail"]["ipv6"].as_str().unwrap(), ip6);
    let (cert2, _) = cert_file(&lab, c2["board"].as_str().unwrap());
    assert!(!cert2.valid_principals().contains(&ip6), "{:?}", cert2.valid_principals());
    release(&lab, ALICE, &c2["handle"]);
}

#[test]
fn known_hosts_in_a_lab_without_a_host_ca_says_what_to_trust_instead() {
    let lab = Lab::up(1, "rockpro64", |t| t);
    let r = lab.req(json!({"fn": "known_hosts"}));
    assert_eq!(code(&r), "bad_request");
    assert!(r["error"]["message"].as_str().unwrap().contains("no SSH host CA ([jail] host_ca)"), "{r}");
    assert_eq!(code(&lab.req(json!({"fn": "known_hosts", "x": 1}))), "bad_request");
    let o = lab.labcli_as(BOB).arg("known-hosts").stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("labcli: this lab has no SSH host CA") && err.contains("`host_key`"), "{err}");
    assert!(err.trim_end().ends_with("(bad_request)"), "{err}");
}
