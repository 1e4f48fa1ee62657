//! `[lease]`, `[policy]`, `[events]`, `[power]` and `[console]`: how long
//! claims last and how many one user may hold, how long the event log is
//! kept, how power is switched, how console output is kept.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLease {
    pub(super) default: Option<Spanned<String>>,
    pub(super) max: Option<Spanned<String>>,
    pub(super) max_total: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUserPolicy {
    pub(super) max_claims_per_user: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub(super) keep: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPower {
    pub(super) cycle_delay: Option<Spanned<String>>,
    pub(super) retry_max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsoleLogs {
    pub(super) log_max_bytes: Option<Spanned<i64>>,
    pub(super) log_keep: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub default: Duration,
    pub max: Duration,
    /// The longest a claim may be held, renewals included (None: no limit).
    pub max_total: Option<Duration>,
}

/// `[policy]`: what one user may hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserPolicy {
    /// Claims held (or waiting) at once per user (None: no limit).
    pub max_claims_per_user: Option<usize>,
}

/// `[events]`: the event log (`labcli history`).
#[derive(Debug, Clone, Copy)]
pub struct Events {
    /// Events older than this are pruned.
    pub keep: Duration,
}

/// The event log's default age limit: 90 days.
pub const DEFAULT_EVENTS_KEEP: Duration = Duration::from_secs(90 * 86400);

#[derive(Debug, Clone, Copy)]
pub struct PowerPolicy {
    /// Off time during a power cycle.
    pub cycle_delay: Duration,
    /// Ceiling of the back-off between probes of a switch that does not answer.
    pub retry_max: Duration,
}

/// How console output is kept on disk.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleLogs {
    /// Size at which a claim's console log is rotated.
    pub log_max_bytes: u64,
    /// Rotated files kept per claim besides the current one.
    pub log_keep: u32,
}

/// Validates `[lease]`.
pub(super) fn validate_lease(ctx: &mut Ctx<'_>, raw: &RawLease) -> Lease {
    let default = ctx.duration(&raw.default, "lease.default", Duration::from_secs(4 * 3600));
    let max = ctx.duration(&raw.max, "lease.max", Duration::from_secs(86400));
    if default > max {
        let span = raw.default.as_ref().map(|s| s.span()).unwrap_or(0..0);
        ctx.err(
            &span,
            format!(
                "lease.default ({}) is longer than lease.max ({})",
                crate::util::format_duration(default),
                crate::util::format_duration(max)
            ),
        );
    }
    let max_total = raw.max_total.as_ref().map(|s| {
        let total = ctx.duration(&raw.max_total, "lease.max_total", max);
        if total < max {
            ctx.err(
                &s.span(),
                format!(
                    "lease.max_total ({}) is shorter than lease.max ({}): a claim could be granted a lease it may \
                     not hold",
                    crate::util::format_duration(total),
                    crate::util::format_duration(max)
                ),
            );
        }
        total
    });
    Lease { default, max, max_total }
}

/// Validates `[policy]`.
pub(super) fn validate_user_policy(ctx: &mut Ctx<'_>, raw: &RawUserPolicy) -> UserPolicy {
    let max_claims_per_user = raw.max_claims_per_user.as_ref().and_then(|v| match usize::try_from(*v.get_ref()) {
        Ok(n) if (1..=100_000).contains(&n) => Some(n),
        _ => {
            ctx.err(&v.span(), format!("policy.max_claims_per_user ({}) must be between 1 and 100000", v.get_ref()));
            None
        }
    });
    UserPolicy { max_claims_per_user }
}

/// Validates `[events]`.
pub(super) fn validate_events(ctx: &mut Ctx<'_>, raw: &RawEvents) -> Events {
    let keep = ctx.duration(&raw.keep, "events.keep", DEFAULT_EVENTS_KEEP);
    if keep < Duration::from_secs(3600) {
        let span = raw.keep.as_ref().map(|s| s.span()).unwrap_or(0..0);
        ctx.err(&span, format!("events.keep ({}) must be at least 1h", crate::util::format_duration(keep)));
    }
    Events { keep }
}

/// Validates `[power]`.
pub(super) fn validate_power(ctx: &mut Ctx<'_>, raw: &RawPower) -> PowerPolicy {
    PowerPolicy {
        cycle_delay: ctx.duration(&raw.cycle_delay, "power.cycle_delay", Duration::from_secs(2)),
        retry_max: ctx.duration(&raw.retry_max, "power.retry_max", Duration::from_secs(60)),
    }
}

/// Validates `[console]`.
pub(super) fn validate_console(ctx: &mut Ctx<'_>, raw: &RawConsoleLogs) -> ConsoleLogs {
    let log_max_bytes = match &raw.log_max_bytes {
        None => 4 << 20,
        Some(v) => match u64::try_from(*v.get_ref()) {
            Ok(n) if n >= 4096 => n,
            _ => {
                ctx.err(&v.span(), format!("console.log_max_bytes ({}) must be at least 4096", v.get_ref()));
                4 << 20
            }
        },
    };
    let log_keep = match &raw.log_keep {
        None => 2,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if n <= 100 => n,
            _ => {
                ctx.err(&v.span(), format!("console.log_keep ({}) must be between 0 and 100", v.get_ref()));
                2
            }
        },
    };
    ConsoleLogs { log_max_bytes, log_keep }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_lab::load;

    #[test]
    fn limits_and_event_keeping_default_to_none_and_90_days() {
        let c = load("").unwrap();
        assert_eq!((c.lease.max_total, c.policy.max_claims_per_user), (None, None));
        assert_eq!(c.events.keep, Duration::from_secs(90 * 86400));
        let c = load(
            "[lease]\nmax = \"1d\"\nmax_total = \"3d\"\n[policy]\nmax_claims_per_user = 4\n[events]\nkeep = \"30d\"\n",
        )
        .unwrap();
        assert_eq!(c.lease.max_total, Some(Duration::from_secs(3 * 86400)));
        assert_eq!(c.policy.max_claims_per_user, Some(4));
        assert_eq!(c.events.keep, Duration::from_secs(30 * 86400));
    }

    #[test]
    fn bad_limits_are_errors_with_their_line() {
        let e = load("[lease]\nmax = \"1d\"\nmax_total = \"12h\"\n").unwrap_err();
        assert_eq!(e, vec!["5: lease.max_total (12h) is shorter than lease.max (1d): a claim could be granted a lease it may not hold"]);
        let e = load("[policy]\nmax_claims_per_user = 0\n").unwrap_err();
        assert_eq!(e, vec!["4: policy.max_claims_per_user (0) must be between 1 and 100000"]);
        let e = load("[events]\nkeep = \"10m\"\n").unwrap_err();
        assert_eq!(e, vec!["4: events.keep (10m) must be at least 1h"]);
        let e = load("[policy]\nmax_claims = 3\n").unwrap_err();
        assert!(e[0].contains("unknown field `max_claims`"), "{e:?}");
    }
}
