//! The Prometheus endpoint: plain HTTP/1.1 on a listener of its own
//! (`--metrics-listen`), so that scrapers never share the gRPC port. `GET /metrics`
//! renders the exposition; the per-period freshness gauges are set from the snapshot
//! being served at each scrape, so ages are current rather than as of the last refresh.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{catalog::Catalog, error::Error, telemetry};

/// The endpoint's content type: Prometheus text exposition format 0.0.4.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the recorder, binds `addr` and serves `/metrics` until the task is aborted.
pub async fn start(
    addr: SocketAddr,
    catalog: Arc<Catalog>,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    let handle = telemetry::metrics::install()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidConfig {
            reason: format!("cannot listen for metrics on {addr}: {e}"),
        })?;
    let bound = listener.local_addr().map_err(|e| Error::InvalidConfig {
        reason: e.to_string(),
    })?;
    tracing::info!(addr = %bound, path = "/metrics", "metrics listening");
    Ok((bound, tokio::spawn(serve(listener, handle, catalog))))
}

async fn serve(listener: TcpListener, handle: PrometheusHandle, catalog: Arc<Catalog>) {
    // Histograms are drained into their buckets by upkeep; scrapes also render current
    // values, this keeps memory flat between scrapes.
    let mut upkeep = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (handle, catalog) = (handle.clone(), catalog.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            let response = respond(&request, &handle, &catalog);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        if let Err(e) = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                        {
                            tracing::debug!(error = %e, "metrics connection failed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: do not spin.
                    tracing::warn!(error = %e, "metrics listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = upkeep.tick() => handle.run_upkeep(),
        }
    }
}

fn respond<B>(
    request: &Request<B>,
    handle: &PrometheusHandle,
    catalog: &Catalog,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            response.headers_mut().insert(CONTENT_TYPE, v);
        }
        response
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            if let Some(snapshot) = catalog.snapshot() {
                telemetry::metrics::freshness(&snapshot, chrono::Utc::now());
            }
            reply(StatusCode::OK, EXPOSITION, handle.render())
        }
        (_, "/metrics") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "use GET /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; metrics are at /metrics\n".into(),
        ),
    }
}
