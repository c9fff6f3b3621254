//! `SpendAnomalies`: the request checked and turned into a daily-series spec and
//! thresholds, the series asked of the planner (cached per snapshot like any answer,
//! so that later pages do not run it again), the anomalies found on the query pool, and
//! the page converted back.

use bedrock_attribution::v1 as pb;
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::{AttributionApi, admission, convert, deadline, fingerprint, notes};
use crate::{
    auth::caller_of,
    error::Error,
    query::{
        Dimension, Key,
        anomalies::{
            self, Anomaly, AnomalyKind, DEFAULT_BASELINE_DAYS, MAX_BASELINE_DAYS,
            MIN_BASELINE_DAYS, Thresholds,
        },
        page,
    },
    rules::money::{self, Amount},
    snapshot::Snapshot,
    telemetry::rpc::{record_rows, record_spec},
};

/// `min_factor` when the request leaves it empty.
pub const DEFAULT_MIN_FACTOR: &str = "3";
/// `min_robust_z` when the request leaves it unset.
pub const DEFAULT_MIN_ROBUST_Z: f64 = 3.5;
/// `min_excess` when the request leaves it empty.
pub const DEFAULT_MIN_EXCESS: &str = "1";
/// The largest `min_factor` accepted.
const MAX_FACTOR: i64 = 1_000_000;
/// Decimal places of `min_factor` accepted.
const FACTOR_PLACES: u32 = 6;
/// Longest decimal string accepted for `min_factor` and `min_excess`.
const MAX_DECIMAL_CHARS: usize = 64;

impl AttributionApi {
    /// Answers `SpendAnomalies` (see [`anomalies`]).
    pub(super) async fn find_anomalies(
        &self,
        request: Request<pb::SpendAnomaliesRequest>,
    ) -> Result<Response<pb::SpendAnomaliesResponse>, Status> {
        let r = request.get_ref();
        let dimension = dimension(r)?;
        let thresholds = thresholds(r)?;
        let spec = self.spec(
            caller_of(&request),
            r.time_range.as_ref(),
            r.filter.as_ref(),
            r.cost_metric,
            pb::Granularity::Daily.into(),
            vec![dimension.clone()],
        )?;
        whole_days(&spec)?;
        record_spec(&spec);
        let series_spec = anomalies::series_spec(&spec, thresholds.baseline_days)?;
        let fp = fingerprint("SpendAnomalies", r, &spec.scope, |m| {
            m.page_token.clear();
            m.page_size = 0;
        });
        let deadline = tokio::time::Instant::now()
            + deadline::effective(request.metadata(), self.query_timeout);
        let snapshot = self.catalog.require_snapshot()?;
        let caller = admission::caller_key(request.extensions());
        let page =
            self.page_keys
                .request(r.page_size, &r.page_token, snapshot.version, fp, &caller)?;
        let series = self
            .answer(&request, &snapshot, &series_spec, fp)
            .await
            .map_err(|e| match e {
                // The planner's advice (a coarser granularity, fewer dimensions) does
                // not apply to a daily series of one dimension.
                Error::TooLarge { .. } => Error::TooLarge {
                    reason: format!(
                        "the daily spend has more than {} group-days over the range and the baseline days before it; narrow the time range or the filter, or use fewer baseline days",
                        crate::query::answer::MAX_GROUPS
                    ),
                },
                other => other,
            })?;
        let (first, end) = (
            anomalies::day_of(spec.start.timestamp_micros()),
            anomalies::day_of(spec.end.timestamp_micros()),
        );
        // A grouped tag key no line item carries, said before the series moves on.
        let tag_notes = self
            .tag_key_notes(&request, &snapshot, &series_spec, &series)
            .await?;
        let data_first_day = first_day_of_data(&snapshot);
        // Finding them is CPU work over the whole series: on the query pool, within the
        // request's deadline, like the query itself.
        let anomalies::Found {
            anomalies: found,
            without_baseline,
        } = self
            .pool
            .run(deadline, async move {
                Ok(anomalies::find(&series, first, end, data_first_day, &thresholds).await)
            })
            .await?;
        let items: Vec<pb::SpendAnomaly> = page::slice(&found, page)
            .iter()
            .map(|a| anomaly(a, &dimension))
            .collect();
        record_rows("SpendAnomalies", items.len());
        let mut notes = notes(&snapshot, &series_spec);
        notes.extend(tag_notes);
        notes.extend(partial_day_note(&snapshot, first, end));
        notes.extend(no_baseline_note(without_baseline, data_first_day));
        Ok(Response::new(pb::SpendAnomaliesResponse {
            anomalies: items,
            next_page_token: self.page_keys.next_token(
                page,
                found.len(),
                snapshot.version,
                fp,
                &caller,
            ),
            info: Some(pb::AnswerInfo {
                snapshot_version: snapshot.version,
                notes,
            }),
        }))
    }
}

