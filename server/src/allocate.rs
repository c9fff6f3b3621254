//! Proportional allocation: spend without a caller shared out to the callers who caused
//! it, once per billing period and snapshot, so that every grouping and filter applies to
//! fully loaded amounts with no special case.
//!
//! The rule, per billing period, payer and currency, for each cost metric:
//! - receivers are the attributed Bedrock `Usage` line items (with a caller); donors are
//!   the line items without a caller (tax, credits, discounts, provisioned throughput,
//!   calls without identity);
//! - the donors of a usage account whose receivers' cost sums to more than zero form
//!   one pool, shared over those receivers in proportion to their cost;
//! - the donors of the other accounts form one pool per payer, shared over all the
//!   payer's receivers in the period and currency, if their cost sums to more than zero;
//! - otherwise the pool stays unattributed. Money never crosses periods or currencies.
//!
//! Each pool is split exactly: shares are floored to 1e-10 and the units left over go one
//! each to the largest remainders, ties broken by line item id, so shares add up to the
//! pool to the last unit. Receivers carry `+share` and donors `-amount` in the `alloc_*`
//! columns, so allocation moves money between groups and never changes a total.

use std::{collections::BTreeMap, sync::Arc};

use datafusion::arrow::{
    array::{Array, ArrayRef, AsArray, Decimal128Array, RecordBatch},
    datatypes::Decimal128Type,
    error::ArrowError,
};

use crate::{normalize::col, query::CostMetric, rules::money::SCALE};

/// Where one period's spend without a caller went, for one currency and metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationSummary {
    /// Currency code.
    pub currency: String,
    /// Cost metric.
    pub metric: CostMetric,
    /// Shared over callers of the same usage account (units of 1e-10).
    pub within_account: i128,
    /// Shared over the payer's callers (units of 1e-10).
    pub across_payer: i128,
    /// Left unattributed (units of 1e-10).
    pub unattributed: i128,
}

/// The metrics in the order of [`col::COSTS`] and [`col::ALLOCS`].
pub const METRICS: [CostMetric; 4] = [
    CostMetric::Unblended,
    CostMetric::NetUnblended,
    CostMetric::Blended,
    CostMetric::PublicOnDemand,
];

/// Splits `pool` over `weights` (whose sum must be positive) in proportion, exactly:
/// floors, then one unit each to the largest remainders, ties to the smaller id.
pub fn largest_remainder(pool: i128, weights: &[(i128, &str)]) -> Vec<i128> {
    let total: i128 = weights.iter().map(|(w, _)| w).sum();
    debug_assert!(total > 0, "a pool is only shared over a positive total");
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, (w, _)) in weights.iter().enumerate() {
        let product = pool * w;
        shares.push(product.div_euclid(total));
        remainders.push((product.rem_euclid(total), i));
    }
    let left = pool - shares.iter().sum::<i128>();
    remainders
        .sort_by(|(ra, ia), (rb, ib)| rb.cmp(ra).then_with(|| weights[*ia].1.cmp(weights[*ib].1)));
    for (_, i) in remainders.into_iter().take(left.max(0) as usize) {
        shares[i] += 1;
    }
    shares
}

struct Line {
    batch: usize,
    row: usize,
    cost: [i128; 4],
}

#[derive(Default)]
struct Account {
    receivers: Vec<(Line, String)>,
    donors: Vec<Line>,
}

fn strings<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a datafusion::arrow::array::StringArray, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| ArrowError::SchemaError(format!("normalized batch lacks {name}")))
}

fn decimals<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Decimal128Array, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Decimal128Type>())
        .ok_or_else(|| ArrowError::SchemaError(format!("normalized batch lacks {name}")))
}

