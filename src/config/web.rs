//! `[web]`: the status page and `/metrics` over HTTP (off without the
//! table). Loopback only, unless the page asks for a password: `user`
//! and `password_file`, a file holding an argon2 hash of it (never the
//! password itself).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
}

/// The validated `[web]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    /// Where the page and `/metrics` are served (`127.0.0.1:7480`).
    pub listen: SocketAddr,
    /// HTTP basic auth, when configured: every path asks for it.
    pub auth: Option<WebAuth>,
}

/// Who may see the page: one user name and the argon2 hash of its
/// password, read from `password_file` when the configuration loads.
#[derive(Clone, PartialEq, Eq)]
pub struct WebAuth {
    pub user: String,
    /// The PHC string (`$argon2id$v=19$...`).
    pub hash: String,
    pub password_file: PathBuf,
}

impl std::fmt::Debug for WebAuth {
    /// The hash is not printed: it is what an attacker would crack.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebAuth").field("user", &self.user).field("password_file", &self.password_file).finish()
    }
}

/// Validates `[web]` (`None`: no table, no page).
pub(super) fn validate(ctx: &mut Ctx<'_>, raw: Option<Spanned<RawWeb>>) -> Option<Web> {
    let raw = raw?;
    let table = raw.span();
    let raw = raw.into_inner();
    let Some(listen) = &raw.listen else {
        ctx.err(&table, "web.listen is required in [web] (\"127.0.0.1:7480\")");
        return None;
    };
    let addr = match listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            ctx.err(
                &listen.span(),
                format!("web.listen {:?} is not IP:PORT (\"127.0.0.1:7480\", \"[::1]:7480\")", listen.get_ref()),
            );
            return None;
        }
    };
    let auth = match (&raw.user, &raw.password_file) {
        (None, None) => None,
        (Some(u), None) => {
            ctx.err(
                &u.span(),
                "web.user needs web.password_file (an argon2 hash of the password: `labd web-password`)",
            );
            return None;
        }
        (None, Some(p)) => {
            ctx.err(&p.span(), "web.password_file needs web.user");
            return None;
        }
        (Some(u), Some(p)) => {
            if !crate::ids::valid_user(u.get_ref()) {
                ctx.err(&u.span(), format!("web.user {:?} is not a user name", u.get_ref()));
                return None;
            }
            let path = Path::new(p.get_ref());
            if !path.is_absolute() {
                ctx.err(&p.span(), format!("web.password_file must be an absolute path, not {:?}", p.get_ref()));
                return None;
            }
            match read_hash(path) {
                Ok(hash) => Some(WebAuth { user: u.get_ref().clone(), hash, password_file: path.to_path_buf() }),
                Err(e) => {
                    ctx.err(&p.span(), format!("web.password_file {}: {e}", path.display()));
                    return None;
                }
            }
        }
    };
    if !addr.ip().is_loopback() && auth.is_none() {
        ctx.err(
            &listen.span(),
            format!(
                "web.listen {addr} is not a loopback address: the page would show the lab to the network without \
                 a password; set web.user and web.password_file, or listen on 127.0.0.1"
            ),
        );
        return None;
    }
    Some(Web { listen: addr, auth })
}

/// Reads the password hash: one argon2 PHC string, in a file of root's
/// that neither its group nor others may read or write.
pub fn read_hash(path: &Path) -> Result<String, String> {
    let text = super::read_private_file(path, 4096)?;
    let hash = text.trim();
    match argon2::PasswordHash::new(hash) {
        Ok(h) if h.algorithm.as_str().starts_with("argon2") => Ok(hash.to_string()),
        _ => Err("does not hold an argon2 hash ($argon2id$...); make one with `labd web-password`".into()),
    }
}

/// Whether `password` matches the PHC `hash`.
pub fn verify(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// An argon2id hash of `password` with a fresh salt (`labd web-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut seed = [0u8; 16];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness for the salt: {e}"))?;
    let salt = SaltString::encode_b64(&seed).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::config::test_lab::load;

    #[test]
    fn off_without_the_table_and_loopback_by_default() {
        assert_eq!(load("").unwrap().web, None);
        let w = load("[web]\nlisten = \"127.0.0.1:7480\"\n").unwrap().web.unwrap();
        assert_eq!((w.listen.to_string(), w.auth), ("127.0.0.1:7480".to_string(), None));
        assert!(load("[web]\nlisten = \"[::1]:7480\"\n").is_ok());
    }

    #[test]
    fn mistakes_are_named_on_their_line() {
        let e = load("[web]\nlisten = \"0.0.0.0:7480\"\n").unwrap_err();
        assert!(e[0].starts_with("4: web.listen 0.0.0.0:7480 is not a loopback address"), "{e:?}");
        let e = load("[web]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(e[0].starts_with("4: web.listen \"localhost\" is not IP:PORT"), "{e:?}");
        let e = load("[web]\nuser = \"ops\"\n").unwrap_err();
        assert!(e[0].contains("web.listen is required"), "{e:?}");
        let e = load("[web]\nlisten = \"127.0.0.1:1\"\nuser = \"ops\"\n").unwrap_err();
        assert!(e[0].starts_with("5: web.user needs web.password_file"), "{e:?}");
        let e = load("[web]\nlisten = \"127.0.0.1:1\"\nport = 3\n").unwrap_err();
        assert!(e[0].contains("unknown field `port`"), "{e:?}");
        let e = load("[web]\nlisten = \"127.0.0.1:1\"\nuser = \"ops\"\npassword_file = \"rel\"\n").unwrap_err();
        assert!(e[0].contains("must be an absolute path"), "{e:?}");
    }

    #[test]
    fn the_password_file_holds_a_private_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.pass");
        let web = format!("[web]\nlisten = \"0.0.0.0:7480\"\nuser = \"ops\"\npassword_file = \"{}\"\n", p.display());
        let e = load(&web).unwrap_err();
        assert!(e[0].contains("cannot read"), "{e:?}");
        std::fs::write(&p, "hunter2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load(&web).unwrap_err();
        assert!(e[0].contains("does not hold an argon2 hash"), "{e:?}");
        let hash = super::hash_password("hunter2").unwrap();
        std::fs::write(&p, format!("{hash}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&web).unwrap_err();
        assert!(e[0].contains("has mode 0644"), "{e:?}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let w = load(&web).unwrap().web.unwrap();
        let auth = w.auth.unwrap();
        assert_eq!((auth.user.as_str(), auth.hash.as_str()), ("ops", hash.as_str()));
        assert!(!format!("{auth:?}").contains(&hash), "the hash is not printed");
    }

    #[test]
    fn hash_and_verify() {
        let h = super::hash_password("s3cret pass").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(super::verify(&h, "s3cret pass"));
        assert!(!super::verify(&h, "s3cret pasS"));
        assert!(!super::verify("not a hash", "x"));
    }
}
