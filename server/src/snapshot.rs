//! Immutable, versioned views of all data: a request holds one `Arc<Snapshot>` from
//! start to end, and a refresh swaps in the next one without disturbing it.

use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use rustc_hash::FxHashMap;

use crate::{
    catalog::listing::{FileListOrigin, Fingerprint},
    error::Error,
    layers::{PeriodLayers, dict::Dictionaries},
    period::BillingPeriod,
};

/// One billing period of one export, normalized.
#[derive(Debug, Clone)]
pub struct PeriodData {
    /// Export root URL.
    pub source: String,
    /// The billing period.
    pub period: BillingPeriod,
    /// Where the file list came from.
    pub origin: FileListOrigin,
    /// Create-new execution served, if any.
    pub execution: Option<String>,
    /// Data files read.
    pub files: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Newest modification time among them.
    pub last_modified: Option<DateTime<Utc>>,
    /// Parquet rows read.
    pub rows_read: usize,
    /// Bedrock line items kept.
    pub line_items: usize,
    /// Notable CUR columns that no file of the period has.
    pub missing_columns: Vec<String>,
    /// The period's layers, with ids in the snapshot's dictionaries.
    pub layers: PeriodLayers,
    /// Whether the layers came from the cache directory rather than the export.
    pub from_cache: bool,
    /// Earliest and latest usage start (µs since the epoch), for pruning by time range.
    pub usage_span: Option<(i64, i64)>,
    /// The manifest and files as they were when read; a refresh that finds the same
    /// fingerprint reuses this period instead of reading it again.
    pub fingerprint: Fingerprint,
    /// When the files were read.
    pub read_at: DateTime<Utc>,
    /// Where the period's spend without a caller goes under proportional allocation.
    pub allocation: Vec<crate::allocate::AllocationSummary>,
    /// Plain input and cache-read sums by price key (see [`crate::layers::rates`]).
    pub rates: Vec<crate::layers::rates::Rate>,
}

impl PeriodData {
    /// Whether any line item may start in `[start, end)` (µs since the epoch).
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.usage_span
            .is_some_and(|(lo, hi)| lo < end && hi >= start)
    }
}

/// A problem met while building a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// When it was seen, by the refresh that built the snapshot.
    pub at: DateTime<Utc>,
    /// When it was first seen, in an unbroken run of refreshes that all met it.
    pub since: DateTime<Utc>,
    /// What the service does about it.
    pub impact: Impact,
    /// Export root URL.
    pub source: String,
    /// Billing period, when tied to one.
    pub period: Option<BillingPeriod>,
    /// Object URL concerned.
    pub file: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// What a problem does to answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impact {
    /// The affected periods keep answering from their last good version.
    ServingLastGood,
    /// The period (or source) was never read: requests whose time range touches it fail
    /// with FAILED_PRECONDITION.
    Unavailable,
    /// Nothing is served from the object concerned, and nothing is missing (e.g. an
    /// export without periods).
    None,
    /// The object is odd but was read correctly anyway (e.g. a manifest naming a file
    /// twice, read once).
    Corrected,
}

impl Impact {
    /// `serving_last_good`, `unavailable` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ServingLastGood => "serving_last_good",
            Self::Unavailable => "unavailable",
            Self::None => "none",
            Self::Corrected => "corrected",
        }
    }
}

/// A period (or a whole source, when `period` is `None`) that has never been read
/// successfully: answers touching it would be wrong, so they are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// Export root URL.
    pub source: String,
    /// The billing period; `None` when the export itself could never be listed.
    pub period: Option<BillingPeriod>,
    /// Object URL concerned.
    pub file: String,
    /// Why.
    pub message: String,
}

/// How one period fared in the refresh that built the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodState {
    /// Listed, and what is served is its current version.
    Current,
    /// The latest version could not be listed or read; the last good one is served.
    Stale,
}

