//! `[health.CLASS]`: the health check of a class's boards (power on,
//! console output or a pattern within a timeout, optionally the board's
//! DHCP request, power off), run after each release and on a schedule.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    console: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    dhcp: Option<bool>,
    failures: Option<Spanned<i64>>,
    every: Option<Spanned<String>>,
    after_release: Option<bool>,
}

/// One class's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub class: String,
    /// What the console must show after power-on (a regular expression,
    /// checked at load); None: the board file's `console.selftest`, else
    /// any byte.
    pub console: Option<String>,
    /// How long the console (and the DHCP request) is waited for.
    pub timeout: Duration,
    /// Whether the board's DHCP request must be seen on its link too.
    pub dhcp: bool,
    /// Consecutive failed checks that make a board `unhealthy`.
    pub failures: u32,
    /// How often an idle board is checked (None: only after releases and
    /// when an operator asks).
    pub every: Option<Duration>,
    /// Whether a board is checked after each release, before it is
    /// offered again.
    pub after_release: bool,
}

/// The default wait for the console.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait accepted (as `labd selftest --wait`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The default number of failed checks in a row that make a board unhealthy.
pub const DEFAULT_FAILURES: u32 = 3;

/// Validates every `[health.CLASS]` (the classes are checked against the
/// boards by [`check_classes`], once those are read).
pub(super) fn validate(ctx: &mut Ctx<'_>, raw: BTreeMap<String, Spanned<RawHealth>>) -> Vec<(Health, Span)> {
    let mut out = Vec::new();
    for (class, spanned) in raw {
        let span = spanned.span();
        let r = spanned.into_inner();
        let key = |k: &str| format!("health.{class}.{k}");
        let timeout = ctx.duration(&r.timeout, &key("timeout"), DEFAULT_TIMEOUT);
        if timeout > MAX_TIMEOUT {
            let s = r.timeout.as_ref().map(Spanned::span).unwrap_or(span.clone());
            ctx.err(&s, format!("{} must be at most {}", key("timeout"), crate::util::format_duration(MAX_TIMEOUT)));
        }
        let every = r.every.as_ref().map(|_| ctx.duration(&r.every, &key("every"), Duration::from_secs(3600)));
        let failures = match &r.failures {
            None => DEFAULT_FAILURES,
            Some(v) => match u32::try_from(*v.get_ref()) {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    ctx.err(&v.span(), format!("{} ({}) must be between 1 and 100", key("failures"), v.get_ref()));
                    DEFAULT_FAILURES
                }
            },
        };
        if let Some(p) = &r.console {
            if let Err(e) = regex::bytes::Regex::new(p.get_ref()) {
                ctx.err(&p.span(), format!("{} is not a regular expression: {e}", key("console")));
            }
        }
        let after_release = r.after_release.unwrap_or(true);
        let h = Health {
            class,
            console: r.console.map(Spanned::into_inner),
            timeout,
            dhcp: r.dhcp.unwrap_or(false),
            failures,
            every,
            after_release,
        };
        out.push((h, span));
    }
    out
}

type Span = std::ops::Range<usize>;

/// Each `[health.CLASS]` must name a class some board has; returns the
/// checks by class.
pub(super) fn check_classes(
    ctx: &mut Ctx<'_>,
    checks: Vec<(Health, Span)>,
    classes: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, Health> {
    let mut out = BTreeMap::new();
    for (h, span) in checks {
        if !classes.contains(&h.class) {
            let known: Vec<&str> = classes.iter().map(String::as_str).collect();
            ctx.err(
                &span,
                format!("[health.{}]: no board has class {:?} (classes: {})", h.class, h.class, known.join(", ")),
            );
            continue;
        }
        out.insert(h.class.clone(), h);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_lab::load;

    #[test]
    fn defaults_and_values() {
        assert!(load("").unwrap().health.is_empty());
        let c = load("[health.c]\n").unwrap();
        let h = &c.health["c"];
        assert_eq!(
            (h.timeout, h.failures, h.every, h.dhcp, h.after_release),
            (super::DEFAULT_TIMEOUT, 3, None, false, true)
        );
        let c =
            load("[health.c]\nconsole = \"U-Boot\"\ntimeout = \"20s\"\nfailures = 2\nevery = \"6h\"\ndhcp = true\n")
                .unwrap();
        let h = &c.health["c"];
        assert_eq!(h.console.as_deref(), Some("U-Boot"));
        assert_eq!(
            (h.timeout, h.failures, h.every, h.dhcp),
            (Duration::from_secs(20), 2, Some(Duration::from_secs(6 * 3600)), true)
        );
    }

    #[test]
    fn mistakes_are_named_on_their_line() {
        let e = load("[health.c]\nfailures = 0\n").unwrap_err();
        assert!(e[0].starts_with("4: health.c.failures (0) must be between 1 and 100"), "{e:?}");
        let e = load("[health.c]\ntimeout = \"1h\"\n").unwrap_err();
        assert!(e[0].starts_with("4: health.c.timeout must be at most 10m"), "{e:?}");
        let e = load("[health.c]\nevery = \"often\"\n").unwrap_err();
        assert!(e[0].starts_with("4: health.c.every:"), "{e:?}");
        let e = load("[health.c]\nconsole = \"(\"\n").unwrap_err();
        assert!(e[0].starts_with("4: health.c.console is not a regular expression"), "{e:?}");
        let e = load("[health.c]\nwait = \"3s\"\n").unwrap_err();
        assert!(e[0].contains("unknown field `wait`"), "{e:?}");
        let e = load("[health.rockpro64]\ntimeout = \"3s\"\n").unwrap_err();
        assert!(e[0].contains("[health.rockpro64]: no board has class \"rockpro64\" (classes: c)"), "{e:?}");
        assert!(!e[0].starts_with("0:"), "on its line: {e:?}");
    }
}
