//! Credentials for the labd-to-labd channel of a simulated lab of several
//! hosts: one CA for the lab (made once in a directory the hosts share)
//! and a certificate for each host, signed by it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

use super::{write_atomic, Result, SimError};

/// A host's files: the lab CA's certificate, the host's certificate and key.
pub struct HostCreds {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn bad(what: &str) -> impl Fn(rcgen::Error) -> SimError + '_ {
    move |e| SimError::Refused(format!("{what}: {e}"))
}

/// The CA's parameters: the same name for every host of the lab.
fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(bad("CA parameters"))?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "boardlab simulated lab CA");
    Ok(p)
}

/// The lab's CA in `dir` (made when missing): its certificate and key.
fn lab_ca(dir: &Path) -> Result<(Certificate, KeyPair, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(SimError::io("creating", dir))?;
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let key = match std::fs::read_to_string(&key_path) {
        Ok(pem) => KeyPair::from_pem(&pem).map_err(bad("reading the lab CA's key"))?,
        Err(_) => {
            let key = KeyPair::generate().map_err(bad("making the lab CA's key"))?;
            write_private(&key_path, &key.serialize_pem())?;
            key
        }
    };
    // The same name and key sign the same way: a CA certificate made again
    // from them verifies what the first one's holders signed.
    let cert = ca_params()?.self_signed(&key).map_err(bad("making the lab CA"))?;
    if !cert_path.exists() {
        write_atomic(&cert_path, cert.pem().as_bytes())?;
    }
    Ok((cert, key, cert_path))
}

/// `host`'s certificate (for its name and 127.0.0.1) and key in
/// `out`, signed by the lab CA in `ca_dir`.
pub fn make(ca_dir: &Path, out: &Path, host: &str) -> Result<HostCreds> {
    let (ca, ca_key, ca_path) = lab_ca(ca_dir)?;
    let mut p = CertificateParams::new(vec![host.to_string()]).map_err(bad("host certificate parameters"))?;
    p.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    p.distinguished_name.push(DnType::CommonName, host);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(bad("making the host's key"))?;
    let cert = p.signed_by(&key, &ca, &ca_key).map_err(bad("signing the host's certificate"))?;
    std::fs::create_dir_all(out).map_err(SimError::io("creating", out))?;
    let (cert_path, key_path) = (out.join(format!("{host}.pem")), out.join(format!("{host}.key")));
    write_atomic(&cert_path, cert.pem().as_bytes())?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok(HostCreds { ca: ca_path, cert: cert_path, key: key_path })
}

/// A private key: written, then readable by its owner alone.
fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write_atomic(path, pem.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(SimError::io("securing", path))
}
