//! Immutable, versioned views of all data: a request holds one `Arc<Snapshot>` from
//! start to end, and a refresh swaps in the next one without disturbing it.

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;

use crate::{catalog::listing::FileListOrigin, normalize::TagSets};

/// One billing period of one export, normalized.
#[derive(Debug, Clone)]
pub struct PeriodData {
    /// Export root URL.
    pub source: String,
    /// `YYYY-MM`.
    pub period: String,
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
    /// Normalized line items.
    pub batches: Vec<RecordBatch>,
    /// Earliest and latest usage start (µs since the epoch), for pruning by time range.
    pub usage_span: Option<(i64, i64)>,
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
    /// When it was seen.
    pub at: DateTime<Utc>,
    /// Export root URL.
    pub source: String,
    /// Billing period, when tied to one.
    pub period: Option<String>,
    /// Object URL concerned.
    pub file: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// Everything the service answers from, frozen.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every refresh; page tokens and caches are keyed by it.
    pub version: u64,
    /// When this snapshot was built.
    pub built_at: DateTime<Utc>,
    /// Configured export roots.
    pub sources: Vec<String>,
    /// Periods served, ordered by source and period.
    pub periods: Vec<PeriodData>,
    /// Tag maps referred to by the line items' `tag_set` ids.
    pub tag_sets: TagSets,
    /// Problems met by the refresh that built it.
    pub problems: Vec<Problem>,
}

impl Snapshot {
    /// Bedrock line items served.
    pub fn line_items(&self) -> usize {
        self.periods.iter().map(|p| p.line_items).sum()
    }

    /// The batches of the periods that may hold line items starting in `[start, end)`.
    pub fn batches_in(&self, start: i64, end: i64) -> Vec<RecordBatch> {
        self.periods
            .iter()
            .filter(|p| p.overlaps(start, end))
            .flat_map(|p| p.batches.iter().cloned())
            .collect()
    }
}
