//! Layers: what a billing period keeps in memory after it is read, and what queries scan.
//!
//! A period's Bedrock line items are summed by every key a question can group or filter
//! on, at three grains, each a set of Arrow batches (DataFusion tables):
//! - **fine**: by exact usage start (CUR rows are hourly, so this is the hourly layer),
//!   chunked by hour; line items that differ only in token kind or usage type collapse
//!   into one row;
//! - **daily**: by UTC day;
//! - **monthly**: by calendar month.
//!
//! Every row holds sums (tokens by kind, four cost metrics and their allocation in
//! integer units of 1e-10, line items), so any answer is a sum of partial sums and
//! the coarsest layer that covers part of a range answers that part exactly. Keys are
//! dictionary ids ([`dict`]); each chunk (one hour, day or month) is sorted by caller
//! ARN, so a one-caller question reads only that caller's rows.

pub mod dict;
pub mod persist;
pub mod rates;

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Datelike, NaiveDate};
use datafusion::arrow::{
    array::{
        ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMicrosecondArray, UInt8Array,
        UInt32Array,
    },
    datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, UInt32Type},
    error::ArrowError,
};
use rustc_hash::FxHashMap;

use crate::{query::CostMetric, rules::usage::TokenKind};
use dict::{Dictionaries, Dictionary, Remap, remap_ids};

/// Column names of every layer.
pub mod col {
    /// Usage start (fine), day start (daily) or month start (monthly); `Timestamp(µs, UTC)`.
    pub const USAGE_START: &str = "usage_start";
    /// Caller ARN id; 0 is no caller.
    pub const PRINCIPAL: &str = "principal";
    /// Usage account id.
    pub const ACCOUNT: &str = "account";
    /// Payer account id.
    pub const PAYER: &str = "payer";
    /// Region id; 0 is none.
    pub const REGION: &str = "region";
    /// Line item type id.
    pub const LINE_ITEM_TYPE: &str = "line_item_type";
    /// Currency id.
    pub const CURRENCY: &str = "currency";
    /// Model id; 0 is none.
    pub const MODEL: &str = "model";
    /// Usage category code (`UsageCategory::code`).
    pub const USAGE_CATEGORY: &str = "usage_category";
    /// Routing code (`Routing::code`).
    pub const ROUTING: &str = "routing";
    /// Tag set id.
    pub const TAG_SET: &str = "tag_set";
    /// Input tokens.
    pub const TOKENS_INPUT: &str = "tokens_input";
    /// Output tokens.
    pub const TOKENS_OUTPUT: &str = "tokens_output";
    /// Cache read tokens.
    pub const TOKENS_CACHE_READ: &str = "tokens_cache_read";
    /// Cache write tokens.
    pub const TOKENS_CACHE_WRITE: &str = "tokens_cache_write";
    /// Line items summed into the row.
    pub const LINE_ITEMS: &str = "line_items";
    /// The id columns, in schema order after `usage_start`.
    pub const KEYS: [&str; 10] = [
        PRINCIPAL,
        ACCOUNT,
        PAYER,
        REGION,
        LINE_ITEM_TYPE,
        CURRENCY,
        MODEL,
        USAGE_CATEGORY,
        ROUTING,
        TAG_SET,
    ];
    /// The token columns, in [`super::Tokens`] field order.
    pub const TOKENS: [&str; 4] = [
        TOKENS_INPUT,
        TOKENS_OUTPUT,
        TOKENS_CACHE_READ,
        TOKENS_CACHE_WRITE,
    ];
}

/// The layer column holding a metric's direct cost (integer units of 1e-10).
pub fn cost_column(metric: CostMetric) -> &'static str {
    match metric {
        CostMetric::Unblended => "cost_unblended",
        CostMetric::NetUnblended => "cost_net_unblended",
        CostMetric::Blended => "cost_blended",
        CostMetric::PublicOnDemand => "cost_public_on_demand",
    }
}

