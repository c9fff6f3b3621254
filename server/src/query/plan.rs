//! Building DataFusion plans from [`QuerySpec`]s with the DataFrame and expression API.
//!
//! A plan reads the layer chunks that answer the range exactly with the fewest rows
//! (months, days and hours, added or subtracted; see [`cover`]), filters and sums by
//! dictionary ids, then joins each id with its
//! dimension table (caller ARN, role or account; model; tag value; ...) and sums again
//! by the resolved values. The whole answer is one plan, with nothing left to do in
//! Rust but read the rows, so the same plans can later run on a distributed engine.
//!
//! Caller strings (ARNs, tag keys, model names) only ever become literal values or
//! lookups in the snapshot's dictionaries, never identifiers or SQL text.

use std::sync::Arc;

use datafusion::{
    arrow::{
        array::{ArrayRef, RecordBatch, StringArray, UInt32Array},
        datatypes::{DataType, Field, Schema, TimeUnit},
    },
    common::{JoinType, ScalarValue},
    dataframe::DataFrame,
    datasource::MemTable,
    functions::expr_fn::{coalesce, date_trunc},
    functions_aggregate::expr_fn::sum,
    logical_expr::{Expr, cast, col, lit},
    prelude::SessionContext,
};

use super::{
    cover,
    spec::{Dimension, Filter, PrincipalGrouping, QuerySpec},
};
use crate::{
    auth::Scope,
    error::Error,
    layers::{
        Chunk, SCHEMA, alloc_column, col as c, cost_column,
        dict::{Dictionaries, Dictionary},
        rates,
    },
    rules::arn::Principal,
    snapshot::{LookupColumn, Snapshot},
};

/// Output column names of a planned aggregate.
pub mod out {
    /// Currency code, always the first group key.
    pub const CURRENCY: &str = "g_currency";
    /// Start of the time bucket (when a granularity is set), µs since the epoch.
    pub const BUCKET: &str = "g_bucket";
    /// Sum of the cost metric (fully loaded with allocation), in units of 1e-10.
    pub const COST: &str = "cost";
    /// Sum of the allocated cost (with allocation only), in units of 1e-10.
    pub const ALLOCATED: &str = "allocated";
    /// Sums of the four token kinds.
    pub const TOKENS: [&str; 4] = ["input", "output", "cache_read", "cache_write"];
    /// Number of line items.
    pub const LINE_ITEMS: &str = "line_items";
    /// With efficiency: the cache saving, in units of 1e-16 (see [`crate::layers::rates`]).
    pub const SAVING: &str = "cache_saving";

    /// Output name of the `i`-th dimension.
    pub fn dimension(i: usize) -> String {
        format!("g_dim_{i}")
    }
}

/// Type of summed amounts: integers of units of 1e-10, exact to 38 digits.
pub const UNITS_TYPE: DataType = DataType::Decimal128(38, 0);

/// Which layers a plan may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerChoice {
    /// The coarsest that answer each part of the range exactly (what requests use).
    #[default]
    Coarsest,
    /// Only the fine rows: a plain scan, against which tests hold the fast paths.
    FineOnly,
}

/// The layer rows a spec needs, signed and filtered, as one DataFrame in [`SCHEMA`]:
/// the chunks [`cover::select`] picks in every period overlapping the range (cut to the
/// filtered callers when there are any), those it subtracts negated. Summing its rows
/// by any key gives that key's exact answer, once groups netting to zero line items are
/// dropped.
pub fn rows(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
    choice: LayerChoice,
) -> Result<DataFrame, Error> {
    rows_of(ctx, snapshot, spec, pieces(snapshot, spec, choice)?)
}

/// Layer rows up to which a plan runs in one partition. Splitting a small scan over
/// cores costs more (a repartition and a second aggregation step per query) than it
/// saves: under load, cores are better spent on other queries.
pub const ONE_PARTITION_ROWS: usize = 400_000;

