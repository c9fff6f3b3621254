//! [`Money`]: an exact amount in one currency.
//!
//! The wire `Money` carries the amount twice: `exact`, the decimal sum to ten places
//! that reconciles, and `units`/`nanos`, rounded once (half-even) for display. This
//! type reads `exact` when the server sent it and falls back to `units`/`nanos`, so
//! sums over rows match the server's totals to the last place.

use rust_decimal::prelude::ToPrimitive as _;
use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;

use crate::{Error, proto};

/// Decimal places of `Money.exact` on the wire.
const EXACT_SCALE: u32 = 10;
/// Decimal places of `units` + `nanos`.
const NANOS_SCALE: u32 = 9;
const NANOS_PER_UNIT: i32 = 1_000_000_000;

/// An exact amount of money in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    /// ISO 4217 code, e.g. `USD`.
    pub currency_code: String,
    /// The exact amount.
    pub amount: Decimal,
}

impl Money {
    /// An amount in a currency.
    pub fn new(currency_code: impl Into<String>, amount: Decimal) -> Self {
        Money {
            currency_code: currency_code.into(),
            amount,
        }
    }

    /// The wire form: `exact` holds the full decimal, `units`/`nanos` the amount rounded
    /// half-even to nine places (both with the sign of the amount).
    ///
    /// Amounts beyond the range of `int64` units (about 9.2e18) saturate `units` and
    /// `nanos` at their extremes; `exact` still carries the true value.
    pub fn to_proto(&self) -> proto::Money {
        let rounded = self
            .amount
            .round_dp_with_strategy(NANOS_SCALE, RoundingStrategy::MidpointNearestEven);
        let whole = rounded.trunc();
        // `rounded - whole` is below one in magnitude with at most nine places, so the
        // product is a whole number of nanos that fits an i32.
        let nanos = ((rounded - whole) * Decimal::from(NANOS_PER_UNIT)).to_i32();
        let (units, nanos) = match (whole.to_i64(), nanos) {
            (Some(units), Some(nanos)) => (units, nanos),
            _ if rounded.is_sign_negative() => (i64::MIN, -(NANOS_PER_UNIT - 1)),
            _ => (i64::MAX, NANOS_PER_UNIT - 1),
        };
        proto::Money {
            currency_code: self.currency_code.clone(),
            units,
            nanos,
            exact: self.amount.to_string(),
        }
    }
}

impl TryFrom<&proto::Money> for Money {
    type Error = Error;

    /// Reads `exact` when it is non-empty, otherwise `units` and `nanos`.
    fn try_from(money: &proto::Money) -> Result<Self, Error> {
        let amount = if money.exact.is_empty() {
            from_units_nanos(money.units, money.nanos)?
        } else {
            parse_exact(&money.exact)?
        };
        Ok(Money::new(money.currency_code.clone(), amount))
    }
}

impl TryFrom<proto::Money> for Money {
    type Error = Error;

    fn try_from(money: proto::Money) -> Result<Self, Error> {
        Money::try_from(&money)
    }
}

impl From<&Money> for proto::Money {
    fn from(money: &Money) -> Self {
        money.to_proto()
    }
}

/// `12.3456789012 USD`; the amount alone when the currency is empty.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.currency_code.is_empty() {
            write!(f, "{}", self.amount)
        } else {
            write!(f, "{} {}", self.amount, self.currency_code)
        }
    }
}

fn parse_exact(exact: &str) -> Result<Decimal, Error> {
    let amount = Decimal::from_str_exact(exact)
        .map_err(|e| Error::invalid_argument(format!("invalid exact amount {exact:?}: {e}")))?;
    if amount.scale() <= EXACT_SCALE {
        return Ok(amount);
    }
    // Trailing zeros beyond the tenth place lose nothing.
    let normalized = amount.normalize();
    if normalized.scale() <= EXACT_SCALE {
        Ok(normalized)
    } else {
        Err(Error::invalid_argument(format!(
            "exact amount {exact:?} has more than {EXACT_SCALE} decimal places"
        )))
    }
}

