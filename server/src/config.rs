//! Command-line and environment configuration. Every flag has an environment variable
//! `BEDROCK_ATTRIBUTION_*`; S3 also reads the standard AWS variables.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, ValueEnum};
use url::Url;

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
    /// Who may call, and what each caller sees.
    #[command(flatten)]
    pub auth: AuthConfig,
    /// TLS of the gRPC listener.
    #[command(flatten)]
    pub tls: TlsConfig,
    /// What one request may ask and use.
    #[command(flatten)]
    pub limits: LimitsConfig,
    /// Metrics, logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// Budget definitions and where API-created budgets are kept.
    #[command(flatten)]
    pub budgets: BudgetsConfig,
}

/// Budgets: the definitions file and the state file of budgets created through the API.
#[derive(Debug, Clone, Args)]
pub struct BudgetsConfig {
    /// Budgets file (YAML or JSON; a ConfigMap in Kubernetes): read-only definitions,
    /// re-read when it changes. A file that fails to parse or validate keeps the
    /// definitions in force and is reported in DataStatus.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_BUDGETS_FILE", value_name = "PATH")]
    pub budgets_file: Option<PathBuf>,

    /// JSON file keeping the budgets created with CreateBudget (written atomically).
    /// Defaults to budgets.json in the cache directory; without either, CreateBudget is
    /// refused. Processes may share it: each write takes a lock on PATH.lock and
    /// re-reads the file first, and each reload picks up the others' budgets.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_BUDGETS_STATE", value_name = "PATH")]
    pub budgets_state: Option<PathBuf>,

    /// Keep no budgets created through the API: CreateBudget and DeleteBudget are
    /// refused and budgets come from --budgets-file only. For replicas that share no
    /// volume, where a budget created through one would be unknown to the others and
    /// lost with its pod.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_NO_API_BUDGETS",
        conflicts_with = "budgets_state"
    )]
    pub no_api_budgets: bool,

    /// Most budgets one caller of the callers file may create through the API, so that
    /// one caller cannot take the server-wide 1000; admins are not counted against it
    /// (only the server-wide limit bounds them).
    #[arg(long, env = "BEDROCK_ATTRIBUTION_MAX_BUDGETS_PER_CALLER", default_value_t = crate::budgets::DEFAULT_BUDGETS_PER_CALLER, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_budgets_per_caller: u16,

    /// How often the budgets file is checked for changes.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_BUDGETS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub budgets_reload_interval: Duration,
}

impl BudgetsConfig {
    /// The state file in effect: `--budgets-state`, else `budgets.json` in the cache
    /// directory of `data`, else none (or off, with `--no-api-budgets`).
    pub fn state_file(&self, data: &DataConfig) -> crate::budgets::store::StateFile {
        use crate::budgets::store::{STATE_FILE_NAME, StateFile};
        if self.no_api_budgets {
            return StateFile::Off;
        }
        match self
            .budgets_state
            .clone()
            .or_else(|| data.layer_cache_dir().map(|dir| dir.join(STATE_FILE_NAME)))
        {
            Some(path) => StateFile::Path(path),
            None => StateFile::Nowhere,
        }
    }
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
    /// Only periods whose manifest or files changed are read again.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_REFRESH_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    pub refresh_interval: Duration,

    /// Folder where each billing period's layers are persisted once built, so that a
    /// restart on unchanged data loads them instead of reading the export again.
    /// Defaults to bedrock-attribution/layers under $XDG_CACHE_HOME or ~/.cache.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Partitions (threads) each query plan uses; default one per core. 1 favours
    /// throughput under many concurrent callers over the latency of a single one.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_QUERY_PARTITIONS")]
    pub query_partitions: Option<usize>,

    /// Memory all running queries together may reserve in DataFusion (hash tables,
    /// sorts), e.g. 2GiB; a query that needs more fails with RESOURCE_EXHAUSTED instead
    /// of the process running out of memory. 0 removes the cap. Reading the export is
    /// not counted.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_QUERY_MEMORY", default_value = "2GiB", value_parser = parse_bytes)]
    pub query_memory: usize,

    /// Do not persist layers: every start reads the export.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_NO_CACHE")]
    pub no_cache: bool,

    /// How object stores are reached.
    #[command(flatten)]
    pub store: StoreConfig,
}

impl DataConfig {
    /// The layer cache folder in effect: `--cache-dir`, else the user's cache
    /// directory; `None` with `--no-cache` or when no cache directory is known.
    pub fn layer_cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("bedrock-attribution").join("layers"))
    }
}

