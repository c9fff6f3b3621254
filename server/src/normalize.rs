//! Normalize: CUR 2.0 parquet in, narrow typed Bedrock line items out, once per snapshot.
//!
//! Every data-contract rule is applied here, by the functions of [`crate::rules`], so the
//! query layer only filters, groups and sums these columns. Missing columns read as
//! NULL; any string, timestamp or cost encoding is cast to one type.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

use datafusion::{
    arrow::{
        array::{
            Array, ArrayRef, AsArray, Decimal128Array, Decimal128Builder, Int64Builder, MapArray,
            RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder, UInt8Builder,
            UInt32Builder,
        },
        compute::cast,
        datatypes::{
            DataType, Decimal128Type, Field, Float64Type, Schema, SchemaRef, TimeUnit,
            TimestampMicrosecondType,
        },
        error::ArrowError,
    },
    error::DataFusionError,
    prelude::{ParquetReadOptions, SessionContext},
};

use crate::rules::{
    arn::{Principal, PrincipalKind},
    bedrock::{BedrockFields, BedrockRule},
    money::{self, SCALE},
    usage::{self, TokenKind},
};

/// Column names of the normalized table.
pub mod col {
    /// Usage start, `Timestamp(µs, UTC)`.
    pub const USAGE_START: &str = "usage_start";
    /// Billing period `YYYY-MM`.
    pub const PERIOD: &str = "period";
    /// Payer account id.
    pub const PAYER: &str = "payer";
    /// Usage account id.
    pub const ACCOUNT: &str = "account_id";
    /// Region code, empty when unknown.
    pub const REGION: &str = "region";
    /// CUR line item type.
    pub const LINE_ITEM_TYPE: &str = "line_item_type";
    /// Currency code.
    pub const CURRENCY: &str = "currency";
    /// Exact caller ARN; NULL when unattributed.
    pub const PRINCIPAL_ARN: &str = "principal_arn";
    /// Caller collapsed to its role; NULL when unattributed.
    pub const PRINCIPAL_ROLE: &str = "principal_role";
    /// Caller's account; NULL when unattributed.
    pub const PRINCIPAL_ACCOUNT: &str = "principal_account";
    /// Model name, empty when none.
    pub const MODEL: &str = "model";
    /// Usage category code (`UsageCategory::code`).
    pub const USAGE_CATEGORY: &str = "usage_category";
    /// Input tokens.
    pub const TOKENS_INPUT: &str = "tokens_input";
    /// Output tokens.
    pub const TOKENS_OUTPUT: &str = "tokens_output";
    /// Cache read tokens.
    pub const TOKENS_CACHE_READ: &str = "tokens_cache_read";
    /// Cache write tokens.
    pub const TOKENS_CACHE_WRITE: &str = "tokens_cache_write";
    /// `line_item_unblended_cost`, Decimal128(38, 10).
    pub const COST_UNBLENDED: &str = "cost_unblended";
    /// `line_item_net_unblended_cost`, Decimal128(38, 10).
    pub const COST_NET_UNBLENDED: &str = "cost_net_unblended";
    /// `line_item_blended_cost`, Decimal128(38, 10).
    pub const COST_BLENDED: &str = "cost_blended";
    /// `pricing_public_on_demand_cost`, Decimal128(38, 10).
    pub const COST_PUBLIC_ON_DEMAND: &str = "cost_public_on_demand";
    /// Id of the line item's tag set in the snapshot's [`super::TagSets`].
    pub const TAG_SET: &str = "tag_set";
    /// Unblended cost shared in (+) or out (-) by proportional allocation.
    pub const ALLOC_UNBLENDED: &str = "alloc_unblended";
    /// Net unblended cost shared in or out by proportional allocation.
    pub const ALLOC_NET_UNBLENDED: &str = "alloc_net_unblended";
    /// Blended cost shared in or out by proportional allocation.
    pub const ALLOC_BLENDED: &str = "alloc_blended";
    /// Public on-demand cost shared in or out by proportional allocation.
    pub const ALLOC_PUBLIC_ON_DEMAND: &str = "alloc_public_on_demand";
    /// The four cost columns, in metric order.
    pub const COSTS: [&str; 4] = [
        COST_UNBLENDED,
        COST_NET_UNBLENDED,
        COST_BLENDED,
        COST_PUBLIC_ON_DEMAND,
    ];
    /// The four allocation columns, in the same order; they are the schema's last four.
    pub const ALLOCS: [&str; 4] = [
        ALLOC_UNBLENDED,
        ALLOC_NET_UNBLENDED,
        ALLOC_BLENDED,
        ALLOC_PUBLIC_ON_DEMAND,
    ];
    /// `identity_line_item_id`, or `file#row` when the export lacks it.
    pub const LINE_ITEM_ID: &str = "line_item_id";
}

