//! Spend anomalies: days on which a group's spend departs from its own trailing
//! baseline, and groups that start spending.
//!
//! The daily spend per group comes from one plan of the planner ([`series_spec`]: the
//! examined range plus the baseline window before it, daily buckets, one dimension, the
//! request's filter and the caller's scope). The window statistics are computed here, in
//! Rust, over that series: a median and a median absolute deviation over a trailing
//! window of zero-filled days is a sort of at most 90 values per examined day, which
//! DataFusion cannot express exactly (its `median` truncates the mean of two middle
//! decimals to the column's scale, and a window frame cannot add the days without rows
//! as zeros), and the series is already as small as the answer can be (one row per
//! group and day).
//!
//! Amounts are integers of 1e-10, the data's scale. A median of an even number of days
//! is the mean of the two middle ones, which can fall on half of 1e-10, and the median
//! absolute deviation on a quarter: both are computed exactly and then rounded
//! half-even to ten places (what `Money` carries). Every test is made on those reported
//! values, so that an answer can be checked from what it shows: `excess = observed -
//! baseline` exactly, `factor = observed / baseline`, `z = excess / (1.4826 * MAD)`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{
    answer::{Answer, Key},
    spec::{Granularity, QuerySpec},
};
use crate::error::Error;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// The consistency constant that makes the MAD estimate a normal distribution's
/// standard deviation: `1 / Φ⁻¹(3/4)`.
pub const MAD_SCALE: f64 = 1.4826;

/// Baseline days when the request leaves them unset, and their bounds.
pub const DEFAULT_BASELINE_DAYS: u32 = 14;
/// Fewest baseline days: fewer make a median of one or two values.
pub const MIN_BASELINE_DAYS: u32 = 3;
/// Most baseline days: a quarter of a year.
pub const MAX_BASELINE_DAYS: u32 = 90;
/// Fewest counted days a spike is judged against (or all `baseline_days` when fewer): a
/// shorter history does not hold a week's rhythm (a Monday after a group's first
/// weekend is not a spike).
pub const MIN_COUNTED_DAYS: u32 = 7;

/// An amount in quarters of 1e-10 rounded half-even to units of 1e-10.
fn round_quarters(q: i128) -> i128 {
    let (units, rest) = (q.div_euclid(4), q.rem_euclid(4));
    if rest > 2 || (rest == 2 && units % 2 != 0) {
        units + 1
    } else {
        units
    }
}

/// When a day counts as an anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Days before an examined day that form its baseline window.
    pub baseline_days: u32,
    /// Spend must be at least this many times the baseline (at least 1).
    pub min_factor: Decimal,
    /// The robust z-score must be at least this (at least 0).
    pub min_robust_z: f64,
    /// Spend must exceed the baseline by at least this, in units of 1e-10 (at least 0).
    pub min_excess: i128,
}

/// Why a day is an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// Spend departs from the group's baseline.
    Spike,
    /// No line items in the whole window before the day.
    New,
}

/// One group's anomalous day.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// The group's key (`None`: UNATTRIBUTED, UNTAGGED).
    pub key: Option<Key>,
    /// Currency of every amount.
    pub currency: String,
    /// The day, in days since the epoch.
    pub day: i64,
    /// Spike or new.
    pub kind: AnomalyKind,
    /// Spend on the day, in units of 1e-10.
    pub observed: i128,
    /// Line items of the day.
    pub line_items: i64,
    /// Median of the counted window days, half-even to units of 1e-10 (zero for NEW).
    pub baseline: i128,
    /// Median absolute deviation from the median over the same days, half-even to
    /// units of 1e-10.
    pub mad: i128,
    /// `(observed - baseline) / (MAD_SCALE * mad)`, infinite when `mad` is zero; `None`
    /// for NEW.
    pub robust_z: Option<f64>,
    /// `observed / baseline` when the baseline is positive (not NEW).
    pub factor: Option<f64>,
    /// Window days counted (from the group's first day with line items in the window).
    pub counted_days: u32,
}