/// `ctx` for a plan reading `rows` layer rows: itself, or its one-partition session
/// ([`crate::server::session::narrow`]) for a small scan.
fn session_for(ctx: &SessionContext, rows: usize) -> Option<SessionContext> {
    if rows > ONE_PARTITION_ROWS {
        return None;
    }
    crate::server::session::narrow(ctx)
}

fn rows_of(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
    pieces: Pieces,
) -> Result<DataFrame, Error> {
    let ids = id_predicate(spec, &snapshot.dicts);
    let partitions = ctx.state_ref().read().config().target_partitions().max(1);
    let table = |batches: Vec<RecordBatch>| -> Result<DataFrame, Error> {
        let table = MemTable::try_new(SCHEMA.clone(), spread(batches, partitions))?;
        Ok(ctx.read_table(Arc::new(table))?)
    };
    let mut parts = Vec::new();
    if !pieces.whole.is_empty() {
        parts.push(table(pieces.whole)?.filter(ids.clone())?);
    }
    if !pieces.partial.is_empty() {
        parts.push(table(pieces.partial)?.filter(time_predicate(spec).and(ids.clone()))?);
    }
    if !pieces.subtract.is_empty() {
        let negated: Vec<Expr> = SCHEMA
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().as_str();
                if f.data_type() == &DataType::Int64 {
                    (-col(name)).alias(name)
                } else {
                    col(name)
                }
            })
            .collect();
        parts.push(table(pieces.subtract)?.filter(ids)?.select(negated)?);
    }
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return table(Vec::new());
    };
    parts.try_fold(first, |all, part| Ok(all.union(part)?))
}

/// The batches a plan reads, by use.
#[derive(Debug, Default)]
struct Pieces {
    whole: Vec<RecordBatch>,
    partial: Vec<RecordBatch>,
    subtract: Vec<RecordBatch>,
}

/// How many layer rows a plan reads, by use and grain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerUse {
    /// Fine rows read (added or subtracted).
    pub fine: usize,
    /// Daily rows read.
    pub daily: usize,
    /// Monthly rows read.
    pub monthly: usize,
    /// Of all those, the rows subtracted.
    pub subtracted: usize,
}

impl Pieces {
    fn rows(&self) -> usize {
        [&self.whole, &self.partial, &self.subtract]
            .iter()
            .flat_map(|v| v.iter())
            .map(RecordBatch::num_rows)
            .sum()
    }
}

impl LayerUse {
    /// Rows read in all.
    pub fn rows(&self) -> usize {
        self.fine + self.daily + self.monthly
    }
}

/// Layer rows a spec's plan reads: what admission weighs a query by, and what tests
/// and benchmarks report.
pub fn layer_use(snapshot: &Snapshot, spec: &QuerySpec) -> Result<LayerUse, Error> {
    let (start, end) = (spec.start.timestamp_micros(), spec.end.timestamp_micros());
    snapshot.check_range(start, end)?;
    let mut used = LayerUse::default();
    for period in snapshot.periods_in(start, end) {
        let s = cover::select(
            &period.layers,
            start,
            end,
            spec.granularity,
            LayerChoice::Coarsest,
        );
        for (chunks, subtracted) in [(&s.whole, false), (&s.partial, false), (&s.subtract, true)] {
            for c in chunks {
                let n = c.batch.num_rows();
                let grain = [
                    (&period.layers.fine, &mut used.fine),
                    (&period.layers.daily, &mut used.daily),
                    (&period.layers.monthly, &mut used.monthly),
                ];
                for (layer, count) in grain {
                    if layer
                        .chunks
                        .as_ptr_range()
                        .contains(&std::ptr::from_ref(*c))
                    {
                        *count += n;
                    }
                }
                if subtracted {
                    used.subtracted += n;
                }
            }
        }
    }
    Ok(used)
}

/// Layer rows a spec's plan reads (after cutting to filtered callers).
pub fn rows_to_scan(snapshot: &Snapshot, spec: &QuerySpec) -> Result<usize, Error> {
    Ok(pieces(snapshot, spec, LayerChoice::Coarsest)?.rows())
}

