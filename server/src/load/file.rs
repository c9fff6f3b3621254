//! Reading one CUR parquet file: streamed batch by batch through DataFusion, each
//! Bedrock line item summed into the file's fine rows at once, so a file is never held
//! whole and what stays is a few dozen bytes per line item until the period is done.
//!
//! String columns are read with the dictionary encoding the file gives them
//! ([`super::strings`]): the rules, the caller, account, region and currency ids and the
//! tag sets are then worked out once per distinct value instead of once per row.

use std::sync::Arc;

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray, MapArray, RecordBatch, StringBuilder},
        compute::cast,
        datatypes::{
            DataType, Decimal128Type, Field, Float64Type, Schema, TimestampMicrosecondType,
        },
        error::ArrowError,
    },
    datasource::{
        file_format::{FileFormat, parquet::ParquetFormat},
        listing::{ListingTableUrl, PartitionedFile},
        physical_plan::{FileScanConfigBuilder, ParquetSource},
        source::DataSourceExec,
    },
    error::DataFusionError,
    execution::SendableRecordBatchStream,
    physical_plan::execute_stream,
    prelude::{ParquetReadOptions, SessionContext},
};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use rustc_hash::FxHashMap;

use super::{
    check::{self, CellTally, FileFault},
    classify::{Class, ClassFields, Classifier},
    strings::{Memo, Strings, dictionary_type},
};
use crate::{
    allocate::{Donor, Receiver, ReceiverIds},
    layers::{
        Amounts, GroupedRows, LineKey, Sums, Tokens,
        dict::{Dictionaries, Dictionary},
        rates::RateSheet,
        time_type,
    },
    period::BillingPeriod,
    rules::{bedrock::BedrockRule, money, usage},
};

/// The CUR columns read from each file (those present).
pub const RAW_COLUMNS: [&str; 22] = [
    "identity_line_item_id",
    "bill_payer_account_id",
    "bill_billing_entity",
    "line_item_usage_account_id",
    "line_item_line_item_type",
    "line_item_usage_start_date",
    "line_item_product_code",
    "line_item_usage_type",
    "line_item_iam_principal",
    "line_item_line_item_description",
    "line_item_usage_amount",
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "line_item_blended_cost",
    "pricing_public_on_demand_cost",
    "line_item_currency_code",
    "pricing_unit",
    "product_product_family",
    "product_region_code",
    "product",
    "tags",
    "bill_billing_period_start_date",
];

/// String columns read as plain text: a value per line item, so a dictionary would be
/// as large as the column.
const PLAIN_STRING_COLUMNS: [&str; 1] = ["identity_line_item_id"];

/// Columns whose absence changes answers, reported per period in `DataStatus`.
pub const NOTABLE_COLUMNS: [&str; 4] = [
    "line_item_iam_principal",
    "tags",
    "product",
    "identity_line_item_id",
];

/// What one file contributes to its period, with ids in the file's own dictionaries.
#[derive(Debug, Default)]
pub struct FileLines {
    /// The file's dictionaries.
    pub dicts: Dictionaries,
    /// Its Bedrock line items summed by every key, at exact usage start.
    pub fine: GroupedRows,
    /// Its attributed `Usage` line items (allocation receivers).
    pub receivers: Vec<Receiver>,
    /// Their line item ids, aligned with `receivers`.
    pub receiver_ids: ReceiverIds,
    /// Its line items without a caller (allocation donors).
    pub donors: Vec<Donor>,
    /// Parquet rows read (all services).
    pub rows_read: usize,
    /// Bedrock line items kept.
    pub line_items: usize,
    /// Column names the file has.
    pub columns: Vec<String>,
    /// Plain input and cache-read tokens and cost by price key (the efficiency view's
    /// cache saving).
    pub rates: RateSheet,
}

