//! Prometheus metrics: every name the server exports, their help text, and the few
//! helpers that record them.
//!
//! Recording goes through the `metrics` facade, which does nothing until
//! [`install`] sets the process-wide Prometheus recorder (`--metrics-listen`); the
//! endpoint itself is `server::metrics`. Labels stay bounded: RPC methods come from the
//! services' descriptors, stores are `scheme://bucket/`, sources and billing periods
//! are configured export roots and their months. No ARN, tag value or request field is
//! ever a label.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{
    error::Error,
    snapshot::{PeriodState, Snapshot},
};

/// RPCs finished, by service, method and gRPC status code name (`OK`, `INVALID_ARGUMENT`...).
pub const RPC_REQUESTS: &str = "bedrock_attribution_rpc_requests_total";
/// Seconds from an RPC's arrival to the end of its response, by service and method.
pub const RPC_DURATION: &str = "bedrock_attribution_rpc_duration_seconds";
/// RPCs being served, by service and method.
pub const RPC_IN_FLIGHT: &str = "bedrock_attribution_rpc_in_flight";
/// RPCs finished, by the caller of the callers file (`caller`; `none` when no caller
/// was identified: the server runs open, or the credentials were refused), method and
/// gRPC status code name. Caller names come from the operator's file, so they stay few.
pub const CALLER_REQUESTS: &str = "bedrock_attribution_caller_requests_total";
/// Rows (or list entries) sent in responses, by method.
pub const ROWS_RETURNED: &str = "bedrock_attribution_rows_returned_total";
/// Whole answers asked of the answer cache, by `result` (`hit`, `miss`).
pub const ANSWER_CACHE: &str = "bedrock_attribution_answer_cache_requests_total";
/// Layer rows read by the queries run (after the cut to filtered callers).
pub const ROWS_SCANNED: &str = "bedrock_attribution_query_rows_scanned_total";
/// Layer rows covering the ranges of the queries run, by `layer` (`fine`, `daily`, `monthly`).
pub const LAYER_ROWS: &str = "bedrock_attribution_query_layer_rows_total";
/// Seconds large queries waited for admission (small ones never wait and are not counted).
pub const QUEUE_WAIT: &str = "bedrock_attribution_query_queue_wait_seconds";
/// Large queries waiting for admission.
pub const QUERIES_WAITING: &str = "bedrock_attribution_queries_waiting";
/// Queries executing.
pub const QUERIES_RUNNING: &str = "bedrock_attribution_queries_running";
/// Queries refused with RESOURCE_EXHAUSTED because the admission line was full.
pub const QUERIES_SHED: &str = "bedrock_attribution_queries_shed_total";
/// Snapshot builds (refreshes), by `outcome`: `ok`, `partial` (some periods failed and
/// kept their last good version or are unavailable) or `failed`.
pub const SNAPSHOT_BUILDS: &str = "bedrock_attribution_snapshot_builds_total";
/// Seconds a snapshot build took.
pub const SNAPSHOT_BUILD_DURATION: &str = "bedrock_attribution_snapshot_build_duration_seconds";
/// Periods handled by snapshot builds, by `outcome`: `reread`, `reused`, `failed`.
pub const SNAPSHOT_PERIODS: &str = "bedrock_attribution_snapshot_periods_total";
/// 1 for the snapshot version being served (label `version`), 0 for earlier ones.
pub const SNAPSHOT_INFO: &str = "bedrock_attribution_snapshot_info";
/// Unix time the served snapshot was built.
pub const SNAPSHOT_BUILT: &str = "bedrock_attribution_snapshot_built_timestamp_seconds";
/// Bedrock line items served.
pub const SNAPSHOT_LINE_ITEMS: &str = "bedrock_attribution_snapshot_line_items";
/// Billing periods served.
pub const SNAPSHOT_SERVED_PERIODS: &str = "bedrock_attribution_snapshot_periods";
/// Bytes of layers and dictionaries held by the served snapshot.
pub const SNAPSHOT_RESIDENT_BYTES: &str = "bedrock_attribution_snapshot_resident_bytes";
/// Problems met by the refresh that built the served snapshot.
pub const SNAPSHOT_PROBLEMS: &str = "bedrock_attribution_snapshot_problems";
/// Periods (or exports) never read successfully: requests touching them fail.
pub const PERIODS_UNAVAILABLE: &str = "bedrock_attribution_periods_unavailable";
/// Persisted layers asked for when reading a period, by `result` (`hit`, `miss`).
pub const LAYER_CACHE: &str = "bedrock_attribution_layer_cache_requests_total";
/// Seconds since the newest data file of a period was written (DataStatus's freshness).
pub const PERIOD_FRESHNESS_AGE: &str = "bedrock_attribution_period_freshness_age_seconds";
/// Seconds since the usage start of a period's newest line item.
pub const PERIOD_NEWEST_USAGE_AGE: &str = "bedrock_attribution_period_newest_usage_age_seconds";
/// Seconds since a refresh last found the served version of a period current.
pub const PERIOD_LAST_GOOD_READ_AGE: &str = "bedrock_attribution_period_last_good_read_age_seconds";
/// 1 when a period serves its last good version because the latest could not be read.
pub const PERIOD_STALE: &str = "bedrock_attribution_period_stale";
/// Object store operations, by `store` (`scheme://bucket/`) and `operation`.
pub const STORE_REQUESTS: &str = "bedrock_attribution_object_store_requests_total";
/// Object store operations that failed, by `store`, `operation` and `kind`.
pub const STORE_ERRORS: &str = "bedrock_attribution_object_store_errors_total";
/// HTTP requests to cloud stores, retries included, by `store` and `status` class.
pub const STORE_HTTP_REQUESTS: &str = "bedrock_attribution_object_store_http_requests_total";
/// HTTP requests to cloud stores that failed in a way object_store retries (5xx, 429,
/// 408, connection errors, timeouts), by `store`: each is followed by a retry unless
/// the retry limits ran out.
pub const STORE_RETRYABLE_ERRORS: &str = "bedrock_attribution_object_store_retryable_errors_total";