/// Decimal type of every amount.
pub const MONEY_TYPE: DataType = DataType::Decimal128(38, SCALE as i8);

/// Schema of the normalized table.
pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utf8 = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new(
            col::USAGE_START,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        utf8(col::PERIOD, false),
        utf8(col::PAYER, false),
        utf8(col::ACCOUNT, false),
        utf8(col::REGION, false),
        utf8(col::LINE_ITEM_TYPE, false),
        utf8(col::CURRENCY, false),
        utf8(col::PRINCIPAL_ARN, true),
        utf8(col::PRINCIPAL_ROLE, true),
        utf8(col::PRINCIPAL_ACCOUNT, true),
        utf8(col::MODEL, false),
        Field::new(col::USAGE_CATEGORY, DataType::UInt8, false),
        Field::new(col::TOKENS_INPUT, DataType::Int64, false),
        Field::new(col::TOKENS_OUTPUT, DataType::Int64, false),
        Field::new(col::TOKENS_CACHE_READ, DataType::Int64, false),
        Field::new(col::TOKENS_CACHE_WRITE, DataType::Int64, false),
        Field::new(col::COST_UNBLENDED, MONEY_TYPE, false),
        Field::new(col::COST_NET_UNBLENDED, MONEY_TYPE, false),
        Field::new(col::COST_BLENDED, MONEY_TYPE, false),
        Field::new(col::COST_PUBLIC_ON_DEMAND, MONEY_TYPE, false),
        Field::new(col::TAG_SET, DataType::UInt32, false),
        utf8(col::LINE_ITEM_ID, false),
        Field::new(col::ALLOC_UNBLENDED, MONEY_TYPE, false),
        Field::new(col::ALLOC_NET_UNBLENDED, MONEY_TYPE, false),
        Field::new(col::ALLOC_BLENDED, MONEY_TYPE, false),
        Field::new(col::ALLOC_PUBLIC_ON_DEMAND, MONEY_TYPE, false),
    ]))
});

/// The CUR columns read from each file (those present).
pub const RAW_COLUMNS: [&str; 24] = [
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
    "line_item_operation",
    "line_item_resource_id",
];

/// Columns whose absence changes answers, reported per period in `DataStatus`.
pub const NOTABLE_COLUMNS: [&str; 4] = [
    "line_item_iam_principal",
    "tags",
    "product",
    "identity_line_item_id",
];

/// Distinct tag maps of a snapshot; line items refer to them by id, so a tag query
/// resolves a key once per distinct map instead of once per line item.
#[derive(Debug, Default, Clone)]
pub struct TagSets {
    ids: HashMap<Arc<[(String, String)]>, u32>,
    sets: Vec<Arc<[(String, String)]>>,
}

impl TagSets {
    /// An interner holding only the empty set, id 0.
    pub fn new() -> Self {
        let mut sets = Self::default();
        sets.intern(Vec::new());
        sets
    }

    /// The id of a tag map given as entries sorted by key.
    pub fn intern(&mut self, entries: Vec<(String, String)>) -> u32 {
        let entries: Arc<[(String, String)]> = entries.into();
        if let Some(id) = self.ids.get(&entries) {
            return *id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(entries.clone());
        self.ids.insert(entries, id);
        id
    }

    /// All sets, indexed by id.
    pub fn sets(&self) -> &[Arc<[(String, String)]>] {
        &self.sets
    }

    /// The value of `key` in set `id`.
    pub fn value(&self, id: u32, key: &str) -> Option<&str> {
        let set = self.sets.get(id as usize)?;
        set.binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| set[i].1.as_str())
    }
}

