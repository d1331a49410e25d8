//! RFC 3339 timestamps <-> milliseconds since the Unix epoch, without a clock.
//!
//! Pure calendar arithmetic (proleptic Gregorian, UTC), so that core needs no date crate.

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let millis_of_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let hour = millis_of_day / 3_600_000;
    let minute = millis_of_day / 60_000 % 60;
    let second = millis_of_day / 1000 % 60;
    let milli = millis_of_day % 1000;
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
        );
    }
    // Digit by digit: the committer formats a time into every lease's tracking event, and
    // `format!` with padding took about 1.5 % of its time under a consuming load.
    let mut text = String::with_capacity(24);
    let fields = [
        (year, 4, '-'),
        (month, 2, '-'),
        (day, 2, 'T'),
        (hour, 2, ':'),
        (minute, 2, ':'),
        (second, 2, '.'),
        (milli, 3, 'Z'),
    ];
    for (value, width, separator) in fields {
        push_digits(&mut text, value, width);
        text.push(separator);
    }
    text
}

/// Appends the last `width` decimal digits of a non-negative `value`, zero-padded.
fn push_digits(text: &mut String, value: i64, width: u32) {
    for position in (0..width).rev() {
        let digit = value / 10_i64.pow(position) % 10;
        text.push(char::from(b'0' + digit as u8));
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into milliseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return Err("expected YYYY-MM-DDTHH:MM:SSZ".to_string());
    }
    let number = |range: std::ops::Range<usize>, what: &str| -> Result<i64, String> {
        text.get(range)
            .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()))
            .and_then(|digits| digits.parse::<i64>().ok())
            .ok_or_else(|| format!("expected a two or four digit {what}"))
    };
    let separator = |index: usize, expected: &[u8]| -> Result<(), String> {
        if expected.contains(&bytes[index]) {
            Ok(())
        } else {
            Err(format!(
                "expected '{}' at position {}",
                expected[0] as char,
                index + 1
            ))
        }
    };
    let year = number(0..4, "year")?;
    separator(4, b"-")?;
    let month = number(5..7, "month")?;
    separator(7, b"-")?;
    let day = number(8..10, "day")?;
    separator(10, b"Tt ")?;
    let hour = number(11..13, "hour")?;
    separator(13, b":")?;
    let minute = number(14..16, "minute")?;
    separator(16, b":")?;
    let second = number(17..19, "second")?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("date out of range".to_string());
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time out of range".to_string());
    }
    let mut index = 19;
    let mut fraction_millis = 0;
    if bytes[index] == b'.' {
        index += 1;
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        if index == start {
            return Err("expected digits after '.'".to_string());
        }
        let digits = &text[start..index.min(start + 3)];
        fraction_millis = digits.parse::<i64>().unwrap_or(0) * 10_i64.pow(3 - digits.len() as u32);
    }
    let offset_minutes = match &text[index..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')) => {
            let hours = number(index + 1..index + 3, "offset hour")?;
            separator(index + 3, b":")?;
            let minutes = number(index + 4..index + 6, "offset minute")?;
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (hours * 60 + minutes)
        }
        _ => return Err("expected 'Z' or an offset like +01:00".to_string()),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + fraction_millis)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-11-26T10:18:26.5Z"),
            Ok(1_795_688_306_500)
        );
        assert_eq!(
            format_rfc3339(1_795_688_306_500),
            "2026-11-26T10:18:26.500Z"
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T11:18:26+01:00"),
            parse_rfc3339("2026-11-26T10:18:26Z")
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rejects_impossible_dates() {
        assert!(parse_rfc3339("2026-02-30T00:00:00Z").is_err());
        assert!(parse_rfc3339("2026-11-26").is_err());
        assert!(parse_rfc3339("2026-11-26T25:00:00Z").is_err());
    }

    #[test]
    fn formatting_inverts_parsing_across_eras() {
        for millis in [
            -62_135_596_800_000_i64,
            0,
            951_782_400_000,
            4_102_444_800_123,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(millis)), Ok(millis));
        }
    }

    #[test]
    fn years_outside_four_digits_are_still_formatted() {
        assert_eq!(
            format_rfc3339(-62_135_596_800_001),
            "0000-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_rfc3339(-62_198_755_200_000),
            "-001-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
    }
}