/// The layer column holding a metric's proportional allocation (see [`crate::allocate`]).
pub fn alloc_column(metric: CostMetric) -> &'static str {
    match metric {
        CostMetric::Unblended => "alloc_unblended",
        CostMetric::NetUnblended => "alloc_net_unblended",
        CostMetric::Blended => "alloc_blended",
        CostMetric::PublicOnDemand => "alloc_public_on_demand",
    }
}

/// The four metrics, in the order of the amount columns.
pub const METRICS: [CostMetric; 4] = [
    CostMetric::Unblended,
    CostMetric::NetUnblended,
    CostMetric::Blended,
    CostMetric::PublicOnDemand,
];

/// The type of `usage_start`.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Schema shared by every layer.
pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![Field::new(col::USAGE_START, time_type(), false)];
    for key in col::KEYS {
        // Codes of a few values take one byte a row, not four.
        let t = if key == col::USAGE_CATEGORY || key == col::ROUTING {
            DataType::UInt8
        } else {
            DataType::UInt32
        };
        fields.push(Field::new(key, t, false));
    }
    for t in col::TOKENS {
        fields.push(Field::new(t, DataType::Int64, false));
    }
    for m in METRICS {
        fields.push(Field::new(cost_column(m), DataType::Int64, false));
    }
    for m in METRICS {
        fields.push(Field::new(alloc_column(m), DataType::Int64, false));
    }
    fields.push(Field::new(col::LINE_ITEMS, DataType::Int64, false));
    Arc::new(Schema::new(fields))
});

/// Everything a line item is grouped and filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LineKey {
    /// Usage start, µs since the epoch (the bucket start in rollups).
    pub start: i64,
    /// Caller id (0: none).
    pub principal: u32,
    /// Usage account id.
    pub account: u32,
    /// Payer account id.
    pub payer: u32,
    /// Region id.
    pub region: u32,
    /// Line item type id.
    pub line_item_type: u32,
    /// Currency id.
    pub currency: u32,
    /// Model id.
    pub model: u32,
    /// Usage category code.
    pub category: u8,
    /// Routing code.
    pub routing: u8,
    /// Tag set id.
    pub tag_set: u32,
}

/// Token counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Uncached input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Cache read input tokens.
    pub cache_read: i64,
    /// Cache write input tokens.
    pub cache_write: i64,
}

impl Tokens {
    /// Adds `count` tokens of `kind`.
    pub fn add(&mut self, kind: TokenKind, count: i64) {
        match kind {
            TokenKind::Input => self.input += count,
            TokenKind::Output => self.output += count,
            TokenKind::CacheRead => self.cache_read += count,
            TokenKind::CacheWrite => self.cache_write += count,
        }
    }

    /// Adds every kind of `other`.
    pub fn merge(&mut self, other: &Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
    }

    /// All kinds together.
    pub fn total(&self) -> i64 {
        self.input + self.output + self.cache_read + self.cache_write
    }

    /// Counts given in the order of [`col::TOKENS`].
    pub fn from_column_order([input, output, cache_read, cache_write]: [i64; 4]) -> Self {
        Self {
            input,
            output,
            cache_read,
            cache_write,
        }
    }
}

/// One amount per cost metric, in integer units of 1e-10.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Amounts {
    /// Unblended cost.
    pub unblended: i64,
    /// Net unblended cost.
    pub net_unblended: i64,
    /// Blended cost.
    pub blended: i64,
    /// Public on-demand cost.
    pub public_on_demand: i64,
}

impl Amounts {
    /// The amount of `metric`.
    pub fn get(&self, metric: CostMetric) -> i64 {
        match metric {
            CostMetric::Unblended => self.unblended,
            CostMetric::NetUnblended => self.net_unblended,
            CostMetric::Blended => self.blended,
            CostMetric::PublicOnDemand => self.public_on_demand,
        }
    }

    /// The amount of `metric`, to change.
    pub fn get_mut(&mut self, metric: CostMetric) -> &mut i64 {
        match metric {
            CostMetric::Unblended => &mut self.unblended,
            CostMetric::NetUnblended => &mut self.net_unblended,
            CostMetric::Blended => &mut self.blended,
            CostMetric::PublicOnDemand => &mut self.public_on_demand,
        }
    }

