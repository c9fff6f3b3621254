//! Query latency of the service against DuckDB on the same generated CUR 2.0 files.
//!
//! Run: `cargo run --release -p bedrock-attribution-server --example bench [-- --repeat 15]`
//! (needs `python3` with the `duckdb` package). It writes the `--demo` dataset to a temp
//! folder, starts the real server on loopback, times each query through the client
//! crate (all pages), then has DuckDB answer the same queries in-process from a table
//! it builds with the same rules, and prints both medians and their ratio.

use std::{io::Write, process::Command, time::Instant};

use bedrock_attribution_client::{Client, proto};
use bedrock_attribution_server::{
    Config,
    demo::{DemoConfig, generate},
    server,
};
use clap::Parser;
use serde_json::{Value, json};

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

type Query = (&'static str, Value, proto::TokenUsageRequest);

fn queries() -> Vec<Query> {
    use proto::{Dimension as D, Granularity as Gr, PrincipalGrouping as G};
    let (start, end) = ("2026-03-01T00:00:00Z", "2026-11-01T00:00:00Z");
    let range = Some(proto::TimeRange {
        start: Some(prost_types::Timestamp {
            seconds: 1_772_323_200,
            nanos: 0,
        }),
        end: Some(prost_types::Timestamp {
            seconds: 1_793_491_200,
            nanos: 0,
        }),
    });
    let spec = |g: &str, by: &[&str], tag: &str| json!({"start": start, "end": end, "metric": "unblended", "granularity": g, "group_by": by, "tag_key": tag});
    let req = |g: Gr, by: Vec<D>, grouping: G| proto::TokenUsageRequest {
        time_range: range,
        granularity: g.into(),
        group_by: by.into_iter().map(Into::into).collect(),
        principal_grouping: grouping.into(),
        tag_key: "iamPrincipal/team".into(),
        page_size: 10_000,
        ..Default::default()
    };
    vec![
        (
            "principal_arn_whole",
            spec("none", &["principal_arn"], ""),
            req(Gr::Unspecified, vec![D::Principal], G::Arn),
        ),
        (
            "role_model_monthly",
            spec("monthly", &["principal_role", "model"], ""),
            req(Gr::Monthly, vec![D::Principal, D::Model], G::Role),
        ),
        (
            "team_tag_monthly",
            spec("monthly", &["tag"], "iamPrincipal/team"),
            req(Gr::Monthly, vec![D::Tag], G::Arn),
        ),
        (
            "arn_model_category_daily",
            spec("daily", &["principal_arn", "model", "usage_category"], ""),
            req(
                Gr::Daily,
                vec![D::Principal, D::Model, D::UsageCategory],
                G::Arn,
            ),
        ),
        (
            "model_region_whole",
            spec("none", &["model", "region"], ""),
            req(Gr::Unspecified, vec![D::Model, D::Region], G::Arn),
        ),
    ]
}

#[tokio::main]
async fn main() {
    let repeat: usize = std::env::args()
        .skip_while(|a| a != "--repeat")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(15);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("acme-cur2");
    let written = generate(&root, &DemoConfig::demo()).expect("generate");
    let bytes: u64 = walk_size(&root);
    println!(
        "dataset: {} periods, {} line items, {:.1} MiB of parquet",
        written.periods.len(),
        written.line_items,
        bytes as f64 / 1048576.0
    );

    let rss_before = rss_mib();
    let config = Config::try_parse_from([
        "bench",
        "--listen",
        "127.0.0.1:0",
        "--refresh-interval",
        "0",
        "--source",
        &format!("file://{}", root.display()),
    ])
    .expect("config");
    let catalog =
        server::catalog(&config.data.sources, config.data.product_codes.clone()).expect("catalog");
    let started = Instant::now();
    let handle = server::start(&config, catalog).await.expect("start");
    handle.ready().await;
    let load = started.elapsed().as_secs_f64();
    let rss_after = rss_mib();
    let client = Client::connect(format!("http://{}", handle.addr()))
        .await
        .expect("connect");

    let mut ours = Vec::new();
    for (id, _, request) in queries() {
        let mut runs = Vec::new();
        let mut rows = 0;
        for _ in 0..repeat.max(1) {
            let t0 = Instant::now();
            let all = client
                .token_usage_all(request.clone())
                .await
                .expect("query");
            runs.push(t0.elapsed().as_secs_f64());
            rows = all.rows.len();
        }
        ours.push((id, median(runs), rows));
    }
    handle.shutdown().await.expect("shutdown");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/duckdb_reference.py"
    );
    let specs: Vec<Value> = queries()
        .into_iter()
        .map(|(id, mut spec, _)| {
            spec["id"] = json!(id);
            spec
        })
        .collect();
    let mut child = Command::new("python3")
        .args([script, "--repeat", &repeat.max(1).to_string()])
        .arg(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with duckdb");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json!({"queries": specs}).to_string().as_bytes())
        .expect("write specs");
    let out = child.wait_with_output().expect("duckdb run");
    let duck: Value = serde_json::from_slice(&out.stdout).expect("duckdb output");

    println!(
        "load + normalize: service {:.2} s, DuckDB {:.2} s (ratio {:.2}); service RSS +{:.0} MiB",
        load,
        duck["timings"]["load_s"].as_f64().unwrap_or(f64::NAN),
        load / duck["timings"]["load_s"].as_f64().unwrap_or(f64::NAN),
        rss_after - rss_before
    );
    println!(
        "{:<28} {:>7} {:>12} {:>12} {:>8}",
        "query (median of runs)", "rows", "service ms", "DuckDB ms", "ratio"
    );
    for (id, secs, rows) in ours {
        let theirs = duck["timings"]["queries"][id].as_f64().unwrap_or(f64::NAN);
        println!(
            "{id:<28} {rows:>7} {:>12.2} {:>12.2} {:>8.2}",
            secs * 1e3,
            theirs * 1e3,
            secs / theirs
        );
    }
    println!(
        "service: gRPC round trip through the client crate, all pages; DuckDB: in-process query on its prepared table (no RPC)"
    );
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
