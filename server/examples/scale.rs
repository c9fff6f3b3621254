//! Scale benchmark: the real server binary over one large organisation's CUR 2.0 export.
//!
//! Run through `scripts/bench-scale.sh [ARGS]`, which builds the server and this example in
//! release mode first. For each size (`--rows 1M,5M,10M,20M` is a growth series) it
//! 1. generates the export once with [`generate_scale`] under `--data-dir` (reused later
//!    when the folder's `complete.json` marker says the generation finished);
//! 2. spawns the server binary as a child process (`--refresh-interval 0`, plus a fresh
//!    `--cache-dir` when the binary has that flag) and times the cold start until the
//!    standard gRPC health service answers SERVING; reads its peak and current RSS;
//! 3. asks five questions through the client crate, each `--runs` times over a range
//!    never asked before (the whole data span with its end moved back by k hours on call
//!    k), and each a second time unchanged (a repeat);
//! 4. puts it under load: `--load-callers` connections ask the five questions in a loop
//!    for `--load-seconds`, each request over a range of its own;
//! 5. restarts it with the same `--cache-dir` and times the way back to SERVING;
//! 6. has DuckDB answer the same questions over the same ranges from the raw parquet
//!    files (`server/tests/reference/duckdb_raw.py`), with the server stopped;
//!
//! and prints one markdown table per size.

use std::{
    collections::BTreeMap,
    io::Write,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bedrock_attribution_client::{Client, Error as ClientError, code_name, proto, time_range};
use bedrock_attribution_server::demo::scale::{
    ScaleConfig, ScaleExport, TEAM_TAG_KEY, generate_scale,
};
use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::{Value, json};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Scale benchmark of the attribution server against DuckDB on the raw files.
#[derive(Debug, Parser)]
#[command(name = "scale")]
struct Args {
    /// Line items per month; a comma-separated list runs a growth series (1M,5M,10M,20M).
    #[arg(long, value_delimiter = ',', value_parser = parse_count, default_value = "10000000")]
    rows: Vec<usize>,
    /// Billing periods (each of --rows line items).
    #[arg(long, default_value_t = 1)]
    months: u32,
    /// Where datasets are generated, one subfolder per (rows, months, seed), and reused.
    #[arg(long, default_value = "/work/scale-data")]
    data_dir: PathBuf,
    /// New questions (distinct ranges) per question type.
    #[arg(long, default_value_t = 9)]
    runs: usize,
    /// Duration of the load test.
    #[arg(long, default_value_t = 20)]
    load_seconds: u64,
    /// Concurrent clients of the load test, each with its own connection.
    #[arg(long, default_value_t = 64)]
    load_callers: usize,
    /// The server binary (default: ../bedrock-attribution-server next to this example).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Skip the DuckDB comparison.
    #[arg(long)]
    skip_duckdb: bool,
    /// Skip the load test.
    #[arg(long)]
    skip_load: bool,
    /// Only generate the datasets.
    #[arg(long)]
    generate_only: bool,
    /// Seed of the generator.
    #[arg(long, default_value_t = ScaleConfig::default().seed)]
    seed: u64,
    /// Distinct callers.
    #[arg(long, default_value_t = ScaleConfig::default().callers)]
    callers: usize,
    /// Data files per billing period.
    #[arg(long, default_value_t = ScaleConfig::default().chunks)]
    chunks: usize,
    /// Longest wait for the server to answer SERVING.
    #[arg(long, default_value_t = 1800)]
    start_timeout_seconds: u64,
    /// Serve the export in its CSV form (gzip CSV, written once beside the parquet
    /// dataset and reused) instead of parquet, to compare load time and peak memory.
    #[arg(long)]
    csv: bool,
    /// Ask the questions and run the load against a server already serving the dataset
    /// at this URL (for profiling it), instead of starting one.
    #[arg(long)]
    attach: Option<String>,
}

/// `10000000`, `10M`, `200k`, `1.5M`.
fn parse_count(s: &str) -> Result<usize, String> {
    let t = s.trim().replace('_', "");
    let (number, factor) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G' | 'b' | 'B') => (&t[..t.len() - 1], 1e9),
        _ => (t.as_str(), 1.0),
    };
    let value: f64 = number
        .parse()
        .map_err(|e| format!("{s:?} is not a count: {e}"))?;
    if value.is_nan() || value <= 0.0 {
        return Err(format!("{s:?} must be positive"));
    }
    Ok((value * factor).round() as usize)
}

