//! The deadline of a request: the server's query timeout, or the caller's `grpc-timeout`
//! when that is shorter.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// Parses a `grpc-timeout` header value (`<digits><unit>`, unit one of H M S m u n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The time a query may take: the server's limit, or the caller's `grpc-timeout` less a
/// margin when that is shorter.
///
/// tonic's server drops a handler at the caller's deadline and answers CANCELLED; ending
/// the query a little earlier (a tenth of the timeout, at most 10 ms) lets the caller get
/// DEADLINE_EXCEEDED from the server instead, with the work already stopped.
pub fn effective(metadata: &MetadataMap, server_limit: Duration) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(server_limit, |caller| {
            let margin = (caller / 10).min(Duration::from_millis(10));
            (caller - margin).min(server_limit)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    #[test]
    fn the_shorter_deadline_wins_and_ends_before_the_callers() {
        let mut m = MetadataMap::new();
        let server = Duration::from_secs(30);
        assert_eq!(effective(&m, server), server);
        m.insert(
            "grpc-timeout",
            tonic::metadata::MetadataValue::from_static("1S"),
        );
        assert_eq!(effective(&m, server), Duration::from_millis(990));
        m.insert(
            "grpc-timeout",
            tonic::metadata::MetadataValue::from_static("50m"),
        );
        assert_eq!(effective(&m, server), Duration::from_millis(45));
        m.insert(
            "grpc-timeout",
            tonic::metadata::MetadataValue::from_static("1H"),
        );
        assert_eq!(effective(&m, server), server);
    }
}
