//! Billing periods: the calendar months (UTC) that CUR 2.0 exports are partitioned by,
//! `data/BILLING_PERIOD=YYYY-MM/`.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Datelike, NaiveDate};

/// One billing period, written `YYYY-MM`; ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BillingPeriod {
    // Field order gives the derived order: year, then month.
    year: u16,
    month: u8,
}

impl BillingPeriod {
    /// The period of `year` (0–9999, as four digits allow) and `month` (1–12).
    pub fn new(year: i32, month: u32) -> Option<Self> {
        let year = u16::try_from(year).ok().filter(|y| *y <= 9999)?;
        let month = u8::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
        Some(Self { year, month })
    }

    /// Parses exactly `YYYY-MM` (four digits, a dash, two digits, month 01–12), the form
    /// of export folders and of request fields.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
            return None;
        }
        Self::new(text[..4].parse().ok()?, text[5..].parse().ok()?)
    }

    /// The period holding the instant `micros` (µs since the epoch).
    pub fn containing(micros: i64) -> Option<Self> {
        let t = DateTime::from_timestamp_micros(micros)?;
        Self::new(t.year(), t.month())
    }

    /// The year.
    pub fn year(self) -> i32 {
        i32::from(self.year)
    }

    /// The month, 1–12.
    pub fn month(self) -> u32 {
        u32::from(self.month)
    }

    /// The next period (December is followed by January of the next year); `None` after
    /// 9999-12.
    pub fn next(self) -> Option<Self> {
        if self.month == 12 {
            Self::new(self.year() + 1, 1)
        } else {
            Self::new(self.year(), self.month() + 1)
        }
    }

    /// `[first instant, first instant of the next month)`, in µs since the epoch.
    pub fn span_micros(self) -> (i64, i64) {
        let first = |year: i32, month: u32| {
            NaiveDate::from_ymd_opt(year, month, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map_or(i64::MAX, |t| t.and_utc().timestamp_micros())
        };
        let end = if self.month == 12 {
            first(self.year() + 1, 1)
        } else {
            first(self.year(), self.month() + 1)
        };
        (first(self.year(), self.month()), end)
    }

    /// Whether the period shares an instant with `[start, end)` (µs).
    pub fn overlaps(self, start: i64, end: i64) -> bool {
        let (lo, hi) = self.span_micros();
        lo < end && hi > start
    }
}

impl fmt::Display for BillingPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Text that is not a `YYYY-MM` billing period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAPeriod;

impl fmt::Display for NotAPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a billing period: use YYYY-MM, e.g. \"2026-07\"")
    }
}

impl std::error::Error for NotAPeriod {}

impl FromStr for BillingPeriod {
    type Err = NotAPeriod;

    fn from_str(s: &str) -> Result<Self, NotAPeriod> {
        Self::parse(s).ok_or(NotAPeriod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_export_form() {
        let p = BillingPeriod::parse("2026-05").unwrap_or_else(|| panic!("a period"));
        assert_eq!((p.year(), p.month()), (2026, 5));
        assert_eq!(p.to_string(), "2026-05");
        for bad in [
            "2026-13", "2026-00", "2026-5", "abcd-05", "+026-05", "2026-05 ", "2026/05", "",
        ] {
            assert_eq!(BillingPeriod::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            "0001-01".parse::<BillingPeriod>().map(|p| p.to_string()),
            Ok("0001-01".into())
        );
    }

    #[test]
    fn spans_and_order() {
        let dec = BillingPeriod::parse("2026-12").unwrap_or_else(|| panic!("a period"));
        let (lo, hi) = dec.span_micros();
        assert_eq!(lo, 1_796_083_200_000_000, "2026-12-01T00:00:00Z");
        assert_eq!(hi, 1_798_761_600_000_000, "2027-01-01T00:00:00Z");
        let jan = dec.next().unwrap_or_else(|| panic!("a next period"));
        assert_eq!(jan.to_string(), "2027-01");
        assert!(dec < jan);
        assert_eq!(BillingPeriod::containing(hi - 1), Some(dec));
        assert_eq!(BillingPeriod::containing(hi), Some(jan));
        assert!(dec.overlaps(hi - 1, hi + 5) && !dec.overlaps(hi, hi + 5));
        assert_eq!(
            BillingPeriod::new(9999, 12).and_then(BillingPeriod::next),
            None
        );
    }
}
