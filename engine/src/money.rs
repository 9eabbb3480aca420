//! Money: currencies with their ISO 4217 scale, positive amounts that never carry
//! more decimals than their currency allows, and fee rules.
//!
//! The one rounding rule of the system lives in [`FeeRule::fee`]: a fee is the
//! percentage of the amount rounded **half-up** (away from zero on .5) to the
//! currency's minor unit, and never below the rule's minimum. Amounts themselves
//! are never rounded: `12.345 CNY` is an error, not `12.35`.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// A currency: its ISO 4217 code and the number of decimals of its minor unit.
/// Which currencies exist is configuration (see [`crate::policy::Policy`]); a value
/// of this type is one the configuration accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Currency {
    code: [u8; 3],
    scale: u8,
}

impl Currency {
    /// Builds a currency from an ISO 4217 alphabetic code (three ASCII capitals) and
    /// its scale (0..=8).
    pub fn new(code: &str, scale: u8) -> Result<Self, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !Currency::valid(bytes, scale) {
            return Err(MoneyError::UnknownCurrency(code.to_owned()));
        }
        Ok(Currency {
            code: [bytes[0], bytes[1], bytes[2]],
            scale,
        })
    }

    fn valid(code: &[u8], scale: u8) -> bool {
        code.iter().all(u8::is_ascii_uppercase) && scale <= 8
    }

    /// Whether [`Currency::new`] accepts this value (one a deserializer made
    /// may not be).
    pub fn is_valid(&self) -> bool {
        Currency::valid(&self.code, self.scale)
    }

    /// The code's three bytes, as stored (ASCII capitals when valid).
    pub fn code_bytes(&self) -> [u8; 3] {
        self.code
    }

    pub fn code(&self) -> &str {
        // unwrap: `new` only accepts ASCII capitals, which are valid UTF-8.
        std::str::from_utf8(&self.code).unwrap()
    }

    pub fn scale(&self) -> u32 {
        u32::from(self.scale)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why an amount or currency was refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown or unsupported currency {0:?}")]
    UnknownCurrency(String),
    #[error("amount {0:?} is not a decimal number")]
    Malformed(String),
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("{currency} allows at most {scale} decimal places")]
    TooManyDecimals { currency: Currency, scale: u32 },
    #[error("amount is too large")]
    TooLarge,
}

/// The largest amount accepted in one operation; far above any limit, it keeps
/// every sum of balances far from `Decimal`'s range.
const AMOUNT_MAX: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0); // 1e15

/// A strictly positive amount of one currency, within that currency's scale.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Amount {
    value: Decimal,
    currency: Currency,
}

impl Amount {
    /// Checks a decimal value against the currency: positive, not too large, and no
    /// more decimals than the scale (trailing zeros beyond it are fine: `1.50` USD).
    pub fn new(value: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if value <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        if value > AMOUNT_MAX {
            return Err(MoneyError::TooLarge);
        }
        let normalized = value.normalize();
        if normalized.scale() > currency.scale() {
            return Err(MoneyError::TooManyDecimals {
                currency,
                scale: currency.scale(),
            });
        }
        let mut value = normalized;
        value.rescale(currency.scale());
        Ok(Amount { value, currency })
    }

    /// Whether this is what [`Amount::new`] makes of its own value and
    /// currency, bit for bit (a deserializer can make an amount that is not).
    pub fn is_canonical(&self) -> bool {
        self.currency.is_valid()
            && Amount::new(self.value, self.currency)
                .is_ok_and(|a| a.value.serialize() == self.value.serialize())
    }

    /// Parses a decimal string such as `"12.50"` (no exponent, no sign, no spaces).
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let well_formed = !text.is_empty()
            && text.len() <= 40
            && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && text.bytes().filter(|&b| b == b'.').count() <= 1
            && !text.starts_with('.')
            && !text.ends_with('.');
        if !well_formed {
            return Err(MoneyError::Malformed(text.chars().take(40).collect()));
        }
        let value: Decimal = text
            .parse()
            .map_err(|_| MoneyError::Malformed(text.to_owned()))?;
        Amount::new(value, currency)
    }

    pub fn value(&self) -> Decimal {
        self.value
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value, self.currency)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value)
    }
}

/// Formats a non-negative quantity of a currency with exactly its scale (`"0.00"`).
pub fn format_money(value: Decimal, currency: Currency) -> String {
    let mut v = value;
    v.rescale(currency.scale());
    v.to_string()
}

/// A fee: a percentage of the amount, with a minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRule {
    /// Percent of the amount, e.g. `2.5` for 2.5 %.
    pub percent: Decimal,
    /// The smallest fee charged, in the currency's major unit (`1.00`).
    #[serde(default)]
    pub min: Decimal,
}

