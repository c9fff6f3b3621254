//! Building DataFusion plans from [`QuerySpec`]s with the DataFrame and expression API.
//!
//! A plan reads the coarsest layers that answer each part of the range exactly (months
//! from the monthly layer, days from the daily one, partial days from the fine one;
//! see [`cover`]), filters and sums by dictionary ids, then joins each id with its
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
        datatypes::{DataType, Field, Schema},
    },
    common::{JoinType, ScalarValue},
    dataframe::DataFrame,
    datasource::MemTable,
    functions::expr_fn::date_trunc,
    functions_aggregate::expr_fn::sum,
    logical_expr::{Expr, cast, col, lit},
    prelude::SessionContext,
};

use super::spec::{Dimension, Filter, Granularity, PrincipalGrouping, QuerySpec};
use crate::{
    error::Error,
    layers::{
        DAY_MICROS, Grain, PeriodLayers, SCHEMA, alloc_column, col as c, cost_column, day_start,
        dict::{Dictionaries, Dictionary},
        month_start, next_month_start,
    },
    rules::arn::Principal,
    snapshot::Snapshot,
};

/// Output column names of a planned aggregate.
pub mod out {
    /// Currency code, always the first group key.
    pub const CURRENCY: &str = "g_currency";
    /// Start of the time bucket (when a granularity is set).
    pub const BUCKET: &str = "g_bucket";
    /// Sum of the cost metric (fully loaded with allocation), in units of 1e-10.
    pub const COST: &str = "cost";
    /// Sum of the allocated cost (with allocation only), in units of 1e-10.
    pub const ALLOCATED: &str = "allocated";
    /// Sums of the four token kinds.
    pub const TOKENS: [&str; 4] = ["input", "output", "cache_read", "cache_write"];
    /// Number of line items.
    pub const LINE_ITEMS: &str = "line_items";

    /// Output name of the `i`-th dimension.
    pub fn dimension(i: usize) -> String {
        format!("g_dim_{i}")
    }
}

/// Type of summed amounts: integers of units of 1e-10, exact to 38 digits.
pub const UNITS_TYPE: DataType = DataType::Decimal128(38, 0);

fn ceil_to(start: i64, floor: impl Fn(i64) -> i64, next: impl Fn(i64) -> i64) -> i64 {
    let f = floor(start);
    if f == start { f } else { next(f) }
}

/// Which layer answers which part of `[start, end)` (µs) for a granularity: the fine
/// layer for partial days (and for hourly buckets), the daily layer for whole days, the
/// monthly layer for whole months when buckets are months or the whole range.
pub fn cover(start: i64, end: i64, granularity: Granularity) -> Vec<(Grain, i64, i64)> {
    let mut parts = Vec::new();
    let mut push = |grain, lo: i64, hi: i64| {
        if lo < hi {
            parts.push((grain, lo, hi));
        }
    };
    let d0 = ceil_to(start, day_start, |d| d + DAY_MICROS);
    let d1 = day_start(end);
    if granularity == Granularity::Hourly || d0 >= d1 {
        push(Grain::Fine, start, end);
        return parts;
    }
    push(Grain::Fine, start, d0);
    push(Grain::Fine, d1, end);
    let (m0, m1) = (ceil_to(d0, month_start, next_month_start), month_start(d1));
    if granularity == Granularity::Daily || m0 >= m1 {
        push(Grain::Daily, d0, d1);
    } else {
        push(Grain::Daily, d0, m0);
        push(Grain::Daily, m1, d1);
        push(Grain::Monthly, m0, m1);
    }
    parts
}

fn layer(layers: &PeriodLayers, grain: Grain) -> &crate::layers::Layer {
    match grain {
        Grain::Fine => &layers.fine,
        Grain::Daily => &layers.daily,
        Grain::Monthly => &layers.monthly,
    }
}

/// Which layers a plan may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerChoice {
    /// The coarsest that answer each part of the range exactly (what requests use).
    #[default]
    Coarsest,
    /// Only the fine rows: a plain scan, against which tests hold the fast paths.
    FineOnly,
}