/// Streams one CUR parquet file through DataFusion and folds its Bedrock line items
/// into fine rows. A file dated in `period` (its folder's) must date every line item
/// within it; see [`check`] for what else refuses a file.
pub async fn read_file(
    ctx: &SessionContext,
    url: &str,
    rule: BedrockRule,
    period: Option<BillingPeriod>,
) -> Result<FileLines, FileFault> {
    if super::csv::is_csv(url) {
        let scanned = super::csv::scan(ctx, url)
            .await
            .map_err(|e| unreadable(url, &e))?;
        // The header names every column, rows or not: a legacy or foreign file is told
        // apart before any row (its rows would project onto no column at all).
        check::columns(&scanned.0, &scanned.1.schema())?;
        return fold_stream(scanned, url, rule, period).await;
    }
    let scanned = match scan(ctx, url, true).await {
        Ok(scanned) => scanned,
        Err(e) => {
            // A schema the dictionary hint does not fit: read it as the file says.
            tracing::debug!(url, "reading without dictionary hints: {e}");
            scan(ctx, url, false)
                .await
                .map_err(|e| unreadable(url, &e))?
        }
    };
    fold_stream(scanned, url, rule, period).await
}

/// The plain cause of a read that failed; the parser's own text goes to the log only.
pub(crate) fn unreadable(url: &str, e: &DataFusionError) -> FileFault {
    tracing::warn!(file = url, error = %e, "cannot read a data file");
    let csv = super::csv::is_csv(url);
    let cause = match e.find_root() {
        DataFusionError::ObjectStore(e) if matches!(**e, object_store::Error::NotFound { .. }) => {
            "the file does not exist (it was removed or replaced while being read)".to_owned()
        }
        DataFusionError::ObjectStore(_) => {
            "the object store did not deliver the file (see the server log)".to_owned()
        }
        DataFusionError::ParquetError(_) => {
            "the file is not a readable parquet file: it is damaged, truncated or in another format"
                .to_owned()
        }
        // The CSV reader's own messages are plain (a line with the wrong number of
        // fields, a map cell that is not JSON, no header row).
        DataFusionError::ArrowError(e, _) if csv => match e.as_ref() {
            ArrowError::CsvError(m) => format!("the file is not a readable CUR CSV file: {m}"),
            _ => "the file is not a readable CUR CSV file: it is damaged, truncated or not gzip"
                .to_owned(),
        },
        _ => "the file's contents cannot be decoded (see the server log)".to_owned(),
    };
    FileFault::Unreadable { cause }
}

async fn fold_stream(
    (columns, mut stream): (Vec<String>, SendableRecordBatchStream),
    url: &str,
    rule: BedrockRule,
    period: Option<BillingPeriod>,
) -> Result<FileLines, FileFault> {
    let mut state = FileState::new(columns, rule, period);
    let mut index = 0;
    let mut checked = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| unreadable(url, &e))?;
        if batch.num_rows() == 0 {
            continue;
        }
        // Checked on the first line item: an emptied leftover chunk may have any schema.
        if !checked {
            check::columns(&state.out.columns, &batch.schema())?;
            checked = true;
        }
        state
            .fold(&batch, &format!("{url}#{index}"))
            .map_err(|e| unreadable(url, &DataFusionError::from(e)))?;
        index += 1;
    }
    std::mem::take(&mut state.tally).finish(period)?;
    let mut out = state.out;
    out.receiver_ids.push(state.ids.finish());
    // Growth by doubling leaves up to half of each vector unused; the period holds
    // these until its layers are built.
    out.receivers.shrink_to_fit();
    out.donors.shrink_to_fit();
    out.fine.shrink_to_fit();
    Ok(out)
}

