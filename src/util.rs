//! Small shared helpers: durations as users write them, timestamps, handles.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a duration as users write it: `500ms`, `90s`, `30m`, `4h`, `1d`.
///
/// A bare number is refused on purpose: `lease = 30` could mean seconds or
/// minutes, and a lab that guesses wrong holds a board for a month.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} has no unit (use ms, s, m, h or d, e.g. 90s)"))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("duration {text:?} does not start with a number"));
    }
    let n: u64 = num.parse().map_err(|_| format!("duration {text:?} is too large"))?;
    let mult_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("duration {text:?} has unknown unit {unit:?} (use ms, s, m, h or d)")),
    };
    let ms = n.checked_mul(mult_ms).ok_or_else(|| format!("duration {text:?} is too large"))?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way [`parse_duration`] reads it, with the largest
/// unit that divides it exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Formats a duration as people read it, largest units first, to the
/// second: `3h12m`, `1d2h`, `45s`, `0s`.
pub fn format_duration_compound(d: Duration) -> String {
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400u64), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Milliseconds since the Unix epoch; leases are kept at this resolution so
/// that tests can use sub-second leases.
pub fn now_unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// RFC 3339 (UTC, second resolution) for a Unix time in milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| secs.to_string()),
        Err(_) => secs.to_string(),
    }
}

/// A fresh claim handle: 128 bits from the kernel's CSPRNG, hex encoded, so
/// that handles cannot be guessed from each other or from the time.
pub fn new_handle() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut s = String::with_capacity(35);
    s.push_str("bl-");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("4h").unwrap(), Duration::from_secs(14400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("5w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").unwrap_err().contains("does not start"));
        assert!(parse_duration("99999999999999999999s").unwrap_err().contains("too large"));
        assert!(parse_duration("-5s").is_err());
        assert_eq!(format_duration(Duration::from_secs(86400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn handles_are_distinct_and_shaped() {
        let a = new_handle().unwrap();
        let b = new_handle().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 35);
        assert!(a.starts_with("bl-"));
    }
}
