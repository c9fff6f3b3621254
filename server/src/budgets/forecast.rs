//! The month-end forecast: a run rate from recent complete days, projected over the
//! hours left in the month, in exact integer arithmetic.
//!
//! CUR rows arrive up to a day late, so the last day with data is treated as
//! incomplete: the run rate is the mean daily spend over the (up to) seven complete days
//! before it, within the month and the data; with no such day the forecast is the spend
//! to date. Forecast = spend to date + run rate x remaining days, where remaining days
//! are the whole hours from `as_of` to the month's end divided by 24, computed as one
//! fraction and rounded half-even to ten decimal places (units of 1e-10) once.

/// Microseconds in an hour.
pub const HOUR: i64 = 3_600_000_000;
/// Microseconds in a day.
pub const DAY: i64 = 24 * HOUR;
/// Complete days the run rate averages at most.
pub const TRAILING_DAYS: i64 = 7;

/// The days a run rate averages: `[from, to)`, whole UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First day averaged (µs, midnight UTC).
    pub from: i64,
    /// End of the days averaged (µs, midnight UTC): the start of the last day with data.
    pub to: i64,
    /// Days averaged, `(to - from) / DAY`; 0 when none.
    pub days: i64,
}

/// The start of the UTC day holding `t` (µs).
pub fn day_floor(t: i64) -> i64 {
    t.div_euclid(DAY) * DAY
}

/// The window of a month starting at `month_start`, evaluated at `as_of`, over data
/// whose usage spans `[data_first, data_end)` (µs). The last day with data is the day
/// of the last instant before `min(as_of, data_end)`; the window is the up to seven
/// whole days before it that lie in the month and on or after the data's first day.
pub fn window(month_start: i64, as_of: i64, data_first: i64, data_end: i64) -> Window {
    let end = as_of.min(data_end);
    if end <= month_start {
        return Window {
            from: month_start,
            to: month_start,
            days: 0,
        };
    }
    let last_day = day_floor(end - 1);
    let earliest = month_start.max(day_floor(data_first));
    let from = (last_day - TRAILING_DAYS * DAY).max(earliest);
    if from >= last_day {
        return Window {
            from: last_day,
            to: last_day,
            days: 0,
        };
    }
    Window {
        from,
        to: last_day,
        days: (last_day - from) / DAY,
    }
}

/// A forecast and the figures it came from, in units of 1e-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forecast {
    /// The run rate, `window_spend / days`, rounded half-even (0 without days).
    pub daily_average: i128,
    /// `spend + round(window_spend * remaining_hours / (24 * days))`, or `spend`
    /// without days.
    pub month_end: i128,
}

/// The forecast of a month with `spend` to date, `window_spend` over `days` complete
/// days and `remaining_hours` left. The run rate is not rounded before it is
/// projected: the projection is one fraction, rounded once.
pub fn forecast(spend: i128, window_spend: i128, days: i64, remaining_hours: i64) -> Forecast {
    if days <= 0 {
        return Forecast {
            daily_average: 0,
            month_end: spend,
        };
    }
    let days = i128::from(days);
    let hours = i128::from(remaining_hours.max(0));
    let projected = window_spend.checked_mul(hours).map_or_else(
        // Beyond 10^26 currency units: project the rounded rate instead.
        || div_half_even(window_spend, days).saturating_mul(hours) / 24,
        |n| div_half_even(n, 24 * days),
    );
    Forecast {
        daily_average: div_half_even(window_spend, days),
        month_end: spend.saturating_add(projected),
    }
}

/// `n / d` rounded to the nearest integer, ties to even; `d > 0`.
pub fn div_half_even(n: i128, d: i128) -> i128 {
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    // r in [0, d): compare 2r with d without overflow.
    match r.cmp(&(d - r)) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => {
            if q % 2 == 0 {
                q
            } else {
                q + 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JULY: i64 = 1_782_864_000_000_000; // 2026-07-01T00:00:00Z

    #[test]
    fn half_even_division() {
        assert_eq!(div_half_even(5, 2), 2);
        assert_eq!(div_half_even(7, 2), 4);
        assert_eq!(div_half_even(-5, 2), -2);
        assert_eq!(div_half_even(-7, 2), -4);
        assert_eq!(div_half_even(10, 3), 3);
        assert_eq!(div_half_even(11, 3), 4);
        assert_eq!(div_half_even(-11, 3), -4);
        assert_eq!(div_half_even(0, 7), 0);
    }

    #[test]
    fn the_last_day_with_data_is_left_out() {
        // As of 2026-07-20 00:00 with data through then: the last day is the 19th,
        // averaged are the 12th to the 18th.
        let as_of = JULY + 19 * DAY;
        let w = window(JULY, as_of, JULY - 100 * DAY, as_of);
        assert_eq!(
            (w.from, w.to, w.days),
            (JULY + 11 * DAY, JULY + 18 * DAY, 7)
        );
        // Mid-day: the 20th is the last day, the 13th to the 19th averaged.
        let w = window(JULY, as_of + 13 * HOUR, JULY - 100 * DAY, as_of + 13 * HOUR);
        assert_eq!((w.from, w.days), (JULY + 12 * DAY, 7));
        // Data ending before as_of: the data's last day counts.
        let w = window(JULY, as_of, JULY - 100 * DAY, JULY + 10 * DAY + 5 * HOUR);
        assert_eq!((w.from, w.to, w.days), (JULY + 3 * DAY, JULY + 10 * DAY, 7));
    }

    #[test]
    fn young_months_and_data_average_fewer_days() {
        let w = window(
            JULY,
            JULY + 3 * DAY + HOUR,
            JULY - 100 * DAY,
            JULY + 40 * DAY,
        );
        assert_eq!((w.from, w.to, w.days), (JULY, JULY + 3 * DAY, 3));
        let w = window(JULY, JULY + 5 * HOUR, JULY - 100 * DAY, JULY + 40 * DAY);
        assert_eq!(w.days, 0);
        let w = window(JULY, JULY, JULY - 100 * DAY, JULY + 40 * DAY);
        assert_eq!(w.days, 0);
        // Data starting on the 5th: the 5th to the 7th before the last day, the 8th.
        let w = window(
            JULY,
            JULY + 7 * DAY + HOUR,
            JULY + 4 * DAY + 3 * HOUR,
            JULY + 40 * DAY,
        );
        assert_eq!((w.from, w.days), (JULY + 4 * DAY, 3));
    }

    #[test]
    fn forecast_is_one_fraction_rounded_once() {
        // 7 days of 10.0000000001 in all, 37 hours left: 100000000001 * 37 / 168.
        let f = forecast(5, 100_000_000_001, 7, 37);
        assert_eq!(f.daily_average, 14_285_714_286);
        assert_eq!(f.month_end, 5 + 22_023_809_524);
        // Rounding the rate first would give 14285714286 * 37 / 24 = 22023809524.08...;
        // here both agree, but one day of 1e-10 over 12 hours shows the difference:
        assert_eq!(forecast(0, 1, 1, 12).month_end, 0, "0.5 rounds to even 0");
        assert_eq!(forecast(0, 3, 1, 12).month_end, 2, "1.5 rounds to even 2");
        assert_eq!(forecast(42, 999, 0, 100).month_end, 42);
        assert_eq!(forecast(42, 999, 3, 0).month_end, 42);
    }
}
