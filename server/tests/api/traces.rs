//! Traces and JSON logs of the real server binary: spans reach an OTLP/gRPC collector
//! (an in-process stub of the collector's TraceService), and the last ones are flushed
//! at shutdown.

use std::sync::{Arc, Mutex};

use bedrock_attribution_client::proto;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

use crate::{
    common::{range, small_export},
    process::ServerProcess,
};

/// What the stub collector received.
#[derive(Default, Clone)]
struct Collector {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request.into_inner());
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves the stub on `127.0.0.1:0`; returns its endpoint URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        format!("http://{addr}")
    }

    /// Every span received, with the `service.name` of its resource.
    fn spans(&self) -> Vec<(String, Span)> {
        let requests = self.requests.lock().map(|r| r.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for request in requests {
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| text(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    out.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
                }
            }
        }
        out
    }
}

/// A string attribute.
fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref() {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => Some(s.clone()),
            _ => None,
        })
}

/// An integer attribute.
fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref() {
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(i)),
            }) => Some(*i),
            _ => None,
        })
}

#[tokio::test]
async fn spans_reach_an_otlp_collector_and_shutdown_flushes_them() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let server = ServerProcess::start_with_env(
        small_export(),
        &["--otlp-endpoint", &endpoint, "--log-format", "json"],
        // Nothing is sent on schedule: what arrives was flushed by the shutdown.
        &[("OTEL_BSP_SCHEDULE_DELAY", "600000")],
    )
    .await;
    let mut raw = server.client().await.raw();
    // A caller's trace context: the RPC's span becomes its child.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut request = Request::new(proto::CostByTagRequest {
        time_range: range("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"),
        tag_key: "iamPrincipal/team".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01")
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let rows = raw
        .cost_by_tag(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .rows
        .len();
    let invalid = raw
        .token_usage(proto::TokenUsageRequest::default())
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(invalid, Some(tonic::Code::InvalidArgument));
    assert!(
        collector.spans().is_empty(),
        "nothing is exported before the batch is due"
    );

    // Every log line so far is one JSON object with a level and a message.
    let lines: Vec<String> = server.log.try_iter().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(json["level"].is_string(), "{line}");
        assert!(json["timestamp"].is_string(), "{line}");
        assert!(json["message"].is_string(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"snapshot built\"")),
        "{lines:?}"
    );

    // The server's shutdown waits for the collector's answer to its last export, and
    // this runtime serves the collector while it waits for the exit.
    server.terminate().await;
    let spans = collector.spans();
    let named = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .filter(|(_, s)| s.name == name)
            .map(|(_, s)| s)
            .collect()
    };
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "bedrock-attribution-server")
    );
    let rpc = named("bedrock.attribution.v1.AttributionService/CostByTag");
    let [rpc] = rpc.as_slice() else {
        panic!("one CostByTag span: {spans:?}")
    };
    assert_eq!(rpc.kind, SpanKind::Server as i32);
    assert_eq!(hex(&rpc.trace_id), trace_id, "the caller's trace");
    assert_eq!(hex(&rpc.parent_span_id), parent_id, "the caller's span");
    let a = &rpc.attributes;
    assert_eq!(text(a, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(text(a, "rpc.method").as_deref(), Some("CostByTag"));
    assert_eq!(text(a, "code").as_deref(), Some("OK"));
    assert_eq!(int(a, "rpc.grpc.status_code"), Some(0));
    assert_eq!(int(a, "rows"), Some(rows as i64), "{a:?}");
    assert_eq!(
        text(a, "range").as_deref(),
        Some("2026-07-01T00:00:00Z/2026-08-01T00:00:00Z")
    );
    assert_eq!(
        text(a, "grouping").as_deref(),
        Some("tag:iamPrincipal/team")
    );
    for key in ["range", "grouping", "rows", "code"] {
        assert_eq!(
            a.iter().filter(|kv| kv.key == key).count(),
            1,
            "{key} recorded once: {a:?}"
        );
    }
    let failed = named("bedrock.attribution.v1.AttributionService/TokenUsage");
    let [failed] = failed.as_slice() else {
        panic!("one TokenUsage span: {spans:?}")
    };
    assert_eq!(
        text(&failed.attributes, "code").as_deref(),
        Some("INVALID_ARGUMENT")
    );
    assert_ne!(hex(&failed.trace_id), trace_id, "a trace of its own");
    let builds = named("snapshot.build");
    let [build] = builds.as_slice() else {
        panic!("one snapshot build: {spans:?}")
    };
    assert_eq!(int(&build.attributes, "periods"), Some(5));
    let reads = named("period.read");
    assert_eq!(reads.len(), 5);
    assert!(
        reads
            .iter()
            .all(|r| r.trace_id == build.trace_id && r.parent_span_id == build.span_id),
        "period reads are children of the build"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
