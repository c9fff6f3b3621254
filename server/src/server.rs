//! Starting and stopping the gRPC server: bind, report NOT_SERVING while the first
//! snapshot loads, serve the API with health and reflection, refresh in the background,
//! and on shutdown flip health to NOT_SERVING before draining.

use std::{future::Future, net::SocketAddr, sync::Arc};

use bedrock_attribution::{
    FILE_DESCRIPTOR_SET, v1::attribution_service_server::AttributionServiceServer,
};
use datafusion::{
    execution::{cache::cache_manager::CacheManagerConfig, runtime_env::RuntimeEnvBuilder},
    prelude::{SessionConfig, SessionContext},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;

use crate::{
    catalog::{Catalog, source::Source, stores::StoreRegistry},
    config::{Config, DataConfig},
    error::Error,
    layers::persist::LayerCache,
    rules::bedrock::BedrockRule,
    service::AttributionApi,
};

/// The DataFusion cache settings of the session: every file cache off.
///
/// DataFusion 55 caches directory listings (forever, by default), parquet footers and
/// file statistics, validating the last two by size and modification time only. Export
/// files are rewritten in place under the same key, and S3 modification times have
/// whole seconds, so a same-size rewrite within a second would be served from a footer
/// of the previous content. The catalog reads a file only when its fingerprint (ETag,
/// size, time) changed, so the caches would save at most one footer read per changed
/// file; correctness wins.
pub fn cache_config() -> CacheManagerConfig {
    CacheManagerConfig::default()
        .with_list_files_cache(None)
        .with_list_files_cache_limit(0)
        .with_file_statistics_cache(None)
        .with_file_statistics_cache_limit(0)
        .with_file_metadata_cache(None)
        .with_metadata_cache_limit(0)
}

/// The one DataFusion session of the process, shared by every request so that its
/// object store registry lives as long as the server.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new().with_information_schema(false);
    // Plain Utf8 keeps the normalize step's casts cheap; views buy nothing there.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(cache_config())
        .build_arc()
        .unwrap_or_else(|e| {
            // Building a runtime from these settings does not fail; keep serving with
            // DataFusion's defaults rather than not at all, and say so.
            tracing::error!("cannot build the DataFusion runtime with caches off: {e}");
            Default::default()
        });
    SessionContext::new_with_config_rt(config, runtime)
}

/// A catalog over the sources of `data`, with its store settings.
pub fn catalog_from(data: &DataConfig) -> Result<Arc<Catalog>, Error> {
    let (sources, product_codes) = (&data.sources, data.product_codes.clone());
    let stores = StoreRegistry::new(data.store.clone())?;
    if sources.is_empty() {
        return Err(Error::InvalidConfig {
            reason: "no --source given; pass --source file:///path/to/export or s3://bucket/prefix/export, or --demo".into(),
        });
    }
    let sources = sources
        .iter()
        .map(|s| Source::parse(s, &stores))
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = session();
    stores.register(ctx.runtime_env().as_ref());
    let rule = BedrockRule::new(product_codes);
    let cache = data.layer_cache_dir().map(|dir| {
        tracing::info!(dir = %dir.display(), "persisting layers");
        LayerCache::new(dir, &rule)
    });
    Ok(Arc::new(Catalog::new(sources, ctx, rule, cache)))
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
    refresher: JoinHandle<()>,
    ready: watch::Receiver<bool>,
    catalog: Arc<Catalog>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The catalog being served.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Waits until the first snapshot is being served.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Stops accepting work, lets requests in flight finish, and waits for the end.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.shutdown.send(true);
        self.refresher.abort();
        match self.serve.await {
            Ok(result) => result.map_err(|e| Error::InvalidConfig {
                reason: format!("server failed: {e}"),
            }),
            Err(e) => Err(Error::InvalidConfig {
                reason: format!("server task failed: {e}"),
            }),
        }
    }

    /// Runs until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), Error> {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

async fn set_health(reporter: &HealthReporter, serving: bool) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    let status = if serving { Serving } else { NotServing };
    reporter.set_service_status("", status).await;
    if serving {
        reporter
            .set_serving::<AttributionServiceServer<AttributionApi>>()
            .await;
    } else {
        reporter
            .set_not_serving::<AttributionServiceServer<AttributionApi>>()
            .await;
    }
}

/// Binds `config.server.listen` and starts serving; the first snapshot loads in the
/// background while health says NOT_SERVING.
pub async fn start(config: &Config, catalog: Arc<Catalog>) -> Result<ServerHandle, Error> {
    let listener =
        TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| Error::InvalidConfig {
                reason: format!("cannot listen on {}: {e}", config.server.listen),
            })?;
    let addr = listener.local_addr().map_err(|e| Error::InvalidConfig {
        reason: e.to_string(),
    })?;
    // Answers go out as several small writes (headers, data, trailers); without
    // TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to each small answer.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, false).await;

    let reflection = |build: fn(tonic_reflection::server::Builder<'static>) -> Result<_, _>| {
        build(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        )
    };
    let reflection_v1 =
        reflection(|b| b.build_v1()).map_err(|e: tonic_reflection::server::Error| {
            Error::InvalidConfig {
                reason: format!("reflection: {e}"),
            }
        })?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::InvalidConfig {
            reason: format!("reflection: {e}"),
        })?;

    let api = AttributionApi::new(
        catalog.clone(),
        config.server.query_timeout,
        config.server.limits(),
    );
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(false);

    let health_reporter = reporter.clone();
    let mut drain = shutdown_rx.clone();
    let serve = tokio::spawn(
        tonic::transport::Server::builder()
            .concurrency_limit_per_connection(config.server.concurrency_per_connection)
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(AttributionServiceServer::new(api))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = drain.wait_for(|stop| *stop).await;
                set_health(&health_reporter, false).await;
            }),
    );

    // Health follows every snapshot swap, from the background loop or the Refresh RPC:
    // SERVING while any data is servable.
    let mut snapshots = catalog.subscribe();
    let mut health_stop = shutdown_rx.clone();
    tokio::spawn(async move {
        loop {
            let serving = snapshots
                .borrow_and_update()
                .as_ref()
                .map(|s| !s.periods.is_empty() || s.problems.is_empty());
            if let Some(serving) = serving {
                set_health(&reporter, serving).await;
                let _ = ready_tx.send(true);
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { break },
                _ = health_stop.wait_for(|stop| *stop) => break,
            }
        }
    });

    let refresh_catalog = catalog.clone();
    let interval = config.data.refresh_interval;
    let refresher = tokio::spawn(async move {
        loop {
            if let Err(e) = refresh_catalog.refresh().await {
                tracing::error!(error = %e, "refresh failed");
            }
            if interval.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown_rx.wait_for(|stop| *stop) => break,
            }
        }
    });
    tracing::info!(%addr, "listening");
    Ok(ServerHandle {
        addr,
        shutdown: shutdown_tx,
        serve,
        refresher,
        ready: ready_rx,
        catalog,
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_caches_no_listing_footer_or_statistics() {
        let ctx = session();
        let caches = &ctx.runtime_env().cache_manager;
        assert!(caches.get_list_files_cache().is_none());
        assert!(caches.get_file_statistic_cache().is_none());
        assert_eq!(caches.get_metadata_cache_limit(), 0);
    }
}
