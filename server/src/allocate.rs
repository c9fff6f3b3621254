//! Proportional allocation: spend without a caller shared out to the callers who caused
//! it, once per billing period when the period is loaded, so that every grouping and
//! filter applies to fully loaded amounts with no special case.
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
//! pool to the last unit. Shares are computed per line item, then summed into the layer
//! row the line item belongs to: receivers' rows carry `+share` and donors' rows
//! `-amount`, so allocation moves money between groups and never changes a total.

use std::{cmp::Ordering, collections::BTreeMap};

use datafusion::arrow::{
    array::{Array, StringArray},
    error::ArrowError,
};

use crate::{
    layers::{Amounts, GroupedRows, METRICS, dict::Dictionaries},
    query::CostMetric,
};

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

/// An attributed `Usage` line item: it receives shares in proportion to its cost.
#[derive(Debug, Clone, Copy)]
pub struct Receiver {
    /// The fine layer row it was summed into.
    pub row: u32,
    /// Its direct cost.
    pub cost: Amounts,
}

/// A line item without a caller: its cost is what gets shared.
#[derive(Debug, Clone, Copy)]
pub struct Donor {
    /// The fine layer row it was summed into.
    pub row: u32,
    /// Its direct cost.
    pub cost: Amounts,
}

/// Splits `pool` over `weights` (whose sum must be positive) in proportion, exactly:
/// floors, then one unit each to the largest remainders, ties to the smaller id (then
/// the earlier position).
pub fn largest_remainder_by<'a>(
    pool: i128,
    weights: &[i128],
    id: impl Fn(usize) -> &'a str,
) -> Vec<i128> {
    let total: i128 = weights.iter().sum();
    debug_assert!(total > 0, "a pool is only shared over a positive total");
    if total <= 0 {
        return vec![0; weights.len()];
    }
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for w in weights {
        let product = pool * w;
        shares.push(product.div_euclid(total));
        remainders.push(product.rem_euclid(total));
    }
    let left = (pool - shares.iter().sum::<i128>()).max(0) as usize;
    if left > 0 {
        let order = |a: &usize, b: &usize| -> Ordering {
            remainders[*b]
                .cmp(&remainders[*a])
                .then_with(|| id(*a).cmp(id(*b)))
                .then_with(|| a.cmp(b))
        };
        let mut ranked: Vec<usize> = (0..weights.len()).collect();
        if left < ranked.len() {
            ranked.select_nth_unstable_by(left - 1, order);
        }
        for &i in ranked.iter().take(left) {
            shares[i] += 1;
        }
    }
    shares
}

/// [`largest_remainder_by`] over `(weight, id)` pairs.
pub fn largest_remainder(pool: i128, weights: &[(i128, &str)]) -> Vec<i128> {
    let w: Vec<i128> = weights.iter().map(|(w, _)| *w).collect();
    largest_remainder_by(pool, &w, |i| weights[i].1)
}

#[derive(Default)]
struct Account {
    receivers: Vec<u32>,
    donors: Vec<u32>,
}

fn add_alloc(
    rows: &mut GroupedRows,
    row: u32,
    metric: CostMetric,
    amount: i128,
) -> Result<(), ArrowError> {
    let slot = rows.sums[row as usize].allocated.get_mut(metric);
    *slot = i64::try_from(i128::from(*slot) + amount).map_err(|_| {
        ArrowError::ComputeError(
            "an allocated amount is beyond the range the layers hold exactly".into(),
        )
    })?;
    Ok(())
}

/// Receivers' line item ids, in segments (one per file) so that merging files never
/// copies them.
#[derive(Debug, Clone, Default)]
pub struct ReceiverIds {
    segments: Vec<StringArray>,
    starts: Vec<usize>,
    len: usize,
}

impl ReceiverIds {
    /// Appends the ids of the next receivers.
    pub fn push(&mut self, ids: StringArray) {
        self.starts.push(self.len);
        self.len += ids.len();
        self.segments.push(ids);
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[StringArray] {
        &self.segments
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id of receiver `i` (empty past the end).
    pub fn value(&self, i: usize) -> &str {
        let s = self.starts.partition_point(|start| *start <= i);
        match s
            .checked_sub(1)
            .and_then(|s| Some((self.segments.get(s)?, self.starts[s])))
        {
            Some((segment, start)) if i - start < segment.len() => segment.value(i - start),
            _ => "",
        }
    }
}

/// The line items of one period that take part in allocation.
#[derive(Debug, Clone, Copy)]
pub struct Participants<'a> {
    /// Attributed `Usage` line items.
    pub receivers: &'a [Receiver],
    /// The receivers' line item ids, aligned with `receivers` (ties go to the smaller).
    pub ids: &'a ReceiverIds,
    /// Line items without a caller.
    pub donors: &'a [Donor],
}

impl Participants<'_> {
    fn weight(&self, receivers: &[u32], metric: CostMetric) -> i128 {
        receivers
            .iter()
            .map(|&r| i128::from(self.receivers[r as usize].cost.get(metric)))
            .sum()
    }