fn pieces(snapshot: &Snapshot, spec: &QuerySpec, choice: LayerChoice) -> Result<Pieces, Error> {
    let start = spec.start.timestamp_micros();
    let end = spec.end.timestamp_micros();
    snapshot.check_range(start, end)?;
    let arns: Option<Vec<&str>> = (!spec.filter.principals.is_empty())
        .then(|| spec.filter.principals.iter().map(String::as_str).collect());
    let cut = |chunks: &[&Chunk], out: &mut Vec<RecordBatch>| {
        for chunk in chunks {
            match &arns {
                Some(arns) => out.extend(chunk.rows_of(arns, &snapshot.dicts.principals)),
                None => out.push(chunk.batch.clone()),
            }
        }
    };
    let mut pieces = Pieces::default();
    for period in snapshot.periods_in(start, end) {
        let s = cover::select(&period.layers, start, end, spec.granularity, choice);
        cut(&s.whole, &mut pieces.whole);
        cut(&s.partial, &mut pieces.partial);
        cut(&s.subtract, &mut pieces.subtract);
    }
    Ok(pieces)
}

/// Batches spread over `n` partitions of about equal rows.
fn spread(mut pieces: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    pieces.sort_by_key(|b| std::cmp::Reverse(b.num_rows()));
    let mut parts: Vec<(usize, Vec<RecordBatch>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for piece in pieces {
        if let Some(part) = parts.iter_mut().min_by_key(|(rows, _)| *rows) {
            part.0 += piece.num_rows();
            part.1.push(piece);
        }
    }
    parts.into_iter().map(|(_, p)| p).collect()
}

fn timestamp(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

/// `column IN (ids of values)`, false when no value is known.
fn ids_in(
    column: &str,
    dictionary: &Dictionary,
    values: impl IntoIterator<Item = impl AsRef<str>>,
) -> Expr {
    any_id(
        column,
        values.into_iter().filter_map(|v| dictionary.id(v.as_ref())),
    )
}

/// `column IN (ids)`, false when there is none.
fn any_id(column: &str, ids: impl IntoIterator<Item = u32>) -> Expr {
    let ids: Vec<Expr> = ids.into_iter().map(lit).collect();
    if ids.is_empty() {
        lit(false)
    } else {
        col(column).in_list(ids, false)
    }
}

/// The exact time range of a spec.
pub fn time_predicate(spec: &QuerySpec) -> Expr {
    col(c::USAGE_START)
        .gt_eq(timestamp(spec.start.timestamp_micros()))
        .and(col(c::USAGE_START).lt(timestamp(spec.end.timestamp_micros())))
}

/// Every filter of a spec, on dictionary ids.
pub fn id_predicate(spec: &QuerySpec, dicts: &Dictionaries) -> Expr {
    let mut conditions = Vec::new();
    let f: &Filter = &spec.filter;
    for (column, values) in [
        (c::ACCOUNT, &f.account_ids),
        (c::PAYER, &f.payer_account_ids),
    ] {
        if !values.is_empty() {
            conditions.push(ids_in(column, &dicts.accounts, values));
        }
    }
    for (column, dictionary, values) in [
        (c::MODEL, &dicts.models, &f.models),
        (c::REGION, &dicts.regions, &f.regions),
        (
            c::LINE_ITEM_TYPE,
            &dicts.line_item_types,
            &f.line_item_types,
        ),
        // The empty string selects unattributed spend: it is id 0.
        (c::PRINCIPAL, &dicts.principals, &f.principals),
    ] {
        if !values.is_empty() {
            conditions.push(ids_in(column, dictionary, values));
        }
    }
    if !f.usage_categories.is_empty() {
        let codes = f.usage_categories.iter().map(|u| lit(u.code())).collect();
        conditions.push(col(c::USAGE_CATEGORY).in_list(codes, false));
    }
    if !f.routings.is_empty() {
        let codes = f.routings.iter().map(|r| lit(r.code())).collect();
        conditions.push(col(c::ROUTING).in_list(codes, false));
    }
    if !f.tags.is_empty() {
        let sets = &dicts.tag_sets;
        conditions.push(any_id(
            c::TAG_SET,
            (0..sets.sets().len() as u32)
                .filter(|&id| f.tags.iter().all(|t| t.accepts(sets.value(id, &t.key)))),
        ));
    }
    conditions.extend(scope_predicate(&spec.scope, dicts));
    conditions
        .into_iter()
        .reduce(Expr::and)
        .unwrap_or(lit(true))
}

/// The caller's scope as conditions on dictionary ids, like the filters: usage account
/// ids, the tag sets carrying each scoped key with an allowed value, the callers whose
/// ARN starts with an allowed prefix (id 0, no caller, never does). Nothing for a field
/// that restricts nothing.
fn scope_predicate(scope: &Scope, dicts: &Dictionaries) -> Vec<Expr> {
    let mut conditions = Vec::new();
    if !scope.accounts.is_empty() {
        conditions.push(ids_in(c::ACCOUNT, &dicts.accounts, &scope.accounts));
    }
    if !scope.tags.is_empty() {
        let sets = &dicts.tag_sets;
        conditions.push(any_id(
            c::TAG_SET,
            (0..sets.sets().len() as u32)
                .filter(|&id| scope.allows_tags(|key| sets.value(id, key))),
        ));
    }
    if !scope.principal_prefixes.is_empty() {
        let arns = dicts.principals.values().iter().enumerate();
        conditions.push(any_id(
            c::PRINCIPAL,
            arns.filter(|(id, arn)| *id != 0 && scope.allows_principal(arn))
                .map(|(id, _)| id as u32),
        ));
    }
    conditions
}

/// A two-column lookup table `(id_name: u32 id, value_name: value)` indexed by id.
fn lookup(
    ctx: &SessionContext,
    id_name: &str,
    value_name: &str,
    values: ArrayRef,
) -> Result<DataFrame, Error> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(id_name, DataType::UInt32, false),
        Field::new(value_name, DataType::Utf8, true),
    ]));
    let ids = UInt32Array::from_iter_values(0..values.len() as u32);
    let batch = RecordBatch::try_new(schema, vec![Arc::new(ids), values])?;
    Ok(ctx.read_batch(batch)?)
}

