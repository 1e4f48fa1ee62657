//! Shell-like word splitting for `$SSH_ORIGINAL_COMMAND` and stdin lines,
//! by the `shlex` crate (POSIX sh's quoting rules, nothing a shell *does*).
//!
//! This is the part of the ssh forced command that replaces the shell, so it
//! does only what is needed to let users quote arguments: no `$` or
//! backtick expansion, no globs, no `;`, `|`, `&` or redirections. Those
//! characters are plain text here; at worst they end up in a word that the
//! argument parser then refuses.
//!
//! The rules (POSIX sh's):
//! - blanks (space, tab, newline) separate words outside quotes;
//! - `'...'` is literal up to the next `'`;
//! - `"..."` is literal except that a backslash escapes `"`, `\`, `$` and
//!   `` ` `` (and a backslash-newline disappears); any other backslash stays;
//! - outside quotes a backslash makes the next character literal (and a
//!   backslash-newline disappears);
//! - quotes inside a word join with it (`a'b c'd` is one word `ab cd`), and
//!   `''` is an empty word;
//! - a `#` at the start of a word starts a comment, to the end of the line.
//!
//! An unterminated quote or a trailing backslash is an error rather than a
//! guess. Trailing blanks and carriage returns are dropped first (a command
//! typed on another system's line ends). Splitting only removes text: the
//! words are never longer, together, than the input.

use std::fmt;

/// Why a string could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// A quote with no closing quote, or a `\` as the very last character.
    Unterminated,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitError::Unterminated => "unterminated quote, or a backslash at the end of the command",
        })
    }
}

impl std::error::Error for SplitError {}

/// Splits `input` into words; see the module documentation for the rules.
pub fn split(input: &str) -> Result<Vec<String>, SplitError> {
    let input = input.trim_end_matches([' ', '\t', '\n', '\r']);
    shlex::split(input).ok_or(SplitError::Unterminated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn plain_words_and_blanks() {
        assert_eq!(ok("claim rockpro64 --power"), v(&["claim", "rockpro64", "--power"]));
        assert_eq!(ok("  status\t--mine \n"), v(&["status", "--mine"]));
        assert_eq!(ok("a\nb\r\n"), v(&["a", "b"]));
    }

    #[test]
    fn empty_input() {
        assert!(ok("").is_empty());
        assert!(ok("   \t\n").is_empty());
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(ok(r#"'a b' 'c\d' '$x' '"'"#), v(&["a b", r"c\d", "$x", "\""]));
        assert_eq!(ok("''"), v(&[""]));
        assert_eq!(ok("a '' b"), v(&["a", "", "b"]));
    }

    #[test]
    fn double_quotes_and_their_escapes() {
        assert_eq!(ok(r#""a b""#), v(&["a b"]));
        assert_eq!(ok(r#""\" \\ \$ \`""#), v(&[r#"" \ $ `"#]));
        // Other backslashes stay, as in sh.
        assert_eq!(ok(r#""\n\a""#), v(&[r"\n\a"]));
        assert_eq!(ok("\"a\\\nb\""), v(&["ab"]));
        assert_eq!(ok(r#""""#), v(&[""]));
        assert_eq!(ok(r#""'""#), v(&["'"]));
    }

    #[test]
    fn backslash_outside_quotes() {
        assert_eq!(ok(r"a\ b"), v(&["a b"]));
        assert_eq!(ok(r"\'x\'"), v(&["'x'"]));
        assert_eq!(ok(r"\\"), v(&[r"\"]));
        assert_eq!(ok("a\\\nb"), v(&["ab"]));
    }

    #[test]
    fn quotes_join_with_the_word() {
        assert_eq!(ok(r#"a'b c'd"e f"g"#), v(&["ab cde fg"]));
        assert_eq!(ok(r#"--lease='4h'"#), v(&["--lease=4h"]));
    }

    #[test]
    fn unterminated() {
        for s in ["'abc", "\"abc", "\"abc\\\"", "\"abc\\", "abc\\", "'", "status 'unterminated"] {
            assert_eq!(split(s), Err(SplitError::Unterminated), "{s:?}");
        }
        assert!(SplitError::Unterminated.to_string().contains("unterminated"));
    }

    #[test]
    fn hostile_strings_are_plain_text() {
        assert_eq!(ok("status; rm -rf /"), v(&["status;", "rm", "-rf", "/"]));
        assert_eq!(ok("`id`"), v(&["`id`"]));
        assert_eq!(ok("$(touch /tmp/x)"), v(&["$(touch", "/tmp/x)"]));
        assert_eq!(ok("\"$(touch /tmp/x)\""), v(&["$(touch /tmp/x)"]));
        assert_eq!(
            ok("status && id || id | id > /tmp/y < /etc/passwd &"),
            v(&["status", "&&", "id", "||", "id", "|", "id", ">", "/tmp/y", "<", "/etc/passwd", "&"])
        );
        assert_eq!(
            ok("* ? [a] ~ ~root $HOME ${HOME} a#b"),
            v(&["*", "?", "[a]", "~", "~root", "$HOME", "${HOME}", "a#b"])
        );
        assert_eq!(ok("status\u{0}x"), v(&["status\u{0}x"]));
    }

    #[test]
    fn comments_end_the_line_as_in_sh() {
        assert_eq!(ok("release bl-1 # my board"), v(&["release", "bl-1"]));
        assert_eq!(ok("'#quoted' \\#escaped"), v(&["#quoted", "#escaped"]));
        assert_eq!(ok("# all of it"), v(&[]));
    }

    #[test]
    fn unicode_is_kept() {
        assert_eq!(ok("claim 'ünïcødé board' ☃"), v(&["claim", "ünïcødé board", "☃"]));
    }

    #[test]
    fn never_panics_on_prefixes_of_tricky_input() {
        let s = "a'b\"c\\d e\"f\\\"g'h\\ \\\n\"'`$( ;|&ü#";
        for (i, _) in s.char_indices() {
            let _ = split(&s[..i]);
            let _ = split(&s[i..]);
        }
        let big = "\"\\".repeat(10_000);
        let _ = split(&big);
    }
}
