//! The `watch-budgets` command: follows WatchBudgets and writes each event as it comes,
//! one line per event (JSON Lines, CSV rows, or a sentence), flushed at once so that a
//! pipe or a chat hook sees it without waiting.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use super::budgets::{JsonReport, state_label};
use super::{CliError, Format, labels};
use crate::{Client, proto};

/// Arguments of `watch-budgets`.
#[derive(Clone, Debug, Args)]
pub struct WatchBudgetsArgs {
    /// Only this budget; repeatable (default: every budget you may see, including
    /// budgets created later).
    #[arg(long = "budget", value_name = "ID")]
    pub budgets: Vec<String>,
    /// First write the current status of each budget watched.
    #[arg(long)]
    pub initial: bool,
    /// Stop after this many events (default: until the server ends the stream).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

impl WatchBudgetsArgs {
    /// The request these arguments ask.
    pub fn to_request(&self) -> proto::WatchBudgetsRequest {
        proto::WatchBudgetsRequest {
            budget_ids: self.budgets.clone(),
            send_initial: self.initial,
        }
    }
}

/// One event in JSON.
#[derive(Debug, Serialize)]
struct JsonEvent {
    budget_id: String,
    budget_name: String,
    reason: String,
    previous_status: String,
    status: String,
    previous_thresholds_crossed: Vec<String>,
    /// `null` when the budget was deleted.
    report: Option<JsonReport>,
    month: String,
    as_of: String,
    snapshot_version: u64,
    at: String,
}

impl JsonEvent {
    fn new(e: &proto::BudgetEvent) -> Result<Self, CliError> {
        Ok(JsonEvent {
            budget_id: e.budget_id.clone(),
            budget_name: e.budget_name.clone(),
            reason: e
                .reason()
                .as_str_name()
                .trim_start_matches("BUDGET_EVENT_REASON_")
                .to_ascii_lowercase()
                .replace('_', "-"),
            previous_status: state_label(e.previous_status()),
            status: state_label(e.status()),
            previous_thresholds_crossed: e.previous_thresholds_crossed.clone(),
            report: e.report.as_ref().map(JsonReport::new).transpose()?,
            month: e.month.clone(),
            as_of: labels::opt_timestamp(e.as_of.as_ref()),
            snapshot_version: e.snapshot_version,
            at: labels::opt_timestamp(e.at.as_ref()),
        })
    }
}

const CSV_HEADER: [&str; 13] = [
    "at",
    "budget_id",
    "budget_name",
    "reason",
    "previous_status",
    "status",
    "spend_to_date",
    "forecast",
    "amount",
    "currency",
    "thresholds_crossed",
    "month",
    "as_of",
];

/// Runs `watch-budgets`: an error when the server ends the stream other than normally
/// (UNAVAILABLE at its shutdown: run it again).
pub async fn run(
    client: &Client,
    args: &WatchBudgetsArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut events = client.watch_budgets(args.to_request()).await?;
    if format == Format::Csv {
        csv_line(out, CSV_HEADER)?;
        out.flush()?;
    }
    let mut written = 0;
    while args.count.is_none_or(|n| written < n) {
        let Some(event) = events.next().await? else {
            break;
        };
        let e = JsonEvent::new(&event)?;
        let report = e.report.as_ref();
        let money = |m: Option<&labels::JsonMoney>| m.map(|m| m.amount.clone()).unwrap_or_default();
        match format {
            Format::Json => {
                serde_json::to_writer(&mut *out, &e)?;
                writeln!(out)?;
            }
            Format::Csv => {
                csv_line(
                    out,
                    [
                        e.at.clone(),
                        e.budget_id.clone(),
                        e.budget_name.clone(),
                        e.reason.clone(),
                        e.previous_status.clone(),
                        e.status.clone(),
                        money(report.map(|r| &r.spend_to_date)),
                        money(report.map(|r| &r.forecast)),
                        money(report.map(|r| &r.budget.monthly_amount)),
                        report
                            .map(|r| r.budget.monthly_amount.currency_code.clone())
                            .unwrap_or_default(),
                        report
                            .map(|r| r.thresholds_crossed.join(";"))
                            .unwrap_or_default(),
                        e.month.clone(),
                        e.as_of.clone(),
                    ],
                )?;
            }
            Format::Table => match report {
                Some(r) => writeln!(
                    out,
                    "{} {} ({}): {} -> {} ({}); spend {} of {} {}, forecast {}, crossed [{}]; {} as of {}",
                    e.at,
                    e.budget_id,
                    e.budget_name,
                    e.previous_status,
                    e.status,
                    e.reason,
                    r.spend_to_date.amount,
                    r.budget.monthly_amount.amount,
                    r.budget.monthly_amount.currency_code,
                    r.forecast.amount,
                    r.thresholds_crossed.join(" "),
                    e.month,
                    e.as_of,
                )?,
                None => writeln!(
                    out,
                    "{} {} ({}): {} -> deleted",
                    e.at, e.budget_id, e.budget_name, e.previous_status
                )?,
            },
        }
        out.flush()?;
        written += 1;
    }
    Ok(())
}

/// One CSV record, quoted as needed, written through at once.
fn csv_line<I, T>(out: &mut dyn Write, record: I) -> Result<(), CliError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(out);
    w.write_record(record)?;
    w.flush()?;
    Ok(())
}
