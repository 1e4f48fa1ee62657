//! TLS for the labd-to-labd channel: both sides show a certificate signed
//! by the lab's CA (`cluster.peer_ca`); a connection without one, or with
//! one from another CA, is refused during the handshake.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::config::PeerTls;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(p: &PeerTls) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&p.ca).map_err(|e| format!("{}: {e}", p.ca.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("{}: {e}", p.ca.display()))?;
        roots.add(c).map_err(|e| format!("{}: {e}", p.ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", p.ca.display()));
    }
    Ok(Arc::new(roots))
}

fn identity(p: &PeerTls) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&p.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", p.cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", p.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&p.key).map_err(|e| format!("{}: {e}", p.key.display()))?;
    Ok((chain, key))
}

/// What this labd's peer listener accepts: lab hosts only.
pub fn server(p: &PeerTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(p)?, provider())
        .build()
        .map_err(|e| format!("the peer CA: {e}"))?;
    let (chain, key) = identity(p)?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("this host's certificate: {e}"))?;
    Ok(Arc::new(cfg))
}

/// How this labd reaches the others: their certificate must name the
/// host it calls.
pub fn client(p: &PeerTls) -> Result<Arc<rustls::ClientConfig>, String> {
    let (chain, key) = identity(p)?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(p)?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("this host's certificate: {e}"))?;
    Ok(Arc::new(cfg))
}