    fn pool(&self, donors: &[u32], metric: CostMetric) -> i128 {
        donors
            .iter()
            .map(|&d| i128::from(self.donors[d as usize].cost.get(metric)))
            .sum()
    }

    /// Shares `pool` over `receivers` into their rows, and takes the donors' cost out
    /// of theirs.
    fn share(
        &self,
        rows: &mut GroupedRows,
        metric: CostMetric,
        pool: i128,
        receivers: &[u32],
        donors: &[u32],
    ) -> Result<(), ArrowError> {
        let weights: Vec<i128> = receivers
            .iter()
            .map(|&r| i128::from(self.receivers[r as usize].cost.get(metric)))
            .collect();
        let shares =
            largest_remainder_by(pool, &weights, |i| self.ids.value(receivers[i] as usize));
        for (&r, s) in receivers.iter().zip(shares) {
            add_alloc(rows, self.receivers[r as usize].row, metric, s)?;
        }
        for &d in donors {
            let donor = &self.donors[d as usize];
            add_alloc(rows, donor.row, metric, -i128::from(donor.cost.get(metric)))?;
        }
        Ok(())
    }
}

/// Shares every pool of one period into the `allocated` sums of `rows` (the fine rows
/// the participants were summed into) and reports where the spend without a caller
/// went; `dicts` names the ids of the rows' keys.
pub fn apply(
    rows: &mut GroupedRows,
    participants: Participants<'_>,
    dicts: &Dictionaries,
) -> Result<Vec<AllocationSummary>, ArrowError> {
    // (payer, currency) -> account -> receivers and donors, ordered by name.
    let mut scopes: BTreeMap<(&str, &str), BTreeMap<&str, Account>> = BTreeMap::new();
    let scope = |row: u32| {
        let key = rows.keys[row as usize];
        let payer = dicts.accounts.value(key.payer);
        let currency = dicts.currencies.value(key.currency);
        let account = dicts.accounts.value(key.account);
        (payer, currency, account)
    };
    let mut placed = Vec::with_capacity(participants.receivers.len() + participants.donors.len());
    for (i, r) in participants.receivers.iter().enumerate() {
        placed.push((scope(r.row), true, i as u32));
    }
    for (i, d) in participants.donors.iter().enumerate() {
        placed.push((scope(d.row), false, i as u32));
    }
    for ((payer, currency, account), is_receiver, i) in placed {
        let entry = scopes
            .entry((payer, currency))
            .or_default()
            .entry(account)
            .or_default();
        if is_receiver {
            entry.receivers.push(i);
        } else {
            entry.donors.push(i);
        }
    }

    let mut summaries = Vec::new();
    for ((_, currency), accounts) in &scopes {
        for metric in METRICS {
            let mut summary = AllocationSummary {
                currency: (*currency).to_owned(),
                metric,
                within_account: 0,
                across_payer: 0,
                unattributed: 0,
            };
            let mut payer_donors: Vec<u32> = Vec::new();
            for account in accounts.values() {
                let pool = participants.pool(&account.donors, metric);
                if participants.weight(&account.receivers, metric) > 0 {
                    participants.share(rows, metric, pool, &account.receivers, &account.donors)?;
                    summary.within_account += pool;
                } else {
                    payer_donors.extend(&account.donors);
                }
            }
            let pool = participants.pool(&payer_donors, metric);
            let all: Vec<u32> = accounts
                .values()
                .flat_map(|a| a.receivers.iter().copied())
                .collect();
            if participants.weight(&all, metric) > 0 {
                participants.share(rows, metric, pool, &all, &payer_donors)?;
                summary.across_payer += pool;
            } else {
                summary.unattributed += pool;
            }
            summaries.push(summary);
        }
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
        // Equal ids: the earlier position wins, as a stable sort would give.
        assert_eq!(largest_remainder(1, &[(1, "a"), (1, "a")]), vec![1, 0]);
    }

    #[test]
    fn selection_matches_a_full_sort() {
        // Many receivers, many ties: the selected set equals the first `left` of a
        // stable sort by (remainder desc, id asc).
        let ids: Vec<String> = (0..500)
            .map(|i| format!("id-{:03}", (i * 7919) % 500))
            .collect();
        let weights: Vec<(i128, &str)> = (0..500)
            .map(|i| (i128::from((i % 13) as u8) + 1, ids[i].as_str()))
            .collect();
        let pool = 1_000_003;
        let shares = largest_remainder(pool, &weights);
        assert_eq!(shares.iter().sum::<i128>(), pool);
        let total: i128 = weights.iter().map(|(w, _)| w).sum();
        let mut order: Vec<usize> = (0..500).collect();
        order.sort_by(|&a, &b| {
            ((pool * weights[b].0).rem_euclid(total))
                .cmp(&(pool * weights[a].0).rem_euclid(total))
                .then_with(|| weights[a].1.cmp(weights[b].1))
        });
        let floors: Vec<i128> = weights
            .iter()
            .map(|(w, _)| (pool * w).div_euclid(total))
            .collect();
        let left = (pool - floors.iter().sum::<i128>()) as usize;
        let mut expected = floors;
        for &i in order.iter().take(left) {
            expected[i] += 1;
        }
        assert_eq!(shares, expected);
    }
}
