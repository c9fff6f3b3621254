//! Command-line and environment configuration. Every flag has an environment variable
//! `BEDROCK_ATTRIBUTION_*`; S3 also reads the standard AWS variables.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser};

/// Bedrock cost attribution over CUR 2.0 exports, served over gRPC.
#[derive(Debug, Clone, Parser)]
#[command(name = "bedrock-attribution-server", version, about)]
pub struct Config {
    /// Where data comes from.
    #[command(flatten)]
    pub data: DataConfig,
    /// How the gRPC server listens.
    #[command(flatten)]
    pub server: ServerConfig,
}

/// Sources of CUR data.
#[derive(Debug, Clone, Args)]
pub struct DataConfig {
    /// Export root (the folder holding data/ and metadata/), repeatable:
    /// file:///path/acme-cur2 or s3://bucket/prefix/export. Comma-separated in the
    /// environment variable.
    #[arg(
        long = "source",
        env = "BEDROCK_ATTRIBUTION_SOURCES",
        value_delimiter = ','
    )]
    pub sources: Vec<String>,

    /// Write a generated CUR 2.0 dataset (several months, a few hundred callers) to
    /// --demo-dir and serve it. No cloud account needed.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_DEMO")]
    pub demo: bool,

    /// Folder for the --demo dataset (rewritten at start).
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_DEMO_DIR",
        default_value = "demo-data"
    )]
    pub demo_dir: PathBuf,

    /// Product codes counted as Bedrock besides the product family, Marketplace
    /// "(Amazon Bedrock Edition)" products and any line item with a caller.
    #[arg(
        long = "bedrock-product-code",
        env = "BEDROCK_ATTRIBUTION_PRODUCT_CODES",
        value_delimiter = ',',
        default_values_t = crate::rules::bedrock::DEFAULT_PRODUCT_CODES.map(String::from)
    )]
    pub product_codes: Vec<String>,

    /// How often the sources are re-read in the background (e.g. 15m, 1h; 0 disables).
    #[arg(long, env = "BEDROCK_ATTRIBUTION_REFRESH_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    pub refresh_interval: Duration,
}

/// The gRPC listener.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    /// Longest a query may run (the caller's grpc-timeout applies when shorter).
    #[arg(long, env = "BEDROCK_ATTRIBUTION_QUERY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Requests served at once per connection.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_CONCURRENCY", default_value_t = 64)]
    pub concurrency_per_connection: usize,
}

/// Parses `90s`, `15m`, `2h`, `500ms` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 15m, 2h or 500ms"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "{s:?} has unknown unit {unit:?}; use ms, s, m or h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn flags_parse() {
        let c = Config::try_parse_from([
            "x",
            "--source",
            "file:///a",
            "--source",
            "s3://b/p",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.data.sources, ["file:///a", "s3://b/p"]);
        assert_eq!(c.data.product_codes.len(), 3);
        assert_eq!(c.server.query_timeout, Duration::from_secs(30));
    }
}