/// The group dimension: principal (with its grouping), tag (with its key) or model.
fn dimension(r: &pb::SpendAnomaliesRequest) -> Result<Dimension, Error> {
    let known = "DIMENSION_PRINCIPAL, DIMENSION_TAG or DIMENSION_MODEL";
    match pb::Dimension::try_from(r.dimension) {
        Ok(pb::Dimension::Principal) => Ok(Dimension::Principal(convert::grouping(
            "principal_grouping",
            r.principal_grouping,
        )?)),
        Ok(pb::Dimension::Tag) => Ok(Dimension::Tag(convert::tag_key("tag_key", &r.tag_key)?)),
        Ok(pb::Dimension::Model) => Ok(Dimension::Model),
        Ok(pb::Dimension::Unspecified) => {
            Err(Error::invalid("dimension", format!("is required: {known}")))
        }
        Ok(other) => Err(Error::invalid(
            "dimension",
            format!(
                "{} cannot group anomalies; use {known}",
                other.as_str_name()
            ),
        )),
        Err(_) => Err(Error::invalid(
            "dimension",
            format!("{} is not a known value; use {known}", r.dimension),
        )),
    }
}

/// The examined range is whole UTC days: a day's spend is compared with whole days.
fn whole_days(spec: &crate::query::QuerySpec) -> Result<(), Error> {
    for (field, t) in [
        ("time_range.start", spec.start),
        ("time_range.end", spec.end),
    ] {
        if t.timestamp_micros() % 86_400_000_000 != 0 || t.timestamp_subsec_nanos() != 0 {
            return Err(Error::invalid(
                field,
                format!(
                    "{} is not the start of a UTC day; anomalies are found per whole day, e.g. \"2026-07-01T00:00:00Z\"",
                    t.to_rfc3339()
                ),
            ));
        }
    }
    Ok(())
}

/// The thresholds, defaults filled in.
fn thresholds(r: &pb::SpendAnomaliesRequest) -> Result<Thresholds, Error> {
    let baseline_days = match r.baseline_days {
        0 => DEFAULT_BASELINE_DAYS,
        n => u32::try_from(n)
            .ok()
            .filter(|n| (MIN_BASELINE_DAYS..=MAX_BASELINE_DAYS).contains(n))
            .ok_or_else(|| {
                Error::invalid(
                    "baseline_days",
                    format!(
                        "{n} is out of bounds; use {MIN_BASELINE_DAYS} to {MAX_BASELINE_DAYS} days (0 for the default {DEFAULT_BASELINE_DAYS})"
                    ),
                )
            })?,
    };
    let min_factor = decimal("min_factor", &r.min_factor, DEFAULT_MIN_FACTOR)?;
    if min_factor < Decimal::ONE
        || min_factor > Decimal::from(MAX_FACTOR)
        || min_factor.scale() > FACTOR_PLACES
    {
        return Err(Error::invalid(
            "min_factor",
            format!(
                "{min_factor} is out of bounds; use a decimal from 1 (no factor test) to {MAX_FACTOR} with at most {FACTOR_PLACES} places, e.g. \"3\" or \"2.5\""
            ),
        ));
    }
    let min_robust_z = r.min_robust_z.unwrap_or(DEFAULT_MIN_ROBUST_Z);
    if !min_robust_z.is_finite() || min_robust_z < 0.0 {
        return Err(Error::invalid(
            "min_robust_z",
            format!(
                "{min_robust_z} is out of bounds; use a finite number of at least 0 (0: no z-score test), e.g. 3.5"
            ),
        ));
    }
    let min_excess = decimal("min_excess", &r.min_excess, DEFAULT_MIN_EXCESS)?;
    if min_excess.is_sign_negative() || min_excess.scale() > money::SCALE {
        return Err(Error::invalid(
            "min_excess",
            format!(
                "{min_excess} is out of bounds; use an amount of at least 0 with at most {} decimal places, e.g. \"1\" or \"25.50\"",
                money::SCALE
            ),
        ));
    }
    Ok(Thresholds {
        baseline_days,
        min_factor,
        min_robust_z,
        min_excess: money::to_scaled(min_excess),
    })
}

