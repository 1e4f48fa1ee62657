//! A jail's SSH host certificate (with `[jail] host_ca`): signed by the
//! lab's CA for the jail's host key, valid for the claim's name only (see
//! [`crate::sshca`]) from the claim's start (less clock skew) to its lease
//! end, written next to the key in the jail's `/etc/ssh` and named by
//! `HostCertificate` in its sshd_config. A renewed lease gets a new
//! certificate, which the running sshd loads without dropping sessions.
//!
//! Also the claim reply's `jail` ([`info`]): with a CA, users trust the
//! CA's line and connect with `HostKeyAlias=<claim name>`.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;
use ssh_key::PublicKey;

use super::{fs as jfs, proc_start_time, Jail, JailError, JailInfo, Plan};
use crate::sshca::{self, CertRequest, HostCa};

/// The certificate inside the jail, next to the key it certifies.
pub const HOST_CERT: &str = "/etc/ssh/ssh_host_ed25519_key-cert.pub";
/// The same below the jail's `etc` on the host.
const CERT_IN_ETC: &str = "ssh/ssh_host_ed25519_key-cert.pub";
const CERT_NAME: &str = "ssh_host_ed25519_key-cert.pub";
/// Written first and renamed over the certificate, so that sshd never
/// reads half of one.
const CERT_TMP: &str = ".ssh_host_ed25519_key-cert.pub.labd";