/// Per-period facts of the refresh that built the snapshot, beside the shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodCheck {
    /// State of the served version.
    pub state: PeriodState,
    /// Last refresh that found the served version current.
    pub checked_at: DateTime<Utc>,
}

/// What the refresh that built a snapshot did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Periods whose files were read (new or changed).
    pub reread: usize,
    /// Periods reused unchanged from the previous snapshot.
    pub reused: usize,
    /// Periods that could not be listed or read.
    pub failed: usize,
    /// Wall time of the refresh in milliseconds.
    pub duration_ms: u64,
}

/// Everything the service answers from, frozen.
#[derive(Debug)]
pub struct Snapshot {
    /// Identity of the data: a digest of the served periods' fingerprints, the periods
    /// that cannot be served and the Bedrock rule. A refresh that changes nothing keeps
    /// it, and another process on the same data has the same one, so page tokens and
    /// cached answers keyed by it stay valid exactly as long as the data does.
    pub version: u64,
    /// When this snapshot was built.
    pub built_at: DateTime<Utc>,
    /// Configured export roots.
    pub sources: Vec<String>,
    /// Periods served, ordered by source and period; shared with the snapshots before
    /// and after for as long as their files do not change.
    pub periods: Vec<Arc<PeriodData>>,
    /// State of each served period, in the order of `periods`.
    pub checks: Vec<PeriodCheck>,
    /// Periods and sources never read successfully.
    pub unavailable: Vec<Unavailable>,
    /// Sources listed successfully at least once.
    pub listed_sources: Vec<String>,
    /// What the refresh did.
    pub stats: RefreshStats,
    /// Every dictionary the periods' layers refer to (append-only across snapshots).
    pub dicts: Arc<Dictionaries>,
    /// Problems met by the refresh that built it.
    pub problems: Vec<Problem>,
    /// The caller dimension table, built on first use (see [`Snapshot::principal_table`]).
    pub principal_table: OnceLock<RecordBatch>,
    /// The price table of the efficiency view, built on first use (see
    /// [`crate::layers::rates::price_table`]).
    pub price_table: OnceLock<RecordBatch>,
    /// The other dimensions' value columns, built on first use.
    pub lookups: LookupValues,
}

/// A dimension whose values a query joins in by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LookupColumn {
    /// Currency codes.
    Currencies,
    /// Model names.
    Models,
    /// Account ids (usage and payer).
    Accounts,
    /// Region codes.
    Regions,
    /// Line item types.
    LineItemTypes,
    /// The value of one tag key in each tag set.
    Tag(String),
}

/// The value columns of a snapshot's dimensions, indexed by id, built on first use and
/// kept for the snapshot's life: building one copies every string of a dictionary, a
/// cost each answer would otherwise pay again.
#[derive(Debug, Default)]
pub struct LookupValues(Mutex<FxHashMap<LookupColumn, ArrayRef>>);

impl LookupValues {
    /// The values of `column` in `dicts`, indexed by id (NULL where a tag set lacks
    /// the key). A tag key that no set has is not kept, so that callers naming keys
    /// at random cannot grow the cache.
    pub fn get(&self, column: &LookupColumn, dicts: &Dictionaries) -> ArrayRef {
        let cached = self.0.lock().ok().and_then(|map| map.get(column).cloned());
        if let Some(values) = cached {
            return values;
        }
        let values: ArrayRef = match column {
            LookupColumn::Currencies => Arc::new(dicts.currencies.to_array()),
            LookupColumn::Models => Arc::new(dicts.models.to_array()),
            LookupColumn::Accounts => Arc::new(dicts.accounts.to_array()),
            LookupColumn::Regions => Arc::new(dicts.regions.to_array()),
            LookupColumn::LineItemTypes => Arc::new(dicts.line_item_types.to_array()),
            LookupColumn::Tag(key) => Arc::new(dicts.tag_sets.values_of(key)),
        };
        let known = !matches!(column, LookupColumn::Tag(_)) || values.null_count() < values.len();
        if known && let Ok(mut map) = self.0.lock() {
            map.insert(column.clone(), values.clone());
        }
        values
    }
}

