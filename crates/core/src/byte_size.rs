//! Byte counts as people read them: `512 B`, `3.5 KiB`, `812.3 MiB`, `1.0 GiB`.

use crate::largest_unit::in_largest_unit;

const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];

/// `bytes` in the largest binary unit it reaches once rounded to a tenth (1,023 bytes read
/// `1.0 KiB`).
pub fn format_bytes(bytes: u64) -> String {
    in_largest_unit(bytes, &UNITS, "B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_is_shown_to_a_tenth_of_the_largest_unit_it_reaches() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(972), "972 B");
        assert_eq!(format_bytes(1023), "1.0 KiB");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(3584), "3.5 KiB");
        assert_eq!(format_bytes(900 * 1024), "900.0 KiB");
        assert_eq!(format_bytes((1 << 20) - 1), "1.0 MiB");
        assert_eq!(format_bytes((1 << 30) - 1), "1.0 GiB");
        assert_eq!(format_bytes(812 << 20), "812.0 MiB");
        assert_eq!(format_bytes(5 << 30), "5.0 GiB");
    }
}
