//! Amounts as the harness carries them: integer minor units (cents) of a currency
//! with scale 2, CNY in every run. Integers make the conservation check exact
//! (sums of thousands of balances must match to the cent); the API's decimal
//! strings are converted at the edge, both ways, and anything that is not a whole
//! number of cents is refused rather than rounded.

use std::str::FromStr;

use anyhow::{bail, Context as _};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// The currency every run moves.
pub const CURRENCY: &str = "CNY";

/// Minor units per major unit of [`CURRENCY`] (scale 2).
const MINOR_PER_MAJOR: i64 = 100;

/// `1234` → `"12.34"`; negative amounts keep their sign (`-5` → `"-0.05"`).
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let per = MINOR_PER_MAJOR as u64;
    format!("{sign}{}.{:02}", abs / per, abs % per)
}

/// Writes `minor` as [`format_minor`] does, into `out` (no allocation).
pub fn write_minor(out: &mut Vec<u8>, minor: i64) {
    use std::io::Write as _;
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let per = MINOR_PER_MAJOR as u64;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{sign}{}.{:02}", abs / per, abs % per);
}

/// `"12.34"` → `1234`. Refuses more than two decimals' worth of precision.
pub fn parse_minor(text: &str) -> anyhow::Result<i64> {
    if let Some(minor) = parse_plain_minor(text) {
        return Ok(minor);
    }
    let value = Decimal::from_str(text.trim()).with_context(|| format!("amount {text:?}"))?;
    let minor = value * Decimal::from(MINOR_PER_MAJOR);
    if minor.fract() != Decimal::ZERO {
        bail!("amount {text:?} is not a whole number of cents");
    }
    minor
        .to_i64()
        .with_context(|| format!("amount {text:?} out of range"))
}

/// The common case without a decimal parser: optional `-`, 1–15 digits, `.`,
/// exactly two digits (what the API writes). `None` for anything else, which
/// [`parse_minor`] then reads the general way (with the same result for these).
fn parse_plain_minor(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (major, cents) = digits.split_once('.')?;
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !(1..=15).contains(&major.len())
        || cents.len() != 2
        || !all_digits(major)
        || !all_digits(cents)
    {
        return None;
    }
    let minor = major.parse::<i64>().ok()? * MINOR_PER_MAJOR + cents.parse::<i64>().ok()?;
    Some(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_round_trip() {
        for (minor, text) in [
            (1, "0.01"),
            (1234, "12.34"),
            (100_000, "1000.00"),
            (0, "0.00"),
            (-5, "-0.05"),
        ] {
            assert_eq!(format_minor(minor), text);
            assert_eq!(parse_minor(text).unwrap(), minor);
        }
        assert_eq!(parse_minor("7").unwrap(), 700);
        assert_eq!(parse_minor("7.5").unwrap(), 750);
        assert!(parse_minor("0.001").is_err());
        assert!(parse_minor("abc").is_err());
    }

    #[test]
    fn the_fast_paths_agree_with_the_general_ones() {
        for minor in (-1_050..=1_050).chain([i64::MAX / 1000, 9_999_999_999_999_999]) {
            let mut out = Vec::new();
            write_minor(&mut out, minor);
            assert_eq!(out, format_minor(minor).into_bytes());
        }
        for text in [
            "0.00",
            "0.01",
            "12.34",
            "-0.05",
            "-12.30",
            "999999999999999.99",
            "007.10",
            "1.2",
            "1.234",
            "1.230",
            ".50",
            "1.",
            "+1.00",
            "- 1.00",
            " 1.00",
            "1.0a",
            "1,00",
            "1e2",
            "-",
            "",
        ] {
            let general = Decimal::from_str(text.trim())
                .ok()
                .map(|v| v * Decimal::from(MINOR_PER_MAJOR))
                .filter(|m| m.fract() == Decimal::ZERO)
                .and_then(|m| m.to_i64());
            if let Some(fast) = parse_plain_minor(text) {
                assert_eq!(Some(fast), general, "{text:?}");
            }
            assert_eq!(parse_minor(text).ok(), general, "{text:?}");
        }
    }
}
