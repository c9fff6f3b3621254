//! Rendering of DataStatus and Refresh: what the server holds and what a refresh did.
//!
//! In CSV, `status` prints its billing periods and `refresh` one summary line; the
//! JSON documents carry everything, problems included.

use std::io::Write;

use serde::Serialize;

use super::table::{Column, Table};
use super::{CliError, Format, labels};
use crate::proto;

/// Writes a DataStatus answer in `format`.
pub fn render_status(
    out: &mut dyn Write,
    format: Format,
    status: &proto::DataStatusResponse,
) -> Result<(), CliError> {
    match format {
        Format::Json => super::write_json(out, &StatusDocument::from(status)),
        Format::Csv => Ok(periods_table(&status.periods).write_csv(out)?),
        Format::Table => {
            writeln!(out, "snapshot version: {}", status.snapshot_version)?;
            let last_refresh = match &status.last_refresh {
                Some(t) => labels::timestamp(t),
                None => "never".to_owned(),
            };
            writeln!(out, "last refresh:     {last_refresh}")?;
            writeln!(out, "line items:       {}", status.total_line_items)?;
            writeln!(out, "sources:")?;
            for source in &status.sources {
                writeln!(out, "  {source}")?;
            }
            writeln!(out)?;
            periods_table(&status.periods).write_text(out)?;
            if !status.schema_notes.is_empty() {
                writeln!(out)?;
                writeln!(out, "schema notes:")?;
                for note in &status.schema_notes {
                    writeln!(out, "  {note}")?;
                }
            }
            write_problems(out, &status.problems)
        }
    }
}

/// Writes a Refresh answer in `format`.
pub fn render_refresh(
    out: &mut dyn Write,
    format: Format,
    refresh: &proto::RefreshResponse,
) -> Result<(), CliError> {
    match format {
        Format::Json => super::write_json(out, &RefreshDocument::from(refresh)),
        Format::Csv => {
            let mut table = Table::new(vec![
                Column::number("SNAPSHOT VERSION", "snapshot_version"),
                Column::number("PERIODS", "periods"),
                Column::number("LINE ITEMS", "line_items"),
                Column::number("DURATION MS", "duration_ms"),
                Column::number("PROBLEMS", "problems"),
            ]);
            table.push(vec![
                refresh.snapshot_version.to_string(),
                refresh.periods.to_string(),
                refresh.line_items.to_string(),
                refresh.duration_ms.to_string(),
                refresh.problems.len().to_string(),
            ]);
            Ok(table.write_csv(out)?)
        }
        Format::Table => {
            writeln!(out, "snapshot version: {}", refresh.snapshot_version)?;
            writeln!(out, "periods:          {}", refresh.periods)?;
            writeln!(out, "line items:       {}", refresh.line_items)?;
            writeln!(out, "duration:         {} ms", refresh.duration_ms)?;
            write_problems(out, &refresh.problems)
        }
    }
}

fn periods_table(periods: &[proto::PeriodStatus]) -> Table {
    let mut table = Table::new(vec![
        Column::text("SOURCE", "source"),
        Column::text("PERIOD", "billing_period"),
        Column::text("FILE LIST", "file_list"),
        Column::number("FILES", "files"),
        Column::number("ROWS READ", "rows_read"),
        Column::number("BEDROCK LINE ITEMS", "bedrock_line_items"),
        Column::number("BYTES", "bytes"),
        Column::text("LAST MODIFIED", "last_modified"),
        Column::text("EXECUTION", "execution"),
        Column::text("MISSING COLUMNS", "missing_columns"),
    ]);
    for p in periods {
        table.push(vec![
            p.source.clone(),
            p.billing_period.clone(),
            p.file_list.clone(),
            p.files.to_string(),
            p.rows_read.to_string(),
            p.bedrock_line_items.to_string(),
            p.bytes.to_string(),
            labels::opt_timestamp(p.last_modified.as_ref()),
            p.execution.clone(),
            p.missing_columns.join(";"),
        ]);
    }
    table
}

fn write_problems(out: &mut dyn Write, problems: &[proto::Problem]) -> Result<(), CliError> {
    if problems.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "problems:")?;
    let mut table = Table::new(vec![
        Column::text("AT", "at"),
        Column::text("SOURCE", "source"),
        Column::text("PERIOD", "billing_period"),
        Column::text("FILE", "file"),
        Column::text("MESSAGE", "message"),
    ]);
    for p in problems {
        table.push(vec![
            labels::opt_timestamp(p.at.as_ref()),
            p.source.clone(),
            p.billing_period.clone(),
            p.file.clone(),
            p.message.clone(),
        ]);
    }
    Ok(table.write_text(out)?)
}

#[derive(Debug, Serialize)]
struct StatusDocument {
    snapshot_version: u64,
    last_refresh: String,
    total_line_items: i64,
    sources: Vec<String>,
    periods: Vec<JsonPeriod>,
    schema_notes: Vec<String>,
    problems: Vec<labels::JsonProblem>,
}