    /// The sum, or an error naming the limit when a metric leaves the i64 range.
    pub fn checked_add(&self, other: &Amounts) -> Result<Amounts, ArrowError> {
        let add = |a: i64, b: i64| a.checked_add(b).ok_or_else(overflow);
        Ok(Amounts {
            unblended: add(self.unblended, other.unblended)?,
            net_unblended: add(self.net_unblended, other.net_unblended)?,
            blended: add(self.blended, other.blended)?,
            public_on_demand: add(self.public_on_demand, other.public_on_demand)?,
        })
    }
}

fn overflow() -> ArrowError {
    ArrowError::ComputeError(
        "a sum of one group of line items is beyond ±922,337,203 in one currency, the largest amount the layers hold exactly".into(),
    )
}

/// What a layer row sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    /// Tokens by kind.
    pub tokens: Tokens,
    /// Direct cost.
    pub cost: Amounts,
    /// Cost shared in (+) or out (-) by proportional allocation.
    pub allocated: Amounts,
    /// Line items.
    pub line_items: i64,
}

impl Sums {
    /// Adds `other`, exactly, or fails when an amount leaves the i64 range.
    pub fn merge(&mut self, other: &Sums) -> Result<(), ArrowError> {
        self.tokens.merge(&other.tokens);
        self.cost = self.cost.checked_add(&other.cost)?;
        self.allocated = self.allocated.checked_add(&other.allocated)?;
        self.line_items += other.line_items;
        Ok(())
    }
}

/// Rows keyed by [`LineKey`], summed; the builder of every layer.
#[derive(Debug, Default)]
pub struct GroupedRows {
    index: FxHashMap<LineKey, u32>,
    /// Keys, in first-seen order.
    pub keys: Vec<LineKey>,
    /// Sums, aligned with `keys`.
    pub sums: Vec<Sums>,
}

impl GroupedRows {
    /// The row of `key`, created empty when new.
    pub fn row(&mut self, key: LineKey) -> u32 {
        let next = self.keys.len() as u32;
        let keys = &mut self.keys;
        let sums = &mut self.sums;
        *self.index.entry(key).or_insert_with(|| {
            keys.push(key);
            sums.push(Sums::default());
            next
        })
    }