/// The layer rows a spec needs, as one DataFrame: the chunks that [`cover`] picks in
/// every period overlapping the range, cut to the filtered callers when there are any.
pub fn scan(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
) -> Result<DataFrame, Error> {
    scan_with(ctx, snapshot, spec, LayerChoice::Coarsest)
}

/// [`scan`] over the layers `choice` allows.
pub fn scan_with(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
    choice: LayerChoice,
) -> Result<DataFrame, Error> {
    let pieces = pieces(snapshot, spec, choice)?;
    let partitions = ctx.copied_config().target_partitions().max(1);
    let table = MemTable::try_new(SCHEMA.clone(), spread(pieces, partitions))?;
    Ok(ctx.read_table(Arc::new(table))?)
}

/// Layer rows a spec's plan reads: what admission weighs a query by.
pub fn rows_to_scan(snapshot: &Snapshot, spec: &QuerySpec) -> Result<usize, Error> {
    Ok(pieces(snapshot, spec, LayerChoice::Coarsest)?
        .iter()
        .map(RecordBatch::num_rows)
        .sum())
}

/// The batches (slices of layer chunks) a plan reads.
fn pieces(
    snapshot: &Snapshot,
    spec: &QuerySpec,
    choice: LayerChoice,
) -> Result<Vec<RecordBatch>, Error> {
    let start = spec.start.timestamp_micros();
    let end = spec.end.timestamp_micros();
    snapshot.check_range(start, end)?;
    let arns: Option<Vec<&str>> = (!spec.filter.principals.is_empty())
        .then(|| spec.filter.principals.iter().map(String::as_str).collect());
    let mut pieces: Vec<RecordBatch> = Vec::new();
    for period in snapshot.periods_in(start, end) {
        let parts = match choice {
            LayerChoice::Coarsest => cover(start, end, spec.granularity),
            LayerChoice::FineOnly => vec![(Grain::Fine, start, end)],
        };
        for (grain, lo, hi) in parts {
            let layer = layer(&period.layers, grain);
            let chunks: Vec<_> = match grain {
                // Partial days: the exact time predicate cuts the chunk's rows.
                Grain::Fine => layer.chunks_overlapping(lo, hi).collect(),
                Grain::Daily | Grain::Monthly => layer.chunks_within(lo, hi).collect(),
            };
            for chunk in chunks {
                match &arns {
                    Some(arns) => pieces.extend(chunk.rows_of(arns, &snapshot.dicts.principals)),
                    None => pieces.push(chunk.batch.clone()),
                }
            }
        }
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
fn ids_in(column: &str, dictionary: &Dictionary, values: &[String]) -> Expr {
    let ids: Vec<Expr> = values
        .iter()
        .filter_map(|v| dictionary.id(v))
        .map(lit)
        .collect();
    if ids.is_empty() {
        lit(false)
    } else {
        col(column).in_list(ids, false)
    }
}

/// The predicate of a spec: time range and every filter, on dictionary ids.
pub fn predicate(spec: &QuerySpec, dicts: &Dictionaries) -> Expr {
    let mut conditions = vec![
        col(c::USAGE_START).gt_eq(timestamp(spec.start.timestamp_micros())),
        col(c::USAGE_START).lt(timestamp(spec.end.timestamp_micros())),
    ];
    let f: &Filter = &spec.filter;
    for (column, dictionary, values) in [
        (c::ACCOUNT, &dicts.accounts, &f.account_ids),
        (c::PAYER, &dicts.accounts, &f.payer_account_ids),
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
    if !f.tags.is_empty() {
        let sets = &dicts.tag_sets;
        let ids: Vec<Expr> = (0..sets.sets().len() as u32)
            .filter(|&id| f.tags.iter().all(|t| t.accepts(sets.value(id, &t.key))))
            .map(lit)
            .collect();
        conditions.push(if ids.is_empty() {
            lit(false)
        } else {
            col(c::TAG_SET).in_list(ids, false)
        });
    }
    conditions
        .into_iter()
        .reduce(Expr::and)
        .unwrap_or(lit(true))
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

fn dictionary_values(d: &Dictionary) -> ArrayRef {
    Arc::new(d.to_array())
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
    let dicts = &snapshot.dicts;
    let df = scan_with(ctx, snapshot, spec, choice)?.filter(predicate(spec, dicts))?;

    // 1. Sum by ids: cheap integer keys over the layer rows.
    let key = |i: usize| format!("k_dim_{i}");
    let mut groups = vec![col(c::CURRENCY).alias("k_currency")];
    if let Some(unit) = spec.granularity.trunc_unit() {
        groups.push(date_trunc(lit(unit), col(c::USAGE_START)).alias(out::BUCKET));
    }
    for (i, dimension) in spec.dimensions.iter().enumerate() {
        let column = match dimension {
            Dimension::Principal(_) => c::PRINCIPAL,
            Dimension::Model => c::MODEL,
            Dimension::Account => c::ACCOUNT,
            Dimension::Region => c::REGION,
            Dimension::UsageCategory => c::USAGE_CATEGORY,
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
    let mut df = df.aggregate(groups, aggregates)?;

    // 2. Resolve ids through dimension tables joined into the plan.
    df = df.join(
        lookup(ctx, "c_id", "c_value", dictionary_values(&dicts.currencies))?,
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
            Dimension::Model => Some(dictionary_values(&dicts.models)),
            Dimension::Account => Some(dictionary_values(&dicts.accounts)),
            Dimension::Region => Some(dictionary_values(&dicts.regions)),
            Dimension::LineItemType => Some(dictionary_values(&dicts.line_item_types)),
            Dimension::Tag(tag_key) => Some(Arc::new(dicts.tag_sets.values_of(tag_key))),
            Dimension::UsageCategory => None,
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
            None => resolved.push(cast(col(key(i)), DataType::Utf8).alias(out::dimension(i))),
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
    Ok(df.aggregate(resolved, totals)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;
    const MAY1: i64 = 1_777_593_600_000_000; // 2026-05-01T00:00:00Z
    const JUN1: i64 = MAY1 + 31 * DAY_MICROS;
    const JUL1: i64 = JUN1 + 30 * DAY_MICROS;

    #[test]
    fn ranges_are_covered_by_the_coarsest_exact_layers() {
        use Grain::*;
        // Whole months only.
        assert_eq!(
            cover(MAY1, JUL1, Granularity::Whole),
            vec![(Monthly, MAY1, JUL1)]
        );
        // A month minus an hour: 30 days from the daily layer, 23 hours fine.
        assert_eq!(
            cover(MAY1, JUN1 - H, Granularity::Whole),
            vec![
                (Fine, JUN1 - DAY_MICROS, JUN1 - H),
                (Daily, MAY1, JUN1 - DAY_MICROS)
            ]
        );
        // Partial days at both ends, whole days between and a whole month.
        assert_eq!(
            cover(MAY1 - 2 * H, JUL1 + 5 * H, Granularity::Monthly),
            vec![
                (Fine, MAY1 - 2 * H, MAY1),
                (Fine, JUL1, JUL1 + 5 * H),
                (Monthly, MAY1, JUL1)
            ]
        );
        // Daily buckets never read months; hourly buckets only read fine rows.
        assert_eq!(
            cover(MAY1, JUL1, Granularity::Daily),
            vec![(Daily, MAY1, JUL1)]
        );
        assert_eq!(
            cover(MAY1, JUL1, Granularity::Hourly),
            vec![(Fine, MAY1, JUL1)]
        );
        // Within one day.
        assert_eq!(
            cover(MAY1 + H, MAY1 + 3 * H, Granularity::Whole),
            vec![(Fine, MAY1 + H, MAY1 + 3 * H)]
        );
    }
}