/// The file's column names and a stream of its [`RAW_COLUMNS`], with string columns
/// (and the keys and values of map columns) dictionary-encoded when `dictionaries`
/// (arrow-rs keeps the file's own dictionaries then, and builds one for pages stored
/// plainly), except [`PLAIN_STRING_COLUMNS`].
async fn scan(
    ctx: &SessionContext,
    url: &str,
    dictionaries: bool,
) -> Result<(Vec<String>, SendableRecordBatchStream), DataFusionError> {
    if !dictionaries {
        let df = ctx.read_parquet(url, ParquetReadOptions::default()).await?;
        let columns = names(df.schema().as_arrow());
        let wanted: Vec<&str> = RAW_COLUMNS
            .iter()
            .copied()
            .filter(|c| columns.iter().any(|have| have == c))
            .collect();
        let stream = df.select_columns(&wanted)?.execute_stream().await?;
        return Ok((columns, stream));
    }
    let table_url = ListingTableUrl::parse(url)?;
    let store = ctx.runtime_env().object_store(table_url.object_store())?;
    let meta = store.head(table_url.prefix()).await?;
    let state = ctx.state();
    let format = ParquetFormat::default().with_options(state.default_table_options().parquet);
    let file_schema = format
        .infer_schema(&state, &store, std::slice::from_ref(&meta))
        .await?;
    let hinted = Arc::new(Schema::new_with_metadata(
        file_schema
            .fields()
            .iter()
            .map(|f| {
                let plain = PLAIN_STRING_COLUMNS.contains(&f.name().as_str());
                f.as_ref()
                    .clone()
                    .with_data_type(dictionary_hint(f.data_type(), plain))
            })
            .collect::<Vec<Field>>(),
        file_schema.metadata().clone(),
    ));
    let columns = names(&hinted);
    let wanted: Vec<usize> = RAW_COLUMNS
        .iter()
        .filter_map(|c| hinted.index_of(c).ok())
        .collect();
    let config = FileScanConfigBuilder::new(
        table_url.object_store(),
        Arc::new(ParquetSource::new(Arc::clone(&hinted))),
    )
    .with_file(PartitionedFile::new_from_meta(meta).with_arrow_schema(Arc::clone(&hinted)))
    .with_projection_indices(Some(wanted))?
    .build();
    let mut stream = execute_stream(DataSourceExec::from_data_source(config), ctx.task_ctx())?;
    // The reader checks the hint against the file when it opens it: poll the first
    // batch here, so that a hint that does not fit falls back before anything is folded.
    let first = stream.next().await.transpose()?;
    let schema = stream.schema();
    let rest = futures::stream::iter(first.map(Ok)).chain(stream);
    Ok((
        columns,
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rest)),
    ))
}

fn names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// The type to ask the reader for: strings (and the strings inside maps) as
/// dictionaries unless `plain`; everything else as the file has it.
fn dictionary_hint(data_type: &DataType, plain: bool) -> DataType {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if plain => DataType::Utf8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => dictionary_type(),
        DataType::Map(entries, sorted) => match entries.data_type() {
            DataType::Struct(fields) => {
                let fields: Vec<Field> = fields
                    .iter()
                    .map(|f| {
                        f.as_ref()
                            .clone()
                            .with_data_type(dictionary_hint(f.data_type(), plain))
                    })
                    .collect();
                DataType::Map(
                    Arc::new(
                        entries
                            .as_ref()
                            .clone()
                            .with_data_type(DataType::Struct(fields.into())),
                    ),
                    *sorted,
                )
            }
            _ => data_type.clone(),
        },
        other => other.clone(),
    }
}

/// The rules' inputs of one line item as ids in [`FileState::class_strings`]
/// ([`NONE`] when null): line items with equal inputs get the same [`Class`].
type ClassKey = [u32; 10];

/// A null input in a [`ClassKey`].
const NONE: u32 = u32::MAX;

/// The product map entries the rules read, as ids in [`FileState::product_keys`].
const PRODUCT_NAME: u32 = 1;
const PRODUCT_MODEL: u32 = 2;
const INFERENCE_TYPE: u32 = 3;

/// Memos of the string columns, each tied to its column's current dictionary.
#[derive(Debug, Default)]
struct Memos {
    principal: Memo,
    account: Memo,
    payer: Memo,
    region: Memo,
    currency: Memo,
    /// The rules' inputs, in [`ClassKey`] order (the three product entries come from
    /// one map column and share `product_values`).
    class: [Memo; 7],
    product_keys: Memo,
    product_values: Memo,
    tag_keys: Memo,
    tag_values: Memo,
}

struct FileState {
    out: FileLines,
    classifier: Classifier,
    memos: Memos,
    /// The distinct texts of the rules' inputs, so that they key [`Self::classes`] as ids.
    class_strings: Dictionary,
    classes: FxHashMap<ClassKey, Class>,
    /// Product map keys; the ones the rules read come first ([`PRODUCT_NAME`]...).
    product_keys: Dictionary,
    /// Tag keys and values of the file.
    tag_strings: Dictionary,
    /// A line item's tags as (key, value) ids in `tag_strings`, sorted by key.
    tag_pairs: Vec<(u32, u32)>,
    /// Tags (as `tag_pairs`) -> id in the file's tag sets.
    tag_ids: FxHashMap<Vec<(u32, u32)>, u32>,
    ids: StringBuilder,
    /// The span of the file's billing period (µs), when known.
    span: Option<(i64, i64)>,
    /// Bad cells seen so far.
    tally: CellTally,
}

