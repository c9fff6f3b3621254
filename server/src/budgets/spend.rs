//! A budget's spend as a query: its scope becomes the planner's filter (tag, exact
//! caller, account, model; a role becomes the callers whose role key it is, the same
//! grouping `PRINCIPAL_GROUPING_ROLE` uses), the caller's scope is ANDed in, and the
//! daily series of many budgets is one DataFusion plan: each budget's plan from
//! [`crate::query::plan::plan`], tagged with its index, all unioned.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use datafusion::{
    arrow::{
        array::{Array, AsArray},
        compute::cast,
        datatypes::{DataType, Decimal128Type, Int64Type, UInt32Type},
    },
    logical_expr::{col, lit},
    prelude::SessionContext,
};

use super::Budget;
use crate::{
    auth::Scope,
    error::Error,
    query::{
        CostMetric, Granularity, QuerySpec, cancel,
        plan::{self, UNITS_TYPE, out},
    },
    snapshot::Snapshot,
};

/// Budgets planned together: a bound on the size of one plan, which grows with every
/// budget in it (planning a union of a thousand plans would cost more than it saves).
pub const BUDGETS_PER_PLAN: usize = 64;

const INDEX: &str = "budget_index";

/// Exact spend per currency and day (µs of the day's start), units of 1e-10.
pub type Daily = BTreeMap<String, BTreeMap<i64, i128>>;

/// The query of a budget's unblended spend per day over `[start, end)`, seen by a
/// caller of `scope`; `None` when the scope can match no line item of the snapshot (a
/// role nobody called as, or a caller outside the role), or the range is empty.
pub fn spec(
    budget: &Budget,
    snapshot: &Snapshot,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    scope: &Scope,
) -> Option<QuerySpec> {
    if end <= start {
        return None;
    }
    let mut filter = budget.scope.filter();
    if let Some(role) = &budget.scope.role_arn {
        let members = role_members(snapshot, role);
        filter.principals = match &budget.scope.principal_arn {
            Some(arn) if members.contains(arn) => vec![arn.clone()],
            Some(_) => return None,
            None if members.is_empty() => return None,
            None => members,
        };
    }
    Some(QuerySpec {
        start,
        end,
        filter,
        metric: CostMetric::Unblended,
        granularity: Granularity::Daily,
        dimensions: Vec::new(),
        allocation: false,
        efficiency: false,
        scope: scope.clone(),
    })
}

/// The callers of the snapshot whose role key (sessions collapsed to their role) is
/// `role`: the role itself and every session of it.
fn role_members(snapshot: &Snapshot, role: &str) -> Vec<String> {
    let table = plan::principal_table(snapshot);
    let (Some(arns), Some(roles)) = (
        table.column(0).as_string_opt::<i32>(),
        table.column(1).as_string_opt::<i32>(),
    ) else {
        return Vec::new();
    };
    (0..table.num_rows())
        .filter(|&i| arns.is_valid(i) && roles.is_valid(i) && roles.value(i) == role)
        .map(|i| arns.value(i).to_owned())
        .collect()
}

/// Layer rows the plans of `specs` read, for admission.
pub fn rows_to_scan<'a>(
    snapshot: &Snapshot,
    specs: impl IntoIterator<Item = &'a QuerySpec>,
) -> Result<usize, Error> {
    specs
        .into_iter()
        .try_fold(0, |n, spec| Ok(n + plan::rows_to_scan(snapshot, spec)?))
}

/// The daily spend of each spec, in order, [`BUDGETS_PER_PLAN`] specs to a plan.
pub async fn daily(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    specs: &[QuerySpec],
) -> Result<Vec<Daily>, Error> {
    let mut out = vec![Daily::new(); specs.len()];
    for (chunk_no, chunk) in specs.chunks(BUDGETS_PER_PLAN).enumerate() {
        let mut union: Option<datafusion::dataframe::DataFrame> = None;
        for (i, spec) in chunk.iter().enumerate() {
            let index = u32::try_from(chunk_no * BUDGETS_PER_PLAN + i).unwrap_or(u32::MAX);
            let df = plan::plan(ctx, snapshot, spec)?.select(vec![
                lit(index).alias(INDEX),
                col(out::CURRENCY),
                col(out::BUCKET),
                col(out::COST),
            ])?;
            union = Some(match union {
                None => df,
                Some(all) => all.union(df)?,
            });
        }
        let Some(df) = union else {
            continue;
        };
        for batch in cancel::collect(df).await? {
            tokio::task::yield_now().await;
            let index = cast(column(&batch, INDEX)?, &DataType::UInt32)?;
            let index = index.as_primitive::<UInt32Type>();
            let currency = cast(column(&batch, out::CURRENCY)?, &DataType::Utf8)?;
            let currency = currency.as_string::<i32>();
            let day = cast(column(&batch, out::BUCKET)?, &DataType::Int64)?;
            let day = day.as_primitive::<Int64Type>();
            let cost = cast(column(&batch, out::COST)?, &UNITS_TYPE)?;
            let cost = cost.as_primitive::<Decimal128Type>();
            for row in 0..batch.num_rows() {
                if !(currency.is_valid(row) && day.is_valid(row) && cost.is_valid(row)) {
                    continue;
                }
                let Some(series) = out.get_mut(index.value(row) as usize) else {
                    continue;
                };
                *series
                    .entry(currency.value(row).to_owned())
                    .or_default()
                    .entry(day.value(row))
                    .or_default() += cost.value(row);
            }
        }
    }
    Ok(out)
}

fn column<'a>(
    batch: &'a datafusion::arrow::array::RecordBatch,
    name: &str,
) -> Result<&'a std::sync::Arc<dyn Array>, Error> {
    batch.column_by_name(name).ok_or_else(|| {
        Error::Query(datafusion::error::DataFusionError::Internal(format!(
            "budget plan lost column {name}"
        )))
    })
}
