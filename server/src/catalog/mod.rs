//! The catalog: export roots, their periods and files, and the snapshot built from them.
//!
//! A refresh lists every source and reads only the periods whose manifest or files
//! changed since the snapshot before (by ETag, size and modification time); unchanged
//! periods are shared with it. The new [`Snapshot`] is swapped in whole, so a request
//! that holds the old one finishes on it. A period that cannot be listed or read keeps
//! its last good version and the problem is reported; a period (or export) that was
//! never read successfully is recorded as unavailable, and requests touching it fail.

pub mod aws_profile;
pub mod listing;
pub mod manifest;
pub mod metered;
pub mod source;
pub mod stores;

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use tokio::sync::watch;
use tracing::{Instrument, field::Empty};

use crate::{
    error::Error,
    layers::{dict::Dictionaries, persist::LayerCache},
    load::{self, LoadError, LoadedPeriod},
    period::BillingPeriod,
    rules::bedrock::BedrockRule,
    snapshot::{
        Impact, PeriodCheck, PeriodData, PeriodState, Problem, RefreshStats, Snapshot, Unavailable,
        data_version,
    },
};
use listing::PeriodFiles;
use source::Source;

/// Files read at once during a refresh: one per core, as normalizing is CPU-bound and
/// each file in flight holds its decoded batches.
fn read_parallelism() -> usize {
    crate::config::cores()
}

/// Sources, the shared DataFusion session, and the current snapshot.
pub struct Catalog {
    sources: Vec<Source>,
    ctx: SessionContext,
    /// The session files are read with: one partition per file.
    load_ctx: SessionContext,
    rule: BedrockRule,
    /// Where built periods are persisted, if anywhere.
    cache: Option<LayerCache>,
    /// The snapshot being served; a watch so that health can follow every swap.
    current: watch::Sender<Option<Arc<Snapshot>>>,
    refresh_lock: tokio::sync::Mutex<()>,
    /// Snapshots built successfully, so that a refresh asked while another runs can
    /// tell it finished and take its snapshot instead of building again.
    builds: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

/// The snapshot being assembled by one refresh.
struct Build<'a> {
    previous: Option<&'a Snapshot>,
    now: DateTime<Utc>,
    periods: Vec<(Arc<PeriodData>, PeriodCheck)>,
    problems: Vec<Problem>,
    unavailable: Vec<Unavailable>,
    listed: Vec<String>,
    stats: RefreshStats,
}

impl<'a> Build<'a> {
    fn previous_period(
        &self,
        source: &str,
        period: BillingPeriod,
    ) -> Option<(Arc<PeriodData>, PeriodCheck)> {
        let prev = self.previous?;
        prev.periods
            .iter()
            .zip(&prev.checks)
            .find(|(p, _)| p.source == source && p.period == period)
            .map(|(p, c)| (p.clone(), c.clone()))
    }

    fn problem(
        &mut self,
        source: &str,
        period: Option<BillingPeriod>,
        file: String,
        message: String,
        impact: Impact,
    ) {
        let since = self
            .previous
            .and_then(|prev| {
                prev.problems
                    .iter()
                    .find(|p| p.source == source && p.period == period && p.file == file)
            })
            .map_or(self.now, |p| p.since);
        self.problems.push(Problem {
            at: Utc::now(),
            since,
            impact,
            source: source.to_owned(),
            period,
            file,
            message,
        });
    }

    /// Serves the last good version of a period that could not be refreshed; false when
    /// there is none.
    fn keep_last_good(&mut self, source: &str, period: BillingPeriod) -> bool {
        match self.previous_period(source, period) {
            Some((data, check)) => {
                self.periods.push((
                    data,
                    PeriodCheck {
                        state: PeriodState::Stale,
                        ..check
                    },
                ));
                true
            }
            None => false,
        }
    }

    fn fail_period(&mut self, source: &str, period: BillingPeriod, file: String, message: String) {
        self.stats.failed += 1;
        if self.keep_last_good(source, period) {
            self.problem(source, Some(period), file, message, Impact::ServingLastGood);
        } else {
            self.unavailable.push(Unavailable {
                source: source.to_owned(),
                period: Some(period),
                file: file.clone(),
                message: message.clone(),
            });
            self.problem(source, Some(period), file, message, Impact::Unavailable);
        }
    }

