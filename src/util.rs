//! Small shared helpers: durations as users write them, timestamps, handles.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Units of [`parse_duration`], largest first, with their length in ms.
const UNITS: [(&str, u64); 5] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Shows at most 40 characters of a user's text in a message, quoted.
/// A user-supplied string in a message: at most 40 characters, quoted
/// and escaped (so control characters and quotes show as such).
pub fn shown(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// Parses a duration as users write it: a number and a unit (`ms`, `s`,
/// `m`, `h`, `d`), or several, largest unit first (`1h30m`, `1d12h`); a
/// number may have a fraction (`1.5h`, `0.5s`) as long as the whole is a
/// whole number of milliseconds.
///
/// A bare number is refused on purpose: `lease = 30` could mean seconds or
/// minutes, and a lab that guesses wrong holds a board for a month.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let q = shown(text);
    if t.is_empty() {
        return Err("duration is empty (use a number and a unit: ms, s, m, h or d, e.g. 90s or 1h30m)".into());
    }
    let mut rest = t;
    let mut total: u64 = 0;
    // Index in UNITS of the last unit used: each later one must be smaller.
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let (num, after) = rest.split_at(digits);
        if num.is_empty() {
            return Err(format!("duration {q} does not start with a number (e.g. 90s, 1h30m, 1.5h)"));
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("duration {q} has a number without a unit (use ms, s, m, h or d, e.g. 90s)"));
        }
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("duration {q} has unknown unit {} (use ms, s, m, h or d)", shown(unit)));
        };
        if last.is_some_and(|l| idx <= l) {
            return Err(format!("duration {q}: units must each come once, largest first (e.g. 1h30m)"));
        }
        last = Some(idx);
        let ms = amount_ms(num, UNITS[idx].1).map_err(|why| format!("duration {q} {why}"))?;
        total = total.checked_add(ms).ok_or_else(|| format!("duration {q} is too large"))?;
        rest = next;
    }
    Ok(Duration::from_millis(total))
}

/// `num` (digits, perhaps with one `.` and more digits) times `unit_ms`,
/// exactly; the error completes "duration X ...".
fn amount_ms(num: &str, unit_ms: u64) -> Result<u64, &'static str> {
    let (whole, frac) = match num.split_once('.') {
        None => (num, ""),
        Some((_, f)) if f.is_empty() || f.contains('.') => return Err("has a malformed number"),
        Some(("", _)) => return Err("has a malformed number (write 0.5h, not .5h)"),
        Some((w, f)) => (w, f),
    };
    let whole: u64 = whole.parse().map_err(|_| "is too large")?;
    let mut ms = whole.checked_mul(unit_ms).ok_or("is too large")?;
    if !frac.is_empty() {
        // unit_ms is at most 86_400_000 (< 2^27), so 9 digits of fraction
        // times it stays far below u64::MAX.
        if frac.len() > 9 {
            return Err("has more than 9 digits after the point");
        }
        let f: u64 = frac.parse().map_err(|_| "has a malformed number")?;
        let scale = 10u64.pow(u32::try_from(frac.len()).unwrap_or(9));
        let part = f * unit_ms;
        if !part.is_multiple_of(scale) {
            return Err("is not a whole number of milliseconds");
        }
        ms = ms.checked_add(part / scale).ok_or("is too large")?;
    }
    Ok(ms)
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

/// A name for a handle in logs: 8 hex digits of a SHA-256 over it, so
/// that a claim can be followed across hosts' logs while the handle, a
/// bearer secret, appears in none.
pub fn handle_id(handle: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("boardlab handle id\0{handle}").as_bytes());
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
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
        assert!(parse_duration("30").unwrap_err().contains("without a unit"));
        assert!(parse_duration("5w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").unwrap_err().contains("does not start"));
        assert!(parse_duration("99999999999999999999s").unwrap_err().contains("too large"));
        assert!(parse_duration("-5s").is_err());
        assert_eq!(format_duration(Duration::from_secs(86400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn compound_and_fractional_durations() {
        let d = |t: &str| parse_duration(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("90s"), Duration::from_secs(90));
        assert_eq!(d("1d2h3m4s5ms"), Duration::from_millis(93_784_005));
        assert_eq!(d("0.5s"), Duration::from_millis(500));
        assert_eq!(d("2.25m"), Duration::from_secs(135));
        assert_eq!(d(" 1h30m "), Duration::from_secs(5400));
        assert_eq!(d("0.00001d"), Duration::from_millis(864));
        assert_eq!(d("1.000000000h"), Duration::from_secs(3600));
        assert_eq!(d("0s"), Duration::ZERO);
    }

    #[test]
    fn garbage_durations_say_why() {
        let e = |t: &str| parse_duration(t).expect_err(t);
        assert!(e("").contains("empty"));
        assert!(e("   ").contains("empty"));
        assert!(e("1h30").contains("without a unit"), "{}", e("1h30"));
        assert!(e("30m1h").contains("largest first"));
        assert!(e("1h1h").contains("largest first"));
        assert!(e("1.5ms").contains("whole number of milliseconds"));
        assert!(e("0.0001s").contains("whole number of milliseconds"));
        assert!(e(".5h").contains("0.5h"));
        assert!(e("1.h").contains("malformed"));
        assert!(e("1..5h").contains("malformed"));
        assert!(e("1.2.3h").contains("malformed"));
        assert!(e("1.0000000001h").contains("9 digits"));
        assert!(e("1h 30m").contains("unknown unit"));
        assert!(e("1hour").contains("unknown unit"));
        assert!(e("h1").contains("does not start"));
        assert!(e("1e3s").contains("unknown unit"));
        assert!(e("213503982334601d").contains("too large"));
        assert!(e("213503982334d213503982334d").contains("largest first"));
        assert!(e("18446744073709551s616ms").contains("too large"));
        assert!(e(&"9".repeat(10_000)).len() < 200, "the message quotes at most 40 characters");
        // Never a panic on odd input.
        for t in ["\u{0}", "ü1h", "1ü", "1.", ".", "..", "1hms", "1msh", "9999999999.999999999d"] {
            let _ = parse_duration(t);
        }
    }

    #[test]
    fn a_handle_id_names_a_handle_without_showing_it() {
        let h = "bl-0123456789abcdef0123456789abcdef";
        let id = handle_id(h);
        assert_eq!(id.len(), 8);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, handle_id(h));
        assert_ne!(id, handle_id("bl-0123456789abcdef0123456789abcdee"));
        assert!(!h.contains(&id));
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
