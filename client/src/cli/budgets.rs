//! The budget commands: `create-budget`, `list-budgets`, `delete-budget` and
//! `budget-status`, their arguments, requests and output (table, CSV, JSON).

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

use super::args::{TagArg, parse_tag};
use super::table::{Column, Table};
use super::{CliError, Format, labels};
use crate::{Client, parse_datetime, proto};

/// Arguments of `create-budget`.
#[derive(Clone, Debug, Args)]
pub struct CreateBudgetArgs {
    /// Name for people, 1 to 128 characters.
    #[arg(long)]
    pub name: String,
    /// Amount per calendar month (UTC), an exact decimal, e.g. 1500 or 1234.50.
    #[arg(long)]
    pub amount: String,
    /// Currency of the amount (only spend in it counts).
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Only line items whose tag KEY has VALUE.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tag: Option<TagArg>,
    /// Only line items of this exact caller ARN.
    #[arg(long, value_name = "ARN")]
    pub principal: Option<String>,
    /// Only line items of this role (arn:PARTITION:iam::ACCOUNT:role/NAME) and its sessions.
    #[arg(long, value_name = "ARN")]
    pub role: Option<String>,
    /// Only line items of this usage account (12 digits).
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub account: Option<String>,
    /// Only line items of this model, as list-models names it.
    #[arg(long)]
    pub model: Option<String>,
    /// Warning threshold as a fraction of the amount, e.g. 0.8; repeatable (default 0.8
    /// and 1).
    #[arg(long = "threshold", value_name = "FRACTION")]
    pub thresholds: Vec<String>,
}

impl CreateBudgetArgs {
    /// The request these arguments ask.
    pub fn to_request(&self) -> proto::CreateBudgetRequest {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        proto::CreateBudgetRequest {
            name: self.name.clone(),
            scope: Some(proto::BudgetScope {
                tag: self.tag.as_ref().map(|t| proto::BudgetTag {
                    key: t.key.clone(),
                    value: t.value.clone(),
                }),
                principal_arn: text(&self.principal),
                role_arn: text(&self.role),
                account_id: text(&self.account),
                model: text(&self.model),
            }),
            monthly_amount: Some(proto::Money {
                currency_code: self.currency.clone(),
                exact: self.amount.clone(),
                ..Default::default()
            }),
            thresholds: self.thresholds.clone(),
        }
    }
}

/// Arguments of `delete-budget`.
#[derive(Clone, Debug, Args)]
pub struct DeleteBudgetArgs {
    /// Id of a budget created through the API, as list-budgets shows it.
    pub id: String,
}

/// Arguments of `budget-status`.
#[derive(Clone, Debug, Args)]
pub struct BudgetStatusArgs {
    /// The month, YYYY-MM (default: the month of the hour before --as-of).
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// End of the spend counted, on a whole hour: YYYY-MM-DD (midnight UTC) or RFC 3339
    /// (default: the end of the newest usage hour in the data).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub as_of: Option<DateTime<Utc>>,
    /// Only this budget; repeatable (default: every budget you may see).
    #[arg(long = "budget", value_name = "ID")]
    pub budgets: Vec<String>,
}

fn parse_time(input: &str) -> Result<DateTime<Utc>, String> {
    parse_datetime(input).map_err(|e| e.to_string())
}

impl BudgetStatusArgs {
    /// The request these arguments ask.
    pub fn to_request(&self) -> proto::BudgetStatusRequest {
        proto::BudgetStatusRequest {
            month: self.month.clone().unwrap_or_default(),
            as_of: self.as_of.map(|t| prost_types::Timestamp {
                seconds: t.timestamp(),
                nanos: t.timestamp_subsec_nanos() as i32,
            }),
            budget_ids: self.budgets.clone(),
        }
    }
}

/// Runs `create-budget`.
pub async fn create(
    client: &Client,
    args: &CreateBudgetArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let answer = client.create_budget(args.to_request()).await?;
    let budget = answer.budget.unwrap_or_default();
    match format {
        Format::Json => super::write_json(
            out,
            &CreatedDocument {
                budget: JsonBudget::new(&budget)?,
            },
        ),
        Format::Csv => Ok(budgets_table(std::slice::from_ref(&budget))?.write_csv(out)?),
        Format::Table => Ok(budgets_table(std::slice::from_ref(&budget))?.write_text(out)?),
    }
}

