//! SNMPv3's user-based security model for a switch (`version = 3`):
//! authPriv only, a user with an authentication and a privacy key.
//!
//! The keys are passphrases, written in lab.toml (which holds the v1/v2c
//! community too, and is root's, 0600) or in files named by `auth_key_file`
//! and `priv_key_file`, which labd reads only if root (or labd's own user)
//! owns them and neither group nor others may read or write them. A key is
//! a [`Secret`]: it prints as `<secret>`, so no log line, dump, status or
//! metric can show it.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::super::Ctx;
use super::RawSwitch;

/// A key: its bytes are only ever handed to the SNMP session.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The authentication protocol (HMAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// The privacy protocol: AES-128 in CFB mode (RFC 3826), what every
/// switch with SNMPv3 speaks. DES is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivProtocol {
    Aes128,
}

/// A switch's SNMPv3 user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usm {
    pub user: String,
    pub auth: AuthProtocol,
    pub auth_key: Secret,
    pub privacy: PrivProtocol,
    pub priv_key: Secret,
}

/// Passphrases net-snmp accepts: 8 to 256 characters.
const KEY_MIN: usize = 8;
const KEY_MAX: usize = 256;

/// Reads a key file: one line (its end trimmed), in a file of root's (or
/// labd's user's) that neither its group nor others may read or write.
pub fn read_key_file(path: &Path) -> Result<String, String> {
    let text = super::super::read_private_file(path, 4096)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// One key: inline or from its file (not both), checked.
fn key(
    ctx: &mut Ctx<'_>,
    key: String,
    inline: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    whole: &Range<usize>,
) -> Option<Secret> {
    let (text, span) = match (inline, file) {
        (Some(_), Some(f)) => {
            ctx.err(&f.span(), format!("{key} and {key}_file are both set: give one"));
            return None;
        }
        (Some(k), None) => (k.get_ref().clone(), k.span()),
        (None, Some(f)) => {
            let path = Path::new(f.get_ref());
            if !path.is_absolute() {
                ctx.err(&f.span(), format!("{key}_file {:?} must be an absolute path", f.get_ref()));
                return None;
            }
            match read_key_file(path) {
                Ok(t) => (t, f.span()),
                Err(e) => {
                    ctx.err(&f.span(), format!("{key}_file {}: {e}", path.display()));
                    return None;
                }
            }
        }
        (None, None) => {
            ctx.err(whole, format!("{key} (or {key}_file) is required with version = 3 (authPriv)"));
            return None;
        }
    };
    let n = text.chars().count();
    // The key itself is never quoted in a message.
    if !(KEY_MIN..=KEY_MAX).contains(&n) {
        ctx.err(&span, format!("{key} must be {KEY_MIN} to {KEY_MAX} characters long (it is {n})"));
        return None;
    }
    if text.chars().any(char::is_control) {
        ctx.err(&span, format!("{key} may not hold control characters"));
        return None;
    }
    Some(Secret(text))
}

/// Validates the SNMPv3 keys of `[switches.NAME]` (`v3`: whether it is
/// `version = 3`; otherwise none of them may be set).
pub(super) fn validate(ctx: &mut Ctx<'_>, name: &str, whole: &Range<usize>, sw: &RawSwitch, v3: bool) -> Option<Usm> {
    let p = |k: &str| format!("switches.{name}.{k}");
    let given = [
        ("user", &sw.user),
        ("auth_protocol", &sw.auth_protocol),
        ("auth_key", &sw.auth_key),
        ("auth_key_file", &sw.auth_key_file),
        ("priv_protocol", &sw.priv_protocol),
        ("priv_key", &sw.priv_key),
        ("priv_key_file", &sw.priv_key_file),
    ];
    if !v3 {
        for (k, v) in given {
            if let Some(v) = v {
                ctx.err(&v.span(), format!("{} is for SNMPv3: set version = 3, or remove it", p(k)));
            }
        }
        return None;
    }
    let user = match &sw.user {
        Some(u) if crate::ids::valid_user(u.get_ref()) || crate::ids::valid_name(u.get_ref()) => u.get_ref().clone(),
        Some(u) => {
            ctx.err(&u.span(), format!("{} {:?} is not a user name", p("user"), u.get_ref()));
            return None;
        }
        None => {
            ctx.err(whole, format!("{} is required with version = 3", p("user")));
            return None;
        }
    };
    let auth = match sw.auth_protocol.as_ref().map(|s| (s.get_ref().to_ascii_uppercase(), s.span())) {
        None => AuthProtocol::Sha1,
        Some((s, span)) => match s.as_str() {
            "SHA" | "SHA1" | "SHA-1" => AuthProtocol::Sha1,
            "SHA-224" | "SHA224" => AuthProtocol::Sha224,
            "SHA-256" | "SHA256" => AuthProtocol::Sha256,
            "SHA-384" | "SHA384" => AuthProtocol::Sha384,
            "SHA-512" | "SHA512" => AuthProtocol::Sha512,
            _ => {
                ctx.err(
                    &span,
                    format!("{} {s:?} is not SHA, SHA-224, SHA-256, SHA-384 or SHA-512", p("auth_protocol")),
                );
                AuthProtocol::Sha1
            }
        },
    };
    let privacy = match sw.priv_protocol.as_ref().map(|s| (s.get_ref().to_ascii_uppercase(), s.span())) {
        None => PrivProtocol::Aes128,
        Some((s, _)) if matches!(s.as_str(), "AES" | "AES-128" | "AES128") => PrivProtocol::Aes128,
        Some((s, span)) => {
            ctx.err(&span, format!("{} {s:?} is not AES (AES-128)", p("priv_protocol")));
            PrivProtocol::Aes128
        }
    };
    let auth_key = key(ctx, p("auth_key"), &sw.auth_key, &sw.auth_key_file, whole);
    let priv_key = key(ctx, p("priv_key"), &sw.priv_key, &sw.priv_key_file, whole);
    Some(Usm { user, auth, auth_key: auth_key?, privacy, priv_key: priv_key? })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::config::switch_usm::{AuthProtocol, PrivProtocol};
    use crate::config::SnmpVersion;

    use crate::config::test_lab::load;

    #[test]
    fn a_v3_switch_has_a_user_and_two_keys_that_never_print() {
        let c =
            load("version = 3\nuser = \"boardlab\"\nauth_key = \"auth-pass-1\"\npriv_key = \"priv-pass-1\"\n").unwrap();
        let sw = &c.switches["poe1"];
        assert_eq!(sw.version, SnmpVersion::V3);
        let usm = sw.usm.as_ref().unwrap();
        assert_eq!((usm.user.as_str(), usm.auth, usm.privacy), ("boardlab", AuthProtocol::Sha1, PrivProtocol::Aes128));
        assert_eq!(usm.auth_key.expose(), b"auth-pass-1");
        let shown = format!("{c:?}");
        assert!(!shown.contains("auth-pass-1") && !shown.contains("priv-pass-1"), "{shown}");
        assert!(shown.contains("<secret>"));
        let c = load("version = \"3\"\nuser = \"u\"\nauth_key = \"12345678\"\npriv_key = \"12345678\"\nauth_protocol = \"SHA-256\"\n")
            .unwrap();
        assert_eq!(c.switches["poe1"].usm.as_ref().unwrap().auth, AuthProtocol::Sha256);
        assert_eq!(load("version = 1\n").unwrap().switches["poe1"].version, SnmpVersion::V1);
    }

    #[test]
    fn v3_mistakes_are_errors_that_never_quote_a_key() {
        let e = load("version = 3\n").unwrap_err();
        assert_eq!(e, vec!["1: switches.poe1.user is required with version = 3"]);
        let e = load("version = 3\nuser = \"u\"\nauth_key = \"short\"\npriv_key = \"x\"\n").unwrap_err();
        assert_eq!(
            e,
            vec![
                "5: switches.poe1.auth_key must be 8 to 256 characters long (it is 5)",
                "6: switches.poe1.priv_key must be 8 to 256 characters long (it is 1)"
            ]
        );
        let e = load(
            "version = 3\nuser = \"u\"\nauth_key = \"12345678\"\npriv_key = \"12345678\"\npriv_protocol = \"DES\"\n",
        )
        .unwrap_err();
        assert_eq!(e, vec!["7: switches.poe1.priv_protocol \"DES\" is not AES (AES-128)"]);
        let e = load("user = \"u\"\n").unwrap_err();
        assert_eq!(e, vec!["3: switches.poe1.user is for SNMPv3: set version = 3, or remove it"]);
        let e = load("version = 2\n").unwrap_err();
        assert_eq!(e, vec!["3: switches.poe1.version 2 is not \"1\", \"2c\" or 3"]);
    }

    #[test]
    fn key_files_must_be_private() {
        let d = tempfile::tempdir().unwrap();
        let auth = d.path().join("auth");
        let privacy = d.path().join("priv");
        std::fs::write(&auth, "auth-from-file\n").unwrap();
        std::fs::write(&privacy, "priv-from-file").unwrap();
        for p in [&auth, &privacy] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let text = format!(
            "version = 3\nuser = \"u\"\nauth_key_file = {:?}\npriv_key_file = {:?}\n",
            auth.display().to_string(),
            privacy.display().to_string()
        );
        let c = load(&text).unwrap();
        assert_eq!(c.switches["poe1"].usm.as_ref().unwrap().auth_key.expose(), b"auth-from-file");
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&text).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("has mode 0640: its group and others may not read or write it"), "{e:?}");
        let both = format!("{text}auth_key = \"inline-key\"\n");
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&both).unwrap_err()[0].contains("auth_key and switches.poe1.auth_key_file are both set"));
        let relative = "version = 3\nuser = \"u\"\nauth_key_file = \"k\"\npriv_key = \"12345678\"\n";
        assert!(load(relative).unwrap_err()[0].contains("must be an absolute path"));
    }
}
