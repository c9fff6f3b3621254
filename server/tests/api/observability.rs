//! Observability of the real server binary: the Prometheus endpoint after a few calls,
//! parsed with a Prometheus text-format parser, with exact counter values; and the
//! Grafana dashboard (`k8s/grafana/`) queries exactly the metrics the server exports.

use std::{collections::BTreeSet, sync::atomic::Ordering};

use bedrock_attribution_client::proto;
use bedrock_attribution_server::telemetry::metrics::ALL;
use prometheus_parse::{Sample, Scrape, Value};
use tonic::Code;

use crate::{
    common::{range, small_export},
    process::{ServerProcess, http_get},
    s3fixture::S3Server,
};

const API: &str = "bedrock.attribution.v1.AttributionService";

/// Scrapes `/metrics` and parses it.
pub(crate) async fn scrape(server: &ServerProcess) -> Scrape {
    let addr = server
        .metrics
        .unwrap_or_else(|| panic!("no metrics address"));
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not the Prometheus text format: {e}"))
}

/// The samples of `name` whose labels include every one of `labels`.
fn samples<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// The one value of a counter or gauge sample.
pub(crate) fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match samples(scrape, name, labels).as_slice() {
        [s] => match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{name} {labels:?} is {other:?}"),
        },
        other => panic!("{name} {labels:?}: {} samples: {other:?}", other.len()),
    }
}