/// Runs `list-budgets`.
pub async fn list(client: &Client, format: Format, out: &mut dyn Write) -> Result<(), CliError> {
    let answer = client.list_budgets(proto::ListBudgetsRequest {}).await?;
    match format {
        Format::Json => super::write_json(
            out,
            &ListDocument {
                budgets: answer
                    .budgets
                    .iter()
                    .map(JsonBudget::new)
                    .collect::<Result<_, _>>()?,
            },
        ),
        Format::Csv => Ok(budgets_table(&answer.budgets)?.write_csv(out)?),
        Format::Table => Ok(budgets_table(&answer.budgets)?.write_text(out)?),
    }
}

/// Runs `delete-budget`.
pub async fn delete(
    client: &Client,
    args: &DeleteBudgetArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    client
        .delete_budget(proto::DeleteBudgetRequest {
            id: args.id.clone(),
        })
        .await?;
    match format {
        Format::Json => super::write_json(
            out,
            &DeletedDocument {
                deleted: args.id.clone(),
            },
        ),
        Format::Csv => {
            writeln!(out, "deleted")?;
            writeln!(out, "{}", args.id)?;
            Ok(())
        }
        Format::Table => {
            writeln!(out, "deleted budget {}", args.id)?;
            Ok(())
        }
    }
}

/// Runs `budget-status`.
pub async fn status(
    client: &Client,
    args: &BudgetStatusArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let answer = client.budget_status(args.to_request()).await?;
    let document = StatusDocument::new(&answer)?;
    if format == Format::Json {
        return super::write_json(out, &document);
    }
    let mut table = Table::new(vec![
        Column::text("ID", "id"),
        Column::text("NAME", "name"),
        Column::text("STATUS", "status"),
        Column::number("SPEND TO DATE", "spend_to_date"),
        Column::number("FORECAST", "forecast"),
        Column::number("AMOUNT", "amount"),
        Column::text("CURRENCY", "currency"),
        Column::number("DAILY AVERAGE", "daily_average"),
        Column::number("DAYS", "days_averaged"),
        Column::text("CROSSED", "thresholds_crossed"),
        Column::text("FORECAST CROSSES", "thresholds_forecast"),
    ]);
    for r in &document.budgets {
        table.push(vec![
            r.budget.id.clone(),
            r.budget.name.clone(),
            r.status.clone(),
            r.spend_to_date.amount.clone(),
            r.forecast.amount.clone(),
            r.budget.monthly_amount.amount.clone(),
            r.budget.monthly_amount.currency_code.clone(),
            r.daily_average.amount.clone(),
            r.days_averaged.to_string(),
            r.thresholds_crossed.join(";"),
            r.thresholds_forecast.join(";"),
        ]);
    }
    if format == Format::Csv {
        return Ok(table.write_csv(out)?);
    }
    writeln!(
        out,
        "month {} as of {} (newest usage hour {})",
        document.month, document.as_of, document.newest_usage_hour
    )?;
    table.write_text(out)?;
    for r in &document.budgets {
        for note in &r.notes {
            writeln!(out, "note: {}: {note}", r.budget.id)?;
        }
    }
    Ok(())
}

fn scope_label(s: &JsonScope) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &s.tag {
        parts.push(format!("tag {}={}", t.key, t.value));
    }
    for (what, value) in [
        ("principal", &s.principal_arn),
        ("role", &s.role_arn),
        ("account", &s.account_id),
        ("model", &s.model),
    ] {
        if !value.is_empty() {
            parts.push(format!("{what} {value}"));
        }
    }
    parts.join(" and ")
}

fn budgets_table(budgets: &[proto::Budget]) -> Result<Table, CliError> {
    let mut table = Table::new(vec![
        Column::text("ID", "id"),
        Column::text("NAME", "name"),
        Column::text("SCOPE", "scope"),
        Column::number("AMOUNT", "amount"),
        Column::text("CURRENCY", "currency"),
        Column::text("THRESHOLDS", "thresholds"),
        Column::text("ORIGIN", "origin"),
        Column::text("OWNER", "owner"),
    ]);
    for b in budgets {
        let b = JsonBudget::new(b)?;
        table.push(vec![
            b.id.clone(),
            b.name.clone(),
            scope_label(&b.scope),
            b.monthly_amount.amount.clone(),
            b.monthly_amount.currency_code.clone(),
            b.thresholds.join(";"),
            b.origin.clone(),
            b.owner.clone(),
        ]);
    }
    Ok(table)
}

#[derive(Debug, Serialize)]
struct JsonTag {
    key: String,
    value: String,
}

#[derive(Debug, Serialize)]
struct JsonScope {
    tag: Option<JsonTag>,
    principal_arn: String,
    role_arn: String,
    account_id: String,
    model: String,
}

