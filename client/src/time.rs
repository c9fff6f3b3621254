//! Time ranges and the date formats the client accepts.
//!
//! The service takes half-open `[start, end)` ranges of UTC timestamps. People type
//! dates, so [`parse_datetime`] accepts a plain `YYYY-MM-DD` (midnight UTC) as well as
//! a full RFC 3339 timestamp with any offset.

use chrono::{DateTime, NaiveDate, Utc};

use crate::{Error, proto};

/// The half-open range `[start, end)` in wire form.
pub fn time_range(start: DateTime<Utc>, end: DateTime<Utc>) -> proto::TimeRange {
    proto::TimeRange {
        start: Some(to_timestamp(start)),
        end: Some(to_timestamp(end)),
    }
}

/// Parses `YYYY-MM-DD` as midnight UTC, or an RFC 3339 timestamp
/// (`2026-07-01T12:00:00Z`, `2026-07-01T14:00:00+02:00`) converted to UTC.
pub fn parse_datetime(input: &str) -> Result<DateTime<Utc>, Error> {
    let input = input.trim();
    if let Ok(date) = NaiveDate::parse_from_str(input, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(input)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Error::invalid_argument(format!(
                "invalid date {input:?}: expected YYYY-MM-DD or RFC 3339"
            ))
        })
}

/// A UTC instant as a protobuf timestamp.
pub fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    // chrono reports a leap second as nanos >= 10^9, which protobuf does not allow.
    let nanos = t.timestamp_subsec_nanos().min(999_999_999);
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(nanos).unwrap_or(999_999_999),
    }
}

/// A protobuf timestamp as a UTC instant; `None` when it is outside chrono's range
/// or its nanos are invalid.
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(t.nanos).ok()?;
    DateTime::from_timestamp(t.seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_dates_as_midnight_utc() {
        let t = parse_datetime("2026-07-01").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-07-01T00:00:00+00:00");
        assert_eq!(t.timestamp(), 1_782_864_000);
    }

    #[test]
    fn parses_rfc3339_with_offsets() {
        let t = parse_datetime("2026-07-01T14:30:00+02:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-07-01T12:30:00+00:00");
        let t = parse_datetime("2026-07-01T12:30:00.5Z").expect("valid");
        assert_eq!(to_timestamp(t).nanos, 500_000_000);
    }

    #[test]
    fn rejects_other_formats() {
        for bad in [
            "2026-13-01",
            "07/01/2026",
            "2026-07-01 12:00",
            "",
            "yesterday",
        ] {
            let err = parse_datetime(bad).expect_err(bad);
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn builds_time_ranges() {
        let start = parse_datetime("2026-07-01").expect("valid");
        let end = parse_datetime("2026-08-01").expect("valid");
        let range = time_range(start, end);
        let (s, e) = (range.start.expect("start"), range.end.expect("end"));
        assert_eq!(e.seconds - s.seconds, 31 * 24 * 3600);
        assert_eq!(from_timestamp(&s), Some(start));
    }

    #[test]
    fn rejects_invalid_timestamps() {
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(from_timestamp(&bad), None);
    }
}
