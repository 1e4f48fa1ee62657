//! The lab's SSH host certificate authority (`[jail] host_ca`): an
//! OpenSSH ed25519 key that signs a host certificate for every jail, so
//! that users trust one `@cert-authority` line instead of a new host key
//! per claim.
//!
//! A certificate names its claim, never an address. A jail's IPv4 address
//! derives from its board, so every claim of the board has it: a claimant
//! who copied their jail's key and certificate could answer on that
//! address for the next claim. The principal is instead the claim's name,
//! `<16 hex>.jail.boardlab` ([`claim_name`]): the first 64 bits of SHA-256
//! over a fixed context string and the claim handle. It is the same for the
//! whole claim (reinit, labd restarts), differs for every claim, and does
//! not reveal the handle (a bearer secret). Users connect with
//! `HostKeyAlias=<name>`, so OpenSSH checks the certificate's principal
//! against the claim they hold.
//!
//! Keys, certificates and their encodings are RustCrypto's `ssh-key`.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{Algorithm, Certificate, HashAlg, LineEnding, PrivateKey, PublicKey};

/// The domain of every jail's name: users trust the CA for `*.jail.boardlab`.
pub const DOMAIN: &str = "jail.boardlab";
/// The comment of the CA's known_hosts line.
pub const CA_COMMENT: &str = "boardlab-host-ca";
/// Where `labd ca init` puts the key when the configuration names none.
pub const DEFAULT_PATH: &str = "/etc/boardlab/host_ca";
/// A certificate is valid from this long before its claim started (the
/// clocks of users' machines may be behind the host's).
pub const CLOCK_SKEW_SECS: u64 = 300;
/// Domain separation of [`claim_name`]: these hashes are names of jails,
/// never anything else made from a handle.
const NAME_CONTEXT: &[u8] = b"boardlab jail host name v1\0";
/// An ed25519 key file is about 400 bytes; a larger file is not one.
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// The claim's name: `<16 hex>.jail.boardlab`, from its handle.
pub fn claim_name(handle: &str) -> String {
    let mut h = Sha256::new();
    h.update(NAME_CONTEXT);
    h.update(handle.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.{DOMAIN}")
}

/// The validity of a claim's certificate, in Unix seconds: from the claim's
/// start less [`CLOCK_SKEW_SECS`] to the end of its lease (Unix
/// milliseconds in).
pub fn validity(claimed_at_ms: i64, expires_at_ms: i64) -> (u64, u64) {
    let secs = |ms: i64, up: bool| {
        let s = if up { ms.saturating_add(999).div_euclid(1000) } else { ms.div_euclid(1000) };
        u64::try_from(s).unwrap_or(0)
    };
    let after = secs(claimed_at_ms, false).saturating_sub(CLOCK_SKEW_SECS);
    (after, secs(expires_at_ms, true).max(after))
}

/// A problem with the CA's key file, or with signing.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct CaError {
    pub path: PathBuf,
    pub why: String,
}

/// What a host certificate says besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// The host names it is valid for (never empty: no certificate is
    /// valid for every host).
    pub principals: Vec<String>,
    pub key_id: String,
    /// Unix seconds.
    pub valid_after: u64,
    pub valid_before: u64,
}

/// The lab's host CA, loaded and checked.
#[derive(Clone)]
pub struct HostCa {
    path: PathBuf,
    key: Arc<PrivateKey>,
    /// Host patterns besides the claims' names that the CA line covers:
    /// the claims' IPv6 addresses (see [`HostCa::with_ipv6_pool`]).
    patterns: Vec<String>,
}

impl fmt::Debug for HostCa {
    /// The path and the fingerprint; never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostCa").field("path", &self.path).field("fingerprint", &self.fingerprint()).finish()
    }
}

impl PartialEq for HostCa {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.key.public_key().key_data() == other.key.public_key().key_data()
    }
}

impl Eq for HostCa {}

