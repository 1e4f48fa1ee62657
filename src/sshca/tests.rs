//! The CA key's checks, and certificates read back two ways: parsed by
//! `ssh-key` and listed by OpenSSH's own `ssh-keygen -L`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::*;

fn keygen(path: &Path, args: &[&str]) {
    let st = Command::new("ssh-keygen").args(["-q", "-N", ""]).args(args).arg("-f").arg(path).output().unwrap();
    assert!(st.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&st.stderr));
}

fn why(path: &Path) -> String {
    HostCa::load(path).map(|_| "loaded".to_string()).unwrap_or_else(|e| e.why)
}

#[test]
fn claim_names_are_stable_distinct_and_hide_the_handle() {
    let h = "bl-0123456789abcdef0123456789abcdef";
    let n = claim_name(h);
    assert_eq!(n, claim_name(h), "the same for the whole claim");
    let (hex, domain) = n.split_once('.').unwrap();
    assert_eq!(domain, "jail.boardlab");
    assert_eq!(hex.len(), 16);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{n}");
    assert_ne!(n, claim_name("bl-0123456789abcdef0123456789abcdee"));
    assert!(!h[3..].contains(hex) && !hex.contains(&h[3..19]), "the name is not the handle");
    // Not a bare hash of the handle: domain-separated.
    let plain: String = Sha256::digest(h.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_ne!(hex, plain);
}

#[test]
fn validity_runs_from_the_claim_less_skew_to_its_lease_end() {
    assert_eq!(validity(1_700_000_000_000, 1_700_003_600_000), (1_699_999_700, 1_700_003_600));
    // A lease end is rounded up, a start down: never shorter than the claim.
    assert_eq!(validity(1_700_000_000_999, 1_700_003_600_001), (1_699_999_700, 1_700_003_601));
    assert_eq!(validity(100, 50), (0, 1), "nonsense in, no panic out");
    assert_eq!(validity(i64::MIN, i64::MAX), (0, 9_223_372_036_854_775), "nor at the ends");
}

#[test]
fn init_makes_a_private_key_once_and_load_reads_it_back() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("host_ca");
    let ca = HostCa::generate(&p).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o600);
    let again = HostCa::load(&p).unwrap();
    assert_eq!(again, ca);
    let line = ca.known_hosts_line();
    let w: Vec<&str> = line.split(' ').collect();
    assert_eq!(w.len(), 5, "{line}");
    assert_eq!((w[0], w[1], w[2], w[4]), ("@cert-authority", "*.jail.boardlab", "ssh-ed25519", "boardlab-host-ca"));
    assert_eq!(
        format!("{} {}", w[2], w[3]),
        ca.public_key().to_openssh().unwrap().trim_end_matches(" boardlab-host-ca")
    );
    // OpenSSH reads the key and agrees on its fingerprint.
    let o = Command::new("ssh-keygen").arg("-l").arg("-f").arg(&p).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains(&ca.fingerprint()), "{o:?}");
    // Never over an existing file, nor through a symlink.
    let e = HostCa::generate(&p).unwrap_err();
    assert!(e.why.contains("exists already"), "{e}");
    assert_eq!(HostCa::load(&p).unwrap(), ca, "the key is untouched");
    std::os::unix::fs::symlink(d.path().join("elsewhere"), d.path().join("link")).unwrap();
    assert!(HostCa::generate(&d.path().join("link")).is_err());
    assert!(!d.path().join("elsewhere").exists());
    // Debug never shows the key.
    let dbg = format!("{ca:?}");
    assert!(dbg.contains("SHA256:") && !dbg.contains("PRIVATE"), "{dbg}");
}

