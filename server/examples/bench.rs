//! Query latency of the service against DuckDB on the same generated CUR 2.0 files.
//!
//! Run: `cargo run --release -p bedrock-attribution-server --example bench [-- --repeat 15]`
//! (needs `python3` with the `duckdb` package). It writes the `--demo` dataset to a temp
//! folder, starts the real server on loopback, times each query through the client
//! crate (all pages) and in-process (`query::run`, no RPC), then has DuckDB answer the
//! same queries in-process from a table it builds with the same rules, and prints the
//! medians and their ratios.

use std::{io::Write, process::Command, time::Instant};

use bedrock_attribution_client::{Client, proto};
use bedrock_attribution_server::{
    Config,
    demo::{DemoConfig, generate},
    query::{self, CostMetric, Dimension, Filter, Granularity, PrincipalGrouping, QuerySpec},
    server,
};
use clap::Parser;
use serde_json::{Value, json};

/// 2026-03-01T00:00:00Z and 2026-11-01T00:00:00Z: the demo's eight months.
const RANGE: (i64, i64) = (1_772_323_200, 1_793_491_200);

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One benchmark query: its id, the DuckDB spec, the RPC and the domain spec.
struct Query {
    id: &'static str,
    duckdb: Value,
    rpc: proto::TokenUsageRequest,
    spec: QuerySpec,
}

fn query(id: &'static str, granularity: Granularity, dimensions: Vec<Dimension>) -> Query {
    let (g, gr) = match granularity {
        Granularity::Whole => ("none", proto::Granularity::Unspecified),
        Granularity::Hourly => ("hourly", proto::Granularity::Hourly),
        Granularity::Daily => ("daily", proto::Granularity::Daily),
        Granularity::Monthly => ("monthly", proto::Granularity::Monthly),
    };
    let mut names = Vec::new();
    let mut group_by = Vec::new();
    let mut grouping = proto::PrincipalGrouping::Arn;
    let mut tag_key = String::new();
    for d in &dimensions {
        let (name, dim) = match d {
            Dimension::Principal(PrincipalGrouping::Arn) => {
                ("principal_arn", proto::Dimension::Principal)
            }
            Dimension::Principal(PrincipalGrouping::Role) => {
                grouping = proto::PrincipalGrouping::Role;
                ("principal_role", proto::Dimension::Principal)
            }
            Dimension::Principal(PrincipalGrouping::Account) => {
                grouping = proto::PrincipalGrouping::Account;
                ("principal_account", proto::Dimension::Principal)
            }
            Dimension::Model => ("model", proto::Dimension::Model),
            Dimension::Account => ("account", proto::Dimension::Account),
            Dimension::Region => ("region", proto::Dimension::Region),
            Dimension::UsageCategory => ("usage_category", proto::Dimension::UsageCategory),
            Dimension::Routing => ("routing", proto::Dimension::Routing),
            Dimension::LineItemType => ("line_item_type", proto::Dimension::LineItemType),
            Dimension::Tag(key) => {
                tag_key = key.clone();
                ("tag", proto::Dimension::Tag)
            }
        };
        names.push(name);
        group_by.push(dim.into());
    }
    let ts = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    Query {
        id,
        duckdb: json!({"id": id, "start": "2026-03-01T00:00:00Z", "end": "2026-11-01T00:00:00Z",
            "metric": "unblended", "granularity": g, "group_by": names, "tag_key": tag_key}),
        rpc: proto::TokenUsageRequest {
            time_range: Some(proto::TimeRange {
                start: ts(RANGE.0),
                end: ts(RANGE.1),
            }),
            granularity: gr.into(),
            group_by,
            principal_grouping: grouping.into(),
            tag_key,
            page_size: 10_000,
            ..Default::default()
        },
        spec: QuerySpec {
            start: chrono::DateTime::from_timestamp(RANGE.0, 0).expect("start"),
            end: chrono::DateTime::from_timestamp(RANGE.1, 0).expect("end"),
            filter: Filter::default(),
            metric: CostMetric::Unblended,
            granularity,
            dimensions,
            allocation: false,
            efficiency: false,
            scope: Default::default(),
        },
    }
}