impl HostCa {
    /// Loads the CA key at `path`: a regular file of root's (or of whoever
    /// runs labd), readable by its owner only, holding an unencrypted
    /// OpenSSH ed25519 private key.
    pub fn load(path: &Path) -> Result<HostCa, CaError> {
        let err = |why: String| CaError { path: path.to_path_buf(), why };
        // Non-blocking: a FIFO named here must not hang labd (or `labd
        // check`); the checks below are on the opened file itself.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| err(format!("cannot be read: {e}")))?;
        let m = f.metadata().map_err(|e| err(format!("cannot be examined: {e}")))?;
        if !m.is_file() {
            return Err(err("is not a regular file".into()));
        }
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "is open to its group or others (mode {mode:04o}): the host CA signs every jail's identity; \
                 chmod 600 it"
            )));
        }
        let me = nix::unistd::geteuid().as_raw();
        if m.uid() != 0 && m.uid() != me {
            return Err(err(format!("belongs to uid {}: the host CA must belong to root", m.uid())));
        }
        if m.len() > MAX_KEY_BYTES {
            return Err(err(format!("is {} bytes long: not an SSH private key", m.len())));
        }
        let mut text = String::new();
        Read::by_ref(&mut f)
            .take(MAX_KEY_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| err(format!("cannot be read as text: {e}")))?;
        let key = PrivateKey::from_openssh(&text).map_err(|e| {
            err(format!("is not an OpenSSH private key ({e}); make one with `labd ca init {}`", path.display()))
        })?;
        if key.is_encrypted() {
            return Err(err("is encrypted with a passphrase: labd signs unattended and needs it without one".into()));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(err(format!("is an {} key: the host CA must be ed25519", key.algorithm())));
        }
        Ok(HostCa { path: path.to_path_buf(), key: Arc::new(key), patterns: Vec::new() })
    }

    /// Makes a new CA key at `path`, mode 0600; never replaces a file.
    pub fn generate(path: &Path) -> Result<HostCa, CaError> {
        let err = |why: String| CaError { path: path.to_path_buf(), why };
        let mut key =
            PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| err(format!("cannot make a key: {e}")))?;
        key.set_comment(CA_COMMENT);
        let text = key.to_openssh(LineEnding::LF).map_err(|e| err(format!("cannot encode the key: {e}")))?;
        // O_EXCL: never over an existing file (nor through a symlink).
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    err("exists already: labd never replaces a CA key (every user trusts it; remove it first if \
                     you mean to replace the lab's CA)"
                        .into())
                }
                _ => err(format!("cannot be created: {e}")),
            })?;
        let written = f
            .write_all(text.as_bytes())
            .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(0o600)))
            .and_then(|()| f.sync_all());
        if let Err(e) = written {
            drop(f);
            let _ = std::fs::remove_file(path);
            return Err(err(format!("cannot be written: {e}")));
        }
        Ok(HostCa { path: path.to_path_buf(), key: Arc::new(key), patterns: Vec::new() })
    }

    /// Where the key was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The CA's public key.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// `SHA256:...`, as `ssh-keygen -l` shows it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The line users add to `~/.ssh/known_hosts`:
    /// `@cert-authority *.jail.boardlab ssh-ed25519 AAAA... boardlab-host-ca`.
    pub fn known_hosts_line(&self) -> String {
        let bare = PublicKey::new(self.key.public_key().key_data().clone(), "");
        let key = bare.to_openssh().unwrap_or_default();
        let mut hosts = format!("*.{DOMAIN}");
        for p in &self.patterns {
            hosts.push(',');
            hosts.push_str(p);
        }
        format!("@cert-authority {hosts} {key} {CA_COMMENT}")
    }

    /// The CA line also covers the claims' IPv6 addresses, drawn from
    /// `pool` (each is a principal of its own claim's certificate only):
    /// the pool's leading whole groups and a `*`, as ssh matches the
    /// address a user types (`2001:db8:4200:*` for a /48 or a /52).
    pub fn with_ipv6_pool(mut self, pool: &ipnet::Ipv6Net) -> HostCa {
        let groups = usize::from(pool.prefix_len() / 16);
        let segs = pool.network().segments();
        let lead: Vec<String> = segs.iter().take(groups).map(|g| format!("{g:x}")).collect();
        if !lead.is_empty() {
            self.patterns = vec![format!("{}:*", lead.join(":"))];
        }
        self
    }

    /// Signs a host certificate for `host_key` (random nonce and serial).
    pub fn sign_host(&self, host_key: &PublicKey, req: &CertRequest) -> Result<Certificate, CaError> {
        let err = |why: String| CaError { path: self.path.clone(), why };
        if req.principals.is_empty() {
            return Err(err("refusing a host certificate without principals (it would be valid for any host)".into()));
        }
        let fail = |e: ssh_key::Error| err(format!("signing a host certificate ({}): {e}", req.key_id));
        let mut b =
            Builder::new_with_random_nonce(&mut OsRng, host_key.key_data().clone(), req.valid_after, req.valid_before)
                .map_err(fail)?;
        b.serial(OsRng.next_u64()).map_err(fail)?;
        b.cert_type(CertType::Host).map_err(fail)?;
        b.key_id(req.key_id.as_str()).map_err(fail)?;
        for p in &req.principals {
            b.valid_principal(p.as_str()).map_err(fail)?;
        }
        b.comment(req.principals[0].as_str()).map_err(fail)?;
        b.sign(self.key.as_ref()).map_err(fail)
    }
}

#[cfg(test)]
mod tests;