/// Object store clients: timeouts, retries and request concurrency, per bucket.
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Longest one request to a cloud store may take, including reading its body.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_STORE_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub store_request_timeout: Duration,

    /// Longest to wait for a connection to a cloud store.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_STORE_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub store_connect_timeout: Duration,

    /// Retries of a failed request (5xx, 429, timeouts, dropped connections).
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_STORE_MAX_RETRIES",
        default_value_t = 10
    )]
    pub store_max_retries: usize,

    /// No retry starts after this long since the first attempt of a request.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_STORE_RETRY_TIMEOUT", default_value = "3m", value_parser = parse_duration)]
    pub store_retry_timeout: Duration,

    /// Wait before the first retry; later waits grow by --store-backoff-base.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_STORE_BACKOFF_INITIAL", default_value = "100ms", value_parser = parse_duration)]
    pub store_backoff_initial: Duration,

    /// Longest wait between two retries.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_STORE_BACKOFF_MAX", default_value = "15s", value_parser = parse_duration)]
    pub store_backoff_max: Duration,

    /// Growth factor of the wait between retries (at least 1).
    #[arg(long, env = "BEDROCK_ATTRIBUTION_STORE_BACKOFF_BASE", default_value_t = 2.0, value_parser = parse_backoff_base)]
    pub store_backoff_base: f64,

    /// Requests in flight at once to one bucket; more wait their turn.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_STORE_MAX_CONCURRENT_REQUESTS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub store_max_concurrent_requests: u32,

    /// Extra object_store setting for cloud stores, KEY=VALUE, repeatable (comma-separated
    /// in the environment variable): e.g. aws_endpoint=http://127.0.0.1:9000,
    /// aws_region=eu-west-1, google_service_account=/path/key.json,
    /// azure_storage_account_name=acct. Each setting goes to the stores whose builder knows
    /// the key; a key that no builder knows is an error. Prefer the standard AWS_*,
    /// GOOGLE_* and AZURE_* environment variables for credentials.
    #[arg(long = "store-option", env = "BEDROCK_ATTRIBUTION_STORE_OPTIONS", value_delimiter = ',', value_parser = parse_store_option)]
    pub store_options: Vec<StoreOption>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            store_request_timeout: Duration::from_secs(30),
            store_connect_timeout: Duration::from_secs(5),
            store_max_retries: 10,
            store_retry_timeout: Duration::from_secs(180),
            store_backoff_initial: Duration::from_millis(100),
            store_backoff_max: Duration::from_secs(15),
            store_backoff_base: 2.0,
            store_max_concurrent_requests: 32,
            store_options: Vec::new(),
        }
    }
}

/// One `KEY=VALUE` object_store setting.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreOption {
    /// The object_store configuration key, lowercase (`aws_endpoint`).
    pub key: String,
    /// Its value.
    pub value: String,
}

impl std::fmt::Debug for StoreOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: never print them.
        write!(f, "{}=***", self.key)
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_store_option(s: &str) -> Result<StoreOption, String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE, e.g. aws_region=eu-west-1"))?;
    let key = key.trim().to_ascii_lowercase();
    if key.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok(StoreOption {
        key,
        value: value.trim().to_owned(),
    })
}

fn parse_backoff_base(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(b) if b.is_finite() && b >= 1.0 => Ok(b),
        _ => Err(format!("{s:?} is not a number of at least 1, e.g. 2")),
    }
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

    /// How long calls in flight may take to finish after SIGTERM; then open streams and
    /// connections are closed and the process exits. Keep it below the pod's
    /// terminationGracePeriodSeconds (30 s by default) so that the flush runs before
    /// a SIGKILL.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Requests served at once per connection.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_CONCURRENCY", default_value_t = 64)]
    pub concurrency_per_connection: usize,

    /// Large queries executed at once (default: one per core); more wait in line.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_MAX_CONCURRENT_QUERIES")]
    pub max_concurrent_queries: Option<usize>,

    /// Large queries that may wait for their turn; beyond it requests are refused with
    /// RESOURCE_EXHAUSTED and a retry hint (grpc-retry-pushback-ms).
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_MAX_QUEUED_QUERIES",
        default_value_t = 256
    )]
    pub max_queued_queries: usize,

    /// Layer rows up to which a query is small and never waits in line (one caller's
    /// series, a single day).
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_SMALL_QUERY_ROWS",
        default_value_t = 50_000
    )]
    pub small_query_rows: usize,

    /// Serve gRPC server reflection (grpcurl, Postman discover the API through it);
    /// `--reflection=false` turns it off.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_REFLECTION",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true
    )]
    pub reflection: bool,

    /// Extra plain-text listener serving only grpc.health.v1.Health, e.g. 0.0.0.0:50052:
    /// for Kubernetes gRPC probes, which cannot speak TLS, when --tls-cert is set.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,

    /// Large queries one caller may have running or waiting at once (default: half of
    /// --max-concurrent-queries plus --max-queued-queries); beyond it that caller is
    /// refused with RESOURCE_EXHAUSTED while others still get in line. Without
    /// --auth-file, every request is the one caller "anonymous".
    #[arg(long, env = "BEDROCK_ATTRIBUTION_MAX_QUERIES_PER_CALLER")]
    pub max_queries_per_caller: Option<usize>,

    /// Threads of the query pool, the runtime queries run on apart from the one that
    /// serves connections and health checks (default: one per core).
    #[arg(long, env = "BEDROCK_ATTRIBUTION_QUERY_THREADS")]
    pub query_threads: Option<usize>,
}

