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

/// `"12.34"` → `1234`. Refuses more than two decimals' worth of precision.
pub fn parse_minor(text: &str) -> anyhow::Result<i64> {
    let value = Decimal::from_str(text.trim()).with_context(|| format!("amount {text:?}"))?;
    let minor = value * Decimal::from(MINOR_PER_MAJOR);
    if minor.fract() != Decimal::ZERO {
        bail!("amount {text:?} is not a whole number of cents");
    }
    minor
        .to_i64()
        .with_context(|| format!("amount {text:?} out of range"))
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
}
