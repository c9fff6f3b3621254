//! Starting and stopping the gRPC server: bind, report NOT_SERVING while the first
//! snapshot loads, serve the API with health and reflection, refresh in the background,
//! and on shutdown flip health to NOT_SERVING, refuse new calls, and give those in
//! flight a grace period before closing what is left. One file per part:
//! [`session`] (DataFusion), [`health`], [`refresher`], [`shutdown`], the Prometheus
//! endpoint [`metrics`]; this one wires them to a listener, every service behind the
//! per-RPC spans, metrics and audit events of [`crate::telemetry::rpc`], then the access
//! control of [`crate::auth`], over plain TCP or the rotating TLS of [`tls`].

pub mod health;
pub mod metrics;
pub mod refresher;
pub mod session;
pub mod shutdown;
pub mod tls;
pub mod wire;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bedrock_attribution::{
    FILE_DESCRIPTOR_SET, v1::attribution_service_server::AttributionServiceServer,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;

pub use session::{cache_config, session};
pub use shutdown::{Drain, shutdown_signal};

use crate::{
    auth::{self, AuthFile, AuthLayer},
    budgets::store::BudgetStore,
    catalog::{Catalog, source::Source, stores::StoreRegistry},
    config::{Config, DataConfig},
    error::Error,
    layers::persist::LayerCache,
    query::page::{KeySource, PageKeys},
    rules::bedrock::BedrockRule,
    service::{AttributionApi, pool::QueryPool},
    telemetry::rpc::RpcLayer,
};

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
    let base = session::session_with(data.query_partitions);
    stores.register(base.runtime_env().as_ref());
    let ctx = session::with_query_memory(&base, data.query_memory);
    let rule = BedrockRule::new(product_codes);
    let cache = data.layer_cache_dir().map(|dir| {
        tracing::info!(dir = %dir.display(), "persisting layers");
        LayerCache::new(dir, &rule)
    });
    Ok(Arc::new(Catalog::new(sources, ctx, rule, cache)))
}

/// Empties the answer cache of older snapshots as soon as a new one is served, so that
/// a refresh gives their memory back, until shutdown.
fn follow_snapshots(
    catalog: &Catalog,
    answers: Arc<crate::query::cache::AnswerCache>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut snapshots = catalog.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let version = snapshots.borrow_and_update().as_ref().map(|s| s.version);
                    if let Some(version) = version {
                        answers.keep_only(version);
                    }
                }
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    });
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
    refresher: JoinHandle<()>,
    auth_reloader: Option<JoinHandle<()>>,
    budgets_reloader: Option<JoinHandle<()>>,
    ready: watch::Receiver<bool>,
    catalog: Arc<Catalog>,
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
    health: Option<(SocketAddr, JoinHandle<Result<(), tonic::transport::Error>>)>,
    query_pool: Arc<QueryPool>,
    reporter: HealthReporter,
    drain: Drain,
    grace: Duration,
}

