//! Identifiers that become paths, interface names, nft text or log lines:
//! one validator for each kind, used everywhere they are checked.

/// Board, class and switch names: letters, digits, '-', '_' and '.', at
/// most 64 bytes, not starting with '.' or '-' (they end up in paths,
/// interface and namespace names and log lines).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
        && !name.starts_with('-')
}

/// Claim handles: `bl-` and 32 lowercase hex digits (`util::new_handle`).
/// A handle names a claim's log files and host key.
pub fn valid_handle(h: &str) -> bool {
    h.len() == 35 && h.starts_with("bl-") && h[3..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// User names (the claimant, a trusted gateway's `as`, admins): portable
/// POSIX names, a letter or '_' first, then letters, digits, '_', '-',
/// '.'; at most 32 bytes.
pub fn valid_user(u: &str) -> bool {
    let b = u.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// Linux interface names: 1 to 15 bytes of letters, digits, '-', '_', '.'.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("rockpro64-1"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name(&"x".repeat(65)));
    }

    #[test]
    fn handles() {
        assert!(valid_handle(&crate::util::new_handle().unwrap()));
        assert!(valid_handle("bl-0123456789abcdef0123456789abcdef"));
        for bad in ["bl-XYZ", "bl-0123456789abcdef0123456789abcde/", "A_b-9", "../x", "a.log", ""] {
            assert!(!valid_handle(bad), "{bad:?}");
        }
    }

    #[test]
    fn users() {
        assert!(valid_user("bltest-alice") && valid_user("_svc") && valid_user("alice"));
        for bad in ["-rf", "al ice", "alice;reboot", "a;rm", "-x", "1abc", "", &"a".repeat(33)] {
            assert!(!valid_user(bad), "{bad:?}");
        }
    }

    #[test]
    fn ifnames() {
        assert!(valid_ifname("eth0") && valid_ifname("bl12h1") && valid_ifname("enp3s0.101"));
        assert!(!valid_ifname("eth0;x") && !valid_ifname("averyveryverylongname") && !valid_ifname("a/b"));
    }
}