    /// Adds `sums` to the row of `key`, returning that row.
    pub fn add(&mut self, key: LineKey, sums: &Sums) -> Result<u32, ArrowError> {
        let row = self.row(key);
        self.sums[row as usize].merge(sums)?;
        Ok(row)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Releases unused capacity of the rows.
    pub fn shrink_to_fit(&mut self) {
        self.keys.shrink_to_fit();
        self.sums.shrink_to_fit();
    }

    /// Frees the key index once no row will be added: its memory is larger than the
    /// rows'. Adding after this starts a new index (rows would then repeat keys).
    pub fn seal(&mut self) {
        self.index = FxHashMap::default();
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The rows re-summed with each key's start moved to `bucket(start)`.
    fn rolled_up(&self, bucket: impl Fn(i64) -> i64) -> Result<GroupedRows, ArrowError> {
        let mut out = GroupedRows::default();
        for (key, sums) in self.keys.iter().zip(&self.sums) {
            out.add(
                LineKey {
                    start: bucket(key.start),
                    ..*key
                },
                sums,
            )?;
        }
        Ok(out)
    }
}

/// µs in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;
/// µs in an hour.
pub const HOUR_MICROS: i64 = 3_600_000_000;

/// Start of the hour holding `micros`.
pub fn hour_start(micros: i64) -> i64 {
    micros - micros.rem_euclid(HOUR_MICROS)
}

/// Start of the UTC day holding `micros`.
pub fn day_start(micros: i64) -> i64 {
    micros - micros.rem_euclid(DAY_MICROS)
}

/// Start of the calendar month holding `micros` (UTC).
pub fn month_start(micros: i64) -> i64 {
    DateTime::from_timestamp_micros(micros)
        .and_then(|t| NaiveDate::from_ymd_opt(t.year(), t.month(), 1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(day_start(micros), |t| t.and_utc().timestamp_micros())
}

/// Start of the calendar month after the one holding `micros` (UTC).
pub fn next_month_start(micros: i64) -> i64 {
    month_start(month_start(micros) + 32 * DAY_MICROS)
}

/// The grain of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Exact usage start.
    Fine,
    /// UTC day.
    Daily,
    /// Calendar month.
    Monthly,
}

impl Grain {
    /// `fine`, `daily` or `monthly`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fine => "fine",
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }

    /// Start of the chunk holding `micros`.
    pub fn bucket(self, micros: i64) -> i64 {
        match self {
            Self::Fine => hour_start(micros),
            Self::Daily => day_start(micros),
            Self::Monthly => month_start(micros),
        }
    }

    /// End of the chunk starting at `start`.
    pub fn bucket_end(self, start: i64) -> i64 {
        match self {
            Self::Fine => start + HOUR_MICROS,
            Self::Daily => start + DAY_MICROS,
            Self::Monthly => next_month_start(start),
        }
    }
}

/// The rows of one hour (fine), day (daily) or month (monthly), sorted by caller ARN.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// First instant the chunk covers (µs).
    pub start: i64,
    /// First instant after it (µs).
    pub end: i64,
    /// The rows, in [`SCHEMA`].
    pub batch: RecordBatch,
}

impl Chunk {
    /// The rows whose caller is one of `arns` (the empty string selects no caller), as
    /// slices of the batch: found by binary search, as the rows are sorted by ARN.
    pub fn rows_of(&self, arns: &[&str], principals: &Dictionary) -> Vec<RecordBatch> {
        let Some(ids) = self
            .batch
            .column_by_name(col::PRINCIPAL)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
        else {
            return Vec::new();
        };
        let ids = ids.values();
        let mut out = Vec::new();
        for arn in arns {
            let lo = ids.partition_point(|id| principals.value(*id) < *arn);
            let hi = ids.partition_point(|id| principals.value(*id) <= *arn);
            if hi > lo {
                out.push(self.batch.slice(lo, hi - lo));
            }
        }
        out
    }
}

/// One layer of one period: chunks in time order.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its grain.
    pub grain: Grain,
    /// Chunks, ordered by start, not overlapping.
    pub chunks: Vec<Chunk>,
}

impl Layer {
    /// Rows held.
    pub fn rows(&self) -> usize {
        self.chunks.iter().map(|c| c.batch.num_rows()).sum()
    }

    /// Bytes of the Arrow buffers held, each buffer counted once (see [`BufferBytes`]).
    pub fn bytes(&self) -> usize {
        let mut bytes = BufferBytes::default();
        bytes.add_layer(self);
        bytes.total
    }

    /// The chunk starting at `start`, if any (chunks are ordered by start).
    pub fn chunk_at(&self, start: i64) -> Option<&Chunk> {
        self.chunks
            .binary_search_by_key(&start, |c| c.start)
            .ok()
            .map(|i| &self.chunks[i])
    }

    /// Rows of the chunk starting at `start` (0 when there is none).
    pub fn rows_at(&self, start: i64) -> usize {
        self.chunk_at(start).map_or(0, |c| c.batch.num_rows())
    }

    /// The chunks overlapping `[start, end)`.
    pub fn chunks_overlapping(&self, start: i64, end: i64) -> impl Iterator<Item = &Chunk> {
        self.chunks
            .iter()
            .filter(move |c| c.start < end && c.end > start)
    }

