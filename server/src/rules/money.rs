//! Exact money: CUR doubles become decimals with ten places once, sums are exact, and
//! rounding to nanos (google.type.Money) happens once, at the edge, half-even.

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places kept for every amount (CUR costs carry up to ten).
pub const SCALE: u32 = 10;

/// An exact amount of money in units of 1e-10 of its currency (the CUR's ten places).
/// Sums of amounts are exact integer sums; rounding to a caller's nanos happens once, in
/// [`Amount::units_and_nanos`]. The currency travels beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i128);

impl Amount {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// The amount of `scaled` units of 1e-10.
    pub const fn from_scaled(scaled: i128) -> Self {
        Self(scaled)
    }

    /// The amount in units of 1e-10.
    pub const fn scaled(self) -> i128 {
        self.0
    }

    /// The exact decimal.
    pub fn to_decimal(self) -> Decimal {
        to_decimal(self.0)
    }

    /// A plain decimal string with ten places, e.g. `-0.5000000000`.
    pub fn exact_string(self) -> String {
        exact_string(self.0)
    }

    /// Whole units and nanos (same sign), rounded half-even to nine places.
    pub fn units_and_nanos(self) -> (i64, i32) {
        units_and_nanos(self.0)
    }

    /// The amount per million of `tokens`, rounded half-even to ten places; `None`
    /// without tokens.
    pub fn per_million_tokens(self, tokens: i64) -> Option<Self> {
        per_million_tokens(self.0, tokens).map(Self)
    }
}

impl std::ops::Add for Amount {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self(self.0 + other.0)
    }
}

impl std::ops::AddAssign for Amount {
    fn add_assign(&mut self, other: Self) {
        self.0 += other.0;
    }
}

impl std::ops::Sub for Amount {
    type Output = Self;
    fn sub(self, other: Self) -> Self {
        Self(self.0 - other.0)
    }
}

impl std::iter::Sum for Amount {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        Self(iter.map(|a| a.0).sum())
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.exact_string())
    }
}

/// An amount in units of 1e-16: a cache saving, whose per-token prices carry six more
/// places than costs (see [`crate::layers::rates`]), so that savings of any grouping add
/// up exactly; [`FineAmount::rounded`] brings it to ten places once, at the edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FineAmount(i128);

impl FineAmount {
    /// The amount of `units` units of 1e-16.
    pub const fn from_units(units: i128) -> Self {
        Self(units)
    }

    /// The amount in units of 1e-16.
    pub const fn units(self) -> i128 {
        self.0
    }

    /// The amount at ten places, rounded half-even.
    pub fn rounded(self) -> Amount {
        Amount(from_micro_units(self.0))
    }
}

impl std::ops::AddAssign for FineAmount {
    fn add_assign(&mut self, other: Self) {
        self.0 += other.0;
    }
}

/// Converts a CUR cost (a double) to an exact amount in units of 1e-10.
///
/// The double is read as the shortest decimal that round-trips to it (what was written
/// into the file), then rounded half-even to ten places. NULL costs count as zero.
/// Non-finite values cannot be money and also count as zero. This runs once per line
/// item and metric on load, so the common case avoids allocating: the shortest digits
/// come from `ryu` and are scaled as integers when they are unique (at most 15
/// significant digits, which covers amounts with ten decimals below 100,000).
pub fn amount_from_f64(value: Option<f64>) -> i128 {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return 0;
    };
    if let Some(units) = ten_places(v) {
        return units;
    }
    let mut buffer = ryu::Buffer::new();
    scaled_from_shortest(buffer.format_finite(v)).unwrap_or_else(|| amount_from_text(v))
}

/// The amount of `v` when it is the double nearest a decimal with at most ten places,
/// found without formatting: `r = round(v * 1e10)`, kept when `r / 1e10 == v`.
///
/// Below 2^17 a double's rounding interval is narrower than 1e-10, so at most one
/// decimal with ten places falls in it; when `r / 1e10` (a correctly rounded division
/// of exact values) gives back `v`, that decimal is `r * 1e-10`, and it is also the
/// shortest decimal of `v` (any other would have more digits). Other values take the
/// formatting path.
fn ten_places(v: f64) -> Option<i128> {
    if v.abs() >= 131_072.0 {
        return None;
    }
    let r = (v * 1e10).round();
    (r / 1e10 == v).then_some(r as i128)
}

