//! Exact money: amounts read from doubles, and the conversions at the edge.

use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::rules::money::{
    SCALE, amount_from_f64, exact_string, from_micro_units, to_decimal, to_scaled, units_and_nanos,
};

/// Scaled amounts (units of 1e-10) up to a thousand billion dollars either way.
fn scaled() -> impl Strategy<Value = i128> {
    -(10i128.pow(22))..10i128.pow(22)
}

proptest! {
    #[test]
    fn a_double_reads_as_its_shortest_decimal_rounded_to_ten_places(
        v in prop_oneof![
            -1e12f64..1e12,
            -1.0f64..1.0,
            (-100_000i64..100_000).prop_map(|c| c as f64 / 100.0),
        ]
    ) {
        // Smaller magnitudes need more than Decimal's 28 places to write down.
        prop_assume!(v == 0.0 || v.abs() >= 1e-11);
        // The decimal a person reads in the file (the shortest text that gives the same
        // double), rounded half-even to the ten places amounts keep.
        let text = format!("{v:e}");
        let expected = Decimal::from_scientific(&text)
            .map(|d| d.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointNearestEven))
            .expect("a short exponent");
        prop_assert_eq!(to_decimal(amount_from_f64(Some(v))), expected, "{}", text);
    }

    #[test]
    fn missing_and_non_finite_amounts_are_zero(v in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)]) {
        prop_assert_eq!(amount_from_f64(Some(v)), 0);
        prop_assert_eq!(amount_from_f64(None), 0);
    }

    #[test]
    fn decimal_text_and_back_is_exact(a in scaled()) {
        prop_assert_eq!(to_scaled(to_decimal(a)), a);
        let text = exact_string(a);
        prop_assert_eq!(to_scaled(Decimal::from_str(&text).expect("decimal text")), a);
    }

    #[test]
    fn units_and_nanos_round_half_even_with_one_sign(a in scaled()) {
        let (units, nanos) = units_and_nanos(a);
        prop_assert!(nanos.abs() < 1_000_000_000);
        prop_assert!(units == 0 || nanos == 0 || (units > 0) == (nanos > 0));
        // Ten places to nine: divide by ten, half to even.
        let (q, r) = (a.div_euclid(10), a.rem_euclid(10));
        let nines = if r > 5 || (r == 5 && q % 2 != 0) { q + 1 } else { q };
        prop_assert_eq!(i128::from(units) * 1_000_000_000 + i128::from(nanos), nines);
    }

    #[test]
    fn micro_units_round_half_even(u in -(10i128.pow(27))..10i128.pow(27)) {
        let expected = Decimal::from_i128_with_scale(u, 6)
            .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
            .mantissa();
        prop_assert_eq!(from_micro_units(u), expected);
    }
}
