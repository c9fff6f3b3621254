//! The state of the data as `DataStatus` and `Refresh` report it: per period, what is
//! served, how fresh it is and what went wrong.

use bedrock_attribution::v1 as pb;
use chrono::{DateTime, Utc};

use super::convert;
use crate::{
    period::BillingPeriod,
    snapshot::{Impact, PeriodState, Problem, Snapshot},
};

/// A problem for the wire.
pub fn problem(p: &Problem) -> pb::Problem {
    pb::Problem {
        at: Some(convert::time(p.at)),
        source: p.source.clone(),
        billing_period: p.period.map(|p| p.to_string()).unwrap_or_default(),
        file: p.file.clone(),
        message: p.message.clone(),
        since: Some(convert::time(p.since)),
        impact: p.impact.name().to_owned(),
    }
}

/// Every period of the snapshot: those served (current or stale), then those never read
/// successfully, each ordered by source and period.
pub fn periods(snapshot: &Snapshot, now: DateTime<Utc>) -> Vec<pb::PeriodStatus> {
    let problem_of = |source: &str, period: BillingPeriod| {
        snapshot
            .problems
            .iter()
            .find(|p| {
                p.impact != Impact::Corrected
                    && p.source == source
                    && p.period.is_none_or(|q| q == period)
            })
            .map(|p| format!("{}: {}", p.file, p.message))
            .unwrap_or_default()
    };
    let mut out: Vec<pb::PeriodStatus> = snapshot
        .periods
        .iter()
        .zip(&snapshot.checks)
        .map(|(p, check)| {
            let stale = check.state == PeriodState::Stale;
            pb::PeriodStatus {
                source: p.source.clone(),
                billing_period: p.period.to_string(),
                file_list: p.origin.name().to_owned(),
                files: p.files as i64,
                rows_read: p.rows_read as i64,
                bedrock_line_items: p.line_items as i64,
                bytes: p.bytes as i64,
                last_modified: p.last_modified.map(convert::time),
                missing_columns: p.missing_columns.clone(),
                execution: p.execution.clone().unwrap_or_default(),
                state: if stale { "stale" } else { "current" }.to_owned(),
                read_at: Some(convert::time(p.read_at)),
                last_refresh: Some(convert::time(check.checked_at)),
                freshness_age_seconds: p
                    .last_modified
                    .map_or(0, |t| (now - t).num_seconds().max(0)),
                layers_from: if p.from_cache { "cache" } else { "export" }.to_owned(),
                fine_rows: p.layers.fine.rows() as i64,
                daily_rows: p.layers.daily.rows() as i64,
                monthly_rows: p.layers.monthly.rows() as i64,
                layer_bytes: p.layers.bytes() as i64,
                problem: if stale {
                    problem_of(&p.source, p.period)
                } else {
                    String::new()
                },
            }
        })
        .collect();
    out.extend(
        snapshot
            .unavailable
            .iter()
            .filter_map(|u| Some((u, u.period?)))
            .map(|(u, period)| pb::PeriodStatus {
                source: u.source.clone(),
                billing_period: period.to_string(),
                state: "unavailable".to_owned(),
                problem: format!("{}: {}", u.file, u.message),
                ..Default::default()
            }),
    );
    out
}

/// Whether any period is stale or unavailable, or any export could not be listed.
pub fn degraded(snapshot: &Snapshot) -> bool {
    !snapshot.unavailable.is_empty()
        || snapshot
            .checks
            .iter()
            .any(|c| c.state == PeriodState::Stale)
}
