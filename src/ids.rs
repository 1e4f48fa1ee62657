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

/// Longest operator's reason (`--reason`), in characters.
pub const MAX_REASON: usize = 200;

/// An operator's reason for a maintenance or force-release: free text that
/// others read in `history` and a claimant in the end of their claim, so it
/// is one line of printable text: no control characters (escape sequences,
/// newlines, tabs), no bidirectional overrides or invisible formatting
/// characters that could make it read other than it is, not blank, at most
/// [`MAX_REASON`] characters. Refused, never rewritten.
pub fn check_reason(r: &str) -> Result<(), String> {
    let n = r.chars().count();
    if r.trim().is_empty() {
        return Err("the reason is empty".into());
    }
    if n > MAX_REASON {
        return Err(format!("the reason is {n} characters long; at most {MAX_REASON}"));
    }
    // Bidi embeddings, overrides and isolates; zero-width and other
    // invisible formatting characters; the BOM; line and paragraph
    // separators.
    let hidden = |c: char| {
        matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{00ad}')
    };
    if let Some((i, c)) = r.chars().enumerate().find(|(_, c)| c.is_control() || hidden(*c)) {
        return Err(format!(
            "the reason may not hold control or invisible characters ({} at character {})",
            c.escape_unicode(),
            i + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_line_of_printable_text() {
        assert!(check_reason("PSU swap, see ticket #42 (ça marche)").is_ok());
        assert!(check_reason(&"é".repeat(MAX_REASON)).is_ok());
        for bad in [
            "",
            "   ",
            "clear\u{1b}[2J",
            "\u{1b}]0;title\u{7}",
            "two\nlines",
            "tab\there",
            "cr\rover",
            "nul\0",
            "c1\u{9b}31m",
            "bidi \u{202e}gnp.exe",
            "zero\u{200b}width",
            "\u{2066}isolate",
            "bom\u{feff}",
            &"x".repeat(MAX_REASON + 1),
        ] {
            assert!(check_reason(bad).is_err(), "{bad:?}");
        }
        assert!(check_reason("a\u{1b}b").unwrap_err().contains("\\u{1b} at character 2"));
    }

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