/// What reading one file produced.
#[derive(Debug)]
pub struct FileRead {
    /// Normalized Bedrock line items.
    pub batches: Vec<RecordBatch>,
    /// Parquet rows read (all services).
    pub rows_read: usize,
    /// Bedrock line items kept.
    pub line_items: usize,
    /// Column names the file has.
    pub columns: Vec<String>,
}

/// Reads one CUR parquet file through DataFusion and normalizes its Bedrock line items.
pub async fn read_file(
    ctx: &SessionContext,
    url: &str,
    period: &str,
    rule: &BedrockRule,
    tag_sets: &Mutex<TagSets>,
) -> Result<FileRead, DataFusionError> {
    let df = ctx.read_parquet(url, ParquetReadOptions::default()).await?;
    let columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let wanted: Vec<&str> = RAW_COLUMNS
        .iter()
        .copied()
        .filter(|c| columns.iter().any(|have| have == c))
        .collect();
    let raw = df.select_columns(&wanted)?.collect().await?;
    let mut read = FileRead {
        batches: Vec::new(),
        rows_read: 0,
        line_items: 0,
        columns,
    };
    for (index, batch) in raw.iter().enumerate() {
        read.rows_read += batch.num_rows();
        let normalized = normalize_batch(batch, period, rule, tag_sets, &format!("{url}#{index}"))?;
        read.line_items += normalized.num_rows();
        if normalized.num_rows() > 0 {
            read.batches.push(normalized);
        }
    }
    Ok(read)
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>, ArrowError> {
    batch
        .column_by_name(name)
        .map(|c| cast(c, &DataType::Utf8).map(|a| a.as_string::<i32>().clone()))
        .transpose()
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Option<ArrayRef>, ArrowError> {
    batch
        .column_by_name(name)
        .map(|c| cast(c, &DataType::Float64))
        .transpose()
}

/// Cost column as exact amounts: doubles through their shortest decimal, anything else
/// (decimals, integers, strings) through Arrow's cast to Decimal128(38, 10).
fn amounts(batch: &RecordBatch, name: &str) -> Result<Vec<i128>, ArrowError> {
    let rows = batch.num_rows();
    let Some(column) = batch.column_by_name(name) else {
        return Ok(vec![0; rows]);
    };
    if matches!(
        column.data_type(),
        DataType::Float64 | DataType::Float32 | DataType::Float16
    ) {
        let f = cast(column, &DataType::Float64)?;
        let f = f.as_primitive::<Float64Type>();
        return Ok((0..rows)
            .map(|i| money::amount_from_f64(f.is_valid(i).then(|| f.value(i))))
            .collect());
    }
    let d = cast(column, &MONEY_TYPE)?;
    let d = d.as_primitive::<Decimal128Type>();
    Ok((0..rows)
        .map(|i| if d.is_valid(i) { d.value(i) } else { 0 })
        .collect())
}

struct MapColumn {
    offsets: Vec<i32>,
    validity: MapArray,
    keys: StringArray,
    values: StringArray,
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
        let keys = cast(map.keys(), &DataType::Utf8)?
            .as_string::<i32>()
            .clone();
        let values = cast(map.values(), &DataType::Utf8)?
            .as_string::<i32>()
            .clone();
        Ok(Some(Self {
            offsets: map.value_offsets().to_vec(),
            validity: map.clone(),
            keys,
            values,
        }))
    }

    fn entries(&self, row: usize) -> impl Iterator<Item = (&str, Option<&str>)> {
        let (start, end) = if self.validity.is_valid(row) {
            (self.offsets[row] as usize, self.offsets[row + 1] as usize)
        } else {
            (0, 0)
        };
        (start..end).filter(|&i| self.keys.is_valid(i)).map(|i| {
            (
                self.keys.value(i),
                self.values.is_valid(i).then(|| self.values.value(i)),
            )
        })
    }

    fn get(&self, row: usize, key: &str) -> Option<&str> {
        self.entries(row)
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v)
    }
}