/// The caller dimension table of a snapshot: id, ARN, role key and account key (NULL
/// for id 0, no caller), built once per snapshot.
pub fn principal_table(snapshot: &Snapshot) -> &RecordBatch {
    snapshot.principal_table.get_or_init(|| {
        let principals = snapshot.dicts.principals.values();
        let parsed: Vec<Option<Principal>> = principals
            .iter()
            .enumerate()
            .map(|(id, arn)| (id != 0).then(|| Principal::parse(Some(arn))))
            .collect();
        let arn = StringArray::from_iter(parsed.iter().map(|p| p.as_ref().map(|p| p.arn.clone())));
        let role = StringArray::from_iter(
            parsed
                .iter()
                .map(|p| p.as_ref().and_then(Principal::role_key)),
        );
        let account = StringArray::from_iter(
            parsed
                .iter()
                .map(|p| p.as_ref().and_then(Principal::account_key)),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("arn", DataType::Utf8, true),
            Field::new("role", DataType::Utf8, true),
            Field::new("account", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arn), Arc::new(role), Arc::new(account)],
        )
        .unwrap_or_else(|_| RecordBatch::new_empty(schema))
    })
}

/// The start of the `unit` bucket of each row, as µs since the epoch (`Int64`).
///
/// `date_trunc` on a timestamp with a time zone (even UTC) converts every value through
/// the zone's calendar, which took half the CPU of a loaded server; on the same instants
/// without a zone it truncates hours and days arithmetically. Layer times are UTC, so
/// dropping the zone changes no value.
fn bucket_start(unit: &str) -> Expr {
    let naive = cast(
        cast(col(c::USAGE_START), DataType::Int64),
        DataType::Timestamp(TimeUnit::Microsecond, None),
    );
    cast(date_trunc(lit(unit), naive), DataType::Int64)
}

