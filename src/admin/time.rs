//! Times as `rockshard admin` reads and prints them: milliseconds since the epoch, or
//! ISO 8601 in UTC (or with an offset), converted with a proleptic Gregorian calendar
//! so the tool needs no date crate and no time-zone database.
//!
//! Invariants: `parse_time(format_time(ms)) == ms` for every time from 1970 on; a time
//! without a zone is UTC; a bad value is an error that names it and shows the forms
//! accepted, never a guess.
//!
//! Deliberately not here: local time zones (the admin tool prints UTC, as the broker
//! logs do) and relative times ("yesterday").

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Milliseconds since the epoch as ISO 8601 UTC with milliseconds.
pub(super) fn format_time(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Milliseconds since the epoch, or ISO 8601: `YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH:MM]`.
/// A time without a zone is UTC.
pub(super) fn parse_time(text: &str) -> std::result::Result<i64, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().map_err(|e| format!("timestamp `{t}`: {e}"));
    }
    let bad = |why: &str| {
        format!("timestamp `{t}`: {why}; give milliseconds since the epoch or ISO 8601 like 2024-05-01T12:00:00Z")
    };
    let num = |s: &str, what: &str| -> std::result::Result<i64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(&format!("{what} `{s}` is not a number")));
        }
        s.parse::<i64>().map_err(|_| bad(&format!("{what} `{s}` is out of range")))
    };
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, mo, d] = parts.as_slice() else { return Err(bad("the date must be YYYY-MM-DD")) };
    let (year, month, day) = (num(y, "year")?, num(mo, "month")?, num(d, "day")?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad("month or day out of range"));
    }
    // The zone: a trailing Z, or +HH:MM / -HH:MM (also without the colon).
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, zone) = rest.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let zone = zone[1..].replace(':', "");
        if zone.len() != 4 {
            return Err(bad("the zone must be Z or ±HH:MM"));
        }
        (c, sign * (num(&zone[..2], "zone hours")? * 60 + num(&zone[2..], "zone minutes")?))
    } else {
        (rest, 0)
    };
    let (mut h, mut mi, mut s, mut milli) = (0, 0, 0, 0);
    if !clock.is_empty() {
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let fields: Vec<&str> = hms.split(':').collect();
        match fields.as_slice() {
            [hh, mm] => (h, mi) = (num(hh, "hour")?, num(mm, "minute")?),
            [hh, mm, ss] => (h, mi, s) = (num(hh, "hour")?, num(mm, "minute")?, num(ss, "second")?),
            _ => return Err(bad("the time must be HH:MM or HH:MM:SS")),
        }
        if !frac.is_empty() {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            milli = num(&digits, "fraction")?;
        }
        if h > 23 || mi > 59 || s > 60 {
            return Err(bad("hour, minute or second out of range"));
        }
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + s * 1000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14 22:13:20.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T20:13:20.123-0200"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("2024-02-29T00:00"), Ok(1_709_164_800_000));
        for bad in ["", "yesterday", "2024-13-01", "2024-01-01T25:00", "2024-01-01T10", "2024-01-01T10:00+2"] {
            let e = parse_time(bad).expect_err(bad);
            assert!(e.contains("timestamp"), "{e}");
        }
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        for ms in [0, 951_782_400_000, 1_709_164_800_000, 4_102_444_800_999] {
            assert_eq!(parse_time(&format_time(ms)), Ok(ms));
        }
    }
}