const MIB: f64 = 1024.0 * 1024.0;

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `(VmHWM, VmRSS)` of a process, in bytes.
fn memory(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// Nearest-rank percentile; NaN for no samples.
fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

// ------------------------------------------------------------------------------------
// Datasets
// ------------------------------------------------------------------------------------

struct Dataset {
    cfg: ScaleConfig,
    root: PathBuf,
    export: ScaleExport,
    generation_s: f64,
    generation_peak: u64,
    reused: bool,
}

/// The CSV form of the export at `root`, written once beside it (`acme-cur2-csv`).
fn csv_form(root: &Path) -> PathBuf {
    let csv = root.with_file_name("acme-cur2-csv");
    let marker = root.with_file_name("csv-complete");
    if !marker.exists() {
        if csv.exists() {
            std::fs::remove_dir_all(&csv).expect("remove the incomplete CSV form");
        }
        let started = Instant::now();
        let files = bedrock_attribution_server::demo::csv_form::convert_export(root, &csv)
            .expect("write the CSV form");
        let bytes: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "CSV form: {} files, {:.0} MiB gzip, written in {:.1} s",
            files.len(),
            bytes as f64 / MIB,
            started.elapsed().as_secs_f64()
        );
        std::fs::write(&marker, b"done").expect("write the CSV marker");
    }
    println!("serving the CSV form at {}", csv.display());
    csv
}

fn dataset(args: &Args, rows: usize) -> Dataset {
    let cfg = ScaleConfig {
        seed: args.seed,
        rows_per_month: rows,
        months: args.months,
        callers: args.callers,
        chunks: args.chunks,
        ..ScaleConfig::default()
    };
    let folder = args.data_dir.join(format!(
        "rows{rows}-months{}-seed{}-callers{}-chunks{}",
        cfg.months, cfg.seed, cfg.callers, cfg.chunks
    ));
    let root = std::path::absolute(folder.join("acme-cur2")).expect("absolute dataset path");
    let marker = folder.join("complete.json");
    if let Some(done) = std::fs::read(&marker)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        let files = done["files"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(PathBuf::from))
                    .collect()
            })
            .unwrap_or_default();
        let export = ScaleExport {
            periods: done["periods"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            rows: done["rows"].as_u64().unwrap_or(0) as usize,
            bedrock_rows: done["bedrock_rows"].as_u64().unwrap_or(0) as usize,
            bytes: done["bytes"].as_u64().unwrap_or(0),
            files,
        };
        println!(
            "dataset {}: reusing {} line items ({:.0} MiB)",
            folder.display(),
            thousands(export.rows as u64),
            export.bytes as f64 / MIB
        );
        return Dataset {
            cfg,
            root,
            export,
            generation_s: done["generation_s"].as_f64().unwrap_or(f64::NAN),
            generation_peak: done["generation_peak_rss"].as_u64().unwrap_or(0),
            reused: true,
        };
    }
    if folder.exists() {
        std::fs::remove_dir_all(&folder).expect("remove the incomplete dataset folder");
    }
    std::fs::create_dir_all(&folder).expect("create the dataset folder");
    // Reset this process's peak RSS so that it measures the generator alone.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    println!(
        "dataset {}: generating {} months x {} line items ...",
        folder.display(),
        cfg.months,
        thousands(rows as u64)
    );
    let started = Instant::now();
    let export = generate_scale(&root, &cfg).expect("generate the scale dataset");
    let generation_s = started.elapsed().as_secs_f64();
    let (generation_peak, _) = memory("self");
    println!(
        "dataset: {} line items ({} Bedrock), {:.0} MiB in {:.1} s, generator peak RSS {:.0} MiB",
        thousands(export.rows as u64),
        thousands(export.bedrock_rows as u64),
        export.bytes as f64 / MIB,
        generation_s,
        generation_peak as f64 / MIB
    );
    let done = json!({
        "config": format!("{cfg:?}"),
        "periods": export.periods,
        "rows": export.rows,
        "bedrock_rows": export.bedrock_rows,
        "bytes": export.bytes,
        "files": export.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "generation_s": generation_s,
        "generation_peak_rss": generation_peak,
    });
    std::fs::write(
        &marker,
        serde_json::to_vec_pretty(&done).expect("marker json"),
    )
    .expect("write the completion marker");
    Dataset {
        cfg,
        root,
        export,
        generation_s,
        generation_peak,
        reused: false,
    }
}