/// The grouped aggregate of a spec over a snapshot, as one DataFrame whose columns are
/// named by [`out`].
pub fn plan(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
) -> Result<DataFrame, Error> {
    plan_with(ctx, snapshot, spec, LayerChoice::Coarsest)
}

/// [`plan`] over the layers `choice` allows.
pub fn plan_with(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
    choice: LayerChoice,
) -> Result<DataFrame, Error> {
    let values = |column| snapshot.lookups.get(&column, &snapshot.dicts);
    let pieces = pieces(snapshot, spec, choice)?;
    let small = session_for(ctx, pieces.rows());
    let ctx = small.as_ref().unwrap_or(ctx);
    let mut df = rows_of(ctx, snapshot, spec, pieces)?;
    if spec.efficiency {
        df = priced(ctx, snapshot, df, spec)?;
    }

    // 1. Sum by ids: cheap integer keys over the layer rows.
    let key = |i: usize| format!("k_dim_{i}");
    let mut groups = vec![col(c::CURRENCY).alias("k_currency")];
    if let Some(unit) = spec.granularity.trunc_unit() {
        groups.push(bucket_start(unit).alias(out::BUCKET));
    }
    for (i, dimension) in spec.dimensions.iter().enumerate() {
        let column = match dimension {
            Dimension::Principal(_) => c::PRINCIPAL,
            Dimension::Model => c::MODEL,
            Dimension::Account => c::ACCOUNT,
            Dimension::Region => c::REGION,
            Dimension::UsageCategory => c::USAGE_CATEGORY,
            Dimension::Routing => c::ROUTING,
            Dimension::LineItemType => c::LINE_ITEM_TYPE,
            Dimension::Tag(_) => c::TAG_SET,
        };
        groups.push(col(column).alias(key(i)));
    }
    let units = |name: &str| cast(col(name), UNITS_TYPE);
    let cost = cost_column(spec.metric);
    let alloc = alloc_column(spec.metric);
    let mut aggregates = if spec.allocation {
        vec![
            sum(units(cost) + units(alloc)).alias(out::COST),
            sum(units(alloc)).alias(out::ALLOCATED),
        ]
    } else {
        vec![sum(units(cost)).alias(out::COST)]
    };
    for (column, name) in c::TOKENS.into_iter().zip(out::TOKENS) {
        aggregates.push(sum(col(column)).alias(name));
    }
    aggregates.push(sum(col(c::LINE_ITEMS)).alias(out::LINE_ITEMS));
    if spec.efficiency {
        aggregates.push(sum(col(ROW_SAVING)).alias(out::SAVING));
    }
    // Subtracted chunks can leave groups with nothing in the range: they net to zero
    // line items (every row counts at least one), and are no group of the answer.
    let mut df = df
        .aggregate(groups, aggregates)?
        .filter(col(out::LINE_ITEMS).not_eq(lit(0i64)))?;

    // 2. Resolve ids through dimension tables joined into the plan.
    df = df.join(
        lookup(ctx, "c_id", "c_value", values(LookupColumn::Currencies))?,
        JoinType::Left,
        &["k_currency"],
        &["c_id"],
        None,
    )?;
    let mut resolved = vec![col("c_value").alias(out::CURRENCY)];
    if spec.granularity.trunc_unit().is_some() {
        resolved.push(col(out::BUCKET));
    }
    for (i, dimension) in spec.dimensions.iter().enumerate() {
        let (id_name, value_name) = (format!("d{i}_id"), format!("d{i}_value"));
        let values: Option<ArrayRef> = match dimension {
            Dimension::Principal(grouping) => {
                let table = principal_table(snapshot);
                let column = match grouping {
                    PrincipalGrouping::Arn => 0,
                    PrincipalGrouping::Role => 1,
                    PrincipalGrouping::Account => 2,
                };
                Some(table.column(column).clone())
            }
            Dimension::Model => Some(values(LookupColumn::Models)),
            Dimension::Account => Some(values(LookupColumn::Accounts)),
            Dimension::Region => Some(values(LookupColumn::Regions)),
            Dimension::LineItemType => Some(values(LookupColumn::LineItemTypes)),
            Dimension::Tag(tag_key) => Some(values(LookupColumn::Tag(tag_key.clone()))),
            Dimension::UsageCategory | Dimension::Routing => None,
        };
        match values {
            Some(values) => {
                df = df.join(
                    lookup(ctx, &id_name, &value_name, values)?,
                    JoinType::Left,
                    &[key(i).as_str()],
                    &[id_name.as_str()],
                    None,
                )?;
                resolved.push(col(value_name).alias(out::dimension(i)));
            }
            // Categories and routings are few and typed: their code is the key.
            None => resolved.push(col(key(i)).alias(out::dimension(i))),
        }
    }

    // 3. Sum again by the resolved values: sessions of one role, tag sets sharing a
    // value, and so on, become one group.
    let mut totals = vec![sum(col(out::COST)).alias(out::COST)];
    if spec.allocation {
        totals.push(sum(col(out::ALLOCATED)).alias(out::ALLOCATED));
    }
    for name in out::TOKENS {
        totals.push(sum(col(name)).alias(name));
    }
    totals.push(sum(col(out::LINE_ITEMS)).alias(out::LINE_ITEMS));
    if spec.efficiency {
        totals.push(sum(col(out::SAVING)).alias(out::SAVING));
    }
    Ok(df.aggregate(resolved, totals)?)
}

