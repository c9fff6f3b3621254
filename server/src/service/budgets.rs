//! The budget RPCs: validate, check the caller's rights, call the budget store or run
//! the spend plans, convert back. Admins (and every caller without access control) see
//! and manage every budget; other callers only the budgets they created, and every
//! spend figure they get is computed within their scope.

use std::{sync::Arc, time::Duration};

use bedrock_attribution::v1 as pb;
use chrono::{DateTime, TimeZone, Utc};
use tonic::{Request, Response, Status};

use super::{AttributionApi, admission, admit, convert, deadline};
use crate::{
    auth::{Caller, caller_of},
    budgets::{
        self, Budget, Draft, Fields, Origin,
        forecast::{self, HOUR},
        spend,
        store::BudgetProblem,
    },
    error::Error,
    period::BillingPeriod,
    rules::money::{self, Amount},
    snapshot::Snapshot,
    telemetry::{self, rpc::record_rows},
};

/// Whether `caller` may see `budget`.
pub(super) fn visible(caller: Option<&Caller>, budget: &Budget) -> bool {
    match caller {
        None => true,
        Some(c) => c.admin || budget.owner.as_deref() == Some(c.name.as_str()),
    }
}

/// A budget for the wire.
fn budget(b: &Budget) -> pb::Budget {
    let s = &b.scope;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    pb::Budget {
        id: b.id.clone(),
        name: b.name.clone(),
        scope: Some(pb::BudgetScope {
            tag: s.tag.as_ref().map(|(key, value)| pb::BudgetTag {
                key: key.clone(),
                value: value.clone(),
            }),
            principal_arn: text(&s.principal_arn),
            role_arn: text(&s.role_arn),
            account_id: s.account_id.map(|a| a.to_string()).unwrap_or_default(),
            model: text(&s.model),
        }),
        monthly_amount: Some(convert::money(
            &b.currency,
            Amount::from_scaled(b.amount.units),
        )),
        thresholds: b.thresholds.iter().map(|t| t.text.clone()).collect(),
        owner: b.owner.clone().unwrap_or_default(),
        origin: match b.origin {
            Origin::File => pb::BudgetOrigin::File,
            Origin::Api => pb::BudgetOrigin::Api,
        }
        .into(),
        created_at: b.created_at.map(convert::time),
    }
}

/// A budgets problem as `DataStatus` lists it.
pub(super) fn problem(p: &BudgetProblem) -> pb::Problem {
    pb::Problem {
        at: Some(convert::time(p.at)),
        since: Some(convert::time(p.since)),
        source: p.source.to_owned(),
        file: p.file.clone(),
        message: p.message.clone(),
        impact: p.impact.to_owned(),
        ..Default::default()
    }
}

/// The draft of a CreateBudget request; the amount from `exact`, else `units`/`nanos`.
fn draft(r: &pb::CreateBudgetRequest) -> Result<Draft, Error> {
    let scope = r.scope.clone().unwrap_or_default();
    let m = r.monthly_amount.as_ref().ok_or_else(|| {
        Error::invalid(
            "monthly_amount",
            "is required: {\"currency_code\": \"USD\", \"exact\": \"1500\"}",
        )
    })?;
    let amount = if m.exact.is_empty() {
        match (m.units, m.nanos) {
            (u, n) if u < 0 || n < 0 => "-1".to_owned(),
            (u, 0) => u.to_string(),
            (u, n) => format!("{u}.{n:09}"),
        }
    } else {
        m.exact.clone()
    };
    Ok(Draft {
        name: r.name.clone(),
        tag: scope.tag.map(|t| (t.key, t.value)),
        principal_arn: scope.principal_arn,
        role_arn: scope.role_arn,
        account_id: scope.account_id,
        model: scope.model,
        amount,
        currency: m.currency_code.clone(),
        thresholds: r.thresholds.clone(),
    })
}

