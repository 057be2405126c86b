//! Unit parsing for config values: durations (`"250ms"`, `"2s"`, `"5m"`) and sizes
//! (`"64KiB"`, `"256MiB"`). Runs once at config load; never on the request path.

use std::time::Duration;

/// Parse a duration string: an unsigned integer or decimal followed by one unit of
/// `ms`, `s`, `m`, `h`. A bare number is refused, because `timeout = 5` is ambiguous
/// (seconds? milliseconds?) and an SRE editing under pressure should not have to guess.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("bad duration {s:?}: missing unit (use ms, s, m or h, e.g. \"250ms\")")
        })?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "bad duration {s:?}: expected a number before the unit"
        ));
    }
    // Exact arithmetic in nanoseconds (a float would turn "10353245992ms" into
    // 10353245.992000001 s): the integer part, then the fraction (digits past 18 ignored).
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("bad duration {s:?}: {num:?} is not a number"));
    }
    let ns_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "bad duration {s:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    let too_large = || format!("bad duration {s:?}: too large");
    let whole: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_large())?
    };
    let frac = &frac[..frac.len().min(18)];
    let frac_ns: u128 = if frac.is_empty() {
        0
    } else {
        let digits: u128 = frac.parse().map_err(|_| format!("bad duration {s:?}"))?;
        digits * ns_per_unit / 10u128.pow(frac.len() as u32)
    };
    let total = whole
        .checked_mul(ns_per_unit)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(too_large)?;
    if total > 365 * 24 * 3600 * 1_000_000_000 {
        return Err(too_large());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Parse a byte size: an integer followed by `B`, `KiB`, `MiB` or `GiB` (binary units only,
/// so there is no doubt whether "MB" means 10^6 or 2^20).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("bad size {s:?}: expected an integer and a unit such as \"256MiB\"")
    })?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "bad size {s:?}: unknown unit {unit:?} (use B, KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("bad size {s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("1..2s").is_err());
        assert!(parse_duration("99999999h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("1MB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