/// A number column as doubles, its non-finite and non-numeric cells counted in `bad`.
fn floats(
    batch: &RecordBatch,
    name: &str,
    bad: &mut check::BadCells,
) -> Result<Option<ArrayRef>, ArrowError> {
    let Some(column) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let f: ArrayRef = match text_floats(column, bad)? {
        Some(values) => Arc::new(datafusion::arrow::array::Float64Array::from(values)),
        None => cast(column, &DataType::Float64)?,
    };
    let values = f.as_primitive::<Float64Type>();
    bad.non_finite += (0..values.len())
        .filter(|&i| values.is_valid(i) && !values.value(i).is_finite())
        .count();
    Ok(Some(f))
}

/// A text column's cells as doubles, when `column` is text (the CSV form, or a
/// parquet file writing amounts as strings): read as Rust reads a double, which takes
/// what Java prints (`-7.0E-10`, `1.23456789E7`, `NaN`, `Infinity`), so that the text
/// of a double gives that double back. A blank cell is NULL; one that is not a number
/// is counted in `bad` and read as NULL.
fn text_floats(
    column: &ArrayRef,
    bad: &mut check::BadCells,
) -> Result<Option<Vec<Option<f64>>>, ArrowError> {
    let text = match column.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => matches!(
            values.as_ref(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        _ => false,
    };
    if !text {
        return Ok(None);
    }
    let strings = Strings::of(column)?;
    Ok(Some(
        (0..column.len())
            .map(|i| {
                let cell = strings.get(i).map(str::trim).filter(|t| !t.is_empty())?;
                let parsed = cell.parse::<f64>().ok();
                if parsed.is_none() {
                    bad.non_numeric += 1;
                }
                parsed
            })
            .collect(),
    ))
}

/// Cost column as exact amounts: doubles (and text, read as doubles) through their
/// shortest decimal, anything else (decimals, integers) through Arrow's cast to
/// Decimal128(38, 10). Cells that are not finite numbers, or beyond what a line item
/// may hold, read as 0 and are counted in `bad` (which refuses the file).
fn amounts(
    batch: &RecordBatch,
    name: &str,
    bad: &mut check::BadCells,
) -> Result<Vec<i64>, ArrowError> {
    let rows = batch.num_rows();
    let Some(column) = batch.column_by_name(name) else {
        return Ok(vec![0; rows]);
    };
    let text = text_floats(column, bad)?;
    let mut from_double = |v: Option<f64>| {
        if v.is_some_and(|v| !v.is_finite()) {
            bad.non_finite += 1;
        }
        money::amount_from_f64(v)
    };
    let exact: Vec<i128> = if let Some(values) = text {
        values.into_iter().map(&mut from_double).collect()
    } else if matches!(
        column.data_type(),
        DataType::Float64 | DataType::Float32 | DataType::Float16
    ) {
        let f = cast(column, &DataType::Float64)?;
        let f = f.as_primitive::<Float64Type>();
        (0..rows)
            .map(|i| from_double(f.is_valid(i).then(|| f.value(i))))
            .collect()
    } else {
        let d = cast(column, &DataType::Decimal128(38, money::SCALE as i8))?;
        let d = d.as_primitive::<Decimal128Type>();
        (0..rows)
            .map(|i| if d.is_valid(i) { d.value(i) } else { 0 })
            .collect()
    };
    Ok(exact
        .into_iter()
        .map(|a| {
            i64::try_from(a).unwrap_or_else(|_| {
                bad.too_large += 1;
                0
            })
        })
        .collect())
}

/// A map column (`product`, `tags`) with its keys and values as strings.
struct MapColumn {
    map: MapArray,
    keys: Strings,
    values: Strings,
}

impl MapColumn {
    fn read(batch: &RecordBatch, name: &str) -> Result<Option<Self>, ArrowError> {
        let Some(column) = batch.column_by_name(name) else {
            return Ok(None);
        };
        let Some(map) = column.as_map_opt() else {
            return Err(ArrowError::CastError(format!(
                "column {name} is {} and not a map",
                column.data_type()
            )));
        };
        Ok(Some(Self {
            map: map.clone(),
            keys: Strings::of(map.keys())?,
            values: Strings::of(map.values())?,
        }))
    }

    /// Positions of `row`'s entries in `keys` and `values`.
    fn entries(&self, row: usize) -> std::ops::Range<usize> {
        let offsets = self.map.value_offsets();
        if self.map.is_valid(row) {
            offsets[row] as usize..offsets[row + 1] as usize
        } else {
            0..0
        }
    }
}

/// The string columns of one raw batch.
struct BatchStrings {
    line_item_id: Option<Strings>,
    payer: Option<Strings>,
    account: Option<Strings>,
    principal: Option<Strings>,
    currency: Option<Strings>,
    region: Option<Strings>,
    /// The rules' scalar inputs, in [`ClassKey`] order after the product entries.
    class: [Option<Strings>; 7],
    product: Option<MapColumn>,
    tags: Option<MapColumn>,
}

impl BatchStrings {
    fn read(batch: &RecordBatch) -> Result<Self, ArrowError> {
        let s = |name| Strings::column(batch, name);
        Ok(Self {
            line_item_id: s("identity_line_item_id")?,
            payer: s("bill_payer_account_id")?,
            account: s("line_item_usage_account_id")?,
            principal: s("line_item_iam_principal")?,
            currency: s("line_item_currency_code")?,
            region: s("product_region_code")?,
            class: [
                s("line_item_product_code")?,
                s("product_product_family")?,
                s("bill_billing_entity")?,
                s("line_item_usage_type")?,
                s("line_item_line_item_type")?,
                s("pricing_unit")?,
                s("line_item_line_item_description")?,
            ],
            product: MapColumn::read(batch, "product")?,
            tags: MapColumn::read(batch, "tags")?,
        })
    }
}

/// The id of `row`'s value of `column` through `memo` in `dict` (the empty string's,
/// 0, when the column is missing or the value null).
fn id_of(memo: &mut Memo, column: &Option<Strings>, row: usize, dict: &mut Dictionary) -> u32 {
    column
        .as_ref()
        .and_then(|c| memo.id(c, row, |s| dict.intern(s)))
        .unwrap_or(0)
}

impl FileState {
    fn new(columns: Vec<String>, rule: BedrockRule, period: Option<BillingPeriod>) -> Self {
        let mut product_keys = Dictionary::default();
        for (name, id) in [
            ("product_name", PRODUCT_NAME),
            ("model", PRODUCT_MODEL),
            ("inference_type", INFERENCE_TYPE),
        ] {
            let interned = product_keys.intern(name);
            debug_assert_eq!(interned, id);
        }
        Self {
            out: FileLines {
                columns,
                ..FileLines::default()
            },
            classifier: Classifier::new(rule),
            memos: Memos::default(),
            class_strings: Dictionary::default(),
            classes: FxHashMap::default(),
            product_keys,
            tag_strings: Dictionary::default(),
            tag_pairs: Vec::new(),
            tag_ids: FxHashMap::default(),
            ids: StringBuilder::new(),
            span: period.map(BillingPeriod::span_micros),
            tally: CellTally::default(),
        }
    }

    /// The class of `row`: looked up by the ids of its inputs, worked out by the rules
    /// for a combination not seen before in the file.
    fn class(&mut self, strings: &BatchStrings, row: usize) -> Class {
        let mut key: ClassKey = [NONE; 10];
        let interned = &mut self.class_strings;
        if let Some(p) = &strings.product {
            for i in p.entries(row) {
                let field = self
                    .memos
                    .product_keys
                    .id(&p.keys, i, |s| self.product_keys.intern(s));
                let slot = match field {
                    Some(PRODUCT_NAME) => 0,
                    Some(PRODUCT_MODEL) => 1,
                    Some(INFERENCE_TYPE) => 2,
                    _ => continue,
                };
                // A key given twice: the last one counts, as in a map lookup.
                key[slot] = self
                    .memos
                    .product_values
                    .id(&p.values, i, |s| interned.intern(s))
                    .unwrap_or(NONE);
            }
        }
        for ((slot, memo), column) in key[3..]
            .iter_mut()
            .zip(&mut self.memos.class)
            .zip(&strings.class)
        {
            if let Some(c) = column {
                *slot = memo.id(c, row, |s| interned.intern(s)).unwrap_or(NONE);
            }
        }
        if let Some(class) = self.classes.get(&key) {
            return *class;
        }
        let text = |id: u32| (id != NONE).then(|| self.class_strings.value(id));
        let fields = ClassFields {
            product_name: text(key[0]),
            product_model: text(key[1]),
            inference_type: text(key[2]),
            product_code: text(key[3]),
            product_family: text(key[4]),
            billing_entity: text(key[5]),
            usage_type: text(key[6]),
            line_item_type: text(key[7]),
            pricing_unit: text(key[8]),
            description: text(key[9]),
        };
        let class = self.classifier.classify(&fields, &mut self.out.dicts);
        self.classes.insert(key, class);
        class
    }

    /// The id of `row`'s tag set in the file's tag sets (0 without a tags column).
    fn tag_set(&mut self, tags: &Option<MapColumn>, row: usize) -> u32 {
        let Some(t) = tags else {
            return 0;
        };
        self.tag_pairs.clear();
        for i in t.entries(row) {
            let strings = &mut self.tag_strings;
            let Some(k) = self.memos.tag_keys.id(&t.keys, i, |s| strings.intern(s)) else {
                continue;
            };
            if let Some(v) = self
                .memos
                .tag_values
                .id(&t.values, i, |s| strings.intern(s))
            {
                self.tag_pairs.push((k, v));
            }
        }
        // A key given twice keeps its last value, as a map lookup would.
        self.tag_pairs.reverse();
        self.tag_pairs.sort_by_key(|(k, _)| *k);
        self.tag_pairs.dedup_by_key(|(k, _)| *k);
        if let Some(id) = self.tag_ids.get(self.tag_pairs.as_slice()) {
            return *id;
        }
        let mut entries: Vec<(String, String)> = self
            .tag_pairs
            .iter()
            .map(|(k, v)| {
                (
                    self.tag_strings.value(*k).to_owned(),
                    self.tag_strings.value(*v).to_owned(),
                )
            })
            .collect();
        entries.sort();
        let id = self.out.dicts.tag_sets.intern(entries);
        self.tag_ids.insert(self.tag_pairs.clone(), id);
        id
    }

    /// Folds one raw batch into the file's rows; rows that are not Bedrock are dropped.
    fn fold(&mut self, batch: &RecordBatch, origin: &str) -> Result<(), ArrowError> {
        let strings = BatchStrings::read(batch)?;
        let mut bad = [check::BadCells::default(); check::AMOUNT_COLUMNS.len()];
        let amount = floats(batch, "line_item_usage_amount", &mut bad[0])?;
        let amount = amount.as_ref().map(|a| a.as_primitive::<Float64Type>());
        let starts = batch
            .column_by_name("line_item_usage_start_date")
            .map(|c| cast(c, &time_type()))
            .transpose()?;
        let starts = starts
            .as_ref()
            .map(|a| a.as_primitive::<TimestampMicrosecondType>());
        let costs: Vec<Amounts> = {
            let [_, bu, bn, bb, bp] = &mut bad;
            let u = amounts(batch, "line_item_unblended_cost", bu)?;
            let n = amounts(batch, "line_item_net_unblended_cost", bn)?;
            let b = amounts(batch, "line_item_blended_cost", bb)?;
            let p = amounts(batch, "pricing_public_on_demand_cost", bp)?;
            (0..batch.num_rows())
                .map(|i| Amounts {
                    unblended: u[i],
                    net_unblended: n[i],
                    blended: b[i],
                    public_on_demand: p[i],
                })
                .collect()
        };

        for (column, cells) in check::AMOUNT_COLUMNS.iter().zip(bad) {
            if let Some(total) = self.tally.amount(column) {
                total.non_finite += cells.non_finite;
                total.non_numeric += cells.non_numeric;
                total.too_large += cells.too_large;
            }
        }
        // Every line item of the file is dated within its billing period, whatever its
        // service: one that is not shows a file in the wrong folder or a damaged one.
        if let Some(starts) = starts {
            for row in 0..batch.num_rows() {
                if !starts.is_valid(row) {
                    self.tally.undated();
                } else if let Some((lo, hi)) = self.span {
                    let start = starts.value(row);
                    if start < lo || start >= hi {
                        self.tally.outside(start);
                    }
                }
            }
        }

        self.out.rows_read += batch.num_rows();
        for (row, &cost) in costs.iter().enumerate() {
            let class = self.class(&strings, row);
            let caller = strings.principal.as_ref().and_then(|c| c.get(row));
            if !class.bedrock_by_product && caller.is_none_or(str::is_empty) {
                continue;
            }
            let Some(start) = starts.and_then(|s| s.is_valid(row).then(|| s.value(row))) else {
                continue;
            };
            let mut tokens = Tokens::default();
            let mut priced = None;
            if let Some((kind, per_unit)) = class.tokens {
                let amount = amount.and_then(|a| a.is_valid(row).then(|| a.value(row)));
                let count = usage::token_count(amount, per_unit);
                tokens.add(kind, count);
                priced = Some((kind, count));
            }
            let tag_set = self.tag_set(&strings.tags, row);
            let memos = &mut self.memos;
            let dicts = &mut self.out.dicts;
            let key = LineKey {
                start,
                // Id 0 is the empty string: no caller.
                principal: id_of(
                    &mut memos.principal,
                    &strings.principal,
                    row,
                    &mut dicts.principals,
                ),
                account: id_of(
                    &mut memos.account,
                    &strings.account,
                    row,
                    &mut dicts.accounts,
                ),
                payer: id_of(&mut memos.payer, &strings.payer, row, &mut dicts.accounts),
                region: id_of(&mut memos.region, &strings.region, row, &mut dicts.regions),
                line_item_type: class.line_item_type,
                currency: id_of(
                    &mut memos.currency,
                    &strings.currency,
                    row,
                    &mut dicts.currencies,
                ),
                model: class.model,
                category: class.category,
                routing: class.routing,
                tag_set,
            };
            let sums = Sums {
                tokens,
                cost,
                allocated: Amounts::default(),
                line_items: 1,
            };
            let out = &mut self.out;
            let fine_row = out.fine.add(key, &sums)?;
            if let Some((kind, count)) = priced {
                out.rates.add(&key, kind, count, cost)?;
            }
            out.line_items += 1;
            if key.principal == 0 {
                out.donors.push(Donor {
                    row: fine_row,
                    cost,
                });
            } else if class.usage {
                out.receivers.push(Receiver {
                    row: fine_row,
                    cost,
                });
                match strings.line_item_id.as_ref().and_then(|c| c.get(row)) {
                    Some(id) if !id.is_empty() => self.ids.append_value(id),
                    _ => self.ids.append_value(format!("{origin}#{row}")),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{DemoConfig, generate};

    fn parquet_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read the export") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                parquet_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }

    /// What a read gives, in a form to compare.
    fn summary(f: &FileLines) -> String {
        let d = &f.dicts;
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}/{}\n{:?}",
            d.principals.values(),
            d.accounts.values(),
            d.regions.values(),
            d.models.values(),
            d.line_item_types.values(),
            d.currencies.values(),
            d.tag_sets.sets(),
            f.fine.keys,
            f.fine.sums,
            f.receivers,
            f.donors,
            f.receiver_ids,
            f.rows_read,
            f.line_items,
            f.columns,
        )
    }

    #[tokio::test]
    async fn dictionary_reads_fold_to_what_plain_reads_do() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        generate(dir.path(), &DemoConfig::small()).expect("the small export");
        let mut files = Vec::new();
        parquet_files(dir.path(), &mut files);
        files.sort();
        assert!(!files.is_empty());
        let ctx = SessionContext::new();
        let mut line_items = 0;
        for file in files {
            let url = format!("file://{}", file.display());
            let hinted = scan(&ctx, &url, true).await.expect("a hinted scan");
            let schema = hinted.1.schema();
            for field in schema.fields() {
                let plain = PLAIN_STRING_COLUMNS.contains(&field.name().as_str());
                assert!(
                    !matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View) || plain,
                    "{url}: {} is not read as a dictionary",
                    field.name()
                );
            }
            assert!(
                schema
                    .fields()
                    .iter()
                    .any(|f| matches!(f.data_type(), DataType::Dictionary(_, _))),
                "{url}: {schema:?}"
            );
            let with = fold_stream(hinted, &url, BedrockRule::default(), None)
                .await
                .expect("read with dictionaries");
            let plain = scan(&ctx, &url, false).await.expect("a plain scan");
            let without = fold_stream(plain, &url, BedrockRule::default(), None)
                .await
                .expect("read plainly");
            assert_eq!(summary(&with), summary(&without), "{url}");
            line_items += with.line_items;
        }
        assert!(line_items > 1000, "{line_items} line items compared");
    }
}