/// A layer row's cache saving, in units of 1e-16.
const ROW_SAVING: &str = "row_saving";

/// The snapshot's price table (see [`crate::layers::rates::price_table`]), built once.
pub fn price_table(snapshot: &Snapshot) -> &RecordBatch {
    snapshot.price_table.get_or_init(|| {
        let rates = snapshot.periods.iter().flat_map(|p| p.rates.iter());
        rates::price_table(rates, &snapshot.dicts).unwrap_or_else(|e| {
            // Only sums beyond i64 fail: the view then reports no saving.
            tracing::warn!(error = %e, "cannot build the price table; cache savings read as zero");
            RecordBatch::new_empty(rates::PRICE_SCHEMA.clone())
        })
    })
}

/// Layer rows with their cache saving: each row joined with its price key's saving per
/// million cache-read tokens under the spec's metric, times its cache-read tokens. The
/// price key (month, model, region, category, routing, currency) is part of every
/// layer's key, so a daily or monthly row's saving is exactly the sum of its fine rows'
/// and subtracted rows cancel exactly; a key without both prices saves nothing.
fn priced(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    rows: DataFrame,
    spec: &QuerySpec,
) -> Result<DataFrame, Error> {
    let prices = ctx.read_batch(price_table(snapshot).clone())?;
    let month = "k_month";
    let rows = rows.with_column(month, bucket_start("month"))?;
    let joined = rows.join(
        prices,
        JoinType::Left,
        &[
            month,
            c::MODEL,
            c::REGION,
            c::USAGE_CATEGORY,
            c::ROUTING,
            c::CURRENCY,
        ],
        &[
            rates::col::MONTH,
            rates::col::MODEL,
            rates::col::REGION,
            rates::col::CATEGORY,
            rates::col::ROUTING,
            rates::col::CURRENCY,
        ],
        None,
    )?;
    let per_million = coalesce(vec![col(rates::saving_column(spec.metric)), lit(0i64)]);
    Ok(joined.with_column(
        ROW_SAVING,
        cast(col(c::TOKENS_CACHE_READ), UNITS_TYPE) * cast(per_million, UNITS_TYPE),
    )?)
}