/// Every metric name, for the dashboard check and the docs.
pub const ALL: &[&str] = &[
    RPC_REQUESTS,
    RPC_DURATION,
    RPC_IN_FLIGHT,
    CALLER_REQUESTS,
    ROWS_RETURNED,
    ANSWER_CACHE,
    ROWS_SCANNED,
    LAYER_ROWS,
    QUEUE_WAIT,
    QUERIES_WAITING,
    QUERIES_RUNNING,
    QUERIES_SHED,
    SNAPSHOT_BUILDS,
    SNAPSHOT_BUILD_DURATION,
    SNAPSHOT_PERIODS,
    SNAPSHOT_INFO,
    SNAPSHOT_BUILT,
    SNAPSHOT_LINE_ITEMS,
    SNAPSHOT_SERVED_PERIODS,
    SNAPSHOT_RESIDENT_BYTES,
    SNAPSHOT_PROBLEMS,
    PERIODS_UNAVAILABLE,
    LAYER_CACHE,
    PERIOD_FRESHNESS_AGE,
    PERIOD_NEWEST_USAGE_AGE,
    PERIOD_LAST_GOOD_READ_AGE,
    PERIOD_STALE,
    STORE_REQUESTS,
    STORE_ERRORS,
    STORE_HTTP_REQUESTS,
    STORE_RETRYABLE_ERRORS,
];