// ------------------------------------------------------------------------------------
// The server as a child process
// ------------------------------------------------------------------------------------

struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

fn free_port() -> SocketAddr {
    // Bind, read the port back and release it; good enough for a benchmark.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

fn has_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(false)
}

fn spawn(bin: &Path, root: &Path, cache_dir: Option<&Path>, log: PathBuf) -> Server {
    let addr = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("--source")
        .arg(format!("file://{}", root.display()))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--refresh-interval")
        .arg("0");
    if let Some(dir) = cache_dir {
        cmd.arg("--cache-dir").arg(dir);
    }
    let out = std::fs::File::create(&log).expect("server log file");
    let err = out.try_clone().expect("server log file");
    let child = cmd
        .env("RUST_LOG", "warn,bedrock_attribution_server=info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    Server { child, addr, log }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Polls the health service every 50 ms until it answers SERVING.
    async fn wait_serving(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut health: Option<HealthClient<tonic::transport::Channel>> = None;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the server exited ({status}) before serving; log {}:\n{}",
                    self.log.display(),
                    log_tail(&self.log)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("the server was not SERVING after {timeout:?}"));
            }
            if health.is_none()
                && let Ok(endpoint) = tonic::transport::Endpoint::from_shared(self.url())
                && let Ok(channel) = endpoint
                    .connect_timeout(Duration::from_secs(1))
                    .connect()
                    .await
            {
                health = Some(HealthClient::new(channel));
            }
            if let Some(client) = health.as_mut() {
                let answer = client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                match answer {
                    Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                    Ok(_) => {}
                    Err(_) => health = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after a minute).
    fn terminate(mut self) -> Option<f64> {
        let started = Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(self.pid()).status();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(started.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("server did not stop within 60 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

// ------------------------------------------------------------------------------------
// The five questions
// ------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    TopArn,
    Role,
    Team,
    ModelDaily,
    OneCaller,
    TeamEfficiency,
}

/// The questions timed one by one (the five, then the efficiency view).
const QUESTIONS: [Question; 6] = [
    Question::TopArn,
    Question::Role,
    Question::Team,
    Question::ModelDaily,
    Question::OneCaller,
    Question::TeamEfficiency,
];

/// The mix of the load test: the five questions, so that its figures compare
/// across runs.
const LOAD_QUESTIONS: [Question; 5] = [
    Question::TopArn,
    Question::Role,
    Question::Team,
    Question::ModelDaily,
    Question::OneCaller,
];

impl Question {
    fn id(self) -> &'static str {
        match self {
            Question::TopArn => "top100_arn",
            Question::Role => "by_role",
            Question::Team => "by_team_tag",
            Question::ModelDaily => "model_daily_tokens",
            Question::OneCaller => "one_caller_daily",
            Question::TeamEfficiency => "team_efficiency",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Question::TopArn => "CostByPrincipal ARN, top 100 (1 page)",
            Question::Role => "CostByPrincipal ROLE, all pages",
            Question::Team => "CostByTag iamPrincipal/team, all pages",
            Question::ModelDaily => "TokenUsage MODEL x DAILY, all pages",
            Question::OneCaller => "CostByPrincipal 1 ARN x DAILY",
            Question::TeamEfficiency => "TokenUsage TAG team, efficiency",
        }
    }

    /// Asks the question over `[start, end)`; the number of answer rows.
    async fn ask(
        self,
        client: &Client,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        busy_arn: &str,
    ) -> Result<usize, ClientError> {
        let range = Some(time_range(start, end));
        match self {
            Question::TopArn => client
                .cost_by_principal(proto::CostByPrincipalRequest {
                    time_range: range,
                    grouping: proto::PrincipalGrouping::Arn.into(),
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .map(|r| r.rows.len()),
            Question::Role => client
                .cost_by_principal_all(proto::CostByPrincipalRequest {
                    time_range: range,
                    grouping: proto::PrincipalGrouping::Role.into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.rows.len()),
            Question::Team => client
                .cost_by_tag_all(proto::CostByTagRequest {
                    time_range: range,
                    tag_key: TEAM_TAG_KEY.to_owned(),
                    ..Default::default()
                })
                .await
                .map(|r| r.rows.len()),
            Question::ModelDaily => client
                .token_usage_all(proto::TokenUsageRequest {
                    time_range: range,
                    group_by: vec![proto::Dimension::Model.into()],
                    granularity: proto::Granularity::Daily.into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.rows.len()),
            Question::OneCaller => client
                .cost_by_principal_all(proto::CostByPrincipalRequest {
                    time_range: range,
                    filter: Some(proto::Filter {
                        principals: vec![busy_arn.to_owned()],
                        ..Default::default()
                    }),
                    grouping: proto::PrincipalGrouping::Arn.into(),
                    granularity: proto::Granularity::Daily.into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.rows.len()),
            Question::TeamEfficiency => client
                .token_usage_all(proto::TokenUsageRequest {
                    time_range: range,
                    group_by: vec![proto::Dimension::Tag.into()],
                    tag_key: TEAM_TAG_KEY.to_owned(),
                    efficiency: true,
                    ..Default::default()
                })
                .await
                .map(|r| r.rows.len()),
        }
    }

    /// The same question for `duckdb_raw.py`.
    fn duckdb(self, start: DateTime<Utc>, end: DateTime<Utc>, busy_arn: &str) -> Value {
        let rfc = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut spec = json!({"id": self.id(), "start": rfc(start), "end": rfc(end)});
        let extra = match self {
            Question::TopArn => json!({"question": "principal_arn", "limit": 100}),
            Question::Role => json!({"question": "principal_role"}),
            Question::Team => json!({"question": "tag", "tag_key": TEAM_TAG_KEY}),
            Question::ModelDaily => json!({"question": "model", "granularity": "daily"}),
            Question::OneCaller => json!({"question": "principal_arn", "granularity": "daily",
                "principals": [busy_arn]}),
            Question::TeamEfficiency => {
                json!({"question": "tag", "tag_key": TEAM_TAG_KEY, "efficiency": true})
            }
        };
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        spec
    }
}

#[derive(Default)]
struct QuestionResult {
    new_s: Vec<f64>,
    repeat_s: Vec<f64>,
    rows: usize,
    errors: Vec<String>,
    duckdb_s: Vec<f64>,
    duckdb_rows: Option<u64>,
}

/// The caller with the most line items in the data.
async fn busiest_caller(client: &Client, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let list = client
        .list_principals_all(proto::ListPrincipalsRequest {
            time_range: Some(time_range(start, end)),
            page_size: 10_000,
            ..Default::default()
        })
        .await
        .expect("ListPrincipals");
    list.principals
        .iter()
        .filter_map(|p| Some((p.principal.as_ref()?.arn.clone(), p.line_items)))
        .filter(|(arn, _)| !arn.is_empty())
        .max_by_key(|(arn, n)| (*n, std::cmp::Reverse(arn.clone())))
        .map(|(arn, _)| arn)
        .expect("at least one caller in the data")
}

// ------------------------------------------------------------------------------------
// Load test
// ------------------------------------------------------------------------------------

struct LoadResult {
    elapsed_s: f64,
    ok: usize,
    latencies_s: Vec<f64>,
    errors: BTreeMap<&'static str, usize>,
}

async fn load(
    url: &str,
    callers: usize,
    seconds: u64,
    span: (DateTime<Utc>, DateTime<Utc>),
    skip_hours: i64,
    busy_arn: &str,
) -> LoadResult {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    // Distinct ranges: the end moves back one second per request, after the whole hours
    // the new-question runs used; it wraps only after half the data span of requests.
    let room = ((span.1 - span.0).num_seconds() / 2 - skip_hours * 3600).max(1) as u64;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let counter = Arc::clone(&counter);
        let url = url.to_owned();
        let arn = busy_arn.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut samples: Vec<(f64, tonic::Code)> = Vec::new();
            let client = match Client::builder(url)
                .request_timeout(Duration::from_secs(120))
                .build()
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    samples.push((0.0, e.code()));
                    return samples;
                }
            };
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let question = LOAD_QUESTIONS[(n % LOAD_QUESTIONS.len() as u64) as usize];
                let end = span.1
                    - chrono::Duration::hours(skip_hours)
                    - chrono::Duration::seconds((n % room) as i64 + 1);
                let t0 = Instant::now();
                let result = question.ask(&client, span.0, end, &arn).await;
                let code = result.map_or_else(|e| e.code(), |_| tonic::Code::Ok);
                samples.push((t0.elapsed().as_secs_f64(), code));
            }
            samples
        }));
    }
    let mut result = LoadResult {
        elapsed_s: 0.0,
        ok: 0,
        latencies_s: Vec::new(),
        errors: BTreeMap::new(),
    };
    for task in tasks {
        match task.await {
            Ok(samples) => {
                for (latency, code) in samples {
                    if code == tonic::Code::Ok {
                        result.ok += 1;
                        result.latencies_s.push(latency);
                    } else {
                        *result.errors.entry(code_name(code)).or_default() += 1;
                    }
                }
            }
            Err(_) => *result.errors.entry("TASK_PANICKED").or_default() += 1,
        }
    }
    result.elapsed_s = started.elapsed().as_secs_f64();
    result
}

/// The load test with the arguments' callers and duration, after the new-question
/// runs' hours, printed in one line.
async fn load_and_report(
    args: &Args,
    url: &str,
    span: (DateTime<Utc>, DateTime<Utc>),
    busy_arn: &str,
) -> LoadResult {
    let result = load(
        url,
        args.load_callers,
        args.load_seconds,
        span,
        args.runs as i64 + 1,
        busy_arn,
    )
    .await;
    println!(
        "load: {} callers x {} s: {:.1} answers/s, p50 {:.1} ms, p99 {:.1} ms, errors {:?}",
        args.load_callers,
        args.load_seconds,
        result.ok as f64 / result.elapsed_s,
        median(&result.latencies_s) * 1e3,
        percentile(&result.latencies_s, 0.99) * 1e3,
        result.errors
    );
    result
}

// ------------------------------------------------------------------------------------
// DuckDB
// ------------------------------------------------------------------------------------

fn run_duckdb(files: &[PathBuf], queries: Vec<Value>) -> Result<Value, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/duckdb_raw.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let spec = json!({
        "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "queries": queries,
        "repeat": 1,
    });
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(spec.to_string().as_bytes())
        .map_err(|e| format!("cannot send the spec: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("duckdb_raw.py: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "duckdb_raw.py failed ({}); is duckdb installed (pip install duckdb==1.4.4)?",
            out.status
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("duckdb_raw.py output: {e}"))
}

// ------------------------------------------------------------------------------------
// One size
// ------------------------------------------------------------------------------------

struct Report {
    data: Dataset,
    cache_dir_flag: bool,
    cold_start_s: f64,
    restart_s: Option<f64>,
    peak_load: u64,
    rss_load: u64,
    peak_end: u64,
    rss_end: u64,
    busy_arn: String,
    questions: Vec<(Question, QuestionResult)>,
    load: Option<LoadResult>,
    duckdb_first_s: Option<f64>,
    duckdb_error: Option<String>,
}

async fn bench_size(args: &Args, bin: &Path, data: Dataset) -> Report {
    let cache_dir_flag = has_flag(bin, "--cache-dir");
    let cache = cache_dir_flag.then(|| {
        tempfile::Builder::new()
            .prefix("scale-cache-")
            .tempdir_in(&args.data_dir)
            .expect("cache temp dir")
    });
    let folder = data
        .root
        .parent()
        .map_or_else(|| args.data_dir.clone(), Path::to_path_buf);
    let timeout = Duration::from_secs(args.start_timeout_seconds);

    // Cold start.
    let started = Instant::now();
    let mut server = spawn(
        bin,
        &data.root,
        cache.as_ref().map(|c| c.path()),
        folder.join("server-cold.log"),
    );
    if let Err(e) = server.wait_serving(timeout).await {
        let _ = server.child.kill();
        panic!("cold start: {e}");
    }
    let cold_start_s = started.elapsed().as_secs_f64();
    let (peak_load, rss_load) = memory(&server.pid());
    println!(
        "cold start {cold_start_s:.2} s; peak RSS {:.0} MiB, RSS {:.0} MiB",
        peak_load as f64 / MIB,
        rss_load as f64 / MIB
    );

    let client = Client::connect(server.url()).await.expect("connect");
    match client.data_status(proto::DataStatusRequest {}).await {
        Ok(status) => {
            let served = status.total_line_items;
            println!(
                "server holds {} Bedrock line items in {} periods (generator: {}){}",
                thousands(served.max(0) as u64),
                status.periods.len(),
                thousands(data.export.bedrock_rows as u64),
                if served == data.export.bedrock_rows as i64 {
                    ""
                } else {
                    "  <- MISMATCH"
                }
            );
        }
        Err(e) => eprintln!("DataStatus: {e}"),
    }
    let (span_start, span_end) = data.cfg.span();
    let busy_arn = busiest_caller(&client, span_start, span_end).await;
    println!("busiest caller: {busy_arn}");

    // New questions, then the same request again.
    let mut questions = Vec::new();
    for question in QUESTIONS {
        let mut result = QuestionResult::default();
        for k in 1..=args.runs {
            let end = span_end - chrono::Duration::hours(k as i64);
            let t0 = Instant::now();
            match question.ask(&client, span_start, end, &busy_arn).await {
                Ok(rows) => {
                    result.new_s.push(t0.elapsed().as_secs_f64());
                    result.rows = rows;
                }
                Err(e) => result.errors.push(format!("new, end -{k} h: {e}")),
            }
            let t0 = Instant::now();
            match question.ask(&client, span_start, end, &busy_arn).await {
                Ok(_) => result.repeat_s.push(t0.elapsed().as_secs_f64()),
                Err(e) => result.errors.push(format!("repeat, end -{k} h: {e}")),
            }
        }
        println!(
            "{:<40} new median {:>9.1} ms  p90 {:>9.1} ms  repeat {:>7.2} ms  rows {}{}",
            question.label(),
            median(&result.new_s) * 1e3,
            percentile(&result.new_s, 0.9) * 1e3,
            median(&result.repeat_s) * 1e3,
            result.rows,
            if result.errors.is_empty() {
                String::new()
            } else {
                format!("  ERRORS: {}", result.errors.join("; "))
            }
        );
        questions.push((question, result));
    }

    let load = if args.skip_load {
        None
    } else {
        Some(load_and_report(args, &server.url(), (span_start, span_end), &busy_arn).await)
    };
    let (peak_end, rss_end) = memory(&server.pid());
    drop(client);

    // Restart with the same cache folder.
    server.terminate();
    let restart_s = if let Some(cache) = cache.as_ref() {
        let started = Instant::now();
        let mut again = spawn(
            bin,
            &data.root,
            Some(cache.path()),
            folder.join("server-restart.log"),
        );
        let result = again.wait_serving(timeout).await;
        let elapsed = started.elapsed().as_secs_f64();
        again.terminate();
        match result {
            Ok(()) => Some(elapsed),
            Err(e) => {
                eprintln!("restart: {e}");
                None
            }
        }
    } else {
        None
    };

    // DuckDB on the raw files, with the server stopped.
    let mut duckdb_first_s = None;
    let mut duckdb_error = None;
    if !args.skip_duckdb {
        let mut specs = Vec::new();
        for question in QUESTIONS {
            for k in 1..=args.runs {
                let end = span_end - chrono::Duration::hours(k as i64);
                specs.push(question.duckdb(span_start, end, &busy_arn));
            }
        }
        println!("DuckDB: {} queries on the raw files ...", specs.len());
        match run_duckdb(&data.export.files, specs) {
            Ok(out) => {
                duckdb_first_s = out["first_query_s"].as_f64();
                for (question, result) in &mut questions {
                    result.duckdb_s = out["timings"][question.id()]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_f64).collect())
                        .unwrap_or_default();
                    result.duckdb_rows = out["rows"][question.id()].as_u64();
                }
            }
            Err(e) => {
                eprintln!("DuckDB: {e}");
                duckdb_error = Some(e);
            }
        }
    }
    Report {
        data,
        cache_dir_flag,
        cold_start_s,
        restart_s,
        peak_load,
        rss_load,
        peak_end,
        rss_end,
        busy_arn,
        questions,
        load,
        duckdb_first_s,
        duckdb_error,
    }
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else if v < 0.01 {
        format!("{:.2}", v * 1e3)
    } else {
        format!("{:.1}", v * 1e3)
    }
}