/// The general path: the shortest decimal through `rust_decimal`.
fn amount_from_text(v: f64) -> i128 {
    let text = format!("{v}");
    let decimal = text
        .parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(&format!("{v:e}")))
        .unwrap_or(Decimal::ZERO);
    to_scaled(decimal)
}

/// `[-]digits[.digits][e[-]digits]` as units of 1e-10, rounded half-even; `None` when
/// the text is not of that shape or the amount is too large for the integer path.
fn scaled_from_shortest(text: &str) -> Option<i128> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // Up to 15 significant digits the shortest round-trip decimal is unique; with 16 or
    // 17, formatters may pick different ones, so those take the path that reads what
    // Rust's own formatting prints (as the DuckDB cross-check does with its own).
    let significant = int
        .bytes()
        .chain(frac.bytes())
        .skip_while(|b| *b == b'0')
        .count();
    if significant > 15 {
        return None;
    }
    let mut digits: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        digits = digits * 10 + i128::from(b - b'0');
    }
    let shift = exponent - frac.len() as i32 + SCALE as i32;
    let magnitude = if shift >= 0 {
        digits.checked_mul(10i128.checked_pow(shift as u32)?)?
    } else if -shift > 36 {
        0
    } else {
        let divisor = 10i128.pow((-shift) as u32);
        let (q, r) = (digits / divisor, digits % divisor);
        let half = divisor / 2;
        if r > half || (r == half && q % 2 == 1) {
            q + 1
        } else {
            q
        }
    };
    if magnitude > 10i128.pow(30) {
        return None;
    }
    Some(if negative { -magnitude } else { magnitude })
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

/// An amount in units of 1e-16 (a cache saving, see [`crate::layers::rates`]) in units
/// of 1e-10, rounded half-even.
pub fn from_micro_units(units: i128) -> i128 {
    const STEP: i128 = 1_000_000;
    let (q, r) = (units.div_euclid(STEP), units.rem_euclid(STEP));
    match (2 * r).cmp(&STEP) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
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
    fn amounts_add_exactly_and_round_once() {
        let tenth = Amount::from_scaled(1_000_000_000);
        let sum: Amount = std::iter::repeat_n(tenth, 10).sum();
        assert_eq!(sum.exact_string(), "1.0000000000");
        assert_eq!((sum - tenth).to_string(), "0.9000000000");
        assert_eq!(Amount::from_scaled(15).units_and_nanos(), (0, 2));
        assert_eq!(
            FineAmount::from_units(2_500_000).rounded(),
            Amount::from_scaled(2)
        );
        assert_eq!(
            Amount::from_scaled(30_000_000_000).per_million_tokens(1_500_000),
            Some(Amount::from_scaled(20_000_000_000))
        );
        assert_eq!(tenth.per_million_tokens(0), None);
    }

    #[test]
    fn micro_units_round_half_even() {
        assert_eq!(from_micro_units(27_000_000_000_000_000), 27_000_000_000);
        assert_eq!(from_micro_units(1_499_999), 1);
        assert_eq!(from_micro_units(1_500_000), 2);
        assert_eq!(from_micro_units(2_500_000), 2);
        assert_eq!(from_micro_units(-2_500_000), -2);
        assert_eq!(from_micro_units(-1_500_001), -2);
        assert_eq!(from_micro_units(-500_000), 0);
    }

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

    #[test]
    fn the_integer_path_agrees_with_the_decimal_path() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(11);
        let mut values = vec![
            0.0,
            -0.0,
            1.8,
            0.05,
            1e-10,
            5e-11,
            1.5e-10,
            2.5e-10,
            -2.5e-10,
            1e-7,
            1.2345e-5,
            123_456_789.012_345_68,
            1e15,
            1e16,
            1.5e17,
            1e20,
            1e25,
            1e30,
            5e-324,
            -3.3e-3,
            0.1 + 0.2,
            922_337_203.685_477_6,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        for _ in 0..200_000 {
            let units: i64 = rng.random_range(-10_000_000_000_000..10_000_000_000_000);
            values.push(units as f64 / 1e10);
            values.push(rng.random::<f64>() * 10f64.powi(rng.random_range(-14..12)));
            values.push(f64::from_bits(rng.random::<u64>()));
        }
        // rust_decimal holds 28 digits, so the decimal path is only exact below 1e18
        // at ten places; larger amounts are refused on load anyway (beyond i64 units).
        for v in values
            .into_iter()
            .filter(|v| v.is_finite() && v.abs() < 1e17)
        {
            assert_eq!(amount_from_f64(Some(v)), amount_from_text(v), "{v:e}");
        }
    }
}