/// A budget scope outside a caller's scope, refused with the budget's field names. A
/// role is held to the rule of an exact caller (see [`crate::auth::Scope::allows_role`]).
fn check_scope(caller: &Caller, scope: &budgets::BudgetScope) -> Result<(), Error> {
    if let Some(role) = &scope.role_arn
        && !caller.scope.allows_role(role)
    {
        return Err(Error::PermissionDenied {
            what: "scope.role_arn".into(),
            reason: format!(
                "role {role:?} is named (neither the role nor every session of it starts with one of the scope's caller prefixes), outside the scope of caller {}",
                caller.name
            ),
        });
    }
    caller
        .scope
        .check(&scope.filter(), &caller.name)
        .map_err(|e| match e {
            Error::PermissionDenied { what, reason } => Error::PermissionDenied {
                what: match what.as_str() {
                    "filter.account_ids" => "scope.account_id",
                    "filter.principals" => "scope.principal_arn",
                    "filter.tags" => "scope.tag",
                    other => other,
                }
                .to_owned(),
                reason,
            },
            other => other,
        })
}

/// Which month and end a status is computed for; unset fields take BudgetStatus's
/// defaults (the month of `as_of`; the end of the newest usage hour in the data).
#[derive(Debug, Clone, Copy)]
pub(super) struct When<'a> {
    /// `[start, end)` of the month asked for (µs).
    pub(super) month: Option<(i64, i64)>,
    /// The month as asked, for messages.
    pub(super) month_text: &'a str,
    /// End of the spend counted (µs), on a whole hour.
    pub(super) as_of: Option<i64>,
}

