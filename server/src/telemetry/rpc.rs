//! One span and one set of metrics per RPC, as a tower layer around every gRPC service,
//! so that the handlers only add what they alone know (range, grouping, rows).
//!
//! The span (`rpc`, exported to OTLP under the name `package.Service/Method`) opens
//! when the request arrives and closes when the response body ends, with the gRPC
//! status code from the headers (errors) or the trailers (answers). Latency, requests
//! by code and requests in flight are recorded at the same moment. A response body
//! dropped before its end (the caller went away) counts as `CANCELLED`. At the same
//! moment the call's audit event is written (see [`crate::auth::audit`]): the layer
//! puts an audit record into the request's extensions and runs the call with it, for
//! the access control and the handler to fill in.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use metrics::{counter, gauge, histogram};
use prost::Message;
use tonic::Code;
use tracing::{Instrument, Span, field::Empty};

use super::metrics::{RPC_DURATION, RPC_IN_FLIGHT, RPC_REQUESTS};
use crate::{
    auth::audit::{self, Audit},
    query::{Dimension, Granularity, PrincipalGrouping, QuerySpec},
};

/// An RPC the server implements: labels and span name.
#[derive(Debug)]
struct Rpc {
    service: String,
    method: String,
    /// `package.Service/Method`.
    full: String,
}

/// Every RPC of the services served (API, health, reflection v1 and v1alpha), by path.
/// Other paths share one `unknown` label, so a caller cannot grow the label sets.
static RPCS: LazyLock<HashMap<String, Rpc>> = LazyLock::new(|| {
    let sets = [
        bedrock_attribution::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut rpcs = HashMap::new();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                let service_name = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    let full = format!("{service_name}/{}", method.name());
                    rpcs.insert(
                        format!("/{full}"),
                        Rpc {
                            service: service_name.clone(),
                            method: method.name().to_owned(),
                            full,
                        },
                    );
                }
            }
        }
    }
    rpcs
});

static UNKNOWN: LazyLock<Rpc> = LazyLock::new(|| Rpc {
    service: "unknown".into(),
    method: "unknown".into(),
    full: "unknown".into(),
});

fn rpc_of(path: &str) -> &'static Rpc {
    RPCS.get(path).unwrap_or(&UNKNOWN)
}

/// The layer: wrap the gRPC router with it (`Server::builder().layer(RpcLayer)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLayer;

impl<S> tower_layer::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner }
    }
}

/// A service observed by [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for RpcService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let rpc = rpc_of(request.uri().path());
        // Probes are not audited: they read no data, and come every few seconds.
        let audit = (!request.uri().path().starts_with("/grpc.health.v1.Health/"))
            .then(|| Arc::new(Audit::default()));
        if let Some(audit) = &audit {
            request.extensions_mut().insert(audit.clone());
        }
        let span = tracing::info_span!(
            "rpc",
            otel.name = %rpc.full,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %rpc.service,
            rpc.method = %rpc.method,
            rpc.grpc.status_code = Empty,
            code = Empty,
            range = Empty,
            grouping = Empty,
            rows = Empty,
        );
        super::parent_from_headers(&span, request.headers());
        let mut finish = Finish {
            rpc,
            span: span.clone(),
            started: Instant::now(),
            code: None,
            audit: audit.clone(),
        };
        gauge!(RPC_IN_FLIGHT, "service" => rpc.service.as_str(), "method" => rpc.method.as_str())
            .increment(1.0);
        let call = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let response = match audit {
                Some(audit) => audit::scope(audit, call).await?,
                None => call.await?,
            };
            // An error is a trailers-only response: its code is in the headers, and the
            // RPC is over. Recorded before the caller can see the answer, so that what
            // a caller saw answered is always counted (and the same below).
            let finish = match code_in(response.headers()) {
                Some(code) => {
                    finish.code = Some(code);
                    drop(finish);
                    None
                }
                None => Some(finish),
            };
            Ok(response.map(|inner| ObservedBody { inner, finish }))
        })
    }
}

fn code_in(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// Records the end of an RPC when dropped.
struct Finish {
    rpc: &'static Rpc,
    span: Span,
    started: Instant,
    code: Option<Code>,
    audit: Option<Arc<Audit>>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let rpc = self.rpc;
        let code = self.code.unwrap_or(Code::Cancelled);
        let (service, method) = (rpc.service.as_str(), rpc.method.as_str());
        let elapsed = self.started.elapsed();
        gauge!(RPC_IN_FLIGHT, "service" => service, "method" => method).decrement(1.0);
        histogram!(RPC_DURATION, "service" => service, "method" => method)
            .record(elapsed.as_secs_f64());
        counter!(RPC_REQUESTS, "service" => service, "method" => method, "code" => code_name(code))
            .increment(1);
        self.span.record("code", code_name(code));
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        tracing::debug!(
            parent: &self.span,
            code = code_name(code),
            elapsed_ms = elapsed.as_millis() as u64,
            "rpc finished"
        );
        if let Some(audit) = &self.audit {
            audit.emit(&rpc.full, method, code_name(code), elapsed);
        }
    }
}