/// Fills the `alloc_*` columns of one period's normalized batches and reports where the
/// spend without a caller went.
pub fn apply(batches: &mut [RecordBatch]) -> Result<Vec<AllocationSummary>, ArrowError> {
    // (payer, currency) -> account -> receivers and donors
    let mut scopes: BTreeMap<(String, String), BTreeMap<String, Account>> = BTreeMap::new();
    for (b, batch) in batches.iter().enumerate() {
        let payer = strings(batch, col::PAYER)?;
        let currency = strings(batch, col::CURRENCY)?;
        let account = strings(batch, col::ACCOUNT)?;
        let kind = strings(batch, col::LINE_ITEM_TYPE)?;
        let principal = strings(batch, col::PRINCIPAL_ARN)?;
        let id = strings(batch, col::LINE_ITEM_ID)?;
        let costs = col::COSTS
            .iter()
            .map(|c| decimals(batch, c))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let line = Line {
                batch: b,
                row,
                cost: std::array::from_fn(|m| costs[m].value(row)),
            };
            let entry = scopes
                .entry((payer.value(row).to_owned(), currency.value(row).to_owned()))
                .or_default()
                .entry(account.value(row).to_owned())
                .or_default();
            if principal.is_null(row) {
                entry.donors.push(line);
            } else if kind.value(row) == "Usage" {
                entry.receivers.push((line, id.value(row).to_owned()));
            }
        }
    }

    let mut allocated: Vec<[Vec<i128>; 4]> = batches
        .iter()
        .map(|b| std::array::from_fn(|_| vec![0; b.num_rows()]))
        .collect();
    let mut summaries = Vec::new();
    for ((_, currency), accounts) in &scopes {
        for (m, metric) in METRICS.into_iter().enumerate() {
            let mut summary = AllocationSummary {
                currency: currency.clone(),
                metric,
                within_account: 0,
                across_payer: 0,
                unattributed: 0,
            };
            let mut share = |pool: i128, receivers: &[&(Line, String)], donors: &[&Line]| {
                let weights: Vec<(i128, &str)> = receivers
                    .iter()
                    .map(|(l, id)| (l.cost[m], id.as_str()))
                    .collect();
                for ((line, _), s) in receivers.iter().zip(largest_remainder(pool, &weights)) {
                    allocated[line.batch][m][line.row] += s;
                }
                for line in donors {
                    allocated[line.batch][m][line.row] -= line.cost[m];
                }
            };
            let mut payer_donors = Vec::new();
            for account in accounts.values() {
                let weight: i128 = account.receivers.iter().map(|(l, _)| l.cost[m]).sum();
                let pool: i128 = account.donors.iter().map(|l| l.cost[m]).sum();
                if weight > 0 {
                    let receivers: Vec<_> = account.receivers.iter().collect();
                    share(pool, &receivers, &account.donors.iter().collect::<Vec<_>>());
                    summary.within_account += pool;
                } else {
                    payer_donors.extend(account.donors.iter());
                }
            }
            let pool: i128 = payer_donors.iter().map(|l| l.cost[m]).sum();
            let receivers: Vec<_> = accounts.values().flat_map(|a| a.receivers.iter()).collect();
            if receivers.iter().map(|(l, _)| l.cost[m]).sum::<i128>() > 0 {
                share(pool, &receivers, &payer_donors);
                summary.across_payer += pool;
            } else {
                summary.unattributed += pool;
            }
            summaries.push(summary);
        }
    }

    for (batch, columns) in batches.iter_mut().zip(allocated) {
        let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
        let first = arrays.len() - col::ALLOCS.len();
        for (slot, values) in arrays[first..].iter_mut().zip(columns) {
            *slot =
                Arc::new(Decimal128Array::from(values).with_precision_and_scale(38, SCALE as i8)?);
        }
        *batch = RecordBatch::try_new(batch.schema(), arrays)?;
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_exactly_with_ties_to_the_smaller_id() {
        // 10 units over three equal weights: 3 each, the last unit to the smallest id.
        assert_eq!(
            largest_remainder(10, &[(5, "b"), (5, "a"), (5, "c")]),
            vec![3, 4, 3]
        );
        // 0.3 over 6 : 3 : 1.
        assert_eq!(
            largest_remainder(3_000_000_000, &[(6, "x"), (3, "y"), (1, "z")]),
            vec![1_800_000_000, 900_000_000, 300_000_000]
        );
        // Negative pools (credits) split the same way and still add up.
        let shares = largest_remainder(-7, &[(1, "a"), (1, "b"), (1, "c")]);
        assert_eq!(shares.iter().sum::<i128>(), -7);
        assert_eq!(shares, vec![-2, -2, -3]);
        // 1 unit over weights 2:1 goes to the larger remainder.
        assert_eq!(largest_remainder(1, &[(1, "a"), (2, "b")]), vec![0, 1]);
    }
}