    fn build(grain: Grain, rows: &GroupedRows, dicts: &Dictionaries) -> Result<Self, ArrowError> {
        // Rank of each caller id in ARN order: rows sort by ARN, which stays true when
        // ids are later mapped onto the snapshot's dictionary.
        let mut by_arn: Vec<u32> = (0..dicts.principals.len() as u32).collect();
        by_arn.sort_by(|a, b| dicts.principals.value(*a).cmp(dicts.principals.value(*b)));
        let mut rank = vec![0u32; by_arn.len()];
        for (r, id) in by_arn.into_iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        let rank_of = |id: u32| rank.get(id as usize).copied().unwrap_or(u32::MAX);
        // Keys computed once, not per comparison (a month's start is calendar work).
        let mut sort_keys: Vec<(i64, u32, i64, u32)> = rows
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    grain.bucket(k.start),
                    rank_of(k.principal),
                    k.start,
                    i as u32,
                )
            })
            .collect();
        sort_keys.sort_unstable();
        let order: Vec<u32> = sort_keys.iter().map(|(_, _, _, i)| *i).collect();
        let mut chunks = Vec::new();
        let mut from = 0;
        while from < order.len() {
            let bucket = sort_keys[from].0;
            let to = from
                + sort_keys[from..]
                    .iter()
                    .take_while(|k| k.0 == bucket)
                    .count();
            chunks.push(Chunk {
                start: bucket,
                end: grain.bucket_end(bucket),
                batch: batch(rows, &order[from..to])?,
            });
            from = to;
        }
        Ok(Self { grain, chunks })
    }

    fn remap(&self, map: &Remap) -> Result<Self, ArrowError> {
        let chunks = self
            .chunks
            .iter()
            .map(|c| {
                Ok(Chunk {
                    batch: remap_batch(&c.batch, map)?,
                    ..c.clone()
                })
            })
            .collect::<Result<_, ArrowError>>()?;
        Ok(Self {
            grain: self.grain,
            chunks,
        })
    }
}

fn batch(rows: &GroupedRows, order: &[u32]) -> Result<RecordBatch, ArrowError> {
    let keys = || order.iter().map(|&i| &rows.keys[i as usize]);
    let sums = || order.iter().map(|&i| &rows.sums[i as usize]);
    let ids = |f: fn(&LineKey) -> u32| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(keys().map(f)))
    };
    let ints = |f: &dyn Fn(&Sums) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(sums().map(f)))
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(keys().map(|k| k.start))
                .with_timezone("UTC"),
        ),
        ids(|k| k.principal),
        ids(|k| k.account),
        ids(|k| k.payer),
        ids(|k| k.region),
        ids(|k| k.line_item_type),
        ids(|k| k.currency),
        ids(|k| k.model),
        Arc::new(UInt8Array::from_iter_values(keys().map(|k| k.category))),
        Arc::new(UInt8Array::from_iter_values(keys().map(|k| k.routing))),
        ids(|k| k.tag_set),
        ints(&|s| s.tokens.input),
        ints(&|s| s.tokens.output),
        ints(&|s| s.tokens.cache_read),
        ints(&|s| s.tokens.cache_write),
    ];
    for m in METRICS {
        columns.push(ints(&|s| s.cost.get(m)));
    }
    for m in METRICS {
        columns.push(ints(&|s| s.allocated.get(m)));
    }
    columns.push(ints(&|s| s.line_items));
    RecordBatch::try_new(SCHEMA.clone(), columns)
}

fn remap_batch(batch: &RecordBatch, map: &Remap) -> Result<RecordBatch, ArrowError> {
    let mut columns = batch.columns().to_vec();
    for (name, ids) in [
        (col::PRINCIPAL, &map.principals),
        (col::ACCOUNT, &map.accounts),
        (col::PAYER, &map.accounts),
        (col::REGION, &map.regions),
        (col::LINE_ITEM_TYPE, &map.line_item_types),
        (col::CURRENCY, &map.currencies),
        (col::MODEL, &map.models),
        (col::TAG_SET, &map.tag_sets),
    ] {
        let i = batch.schema().index_of(name)?;
        let old = columns[i]
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| ArrowError::SchemaError(format!("layer column {name} is not u32")))?;
        columns[i] = Arc::new(remap_ids(old, ids));
    }
    RecordBatch::try_new(batch.schema(), columns)
}

/// A sum of Arrow buffer sizes that counts each allocation once. Arrays sliced from one
/// buffer share it: the columns of a batch read from Arrow IPC (the layer cache) all
/// point into that batch's body, and `get_array_memory_size` would count the whole
/// body once per column (a 10M-row month then "held" 12 GB in a 1 GB process).
/// Allocations are told apart by the address where they start.
#[derive(Default)]
struct BufferBytes {
    seen: std::collections::HashSet<usize>,
    total: usize,
}

