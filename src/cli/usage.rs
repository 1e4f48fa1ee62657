//! Usage errors: what was wrong with a command line, in one short line.
//!
//! clap's own messages quote the user's words in full and span several
//! lines; here each kind of mistake gets one line in labcli's words, with
//! at most 40 characters of any word the user wrote (escaped, so that a
//! hostile word cannot drive a terminal or flood a log).

use std::fmt;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::util::shown;

/// A usage error, shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Longest usage message, in characters.
const MAX_MESSAGE: usize = 1000;

fn string(e: &clap::Error, kind: ContextKind) -> Option<&str> {
    match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    }
}

fn strings(e: &clap::Error, kind: ContextKind) -> Vec<&str> {
    match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.as_str()],
        Some(ContextValue::Strings(v)) => v.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

/// `--lease <DUR>` → `--lease`; `<CLASS>` → `CLASS`; `[HANDLE|BOARD]` →
/// `HANDLE|BOARD`.
fn arg_name(spec: &str) -> String {
    let first = if spec.starts_with('-') { spec.split([' ', '=']).next().unwrap_or(spec) } else { spec };
    first.trim_matches(|c| matches!(c, '<' | '>' | '[' | ']' | '.')).to_string()
}

/// The command a usage line is about: `Usage: labcli claim ...` → `claim`.
fn command_of(e: &clap::Error) -> Option<String> {
    let usage = match e.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(s)) => s.to_string(),
        _ => return None,
    };
    let mut words = usage.split_whitespace().skip_while(|w| *w != "labcli").skip(1);
    words.next().filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-')).map(str::to_string)
}

/// One line for a clap parse error.
pub fn from_clap(e: &clap::Error) -> UsageError {
    let arg = || string(e, ContextKind::InvalidArg).map(arg_name).unwrap_or_else(|| "argument".into());
    let value = || string(e, ContextKind::InvalidValue).unwrap_or("");
    let suggestion = |kind| {
        strings(e, kind)
            .first()
            .map(|s| format!(" (did you mean {}?)", shown(s.trim_start_matches("labcli "))))
            .unwrap_or_default()
    };
    let msg = match e.kind() {
        ErrorKind::InvalidSubcommand => {
            let word = string(e, ContextKind::InvalidSubcommand).unwrap_or("");
            format!("unknown command {}{}", shown(word), suggestion(ContextKind::SuggestedSubcommand))
        }
        ErrorKind::UnknownArgument => {
            let word = string(e, ContextKind::InvalidArg).unwrap_or("");
            let what = if word.starts_with('-') && word.len() > 1 { "unknown option" } else { "unexpected argument" };
            let cmd = command_of(e).map(|c| format!(" for `{c}`")).unwrap_or_default();
            format!("{what} {}{cmd}{}", shown(word), suggestion(ContextKind::SuggestedArg))
        }
        ErrorKind::InvalidValue if value().is_empty() => format!("{} needs a value", arg()),
        ErrorKind::InvalidValue => {
            let valid = strings(e, ContextKind::ValidValue);
            let mut m = format!("{}: invalid value {}", arg(), shown(value()));
            if !valid.is_empty() {
                m.push_str(&format!(" (use {})", valid.join(" or ")));
            }
            m
        }
        ErrorKind::ValueValidation => match std::error::Error::source(e) {
            Some(why) => format!("{}: {why}", arg()),
            None => format!("{}: invalid value {}", arg(), shown(value())),
        },
        ErrorKind::MissingRequiredArgument => {
            let missing: Vec<String> = strings(e, ContextKind::InvalidArg).into_iter().map(arg_name).collect();
            let what = if missing.is_empty() { "an argument".to_string() } else { missing.join(" and ") };
            match command_of(e) {
                Some(c) => format!("`{c}` needs {what}"),
                None => format!("missing {what}"),
            }
        }
        ErrorKind::ArgumentConflict => {
            let prior = strings(e, ContextKind::PriorArg);
            let this = arg();
            if prior.iter().any(|p| arg_name(p) == this) || prior.is_empty() {
                format!("option {this} given twice")
            } else {
                let others: Vec<String> = prior.iter().map(|p| arg_name(p)).collect();
                format!("option {this} cannot be used with {}", others.join(", "))
            }
        }
        ErrorKind::NoEquals => format!("{} takes its value after `=` ({}=DUR)", arg(), arg()),
        ErrorKind::TooManyValues => format!("unexpected value {} for {}", shown(value()), arg()),
        ErrorKind::MissingSubcommand => "a command is needed".to_string(),
        ErrorKind::InvalidUtf8 => "arguments must be UTF-8".to_string(),
        // Other kinds: clap's own first line.
        _ => {
            let text = e.render().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid command line");
            first.trim_start_matches("error: ").to_string()
        }
    };
    UsageError(bounded(&msg))
}

/// Escapes control characters and caps the length.
fn bounded(msg: &str) -> String {
    let clean = super::output::clean(msg).replace('\n', " ");
    if clean.chars().count() <= MAX_MESSAGE {
        return clean;
    }
    let mut s: String = clean.chars().take(MAX_MESSAGE).collect();
    s.push('…');
    s
}
