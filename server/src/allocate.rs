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

use rustc_hash::FxHashMap;

use datafusion::arrow::{
    array::{Array, StringArray},
    error::ArrowError,
};

use crate::{
    layers::{Amounts, GroupedRows, METRICS, dict::Dictionaries},
    query::CostMetric,
    rules::money::Amount,
};

/// Where one period's spend without a caller went, for one currency and metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationSummary {
    /// Currency code.
    pub currency: String,
    /// Cost metric.
    pub metric: CostMetric,
    /// Shared over callers of the same usage account.
    pub within_account: Amount,
    /// Shared over the payer's callers.
    pub across_payer: Amount,
    /// Left unattributed.
    pub unattributed: Amount,
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
        let (q, r) = floor_div(pool * w, total);
        shares.push(q);
        remainders.push(r);
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

/// `(floor(n / d), n mod d)` for `d > 0`. A 128-bit division is slow and this runs once
/// per receiver and metric, so the quotient is estimated in floating point and corrected
/// with exact integer arithmetic; beyond 2^50 the estimate may be far off, and the plain
/// division is used.
fn floor_div(n: i128, d: i128) -> (i128, i128) {
    let estimate = (n as f64 / d as f64).floor();
    if estimate.abs() < (1u64 << 50) as f64 {
        let mut q = estimate as i128;
        let mut r = n - q * d;
        while r < 0 {
            q -= 1;
            r += d;
        }
        while r >= d {
            q += 1;
            r -= d;
        }
        (q, r)
    } else {
        (n.div_euclid(d), n.rem_euclid(d))
    }
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
        allocated: &mut [i128],
        metric: CostMetric,
        pool: i128,
        receivers: &[u32],
        donors: &[u32],
    ) {
        let weights: Vec<i128> = receivers
            .iter()
            .map(|&r| i128::from(self.receivers[r as usize].cost.get(metric)))
            .collect();
        let shares =
            largest_remainder_by(pool, &weights, |i| self.ids.value(receivers[i] as usize));
        for (&r, s) in receivers.iter().zip(shares) {
            allocated[self.receivers[r as usize].row as usize] += s;
        }
        for &d in donors {
            let donor = &self.donors[d as usize];
            allocated[donor.row as usize] -= i128::from(donor.cost.get(metric));
        }
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
    // Grouped by ids first (cheap), then ordered by name for stable summaries.
    let mut by_ids: FxHashMap<(u32, u32, u32), Account> = FxHashMap::default();
    let scope = |row: u32| {
        let key = rows.keys[row as usize];
        (key.payer, key.currency, key.account)
    };
    for (i, r) in participants.receivers.iter().enumerate() {
        by_ids
            .entry(scope(r.row))
            .or_default()
            .receivers
            .push(i as u32);
    }
    for (i, d) in participants.donors.iter().enumerate() {
        by_ids
            .entry(scope(d.row))
            .or_default()
            .donors
            .push(i as u32);
    }
    // (payer, currency) -> account -> receivers and donors, ordered by name.
    let mut scopes: BTreeMap<(&str, &str), BTreeMap<&str, Account>> = BTreeMap::new();
    for ((payer, currency, account), members) in by_ids {
        scopes
            .entry((
                dicts.accounts.value(payer),
                dicts.currencies.value(currency),
            ))
            .or_default()
            .insert(dicts.accounts.value(account), members);
    }

    // One metric's shares, summed per row, and its summary per scope: metrics are
    // independent, so they are computed on two threads.
    let scopes: Vec<(&str, Vec<u32>, Vec<&Account>)> = scopes
        .iter()
        .map(|((_, currency), accounts)| {
            let all = accounts
                .values()
                .flat_map(|a| a.receivers.iter().copied())
                .collect();
            (*currency, all, accounts.values().collect())
        })
        .collect();
    let rows_len = rows.len();
    let one_metric = |metric: CostMetric| -> (Vec<i128>, Vec<AllocationSummary>) {
        let mut allocated = vec![0i128; rows_len];
        let mut summaries = Vec::with_capacity(scopes.len());
        for (currency, all, accounts) in &scopes {
            let mut summary = AllocationSummary {
                currency: (*currency).to_owned(),
                metric,
                within_account: Amount::ZERO,
                across_payer: Amount::ZERO,
                unattributed: Amount::ZERO,
            };
            let mut payer_donors: Vec<u32> = Vec::new();
            for account in accounts {
                let pool = participants.pool(&account.donors, metric);
                if participants.weight(&account.receivers, metric) > 0 {
                    // Nothing to share, nothing to take out: every share would be zero.
                    if pool != 0 || !account.donors.is_empty() {
                        participants.share(
                            &mut allocated,
                            metric,
                            pool,
                            &account.receivers,
                            &account.donors,
                        );
                    }
                    summary.within_account += Amount::from_scaled(pool);
                } else {
                    payer_donors.extend(&account.donors);
                }
            }
            if !payer_donors.is_empty() {
                let pool = participants.pool(&payer_donors, metric);
                if participants.weight(all, metric) > 0 {
                    participants.share(&mut allocated, metric, pool, all, &payer_donors);
                    summary.across_payer += Amount::from_scaled(pool);
                } else {
                    summary.unattributed += Amount::from_scaled(pool);
                }
            }
            summaries.push(summary);
        }
        (allocated, summaries)
    };
    let [first, second] = [[METRICS[0], METRICS[1]], [METRICS[2], METRICS[3]]];
    let results: Vec<(Vec<i128>, Vec<AllocationSummary>)> = std::thread::scope(|s| {
        let other = s.spawn(|| second.map(one_metric));
        let mine = first.map(one_metric);
        let mut all: Vec<_> = mine.into_iter().collect();
        if let Ok(theirs) = other.join() {
            all.extend(theirs);
        }
        all
    });
    if results.len() != METRICS.len() {
        return Err(ArrowError::ComputeError(
            "allocating a metric stopped".into(),
        ));
    }
    let mut summaries = Vec::with_capacity(scopes.len() * METRICS.len());
    for i in 0..scopes.len() {
        for (_, per_scope) in &results {
            summaries.push(per_scope[i].clone());
        }
    }
    for (metric, (allocated, _)) in METRICS.into_iter().zip(&results) {
        for (row, amount) in allocated.iter().enumerate() {
            if *amount != 0 {
                add_alloc(rows, row as u32, metric, *amount)?;
            }
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
    fn floor_division_is_exact() {
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..200_000 {
            let n = i128::from(rng.random::<i64>()) * i128::from(rng.random::<i32>());
            let d = i128::from(rng.random_range(1..i64::MAX));
            assert_eq!(
                floor_div(n, d),
                (n.div_euclid(d), n.rem_euclid(d)),
                "{n} / {d}"
            );
        }
        assert_eq!(floor_div(-7, 3), (-3, 2));
        assert_eq!(
            floor_div(i128::MAX / 2, 3),
            ((i128::MAX / 2).div_euclid(3), (i128::MAX / 2).rem_euclid(3))
        );
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
