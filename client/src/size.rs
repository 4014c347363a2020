//! Byte sizes as people type and read them: `10G`, `64KiB`, `1.5t`, `4096`
//! (binary units, powers of 1024). Parsing and formatting only.

/// Units, largest first: (suffix letter, bytes).
const UNITS: [(char, u64); 5] =
    [('P', 1 << 50), ('T', 1 << 40), ('G', 1 << 30), ('M', 1 << 20), ('K', 1 << 10)];

/// A size string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// Nothing, or no number, was given.
    #[error(
        "invalid size {0:?}: expected a number of bytes, optionally with K, M, G, T or P (powers of 1024)"
    )]
    NotANumber(String),
    /// The unit suffix is not one we know.
    #[error(
        "invalid size {0:?}: unknown unit; use K, M, G, T or P (or KiB, MiB, ...), powers of 1024"
    )]
    UnknownUnit(String),
    /// `KB`, `GB`...: decimal or binary is unclear, so we refuse to guess.
    #[error("invalid size {0:?}: ambiguous unit; write G or GiB (powers of 1024)")]
    AmbiguousUnit(String),
    /// A fraction that does not come to a whole number of bytes.
    #[error("invalid size {0:?}: not a whole number of bytes")]
    Fractional(String),
    /// Larger than 2^64 - 1 bytes.
    #[error("invalid size {0:?}: too large")]
    TooLarge(String),
}

/// Parses `4096`, `64K`, `64k`, `64KiB`, `10 G`, `1.5T`, `2P` (case-insensitive,
/// powers of 1024; a trailing `B` is allowed after the plain number or `iB`).
///
/// ```
/// use clonebd_client::size::parse_size;
/// assert_eq!(parse_size("10G"), Ok(10 << 30));
/// assert_eq!(parse_size("64KiB"), Ok(65536));
/// assert!(parse_size("10GB").is_err()); // ambiguous: say G or GiB
/// ```
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let text = input.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !whole.is_empty() || !fraction.is_empty();
    if !well_formed || fraction.contains('.') {
        return Err(SizeError::NotANumber(input.to_owned()));
    }
    let multiplier = unit_multiplier(unit).map_err(|ambiguous| {
        if ambiguous {
            SizeError::AmbiguousUnit(input.to_owned())
        } else {
            SizeError::UnknownUnit(input.to_owned())
        }
    })?;
    let too_large = || SizeError::TooLarge(input.to_owned());
    // Exact arithmetic: value = (whole * 10^k + fraction) * multiplier / 10^k.
    let digits = format!("{whole}{fraction}");
    let scaled: u128 = digits.parse().map_err(|_| too_large())?;
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).map_err(|_| too_large())?);
    let scale = scale.ok_or_else(too_large)?;
    let bytes = scaled.checked_mul(u128::from(multiplier)).ok_or_else(too_large)?;
    if !bytes.is_multiple_of(scale) {
        return Err(SizeError::Fractional(input.to_owned()));
    }
    u64::try_from(bytes / scale).map_err(|_| too_large())
}

/// The multiplier for a unit suffix; `Err(true)` if it is ambiguous (`GB`).
fn unit_multiplier(unit: &str) -> Result<u64, bool> {
    let unit = unit.to_ascii_uppercase();
    if unit.is_empty() || unit == "B" {
        return Ok(1);
    }
    let mut chars = unit.chars();
    let Some(letter) = chars.next() else { return Ok(1) };
    let Some(&(_, bytes)) = UNITS.iter().find(|(l, _)| *l == letter) else {
        return Err(false);
    };
    match chars.as_str() {
        "" | "IB" => Ok(bytes),
        "B" => Err(true),
        _ => Err(false),
    }
}

/// A size for people: the largest unit that fits, up to two decimals
/// (`10 GiB`, `1.5 GiB`, `512 B`). Not exact; see [`format_size_exact`].
///
/// ```
/// use clonebd_client::size::format_size;
/// assert_eq!(format_size(10 << 30), "10 GiB");
/// assert_eq!(format_size(3 << 29), "1.5 GiB");
/// ```
pub fn format_size(bytes: u64) -> String {
    for (letter, unit) in UNITS {
        if bytes >= unit {
            #[allow(clippy::cast_precision_loss)] // display only, two decimals
            let value = bytes as f64 / unit as f64;
            let text = format!("{value:.2}");
            let text = text.trim_end_matches('0').trim_end_matches('.');
            return format!("{text} {letter}iB");
        }
    }
    format!("{bytes} B")
}