impl Snapshot {
    /// Bedrock line items served.
    pub fn line_items(&self) -> usize {
        self.periods.iter().map(|p| p.line_items).sum()
    }

    /// Refuses a time range `[start, end)` (µs since the epoch) that touches a period
    /// never read successfully, or any range while an export has never been listed:
    /// an answer without that data would be silently wrong.
    pub fn check_range(&self, start: i64, end: i64) -> Result<(), Error> {
        for u in &self.unavailable {
            let touches = match &u.period {
                None => true,
                Some(p) => p.overlaps(start, end),
            };
            if touches {
                return Err(Error::DataUnavailable {
                    export: u.source.clone(),
                    period: u.period,
                    file: u.file.clone(),
                    reason: u.message.clone(),
                });
            }
        }
        Ok(())
    }

    /// The periods that may hold line items starting in `[start, end)`.
    pub fn periods_in(&self, start: i64, end: i64) -> impl Iterator<Item = &PeriodData> {
        self.periods
            .iter()
            .filter(move |p| p.overlaps(start, end))
            .map(|p| p.as_ref())
    }

    /// Bytes of the layers held by every period.
    pub fn layer_bytes(&self) -> usize {
        self.periods.iter().map(|p| p.layers.bytes()).sum()
    }
}

/// The identity of the data a snapshot serves (see [`Snapshot::version`]).
pub fn data_version<'a>(
    rule: &str,
    periods: impl Iterator<Item = (&'a str, BillingPeriod, &'a Fingerprint)>,
    unavailable: &[Unavailable],
) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // Bump when the layers' meaning changes, so that tokens of older builds are refused.
    h.update(b"bedrock-attribution data v2\n");
    h.update(rule.as_bytes());
    for (source, period, fingerprint) in periods {
        h.update(format!("\nperiod {source} {period} ").as_bytes());
        h.update(fingerprint.digest());
    }
    for u in unavailable {
        // As text, so that the identity of the same data stays what it was when periods
        // were strings: page tokens survive an upgrade.
        let period = u.period.map(|p| p.to_string());
        h.update(format!("\nunavailable {} {:?}", u.source, period).as_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Never 0, which callers may read as "unset".
    u64::from_be_bytes(first).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_touching_unavailable_periods_are_refused() {
        let mut s = Snapshot {
            version: 1,
            built_at: Utc::now(),
            sources: vec!["s3://b/e".into()],
            periods: Vec::new(),
            checks: Vec::new(),
            unavailable: vec![Unavailable {
                source: "s3://b/e".into(),
                period: BillingPeriod::parse("2026-05"),
                file: "s3://b/e/data/BILLING_PERIOD=2026-05/e-00001.snappy.parquet".into(),
                message: "cannot read the parquet file: truncated".into(),
            }],
            listed_sources: vec!["s3://b/e".into()],
            stats: RefreshStats::default(),
            dicts: Arc::default(),
            problems: Vec::new(),
            principal_table: OnceLock::new(),
            price_table: OnceLock::new(),
            lookups: LookupValues::default(),
        };
        let span = |text| BillingPeriod::parse(text).map(BillingPeriod::span_micros);
        let (may_start, may_end) = span("2026-05").unwrap_or_default();
        let (apr_start, _) = span("2026-04").unwrap_or_default();
        let (_, jun_end) = span("2026-06").unwrap_or_default();
        assert!(s.check_range(apr_start, may_start).is_ok(), "April only");
        assert!(s.check_range(may_end, jun_end).is_ok(), "June only");
        let e = s.check_range(apr_start, may_start + 1).err();
        assert!(
            matches!(&e, Some(Error::DataUnavailable { period: Some(p), .. }) if p.to_string() == "2026-05"),
            "{e:?}"
        );
        s.unavailable[0].period = None;
        assert!(
            s.check_range(apr_start, may_start).is_err(),
            "a whole export"
        );
    }
}