/// Latency buckets of RPCs and admission waits: 1 ms to 30 s (the default query timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Snapshot build buckets: an unchanged refresh takes milliseconds, a cold 10M-row
/// month about half a minute, a year of them minutes.
const BUILD_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same
/// handle), describes every metric and sets the unlabelled ones to zero so that they
/// are exported before anything happens.
pub fn install() -> Result<PrometheusHandle, Error> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let invalid = |e: metrics_exporter_prometheus::BuildError| Error::InvalidConfig {
        reason: format!("metrics: {e}"),
    };
    let mut builder = PrometheusBuilder::new();
    for name in [RPC_DURATION, QUEUE_WAIT] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), LATENCY_BUCKETS)
            .map_err(invalid)?;
    }
    builder = builder
        .set_buckets_for_metric(Matcher::Full(SNAPSHOT_BUILD_DURATION.into()), BUILD_BUCKETS)
        .map_err(invalid)?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    // Another recorder may be installed when embedding the server; then this handle
    // renders nothing the facade records, so say so.
    metrics::set_global_recorder(recorder).map_err(|e| Error::InvalidConfig {
        reason: format!("metrics: cannot install the Prometheus recorder: {e}"),
    })?;
    describe();
    let handle = HANDLE.get_or_init(|| handle).clone();
    Ok(handle)
}

fn describe() {
    describe_counter!(
        RPC_REQUESTS,
        Unit::Count,
        "RPCs finished, by service, method and gRPC status code"
    );
    describe_histogram!(
        RPC_DURATION,
        Unit::Seconds,
        "Seconds from an RPC's arrival to the end of its response"
    );
    describe_gauge!(RPC_IN_FLIGHT, Unit::Count, "RPCs being served");
    describe_counter!(
        CALLER_REQUESTS,
        Unit::Count,
        "RPCs finished, by caller (none when unidentified), method and gRPC status code"
    );
    describe_counter!(
        ROWS_RETURNED,
        Unit::Count,
        "Rows or list entries sent in responses, by method"
    );
    describe_counter!(
        ANSWER_CACHE,
        Unit::Count,
        "Whole answers asked of the answer cache, by result (hit, miss)"
    );
    describe_counter!(
        ROWS_SCANNED,
        Unit::Count,
        "Layer rows read by the queries run"
    );
    describe_counter!(
        LAYER_ROWS,
        Unit::Count,
        "Layer rows covering the ranges of the queries run, by layer (fine, daily, monthly)"
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Seconds large queries waited for admission"
    );
    describe_gauge!(
        QUERIES_WAITING,
        Unit::Count,
        "Large queries waiting for admission"
    );
    describe_gauge!(QUERIES_RUNNING, Unit::Count, "Queries executing");
    describe_counter!(
        QUERIES_SHED,
        Unit::Count,
        "Queries refused with RESOURCE_EXHAUSTED because the admission line was full"
    );
    describe_counter!(
        SNAPSHOT_BUILDS,
        Unit::Count,
        "Snapshot builds, by outcome (ok, partial, failed)"
    );
    describe_histogram!(
        SNAPSHOT_BUILD_DURATION,
        Unit::Seconds,
        "Seconds a snapshot build took"
    );
    describe_counter!(
        SNAPSHOT_PERIODS,
        Unit::Count,
        "Billing periods handled by snapshot builds, by outcome (reread, reused, failed)"
    );
    describe_gauge!(
        SNAPSHOT_INFO,
        "1 for the snapshot version being served, 0 for earlier ones"
    );
    describe_gauge!(
        SNAPSHOT_BUILT,
        Unit::Seconds,
        "Unix time the served snapshot was built"
    );
    describe_gauge!(
        SNAPSHOT_LINE_ITEMS,
        Unit::Count,
        "Bedrock line items served"
    );
    describe_gauge!(
        SNAPSHOT_SERVED_PERIODS,
        Unit::Count,
        "Billing periods served"
    );
    describe_gauge!(
        SNAPSHOT_RESIDENT_BYTES,
        Unit::Bytes,
        "Bytes of layers and dictionaries held by the served snapshot"
    );
    describe_gauge!(
        SNAPSHOT_PROBLEMS,
        Unit::Count,
        "Problems met by the refresh that built the served snapshot"
    );
    describe_gauge!(
        PERIODS_UNAVAILABLE,
        Unit::Count,
        "Billing periods or exports never read successfully"
    );
    describe_counter!(
        LAYER_CACHE,
        Unit::Count,
        "Persisted layers asked for when reading a period, by result (hit, miss)"
    );
    describe_gauge!(
        PERIOD_FRESHNESS_AGE,
        Unit::Seconds,
        "Seconds since the newest data file of a billing period was written"
    );
    describe_gauge!(
        PERIOD_NEWEST_USAGE_AGE,
        Unit::Seconds,
        "Seconds since the usage start of a billing period's newest line item"
    );
    describe_gauge!(
        PERIOD_LAST_GOOD_READ_AGE,
        Unit::Seconds,
        "Seconds since a refresh last found the served version of a billing period current"
    );
    describe_gauge!(
        PERIOD_STALE,
        "1 when a billing period serves its last good version"
    );
    describe_counter!(
        STORE_REQUESTS,
        Unit::Count,
        "Object store operations, by store and operation"
    );
    describe_counter!(
        STORE_ERRORS,
        Unit::Count,
        "Object store operations that failed, by store, operation and kind"
    );
    describe_counter!(
        STORE_HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests to cloud stores, retries included, by store and status class"
    );
    describe_counter!(
        STORE_RETRYABLE_ERRORS,
        Unit::Count,
        "HTTP requests to cloud stores that failed in a way object_store retries"
    );
    // Exported from the start, so that rates and alerts see a zero rather than nothing.
    counter!(QUERIES_SHED).absolute(0);
    counter!(ROWS_SCANNED).absolute(0);
    for result in ["hit", "miss"] {
        counter!(ANSWER_CACHE, "result" => result).absolute(0);
        counter!(LAYER_CACHE, "result" => result).absolute(0);
    }
    for layer in ["fine", "daily", "monthly"] {
        counter!(LAYER_ROWS, "layer" => layer).absolute(0);
    }
    for outcome in ["ok", "partial", "failed"] {
        counter!(SNAPSHOT_BUILDS, "outcome" => outcome).absolute(0);
    }
    for outcome in ["reread", "reused", "failed"] {
        counter!(SNAPSHOT_PERIODS, "outcome" => outcome).absolute(0);
    }
    gauge!(QUERIES_WAITING).set(0.0);
    gauge!(QUERIES_RUNNING).set(0.0);
}