fn print_report(args: &Args, r: &Report) {
    let d = &r.data;
    let bedrock = d.export.bedrock_rows.max(1) as f64;
    println!();
    println!(
        "### {} line items x {} month{} (seed {}, {} callers)",
        thousands(d.cfg.rows_per_month as u64),
        d.cfg.months,
        if d.cfg.months == 1 { "" } else { "s" },
        d.cfg.seed,
        d.cfg.callers
    );
    println!();
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| rows (all services) | {} |",
        thousands(d.export.rows as u64)
    );
    println!(
        "| Bedrock line items | {} |",
        thousands(d.export.bedrock_rows as u64)
    );
    println!(
        "| parquet MiB | {:.0} ({:.1} bytes per row, {} files) |",
        d.export.bytes as f64 / MIB,
        d.export.bytes as f64 / d.export.rows.max(1) as f64,
        d.export.files.len()
    );
    println!(
        "| generation s / peak RSS MiB | {:.1} / {:.0}{} |",
        d.generation_s,
        d.generation_peak as f64 / MIB,
        if d.reused {
            " (earlier run, reused)"
        } else {
            ""
        }
    );
    println!("| cold start s | {:.2} |", r.cold_start_s);
    println!(
        "| restart s | {} |",
        match (r.cache_dir_flag, r.restart_s) {
            (false, _) => "n/a (server has no --cache-dir)".to_owned(),
            (true, Some(s)) => format!("{s:.2}"),
            (true, None) => "failed".to_owned(),
        }
    );
    println!(
        "| peak RSS MiB (load / serving) | {:.0} / {:.0} |",
        r.peak_load as f64 / MIB,
        r.peak_end as f64 / MIB
    );
    println!(
        "| RSS MiB after load / at end | {:.0} / {:.0} |",
        r.rss_load as f64 / MIB,
        r.rss_end as f64 / MIB
    );
    println!(
        "| bytes per Bedrock line item (RSS after load; peak) | {:.0}; {:.0} |",
        r.rss_load as f64 / bedrock,
        r.peak_load as f64 / bedrock
    );
    for (q, res) in &r.questions {
        let duck = median(&res.duckdb_s);
        let ours = median(&res.new_s);
        println!(
            "| {} | new {} ms (p90 {}) / DuckDB {} ms / ratio {} ; repeat {} ms ; {} rows{}{} |",
            q.label(),
            ms(ours),
            ms(percentile(&res.new_s, 0.9)),
            ms(duck),
            if duck.is_nan() || ours.is_nan() {
                "-".to_owned()
            } else {
                format!("{:.2}", ours / duck)
            },
            ms(median(&res.repeat_s)),
            res.rows,
            res.duckdb_rows
                .map(|n| format!(" (DuckDB {n})"))
                .unwrap_or_default(),
            if res.errors.is_empty() {
                String::new()
            } else {
                format!(" ; {} errors", res.errors.len())
            }
        );
    }
    if let Some(first) = r.duckdb_first_s {
        println!("| DuckDB first query s (cold files) | {first:.2} |");
    }
    if let Some(e) = &r.duckdb_error {
        println!("| DuckDB | failed: {e} |");
    }
    match &r.load {
        Some(l) => println!(
            "| load: {} callers x {} s | {:.1} answers/s, p50 {} ms, p99 {} ms, errors {} |",
            args.load_callers,
            args.load_seconds,
            l.ok as f64 / l.elapsed_s,
            ms(median(&l.latencies_s)),
            ms(percentile(&l.latencies_s, 0.99)),
            if l.errors.is_empty() {
                "0".to_owned()
            } else {
                l.errors
                    .iter()
                    .map(|(code, n)| format!("{code} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        None => println!("| load | skipped |"),
    }
    println!();
    println!(
        "new: a range never asked before (end moved back k hours, k = 1..{}), through the client crate; \
         repeat: the same request again; DuckDB: one SQL statement over read_parquet of the raw files per \
         question (duckdb_raw.py), same ranges; one-caller question on {}.",
        args.runs, r.busy_arn
    );
}

fn print_growth(reports: &[Report]) {
    println!();
    println!("### growth series");
    println!();
    let mut header = String::from(
        "| rows/month | Bedrock items | parquet MiB | cold s | restart s | peak MiB | B/item |",
    );
    let mut rule = String::from("|---|---|---|---|---|---|---|");
    for q in QUESTIONS {
        header.push_str(&format!(" {} ms (x DuckDB) |", q.id()));
        rule.push_str("---|");
    }
    header.push_str(" load ans/s |");
    rule.push_str("---|");
    println!("{header}");
    println!("{rule}");
    for r in reports {
        let mut line = format!(
            "| {} | {} | {:.0} | {:.2} | {} | {:.0} | {:.0} |",
            thousands(r.data.cfg.rows_per_month as u64),
            thousands(r.data.export.bedrock_rows as u64),
            r.data.export.bytes as f64 / MIB,
            r.cold_start_s,
            r.restart_s.map_or("n/a".to_owned(), |s| format!("{s:.2}")),
            r.peak_end as f64 / MIB,
            r.rss_load as f64 / r.data.export.bedrock_rows.max(1) as f64,
        );
        for (_, res) in &r.questions {
            let ours = median(&res.new_s);
            let duck = median(&res.duckdb_s);
            line.push_str(&format!(
                " {} ({}) |",
                ms(ours),
                if duck.is_nan() {
                    "-".to_owned()
                } else {
                    format!("{:.2}", ours / duck)
                }
            ));
        }
        line.push_str(&match &r.load {
            Some(l) => format!(" {:.1} |", l.ok as f64 / l.elapsed_s),
            None => " - |".to_owned(),
        });
        println!("{line}");
    }
}

/// The questions and the load against a server someone else started.
async fn attached(args: &Args, url: &str, data: &Dataset) {
    let client = Client::connect(url.to_owned()).await.expect("connect");
    let (span_start, span_end) = data.cfg.span();
    let busy_arn = busiest_caller(&client, span_start, span_end).await;
    for question in QUESTIONS {
        let mut times = Vec::new();
        for k in 1..=args.runs {
            let end = span_end - chrono::Duration::hours(k as i64);
            let t0 = Instant::now();
            if let Err(e) = question.ask(&client, span_start, end, &busy_arn).await {
                println!("{}: {e}", question.label());
            }
            times.push(t0.elapsed().as_secs_f64());
        }
        println!(
            "{:<40} new median {:>9.1} ms",
            question.label(),
            median(&times) * 1e3
        );
    }
    if !args.skip_load {
        load_and_report(args, url, (span_start, span_end), &busy_arn).await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data_dir).expect("create --data-dir");
    let bin = args.server_bin.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("current exe");
        exe.parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("bedrock-attribution-server"))
            .expect("a folder above the example")
    });
    if !args.generate_only && !bin.is_file() {
        panic!(
            "server binary {} not found: build it (cargo build --release -p bedrock-attribution-server) or pass --server-bin",
            bin.display()
        );
    }
    let mut reports = Vec::new();
    for rows in args.rows.clone() {
        let mut data = dataset(&args, rows);
        if args.csv {
            data.root = csv_form(&data.root);
        }
        if args.generate_only {
            continue;
        }
        if let Some(url) = &args.attach {
            attached(&args, url, &data).await;
            continue;
        }
        let report = bench_size(&args, &bin, data).await;
        print_report(&args, &report);
        reports.push(report);
    }
    if reports.len() > 1 {
        print_growth(&reports);
    }
}
