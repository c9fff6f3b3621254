//! Discovery answers: which principals, models and tag keys a range holds.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::{
    arrow::{
        array::{Array, AsArray},
        compute::cast,
        datatypes::{DataType, Decimal128Type, Int64Type, UInt32Type},
    },
    functions_aggregate::expr_fn::sum,
    logical_expr::{cast as cast_expr, col, lit},
    prelude::SessionContext,
};

use super::{Answer, plan, spec::QuerySpec};
use crate::{
    error::Error,
    layers::{Tokens, col as c, cost_column},
    rules::money::Amount,
    snapshot::Snapshot,
};

/// Spend of one discovered key, across currencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cost per currency, ordered by currency.
    pub cost: BTreeMap<String, Amount>,
    /// Token sums.
    pub tokens: Tokens,
    /// Line items.
    pub line_items: i64,
}

/// Folds an answer grouped by one dimension into one summary per key, ordered by key
/// (the NULL key, unattributed, first).
pub fn by_first_key(answer: &Answer) -> Vec<(Option<String>, Summary)> {
    let mut keys: BTreeMap<Option<String>, Summary> = BTreeMap::new();
    for row in &answer.rows {
        let key = row
            .keys
            .first()
            .and_then(|k| k.as_ref())
            .and_then(|k| k.text())
            .map(str::to_owned);
        let summary = keys.entry(key).or_default();
        *summary.cost.entry(row.currency.clone()).or_default() += row.cost;
        summary.tokens.merge(&row.tokens);
        summary.line_items += row.line_items;
    }
    keys.into_iter().collect()
}

/// One tag key's reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagKeyReach {
    /// Line items carrying the key.
    pub line_items: i64,
    /// Their cost per currency.
    pub cost: BTreeMap<String, Amount>,
    /// Distinct values seen.
    pub values: BTreeSet<String>,
}

/// Every tag key of the line items matching `spec` (its dimensions are ignored), with its
/// reach, plus the number of line items matched in all.
pub async fn tag_keys(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    spec: &QuerySpec,
) -> Result<(BTreeMap<String, TagKeyReach>, i64), Error> {
    // Group by tag set first: each distinct tag map is then resolved once, not per row.
    let df = plan::rows(ctx, snapshot, spec, plan::LayerChoice::Coarsest)?
        .aggregate(
            vec![col(c::TAG_SET), col(c::CURRENCY)],
            vec![
                sum(cast_expr(col(cost_column(spec.metric)), plan::UNITS_TYPE)).alias("cost"),
                sum(col(c::LINE_ITEMS)).alias("n"),
            ],
        )?
        // Tag sets whose rows were all subtracted are not in the range.
        .filter(col("n").not_eq(lit(0i64)))?;
    // Stops within a batch once the request ends (deadline, caller gone).
    let batches = super::cancel::collect(df).await?;
    let mut keys: BTreeMap<String, TagKeyReach> = BTreeMap::new();
    let mut total = 0;
    for batch in batches {
        let ids = cast(batch.column(0), &DataType::UInt32)?;
        let ids = ids.as_primitive::<UInt32Type>();
        let currency = cast(batch.column(1), &DataType::UInt32)?;
        let currency = currency.as_primitive::<UInt32Type>();
        let cost = cast(batch.column(2), &plan::UNITS_TYPE)?;
        let cost = cost.as_primitive::<Decimal128Type>();
        let n = cast(batch.column(3), &DataType::Int64)?;
        let n = n.as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            total += n.value(row);
            let currency = snapshot.dicts.currencies.value(currency.value(row));
            let Some(set) = snapshot.dicts.tag_sets.sets().get(ids.value(row) as usize) else {
                continue;
            };
            for (key, value) in set.iter() {
                let reach = keys.entry(key.clone()).or_default();
                reach.line_items += n.value(row);
                *reach.cost.entry(currency.to_owned()).or_default() +=
                    Amount::from_scaled(if cost.is_valid(row) {
                        cost.value(row)
                    } else {
                        0
                    });
                reach.values.insert(value.clone());
            }
        }
    }
    Ok((keys, total))
}