/// `YYYY-MM` as `[start, end)` in µs.
fn month(text: &str) -> Result<(i64, i64), Error> {
    BillingPeriod::parse(text)
        .map(BillingPeriod::span_micros)
        .ok_or_else(|| {
            Error::invalid(
                "month",
                format!(
                    "{:?} is not a month: use YYYY-MM, e.g. \"2026-07\"",
                    text.chars().take(20).collect::<String>()
                ),
            )
        })
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn at(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// The month `[start, end)` holding the instant `us`.
fn month_of(us: i64) -> (i64, i64) {
    BillingPeriod::containing(us).map_or((us, us), BillingPeriod::span_micros)
}

/// The first and last usage start of the snapshot's served billing periods (µs), each
/// period's span cut to its own month: the default month and `as_of` of BudgetStatus and
/// WatchBudgets follow the newest hour, and must never move to a month no served period
/// covers (one line item dated 9999-12-31 in a July file would otherwise make the
/// default month 9999-12, where every budget has spent nothing).
pub(super) fn data_span(snapshot: &Snapshot) -> Option<(i64, i64)> {
    served_span(snapshot.periods.iter().map(|p| (p.period, p.usage_span)))
}

/// [`data_span`] over `(period, usage span)` pairs; a period whose usage lies wholly
/// outside its month adds nothing.
fn served_span(
    periods: impl IntoIterator<Item = (BillingPeriod, Option<(i64, i64)>)>,
) -> Option<(i64, i64)> {
    periods
        .into_iter()
        .filter_map(|(period, span)| {
            let (lo, hi) = span?;
            let (start, end) = period.span_micros();
            let (lo, hi) = (lo.max(start), hi.min(end - 1));
            (lo <= hi).then_some((lo, hi))
        })
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

impl AttributionApi {
    pub(super) async fn create_budget_rpc(
        &self,
        request: Request<pb::CreateBudgetRequest>,
    ) -> Result<Response<pb::CreateBudgetResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.get_ref();
        let definition = budgets::validate(&draft(r)?, Fields::RPC)?;
        if let Some(m) = &r.monthly_amount
            && !m.exact.is_empty()
            && (m.units, m.nanos) != (0, 0)
            && money::units_and_nanos(definition.amount.units) != (m.units, m.nanos)
        {
            return Err(Error::invalid(
                "monthly_amount",
                "exact and units/nanos disagree; send exact alone",
            )
            .into());
        }
        if let Some(c) = caller
            && !c.admin
        {
            check_scope(c, &definition.scope)?;
        }
        let owner = caller.map(|c| c.name.clone());
        // Admins are bounded by the server-wide limit only; without access control
        // callers cannot be told apart.
        let quota = caller.filter(|c| !c.admin).map(|_| self.budget_quota);
        let created = self.budgets.create(definition, owner, quota).await?;
        record_rows("CreateBudget", 1);
        Ok(Response::new(pb::CreateBudgetResponse {
            budget: Some(budget(&created)),
        }))
    }

    pub(super) async fn list_budgets_rpc(
        &self,
        request: Request<pb::ListBudgetsRequest>,
    ) -> Result<Response<pb::ListBudgetsResponse>, Status> {
        let caller = caller_of(&request);
        let budgets: Vec<pb::Budget> = self
            .budgets
            .all()
            .iter()
            .filter(|b| visible(caller, b))
            .map(|b| budget(b))
            .collect();
        record_rows("ListBudgets", budgets.len());
        Ok(Response::new(pb::ListBudgetsResponse { budgets }))
    }

    pub(super) async fn delete_budget_rpc(
        &self,
        request: Request<pb::DeleteBudgetRequest>,
    ) -> Result<Response<pb::DeleteBudgetResponse>, Status> {
        let caller = caller_of(&request);
        let id = &request.get_ref().id;
        if !budgets::valid_id(id) {
            return Err(Error::invalid(
                "id",
                "must be a budget id as ListBudgets returns it (1 to 64 letters, digits, '-', '_' or '.'), e.g. \"b-0123456789abcdef\"",
            )
            .into());
        }
        let caller = caller.cloned();
        self.budgets
            .delete(id, move |b| visible(caller.as_ref(), b))
            .await?;
        record_rows("DeleteBudget", 1);
        Ok(Response::new(pb::DeleteBudgetResponse {}))
    }

    pub(super) async fn budget_status_rpc(
        &self,
        request: Request<pb::BudgetStatusRequest>,
    ) -> Result<Response<pb::BudgetStatusResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.get_ref();
        let month = (!r.month.is_empty()).then(|| month(&r.month)).transpose()?;
        let as_of = match &r.as_of {
            None => None,
            Some(t) => {
                let t = convert::timestamp("as_of", Some(t))?;
                if micros(t).rem_euclid(HOUR) != 0 {
                    return Err(Error::invalid(
                        "as_of",
                        format!(
                            "{} is not on a whole hour; CUR usage is hourly, e.g. \"2026-07-20T00:00:00Z\"",
                            t.to_rfc3339()
                        ),
                    )
                    .into());
                }
                Some(micros(t))
            }
        };
        if r.budget_ids.len() > budgets::MAX_BUDGETS {
            return Err(Error::invalid(
                "budget_ids",
                format!(
                    "has {} ids; at most {}",
                    r.budget_ids.len(),
                    budgets::MAX_BUDGETS
                ),
            )
            .into());
        }
        let snapshot = self.catalog.require_snapshot()?;
        let chosen = self.chosen(caller, &r.budget_ids)?;
        let deadline = deadline::effective(request.metadata(), self.query_timeout);
        let caller_key = admission::caller_key(request.extensions());
        let answer = self
            .statuses(
                caller,
                &caller_key,
                deadline,
                &snapshot,
                When {
                    month,
                    month_text: &r.month,
                    as_of,
                },
                &chosen,
            )
            .await?;
        record_rows("BudgetStatus", answer.budgets.len());
        Ok(Response::new(answer))
    }

    /// The budgets of `ids` (all visible to `caller` when empty), ordered by id; an
    /// id the caller cannot see is NOT_FOUND, naming its place in `budget_ids`.
    pub(super) fn chosen(
        &self,
        caller: Option<&Caller>,
        ids: &[String],
    ) -> Result<Vec<Arc<Budget>>, Error> {
        let visible_budgets: Vec<Arc<Budget>> = self
            .budgets
            .all()
            .into_iter()
            .filter(|b| visible(caller, b))
            .collect();
        let chosen = if ids.is_empty() {
            visible_budgets
        } else {
            let mut chosen = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let Some(b) = visible_budgets.iter().find(|b| &b.id == id) else {
                    return Err(Error::NotFound {
                        what: format!(
                            "budget_ids[{i}]: budget {:?}",
                            id.chars().take(64).collect::<String>()
                        ),
                        hint: "ListBudgets lists the budgets you may see".into(),
                    });
                };
                if !chosen.iter().any(|c: &Arc<Budget>| c.id == b.id) {
                    chosen.push(b.clone());
                }
            }
            chosen.sort_by(|a, b| a.id.cmp(&b.id));
            chosen
        };
        Ok(chosen)
    }

    /// The status of `chosen` budgets on `snapshot`, computed within `caller`'s scope
    /// (BudgetStatus, and every WatchBudgets event); the spend plans wait for
    /// admission as `caller_key` and get at most `deadline`.
    pub(super) async fn statuses(
        &self,
        caller: Option<&Caller>,
        caller_key: &str,
        deadline: Duration,
        snapshot: &Arc<Snapshot>,
        when: When<'_>,
        chosen: &[Arc<Budget>],
    ) -> Result<pb::BudgetStatusResponse, Error> {
        let span = data_span(snapshot);
        let newest_hour = span.map(|(_, hi)| hi.div_euclid(HOUR) * HOUR);
        let data_end = newest_hour.map(|h| h + HOUR);
        let ((month_start, month_end), as_of) = match (when.month, when.as_of) {
            (Some((start, end)), Some(a)) => {
                if a < start || a > end {
                    return Err(Error::invalid(
                        "as_of",
                        format!(
                            "{} is outside month {}",
                            at(a).to_rfc3339(),
                            when.month_text
                        ),
                    ));
                }
                ((start, end), a)
            }
            (Some((start, end)), None) => {
                ((start, end), data_end.unwrap_or(start).clamp(start, end))
            }
            (None, Some(a)) => (month_of(a - 1), a),
            (None, None) => {
                let Some(end) = data_end else {
                    return Err(Error::Precondition {
                        reason: "the data holds no usage yet, so there is no newest hour to report as of; give month (YYYY-MM) or as_of".into(),
                    });
                };
                (month_of(end - 1), end)
            }
        };
        let scope = caller.map(|c| c.scope.clone()).unwrap_or_default();
        let (start, end) = (at(month_start), at(as_of));
        let planned: Vec<Option<crate::query::QuerySpec>> = chosen
            .iter()
            .map(|b| spend::spec(b, snapshot, start, end, &scope))
            .collect();
        let specs: Vec<crate::query::QuerySpec> = planned.iter().flatten().cloned().collect();
        let series = self.spend(caller_key, deadline, snapshot, specs).await?;
        let mut series = series.into_iter();

        let (data_first, data_end_or_start) = match (span, data_end) {
            (Some((lo, _)), Some(end)) => (lo, end),
            _ => (month_start, month_start),
        };
        let window = forecast::window(month_start, as_of, data_first, data_end_or_start);
        let remaining_hours = (month_end - as_of) / HOUR;
        let reports = chosen
            .iter()
            .zip(&planned)
            .map(|(b, planned)| {
                let daily = match planned {
                    Some(_) => series.next().unwrap_or_default(),
                    None => spend::Daily::new(),
                };
                report(b, planned.is_some(), &daily, window, remaining_hours)
            })
            .collect::<Vec<_>>();
        Ok(pb::BudgetStatusResponse {
            budgets: reports,
            month: at(month_start).format("%Y-%m").to_string(),
            as_of: Some(convert::time(at(as_of))),
            newest_usage_hour: newest_hour.map(|h| convert::time(at(h))),
            info: Some(pb::AnswerInfo {
                snapshot_version: snapshot.version,
                notes: Vec::new(),
            }),
        })
    }

    /// The daily spend of `specs` as one plan (per [`spend::BUDGETS_PER_PLAN`]), run on
    /// the query pool after admission, within `deadline`.
    async fn spend(
        &self,
        caller_key: &str,
        deadline: Duration,
        snapshot: &Arc<Snapshot>,
        specs: Vec<crate::query::QuerySpec>,
    ) -> Result<Vec<spend::Daily>, Error> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + deadline;
        let caller = caller_key.to_owned();
        let rows = spend::rows_to_scan(snapshot, &specs)?;
        let (admission, small_rows) = (self.admission.clone(), self.small_rows);
        let (ctx, snapshot) = (self.catalog.session().clone(), snapshot.clone());
        self.pool
            .run(deadline, async move {
                let _admitted = admit(&admission, small_rows, rows, &caller).await?;
                let (mut fine, mut daily, mut monthly) = (0, 0, 0);
                for used in specs
                    .iter()
                    .filter_map(|s| crate::query::plan::layer_use(&snapshot, s).ok())
                {
                    (fine, daily, monthly) =
                        (fine + used.fine, daily + used.daily, monthly + used.monthly);
                }
                telemetry::metrics::rows_scanned(rows, fine, daily, monthly);
                spend::daily(&ctx, &snapshot, &specs).await
            })
            .await
    }
}

