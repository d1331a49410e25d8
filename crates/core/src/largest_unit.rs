//! A measured quantity in the largest unit it reaches, to a tenth: the rounding that byte
//! counts ([`crate::byte_size`]) and time spans ([`crate::duration`]) share.

/// `value` in the first of `units` (largest first, each with its size in base units) that it
/// reaches once rounded to a tenth, as `3.5 KiB`; below all of them, whole in `base`.
/// Rounding decides the unit, so a value just short of a unit reads `1.0` of it.
pub(crate) fn in_largest_unit(value: u64, units: &[(&str, u64)], base: &str) -> String {
    let tenths_of = |size: u64| (u128::from(value) * 10 + u128::from(size / 2)) / u128::from(size);
    units
        .iter()
        .map(|(name, size)| (name, tenths_of(*size)))
        .find(|(_, tenths)| *tenths >= 10)
        .map(|(name, tenths)| format!("{}.{} {name}", tenths / 10, tenths % 10))
        .unwrap_or_else(|| format!("{value} {base}"))
}