impl ServerConfig {
    /// The admission limits these flags set.
    pub fn limits(&self) -> crate::service::admission::Limits {
        let concurrent = self.max_concurrent_queries.unwrap_or_else(cores);
        crate::service::admission::Limits {
            concurrent,
            queued: self.max_queued_queries,
            small_rows: self.small_query_rows,
            per_caller: self
                .max_queries_per_caller
                .unwrap_or((concurrent + self.max_queued_queries) / 2)
                .max(1),
        }
    }
}

/// Access control.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// Callers file (YAML or JSON): each caller's name, SHA-256 of its bearer token or
    /// client certificate subject, admin right and scope. Re-read when it changes.
    /// Without it the server is open, which it allows only on a loopback --listen.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_AUTH_FILE", value_name = "PATH")]
    pub auth_file: Option<PathBuf>,

    /// Serve without --auth-file on a non-loopback address (something in front of the
    /// server authenticates callers). Every caller then sees every line item.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// How often the callers file is checked for changes.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_AUTH_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub auth_reload_interval: Duration,
}

/// TLS of the gRPC listener (rustls). Without --tls-cert the listener is plain text.
#[derive(Debug, Clone, Args)]
pub struct TlsConfig {
    /// Server certificate chain, PEM (leaf first). Re-read when the file changes
    /// (cert-manager renewals) without a restart; connections already open keep theirs.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1). Re-read with it.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// CA certificates, PEM, that client certificates must chain to: mutual TLS, a
    /// connection without such a certificate is refused. Re-read when it changes.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// How often, at most, the TLS files are checked for a change (by modification
    /// time and size, on the next connection).
    #[arg(long, env = "BEDROCK_ATTRIBUTION_TLS_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
}

/// Limits on what one request may ask and use, and the key of its page tokens.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Longest time range a request may span (e.g. 5y, 400d, 90d); longer ranges are
    /// refused with INVALID_ARGUMENT. A year counts 366 days.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_MAX_RANGE", default_value = "5y", value_parser = parse_span)]
    pub max_range: Duration,

    /// File holding the key (at least 32 bytes; trailing whitespace ignored) that page
    /// tokens are authenticated with: give every replica the same one (a mounted
    /// Secret), so tokens page on any replica. Without it the key is generated once into
    /// the cache directory, or per process when there is none.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_PAGE_TOKEN_KEY_FILE",
        value_name = "PATH"
    )]
    pub page_token_key_file: Option<PathBuf>,

    /// Largest request message accepted (e.g. 4MiB); larger ones are refused with
    /// RESOURCE_EXHAUSTED before they are decoded.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_MAX_REQUEST_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    pub max_request_bytes: usize,

    /// Largest answer message sent (e.g. 64MiB); a page over it fails with
    /// RESOURCE_EXHAUSTED asking for a smaller page_size.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_MAX_RESPONSE_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_response_bytes: usize,

    /// Memory the answer cache (whole answers kept for paging) may hold, estimated,
    /// e.g. 256MiB; the oldest answers make room, and a larger answer is not kept.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_ANSWER_CACHE_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub answer_cache_bytes: usize,
}

/// Parses a byte size: `512MiB`, `2GiB`, `64KiB`, `4MB` or a plain number of bytes.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512MiB, 2GiB or 65536"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{s:?} has unknown unit {other:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(factor)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a span: `5y` (366 days a year), `90d`, or any [`parse_duration`] value.
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    for (unit, days) in [("y", 366u64), ("d", 1)] {
        if let Some(n) = t.strip_suffix(unit)
            && let Ok(n) = n.parse::<u64>()
        {
            return n
                .checked_mul(days * 86_400)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{s:?} is too long"));
        }
    }
    parse_duration(t).map_err(|_| format!("{s:?} is not a span like 5y, 400d or 24h"))
}