/// A size in the largest unit that divides it exactly (`1536 MiB`,
/// `65536 B` is `64 KiB`): for offsets, where rounding would mislead.
///
/// ```
/// use clonebd_client::size::format_size_exact;
/// assert_eq!(format_size_exact(3 << 29), "1536 MiB");
/// assert_eq!(format_size_exact(4097), "4097 B");
/// ```
pub fn format_size_exact(bytes: u64) -> String {
    if bytes != 0 {
        for (letter, unit) in UNITS {
            if bytes.is_multiple_of(unit) {
                return format!("{} {letter}iB", bytes / unit);
            }
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_and_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size(" 10 g "), Ok(10 << 30));
        assert_eq!(parse_size("100T"), Ok(100 << 40));
        assert_eq!(parse_size("2P"), Ok(2 << 50));
        assert_eq!(parse_size("2pib"), Ok(2 << 50));
    }

    #[test]
    fn fractions_must_be_whole_bytes() {
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size(".5K"), Ok(512));
        assert_eq!(parse_size("1.0"), Ok(1));
        assert_eq!(parse_size("1.5"), Err(SizeError::Fractional("1.5".into())));
        assert_eq!(parse_size("0.1K"), Err(SizeError::Fractional("0.1K".into())));
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        assert_eq!(parse_size(""), Err(SizeError::NotANumber("".into())));
        assert_eq!(parse_size("G"), Err(SizeError::NotANumber("G".into())));
        assert_eq!(parse_size("."), Err(SizeError::NotANumber(".".into())));
        assert_eq!(parse_size("1.2.3"), Err(SizeError::NotANumber("1.2.3".into())));
        assert_eq!(parse_size("-1"), Err(SizeError::NotANumber("-1".into())));
        assert_eq!(parse_size("10X"), Err(SizeError::UnknownUnit("10X".into())));
        assert_eq!(parse_size("10Gi"), Err(SizeError::UnknownUnit("10Gi".into())));
        assert_eq!(parse_size("10 GiBs"), Err(SizeError::UnknownUnit("10 GiBs".into())));
        assert_eq!(parse_size("10GB"), Err(SizeError::AmbiguousUnit("10GB".into())));
        assert_eq!(parse_size("10kb"), Err(SizeError::AmbiguousUnit("10kb".into())));
        assert_eq!(parse_size("16P"), Ok(16 << 50));
        assert_eq!(parse_size("16384P"), Err(SizeError::TooLarge("16384P".into())));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_size("18446744073709551616"),
            Err(SizeError::TooLarge("18446744073709551616".into()))
        );
        assert_eq!(
            parse_size("99999999999999999999999999999999999999999999"),
            Err(SizeError::TooLarge("99999999999999999999999999999999999999999999".into()))
        );
        let message = parse_size("ten").unwrap_err().to_string();
        assert!(message.starts_with("invalid size \"ten\""), "{message}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(65536), "64 KiB");
        assert_eq!(format_size(10 << 30), "10 GiB");
        assert_eq!(format_size((1 << 30) + (1 << 28)), "1.25 GiB");
        assert_eq!(format_size(100 << 40), "100 TiB");
        assert_eq!(format_size(u64::MAX), "16384 PiB");
    }

    #[test]
    fn exact_sizes() {
        assert_eq!(format_size_exact(0), "0 B");
        assert_eq!(format_size_exact(65536), "64 KiB");
        assert_eq!(format_size_exact(1 << 30), "1 GiB");
        assert_eq!(format_size_exact((1 << 30) + 65536), "1048640 KiB");
    }

    #[test]
    fn format_then_parse_round_trips_for_whole_units() {
        for bytes in [512, 4096, 65536, 1 << 20, 10 << 30, 3 << 40] {
            let text = format_size_exact(bytes).replace(' ', "");
            assert_eq!(parse_size(&text), Ok(bytes), "{text}");
        }
    }
}