impl BufferBytes {
    fn add_layer(&mut self, layer: &Layer) {
        for chunk in &layer.chunks {
            for column in chunk.batch.columns() {
                self.add_data(&column.to_data());
            }
        }
    }

    fn add_data(&mut self, data: &datafusion::arrow::array::ArrayData) {
        let nulls = data.nulls().map(|n| n.buffer());
        for buffer in data.buffers().iter().chain(nulls) {
            if self.seen.insert(buffer.data_ptr().as_ptr() as usize) {
                self.total += buffer.capacity();
            }
        }
        for child in data.child_data() {
            self.add_data(child);
        }
    }
}

/// The three layers of one period.
#[derive(Debug, Clone)]
pub struct PeriodLayers {
    /// By exact usage start, chunked by hour.
    pub fine: Layer,
    /// By day.
    pub daily: Layer,
    /// By month.
    pub monthly: Layer,
}

impl PeriodLayers {
    /// Builds the three layers from the fine rows of a period, whose ids are `dicts`'s.
    pub fn build(fine: &GroupedRows, dicts: &Dictionaries) -> Result<Self, ArrowError> {
        let daily = fine.rolled_up(day_start)?;
        let monthly = daily.rolled_up(month_start)?;
        Ok(Self {
            fine: Layer::build(Grain::Fine, fine, dicts)?,
            daily: Layer::build(Grain::Daily, &daily, dicts)?,
            monthly: Layer::build(Grain::Monthly, &monthly, dicts)?,
        })
    }

    /// The same layers with every id mapped through `map`.
    pub fn remap(&self, map: &Remap) -> Result<Self, ArrowError> {
        Ok(Self {
            fine: self.fine.remap(map)?,
            daily: self.daily.remap(map)?,
            monthly: self.monthly.remap(map)?,
        })
    }

    /// The three layers.
    pub fn all(&self) -> [&Layer; 3] {
        [&self.fine, &self.daily, &self.monthly]
    }

    /// Bytes of the Arrow buffers held by all three, each buffer counted once.
    pub fn bytes(&self) -> usize {
        let mut bytes = BufferBytes::default();
        for layer in self.all() {
            bytes.add_layer(layer);
        }
        bytes.total
    }

    /// Earliest and latest usage start of the fine rows (µs), if any.
    pub fn usage_span(&self) -> Option<(i64, i64)> {
        let times = self.fine.chunks.iter().filter_map(|c| {
            let t = c.batch.column_by_name(col::USAGE_START)?;
            let t =
                t.as_primitive_opt::<datafusion::arrow::datatypes::TimestampMicrosecondType>()?;
            let lo = t.values().iter().min()?;
            let hi = t.values().iter().max()?;
            Some((*lo, *hi))
        });
        times.reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }

    /// Sums of every row of a layer, for checks that layers agree.
    pub fn totals(layer: &Layer) -> Sums {
        let mut total = Sums::default();
        for chunk in &layer.chunks {
            let b = &chunk.batch;
            let sum = |name: &str| -> i64 {
                b.column_by_name(name)
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
                    .map_or(0, |a| a.values().iter().sum())
            };
            let mut s = Sums {
                tokens: Tokens::from_column_order(col::TOKENS.map(sum)),
                line_items: sum(col::LINE_ITEMS),
                ..Sums::default()
            };
            for m in METRICS {
                *s.cost.get_mut(m) = sum(cost_column(m));
                *s.allocated.get_mut(m) = sum(alloc_column(m));
            }
            let _ = total.merge(&s);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(start: i64, principal: u32) -> LineKey {
        LineKey {
            start,
            principal,
            ..LineKey::default()
        }
    }

    fn sums(cost: i64) -> Sums {
        Sums {
            cost: Amounts {
                unblended: cost,
                ..Amounts::default()
            },
            line_items: 1,
            ..Sums::default()
        }
    }

    #[test]
    fn rollups_keep_totals_and_chunks_sort_by_arn() {
        let mut dicts = Dictionaries::default();
        let zed = dicts
            .principals
            .intern("arn:aws:iam::111111111111:user/zed");
        let amy = dicts
            .principals
            .intern("arn:aws:iam::111111111111:user/amy");
        let jan1 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        let hour = 3_600_000_000;
        let mut fine = GroupedRows::default();
        for (t, p, c) in [
            (jan1, zed, 5),
            (jan1 + hour, amy, 7),
            (jan1 + DAY_MICROS + hour, zed, 11),
            (jan1 + 31 * DAY_MICROS, amy, 13),
            (jan1 + hour, amy, 1),
        ] {
            fine.add(key(t, p), &sums(c)).unwrap_or_default();
        }
        let layers = PeriodLayers::build(&fine, &dicts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(layers.fine.rows(), 4, "two line items share a key");
        assert_eq!(layers.daily.rows(), 4);
        assert_eq!(layers.monthly.rows(), 3, "Jan: zed, amy; Feb: amy");
        let total = |l: &Layer| PeriodLayers::totals(l).cost.unblended;
        assert_eq!(total(&layers.fine), 37);
        assert_eq!(total(&layers.daily), 37);
        assert_eq!(total(&layers.monthly), 37);
        let jan = &layers.monthly.chunks[0];
        assert_eq!((jan.start, jan.end), (jan1, jan1 + 31 * DAY_MICROS));
        let first_day = &layers.daily.chunks[0];
        let amy_rows =
            first_day.rows_of(&["arn:aws:iam::111111111111:user/amy"], &dicts.principals);
        assert_eq!(amy_rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        let ids = first_day.batch.column(1).as_primitive::<UInt32Type>();
        assert_eq!(
            ids.values().to_vec(),
            vec![amy, zed],
            "sorted by ARN, not id"
        );
        assert_eq!(month_start(jan1 + 40 * DAY_MICROS), jan1 + 31 * DAY_MICROS);
        assert_eq!(next_month_start(jan1), jan1 + 31 * DAY_MICROS);
    }

    /// The layer cache reads chunks back from Arrow IPC, where every column of a batch
    /// is a slice of the batch's one body buffer: that body must count once, not once
    /// per column.
    #[test]
    fn bytes_count_a_shared_buffer_once() {
        use datafusion::arrow::ipc::{reader::FileReader, writer::FileWriter};
        let mut dicts = Dictionaries::default();
        let jan1 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        let mut fine = GroupedRows::default();
        for i in 0..2_000 {
            let p = dicts
                .principals
                .intern(&format!("arn:aws:iam::111111111111:user/u{i}"));
            fine.add(key(jan1 + i64::from(i % 24) * 3_600_000_000, p), &sums(1))
                .unwrap_or_default();
        }
        let built = PeriodLayers::build(&fine, &dicts).unwrap_or_else(|e| panic!("{e}"));
        let mut file = Vec::new();
        let mut writer = FileWriter::try_new(&mut file, &SCHEMA).unwrap_or_else(|e| panic!("{e}"));
        for chunk in &built.fine.chunks {
            writer.write(&chunk.batch).unwrap_or_else(|e| panic!("{e}"));
        }
        writer.finish().unwrap_or_else(|e| panic!("{e}"));
        drop(writer);
        let read: Vec<RecordBatch> = FileReader::try_new(std::io::Cursor::new(&file), None)
            .unwrap_or_else(|e| panic!("{e}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let layer = Layer {
            grain: Grain::Fine,
            chunks: built
                .fine
                .chunks
                .iter()
                .zip(read)
                .map(|(c, batch)| Chunk { batch, ..c.clone() })
                .collect(),
        };
        assert_eq!(layer.rows(), 2_000);
        // The values themselves: a lower bound that no double counting can meet as an
        // upper one.
        let values: usize = layer
            .chunks
            .iter()
            .flat_map(|c| c.batch.columns())
            .flat_map(|a| {
                a.to_data()
                    .buffers()
                    .iter()
                    .map(|b| b.len())
                    .collect::<Vec<_>>()
            })
            .sum();
        let bytes = layer.bytes();
        assert!(
            values <= bytes && bytes <= file.len(),
            "values {values} <= bytes {bytes} <= the IPC file's {} bytes",
            file.len()
        );
    }
}