/// Metrics, logs and traces.
#[derive(Debug, Clone, Default, Args)]
pub struct TelemetryConfig {
    /// Address of the Prometheus endpoint (plain HTTP, path /metrics), e.g.
    /// 0.0.0.0:9464; no endpoint when unset. Metrics are per process.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log lines as text (for people) or JSON (one object a line, for log collectors).
    /// RUST_LOG filters them either way.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// OTLP/gRPC endpoint to export spans to (one per RPC, snapshot build and period
    /// read), e.g. http://otel-collector:4317; plaintext only. No export when unset.
    /// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_BSP_* apply.
    #[arg(long, env = "BEDROCK_ATTRIBUTION_OTLP_ENDPOINT", value_name = "URL", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<Url>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message, fields, span.
    Json,
}

/// Parses an `http://host:port` OTLP endpoint.
fn parse_otlp_endpoint(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim())
        .map_err(|e| format!("{s:?} is not a URL ({e}), e.g. http://otel-collector:4317"))?;
    match url.scheme() {
        "http" if url.host_str().is_some() => Ok(url),
        "https" => Err(format!(
            "{s:?}: TLS to the collector is not built in; use a plaintext http:// endpoint (a collector beside the server)"
        )),
        _ => Err(format!(
            "{s:?} is not an http://host:port endpoint, e.g. http://otel-collector:4317"
        )),
    }
}