    /// The export could not be listed: everything it had stays as it was.
    fn fail_source(&mut self, source: &Source, message: String) {
        let url = source.url();
        let Some(prev) = self.previous else {
            self.never_listed(url, message);
            return;
        };
        let kept: Vec<BillingPeriod> = prev
            .periods
            .iter()
            .filter(|p| p.source == url)
            .map(|p| p.period)
            .collect();
        for period in &kept {
            self.keep_last_good(url, *period);
        }
        self.stats.failed += kept.len();
        self.unavailable.extend(
            prev.unavailable
                .iter()
                .filter(|u| u.source == url && u.period.is_some())
                .cloned(),
        );
        if prev.listed_sources.iter().any(|s| s == url) {
            self.listed.push(url.to_owned());
            self.problem(url, None, url.to_owned(), message, Impact::ServingLastGood);
        } else {
            self.never_listed(url, message);
        }
    }

    fn never_listed(&mut self, url: &str, message: String) {
        self.unavailable.push(Unavailable {
            source: url.to_owned(),
            period: None,
            file: url.to_owned(),
            message: message.clone(),
        });
        self.problem(url, None, url.to_owned(), message, Impact::Unavailable);
    }
}

impl Catalog {
    /// A catalog over `sources`, read through `ctx` (whose runtime knows their stores),
    /// persisting built periods in `cache` when given.
    pub fn new(
        sources: Vec<Source>,
        ctx: SessionContext,
        rule: BedrockRule,
        cache: Option<LayerCache>,
    ) -> Self {
        // Reading a file is one stream, polled by its own task: with more partitions
        // DataFusion would add a round-robin repartition after the scan (tasks, channels,
        // and batches in a varying order). The load session shares the runtime, so the
        // object stores registered once serve both.
        // Reading files is not bounded by the queries' memory pool (`--query-memory`):
        // a refresh must not fail because queries hold the pool.
        let load_runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(
            &ctx.runtime_env(),
        )
        .with_memory_pool(Arc::new(
            datafusion::execution::memory_pool::UnboundedMemoryPool::default(),
        ))
        .build_arc()
        .unwrap_or_else(|_| ctx.runtime_env());
        let load_ctx = SessionContext::new_with_config_rt(
            ctx.copied_config().with_target_partitions(1),
            load_runtime,
        );
        Self {
            sources,
            ctx,
            load_ctx,
            rule,
            cache,
            current: watch::Sender::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            builds: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Waits until the layers of every period built so far are persisted (they are
    /// written behind the snapshot that serves them).
    pub async fn flush_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.flush().await;
        }
    }

    /// The shared DataFusion session.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The snapshot being served; `None` until the first refresh finished.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.borrow().clone()
    }