fn value(array: &Option<StringArray>, row: usize) -> Option<&str> {
    array
        .as_ref()
        .and_then(|a| a.is_valid(row).then(|| a.value(row)))
}

/// Normalizes one raw batch; rows that are not Bedrock are dropped.
pub fn normalize_batch(
    batch: &RecordBatch,
    period: &str,
    rule: &BedrockRule,
    tag_sets: &Mutex<TagSets>,
    origin: &str,
) -> Result<RecordBatch, ArrowError> {
    let s = |name| strings(batch, name);
    let line_item_id = s("identity_line_item_id")?;
    let payer = s("bill_payer_account_id")?;
    let entity = s("bill_billing_entity")?;
    let account = s("line_item_usage_account_id")?;
    let item_type = s("line_item_line_item_type")?;
    let product_code = s("line_item_product_code")?;
    let usage_type = s("line_item_usage_type")?;
    let principal = s("line_item_iam_principal")?;
    let description = s("line_item_line_item_description")?;
    let currency = s("line_item_currency_code")?;
    let pricing_unit = s("pricing_unit")?;
    let family = s("product_product_family")?;
    let region = s("product_region_code")?;
    let amount = floats(batch, "line_item_usage_amount")?;
    let amount = amount.as_ref().map(|a| a.as_primitive::<Float64Type>());
    let starts = batch
        .column_by_name("line_item_usage_start_date")
        .map(|c| {
            cast(
                c,
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            )
        })
        .transpose()?;
    let starts = starts
        .as_ref()
        .map(|a| a.as_primitive::<TimestampMicrosecondType>());
    let costs = [
        amounts(batch, "line_item_unblended_cost")?,
        amounts(batch, "line_item_net_unblended_cost")?,
        amounts(batch, "line_item_blended_cost")?,
        amounts(batch, "pricing_public_on_demand_cost")?,
    ];
    let product = MapColumn::read(batch, "product")?;
    let tags = MapColumn::read(batch, "tags")?;

    let rows = batch.num_rows();
    let mut out = Builders::new(rows);
    let mut tag_sets = tag_sets
        .lock()
        .map_err(|_| ArrowError::ComputeError("tag set interner poisoned".into()))?;

    for row in 0..rows {
        let product_name = product.as_ref().and_then(|p| p.get(row, "product_name"));
        let caller = value(&principal, row);
        let fields = BedrockFields {
            product_code: value(&product_code, row),
            product_family: value(&family, row),
            billing_entity: value(&entity, row),
            product_name,
            principal: caller,
        };
        if !rule.is_bedrock(&fields) {
            continue;
        }
        let Some(start) = starts.and_then(|s| s.is_valid(row).then(|| s.value(row))) else {
            continue;
        };
        let usage_type_value = value(&usage_type, row);
        let kind = usage::token_kind(
            product.as_ref().and_then(|p| p.get(row, "inference_type")),
            usage_type_value,
        );
        let item_type_value = value(&item_type, row).unwrap_or("");
        let mut tokens = [0i64; 4];
        if let (Some(kind), "Usage") = (kind, item_type_value) {
            let per_unit =
                usage::tokens_per_unit(value(&pricing_unit, row), value(&description, row));
            let amount = amount.and_then(|a| a.is_valid(row).then(|| a.value(row)));
            let slot = match kind {
                TokenKind::Input => 0,
                TokenKind::Output => 1,
                TokenKind::CacheRead => 2,
                TokenKind::CacheWrite => 3,
            };
            tokens[slot] = usage::token_count(amount, per_unit);
        }
        let caller = Principal::parse(caller);
        let model = usage::model_name(
            product.as_ref().and_then(|p| p.get(row, "model")),
            product_name,
            usage_type_value,
        );
        let category = usage::usage_category(usage_type_value, kind.is_some());

        out.usage_start.append_value(start);
        out.period.append_value(period);
        out.payer.append_value(value(&payer, row).unwrap_or(""));
        out.account.append_value(value(&account, row).unwrap_or(""));
        out.region.append_value(value(&region, row).unwrap_or(""));
        out.line_item_type.append_value(item_type_value);
        out.currency
            .append_value(value(&currency, row).unwrap_or(""));
        out.principal_arn.append_option(
            (caller.kind != PrincipalKind::Unattributed).then_some(caller.arn.as_str()),
        );
        out.principal_role.append_option(caller.role_key());
        out.principal_account.append_option(caller.account_key());
        out.model.append_value(&model);
        out.usage_category.append_value(category.code());
        for (b, t) in out.tokens.iter_mut().zip(tokens) {
            b.append_value(t);
        }
        for (b, c) in out.costs.iter_mut().zip(&costs) {
            b.append_value(c[row]);
        }
        let set = tags.as_ref().map_or(0, |t| {
            let mut entries: Vec<(String, String)> = t
                .entries(row)
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
                .collect();
            // A key given twice keeps its last value, as a map lookup would.
            entries.reverse();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.dedup_by(|later, earlier| later.0 == earlier.0);
            tag_sets.intern(entries)
        });
        out.tag_set.append_value(set);
        match value(&line_item_id, row) {
            Some(id) if !id.is_empty() => out.line_item_id.append_value(id),
            _ => out.line_item_id.append_value(format!("{origin}#{row}")),
        }
    }
    drop(tag_sets);
    out.finish()
}