/// Counts an answer-cache lookup.
pub fn answer_cache(hit: bool) {
    counter!(ANSWER_CACHE, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// Counts a persisted-layer lookup.
pub fn layer_cache(hit: bool) {
    counter!(LAYER_CACHE, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// Counts a finished call of `caller` (`None`: no caller identified).
pub fn caller_call(caller: Option<&str>, method: &'static str, code: &'static str) {
    let caller = caller.unwrap_or("none").to_owned();
    counter!(CALLER_REQUESTS, "caller" => caller, "method" => method, "code" => code).increment(1);
}

/// Counts the rows of a response.
pub fn rows_returned(method: &'static str, rows: usize) {
    counter!(ROWS_RETURNED, "method" => method).increment(rows as u64);
}

/// Counts the layer rows a query reads: `rows` in all, and by grain.
pub fn rows_scanned(rows: usize, fine: usize, daily: usize, monthly: usize) {
    counter!(ROWS_SCANNED).increment(rows as u64);
    for (layer, n) in [("fine", fine), ("daily", daily), ("monthly", monthly)] {
        counter!(LAYER_ROWS, "layer" => layer).increment(n as u64);
    }
}

/// Counts a query refused because the admission line was full.
pub fn shed() {
    counter!(QUERIES_SHED).increment(1);
}

/// A large query waiting for admission: counted in [`QUERIES_WAITING`] while it lives,
/// its wait recorded in [`QUEUE_WAIT`] when dropped, however the wait ended (admitted,
/// refused, or cut by the deadline).
#[derive(Debug)]
pub struct Waiting(Instant);

impl Waiting {
    /// Starts waiting.
    pub fn start() -> Self {
        gauge!(QUERIES_WAITING).increment(1.0);
        Self(Instant::now())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        gauge!(QUERIES_WAITING).decrement(1.0);
        histogram!(QUEUE_WAIT).record(self.0.elapsed().as_secs_f64());
    }
}

/// A query executing: counted in [`QUERIES_RUNNING`] while it lives.
#[derive(Debug)]
pub struct Running(());

impl Running {
    /// Starts running.
    pub fn start() -> Self {
        gauge!(QUERIES_RUNNING).increment(1.0);
        Self(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        gauge!(QUERIES_RUNNING).decrement(1.0);
    }
}

/// Records a snapshot build: its outcome, duration and periods, and the served
/// snapshot's version and size (the previous version's info drops to 0).
pub fn snapshot_built(snapshot: &Snapshot, previous: Option<u64>, took: Duration) {
    let outcome = if snapshot.stats.failed > 0 {
        "partial"
    } else {
        "ok"
    };
    counter!(SNAPSHOT_BUILDS, "outcome" => outcome).increment(1);
    histogram!(SNAPSHOT_BUILD_DURATION).record(took.as_secs_f64());
    for (outcome, n) in [
        ("reread", snapshot.stats.reread),
        ("reused", snapshot.stats.reused),
        ("failed", snapshot.stats.failed),
    ] {
        counter!(SNAPSHOT_PERIODS, "outcome" => outcome).increment(n as u64);
    }
    if let Some(previous) = previous.filter(|v| *v != snapshot.version) {
        gauge!(SNAPSHOT_INFO, "version" => previous.to_string()).set(0.0);
    }
    gauge!(SNAPSHOT_INFO, "version" => snapshot.version.to_string()).set(1.0);
    gauge!(SNAPSHOT_BUILT).set(snapshot.built_at.timestamp() as f64);
    gauge!(SNAPSHOT_LINE_ITEMS).set(snapshot.line_items() as f64);
    gauge!(SNAPSHOT_SERVED_PERIODS).set(snapshot.periods.len() as f64);
    gauge!(SNAPSHOT_RESIDENT_BYTES)
        .set((snapshot.layer_bytes() + snapshot.dicts.heap_bytes()) as f64);
    gauge!(SNAPSHOT_PROBLEMS).set(snapshot.problems.len() as f64);
    gauge!(PERIODS_UNAVAILABLE).set(snapshot.unavailable.len() as f64);
}

/// Counts a snapshot build that failed as a whole.
pub fn snapshot_failed(took: Duration) {
    counter!(SNAPSHOT_BUILDS, "outcome" => "failed").increment(1);
    histogram!(SNAPSHOT_BUILD_DURATION).record(took.as_secs_f64());
}

/// Sets the per-period freshness gauges of `snapshot` as of `now` (called at each
/// scrape, so that ages keep growing between refreshes).
pub fn freshness(snapshot: &Snapshot, now: DateTime<Utc>) {
    let seconds = |t: DateTime<Utc>| ((now - t).num_milliseconds().max(0) as f64) / 1000.0;
    for (p, check) in snapshot.periods.iter().zip(&snapshot.checks) {
        let labels = [
            ("source", p.source.clone()),
            ("period", p.period.to_string()),
        ];
        if let Some(t) = p.last_modified {
            gauge!(PERIOD_FRESHNESS_AGE, &labels).set(seconds(t));
        }
        if let Some(t) = p
            .usage_span
            .and_then(|(_, newest)| DateTime::from_timestamp_micros(newest))
        {
            gauge!(PERIOD_NEWEST_USAGE_AGE, &labels).set(seconds(t));
        }
        gauge!(PERIOD_LAST_GOOD_READ_AGE, &labels).set(seconds(check.checked_at));
        let stale = check.state == PeriodState::Stale;
        gauge!(PERIOD_STALE, &labels).set(if stale { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for name in ALL {
            assert!(seen.insert(name), "{name} twice");
            assert!(name.starts_with("bedrock_attribution_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
        for name in [
            RPC_REQUESTS,
            CALLER_REQUESTS,
            ROWS_RETURNED,
            QUERIES_SHED,
            STORE_ERRORS,
        ] {
            assert!(name.ends_with("_total"), "counters end in _total: {name}");
        }
    }
}