/// A plain decimal string (`12`, `2.5`, `-1`: digits, at most one point with digits
/// on both sides), or `default` when empty.
fn decimal(field: &'static str, text: &str, default: &str) -> Result<Decimal, Error> {
    let text = if text.is_empty() { default } else { text };
    let body = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let plain = text.len() <= MAX_DECIMAL_CHARS && digits(int) && frac.is_none_or(digits);
    plain
        .then(|| text.parse::<Decimal>().ok())
        .flatten()
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "{:?} is not a plain decimal number, e.g. \"3\" or \"2.5\"",
                    text.chars().take(40).collect::<String>()
                ),
            )
        })
}

/// A note when the examined days include the newest day with data: CUR rows arrive up
/// to a day late, so that day's spend is usually partial (and lower, never a spike it
/// is not).
fn partial_day_note(snapshot: &Snapshot, first: i64, end: i64) -> Option<String> {
    let newest = snapshot
        .periods
        .iter()
        .filter_map(|p| p.usage_span.map(|(_, hi)| hi))
        .max()?;
    let day = anomalies::day_of(newest);
    ((first..end).contains(&day)).then(|| {
        let date = chrono::DateTime::from_timestamp_micros(newest)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        format!(
            "{date} is the last day with data and may be partial: CUR line items arrive up to a day late"
        )
    })
}

/// The first day with any line item in the snapshot (days since the epoch): a window
/// that starts before it is not covered by data. Without data, no day is.
fn first_day_of_data(snapshot: &Snapshot) -> i64 {
    snapshot
        .periods
        .iter()
        .filter_map(|p| p.usage_span.map(|(lo, _)| lo))
        .min()
        .map_or(i64::MAX, anomalies::day_of)
}

/// A note counting the groups that spend on examined days whose baseline window starts
/// before the first day of data and holds none of their line items: they have no
/// baseline yet, which is not an anomaly.
fn no_baseline_note(groups: usize, data_first_day: i64) -> Option<String> {
    (groups > 0).then(|| {
        let date = chrono::DateTime::from_timestamp(data_first_day * 86_400, 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let (has, its) = if groups == 1 {
            ("group has", "its")
        } else {
            ("groups have", "their")
        };
        format!(
            "{groups} {has} no baseline yet: on examined days {its} baseline window starts before the first day of data ({date}) and holds none of {its} line items, which is neither new nor a spike"
        )
    })
}

/// An anomaly as its proto message, the group in the field of `dimension`.
fn anomaly(a: &Anomaly, dimension: &Dimension) -> pb::SpendAnomaly {
    let text = a.key.as_ref().and_then(Key::text);
    let mut out = pb::SpendAnomaly {
        day: Some(prost_types::Timestamp {
            seconds: a.day * 86_400,
            nanos: 0,
        }),
        kind: match a.kind {
            AnomalyKind::Spike => pb::AnomalyKind::Spike,
            AnomalyKind::New => pb::AnomalyKind::New,
        }
        .into(),
        observed: Some(convert::money(&a.currency, Amount::from_scaled(a.observed))),
        baseline: Some(convert::money(&a.currency, Amount::from_scaled(a.baseline))),
        median_absolute_deviation: Some(convert::money(&a.currency, Amount::from_scaled(a.mad))),
        excess: Some(convert::money(&a.currency, Amount::from_scaled(a.excess()))),
        robust_z: a.robust_z,
        factor: a.factor,
        baseline_days_counted: i32::try_from(a.counted_days).unwrap_or(i32::MAX),
        line_items: a.line_items,
        ..Default::default()
    };
    match dimension {
        Dimension::Principal(grouping) => {
            out.principal = Some(convert::principal(text, *grouping));
        }
        Dimension::Tag(key) => {
            out.tag = Some(pb::TagValue {
                key: key.clone(),
                value: text.unwrap_or_default().to_owned(),
                untagged: a.key.is_none(),
            });
        }
        _ => out.model = text.unwrap_or_default().to_owned(),
    }
    out
}