/// A budget in JSON.
#[derive(Debug, Serialize)]
pub(super) struct JsonBudget {
    id: String,
    name: String,
    scope: JsonScope,
    pub(super) monthly_amount: labels::JsonMoney,
    thresholds: Vec<String>,
    owner: String,
    origin: String,
    created_at: String,
}

impl JsonBudget {
    fn new(b: &proto::Budget) -> Result<Self, CliError> {
        let s = b.scope.clone().unwrap_or_default();
        Ok(JsonBudget {
            id: b.id.clone(),
            name: b.name.clone(),
            scope: JsonScope {
                tag: s.tag.map(|t| JsonTag {
                    key: t.key,
                    value: t.value,
                }),
                principal_arn: s.principal_arn,
                role_arn: s.role_arn,
                account_id: s.account_id,
                model: s.model,
            },
            monthly_amount: labels::JsonMoney::from_proto(
                b.monthly_amount.as_ref(),
                "monthly_amount",
            )?,
            thresholds: b.thresholds.clone(),
            owner: b.owner.clone(),
            origin: b
                .origin()
                .as_str_name()
                .trim_start_matches("BUDGET_ORIGIN_")
                .to_ascii_lowercase(),
            created_at: labels::opt_timestamp(b.created_at.as_ref()),
        })
    }
}

#[derive(Debug, Serialize)]
struct CreatedDocument {
    budget: JsonBudget,
}

#[derive(Debug, Serialize)]
struct ListDocument {
    budgets: Vec<JsonBudget>,
}

#[derive(Debug, Serialize)]
struct DeletedDocument {
    deleted: String,
}

/// One budget's status in JSON.
#[derive(Debug, Serialize)]
pub(super) struct JsonReport {
    pub(super) budget: JsonBudget,
    status: String,
    pub(super) spend_to_date: labels::JsonMoney,
    pub(super) forecast: labels::JsonMoney,
    pub(super) thresholds_crossed: Vec<String>,
    thresholds_forecast: Vec<String>,
    daily_average: labels::JsonMoney,
    days_averaged: i32,
    averaged_from: String,
    averaged_to: String,
    remaining_hours: i64,
    remaining_days: String,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StatusDocument {
    month: String,
    as_of: String,
    newest_usage_hour: String,
    snapshot_version: u64,
    budgets: Vec<JsonReport>,
}

/// A budget state as the CLI shows it: `ok`, `forecast-over`, `over`, `unspecified`.
pub(super) fn state_label(state: proto::BudgetState) -> String {
    state
        .as_str_name()
        .trim_start_matches("BUDGET_STATE_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

impl JsonReport {
    /// A report for JSON output; amounts checked as every answer's are.
    pub(super) fn new(r: &proto::BudgetReport) -> Result<Self, CliError> {
        let inputs = r.forecast_inputs.clone().unwrap_or_default();
        Ok(JsonReport {
            budget: JsonBudget::new(&r.budget.clone().unwrap_or_default())?,
            status: state_label(r.status()),
            spend_to_date: labels::JsonMoney::from_proto(
                r.spend_to_date.as_ref(),
                "spend_to_date",
            )?,
            forecast: labels::JsonMoney::from_proto(r.forecast.as_ref(), "forecast")?,
            thresholds_crossed: r.thresholds_crossed.clone(),
            thresholds_forecast: r.thresholds_forecast.clone(),
            daily_average: labels::JsonMoney::from_proto(
                inputs.daily_average.as_ref(),
                "daily_average",
            )?,
            days_averaged: inputs.days_averaged,
            averaged_from: labels::opt_timestamp(inputs.averaged_from.as_ref()),
            averaged_to: labels::opt_timestamp(inputs.averaged_to.as_ref()),
            remaining_hours: inputs.remaining_hours,
            remaining_days: inputs.remaining_days.clone(),
            notes: r.notes.clone(),
        })
    }
}

impl StatusDocument {
    fn new(a: &proto::BudgetStatusResponse) -> Result<Self, CliError> {
        let budgets = a
            .budgets
            .iter()
            .map(JsonReport::new)
            .collect::<Result<_, CliError>>()?;
        Ok(StatusDocument {
            month: a.month.clone(),
            as_of: labels::opt_timestamp(a.as_of.as_ref()),
            newest_usage_hour: labels::opt_timestamp(a.newest_usage_hour.as_ref()),
            snapshot_version: a.info.as_ref().map_or(0, |i| i.snapshot_version),
            budgets,
        })
    }
}