/// Cores of the machine (2 when unknown): the default of every per-core limit.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
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
        assert_eq!(parse_span("5y"), Ok(Duration::from_secs(5 * 366 * 86_400)));
        assert_eq!(parse_span("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_span("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_span("5w").is_err());
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert!(parse_bytes("4 parsecs").is_err());
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert!(parse_bytes("4 parsecs").is_err());
    }

    /// The Kubernetes settings give every replica one page-token key, from a Secret the
    /// Deployment mounts where the setting points, and keep no API budgets, which pods
    /// without a shared volume would each keep apart and lose with the pod.
    #[test]
    fn the_kubernetes_replicas_share_page_keys_and_keep_no_api_budgets() {
        let settings = include_str!("../../k8s/base/settings.env");
        let deployment = include_str!("../../k8s/base/deployment.yaml");
        let env: Vec<(&str, &str)> = settings
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        let args: Vec<String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("BEDROCK_ATTRIBUTION_"))
            .map(|(k, v)| {
                let flag = k["BEDROCK_ATTRIBUTION_".len()..]
                    .to_lowercase()
                    .replace('_', "-");
                // Switches are set by `true` in the environment, bare on the command line.
                if *v == "true" {
                    format!("--{flag}")
                } else {
                    format!("--{flag}={v}")
                }
            })
            .collect();
        let key = env
            .iter()
            .find(|(k, _)| *k == "BEDROCK_ATTRIBUTION_PAGE_TOKEN_KEY_FILE")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| panic!("no page-token key file in settings.env"));
        let dir = key
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        assert!(
            deployment.contains(&format!("mountPath: {dir}\n"))
                && deployment.contains("secretName: bedrock-attribution-page-token"),
            "the key's folder {dir} is the mount of the page-token Secret"
        );
        assert!(
            env.contains(&("BEDROCK_ATTRIBUTION_NO_API_BUDGETS", "true")),
            "API budgets are off"
        );
        // The flags that the names stand for, as the server reads them.
        let mut argv = vec!["x".to_owned()];
        argv.extend(args.into_iter().filter(|a| {
            ["--page-token-key-file", "--budgets-", "--no-api-budgets"]
                .iter()
                .any(|p| a.starts_with(p))
        }));
        let c = Config::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert_eq!(c.limits.page_token_key_file, Some(key));
        assert_eq!(
            c.budgets.state_file(&c.data),
            crate::budgets::store::StateFile::Off
        );
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
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.data.refresh_interval, Duration::from_secs(900));
        assert_eq!(
            c.telemetry.metrics_listen, None,
            "no metrics endpoint by default"
        );
        assert_eq!(c.telemetry.log_format, LogFormat::Text);
        assert_eq!(c.telemetry.otlp_endpoint, None);
        assert_eq!(c.auth.auth_file, None, "open by default (on loopback)");
        assert!(!c.auth.allow_unauthenticated);
        assert_eq!(c.auth.auth_reload_interval, Duration::from_secs(5));
        assert_eq!(c.budgets.max_budgets_per_caller, 100);
        assert!(!c.budgets.no_api_budgets);
        let budgets = |extra: &[&str]| {
            Config::try_parse_from(["x", "--source", "file:///a"].iter().chain(extra))
                .map(|c| c.budgets)
        };
        let off = budgets(&["--no-api-budgets"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            off.state_file(&c.data),
            crate::budgets::store::StateFile::Off
        );
        assert!(
            budgets(&["--no-api-budgets", "--budgets-state", "/s.json"]).is_err(),
            "a state file and none at once"
        );
        assert!(budgets(&["--max-budgets-per-caller", "0"]).is_err());
        assert!(budgets(&["--max-budgets-per-caller", "1001"]).is_err());
        let d = StoreConfig::default();
        let s = &c.data.store;
        assert_eq!(
            (
                s.store_request_timeout,
                s.store_connect_timeout,
                s.store_max_retries,
                s.store_retry_timeout,
                s.store_backoff_initial,
                s.store_backoff_max,
                s.store_max_concurrent_requests,
            ),
            (
                d.store_request_timeout,
                d.store_connect_timeout,
                d.store_max_retries,
                d.store_retry_timeout,
                d.store_backoff_initial,
                d.store_backoff_max,
                d.store_max_concurrent_requests,
            ),
            "flag defaults and StoreConfig::default agree"
        );
        assert_eq!(s.store_backoff_base, d.store_backoff_base);
        assert!(c.server.reflection, "reflection on by default");
        assert_eq!(c.server.health_listen, None);
        assert_eq!(c.tls.tls_cert, None, "plain text by default");
        assert_eq!(c.tls.tls_reload_interval, Duration::from_secs(5));
    }

    #[test]
    fn tls_flags_parse() {
        let c = Config::try_parse_from([
            "x",
            "--tls-cert",
            "/tls/tls.crt",
            "--tls-key",
            "/tls/tls.key",
            "--tls-client-ca",
            "/tls/ca.crt",
            "--reflection=false",
            "--health-listen",
            "0.0.0.0:50052",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tls.tls_cert, Some(PathBuf::from("/tls/tls.crt")));
        assert_eq!(c.tls.tls_key, Some(PathBuf::from("/tls/tls.key")));
        assert_eq!(c.tls.tls_client_ca, Some(PathBuf::from("/tls/ca.crt")));
        assert!(!c.server.reflection);
        assert_eq!(c.server.health_listen.map(|a| a.port()), Some(50052));
        let c = Config::try_parse_from(["x", "--reflection"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.server.reflection);
        for bad in [
            &["x", "--tls-cert", "/tls/tls.crt"][..],
            &["x", "--tls-key", "/tls/tls.key"],
            &["x", "--tls-client-ca", "/tls/ca.crt"],
            &["x", "--reflection=maybe"],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn telemetry_flags_parse() {
        let c = Config::try_parse_from([
            "x",
            "--metrics-listen",
            "0.0.0.0:9464",
            "--log-format",
            "json",
            "--otlp-endpoint",
            "http://otel-collector:4317",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let t = &c.telemetry;
        assert_eq!(t.metrics_listen.map(|a| a.port()), Some(9464));
        assert_eq!(t.log_format, LogFormat::Json);
        assert_eq!(
            t.otlp_endpoint.as_ref().map(Url::as_str),
            Some("http://otel-collector:4317/")
        );
        for bad in [
            ["x", "--otlp-endpoint", "https://collector:4317"],
            ["x", "--otlp-endpoint", "collector:4317"],
            ["x", "--log-format", "xml"],
            ["x", "--metrics-listen", "9464"],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_flags_parse() {
        let c = Config::try_parse_from([
            "x",
            "--store-request-timeout",
            "2s",
            "--store-max-retries",
            "3",
            "--store-backoff-base",
            "1.5",
            "--store-max-concurrent-requests",
            "4",
            "--store-option",
            "AWS_ENDPOINT=http://127.0.0.1:9000",
            "--store-option",
            "aws_region=eu-west-1",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let s = &c.data.store;
        assert_eq!(s.store_request_timeout, Duration::from_secs(2));
        assert_eq!(s.store_max_retries, 3);
        assert_eq!(s.store_backoff_base, 1.5);
        assert_eq!(s.store_max_concurrent_requests, 4);
        assert_eq!(s.store_options[0].key, "aws_endpoint");
        assert_eq!(s.store_options[0].value, "http://127.0.0.1:9000");
        assert_eq!(format!("{:?}", s.store_options[1]), "aws_region=***");
        for bad in [
            ["x", "--store-option", "novalue"],
            ["x", "--store-backoff-base", "0.5"],
            ["x", "--store-max-concurrent-requests", "0"],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