#[tokio::test]
async fn metrics_count_exactly_what_was_asked() {
    // Every query waits its turn, so that the one executed is in the queue histogram.
    let server = ServerProcess::start(
        small_export(),
        &["--metrics-listen", "127.0.0.1:0", "--small-query-rows", "0"],
    )
    .await;
    let client = server.client().await;
    let mut raw = client.raw();
    let july = || proto::CostByTagRequest {
        time_range: range("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"),
        tag_key: "iamPrincipal/team".into(),
        ..Default::default()
    };
    // Asked twice: the second answer comes from the answer cache.
    let first = raw
        .cost_by_tag(july())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = raw
        .cost_by_tag(july())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = first.get_ref().rows.len();
    assert!(rows > 0);
    assert_eq!(rows, second.get_ref().rows.len());
    let invalid = raw
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: range("2026-08-01T00:00:00Z", "2026-07-01T00:00:00Z"),
            ..Default::default()
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(invalid, Some(Code::InvalidArgument));
    let status = raw
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();

    let m = scrape(&server).await;
    let rpc = |method: &str, code: &str| {
        value(
            &m,
            "bedrock_attribution_rpc_requests_total",
            &[("service", API), ("method", method), ("code", code)],
        )
    };
    assert_eq!(rpc("CostByTag", "OK"), 2.0);
    assert_eq!(rpc("CostByPrincipal", "INVALID_ARGUMENT"), 1.0);
    assert_eq!(rpc("DataStatus", "OK"), 1.0);
    assert!(
        samples(
            &m,
            "bedrock_attribution_rpc_requests_total",
            &[("service", API), ("method", "TokenUsage")]
        )
        .is_empty(),
        "nothing for RPCs never called"
    );
    // The latency histogram: every finished call is in its count and its +Inf bucket.
    let histogram = samples(
        &m,
        "bedrock_attribution_rpc_duration_seconds",
        &[("service", API), ("method", "CostByTag")],
    );
    match histogram.as_slice() {
        [s] => match &s.value {
            Value::Histogram(buckets) => {
                assert!(buckets.len() >= 10, "{buckets:?}");
                let inf = buckets.iter().find(|b| b.less_than == f64::INFINITY);
                assert_eq!(inf.map(|b| b.count), Some(2.0), "{buckets:?}");
            }
            other => panic!("not a histogram: {other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(
        value(
            &m,
            "bedrock_attribution_rpc_duration_seconds_count",
            &[("service", API), ("method", "CostByTag")]
        ),
        2.0
    );
    let in_flight = value(
        &m,
        "bedrock_attribution_rpc_in_flight",
        &[("service", API), ("method", "CostByTag")],
    );
    assert_eq!(in_flight, 0.0);
    assert_eq!(
        value(
            &m,
            "bedrock_attribution_rows_returned_total",
            &[("method", "CostByTag")]
        ),
        2.0 * rows as f64
    );
    assert_eq!(
        value(
            &m,
            "bedrock_attribution_rows_returned_total",
            &[("method", "DataStatus")]
        ),
        status.periods.len() as f64
    );
    let cache = |result| {
        value(
            &m,
            "bedrock_attribution_answer_cache_requests_total",
            &[("result", result)],
        )
    };
    assert_eq!((cache("hit"), cache("miss")), (1.0, 1.0));
    assert!(value(&m, "bedrock_attribution_query_rows_scanned_total", &[]) > 0.0);
    assert_eq!(
        value(
            &m,
            "bedrock_attribution_query_queue_wait_seconds_count",
            &[]
        ),
        1.0,
        "the one query run waited its turn"
    );
    assert_eq!(
        value(&m, "bedrock_attribution_queries_shed_total", &[]),
        0.0
    );
    assert_eq!(value(&m, "bedrock_attribution_queries_running", &[]), 0.0);
    // One build at start; its version is the one DataStatus reports.
    let builds = |outcome| {
        value(
            &m,
            "bedrock_attribution_snapshot_builds_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(builds("ok") + builds("partial"), 1.0);
    assert_eq!(builds("failed"), 0.0);
    let version = status.snapshot_version.to_string();
    assert_eq!(
        value(
            &m,
            "bedrock_attribution_snapshot_info",
            &[("version", version.as_str())]
        ),
        1.0
    );
    assert_eq!(
        value(&m, "bedrock_attribution_snapshot_line_items", &[]),
        status.total_line_items as f64
    );
    // Freshness of every period served, labelled by source and period.
    let served: Vec<_> = status
        .periods
        .iter()
        .filter(|p| p.state == "current" || p.state == "stale")
        .collect();
    assert!(!served.is_empty());
    for p in &served {
        let labels = [
            ("source", p.source.as_str()),
            ("period", p.billing_period.as_str()),
        ];
        let age = value(
            &m,
            "bedrock_attribution_period_last_good_read_age_seconds",
            &labels,
        );
        assert!((0.0..600.0).contains(&age), "{labels:?}: {age}");
        let stale = value(&m, "bedrock_attribution_period_stale", &labels);
        assert_eq!(stale, f64::from(p.state == "stale"), "{labels:?}");
        let freshness = value(
            &m,
            "bedrock_attribution_period_freshness_age_seconds",
            &labels,
        );
        assert!(
            (freshness - p.freshness_age_seconds as f64).abs() < 60.0,
            "{labels:?}: {freshness} vs DataStatus {}",
            p.freshness_age_seconds
        );
    }
    // The export was read through the counted store.
    let reads: f64 = samples(
        &m,
        "bedrock_attribution_object_store_requests_total",
        &[("store", "file:///")],
    )
    .iter()
    .map(|s| match s.value {
        Value::Counter(v) => v,
        ref other => panic!("{other:?}"),
    })
    .sum();
    assert!(reads > 0.0, "no object store requests counted");
    // No label carries a tag value or an ARN.
    for s in &m.samples {
        let text = format!("{:?}", s.labels);
        assert!(!text.contains("arn:"), "{} {text}", s.metric);
    }

    // Other paths and methods are refused.
    let addr = server
        .metrics
        .unwrap_or_else(|| panic!("no metrics address"));
    assert_eq!(http_get(addr, "/").await.0, 404);
    server.terminate().await;
}

/// The metric names of a scrape: a histogram's `_bucket`, `_sum` and `_count` series
/// under its base name.
fn names(scrape: &Scrape) -> BTreeSet<String> {
    let histograms: BTreeSet<&str> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, Value::Histogram(_)))
        .map(|s| s.metric.as_str())
        .collect();
    scrape
        .samples
        .iter()
        .map(|s| base_name(&s.metric, &histograms))
        .collect()
}

fn base_name(name: &str, histograms: &BTreeSet<&str>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && histograms.contains(base)
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

/// Every metric name the dashboard mentions, in any query, variable or text.
fn dashboard_names(histograms: &BTreeSet<&str>) -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../k8s/grafana/bedrock-attribution.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    let mut strings = Vec::new();
    let mut stack = vec![&json];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => strings.push(s.as_str()),
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for s in strings {
        for (at, _) in s.match_indices("bedrock_attribution_") {
            let name: String = s[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            out.insert(base_name(&name, histograms));
        }
    }
    out
}

/// The sum of the values of counter samples.
fn sum(samples: &[&Sample]) -> f64 {
    samples
        .iter()
        .map(|s| match s.value {
            Value::Counter(v) => v,
            ref other => panic!("{} is {other:?}", s.metric),
        })
        .sum()
}

#[tokio::test]
async fn object_store_attempts_retries_and_failures_are_counted() {
    const PREFIX: &str = "cur2/acme-cur2";
    const STORE: (&str, &str) = ("store", "s3://billing/");
    let s3 = S3Server::start().await;
    s3.upload_dir(small_export(), PREFIX).await;
    // Every read: a 503 SlowDown, then a dropped connection, then served.
    s3.faults.fail_first_attempts(1, 1);
    let mut flags = s3.store_args();
    flags.extend(["--metrics-listen", "127.0.0.1:0", "--small-query-rows", "0"].map(String::from));
    let server = ServerProcess::serve(&[s3.url(PREFIX)], &flags).await;
    let m = scrape(&server).await;
    let slowdowns = s3.faults.slowdowns.load(Ordering::SeqCst) as f64;
    let drops = s3.faults.drops.load(Ordering::SeqCst) as f64;
    let served = s3.faults.served.load(Ordering::SeqCst) as f64;
    assert!(slowdowns >= 10.0, "{slowdowns}");
    let http = "bedrock_attribution_object_store_http_requests_total";
    let attempts = |status| value(&m, http, &[STORE, ("status", status)]);
    assert_eq!(attempts("5xx"), slowdowns);
    assert_eq!(attempts("transport_error"), drops);
    assert_eq!(
        sum(&samples(&m, http, &[STORE])) - slowdowns - drops,
        served,
        "every other attempt reached the S3 implementation"
    );
    let retryable = "bedrock_attribution_object_store_retryable_errors_total";
    assert_eq!(value(&m, retryable, &[STORE]), slowdowns + drops);
    let errors = "bedrock_attribution_object_store_errors_total";
    assert!(
        samples(&m, errors, &[STORE]).is_empty(),
        "every operation succeeded in the end"
    );
    let operations = sum(&samples(
        &m,
        "bedrock_attribution_object_store_requests_total",
        &[STORE],
    ));
    assert!(
        operations > 0.0 && operations <= served,
        "{operations} operations, {served} served attempts"
    );

    // The store goes down: the refresh keeps the last good periods, and says so.
    s3.faults.fail_first_attempts(0, 0);
    s3.faults.set_down(true);
    let refresh = server
        .client()
        .await
        .refresh(proto::RefreshRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refresh.periods_failed, 5);
    let m = scrape(&server).await;
    let listing = [STORE, ("operation", "list_with_delimiter")];
    assert_eq!(sum(&samples(&m, errors, &listing)), 1.0);
    let drops = s3.faults.drops.load(Ordering::SeqCst) as f64;
    assert_eq!(value(&m, retryable, &[STORE]), slowdowns + drops);
    let builds = |outcome| {
        value(
            &m,
            "bedrock_attribution_snapshot_builds_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        (builds("ok"), builds("partial"), builds("failed")),
        (1.0, 1.0, 0.0)
    );
    let stale = samples(&m, "bedrock_attribution_period_stale", &[]);
    assert_eq!(stale.len(), 5);
    assert!(
        stale.iter().all(|s| s.value == Value::Gauge(1.0)),
        "{stale:?}"
    );

    // One query too, and every metric has been exported: the dashboard queries exactly
    // those, and the server exports nothing undocumented.
    server
        .client()
        .await
        .cost_by_tag(proto::CostByTagRequest {
            time_range: range("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"),
            tag_key: "iamPrincipal/team".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let m = scrape(&server).await;
    let exported = names(&m);
    let histograms: BTreeSet<&str> = m
        .samples
        .iter()
        .filter(|s| matches!(s.value, Value::Histogram(_)))
        .map(|s| s.metric.as_str())
        .collect();
    let documented: BTreeSet<String> = ALL.iter().map(|n| (*n).to_owned()).collect();
    let dashboard = dashboard_names(&histograms);
    let missing: Vec<_> = dashboard.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the server does not export: {missing:?}"
    );
    assert_eq!(exported, documented, "exported vs telemetry::metrics::ALL");
    assert_eq!(dashboard, documented, "the dashboard shows every metric");
    server.terminate().await;
}