/// A response body that records the RPC when it ends (or is dropped).
pub struct ObservedBody<B> {
    inner: B,
    finish: Option<Finish>,
}

impl<B> std::fmt::Debug for ObservedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBody").finish_non_exhaustive()
    }
}

impl<B: Body + Unpin> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                // The trailers end a gRPC response.
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut finish) = self.finish.take()
                {
                    finish.code = Some(code_in(trailers).unwrap_or(Code::Ok));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(finish) = self.finish.as_mut() {
                    finish.code.get_or_insert(Code::Internal);
                }
            }
            Poll::Ready(None) => {
                if let Some(finish) = self.finish.as_mut() {
                    // A body that ends without a status, after a success, is still OK.
                    finish.code.get_or_insert(Code::Ok);
                }
                self.finish = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Codes that mean the server failed (OpenTelemetry's gRPC server conventions).
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The code's name as in the gRPC spec (`OK`, `INVALID_ARGUMENT`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Records a query's range and grouping on the current RPC's span (once: OpenTelemetry
/// keeps every value recorded).
pub fn record_spec(spec: &QuerySpec) {
    let span = Span::current();
    let time =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    span.record(
        "range",
        format!("{}/{}", time(spec.start), time(spec.end)).as_str(),
    );
    span.record("grouping", grouping(spec).as_str());
}

/// The grouping of a spec for people: dimensions (tag keys included: they are keys,
/// not values), then granularity and allocation when set, e.g.
/// `tag:iamPrincipal/team,model;monthly;allocated`.
fn grouping(spec: &QuerySpec) -> String {
    let mut parts: Vec<String> = spec
        .dimensions
        .iter()
        .map(|d| match d {
            Dimension::Principal(g) => match g {
                PrincipalGrouping::Arn => "principal".to_owned(),
                PrincipalGrouping::Role => "principal:role".to_owned(),
                PrincipalGrouping::Account => "principal:account".to_owned(),
            },
            Dimension::Model => "model".to_owned(),
            Dimension::Account => "account".to_owned(),
            Dimension::Region => "region".to_owned(),
            Dimension::UsageCategory => "usage_category".to_owned(),
            Dimension::Routing => "routing".to_owned(),
            Dimension::LineItemType => "line_item_type".to_owned(),
            Dimension::Tag(key) => format!("tag:{key}"),
        })
        .collect();
    if parts.is_empty() {
        parts.push("none".to_owned());
    }
    let mut out = parts.join(",");
    match spec.granularity {
        Granularity::Whole => {}
        Granularity::Hourly => out.push_str(";hourly"),
        Granularity::Daily => out.push_str(";daily"),
        Granularity::Monthly => out.push_str(";monthly"),
    }
    if spec.allocation {
        out.push_str(";allocated");
    }
    out
}

/// Records the rows an RPC returns, on its span and in [`super::metrics::ROWS_RETURNED`].
pub fn record_rows(method: &'static str, rows: usize) {
    // As i64: OpenTelemetry has no unsigned integers, and exports a u64 as a string.
    Span::current().record("rows", i64::try_from(rows).unwrap_or(i64::MAX));
    audit::record_rows(rows);
    super::metrics::rows_returned(method, rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_rpc_has_labels_and_others_share_one() {
        let rpc = rpc_of("/bedrock.attribution.v1.AttributionService/CostByTag");
        assert_eq!(
            (rpc.service.as_str(), rpc.method.as_str()),
            ("bedrock.attribution.v1.AttributionService", "CostByTag")
        );
        assert_eq!(
            rpc.full,
            "bedrock.attribution.v1.AttributionService/CostByTag"
        );
        assert_eq!(rpc_of("/grpc.health.v1.Health/Check").method, "Check");
        assert_eq!(
            rpc_of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo").method,
            "ServerReflectionInfo"
        );
        assert_eq!(rpc_of("/x.Y/Anything").service, "unknown");
        assert_eq!(
            RPCS.keys()
                .filter(|p| p.starts_with("/bedrock.attribution.v1.AttributionService/"))
                .count(),
            14
        );
    }

    #[test]
    fn grouping_names_keys_never_values() {
        let spec = QuerySpec {
            start: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
            end: chrono::DateTime::from_timestamp(3600, 0).unwrap_or_default(),
            filter: Default::default(),
            metric: Default::default(),
            granularity: Granularity::Monthly,
            dimensions: vec![
                Dimension::Tag("iamPrincipal/team".into()),
                Dimension::Principal(PrincipalGrouping::Role),
            ],
            allocation: true,
            efficiency: false,
            scope: Default::default(),
        };
        assert_eq!(
            grouping(&spec),
            "tag:iamPrincipal/team,principal:role;monthly;allocated"
        );
    }
}