impl Anomaly {
    /// `observed - baseline`, in units of 1e-10.
    pub fn excess(&self) -> i128 {
        self.observed - self.baseline
    }
}

/// The spec of the daily series behind an anomaly request: `spec`'s range widened by
/// the baseline window before it, in daily buckets. `spec` holds the one dimension,
/// filter, metric and scope.
pub fn series_spec(spec: &QuerySpec, baseline_days: u32) -> Result<QuerySpec, Error> {
    let start = spec
        .start
        .checked_sub_signed(chrono::Duration::days(i64::from(baseline_days)))
        .ok_or_else(|| {
            Error::invalid(
                "time_range.start",
                "is too early to look back the baseline days before it",
            )
        })?;
    Ok(QuerySpec {
        start,
        granularity: Granularity::Daily,
        allocation: false,
        efficiency: false,
        ..spec.clone()
    })
}

/// The day (since the epoch) of a time in µs.
pub fn day_of(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}

/// Daily spend and line items of one group, by day since the epoch.
type Series = BTreeMap<i64, (i128, i64)>;

/// What [`find`] found: the anomalies, and the groups it could not judge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// Anomalies ordered by excess descending, then group, currency and day.
    pub anomalies: Vec<Anomaly>,
    /// Groups (and currencies) with an examined day whose window holds none of their
    /// line items and starts before the first day of data: no baseline yet, so neither
    /// NEW nor a spike.
    pub without_baseline: usize,
}

/// The anomalies of the days `[first_day, end_day)` in a daily series (the answer of
/// [`series_spec`]), ordered by excess descending, then group, currency and day.
/// `data_first_day` is the first day with any line item in the data (not only in the
/// series): a window starting before it is not covered by data.
///
/// Only days on which a group has line items are examined. Each examined day `d` is
/// compared with the window `[d - baseline_days, d)`: counted from the group's first
/// day with line items in it, days without line items count as zero spend.
/// - A group with no line items in the window is NEW on `d` when the data covers the
///   window (`d - baseline_days >= data_first_day`) and it spends more than zero and at
///   least `min_excess`; when the window starts before the data, the group has no
///   baseline yet (counted in [`Found::without_baseline`]).
/// - Otherwise `d` is a SPIKE when at least [`MIN_COUNTED_DAYS`] days are counted (all
///   of the window when it is shorter), the baseline (the window's median, to ten
///   places) is positive, spend exceeds it by more than zero and at least `min_excess`, is at least
///   `min_factor` times it, and its robust z-score is at least `min_robust_z`. A zero
///   median means the group spent on half or fewer of its counted days (a weekly job, an
///   occasional user): such days are not compared, as every run would look infinite.
pub async fn find(
    series: &Answer,
    first_day: i64,
    end_day: i64,
    data_first_day: i64,
    thresholds: &Thresholds,
) -> Found {
    let mut groups: BTreeMap<(Option<Key>, String), Series> = BTreeMap::new();
    for row in &series.rows {
        let (Some(bucket), Some(key)) = (row.bucket, row.keys.first()) else {
            continue;
        };
        let day = groups
            .entry((key.clone(), row.currency.clone()))
            .or_default()
            .entry(day_of(bucket))
            .or_default();
        day.0 += row.cost.scaled();
        day.1 += row.line_items;
    }
    let mut found = Vec::new();
    let mut without_baseline = 0;
    for (i, ((key, currency), days)) in groups.iter().enumerate() {
        if i % 256 == 255 {
            // A point where a request past its deadline can be aborted.
            tokio::task::yield_now().await;
        }
        let mut judged = true;
        for (&day, &(observed, line_items)) in days.range(first_day..end_day) {
            let covered = day - i64::from(thresholds.baseline_days) >= data_first_day;
            let verdict = examine(days, day, observed, covered, thresholds);
            if matches!(verdict, Verdict::NoBaseline) {
                judged = false;
            }
            if let Verdict::Anomaly(kind, stats) = verdict {
                found.push(Anomaly {
                    key: key.clone(),
                    currency: currency.clone(),
                    day,
                    kind,
                    observed,
                    line_items,
                    baseline: stats.median,
                    mad: stats.mad,
                    robust_z: stats.robust_z,
                    factor: stats.factor,
                    counted_days: stats.counted,
                });
            }
        }
        if !judged {
            without_baseline += 1;
        }
    }
    found.sort_by(|a, b| {
        b.excess()
            .cmp(&a.excess())
            .then_with(|| a.key.cmp(&b.key))
            .then_with(|| a.currency.cmp(&b.currency))
            .then_with(|| a.day.cmp(&b.day))
    });
    Found {
        anomalies: found,
        without_baseline,
    }
}

