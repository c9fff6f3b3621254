//! The catalog: export roots, their periods and files, and the snapshot built from them.
//!
//! A refresh lists every source, reads each period's files through DataFusion, normalizes
//! them, and swaps the new [`Snapshot`] in. A period that cannot be read keeps its last
//! good version (and the problem is reported); a period never read is simply absent.

pub mod listing;
pub mod manifest;
pub mod source;

use std::{
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use chrono::{DateTime, Utc};
use datafusion::{
    arrow::{
        array::AsArray,
        compute::{max, min},
        datatypes::TimestampMicrosecondType,
    },
    prelude::SessionContext,
};
use futures::{StreamExt, TryStreamExt};

use crate::{
    error::Error,
    normalize::{self, NOTABLE_COLUMNS, TagSets, col},
    rules::bedrock::BedrockRule,
    snapshot::{PeriodData, Problem, Snapshot},
};
use listing::PeriodFiles;
use source::Source;

/// Files read at once during a refresh.
const READ_CONCURRENCY: usize = 4;

/// Sources, the shared DataFusion session, and the current snapshot.
pub struct Catalog {
    sources: Vec<Source>,
    ctx: SessionContext,
    rule: BedrockRule,
    current: RwLock<Option<Arc<Snapshot>>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// A catalog over `sources`, registering each store with the session's runtime.
    pub fn new(sources: Vec<Source>, ctx: SessionContext, rule: BedrockRule) -> Self {
        for source in &sources {
            ctx.runtime_env()
                .register_object_store(&source.store_url(), source.store().clone());
        }
        Self {
            sources,
            ctx,
            rule,
            current: RwLock::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The shared DataFusion session.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The snapshot being served; `None` until the first refresh finished.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok().and_then(|s| s.clone())
    }

    /// The snapshot being served, or UNAVAILABLE while the first one is being built.
    pub fn require_snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        self.snapshot().ok_or(Error::NotReady)
    }

    /// Re-reads every source and swaps in a new snapshot. Refreshes run one at a time.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, Error> {
        let _guard = self.refresh_lock.lock().await;
        let started = Instant::now();
        let previous = self.snapshot();
        let mut tag_sets = previous
            .as_ref()
            .map_or_else(TagSets::new, |p| p.tag_sets.clone());
        let mut periods = Vec::new();
        let mut problems = Vec::new();
        for source in &self.sources {
            let (mut read, mut seen) = self.read_source(source, &mut tag_sets, &mut problems).await;
            // Periods that failed keep their last good version.
            let failed = |period: &str| {
                problems.iter().any(|p| {
                    p.source == source.url() && p.period.as_deref().is_none_or(|q| q == period)
                })
            };
            if let Some(prev) = &previous {
                for old in prev.periods.iter().filter(|p| p.source == source.url()) {
                    if failed(&old.period) && !seen.contains(&old.period) {
                        seen.push(old.period.clone());
                        read.push(old.clone());
                    }
                }
            }
            periods.append(&mut read);
        }
        periods.sort_by(|a, b| {
            (a.source.as_str(), a.period.as_str()).cmp(&(b.source.as_str(), b.period.as_str()))
        });
        let snapshot = Arc::new(Snapshot {
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            built_at: Utc::now(),
            sources: self.sources.iter().map(|s| s.url().to_owned()).collect(),
            periods,
            tag_sets,
            problems,
        });
        tracing::info!(
            version = snapshot.version,
            periods = snapshot.periods.len(),
            line_items = snapshot.line_items(),
            problems = snapshot.problems.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        for p in &snapshot.problems {
            tracing::warn!(source = %p.source, period = ?p.period, file = %p.file, "{}", p.message);
        }
        if let Ok(mut current) = self.current.write() {
            *current = Some(snapshot.clone());
        }
        Ok(snapshot)
    }

    /// Reads every period of one source; returns the periods read and their names.
    async fn read_source(
        &self,
        source: &Source,
        tag_sets: &mut TagSets,
        problems: &mut Vec<Problem>,
    ) -> (Vec<PeriodData>, Vec<String>) {
        let now = Utc::now();
        let (listed, listing_problems) = match listing::list_export(source).await {
            Ok(found) => found,
            Err(e) => {
                problems.push(Problem {
                    at: now,
                    source: source.url().to_owned(),
                    period: None,
                    file: source.url().to_owned(),
                    message: format!("cannot list the export: {e}"),
                });
                return (Vec::new(), Vec::new());
            }
        };
        problems.extend(listing_problems.into_iter().map(|p| Problem {
            at: now,
            source: source.url().to_owned(),
            period: p.period,
            file: p.file,
            message: p.message,
        }));
        let interner = Mutex::new(std::mem::take(tag_sets));
        let mut periods = Vec::new();
        let mut names = Vec::new();
        for files in listed {
            match self.read_period(source, &files, &interner).await {
                Ok(data) => {
                    names.push(data.period.clone());
                    periods.push(data);
                }
                Err((file, message)) => problems.push(Problem {
                    at: Utc::now(),
                    source: source.url().to_owned(),
                    period: Some(files.period.clone()),
                    file,
                    message,
                }),
            }
        }
        *tag_sets = interner
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (periods, names)
    }

    /// Reads one period; any bad file fails the whole period, so that a period is
    /// never served half-read.
    async fn read_period(
        &self,
        source: &Source,
        files: &PeriodFiles,
        tag_sets: &Mutex<TagSets>,
    ) -> Result<PeriodData, (String, String)> {
        let urls: Vec<String> = files
            .files
            .iter()
            .map(|meta| source.object_url(&meta.location))
            .collect();
        let (ctx, rule, period) = (&self.ctx, &self.rule, files.period.as_str());
        let reads: Vec<normalize::FileRead> =
            futures::stream::iter(urls.into_iter().map(|url| async move {
                normalize::read_file(ctx, &url, period, rule, tag_sets)
                    .await
                    .map_err(|e| (url, format!("cannot read the parquet file: {e}")))
            }))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut data = PeriodData {
            source: source.url().to_owned(),
            period: files.period.clone(),
            origin: files.origin,
            execution: files.execution.clone(),
            files: files.files.len(),
            bytes: files.files.iter().map(|m| m.size).sum(),
            last_modified: files.files.iter().map(|m| m.last_modified).max(),
            rows_read: 0,
            line_items: 0,
            missing_columns: NOTABLE_COLUMNS
                .iter()
                .filter(|c| {
                    !reads
                        .iter()
                        .any(|r| r.columns.iter().any(|have| have == *c))
                })
                .map(|c| c.to_string())
                .collect(),
            batches: Vec::new(),
            usage_span: None,
        };
        for read in reads {
            data.rows_read += read.rows_read;
            data.line_items += read.line_items;
            data.batches.extend(read.batches);
        }
        data.usage_span = usage_span(&data.batches);
        Ok(data)
    }
}

fn usage_span(batches: &[datafusion::arrow::array::RecordBatch]) -> Option<(i64, i64)> {
    batches
        .iter()
        .filter_map(|b| b.column_by_name(col::USAGE_START))
        .filter_map(|c| {
            let times = c.as_primitive::<TimestampMicrosecondType>();
            Some((min(times)?, max(times)?))
        })
        .reduce(|(lo, hi), (l, h)| (lo.min(l), hi.max(h)))
}

/// Formats a time for people.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
