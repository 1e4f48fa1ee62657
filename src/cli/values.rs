//! Values of labcli's options and arguments, checked as clap parses them:
//! each error says what is wrong and quotes at most 40 characters of the
//! user's text.

use std::time::Duration;

use crate::util::shown;

/// A value that may not be empty.
pub fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

/// A DUR as whole seconds, longer than zero.
pub fn dur_secs(text: &str) -> Result<u64, String> {
    let d = crate::util::parse_duration(text)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{} is not a whole number of seconds", shown(text)));
    }
    if d.as_secs() == 0 {
        return Err("duration must be longer than zero".into());
    }
    Ok(d.as_secs())
}

/// A DUR, longer than zero.
pub fn dur(text: &str) -> Result<Duration, String> {
    let d = crate::util::parse_duration(text)?;
    if d.is_zero() {
        return Err("duration must be longer than zero".into());
    }
    Ok(d)
}

/// An operator's `--reason`: one line of printable text, at most
/// [`crate::ids::MAX_REASON`] characters.
pub fn reason(text: &str) -> Result<String, String> {
    crate::ids::check_reason(text).map(|()| text.to_string())
}

/// `history --limit N`: 1 to [`crate::protocol::HISTORY_MAX`].
pub fn history_limit(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=crate::protocol::HISTORY_MAX).contains(&n) => Ok(n),
        _ => Err(format!("{} is not a number from 1 to {}", shown(text), crate::protocol::HISTORY_MAX)),
    }
}

pub fn tail_lines(text: &str) -> Result<u64, String> {
    let n: u64 = text.parse().map_err(|_| format!("{} is not a number of lines", shown(text)))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// Largest compiled form of an `--expect` pattern: a bound on what a
/// hostile pattern costs (the regex crate's matching is linear anyway).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles an `--expect` pattern the way `console --expect` will.
pub fn compile_regex(text: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(text).size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT).build().map_err(
        |e| match e {
            regex::Error::CompiledTooBig(_) => "the pattern is too big".to_string(),
            // The syntax error's own text quotes the pattern over several
            // lines; its last line says what is wrong.
            other => {
                let text = other.to_string();
                let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid pattern");
                format!("not a valid regular expression: {}", last.trim().trim_start_matches("error: "))
            }
        },
    )
}

pub fn regex_text(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    compile_regex(text).map(|_| text.to_string())
}