/// One budget's report from its daily spend.
fn report(
    b: &Budget,
    matched: bool,
    daily: &spend::Daily,
    window: forecast::Window,
    remaining_hours: i64,
) -> pb::BudgetReport {
    let empty = Default::default();
    let days = daily.get(&b.currency).unwrap_or(&empty);
    let spend: i128 = days.values().sum();
    let window_spend: i128 = days.range(window.from..window.to).map(|(_, v)| *v).sum();
    let f = forecast::forecast(spend, window_spend, window.days, remaining_hours);
    let amount = b.amount.units;
    let status = if spend >= amount {
        pb::BudgetState::Over
    } else if f.month_end >= amount {
        pb::BudgetState::ForecastOver
    } else {
        pb::BudgetState::Ok
    };
    let reached = |value: i128| {
        b.thresholds
            .iter()
            .filter(|t| t.reached(value, amount))
            .map(|t| t.text.clone())
            .collect()
    };
    let mut notes = Vec::new();
    if !matched {
        notes.push(
            "the scope matches no caller in the data (no caller of the role, or the principal is not one of its sessions): spend is zero".to_owned(),
        );
    }
    for (currency, days) in daily {
        let other: i128 = days.values().sum();
        if currency != &b.currency && other != 0 {
            notes.push(format!(
                "the scope also spent {} {currency} this month, which a {} budget does not count",
                money::exact_string(other),
                b.currency
            ));
        }
    }
    pb::BudgetReport {
        budget: Some(budget(b)),
        spend_to_date: Some(convert::money(&b.currency, Amount::from_scaled(spend))),
        forecast: Some(convert::money(
            &b.currency,
            Amount::from_scaled(f.month_end),
        )),
        status: status.into(),
        thresholds_crossed: reached(spend),
        thresholds_forecast: reached(f.month_end),
        forecast_inputs: Some(pb::BudgetForecastInputs {
            daily_average: Some(convert::money(
                &b.currency,
                Amount::from_scaled(f.daily_average),
            )),
            days_averaged: window.days as i32,
            averaged_from: (window.days > 0).then(|| convert::time(at(window.from))),
            averaged_to: Some(convert::time(at(window.to))),
            remaining_hours,
            remaining_days: money::exact_string(forecast::div_half_even(
                i128::from(remaining_hours) * 10_i128.pow(money::SCALE),
                24,
            )),
        }),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_micros())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn period(text: &str) -> BillingPeriod {
        BillingPeriod::parse(text).unwrap_or_else(|| panic!("{text}"))
    }

    /// A July file holding one line item dated 9999-12-31 (as a load without the
    /// out-of-period rule keeps it): the newest hour, and so the default month, stay in
    /// July; a period whose usage lies wholly outside its month adds nothing.
    #[test]
    fn the_default_month_stays_in_a_served_period() {
        let span = served_span([
            (
                period("2026-06"),
                Some((us("2026-06-01T00:00:00Z"), us("2026-06-30T23:00:00Z"))),
            ),
            (
                period("2026-07"),
                Some((us("2026-07-01T00:00:00Z"), us("9999-12-31T00:00:00Z"))),
            ),
            (
                period("2026-05"),
                Some((us("2025-01-01T00:00:00Z"), us("2025-01-20T00:00:00Z"))),
            ),
            (period("2026-08"), None),
        ]);
        let (lo, hi) = span.unwrap_or_else(|| panic!("no span"));
        assert_eq!(lo, us("2026-06-01T00:00:00Z"));
        assert_eq!(hi, us("2026-08-01T00:00:00Z") - 1);
        let newest_hour = hi.div_euclid(HOUR) * HOUR;
        assert_eq!(newest_hour, us("2026-07-31T23:00:00Z"));
        let month = month_of(newest_hour + HOUR - 1);
        assert_eq!(month, period("2026-07").span_micros());
        // Within its month, a period's span is kept as it is.
        assert_eq!(
            served_span([(
                period("2026-07"),
                Some((us("2026-07-02T05:00:00Z"), us("2026-07-20T13:00:00Z")))
            )]),
            Some((us("2026-07-02T05:00:00Z"), us("2026-07-20T13:00:00Z")))
        );
        assert_eq!(
            served_span([(
                period("2026-05"),
                Some((us("2025-01-01T00:00:00Z"), us("2025-01-20T00:00:00Z")))
            )]),
            None
        );
    }
}
