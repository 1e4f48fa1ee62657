//! Shell-like word splitting for `$SSH_ORIGINAL_COMMAND` and stdin lines.
//!
//! This is the part of the ssh forced command that replaces the shell, so it
//! does only what is needed to let users quote arguments and nothing a shell
//! would *do*: no `$` or backtick expansion, no globs, no `;`, `|`, `&` or
//! redirections, no comments. Those characters are plain text here; at worst
//! they end up in a word that the argument parser then refuses.
//!
//! Quoting follows POSIX sh:
//! - blanks (space, tab, newline, CR) separate words outside quotes;
//! - `'...'` is literal up to the next `'`;
//! - `"..."` is literal except that a backslash escapes `"`, `\`, `$` and
//!   `` ` `` (and a backslash-newline disappears); any other backslash stays;
//! - outside quotes a backslash makes the next character literal (and a
//!   backslash-newline disappears);
//! - quotes inside a word join with it (`a'b c'd` is one word `ab cd`), and
//!   `''` is an empty word.
//!
//! An unterminated quote or a trailing backslash is an error rather than a
//! guess. The output is never longer than the input plus one `String` per word,
//! so any input is split in linear time and memory.

use std::fmt;

/// Why a string could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// A `'` with no closing `'`.
    UnterminatedSingle,
    /// A `"` with no closing `"`.
    UnterminatedDouble,
    /// A `\` as the very last character.
    TrailingBackslash,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitError::UnterminatedSingle => "unterminated single quote",
            SplitError::UnterminatedDouble => "unterminated double quote",
            SplitError::TrailingBackslash => "backslash at end of command",
        })
    }
}

impl std::error::Error for SplitError {}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Splits `input` into words; see the module documentation for the rules.
pub fn split(input: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    // `Some` while inside a word: tracks `''` (an empty but present word).
    let mut cur: Option<String> = None;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            c if is_blank(c) => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err(SplitError::UnterminatedSingle),
                        Some('\'') => break,
                        Some(c) => w.push(c),
                    }
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err(SplitError::UnterminatedDouble),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            None => return Err(SplitError::UnterminatedDouble),
                            Some(e @ ('"' | '\\' | '$' | '`')) => w.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                w.push('\\');
                                w.push(other);
                            }
                        },
                        Some(c) => w.push(c),
                    }
                }
            }
            '\\' => match chars.next() {
                None => return Err(SplitError::TrailingBackslash),
                // Line continuation: joins, does not start a word.
                Some('\n') => {}
                Some(e) => cur.get_or_insert_with(String::new).push(e),
            },
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = cur {
        words.push(w);
    }
    Ok(words)
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
        assert_eq!(ok("a\r\nb"), v(&["a", "b"]));
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
        assert_eq!(ok("a \\\n b"), v(&["a", "b"]));
    }

    #[test]
    fn quotes_join_with_the_word() {
        assert_eq!(ok(r#"a'b c'd"e f"g"#), v(&["ab cde fg"]));
        assert_eq!(ok(r#"--lease='4h'"#), v(&["--lease=4h"]));
    }

    #[test]
    fn unterminated() {
        assert_eq!(split("'abc"), Err(SplitError::UnterminatedSingle));
        assert_eq!(split("\"abc"), Err(SplitError::UnterminatedDouble));
        assert_eq!(split("\"abc\\\""), Err(SplitError::UnterminatedDouble));
        assert_eq!(split("\"abc\\"), Err(SplitError::UnterminatedDouble));
        assert_eq!(split("abc\\"), Err(SplitError::TrailingBackslash));
        assert_eq!(split("'"), Err(SplitError::UnterminatedSingle));
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
            ok("* ? [a] ~ ~root $HOME ${HOME} # comment"),
            v(&["*", "?", "[a]", "~", "~root", "$HOME", "${HOME}", "#", "comment"])
        );
        assert_eq!(ok("status\u{0}x"), v(&["status\u{0}x"]));
    }

    #[test]
    fn unicode_is_kept() {
        assert_eq!(ok("claim 'ünïcødé board' ☃"), v(&["claim", "ünïcødé board", "☃"]));
    }

    #[test]
    fn never_panics_on_prefixes_of_tricky_input() {
        let s = "a'b\"c\\d e\"f\\\"g'h\\ \\\n\"'`$( ;|&ü";
        for (i, _) in s.char_indices() {
            let _ = split(&s[..i]);
            let _ = split(&s[i..]);
        }
        let big = "\"\\".repeat(10_000);
        let _ = split(&big);
    }
}