/// What [`examine`] makes of one day.
#[derive(Debug)]
enum Verdict {
    /// Not an anomaly.
    Normal,
    /// No line items in a window that starts before the data: nothing to compare with.
    NoBaseline,
    /// An anomaly of this kind, with its window statistics.
    Anomaly(AnomalyKind, Stats),
}

/// Window statistics of one examined day.
#[derive(Debug, Default)]
struct Stats {
    median: i128,
    mad: i128,
    robust_z: Option<f64>,
    factor: Option<f64>,
    counted: u32,
}

/// Whether `day` (spending `observed`) is an anomaly of the group whose series is
/// `days`, and its window statistics; `covered`: the data covers the whole window.
fn examine(days: &Series, day: i64, observed: i128, covered: bool, t: &Thresholds) -> Verdict {
    let window = days.range(day - i64::from(t.baseline_days)..day);
    let Some((&first, _)) = window.clone().next() else {
        if !covered {
            return Verdict::NoBaseline;
        }
        return if observed > 0 && observed >= t.min_excess {
            Verdict::Anomaly(AnomalyKind::New, Stats::default())
        } else {
            Verdict::Normal
        };
    };
    // Zero-filled from the first day with line items in the window.
    let mut values = vec![0i128; usize::try_from(day - first).unwrap_or(0)];
    for (&d, &(cost, _)) in window {
        if let Some(v) = usize::try_from(d - first)
            .ok()
            .and_then(|i| values.get_mut(i))
        {
            *v = cost;
        }
    }
    let counted = u32::try_from(values.len()).unwrap_or(u32::MAX);
    if counted < t.baseline_days.min(MIN_COUNTED_DAYS) {
        return Verdict::Normal;
    }
    let (median, mad) = median_and_mad(&mut values);
    let (median, mad) = (round_quarters(median), round_quarters(mad));
    let excess = observed - median;
    // A zero (or negative) median: the group spends on half or fewer of its counted
    // days, so any spending day would be infinitely far from it.
    if median <= 0 || excess <= 0 || excess < t.min_excess {
        return Verdict::Normal;
    }
    if !at_least_factor(observed, median, t.min_factor) {
        return Verdict::Normal;
    }
    let robust_z = if mad == 0 {
        f64::INFINITY
    } else {
        excess as f64 / (MAD_SCALE * mad as f64)
    };
    if robust_z < t.min_robust_z {
        return Verdict::Normal;
    }
    Verdict::Anomaly(
        AnomalyKind::Spike,
        Stats {
            median,
            mad,
            robust_z: Some(robust_z),
            factor: Some(observed as f64 / median as f64),
            counted,
        },
    )
}