impl FeeRule {
    pub const FREE: FeeRule = FeeRule {
        percent: Decimal::ZERO,
        min: Decimal::ZERO,
    };

    /// The fee for `amount`: `percent` of it rounded half-up to the currency's minor
    /// unit, at least `min`, and at least one minor unit when `percent` is not
    /// zero (a fee that rounds to nothing would let many tiny operations pass
    /// free). This is the only place the system rounds money.
    pub fn fee(&self, amount: Amount) -> Decimal {
        let scale = amount.currency().scale();
        let raw = amount.value() * self.percent / Decimal::ONE_HUNDRED;
        let mut fee = raw
            .round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
            .max(self.min);
        if self.percent > Decimal::ZERO && amount.value() > Decimal::ZERO {
            fee = fee.max(Decimal::new(1, scale));
        }
        fee.rescale(scale);
        fee
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn cny() -> Currency {
        Currency::new("CNY", 2).unwrap()
    }

    #[test]
    fn amounts_within_scale_are_accepted_and_rescaled() {
        let a = Amount::parse("12.5", cny()).unwrap();
        assert_eq!(a.to_string(), "12.50");
        assert_eq!(Amount::parse("12.50", cny()).unwrap(), a);
        assert_eq!(
            Amount::parse("12.500", cny()).unwrap(),
            a,
            "trailing zeros are not extra precision"
        );
        let jpy = Currency::new("JPY", 0).unwrap();
        assert_eq!(Amount::parse("100", jpy).unwrap().to_string(), "100");
    }

    #[test]
    fn amounts_are_never_rounded_silently() {
        assert!(matches!(
            Amount::parse("12.345", cny()),
            Err(MoneyError::TooManyDecimals { scale: 2, .. })
        ));
        let jpy = Currency::new("JPY", 0).unwrap();
        assert!(Amount::parse("1.5", jpy).is_err());
    }

    #[test]
    fn malformed_zero_and_negative_amounts_are_refused() {
        for bad in [
            "", "abc", "-1", "+1", "1e3", "1.2.3", ".5", "5.", " 5", "0", "0.00",
        ] {
            assert!(Amount::parse(bad, cny()).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Amount::parse("0", cny()), Err(MoneyError::NotPositive));
        assert_eq!(
            Amount::parse("10000000000000000", cny()),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn currency_codes_are_checked() {
        assert!(Currency::new("cny", 2).is_err());
        assert!(Currency::new("CNYY", 2).is_err());
        assert_eq!(cny().code(), "CNY");
    }

    #[test]
    fn fees_round_half_up_to_the_minor_unit() {
        let card = FeeRule {
            percent: dec!(2.5),
            min: dec!(0),
        };
        // 2.5% of 10.10 = 0.2525 -> 0.25; of 10.30 = 0.2575 -> 0.26
        assert_eq!(card.fee(Amount::parse("10.10", cny()).unwrap()), dec!(0.25));
        assert_eq!(card.fee(Amount::parse("10.30", cny()).unwrap()), dec!(0.26));
        // exactly half a minor unit rounds up: 2.5% of 0.20 = 0.005 -> 0.01
        assert_eq!(card.fee(Amount::parse("0.20", cny()).unwrap()), dec!(0.01));
    }

    #[test]
    fn a_non_zero_rate_charges_at_least_one_minor_unit() {
        let card = FeeRule {
            percent: dec!(2.5),
            min: dec!(0),
        };
        // 2.5% of 0.02 = 0.0005 would round to 0.00: one fen instead.
        assert_eq!(card.fee(Amount::parse("0.02", cny()).unwrap()), dec!(0.01));
        assert_eq!(card.fee(Amount::parse("0.01", cny()).unwrap()), dec!(0.01));
        let jpy = Currency::new("JPY", 0).unwrap();
        assert_eq!(card.fee(Amount::parse("1", jpy).unwrap()), dec!(1));
        // A zero rate stays free.
        assert_eq!(
            FeeRule::FREE.fee(Amount::parse("0.02", cny()).unwrap()),
            dec!(0)
        );
    }

    #[test]
    fn fees_have_a_minimum() {
        let bank = FeeRule {
            percent: dec!(0.1),
            min: dec!(1.00),
        };
        assert_eq!(bank.fee(Amount::parse("100", cny()).unwrap()), dec!(1.00));
        assert_eq!(bank.fee(Amount::parse("5000", cny()).unwrap()), dec!(5.00));
        assert_eq!(
            FeeRule::FREE.fee(Amount::parse("5000", cny()).unwrap()),
            dec!(0)
        );
        assert_eq!(format_money(dec!(1), cny()), "1.00");
    }
}
