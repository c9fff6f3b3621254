//! Telemetry: logs and traces through `tracing`, Prometheus [`metrics`], and the
//! per-RPC spans and metrics of [`rpc`].
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`), as text for people or
//! one JSON object a line for log collectors (`--log-format`). With `--otlp-endpoint`,
//! spans (one per RPC, one per snapshot build and period read) are also exported over
//! OTLP/gRPC (tonic) in batches; W3C `traceparent` headers of incoming requests make
//! the RPC's span a child of the caller's. [`Telemetry::shutdown`] flushes what is
//! still buffered.

pub mod metrics;
pub mod rpc;

use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::{
    KeyValue,
    propagation::{Extractor, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, layer::SubscriberExt};

use crate::{
    config::{LogFormat, TelemetryConfig},
    error::Error,
};

/// The `service.name` of exported spans, unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "bedrock-attribution-server";

/// Targets never exported as spans: the exporter's own transport would otherwise trace
/// itself at debug levels, and each export would feed the next.
const NOT_EXPORTED: &[&str] = &[
    "h2=off",
    "hyper=off",
    "hyper_util=off",
    "tonic=off",
    "tower=off",
    "reqwest=off",
    "opentelemetry=off",
    "opentelemetry_sdk=off",
    "opentelemetry_otlp=off",
];

/// Whether spans are exported, so that the RPC layer reads `traceparent` headers.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// What [`init`] installed; keep it until the end and call [`Telemetry::shutdown`].
#[derive(Debug, Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter (bounded by the
    /// exporter's timeout); nothing to do without `--otlp-endpoint`.
    pub async fn shutdown(self) {
        let Some(provider) = self.traces else {
            return;
        };
        // The batch processor flushes on a thread of its own and blocks until done.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("error: cannot flush the last spans: {e}"),
            Err(e) => eprintln!("error: cannot flush the last spans: {e}"),
        }
    }
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber: logs in `config.log_format` and, with an OTLP
/// endpoint, the span exporter (call from within the Tokio runtime). A second call (as
/// in tests) installs nothing.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, Error> {
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    };
    let mut layers = vec![logs];
    let mut telemetry = Telemetry::default();
    if let Some(endpoint) = &config.otlp_endpoint {
        let invalid = |e: &dyn std::fmt::Display| Error::InvalidConfig {
            reason: format!("--otlp-endpoint {endpoint}: {e}"),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.as_str())
            .build()
            .map_err(|e| invalid(&e))?;
        let mut resource = Resource::builder()
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer(SERVICE_NAME);
        let mut spans = filter();
        for directive in NOT_EXPORTED {
            if let Ok(d) = directive.parse() {
                spans = spans.add_directive(d);
            }
        }
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(spans)
                .boxed(),
        );
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        telemetry.traces = Some(provider);
    }
    if tracing::subscriber::set_global_default(Registry::default().with(layers)).is_ok() {
        EXPORTING.store(telemetry.traces.is_some(), Ordering::SeqCst);
        Ok(telemetry)
    } else {
        // Already installed (tests): this exporter would receive nothing.
        Ok(Telemetry::default())
    }
}

/// Request headers as OpenTelemetry reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the caller's span named by W3C trace context headers
/// (`traceparent`, `tracestate`), when spans are exported.
pub(crate) fn parent_from_headers(span: &Span, headers: &http::HeaderMap) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only without the OpenTelemetry layer, which EXPORTING rules out.
    let _ = span.set_parent(parent);
}