/// What a jail's certificate is made with, besides its key and its claim's
/// names: the CA and the claim's lease.
#[derive(Debug, Clone)]
pub struct CertSpec {
    pub ca: HostCa,
    /// Unix milliseconds, as the claim book keeps them.
    pub claimed_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The host names a claim's certificate is valid for: the claim's own
/// names only. Never the jail's IPv4 address: it derives from the board,
/// so every claim of the board has it, and an earlier claimant holding an
/// old key and certificate could answer for it. Further names unique to
/// the claim (an address of its own) belong here.
pub fn principals(plan: &Plan, handle: &str) -> Vec<String> {
    let mut p = vec![sshca::claim_name(handle)];
    // The claim's IPv6 address is its own: its /64 is drawn at random and
    // never handed out again before every certificate naming it expired
    // (`[jail] ipv6_cooldown` is at least `lease.max`).
    if let Some(prefix) = &plan.board_prefix {
        p.push(super::v6pool::jail_address(prefix).to_string());
    }
    p
}

/// `boardlab:<board>:<claim name>`: what sshd and ssh-keygen log.
pub fn key_id(plan: &Plan, handle: &str) -> String {
    format!("boardlab:{}:{}", plan.board, sshca::claim_name(handle))
}

/// The certificate the jail of `handle`'s claim gets.
pub fn request(plan: &Plan, handle: &str, spec: &CertSpec) -> CertRequest {
    let (valid_after, valid_before) = sshca::validity(spec.claimed_at_ms, spec.expires_at_ms);
    CertRequest { principals: principals(plan, handle), key_id: key_id(plan, handle), valid_after, valid_before }
}

/// sshd_config's line for the certificate.
pub fn sshd_config_line() -> String {
    format!("HostCertificate {HOST_CERT}\n")
}

/// `ssh-ed25519 AAAA...` parsed.
fn parse_public(host_pub: &str) -> Result<PublicKey, JailError> {
    PublicKey::from_openssh(host_pub).map_err(|e| JailError::Command {
        command: "reading the jail's host key".into(),
        detail: format!("{host_pub:?}: {e}"),
    })
}

fn signed(plan: &Plan, handle: &str, host_pub: &str, spec: &CertSpec) -> Result<String, JailError> {
    let key = parse_public(host_pub)?;
    let cert = spec.ca.sign_host(&key, &request(plan, handle, spec)).map_err(|e| JailError::Command {
        command: "signing the jail's host certificate".into(),
        detail: e.to_string(),
    })?;
    let text = cert.to_openssh().map_err(|e| JailError::Command {
        command: "encoding the jail's host certificate".into(),
        detail: e.to_string(),
    })?;
    Ok(format!("{text}\n"))
}

/// Signs the certificate for a jail being built and writes it into its
/// `etc/ssh` (host side, before any jail process runs), owned like the key.
pub fn install(plan: &Plan, handle: &str, host_pub: &str, spec: &CertSpec) -> Result<(), JailError> {
    let text = signed(plan, handle, host_pub, spec)?;
    jfs::safe_write(&plan.data_dir.join("etc"), CERT_IN_ETC, text.as_bytes(), 0o644, plan.host_uid)?;
    Ok(())
}

/// The claim reply's `jail`. `host_pub` is the jail's `ssh-ed25519 AAAA...`;
/// `ca` the lab's host CA, if it has one.
pub fn info(plan: &Plan, port: u16, handle: &str, host_pub: &str, ca: Option<&HostCa>) -> JailInfo {
    let host_name = sshca::claim_name(handle);
    let host_key = format!("{} {host_pub}", plan.known_hosts_host(port));
    let plain = plan.ssh_command(port);
    let (ssh, known_hosts) = match ca {
        None => (plain, host_key.clone()),
        Some(ca) => {
            let args = plain.strip_prefix("ssh ").unwrap_or(&plain);
            (format!("ssh -o HostKeyAlias={host_name} {args}"), ca.known_hosts_line())
        }
    };
    JailInfo {
        ip: plan.jail_ip,
        ssh,
        known_hosts,
        ipv6: plan.board_prefix.as_ref().map(super::v6pool::jail_address),
        board_prefix: plan.board_prefix,
        host_name,
        host_key,
    }
}

/// Fills in what a jail recorded by an older labd lacks in its info.
pub fn complete_info(jail: &mut Jail) {
    if jail.info.host_name.is_empty() {
        jail.info.host_name = sshca::claim_name(&jail.handle);
    }
    if jail.info.host_key.is_empty() && !jail.info.known_hosts.starts_with('@') {
        jail.info.host_key = jail.info.known_hosts.clone();
    }
}

/// A renewed lease: the running jail's certificate is issued again to the
/// new lease end, and its sshd loads it (open sessions stay).
pub fn renew(jail: &Jail, spec: &CertSpec) -> Result<(), JailError> {
    // A jail built without the CA (before it was configured) has none,
    // and its users trust its plain key.
    if !jail.info.known_hosts.starts_with("@cert-authority ") {
        return Ok(());
    }
    // The key as labd recorded it, never as the jail's files say now.
    let host_pub: Vec<&str> = jail.info.host_key.split_whitespace().skip(1).take(2).collect();
    let text = signed(&jail.plan, &jail.handle, &host_pub.join(" "), spec)?;
    replace_cert(&jail.plan, text.as_bytes())?;
    reload_sshd(jail.init_pid, jail.init_start)
}

/// Replaces the certificate while the jail runs, so without following
/// anything its root may have put in its `/etc`: the `ssh` directory is
/// opened with O_NOFOLLOW (its parent, the data file system's `etc`, is
/// out of the jail's reach: the jail sees only what is inside it), and the
/// certificate written under a temporary name in that directory and
/// renamed over the old one.
fn replace_cert(plan: &Plan, contents: &[u8]) -> Result<(), JailError> {
    let dir_path = plan.data_dir.join("etc/ssh");
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(&dir_path)
        .map_err(|source| JailError::Io { what: "opening the jail's", path: dir_path.clone(), source })?;
    let d = dir.as_raw_fd();
    let tmp = dir_path.join(CERT_TMP);
    let sys = |what: &'static str| {
        let path = tmp.clone();
        move |e: nix::Error| JailError::Io { what, path, source: e.into() }
    };
    match nix::unistd::unlinkat(Some(d), CERT_TMP, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(sys("removing")(e)),
    }
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(Some(d), CERT_TMP, flags, Mode::from_bits_truncate(0o644)).map_err(sys("creating"))?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let uid = plan.host_uid;
    let written = f
        .write_all(contents)
        .and_then(|()| std::os::unix::fs::fchown(&f, Some(uid), Some(uid)))
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(0o644)));
    drop(f);
    let renamed = written
        .map_err(|source| JailError::Io { what: "writing", path: tmp.clone(), source })
        .and_then(|()| nix::fcntl::renameat(Some(d), CERT_TMP, Some(d), CERT_NAME).map_err(sys("renaming")));
    if renamed.is_err() {
        let _ = nix::unistd::unlinkat(Some(d), CERT_TMP, UnlinkatFlags::NoRemoveDir);
    }
    renamed
}