/// How long the accept loop may take to notice that the connections it waits for were
/// closed at the deadline; past it, it is aborted.
const AFTER_CUT: Duration = Duration::from_secs(1);

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the Prometheus endpoint, when `--metrics-listen` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    /// The address of the plain-text health listener, when `--health-listen` was given.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().map(|(addr, _)| *addr)
    }

    /// The name of the query pool's threads (`query-N`), to tell its CPU time apart.
    pub fn query_thread_name(&self) -> &str {
        self.query_pool.thread_name()
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

    /// Reports NOT_SERVING, refuses new calls, lets the calls in flight finish within
    /// `--shutdown-grace`, then closes the streams and connections still open, and
    /// flushes.
    pub async fn shutdown(self) -> Result<(), Error> {
        // First, so that a Check (not only a Watch) made from here on sees it and load
        // balancers stop sending work here while the rest winds down.
        health::set_health(&self.reporter, false).await;
        self.drain.begin();
        tracing::info!(
            grace = ?self.grace,
            calls = self.drain.calls(),
            connections = self.drain.connections(),
            "shutting down: health NOT_SERVING, new calls refused, calls in flight have the grace period"
        );
        // Watch streams (WatchBudgets, SpendAnomalies) end on this flag; tonic stops
        // accepting and asks every connection to close once its calls are done.
        let _ = self.shutdown.send(true);
        self.refresher.abort();
        for reloader in [&self.auth_reloader, &self.budgets_reloader]
            .into_iter()
            .flatten()
        {
            reloader.abort();
        }
        let mut serve = self.serve;
        let served = match tokio::time::timeout(self.grace, &mut serve).await {
            Ok(served) => served,
            Err(_) => {
                let cut = self.drain.cut();
                tracing::warn!(
                    grace = ?self.grace,
                    calls = cut.calls,
                    connections = cut.connections,
                    "shutdown grace period over: closing the calls (streams included) and connections still open"
                );
                match tokio::time::timeout(AFTER_CUT, &mut serve).await {
                    Ok(served) => served,
                    Err(_) => {
                        serve.abort();
                        tracing::warn!(
                            "connections still open after the cut; their tasks end with the process"
                        );
                        Ok(Ok(()))
                    }
                }
            }
        };
        // Probes need no draining: the health listener goes with the API, and with it
        // any Watch stream still open on it.
        let left = self.drain.cut();
        if left.connections > 0 {
            tracing::debug!(
                connections = left.connections,
                "health listener connections closed"
            );
        }
        if let Some((_, health)) = self.health {
            health.abort();
        }
        // A period built just before the signal is still being written to the cache.
        self.catalog.flush_cache().await;
        // Scrapes go on while requests drain; the endpoint stops last.
        if let Some((_, metrics)) = self.metrics {
            metrics.abort();
        }
        match served {
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
        self.shutdown().await
    }
}

/// Binds `config.server.listen` (and `--metrics-listen`) and starts serving; the first
/// snapshot loads in the background while health says NOT_SERVING.
pub async fn start(config: &Config, catalog: Arc<Catalog>) -> Result<ServerHandle, Error> {
    let auth_config = &config.auth;
    auth::check_open(
        config.server.listen,
        auth_config.auth_file.is_some(),
        auth_config.allow_unauthenticated,
    )?;
    let auth_file = match &auth_config.auth_file {
        Some(path) => Some(AuthFile::load(path)?),
        None => {
            if config.server.listen.ip().is_loopback() {
                tracing::info!(listen = %config.server.listen, "access control off on loopback: every caller sees every line item");
            } else {
                tracing::warn!(listen = %config.server.listen, "access control off (--allow-unauthenticated): every caller sees every line item");
            }
            None
        }
    };
    // Unusable TLS files stop the start, before anything listens.
    let tls = tls::TlsReloader::from_config(&config.tls)?;
    let listener =
        TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| Error::InvalidConfig {
                reason: format!("cannot listen on {}: {e}", config.server.listen),
            })?;
    let addr = listener.local_addr().map_err(|e| Error::InvalidConfig {
        reason: e.to_string(),
    })?;
    let metrics = match config.telemetry.metrics_listen {
        Some(addr) => Some(metrics::start(addr, catalog.clone()).await?),
        None => None,
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    health::set_health(&reporter, false).await;

    let reflection = |build: fn(tonic_reflection::server::Builder<'static>) -> Result<_, _>| {
        build(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.BadRequest and friends, so grpcurl shows error details.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET),
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
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::InvalidConfig {
            reason: format!("reflection: {e}"),
        })?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let drain = Drain::new();
    let query_pool = Arc::new(QueryPool::new(
        config
            .server
            .query_threads
            .unwrap_or_else(crate::config::cores),
    )?);
    let (page_keys, key_source) = PageKeys::load(
        config.limits.page_token_key_file.as_deref(),
        config.data.layer_cache_dir().as_deref(),
    )?;
    match key_source {
        KeySource::File(path) => {
            tracing::info!(path = %path.display(), "page tokens authenticated with the key file")
        }
        KeySource::Cache(path) => {
            tracing::info!(path = %path.display(), "page tokens authenticated with the key kept in the cache directory")
        }
        KeySource::Process => tracing::warn!(
            "page tokens are authenticated with a key of this process only: they will not survive a restart nor page on another replica; give --page-token-key-file"
        ),
    }
    let budgets = BudgetStore::open(
        config.budgets.budgets_file.clone(),
        config.budgets.state_file(&config.data),
    );
    let api = AttributionApi::new(
        catalog.clone(),
        config.server.query_timeout,
        config.server.limits(),
        page_keys,
        query_pool.clone(),
    )
    .with_max_range(config.limits.max_range)
    .with_answer_cache_bytes(config.limits.answer_cache_bytes)
    .with_budgets(budgets.clone())
    .with_budget_quota(usize::from(config.budgets.max_budgets_per_caller))
    .with_shutdown(shutdown_rx.clone())
    .with_auth_file(auth_file.clone());
    follow_snapshots(&catalog, api.answer_cache(), shutdown_rx.clone());
    let (ready_tx, ready_rx) = watch::channel(false);

    let stopping = shutdown_rx.clone();
    let health_listener = match config.server.health_listen {
        Some(addr) => {
            Some(health_only(addr, health.clone(), shutdown_rx.clone(), drain.clone()).await?)
        }
        None => None,
    };
    let reflection = config.server.reflection;
    let router = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(config.server.concurrency_per_connection)
        // Outermost: every layer after it sees who the client certificate names.
        .layer(tls::PeerSubjectLayer)
        .layer(RpcLayer)
        .layer(wire::WireCodesLayer {
            max_request_bytes: config.limits.max_request_bytes,
        })
        .layer(AuthLayer::new(auth_file.clone()))
        // Innermost: it answers refusals with the services' own body type.
        .layer(drain.layer())
        .add_service(health)
        .add_optional_service(reflection.then_some(reflection_v1))
        .add_optional_service(reflection.then_some(reflection_v1alpha))
        .add_service(
            AttributionServiceServer::new(api)
                .max_decoding_message_size(config.limits.max_request_bytes)
                .max_encoding_message_size(config.limits.max_response_bytes),
        );
    // Health is already NOT_SERVING when the flag is set (ServerHandle::shutdown).
    let stop = async move {
        let mut stopping = stopping;
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let serve = match &tls {
        Some(tls) => {
            tracing::info!(
                client_certificates = tls.mutual(),
                "tls on; certificate files are re-read when they change"
            );
            let tracking = drain.clone();
            let incoming =
                tls::incoming(listener, tls.clone()).map(move |io| io.map(|io| tracking.track(io)));
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
        }
        None => {
            // Answers go out as several small writes (headers, data, trailers); without
            // TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to each one.
            let tracking = drain.clone();
            let incoming = TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map(move |io| io.map(|io| tracking.track(io)));
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
        }
    };
    health::follow(
        &catalog,
        reporter.clone(),
        ready_tx,
        shutdown_rx.clone(),
        health::client_url(addr, tls.is_some()),
    );
    let auth_reloader = auth_file
        .map(|file| file.spawn_reloader(auth_config.auth_reload_interval, shutdown_rx.clone()));
    // Also for the state file alone: a damaged one is read again until it is fixed.
    let budgets_reloader = (config.budgets.budgets_file.is_some()
        || matches!(
            config.budgets.state_file(&config.data),
            crate::budgets::store::StateFile::Path(_)
        ))
    .then(|| budgets.spawn_reloader(config.budgets.budgets_reload_interval, shutdown_rx.clone()));
    let refresher = refresher::spawn(catalog.clone(), config.data.refresh_interval, shutdown_rx);
    tracing::info!(%addr, tls = tls.is_some(), reflection, "listening");
    Ok(ServerHandle {
        addr,
        shutdown: shutdown_tx,
        serve,
        refresher,
        auth_reloader,
        budgets_reloader,
        ready: ready_rx,
        catalog,
        metrics,
        health: health_listener,
        query_pool,
        reporter,
        drain,
        grace: config.server.shutdown_grace,
    })
}

/// Serves only `grpc.health.v1.Health`, in plain text, on `addr`: kubelet gRPC probes
/// cannot speak TLS, and the health status tells nothing about the data.
async fn health_only<S>(
    addr: SocketAddr,
    health: S,
    mut shutdown: watch::Receiver<bool>,
    drain: Drain,
) -> Result<(SocketAddr, JoinHandle<Result<(), tonic::transport::Error>>), Error>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::InvalidConfig {
            reason: format!("--health-listen: cannot listen on {addr}: {e}"),
        })?;
    let bound = listener.local_addr().map_err(|e| Error::InvalidConfig {
        reason: e.to_string(),
    })?;
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |io| io.map(|io| drain.track(io)));
    let serve = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            }),
    );
    tracing::info!(addr = %bound, "health listening (plain text)");
    Ok((bound, serve))
}