#[test]
fn bad_ca_keys_are_refused_saying_why() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    assert!(why(&p("missing")).starts_with("cannot be read: No such file"), "{}", why(&p("missing")));
    assert_eq!(why(d.path()), "is not a regular file");

    keygen(&p("ok"), &["-t", "ed25519"]);
    assert_eq!(why(&p("ok")), "loaded", "ssh-keygen's ed25519 keys are fine");
    for mode in [0o640, 0o604, 0o620, 0o660] {
        std::fs::set_permissions(p("ok"), std::fs::Permissions::from_mode(mode)).unwrap();
        let w = why(&p("ok"));
        assert!(w.starts_with(&format!("is open to its group or others (mode {mode:04o})")), "{w}");
        assert!(w.contains("chmod 600"), "{w}");
    }
    std::fs::set_permissions(p("ok"), std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(why(&p("ok")), "loaded");
    std::os::unix::fs::chown(p("ok"), Some(65534), None).unwrap();
    assert_eq!(why(&p("ok")), "belongs to uid 65534: the host CA must belong to root");

    std::fs::write(p("pub"), std::fs::read(p("ok.pub")).unwrap()).unwrap();
    std::fs::set_permissions(p("pub"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let w = why(&p("pub"));
    assert!(w.starts_with("is not an OpenSSH private key"), "{w}");
    assert!(w.contains("labd ca init"), "{w}");

    std::fs::write(p("big"), vec![b'A'; 100_000]).unwrap();
    std::fs::set_permissions(p("big"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(why(&p("big")), "is 100000 bytes long: not an SSH private key");

    keygen(&p("ecdsa"), &["-t", "ecdsa"]);
    let w = why(&p("ecdsa"));
    assert!(w.contains("the host CA must be ed25519") || w.starts_with("is not an OpenSSH private key"), "{w}");

    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(p("locked"))
        .output()
        .unwrap();
    assert!(st.status.success());
    assert!(why(&p("locked")).starts_with("is encrypted with a passphrase"), "{}", why(&p("locked")));

    // A FIFO does not hang the check.
    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert_eq!(why(&p("fifo")), "is not a regular file");
}

fn request() -> CertRequest {
    CertRequest {
        principals: vec![claim_name("bl-0123456789abcdef0123456789abcdef")],
        key_id: "boardlab:rockpro64-1:x".into(),
        valid_after: 1_699_999_700,
        valid_before: 1_700_003_600,
    }
}

#[test]
fn host_certificates_say_what_was_asked_and_verify() {
    let d = tempfile::tempdir().unwrap();
    let ca = HostCa::generate(&d.path().join("ca")).unwrap();
    let host = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let req = request();
    let cert = ca.sign_host(host.public_key(), &req).unwrap();
    // Parsed back from its OpenSSH text.
    let text = cert.to_openssh().unwrap();
    assert!(text.starts_with("ssh-ed25519-cert-v01@openssh.com AAAA"), "{text}");
    let back = Certificate::from_openssh(&text).unwrap();
    assert_eq!(back.cert_type(), CertType::Host);
    assert_eq!(back.valid_principals(), req.principals.as_slice());
    assert_eq!(back.key_id(), "boardlab:rockpro64-1:x");
    assert_eq!((back.valid_after(), back.valid_before()), (1_699_999_700, 1_700_003_600));
    assert_eq!(back.public_key(), host.public_key().key_data());
    assert_eq!(back.signature_key(), ca.public_key().key_data());
    assert!(back.critical_options().is_empty() && back.extensions().is_empty());
    back.validate_at(1_700_000_000, [&ca.key.fingerprint(HashAlg::Sha256)]).unwrap();
    assert!(back.validate_at(1_700_003_601, [&ca.key.fingerprint(HashAlg::Sha256)]).is_err(), "expired");
    let other = HostCa::generate(&d.path().join("other")).unwrap();
    assert!(back.validate_at(1_700_000_000, [&other.key.fingerprint(HashAlg::Sha256)]).is_err());
    // Random serials.
    let second = ca.sign_host(host.public_key(), &req).unwrap();
    assert_ne!(second.serial(), cert.serial());
    assert_ne!(second.nonce(), cert.nonce());
    // Never a certificate for every host.
    let e = ca.sign_host(host.public_key(), &CertRequest { principals: vec![], ..req.clone() }).unwrap_err();
    assert!(e.why.contains("without principals"), "{e}");
}

#[test]
fn openssh_lists_the_certificate_as_asked() {
    let d = tempfile::tempdir().unwrap();
    let ca = HostCa::generate(&d.path().join("ca")).unwrap();
    let host = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let mut req = request();
    req.principals.push("2001:db8::7".into());
    let cert = ca.sign_host(host.public_key(), &req).unwrap();
    let f = d.path().join("key-cert.pub");
    std::fs::write(&f, format!("{}\n", cert.to_openssh().unwrap())).unwrap();
    let o = Command::new("ssh-keygen").arg("-L").arg("-f").arg(&f).env("TZ", "UTC").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Type: ssh-ed25519-cert-v01@openssh.com host certificate"), "{out}");
    assert!(out.contains(&format!("Signing CA: ED25519 {}", ca.fingerprint())), "{out}");
    assert!(out.contains("Key ID: \"boardlab:rockpro64-1:x\""), "{out}");
    assert!(out.contains(&format!("Serial: {}", cert.serial())), "{out}");
    assert!(out.contains("Valid: from 2023-11-14T22:08:20 to 2023-11-14T23:13:20"), "{out}");
    let principals: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.trim().starts_with("Principals:"))
        .skip(1)
        .take_while(|l| !l.trim().starts_with("Critical Options:"))
        .map(str::trim)
        .collect();
    assert_eq!(principals, [req.principals[0].as_str(), "2001:db8::7"], "{out}");
}