#[derive(Debug, Serialize)]
struct JsonPeriod {
    source: String,
    billing_period: String,
    file_list: String,
    files: i64,
    rows_read: i64,
    bedrock_line_items: i64,
    bytes: i64,
    last_modified: String,
    missing_columns: Vec<String>,
    execution: String,
}

impl From<&proto::DataStatusResponse> for StatusDocument {
    fn from(s: &proto::DataStatusResponse) -> Self {
        StatusDocument {
            snapshot_version: s.snapshot_version,
            last_refresh: labels::opt_timestamp(s.last_refresh.as_ref()),
            total_line_items: s.total_line_items,
            sources: s.sources.clone(),
            periods: s
                .periods
                .iter()
                .map(|p| JsonPeriod {
                    source: p.source.clone(),
                    billing_period: p.billing_period.clone(),
                    file_list: p.file_list.clone(),
                    files: p.files,
                    rows_read: p.rows_read,
                    bedrock_line_items: p.bedrock_line_items,
                    bytes: p.bytes,
                    last_modified: labels::opt_timestamp(p.last_modified.as_ref()),
                    missing_columns: p.missing_columns.clone(),
                    execution: p.execution.clone(),
                })
                .collect(),
            schema_notes: s.schema_notes.clone(),
            problems: s.problems.iter().map(labels::JsonProblem::from).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct RefreshDocument {
    snapshot_version: u64,
    periods: i64,
    line_items: i64,
    duration_ms: i64,
    problems: Vec<labels::JsonProblem>,
}

impl From<&proto::RefreshResponse> for RefreshDocument {
    fn from(r: &proto::RefreshResponse) -> Self {
        RefreshDocument {
            snapshot_version: r.snapshot_version,
            periods: r.periods,
            line_items: r.line_items,
            duration_ms: r.duration_ms,
            problems: r.problems.iter().map(labels::JsonProblem::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Vec<u8>) -> Result<(), CliError>) -> String {
        let mut out = Vec::new();
        f(&mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    fn status() -> proto::DataStatusResponse {
        proto::DataStatusResponse {
            sources: vec!["s3://cur/export".to_owned()],
            periods: vec![proto::PeriodStatus {
                source: "s3://cur/export".to_owned(),
                billing_period: "2026-07".to_owned(),
                file_list: "manifest".to_owned(),
                files: 2,
                rows_read: 1000,
                bedrock_line_items: 10,
                bytes: 4096,
                last_modified: Some(prost_types::Timestamp {
                    seconds: 1_782_864_000,
                    nanos: 0,
                }),
                missing_columns: vec!["a".to_owned(), "b".to_owned()],
                execution: String::new(),
                ..Default::default()
            }],
            total_line_items: 10,
            last_refresh: None,
            problems: vec![proto::Problem {
                at: None,
                source: "s3://cur/export".to_owned(),
                billing_period: "2026-06".to_owned(),
                file: String::new(),
                message: "manifest not found".to_owned(),
                ..Default::default()
            }],
            snapshot_version: 3,
            schema_notes: vec!["2026-06 lacks caller identity".to_owned()],
            ..Default::default()
        }
    }

    #[test]
    fn status_table() {
        let text = render(|out| render_status(out, Format::Table, &status()));
        assert_eq!(
            text,
            "\
snapshot version: 3
last refresh:     never
line items:       10
sources:
  s3://cur/export

SOURCE           PERIOD   FILE LIST  FILES  ROWS READ  BEDROCK LINE ITEMS  BYTES  LAST MODIFIED         EXECUTION  MISSING COLUMNS
s3://cur/export  2026-07  manifest       2       1000                  10   4096  2026-07-01T00:00:00Z             a;b

schema notes:
  2026-06 lacks caller identity

problems:
AT  SOURCE           PERIOD   FILE  MESSAGE
    s3://cur/export  2026-06        manifest not found
"
        );
    }

    #[test]
    fn status_csv_is_the_periods() {
        let text = render(|out| render_status(out, Format::Csv, &status()));
        assert_eq!(
            text,
            "\
source,billing_period,file_list,files,rows_read,bedrock_line_items,bytes,last_modified,execution,missing_columns
s3://cur/export,2026-07,manifest,2,1000,10,4096,2026-07-01T00:00:00Z,,a;b
"
        );
    }

    #[test]
    fn refresh_formats() {
        let refresh = proto::RefreshResponse {
            snapshot_version: 4,
            periods: 2,
            line_items: 20,
            problems: vec![],
            duration_ms: 1500,
            ..Default::default()
        };
        assert_eq!(
            render(|out| render_refresh(out, Format::Table, &refresh)),
            "snapshot version: 4\nperiods:          2\nline items:       20\nduration:         1500 ms\n"
        );
        assert_eq!(
            render(|out| render_refresh(out, Format::Csv, &refresh)),
            "snapshot_version,periods,line_items,duration_ms,problems\n4,2,20,1500,0\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(|out| render_refresh(out, Format::Json, &refresh)))
                .expect("json");
        assert_eq!(json["duration_ms"], 1500);
        assert_eq!(json["problems"], serde_json::json!([]));
    }
}
