//! Exact money: CUR doubles become decimals with ten places once, sums are exact, and
//! rounding to nanos (google.type.Money) happens once, at the edge, half-even.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places kept for every amount (CUR costs carry up to ten).
pub const SCALE: u32 = 10;

/// Converts a CUR cost (a double) to an exact amount in units of 1e-10.
///
/// The double is read as the shortest decimal that round-trips to it (what was written
/// into the file), then rounded half-even to ten places. NULL costs count as zero.
/// Non-finite values cannot be money and also count as zero.
pub fn amount_from_f64(value: Option<f64>) -> i128 {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return 0;
    };
    let text = format!("{v}");
    let decimal = text
        .parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(&format!("{v:e}")))
        .unwrap_or(Decimal::ZERO);
    to_scaled(decimal)
}

/// The exact decimal of an amount in units of 1e-10.
pub fn to_decimal(scaled: i128) -> Decimal {
    Decimal::from_i128_with_scale(scaled, SCALE)
}

/// An exact decimal as an amount in units of 1e-10 (rounded half-even past ten places).
pub fn to_scaled(decimal: Decimal) -> i128 {
    let mut d = decimal.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointNearestEven);
    d.rescale(SCALE);
    d.mantissa()
}

/// The exact amount as a plain decimal string with ten places, e.g. `-0.5000000000`.
pub fn exact_string(scaled: i128) -> String {
    to_decimal(scaled).to_string()
}

/// Whole units and nanos (same sign), rounded half-even to nine places.
pub fn units_and_nanos(scaled: i128) -> (i64, i32) {
    let rounded =
        to_decimal(scaled).round_dp_with_strategy(9, RoundingStrategy::MidpointNearestEven);
    let mut d = rounded;
    d.rescale(9);
    let nanos_total = d.mantissa();
    let units = nanos_total / 1_000_000_000;
    let nanos = nanos_total % 1_000_000_000;
    (units as i64, nanos as i32)
}

/// Cost per million tokens: `cost / tokens * 1e6`, rounded half-even to ten places.
/// `None` without tokens.
pub fn per_million_tokens(scaled: i128, tokens: i64) -> Option<i128> {
    if tokens <= 0 {
        return None;
    }
    let value = to_decimal(scaled)
        .checked_mul(Decimal::from(1_000_000))?
        .checked_div(Decimal::from(tokens))?;
    Some(to_scaled(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_become_the_decimal_that_was_written() {
        assert_eq!(amount_from_f64(Some(0.1)), 1_000_000_000);
        assert_eq!(amount_from_f64(Some(0.0123456789)), 123_456_789);
        assert_eq!(amount_from_f64(Some(-1.5)), -15_000_000_000);
        assert_eq!(amount_from_f64(Some(12345.6789012345)), 123_456_789_012_345);
        assert_eq!(amount_from_f64(Some(1e-10)), 1);
        assert_eq!(amount_from_f64(Some(3e-11)), 0);
        assert_eq!(amount_from_f64(Some(5e-11)), 0, "half-even");
        assert_eq!(amount_from_f64(Some(1.5e-10)), 2, "half-even");
        assert_eq!(amount_from_f64(None), 0);
        assert_eq!(amount_from_f64(Some(f64::NAN)), 0);
    }

    #[test]
    fn sums_are_exact_where_doubles_are_not() {
        let total: i128 = (0..10).map(|_| amount_from_f64(Some(0.1))).sum();
        assert_eq!(exact_string(total), "1.0000000000");
        assert_ne!((0..10).map(|_| 0.1_f64).sum::<f64>(), 1.0);
    }

    #[test]
    fn nanos_round_half_even_with_the_sign_of_units() {
        assert_eq!(units_and_nanos(123_456_789_015), (12, 345_678_902));
        assert_eq!(units_and_nanos(123_456_789_025), (12, 345_678_902));
        assert_eq!(units_and_nanos(-123_456_789_015), (-12, -345_678_902));
        assert_eq!(units_and_nanos(-5), (0, 0));
        assert_eq!(units_and_nanos(-15), (0, -2));
        assert_eq!(units_and_nanos(0), (0, 0));
        assert_eq!(exact_string(-5_000_000_000), "-0.5000000000");
    }

    #[test]
    fn per_million() {
        assert_eq!(
            per_million_tokens(30_000_000_000, 1_000_000),
            Some(30_000_000_000)
        );
        assert_eq!(
            per_million_tokens(10_000_000_000, 3_000_000),
            Some(3_333_333_333)
        );
        assert_eq!(per_million_tokens(1, 0), None);
    }
}
