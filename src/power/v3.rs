//! SNMPv3 for a switch: the session's security (user-based security
//! model, authPriv) from the switch's configuration, and what a refusal
//! of it says. The keys go to snmp2 and nowhere else: no message here
//! quotes them.

use snmp2::v3::{Auth, AuthErrorKind, AuthProtocol, Cipher, Security};

use super::PowerError;
use crate::config::switch_usm::{AuthProtocol as Hmac, PrivProtocol, Usm};
use crate::config::Switch;

/// The session's security parameters: the engine's ID, boots and time
/// are discovered by the session's `init`.
pub(super) fn security(usm: &Usm) -> Security {
    let auth = match usm.auth {
        Hmac::Sha1 => AuthProtocol::Sha1,
        Hmac::Sha224 => AuthProtocol::Sha224,
        Hmac::Sha256 => AuthProtocol::Sha256,
        Hmac::Sha384 => AuthProtocol::Sha384,
        Hmac::Sha512 => AuthProtocol::Sha512,
    };
    let cipher = match usm.privacy {
        PrivProtocol::Aes128 => Cipher::Aes128,
    };
    Security::new(usm.user.as_bytes(), usm.auth_key.expose())
        .with_auth_protocol(auth)
        .with_auth(Auth::AuthPriv { cipher, privacy_password: usm.priv_key.expose().to_vec() })
}

/// Learns the agent's engine ID, boots and time, before any request.
pub(super) async fn discover(s: &mut snmp2::AsyncSession, sw: &Switch) -> Result<(), PowerError> {
    let transport = |what: String| PowerError::Transport { switch: sw.name.clone(), host: sw.host.clone(), what };
    match s.init().await {
        Ok(()) => Ok(()),
        Err(e) if is_auth(&e) => Err(refused(sw, "discovering the agent's engine", e)),
        Err(snmp2::Error::Receive | snmp2::Error::Send) => {
            Err(transport("did not answer SNMPv3 discovery: no SNMP agent is listening (connection refused)".into()))
        }
        Err(e) => Err(transport(format!("SNMPv3 discovery: {e}"))),
    }
}

/// Whether `e` is the agent refusing the user or keys (as opposed to
/// the network, or a reply to repeat).
pub(super) fn is_auth(e: &snmp2::Error) -> bool {
    matches!(e, snmp2::Error::AuthFailure(_) | snmp2::Error::Crypto(_))
}

/// The error for a refusal of `sw`'s SNMPv3 credentials while doing `what`.
pub(super) fn refused(sw: &Switch, what: &str, e: snmp2::Error) -> PowerError {
    let why = match &e {
        snmp2::Error::AuthFailure(AuthErrorKind::SignatureMismatch) => {
            "its answer is not signed with our auth_key (wrong key?)".to_string()
        }
        snmp2::Error::AuthFailure(AuthErrorKind::NotAuthenticated) => {
            "the agent did not authenticate us (unknown user, or wrong auth_key or priv_key)".to_string()
        }
        snmp2::Error::AuthFailure(k) => format!("authentication failed ({k})"),
        other => other.to_string(),
    };
    PowerError::Credentials {
        switch: sw.name.clone(),
        host: sw.host.clone(),
        user: sw.usm.as_ref().map(|u| u.user.clone()).unwrap_or_default(),
        what: what.to_string(),
        why,
    }
}

/// The error for an agent that answered discovery, then not a request:
/// what net-snmp does with a request it cannot decrypt.
pub(super) fn silent(sw: &Switch, what: &str) -> PowerError {
    PowerError::Credentials {
        switch: sw.name.clone(),
        host: sw.host.clone(),
        user: sw.usm.as_ref().map(|u| u.user.clone()).unwrap_or_default(),
        what: what.to_string(),
        why: format!(
            "it answered discovery but not the request within {} ms, as an agent does with a request it cannot \
             decrypt (wrong priv_key?)",
            sw.timeout.as_millis()
        ),
    }
}
