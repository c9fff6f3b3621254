//! Building DataFusion plans from [`QuerySpec`]s with the DataFrame and expression API.
//!
//! Caller strings (ARNs, tag keys, model names) only ever become literal values or
//! lookups in the snapshot's tag sets, never identifiers or SQL text. Planning is kept
//! apart from execution so the same plans can later run on a distributed engine.

use std::sync::Arc;

use datafusion::{
    arrow::{array::RecordBatch, datatypes::DataType},
    common::ScalarValue,
    dataframe::DataFrame,
    datasource::MemTable,
    functions::expr_fn::date_trunc,
    functions_aggregate::expr_fn::{count, sum},
    logical_expr::{Expr, cast, col, lit},
    prelude::SessionContext,
};

use super::spec::{Dimension, Filter, QuerySpec};
use crate::{
    error::Error,
    normalize::{SCHEMA, TagSets, col as c},
    snapshot::Snapshot,
};

/// Output column names of a planned aggregate.
pub mod out {
    /// Currency, always the first group key.
    pub const CURRENCY: &str = "g_currency";
    /// Start of the time bucket (when a granularity is set).
    pub const BUCKET: &str = "g_bucket";
    /// Sum of the cost metric (fully loaded with allocation).
    pub const COST: &str = "cost";
    /// Sum of the allocated cost (with allocation only).
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

/// The line items of the snapshot's periods that overlap the range, as a DataFrame.
pub fn scan(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
) -> Result<DataFrame, Error> {
    let start = spec.start.timestamp_micros();
    let end = spec.end.timestamp_micros();
    snapshot.check_range(start, end)?;
    let batches = snapshot.batches_in(start, end);
    let partitions = ctx.copied_config().target_partitions().max(1);
    let per_partition = batches.len().div_ceil(partitions).max(1);
    let split: Vec<Vec<RecordBatch>> = batches
        .chunks(per_partition)
        .map(<[RecordBatch]>::to_vec)
        .collect();
    let table = MemTable::try_new(
        SCHEMA.clone(),
        if split.is_empty() {
            vec![vec![]]
        } else {
            split
        },
    )?;
    Ok(ctx.read_table(Arc::new(table))?)
}

fn timestamp(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

fn any_of(column: &str, values: &[String]) -> Expr {
    col(column).in_list(values.iter().map(|v| lit(v.as_str())).collect(), false)
}

/// The predicate of a spec: time range and every filter.
pub fn predicate(spec: &QuerySpec, tag_sets: &TagSets) -> Expr {
    let mut conditions = vec![
        col(c::USAGE_START).gt_eq(timestamp(spec.start.timestamp_micros())),
        col(c::USAGE_START).lt(timestamp(spec.end.timestamp_micros())),
    ];
    let f: &Filter = &spec.filter;
    for (column, values) in [
        (c::ACCOUNT, &f.account_ids),
        (c::PAYER, &f.payer_account_ids),
        (c::MODEL, &f.models),
        (c::REGION, &f.regions),
        (c::LINE_ITEM_TYPE, &f.line_item_types),
    ] {
        if !values.is_empty() {
            conditions.push(any_of(column, values));
        }
    }
    if !f.principals.is_empty() {
        let arns: Vec<String> = f
            .principals
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect();
        let mut either = Vec::new();
        if !arns.is_empty() {
            either.push(any_of(c::PRINCIPAL_ARN, &arns));
        }
        if f.principals.iter().any(String::is_empty) {
            either.push(col(c::PRINCIPAL_ARN).is_null());
        }
        conditions.extend(either.into_iter().reduce(Expr::or));
    }
    if !f.usage_categories.is_empty() {
        let codes = f.usage_categories.iter().map(|u| lit(u.code())).collect();
        conditions.push(col(c::USAGE_CATEGORY).in_list(codes, false));
    }
    if !f.tags.is_empty() {
        let ids: Vec<Expr> = (0..tag_sets.sets().len() as u32)
            .filter(|&id| f.tags.iter().all(|t| t.accepts(tag_sets.value(id, &t.key))))
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

/// The grouped aggregate of a spec over a snapshot.
pub fn plan(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
) -> Result<DataFrame, Error> {
    let df = scan(ctx, snapshot, spec)?.filter(predicate(spec, &snapshot.tag_sets))?;
    let mut groups = vec![col(c::CURRENCY).alias(out::CURRENCY)];
    if let Some(unit) = spec.granularity.trunc_unit() {
        groups.push(date_trunc(lit(unit), col(c::USAGE_START)).alias(out::BUCKET));
    }
    for (i, dimension) in spec.dimensions.iter().enumerate() {
        let name = out::dimension(i);
        let key = match dimension {
            Dimension::Principal(grouping) => col(grouping.column()),
            Dimension::Model => col(c::MODEL),
            Dimension::Account => col(c::ACCOUNT),
            Dimension::Region => col(c::REGION),
            Dimension::UsageCategory => cast(col(c::USAGE_CATEGORY), DataType::Utf8),
            Dimension::LineItemType => col(c::LINE_ITEM_TYPE),
            // Grouped by tag-set id here; [`super::answer`] resolves each distinct id to
            // the key's value once and merges the groups that share a value.
            Dimension::Tag(_) => col(c::TAG_SET),
        };
        groups.push(key.alias(name));
    }
    let mut aggregates = if spec.allocation {
        vec![
            sum(col(spec.metric.column()) + col(spec.metric.alloc_column())).alias(out::COST),
            sum(col(spec.metric.alloc_column())).alias(out::ALLOCATED),
        ]
    } else {
        vec![sum(col(spec.metric.column())).alias(out::COST)]
    };
    for (column, name) in [
        c::TOKENS_INPUT,
        c::TOKENS_OUTPUT,
        c::TOKENS_CACHE_READ,
        c::TOKENS_CACHE_WRITE,
    ]
    .into_iter()
    .zip(out::TOKENS)
    {
        aggregates.push(sum(col(column)).alias(name));
    }
    aggregates.push(count(lit(1u8)).alias(out::LINE_ITEMS));
    Ok(df.aggregate(groups, aggregates)?)
}
