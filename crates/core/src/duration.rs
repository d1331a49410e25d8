//! Durations as people type them on the command line and in configuration files:
//! `500ms`, `30s`, `5m`, `2h`, `7d`, or plain milliseconds (`1500`).

const UNITS_IN_MILLISECONDS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1000),
    ("m", 60 * 1000),
    ("h", 60 * 60 * 1000),
    ("d", 24 * 60 * 60 * 1000),
];

/// Parses a duration into milliseconds; usable as a clap `value_parser`.
pub fn parse_milliseconds(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "'{text}' is not a duration; expected a whole number with a unit, \
             e.g. 500ms, 30s, 5m, 2h, 7d (plain numbers are milliseconds)"
        ));
    }
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is too large a duration"))?;
    let multiplier = unit_multiplier(unit.trim())
        .ok_or_else(|| format!("'{text}' has an unknown unit '{unit}'; use ms, s, m, h or d"))?;
    amount
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large a duration"))
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    if unit.is_empty() {
        return Some(1);
    }
    UNITS_IN_MILLISECONDS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, multiplier)| *multiplier)
}

/// Formats milliseconds in the largest unit that divides them exactly: `300000` → `5m`.
pub fn format_milliseconds(milliseconds: u64) -> String {
    if milliseconds == 0 {
        return "0s".to_string();
    }
    UNITS_IN_MILLISECONDS
        .iter()
        .rev()
        .find(|(_, multiplier)| milliseconds.is_multiple_of(*multiplier))
        .map(|(name, multiplier)| format!("{}{name}", milliseconds / multiplier))
        .unwrap_or_else(|| format!("{milliseconds}ms"))
}

/// Formats milliseconds as a person reads a measured span, to a tenth of its largest unit:
/// `850 ms`, `3.2 s`, `12.5 min`, `1.0 h` (3,599,998 ms too), `2.1 d`.
pub fn format_approximately(milliseconds: u64) -> String {
    const SPANS: [(&str, u64); 4] = [
        ("d", 24 * 60 * 60 * 1000),
        ("h", 60 * 60 * 1000),
        ("min", 60 * 1000),
        ("s", 1000),
    ];
    let tenths_of =
        |span: u64| (u128::from(milliseconds) * 10 + u128::from(span / 2)) / u128::from(span);
    SPANS
        .iter()
        .map(|(name, span)| (name, tenths_of(*span)))
        .find(|(_, tenths)| *tenths >= 10)
        .map(|(name, tenths)| format!("{}.{} {name}", tenths / 10, tenths % 10))
        .unwrap_or_else(|| format!("{milliseconds} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_spans_read_in_their_largest_unit() {
        assert_eq!(format_approximately(0), "0 ms");
        assert_eq!(format_approximately(850), "850 ms");
        assert_eq!(format_approximately(3_240), "3.2 s");
        assert_eq!(format_approximately(750_000), "12.5 min");
        assert_eq!(format_approximately(3_600_012), "1.0 h");
        assert_eq!(format_approximately(3_599_998), "1.0 h");
        assert_eq!(format_approximately(181_440_000), "2.1 d");
    }

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_milliseconds("500ms"), Ok(500));
        assert_eq!(parse_milliseconds("30s"), Ok(30_000));
        assert_eq!(parse_milliseconds("5m"), Ok(300_000));
        assert_eq!(parse_milliseconds("2h"), Ok(7_200_000));
        assert_eq!(parse_milliseconds("7d"), Ok(604_800_000));
    }

    #[test]
    fn plain_numbers_are_milliseconds() {
        assert_eq!(parse_milliseconds("1500"), Ok(1500));
        assert_eq!(parse_milliseconds("0"), Ok(0));
    }

    #[test]
    fn bad_durations_are_explained() {
        assert!(
            parse_milliseconds("")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(
            parse_milliseconds("-5s")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(
            parse_milliseconds("5 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_milliseconds("1.5s")
                .unwrap_err()
                .contains("unknown unit")
        );
        let huge = format!("{}d", u64::MAX);
        assert!(parse_milliseconds(&huge).unwrap_err().contains("too large"));
    }

    #[test]
    fn formatting_picks_the_largest_exact_unit() {
        assert_eq!(format_milliseconds(300_000), "5m");
        assert_eq!(format_milliseconds(1500), "1500ms");
        assert_eq!(format_milliseconds(604_800_000), "7d");
        assert_eq!(format_milliseconds(0), "0s");
    }
}