/// `observed >= factor * median`, exactly: with `factor = m * 10^-s`,
/// `observed * 10^s >= m * median`.
fn at_least_factor(observed: i128, median: i128, factor: Decimal) -> bool {
    let scale = 10i128.checked_pow(factor.scale());
    let lhs = scale.and_then(|s| observed.checked_mul(s));
    let rhs = factor.mantissa().checked_mul(median);
    match (lhs, rhs) {
        (Some(l), Some(r)) => l >= r,
        // Past 1e26 units a day; compared approximately rather than refused.
        _ => {
            let f = f64::try_from(factor).unwrap_or(f64::MAX);
            observed as f64 >= f * median as f64
        }
    }
}

/// The median of `values` (units of 1e-10) and their median absolute deviation from
/// it, both exact in quarters of 1e-10; zero for no values.
fn median_and_mad(values: &mut [i128]) -> (i128, i128) {
    if values.is_empty() {
        return (0, 0);
    }
    for v in values.iter_mut() {
        *v *= 4;
    }
    let median = middle(values);
    for v in values.iter_mut() {
        *v = (*v - median).abs();
    }
    (median, middle(values))
}

/// The median of integers that are all even (quarters of whole units, or their
/// deviations from such a median): the middle value, or the mean of the two middle
/// ones, which is then exact.
fn middle(values: &mut [i128]) -> i128 {
    values.sort_unstable();
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{query::GroupRow, rules::money::Amount};

    const UNIT: i128 = 10_000_000_000;

    fn thresholds() -> Thresholds {
        Thresholds {
            baseline_days: 14,
            min_factor: Decimal::from(3),
            min_robust_z: 3.5,
            min_excess: UNIT,
        }
    }

    /// A one-group series: `(day, whole currency units)`.
    fn series(days: &[(i64, i128)]) -> Answer {
        Answer {
            rows: days
                .iter()
                .map(|&(day, cost)| GroupRow {
                    currency: "USD".into(),
                    bucket: Some(day * DAY_MICROS),
                    keys: vec![Some(Key::Text("alice".into()))],
                    cost: Amount::from_scaled(cost * UNIT),
                    allocated: Amount::ZERO,
                    tokens: Default::default(),
                    line_items: 1,
                    cache_saving: Default::default(),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The anomalies of `[first, end)`, the data starting on day `data`.
    fn found(series: &Answer, first: i64, end: i64, data: i64, t: &Thresholds) -> Found {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(find(series, first, end, data, t)))
            .unwrap_or_default()
    }

    /// The anomalies of `[first, end)`, the data starting on day 0.
    fn run(series: &Answer, first: i64, end: i64, t: &Thresholds) -> Vec<Anomaly> {
        found(series, first, end, 0, t).anomalies
    }

    #[test]
    fn median_and_mad_are_exact_then_half_even() {
        // 1, 2 units: median 1.5 units (6 quarters); deviations 0.5, 0.5 -> MAD 2 quarters.
        assert_eq!(median_and_mad(&mut [1, 2]), (6, 2));
        // 0, 1, 1, 4: median 1; deviations 1, 0, 0, 3 -> 0, 0, 1, 3 -> MAD 0.5 (2 quarters).
        assert_eq!(median_and_mad(&mut [0, 1, 1, 4]), (4, 2));
        // 0, 1, 2, 2: median 1.5; deviations 1.5, 0.5, 0.5, 0.5 -> MAD 0.5.
        assert_eq!(median_and_mad(&mut [2, 0, 2, 1]), (6, 2));
        // 0, 0, 1, 2: median 0.5; deviations 0.5, 0.5, 0.5, 1.5 -> MAD 0.5.
        assert_eq!(median_and_mad(&mut [0, 0, 1, 2]), (2, 2));
        // 0, 1, 3, 6: median 2; deviations 2, 1, 1, 4 -> MAD 1.5 (6 quarters).
        assert_eq!(median_and_mad(&mut [6, 3, 1, 0]), (8, 6));
        assert_eq!(median_and_mad(&mut []), (0, 0));
        // Half-even to units: 1.5 -> 2, 0.5 -> 0, 2.5 -> 2, 1.25 -> 1, 1.75 -> 2, -0.5 -> 0,
        // -1.5 -> -2.
        let rounded: Vec<i128> = [6, 2, 10, 5, 7, -2, -6, 8]
            .into_iter()
            .map(round_quarters)
            .collect();
        assert_eq!(rounded, [2, 0, 2, 1, 2, 0, -2, 2]);
    }

    #[test]
    fn factor_is_compared_exactly() {
        let f = |s: &str| s.parse::<Decimal>().unwrap_or_default();
        assert!(at_least_factor(300, 100, f("3")));
        assert!(!at_least_factor(299, 100, f("3")));
        assert!(at_least_factor(251, 100, f("2.51")));
        assert!(!at_least_factor(250, 100, f("2.500001")));
        // A non-positive median is exceeded by any spend above it.
        assert!(at_least_factor(1, 0, f("3")));
        assert!(at_least_factor(-1, -8, f("3")));
    }

    #[test]
    fn a_tenfold_day_is_a_spike_and_a_steady_series_is_not() {
        let mut days: Vec<(i64, i128)> = (0..28i64).map(|d| (d, 10 + i128::from(d % 3))).collect();
        days[20].1 = 110;
        let found = run(&series(&days), 14, 28, &thresholds());
        assert_eq!(found.len(), 1, "{found:?}");
        let a = &found[0];
        assert_eq!(
            (a.day, a.kind, a.counted_days),
            (20, AnomalyKind::Spike, 14)
        );
        // Window days 6..20: values 10, 11, 12 repeating; five 10s, five 11s, four 12s
        // -> sorted middle pair 11, 11; deviations: five 1s, five 0s, four 1s -> MAD 1.
        assert_eq!(
            (a.baseline, a.mad, a.excess()),
            (11 * UNIT, UNIT, 99 * UNIT)
        );
        let z = a.robust_z.unwrap_or_default();
        assert!((z - 99.0 / MAD_SCALE).abs() < 1e-12 * z, "{z}");
        assert_eq!(a.factor, Some(10.0));
    }

    #[test]
    fn new_groups_short_windows_and_zero_days() {
        // Spends 50 on day 20 only: new (nothing in days 6..20, which the data covers).
        let found = run(&series(&[(3, 7), (20, 50)]), 14, 28, &thresholds());
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].kind, found[0].day), (AnomalyKind::New, 20));
        assert_eq!(found[0].excess(), 50 * UNIT);
        assert_eq!((found[0].robust_z, found[0].factor), (None, None));
        // Below min_excess: not new.
        let t = Thresholds {
            min_excess: 51 * UNIT,
            ..thresholds()
        };
        assert!(run(&series(&[(20, 50)]), 14, 28, &t).is_empty());
        // Days outside [first, end) are not examined.
        assert!(run(&series(&[(20, 50)]), 21, 28, &thresholds()).is_empty());
    }

    #[test]
    fn no_baseline_yet_where_the_window_starts_before_the_data() {
        // The data starts on day 10: day 20's window (6..20) is not covered, so a group
        // first spending on day 20 has no baseline yet; from day 24 on (window 10..24)
        // a group first spending is new.
        let s = series(&[(20, 50), (21, 50), (25, 50)]);
        let f = found(&s, 14, 28, 10, &thresholds());
        assert_eq!((f.anomalies.len(), f.without_baseline), (0, 1), "{f:?}");
        let s = series(&[(24, 50)]);
        let f = found(&s, 14, 28, 10, &thresholds());
        assert_eq!(f.without_baseline, 0);
        assert_eq!(
            f.anomalies
                .iter()
                .map(|a| (a.day, a.kind))
                .collect::<Vec<_>>(),
            [(24, AnomalyKind::New)]
        );
        // One day earlier the window (9..23) starts before the data.
        let f = found(&series(&[(23, 50)]), 14, 28, 10, &thresholds());
        assert_eq!((f.anomalies.len(), f.without_baseline), (0, 1));
    }

    #[test]
    fn a_spike_needs_a_week_of_history() {
        // Weekdays 30, weekends 1, from day 0 (a Friday): on the first Monday (day 3)
        // three days are counted (30, 1, 1: median 1), too few to hold a week; from day
        // 7 on the median is a weekday's, and a tenfold Wednesday (day 12) is a spike.
        let days: Vec<(i64, i128)> = (0..20)
            .map(|d| match d % 7 {
                1 | 2 => (d, 1),
                _ if d == 12 => (d, 300),
                _ => (d, 30),
            })
            .collect();
        let found = run(&series(&days), 1, 20, &thresholds());
        assert_eq!(
            found
                .iter()
                .map(|a| (a.day, a.kind, a.counted_days))
                .collect::<Vec<_>>(),
            [(12, AnomalyKind::Spike, 12)]
        );
        assert_eq!(found[0].baseline, 30 * UNIT);
        // With a three-day window, three counted days are the whole window: day 3 is
        // judged against 30, 1, 1 (and day 10, the next Monday, too).
        let t = Thresholds {
            baseline_days: 3,
            ..thresholds()
        };
        let mondays: Vec<i64> = run(&series(&days), 1, 20, &t)
            .iter()
            .filter(|a| a.day % 7 == 3)
            .map(|a| a.day)
            .collect();
        assert_eq!(mondays, [3, 10, 17]);
    }

    #[test]
    fn a_zero_median_is_not_a_baseline() {
        // Spent 7 on day 10, nothing since: day 20's window counts days 10..20, nine
        // zeros and the 7: median 0, so day 20 is not compared (it was an infinite z).
        assert!(run(&series(&[(10, 7), (20, 50)]), 14, 28, &thresholds()).is_empty());
        // A weekly job: the same amount every seventh day is never flagged, and neither
        // is a tenfold run (its window has two or three runs: median 0).
        let weekly: Vec<(i64, i128)> = (0..9)
            .map(|w| (w * 7, if w == 6 { 300 } else { 30 }))
            .collect();
        assert!(run(&series(&weekly), 14, 63, &thresholds()).is_empty());
        // Weekdays only (five days of seven): the median is a weekday's spend, so a
        // Monday after a quiet weekend is normal and a tenfold weekday is a spike.
        let weekdays: Vec<(i64, i128)> = (0..63)
            .filter(|d| d % 7 < 5)
            .map(|d| (d, if d == 50 { 100 } else { 10 }))
            .collect();
        let found = run(&series(&weekdays), 14, 63, &thresholds());
        assert_eq!(
            found.iter().map(|a| (a.day, a.kind)).collect::<Vec<_>>(),
            [(50, AnomalyKind::Spike)]
        );
        assert_eq!(found[0].baseline, 10 * UNIT);
    }

    /// The hand-computed case of `duckdb_anomalies.py --self-test`, here too, so that
    /// both implementations are held to the same numbers.
    #[test]
    fn the_reference_self_test_case() {
        let day0 = 20_459; // 2026-01-06
        let row = |currency: &str, key: Option<&str>, day: i64, cost: i128, n: i64| GroupRow {
            currency: currency.into(),
            bucket: Some((day0 + day) * DAY_MICROS),
            keys: vec![key.map(|k| Key::Text(k.into()))],
            cost: Amount::from_scaled(cost),
            allocated: Amount::ZERO,
            tokens: Default::default(),
            line_items: n,
            cache_saving: Default::default(),
        };
        let series = Answer {
            rows: vec![
                row("USD", Some("a"), 0, UNIT + 1, 1),
                row("USD", Some("a"), 1, UNIT + 2, 1),
                row("USD", Some("a"), 2, UNIT + 3, 1),
                row("USD", Some("a"), 3, UNIT + 9, 1),
                row("USD", Some("a"), 4, 10 * UNIT, 3),
                row("USD", Some("b"), 6, 5 * UNIT, 2),
                row("USD", Some("c"), 1, 2 * UNIT, 1),
                row("USD", Some("c"), 5, 3 * UNIT, 1),
                row("USD", None, 7, UNIT / 2, 1),
                row("EUR", Some("d"), 2, 4 * UNIT, 1),
                row("EUR", Some("d"), 3, 4 * UNIT, 1),
                row("EUR", Some("d"), 4, 4 * UNIT, 1),
                row("EUR", Some("d"), 5, 4 * UNIT, 1),
                row("EUR", Some("d"), 6, 12 * UNIT, 1),
            ],
            ..Default::default()
        };
        let t = Thresholds {
            baseline_days: 4,
            ..thresholds()
        };
        let found_on = |first: i64| self::found(&series, first, day0 + 8, day0, &t);
        let found = found_on(day0 + 4);
        let brief: Vec<_> = found
            .anomalies
            .iter()
            .map(|a| {
                (
                    a.key
                        .as_ref()
                        .and_then(Key::text)
                        .unwrap_or_default()
                        .to_owned(),
                    a.day - day0,
                    a.kind,
                    a.baseline,
                    a.mad,
                    a.excess(),
                    a.counted_days,
                    a.robust_z,
                    a.factor,
                )
            })
            .collect();
        let (spike, new, inf) = (AnomalyKind::Spike, AnomalyKind::New, f64::INFINITY);
        let want = vec![
            (
                "a".to_owned(),
                4,
                spike,
                UNIT + 2,
                1,
                9 * UNIT - 2,
                4,
                Some((9 * UNIT - 2) as f64 / MAD_SCALE),
                Some((10 * UNIT) as f64 / (UNIT + 2) as f64),
            ),
            (
                "d".to_owned(),
                6,
                spike,
                4 * UNIT,
                0,
                8 * UNIT,
                4,
                Some(inf),
                Some(3.0),
            ),
            // c: 2, 0, 0, 0 (zero-filled from its first day with line items) has a
            // median of zero: not compared.
            ("b".to_owned(), 6, new, 0, 0, 5 * UNIT, 0, None, None),
        ];
        assert_eq!(brief, want);
        assert_eq!(found.without_baseline, 0);
        // From the second day of data on: c's day 1 and d's day 2 have windows that
        // start before the data and hold none of their line items.
        let earlier = found_on(day0 + 1);
        assert_eq!(earlier.anomalies, found.anomalies);
        assert_eq!(earlier.without_baseline, 2);
        // A week's rhythm: with a window of five days, d's four counted days are too few.
        let short = Thresholds {
            baseline_days: 5,
            ..t.clone()
        };
        let short = self::found(&series, day0 + 4, day0 + 8, day0, &short);
        assert!(
            short
                .anomalies
                .iter()
                .all(|a| a.key.as_ref().and_then(Key::text) != Some("d")),
            "{short:?}"
        );
    }

    #[test]
    fn ordered_by_excess_then_group_then_day() {
        let mut s = series(&[(1, 20), (2, 20), (3, 20), (4, 80)]);
        let mut other = series(&[(1, 20), (2, 20), (3, 20), (4, 80)]);
        for r in &mut other.rows {
            r.keys = vec![None];
        }
        s.rows.extend(other.rows);
        let t = Thresholds {
            baseline_days: 3,
            ..thresholds()
        };
        let found = found(&s, 0, 10, -10, &t).anomalies;
        let order: Vec<_> = found
            .iter()
            .map(|a| (a.key.is_some(), a.day, a.kind))
            .collect();
        // Excess 60: both groups' fourfold day 4 (ties by group, None first); excess 20:
        // both new on day 1.
        let (spike, new) = (AnomalyKind::Spike, AnomalyKind::New);
        assert_eq!(
            order,
            [
                (false, 4, spike),
                (true, 4, spike),
                (false, 1, new),
                (true, 1, new)
            ]
        );
    }
}