    /// Follows the snapshot being served: changes with every refresh.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.current.subscribe()
    }

    /// The snapshot being served, or UNAVAILABLE while the first one is being built.
    pub fn require_snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        self.snapshot().ok_or(Error::NotReady)
    }

    /// Snapshots built successfully since the start.
    pub fn builds(&self) -> u64 {
        self.builds.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lists every source, re-reads the periods that changed, and swaps in a new
    /// snapshot. Refreshes run one at a time, and are coalesced: a call made while a
    /// refresh runs waits for that one and returns its snapshot instead of building
    /// another, so `Refresh` called in a loop or by many callers costs one build at a
    /// time (that snapshot may have listed a source just before the call; a later call
    /// reads again). Each build is a span (`snapshot.build`) and is counted in the
    /// snapshot metrics.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, Error> {
        use std::sync::atomic::Ordering;
        let seen = self.builds.load(Ordering::SeqCst);
        let _guard = self.refresh_lock.lock().await;
        if self.builds.load(Ordering::SeqCst) != seen
            && let Some(snapshot) = self.snapshot()
        {
            // A build finished while this call waited: it is the answer.
            return Ok(snapshot);
        }
        // Calls made at the same moment on other tasks (or on this one, joined) get to
        // take their place in line before this build, so that they share it.
        tokio::task::yield_now().await;
        let span = tracing::info_span!(
            "snapshot.build",
            version = Empty,
            periods = Empty,
            reread = Empty,
            reused = Empty,
            failed = Empty,
            line_items = Empty,
        );
        let started = Instant::now();
        let built = self.build().instrument(span.clone()).await;
        match &built {
            Ok(snapshot) => {
                self.builds.fetch_add(1, Ordering::SeqCst);
                // Counts as i64 (OpenTelemetry exports unsigned integers as strings);
                // the version, a digest, as its decimal string.
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                span.record("version", snapshot.version.to_string().as_str());
                span.record("periods", count(snapshot.periods.len()));
                span.record("reread", count(snapshot.stats.reread));
                span.record("reused", count(snapshot.stats.reused));
                span.record("failed", count(snapshot.stats.failed));
                span.record("line_items", count(snapshot.line_items()));
            }
            Err(_) => crate::telemetry::metrics::snapshot_failed(started.elapsed()),
        }
        built
    }

    /// One refresh (the caller holds the refresh lock).
    async fn build(&self) -> Result<Arc<Snapshot>, Error> {
        let started = Instant::now();
        // Raw batches are freed file after file: hand them back at once, so that the
        // load's peak stays near what it holds (crate::allocator).
        let _purge = crate::allocator::EagerPurge::start();
        let previous = self.snapshot();
        let previous_version = previous.as_ref().map(|p| p.version);
        // Dictionaries only grow, so the ids of periods reused from the previous
        // snapshot stay valid.
        let mut dicts = previous
            .as_ref()
            .map_or_else(Dictionaries::default, |p| (*p.dicts).clone());
        let mut build = Build {
            previous: previous.as_deref(),
            now: Utc::now(),
            periods: Vec::new(),
            problems: Vec::new(),
            unavailable: Vec::new(),
            listed: Vec::new(),
            stats: RefreshStats::default(),
        };
        for source in &self.sources {
            self.refresh_source(source, &mut dicts, &mut build).await;
        }
        let Build {
            mut periods,
            problems,
            mut unavailable,
            listed,
            mut stats,
            ..
        } = build;
        periods.sort_by(|(a, _), (b, _)| {
            (a.source.as_str(), a.period).cmp(&(b.source.as_str(), b.period))
        });
        let (periods, checks): (Vec<Arc<PeriodData>>, Vec<PeriodCheck>) =
            periods.into_iter().unzip();
        unavailable.sort_by(|a, b| (&a.source, &a.period).cmp(&(&b.source, &b.period)));
        stats.duration_ms = started.elapsed().as_millis() as u64;
        let version = data_version(
            &self.rule.product_codes().join(","),
            periods
                .iter()
                .map(|p| (p.source.as_str(), p.period, &p.fingerprint)),
            &unavailable,
        );
        let snapshot = Arc::new(Snapshot {
            version,
            built_at: Utc::now(),
            sources: self.sources.iter().map(|s| s.url().to_owned()).collect(),
            periods,
            checks,
            unavailable,
            listed_sources: listed,
            stats,
            dicts: Arc::new(dicts),
            problems,
            principal_table: OnceLock::new(),
            price_table: OnceLock::new(),
            lookups: Default::default(),
        });
        tracing::info!(
            version = snapshot.version,
            periods = snapshot.periods.len(),
            reread = snapshot.stats.reread,
            reused = snapshot.stats.reused,
            failed = snapshot.stats.failed,
            line_items = snapshot.line_items(),
            layer_mib = snapshot.layer_bytes() / (1 << 20),
            problems = snapshot.problems.len(),
            elapsed_ms = snapshot.stats.duration_ms,
            "snapshot built"
        );
        for p in &snapshot.problems {
            tracing::warn!(source = %p.source, period = p.period.map(tracing::field::display), file = %p.file, impact = p.impact.name(), "{}", p.message);
        }
        drop(previous);
        // Counted before it is served, so that whoever sees it served sees it counted.
        crate::telemetry::metrics::snapshot_built(&snapshot, previous_version, started.elapsed());
        self.current.send_replace(Some(snapshot.clone()));
        Ok(snapshot)
    }

    /// Lists one source and brings each of its periods into `build`: reused when its
    /// fingerprint is unchanged, read when new or changed, kept at its last good
    /// version (or recorded as unavailable) when it fails.
    async fn refresh_source(
        &self,
        source: &Source,
        dicts: &mut Dictionaries,
        build: &mut Build<'_>,
    ) {
        let url = source.url();
        let (listed, listing_problems) = match listing::list_export(source).await {
            Ok(found) => found,
            Err(e) => {
                build.fail_source(source, format!("cannot list the export: {e}"));
                return;
            }
        };
        build.listed.push(url.to_owned());
        if listed.is_empty() && listing_problems.is_empty() {
            build.problem(
                url,
                None,
                source.object_url(&source.child("data")),
                listing::no_periods_message(source).await,
                Impact::None,
            );
        }
        for p in listing_problems {
            build.fail_period(url, p.period, p.file, p.message);
        }
        for files in listed {
            for correction in &files.corrections {
                let manifest = source.object_url(
                    &source.child(&format!("metadata/BILLING_PERIOD={}", files.period)),
                );
                build.problem(
                    url,
                    Some(files.period),
                    manifest,
                    correction.clone(),
                    Impact::Corrected,
                );
            }
            if let Some((data, _)) = build
                .previous_period(url, files.period)
                .filter(|(data, _)| data.fingerprint == files.fingerprint)
            {
                build.stats.reused += 1;
                build.periods.push((
                    data,
                    PeriodCheck {
                        state: PeriodState::Current,
                        checked_at: build.now,
                    },
                ));
                continue;
            }
            match self.read_period(source, &files, dicts).await {
                Ok(data) => {
                    build.stats.reread += 1;
                    build.periods.push((
                        Arc::new(data),
                        PeriodCheck {
                            state: PeriodState::Current,
                            checked_at: build.now,
                        },
                    ));
                }
                Err(e) => build.fail_period(url, files.period, e.file, e.message),
            }
        }
    }

    /// Reads one period (from the cache directory when it holds this exact version),
    /// and maps its ids onto the snapshot's dictionaries.
    async fn read_period(
        &self,
        source: &Source,
        files: &PeriodFiles,
        dicts: &mut Dictionaries,
    ) -> Result<PeriodData, LoadError> {
        let span = tracing::info_span!(
            "period.read",
            source = source.url(),
            period = %files.period,
            files = i64::try_from(files.files.len()).unwrap_or(i64::MAX),
            from_cache = Empty,
        );
        self.read_period_in(source, files, dicts, &span)
            .instrument(span.clone())
            .await
    }

    async fn read_period_in(
        &self,
        source: &Source,
        files: &PeriodFiles,
        dicts: &mut Dictionaries,
        span: &tracing::Span,
    ) -> Result<PeriodData, LoadError> {
        let cached = match &self.cache {
            Some(cache) => {
                let cached = cache.load(source.url(), files).await;
                crate::telemetry::metrics::layer_cache(cached.is_some());
                cached
            }
            None => None,
        };
        let from_cache = cached.is_some();
        span.record("from_cache", from_cache);
        let loaded: LoadedPeriod = match cached {
            Some(loaded) => loaded,
            None => {
                let urls: Vec<String> = files
                    .files
                    .iter()
                    .map(|meta| source.object_url(&meta.location))
                    .collect();
                let loaded = load::load_period(
                    &self.load_ctx,
                    &urls,
                    &self.rule,
                    read_parallelism(),
                    source.url(),
                    Some(files.period),
                )
                .await?;
                if let Some(cache) = &self.cache {
                    cache.store(source.url(), files, &loaded);
                }
                loaded
            }
        };
        let remap = dicts.absorb(&loaded.dicts);
        let layers = loaded.layers.remap(&remap).map_err(|e| LoadError {
            file: source.url().to_owned(),
            message: format!("cannot map the period's dictionaries: {e}"),
        })?;
        Ok(PeriodData {
            source: source.url().to_owned(),
            period: files.period,
            origin: files.origin,
            execution: files.execution.clone(),
            files: files.files.len(),
            bytes: files.files.iter().map(|m| m.size).sum(),
            last_modified: files.files.iter().map(|m| m.last_modified).max(),
            rows_read: loaded.rows_read,
            line_items: loaded.line_items,
            missing_columns: loaded.missing_columns,
            usage_span: layers.usage_span(),
            layers,
            from_cache,
            fingerprint: files.fingerprint.clone(),
            read_at: Utc::now(),
            allocation: loaded.allocation,
            rates: loaded.rates,
        })
    }
}

/// Formats a time for people.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