/// Has the jail's sshd load its files again: SIGUSR1 to the jail's init,
/// which sends its sshd SIGHUP (sshd then executes itself again; sessions
/// are processes of their own and stay). The signal goes through a pidfd
/// taken before the init's start time is checked, so it reaches the init
/// or nothing, never a process that got its PID later.
fn reload_sshd(pid: i32, start: u64) -> Result<(), JailError> {
    let err = |what: &'static str| JailError::Sys { what, source: std::io::Error::last_os_error() };
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(err("pidfd_open of the jail's init"));
    }
    let raw = i32::try_from(raw).map_err(|_| JailError::Init("pidfd_open returned no descriptor".into()))?;
    // SAFETY: pidfd_open just returned this descriptor; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    if proc_start_time(pid) != Some(start) {
        return Err(JailError::Init(format!("init {pid} is gone; its sshd keeps the certificate it has")));
    }
    // SAFETY: pidfd_send_signal takes a descriptor we own, a signal
    // number, a null siginfo (allowed: the kernel fills in one) and flags.
    let r = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGUSR1, std::ptr::null::<u8>(), 0)
    };
    if r < 0 {
        return Err(err("signalling the jail's init"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::plan::tests_support::spec;

    const HANDLE: &str = "bl-0123456789abcdef0123456789abcdef";

    fn ca() -> (tempfile::TempDir, HostCa) {
        let d = tempfile::tempdir().unwrap();
        let ca = HostCa::generate(&d.path().join("ca")).unwrap();
        (d, ca)
    }

    #[test]
    fn a_claims_certificate_names_the_claim_and_nothing_else() {
        let mut s = spec(4);
        s.handle = HANDLE.into();
        let p = Plan::new(&s).unwrap();
        let (_d, ca) = ca();
        let spec = CertSpec { ca, claimed_at_ms: 1_700_000_000_000, expires_at_ms: 1_700_014_400_000 };
        let r = request(&p, HANDLE, &spec);
        let name = sshca::claim_name(HANDLE);
        assert_eq!(r.principals, vec![name.clone()], "never the jail's address {}", p.jail_ip);
        assert_eq!(r.key_id, format!("boardlab:{}:{name}", p.board));
        assert_eq!((r.valid_after, r.valid_before), (1_699_999_700, 1_700_014_400));
        assert!(!r.key_id.contains(HANDLE) && !r.key_id.contains(&HANDLE[3..]));
    }

    #[test]
    fn the_reply_says_how_to_trust_the_jail() {
        let mut s = spec(4);
        s.handle = HANDLE.into();
        let p = Plan::new(&s).unwrap();
        let name = sshca::claim_name(HANDLE);
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample";
        let plain = info(&p, 22, HANDLE, key, None);
        assert_eq!(plain.ssh, format!("ssh root@{}", p.jail_ip));
        assert_eq!(plain.known_hosts, format!("{} {key}", p.jail_ip));
        assert_eq!(plain.host_key, plain.known_hosts);
        assert_eq!(plain.host_name, name);
        let (_d, ca) = ca();
        let with = info(&p, 22, HANDLE, key, Some(&ca));
        assert_eq!(with.ssh, format!("ssh -o HostKeyAlias={name} root@{}", p.jail_ip));
        assert_eq!(with.known_hosts, ca.known_hosts_line());
        assert_eq!(with.host_key, format!("{} {key}", p.jail_ip));
        let port = info(&p, 2222, HANDLE, key, Some(&ca));
        assert_eq!(port.ssh, format!("ssh -o HostKeyAlias={name} -p 2222 root@{}", p.jail_ip));
        assert_eq!(port.host_key, format!("[{}]:2222 {key}", p.jail_ip));
        assert_eq!(sshd_config_line(), "HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub\n");
    }
}
