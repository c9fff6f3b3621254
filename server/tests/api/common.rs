//! Shared fixtures: generated exports, a real server on an ephemeral loopback port, and
//! the typed client connected to it.

use std::{
    path::{Path, PathBuf},
    sync::LazyLock,
};

use bedrock_attribution_client::{Client, proto};
use bedrock_attribution_server::{
    Config,
    demo::{DemoConfig, generate},
    server::{self, ServerHandle},
};
use clap::Parser;
use rust_decimal::Decimal;

/// The small generated export (every trap of the data contract), written once per run.
pub static SMALL_EXPORT: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let root = dir.path().join("acme-cur2");
    generate(&root, &DemoConfig::small()).unwrap_or_else(|e| panic!("generate: {e}"));
    (dir, root)
});

/// The root of the small generated export.
pub fn small_export() -> &'static Path {
    &SMALL_EXPORT.1
}

/// A server under test and a client connected to it.
pub struct TestServer {
    /// The running server.
    pub handle: ServerHandle,
    /// A client over loopback.
    pub client: Client,
}

impl TestServer {
    /// Serves the export roots on `127.0.0.1:0` and waits for the first snapshot.
    pub async fn start(roots: &[&Path]) -> Self {
        let sources: Vec<String> = roots
            .iter()
            .map(|r| format!("file://{}", r.display()))
            .collect();
        Self::serve(&sources, &[]).await
    }

    /// Serves `sources` (any URLs) with `extra` flags on `127.0.0.1:0` and waits for
    /// the first snapshot.
    pub async fn serve(sources: &[String], extra: &[String]) -> Self {
        let config = config(sources, extra);
        let catalog = server::catalog_from(&config.data).unwrap_or_else(|e| panic!("{e}"));
        let handle = server::start(&config, catalog)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        handle.ready().await;
        let client = Client::connect(format!("http://{}", handle.addr()))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        Self { handle, client }
    }

    /// A raw channel to the server, for the health and reflection clients.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.handle.addr()))
            .unwrap_or_else(|e| panic!("{e}"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.handle
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
    }
}

/// The configuration of a test server: `sources` (any URLs) and `extra` flags on
/// `127.0.0.1:0`, no background refresh, no layer cache unless `extra` names one.
pub fn config(sources: &[String], extra: &[String]) -> Config {
    let mut args = vec![
        "test".to_owned(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--refresh-interval".into(),
        "0".into(),
    ];
    for source in sources {
        args.push("--source".into());
        args.push(source.clone());
    }
    args.extend(extra.iter().cloned());
    if !extra.iter().any(|a| a == "--cache-dir") {
        // Tests never write to the user's cache directory.
        args.push("--no-cache".into());
    }
    Config::try_parse_from(args).unwrap_or_else(|e| panic!("config: {e}"))
}

/// A time range from two RFC 3339 strings.
pub fn range(start: &str, end: &str) -> Option<proto::TimeRange> {
    let ts = |s: &str| {
        let t = chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        }
    };
    Some(proto::TimeRange {
        start: Some(ts(start)),
        end: Some(ts(end)),
    })
}

/// The exact decimal of a `Money`.
pub fn exact(m: &proto::Money) -> Decimal {
    m.exact
        .parse()
        .unwrap_or_else(|e| panic!("{:?}: {e}", m.exact))
}

/// `Money.exact` of each currency, as `(currency, decimal)`, ordered.
pub fn totals(moneys: &[proto::Money]) -> Vec<(String, Decimal)> {
    let mut t: Vec<_> = moneys
        .iter()
        .map(|m| (m.currency_code.clone(), exact(m)))
        .collect();
    t.sort();
    t
}

/// Sums rows per currency.
pub fn sum_rows(rows: &[proto::Row]) -> Vec<(String, Decimal)> {
    let mut sums: std::collections::BTreeMap<String, Decimal> = Default::default();
    for r in rows {
        let cost = r
            .cost
            .as_ref()
            .unwrap_or_else(|| panic!("row without cost"));
        *sums.entry(cost.currency_code.clone()).or_default() += exact(cost);
    }
    sums.into_iter().collect()
}

/// A decimal literal.
pub fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}