fn queries() -> Vec<Query> {
    let arn = Dimension::Principal(PrincipalGrouping::Arn);
    let role = Dimension::Principal(PrincipalGrouping::Role);
    vec![
        query("principal_arn_whole", Granularity::Whole, vec![arn.clone()]),
        query(
            "role_model_monthly",
            Granularity::Monthly,
            vec![role, Dimension::Model],
        ),
        query(
            "team_tag_monthly",
            Granularity::Monthly,
            vec![Dimension::Tag("iamPrincipal/team".into())],
        ),
        query(
            "arn_model_category_daily",
            Granularity::Daily,
            vec![arn, Dimension::Model, Dimension::UsageCategory],
        ),
        query(
            "model_region_whole",
            Granularity::Whole,
            vec![Dimension::Model, Dimension::Region],
        ),
    ]
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk_size(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let repeat: usize = std::env::args()
        .skip_while(|a| a != "--repeat")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(15)
        .max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("acme-cur2");
    let written = generate(&root, &DemoConfig::demo()).expect("generate");
    println!(
        "dataset: {} periods, {} line items, {:.1} MiB of parquet",
        written.periods.len(),
        written.line_items,
        walk_size(&root) as f64 / 1_048_576.0
    );

    let rss_before = rss_mib();
    let source = format!("file://{}", root.display());
    let config = Config::try_parse_from([
        "bench",
        "--listen",
        "127.0.0.1:0",
        "--refresh-interval",
        "0",
        "--no-cache",
        "--source",
        &source,
    ])
    .expect("config");
    let catalog = server::catalog_from(&config.data).expect("catalog");
    let started = Instant::now();
    let handle = server::start(&config, catalog).await.expect("start");
    handle.ready().await;
    let load = started.elapsed().as_secs_f64();
    let rss_after = rss_mib();
    let client = Client::connect(format!("http://{}", handle.addr()))
        .await
        .expect("connect");
    let snapshot = handle.catalog().require_snapshot().expect("snapshot");

    let mut ours = Vec::new();
    for q in queries() {
        let (mut service, mut cached, mut engine) = (Vec::new(), Vec::new(), Vec::new());
        let mut rows = 0;
        for i in 0..repeat {
            // A range one second longer per run is a new request (no cached answer) over
            // the same line items; asking it again is answered from the cache.
            let mut rpc = q.rpc.clone();
            if let Some(end) = rpc.time_range.as_mut().and_then(|r| r.end.as_mut()) {
                end.seconds += i as i64 + 1;
            }
            let t0 = Instant::now();
            rows = client
                .token_usage_all(rpc.clone())
                .await
                .expect("query")
                .rows
                .len();
            service.push(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            client.token_usage_all(rpc).await.expect("cached query");
            cached.push(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            query::run(handle.catalog().session(), &snapshot, &q.spec)
                .await
                .expect("in-process query");
            engine.push(t0.elapsed().as_secs_f64());
        }
        ours.push((q.id, median(service), median(cached), median(engine), rows));
    }
    handle.shutdown().await.expect("shutdown");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/duckdb_reference.py"
    );
    let specs: Vec<Value> = queries().into_iter().map(|q| q.duckdb).collect();
    let mut child = Command::new("python3")
        .args([script, "--repeat", &repeat.to_string()])
        .arg(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with duckdb");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json!({ "queries": specs }).to_string().as_bytes())
        .expect("write specs");
    let out = child.wait_with_output().expect("duckdb run");
    let duck: Value = serde_json::from_slice(&out.stdout).expect("duckdb output");
    let duck_load = duck["timings"]["load_s"].as_f64().unwrap_or(f64::NAN);

    println!(
        "load + normalize: service {load:.2} s, DuckDB {duck_load:.2} s (ratio {:.2}); service RSS +{:.0} MiB",
        load / duck_load,
        rss_after - rss_before
    );
    println!(
        "{:<26} {:>6} {:>11} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "query (median of runs)",
        "rows",
        "service ms",
        "cached ms",
        "engine ms",
        "DuckDB ms",
        "svc/duck",
        "eng/duck"
    );
    for (id, service, cached, engine, rows) in ours {
        let theirs = duck["timings"]["queries"][id].as_f64().unwrap_or(f64::NAN);
        println!(
            "{id:<26} {rows:>6} {:>11.2} {:>10.2} {:>10.2} {:>10.2} {:>9.2} {:>9.2}",
            service * 1e3,
            cached * 1e3,
            engine * 1e3,
            theirs * 1e3,
            service / theirs,
            engine / theirs
        );
    }
    println!(
        "service: a new request over gRPC through the client crate, all pages; cached: the same request \
         again (answer cache); engine: the query planned and run in-process (query::run); DuckDB: \
         in-process query on its prepared table"
    );
}
