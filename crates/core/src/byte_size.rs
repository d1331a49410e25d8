//! Byte counts as people read them: `512 B`, `3.5 KiB`, `812.3 MiB`, `1.0 GiB`.

const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];

/// `bytes` in the largest binary unit it reaches, with one decimal.
pub fn format_bytes(bytes: u64) -> String {
    UNITS
        .iter()
        .find(|(_, size)| bytes >= *size)
        .map(|(unit, size)| format!("{:.1} {unit}", bytes as f64 / *size as f64))
        .unwrap_or_else(|| format!("{bytes} B"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_is_shown_in_the_largest_unit_it_reaches() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(3584), "3.5 KiB");
        assert_eq!(format_bytes((1 << 30) - 1), "1024.0 MiB");
        assert_eq!(format_bytes(812 << 20), "812.0 MiB");
        assert_eq!(format_bytes(5 << 30), "5.0 GiB");
    }
}