fn from_units_nanos(units: i64, nanos: i32) -> Result<Decimal, Error> {
    if nanos <= -NANOS_PER_UNIT || nanos >= NANOS_PER_UNIT {
        return Err(Error::invalid_argument(format!(
            "nanos {nanos} out of range (-999999999..=999999999)"
        )));
    }
    if (units > 0 && nanos < 0) || (units < 0 && nanos > 0) {
        return Err(Error::invalid_argument(format!(
            "units {units} and nanos {nanos} have different signs"
        )));
    }
    let total = i128::from(units) * i128::from(NANOS_PER_UNIT) + i128::from(nanos);
    Decimal::try_from_i128_with_scale(total, NANOS_SCALE)
        .map_err(|e| Error::invalid_argument(format!("amount {units}.{nanos} out of range: {e}")))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    fn wire(units: i64, nanos: i32, exact: &str) -> proto::Money {
        proto::Money {
            currency_code: "USD".to_owned(),
            units,
            nanos,
            exact: exact.to_owned(),
        }
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).expect("test decimal")
    }

    #[test]
    fn parses_exact_first() {
        // units/nanos disagree on purpose: exact wins.
        let money = Money::try_from(&wire(1, 0, "12.3456789012")).expect("valid");
        assert_eq!(money.amount, dec("12.3456789012"));
        assert_eq!(money.currency_code, "USD");
        assert_eq!(money.to_string(), "12.3456789012 USD");
    }

    #[test]
    fn falls_back_to_units_and_nanos() {
        let money = Money::try_from(&wire(12, 345_678_901, "")).expect("valid");
        assert_eq!(money.amount, dec("12.345678901"));
        assert_eq!(money.to_string(), "12.345678901 USD");
    }

    #[test]
    fn negative_units_and_nanos_share_the_sign() {
        let money = Money::try_from(&wire(-1, -500_000_000, "")).expect("valid");
        assert_eq!(money.amount, dec("-1.5"));
        let money = Money::try_from(&wire(0, -5, "")).expect("valid");
        assert_eq!(money.amount, dec("-0.000000005"));

        let proto = Money::new("USD", dec("-3.2500000001")).to_proto();
        assert_eq!((proto.units, proto.nanos), (-3, -250_000_000));
        assert_eq!(proto.exact, "-3.2500000001");
        let proto = Money::new("USD", dec("-0.25")).to_proto();
        assert_eq!((proto.units, proto.nanos), (0, -250_000_000));
    }

    #[test]
    fn rejects_mixed_signs_and_bad_nanos() {
        assert!(Money::try_from(&wire(1, -1, "")).is_err());
        assert!(Money::try_from(&wire(-1, 1, "")).is_err());
        assert!(Money::try_from(&wire(0, 1_000_000_000, "")).is_err());
        assert!(Money::try_from(&wire(0, -1_000_000_000, "")).is_err());
    }

    #[test]
    fn rejects_bad_exact() {
        assert!(Money::try_from(&wire(0, 0, "twelve")).is_err());
        assert!(Money::try_from(&wire(0, 0, "1.00000000001")).is_err());
        // Trailing zeros past the tenth place are harmless.
        let money = Money::try_from(&wire(0, 0, "1.500000000000")).expect("valid");
        assert_eq!(money.amount, dec("1.5"));
    }

    #[test]
    fn rounds_half_even_at_the_ninth_place() {
        let cases = [
            ("1.2345678905", 1, 234_567_890), // tie, 0 is even: down
            ("1.2345678915", 1, 234_567_892), // tie, 1 is odd: up
            ("1.2345678906", 1, 234_567_891), // above the tie: up
            ("0.0000000005", 0, 0),           // tie at zero: down
            ("-0.0000000015", 0, -2),         // negative tie: away to even
            ("-2.9999999995", -3, 0),         // carries into units
            ("0.9999999999", 1, 0),
        ];
        for (exact, units, nanos) in cases {
            let proto = Money::new("USD", dec(exact)).to_proto();
            assert_eq!((proto.units, proto.nanos), (units, nanos), "{exact}");
            assert_eq!(proto.exact, exact);
        }
    }

    #[test]
    fn round_trips() {
        for exact in [
            "0",
            "12.3456789012",
            "-7.0000000001",
            "1234567890.5000000000",
        ] {
            let money = Money::new("EUR", dec(exact));
            let back = Money::try_from(&money.to_proto()).expect("valid");
            assert_eq!(back, money);
            assert_eq!(back.amount.to_string(), exact);
        }
        // Without `exact`, units + nanos come back as the rounded amount.
        let mut proto = Money::new("USD", dec("1.2345678915")).to_proto();
        proto.exact.clear();
        let back = Money::try_from(&proto).expect("valid");
        assert_eq!(back.amount, dec("1.234567892"));
    }

    #[test]
    fn saturates_huge_amounts() {
        let proto = Money::new("USD", Decimal::MAX).to_proto();
        assert_eq!((proto.units, proto.nanos), (i64::MAX, 999_999_999));
        let proto = Money::new("USD", Decimal::MIN).to_proto();
        assert_eq!((proto.units, proto.nanos), (i64::MIN, -999_999_999));
        assert_eq!(proto.exact, Decimal::MIN.to_string());
    }

    #[test]
    fn displays_without_currency() {
        assert_eq!(Money::new("", dec("1.50")).to_string(), "1.50");
    }
}