struct Builders {
    usage_start: TimestampMicrosecondBuilder,
    period: StringBuilder,
    payer: StringBuilder,
    account: StringBuilder,
    region: StringBuilder,
    line_item_type: StringBuilder,
    currency: StringBuilder,
    principal_arn: StringBuilder,
    principal_role: StringBuilder,
    principal_account: StringBuilder,
    model: StringBuilder,
    usage_category: UInt8Builder,
    tokens: [Int64Builder; 4],
    costs: [Decimal128Builder; 4],
    tag_set: UInt32Builder,
    line_item_id: StringBuilder,
}

impl Builders {
    fn new(rows: usize) -> Self {
        Self {
            usage_start: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            period: StringBuilder::new(),
            payer: StringBuilder::new(),
            account: StringBuilder::new(),
            region: StringBuilder::new(),
            line_item_type: StringBuilder::new(),
            currency: StringBuilder::new(),
            principal_arn: StringBuilder::new(),
            principal_role: StringBuilder::new(),
            principal_account: StringBuilder::new(),
            model: StringBuilder::new(),
            usage_category: UInt8Builder::with_capacity(rows),
            tokens: std::array::from_fn(|_| Int64Builder::with_capacity(rows)),
            costs: std::array::from_fn(|_| Decimal128Builder::with_capacity(rows)),
            tag_set: UInt32Builder::with_capacity(rows),
            line_item_id: StringBuilder::new(),
        }
    }

    /// Columns in [`SCHEMA`] order.
    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.usage_start.finish()),
            Arc::new(self.period.finish()),
            Arc::new(self.payer.finish()),
            Arc::new(self.account.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.line_item_type.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(self.principal_arn.finish()),
            Arc::new(self.principal_role.finish()),
            Arc::new(self.principal_account.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.usage_category.finish()),
        ];
        for b in &mut self.tokens {
            columns.push(Arc::new(b.finish()));
        }
        for b in &mut self.costs {
            columns.push(Arc::new(
                b.finish().with_precision_and_scale(38, SCALE as i8)?,
            ));
        }
        columns.push(Arc::new(self.tag_set.finish()));
        columns.push(Arc::new(self.line_item_id.finish()));
        // Allocation is filled in per period, once all its files are read.
        let rows = columns[0].len();
        for _ in col::ALLOCS {
            columns.push(Arc::new(
                Decimal128Array::from(vec![0_i128; rows])
                    .with_precision_and_scale(38, SCALE as i8)?,
            ));
        }
        RecordBatch::try_new(SCHEMA.clone(), columns)
    }
}
