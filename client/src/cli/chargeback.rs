//! `chargeback`: one billing month, fully loaded, per value of a tag key (a team), as a
//! file for a finance system (CSV of exact decimal strings) or for BI tools (Parquet,
//! amounts as `Decimal128(38, 10)`).
//!
//! Fully loaded means `CostByTag` with proportional allocation: tax, credits, discounts
//! and spend without a caller are shared out to the callers who caused the spend. The
//! `UNTAGGED` row is kept (callers without the tag), so the rows add up to the month's
//! total; that is checked, per currency, before anything is written, and a file is
//! written to a temporary name and renamed, so a finance import never reads half of it.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow_array::{ArrayRef, BooleanArray, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::{Datelike, NaiveDate};
use clap::{Args, ValueEnum};
use rust_decimal::{Decimal, RoundingStrategy};

use super::{
    CliError,
    args::{FilterArgs, MetricArg},
};
use crate::{AllRows, Client, Money, proto, time_range};

/// Decimal places of every amount written (those of `Money.exact`).
const SCALE: u32 = 10;

/// Arguments of `chargeback`.
#[derive(Clone, Debug, Args)]
pub struct ChargebackArgs {
    /// The billing month, YYYY-MM (calendar month of usage, UTC).
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
    pub month: NaiveDate,
    /// The tag key naming the team, exactly as in the CUR `tags` column, e.g.
    /// iamPrincipal/team (list-tag-keys lists them).
    #[arg(long, value_name = "KEY")]
    pub tag_key: String,
    /// Write the file even when every dollar of the month is UNTAGGED (by default that
    /// is refused: it almost always means a mistyped --tag-key).
    #[arg(long)]
    pub allow_all_untagged: bool,
    /// File to write; `-` writes CSV to standard output.
    #[arg(long, short = 'o', value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
    /// File format; by default from FILE's extension (.csv or .parquet; any other
    /// name needs --file-format).
    #[arg(long = "file-format", value_enum, value_name = "FORMAT")]
    pub file_format: Option<FileFormat>,
    /// CUR cost column to sum.
    #[arg(long, value_enum, default_value_t = MetricArg::Unblended)]
    pub metric: MetricArg,
    /// Which line items count.
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Format of the chargeback file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Comma-separated, a header line, exact decimal strings with ten places.
    Csv,
    /// Apache Parquet: amounts as Decimal128(38, 10), tokens as Int64.
    Parquet,
}

/// Parses `YYYY-MM` into the month's first day.
fn parse_month(input: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{}-01", input.trim()), "%Y-%m-%d")
        .map_err(|_| format!("invalid month {input:?}: expected YYYY-MM, e.g. 2026-07"))
}

impl ChargebackArgs {
    /// The request: the whole month, fully loaded, grouped by the tag key only.
    pub fn to_request(&self) -> proto::CostByTagRequest {
        let start = self.month.and_time(chrono::NaiveTime::MIN).and_utc();
        let (y, m) = (self.month.year(), self.month.month());
        let next = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)
        }
        .unwrap_or(self.month);
        let end = next.and_time(chrono::NaiveTime::MIN).and_utc();
        proto::CostByTagRequest {
            time_range: Some(time_range(start, end)),
            filter: self.filter.to_proto(),
            cost_metric: self.metric.to_proto() as i32,
            tag_key: self.tag_key.clone(),
            allocation: proto::Allocation::Proportional as i32,
            page_size: 10_000,
            ..Default::default()
        }
    }

    /// The format in effect: `--file-format`, else CSV for standard output, else the
    /// output's extension (`.csv` or `.parquet`, any case). Any other name is refused
    /// rather than given CSV under a name that promises something else (`x.xlsx`).
    pub fn format(&self) -> Result<FileFormat, CliError> {
        if let Some(format) = self.file_format {
            return Ok(format);
        }
        if self.output.as_os_str() == "-" {
            return Ok(FileFormat::Csv);
        }
        match self.output.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("parquet") => Ok(FileFormat::Parquet),
            Some(e) if e.eq_ignore_ascii_case("csv") => Ok(FileFormat::Csv),
            _ => Err(CliError::Usage {
                reason: format!(
                    "--output {}: cannot tell the format from the name; end it in .csv or .parquet, or pass --file-format csv|parquet",
                    self.output.display()
                ),
            }),
        }
    }
}

/// One team's month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargebackRow {
    /// `YYYY-MM`.
    pub month: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The tag key.
    pub tag_key: String,
    /// The tag value, or `UNTAGGED`.
    pub team: String,
    /// Whether this is the row of line items without the key.
    pub untagged: bool,
    /// The team's own cost.
    pub direct_cost: Decimal,
    /// Cost shared in by allocation.
    pub allocated_cost: Decimal,
    /// Fully loaded: direct plus allocated.
    pub cost: Decimal,
    /// Tokens by kind: input, output, cache read, cache write.
    pub tokens: [i64; 4],
    /// Fully loaded cost per million tokens of all kinds, half-even to ten places;
    /// `None` without tokens.
    pub cost_per_million_tokens: Option<Decimal>,
    /// CUR line items.
    pub line_items: i64,
}

impl ChargebackRow {
    /// Tokens of all kinds.
    pub fn total_tokens(&self) -> i64 {
        self.tokens.iter().sum()
    }
}

/// The rows of an answer, ordered by currency and then as the server ordered them
/// (cost descending), checked: each row's direct and allocated cost add up to its cost,
/// and the rows of each currency add up to the answer's total.
pub fn rows(args: &ChargebackArgs, answer: &AllRows) -> Result<Vec<ChargebackRow>, CliError> {
    let month = args.month.format("%Y-%m").to_string();
    let money = |m: Option<&proto::Money>, what: &str| -> Result<Money, CliError> {
        let m = m.ok_or_else(|| reconcile(format!("a row has no {what}")))?;
        Ok(Money::try_from(m)?)
    };
    let mut out = Vec::with_capacity(answer.rows.len());
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    for row in &answer.rows {
        let cost = money(row.cost.as_ref(), "cost")?;
        let direct = money(row.direct_cost.as_ref(), "direct cost")?;
        let allocated = money(row.allocated_cost.as_ref(), "allocated cost")?;
        if direct.amount + allocated.amount != cost.amount {
            return Err(reconcile(format!(
                "a row's direct {} and allocated {} do not add up to its cost {}",
                direct.amount, allocated.amount, cost.amount
            )));
        }
        let tag = row.tag.clone().unwrap_or_default();
        let t = row.tokens.unwrap_or_default();
        let tokens = [t.input, t.output, t.cache_read, t.cache_write];
        let all: i64 = tokens.iter().sum();
        *sums.entry(cost.currency_code.clone()).or_default() += cost.amount;
        out.push(ChargebackRow {
            month: month.clone(),
            currency: cost.currency_code,
            tag_key: args.tag_key.clone(),
            team: if tag.untagged {
                "UNTAGGED".to_owned()
            } else {
                tag.value
            },
            untagged: tag.untagged,
            direct_cost: direct.amount,
            allocated_cost: allocated.amount,
            cost: cost.amount,
            tokens,
            cost_per_million_tokens: per_million(cost.amount, all),
            line_items: row.line_items,
        });
    }
    let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
    for total in &answer.totals {
        let total = Money::try_from(total)?;
        *totals.entry(total.currency_code).or_default() += total.amount;
    }
    // A currency with a zero total may have no row.
    sums.retain(|_, s| !s.is_zero());
    totals.retain(|_, t| !t.is_zero());
    if sums != totals {
        return Err(reconcile(format!(
            "the rows add up to {sums:?} but the month's totals are {totals:?}"
        )));
    }
    // Stable: the server's order (cost descending, then key) within each currency.
    out.sort_by(|a, b| a.currency.cmp(&b.currency));
    Ok(out)
}

fn reconcile(reason: String) -> CliError {
    CliError::Reconcile { reason }
}

/// `cost × 1e6 / tokens`, half-even to ten places (as the server's TokenUsage does).
pub fn per_million(cost: Decimal, tokens: i64) -> Option<Decimal> {
    if tokens <= 0 {
        return None;
    }
    let value = cost
        .checked_mul(Decimal::from(1_000_000))?
        .checked_div(Decimal::from(tokens))?;
    Some(scaled(value))
}

/// Half-even to ten places, always written with ten.
fn scaled(d: Decimal) -> Decimal {
    let mut d = d.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointNearestEven);
    d.rescale(SCALE);
    d
}

/// The CSV header.
pub const CSV_HEADER: [&str; 15] = [
    "billing_month",
    "currency",
    "tag_key",
    "team",
    "untagged",
    "direct_cost",
    "allocated_cost",
    "cost",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "cost_per_million_tokens",
    "line_items",
];

/// Writes the rows as CSV: a header, then one line per row; amounts as plain decimals
/// with ten places (never exponents or floats), no totals line.
pub fn write_csv(out: &mut dyn Write, rows: &[ChargebackRow]) -> Result<(), CliError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER)?;
    for r in rows {
        let [input, output, cache_read, cache_write] = r.tokens;
        w.write_record([
            r.month.clone(),
            r.currency.clone(),
            r.tag_key.clone(),
            r.team.clone(),
            r.untagged.to_string(),
            scaled(r.direct_cost).to_string(),
            scaled(r.allocated_cost).to_string(),
            scaled(r.cost).to_string(),
            input.to_string(),
            output.to_string(),
            cache_read.to_string(),
            cache_write.to_string(),
            r.total_tokens().to_string(),
            r.cost_per_million_tokens
                .map(|d| scaled(d).to_string())
                .unwrap_or_default(),
            r.line_items.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// The Arrow schema of the Parquet file: the CSV's columns, typed.
pub fn schema() -> Schema {
    let amount = || DataType::Decimal128(38, SCALE as i8);
    Schema::new(vec![
        Field::new("billing_month", DataType::Utf8, false),
        Field::new("currency", DataType::Utf8, false),
        Field::new("tag_key", DataType::Utf8, false),
        Field::new("team", DataType::Utf8, false),
        Field::new("untagged", DataType::Boolean, false),
        Field::new("direct_cost", amount(), false),
        Field::new("allocated_cost", amount(), false),
        Field::new("cost", amount(), false),
        Field::new("input_tokens", DataType::Int64, false),
        Field::new("output_tokens", DataType::Int64, false),
        Field::new("cache_read_tokens", DataType::Int64, false),
        Field::new("cache_write_tokens", DataType::Int64, false),
        Field::new("total_tokens", DataType::Int64, false),
        Field::new("cost_per_million_tokens", amount(), true),
        Field::new("line_items", DataType::Int64, false),
    ])
}

/// The rows as one Arrow batch in [`schema`].
pub fn batch(rows: &[ChargebackRow]) -> Result<RecordBatch, CliError> {
    let text = |f: fn(&ChargebackRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let amounts = |f: fn(&ChargebackRow) -> Option<Decimal>| -> Result<ArrayRef, CliError> {
        let values = Decimal128Array::from(
            rows.iter()
                .map(|r| f(r).map(|d| scaled(d).mantissa()))
                .collect::<Vec<_>>(),
        )
        .with_precision_and_scale(38, SCALE as i8)?;
        Ok(Arc::new(values))
    };
    let ints = |f: fn(&ChargebackRow) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(|r| &r.month),
        text(|r| &r.currency),
        text(|r| &r.tag_key),
        text(|r| &r.team),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.untagged).collect::<Vec<_>>(),
        )),
        amounts(|r| Some(r.direct_cost))?,
        amounts(|r| Some(r.allocated_cost))?,
        amounts(|r| Some(r.cost))?,
        ints(|r| r.tokens[0]),
        ints(|r| r.tokens[1]),
        ints(|r| r.tokens[2]),
        ints(|r| r.tokens[3]),
        ints(ChargebackRow::total_tokens),
        amounts(|r| r.cost_per_million_tokens)?,
        ints(|r| r.line_items),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema()), columns)?)
}

/// Writes the rows as a Parquet file (Snappy-compressed).
pub fn write_parquet(out: impl Write + Send, rows: &[ChargebackRow]) -> Result<(), CliError> {
    use parquet::{arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties};
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(out, Arc::new(schema()), Some(props))?;
    writer.write(&batch(rows)?)?;
    writer.close()?;
    Ok(())
}

/// Runs `chargeback`: asks for the month, checks it, writes the file (or CSV to `out`)
/// and reports rows and totals on stderr.
pub async fn run(
    client: &Client,
    args: &ChargebackArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let format = args.format()?;
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && format == FileFormat::Parquet {
        return Err(CliError::Usage {
            reason: "parquet needs --output FILE".into(),
        });
    }
    let answer = client.cost_by_tag_all(args.to_request()).await?;
    let notes = answer
        .info
        .as_ref()
        .map(|i| i.notes.as_slice())
        .unwrap_or_default();
    for note in notes {
        eprintln!("note: {note}");
    }
    let rows = rows(args, &answer)?;
    refuse_empty_or_untagged(args, &rows, notes)?;
    if to_stdout {
        write_csv(out, &rows)?;
    } else {
        write_file(&args.output, format, &rows)?;
    }
    let totals: Vec<String> = answer
        .totals
        .iter()
        .filter_map(|t| Money::try_from(t).ok())
        .map(|t| format!("{} {}", scaled(t.amount), t.currency_code))
        .collect();
    eprintln!(
        "chargeback {} by {}: {} rows{}, totals {}",
        args.month.format("%Y-%m"),
        args.tag_key,
        rows.len(),
        if to_stdout {
            String::new()
        } else {
            format!(" written to {}", args.output.display())
        },
        totals.join(", ")
    );
    Ok(())
}

/// Refuses a month that holds no spend (a server without data, a month no billing
/// period covers) and, unless `--allow-all-untagged`, a month whose every row is
/// UNTAGGED (a key no line item carries): a finance import of either is a believable
/// wrong bill. The server's notes say why; they are repeated in the refusal.
pub fn refuse_empty_or_untagged(
    args: &ChargebackArgs,
    rows: &[ChargebackRow],
    notes: &[String],
) -> Result<(), CliError> {
    let month = args.month.format("%Y-%m");
    let because = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    if rows.is_empty() {
        return Err(CliError::Refused {
            reason: format!(
                "no spend to charge back for {month}{because}; nothing written (`status` shows the billing periods the server holds)"
            ),
        });
    }
    if !args.allow_all_untagged && rows.iter().all(|r| r.untagged) {
        return Err(CliError::Refused {
            reason: format!(
                "every dollar of {month} is UNTAGGED for tag key {:?}{because}; nothing written: check the key with `list-tag-keys`, or pass --allow-all-untagged to write it anyway",
                args.tag_key
            ),
        });
    }
    Ok(())
}

/// Writes to `path` through a temporary file beside it, renamed when complete; a
/// failure names `path` and what the file system said.
fn write_file(path: &Path, format: FileFormat, rows: &[ChargebackRow]) -> Result<(), CliError> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".partial");
    let temp = PathBuf::from(temp);
    let written = (|| -> Result<(), CliError> {
        let file = std::fs::File::create(&temp)?;
        match format {
            FileFormat::Csv => {
                let mut w = std::io::BufWriter::new(file);
                write_csv(&mut w, rows)?;
                w.flush()?;
                w.get_ref().sync_all()?;
            }
            FileFormat::Parquet => {
                write_parquet(&file, rows)?;
                file.sync_all()?;
            }
        }
        std::fs::rename(&temp, path)?;
        Ok(())
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        CliError::Output {
            path: path.to_owned(),
            source: match e {
                CliError::Io(e) => Box::new(e),
                CliError::Csv(e) => Box::new(e),
                CliError::Parquet(e) => Box::new(e),
                CliError::Arrow(e) => Box::new(e),
                other => Box::new(other),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(exact: &str, currency: &str) -> Option<proto::Money> {
        Some(proto::Money {
            currency_code: currency.into(),
            exact: exact.into(),
            ..Default::default()
        })
    }

    fn row(team: Option<&str>, direct: &str, allocated: &str, cost: &str) -> proto::Row {
        proto::Row {
            tag: Some(proto::TagValue {
                key: "iamPrincipal/team".into(),
                value: team.unwrap_or_default().into(),
                untagged: team.is_none(),
            }),
            direct_cost: money(direct, "USD"),
            allocated_cost: money(allocated, "USD"),
            cost: money(cost, "USD"),
            tokens: Some(proto::Tokens {
                input: 2_000_000,
                output: 1_000_000,
                cache_read: 0,
                cache_write: 0,
            }),
            line_items: 3,
            ..Default::default()
        }
    }

    fn args(extra: &[&str]) -> ChargebackArgs {
        use clap::Parser;
        let mut argv = vec![
            "bedrock-attribution",
            "chargeback",
            "--month",
            "2026-12",
            "--tag-key",
            "iamPrincipal/team",
        ];
        argv.extend(extra);
        match crate::cli::Cli::try_parse_from(argv) {
            Ok(crate::cli::Cli {
                command: crate::cli::Command::Chargeback(a),
                ..
            }) => a,
            other => panic!("{other:?}"),
        }
    }

    fn answer(rows: Vec<proto::Row>, total: &str) -> AllRows {
        AllRows {
            rows,
            totals: money(total, "USD").into_iter().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_month_fully_loaded_is_asked() {
        let r = args(&[]).to_request();
        let range = r.time_range.unwrap_or_default();
        let (start, end) = (
            range.start.unwrap_or_default(),
            range.end.unwrap_or_default(),
        );
        assert_eq!(start.seconds, 1_796_083_200, "2026-12-01T00:00:00Z");
        assert_eq!(end.seconds, 1_798_761_600, "2027-01-01T00:00:00Z");
        assert_eq!(r.allocation, proto::Allocation::Proportional as i32);
        assert_eq!(r.tag_key, "iamPrincipal/team");
        assert!(r.also_group_by.is_empty());
        let format = |extra: &[&str]| args(extra).format().ok();
        assert_eq!(format(&["-o", "x.parquet"]), Some(FileFormat::Parquet));
        assert_eq!(format(&["-o", "x.PARQUET"]), Some(FileFormat::Parquet));
        assert_eq!(format(&["-o", "x.csv"]), Some(FileFormat::Csv));
        assert_eq!(format(&[]), Some(FileFormat::Csv), "standard output");
        assert_eq!(
            format(&["-o", "x.parquet", "--file-format", "csv"]),
            Some(FileFormat::Csv)
        );
        assert_eq!(
            format(&["-o", "x.xlsx", "--file-format", "csv"]),
            Some(FileFormat::Csv)
        );
        assert!(parse_month("2026-13").is_err());
        assert!(parse_month("July").is_err());
    }

    #[test]
    fn an_output_name_of_another_format_is_refused() {
        for name in ["x.xlsx", "report", "x.csv.gz"] {
            let err = args(&["-o", name]).format().expect_err(name);
            assert_eq!(
                err.report(),
                format!(
                    "INVALID_ARGUMENT: --output {name}: cannot tell the format from the name; end it in .csv or .parquet, or pass --file-format csv|parquet"
                )
            );
        }
    }

    #[test]
    fn an_empty_or_all_untagged_month_is_refused() {
        let notes = ["no billing period of the exports covers 2026-12".to_owned()];
        let err = refuse_empty_or_untagged(&args(&[]), &[], &notes).expect_err("empty");
        assert_eq!(err.code(), None, "a refusal is not a gRPC code");
        assert_eq!(
            err.report(),
            "no spend to charge back for 2026-12 (no billing period of the exports covers 2026-12); nothing written (`status` shows the billing periods the server holds)"
        );
        let untagged = answer(vec![row(None, "3", "0", "3")], "3");
        let untagged = rows(&args(&[]), &untagged).unwrap_or_else(|e| panic!("{e}"));
        let err = refuse_empty_or_untagged(&args(&[]), &untagged, &[]).expect_err("untagged");
        assert_eq!(
            err.report(),
            "every dollar of 2026-12 is UNTAGGED for tag key \"iamPrincipal/team\"; nothing written: check the key with `list-tag-keys`, or pass --allow-all-untagged to write it anyway"
        );
        let meant = args(&["--allow-all-untagged"]);
        assert!(refuse_empty_or_untagged(&meant, &untagged, &[]).is_ok());
        let mixed = answer(
            vec![row(Some("search"), "1", "0", "1"), row(None, "2", "0", "2")],
            "3",
        );
        let mixed = rows(&args(&[]), &mixed).unwrap_or_else(|e| panic!("{e}"));
        assert!(refuse_empty_or_untagged(&args(&[]), &mixed, &[]).is_ok());
    }

    #[test]
    fn a_file_that_cannot_be_written_is_named_without_a_grpc_code() {
        let dir = std::env::temp_dir().join("bedrock-attribution-no-such-dir-for-test");
        let path = dir.join("x.csv");
        let err = write_file(&path, FileFormat::Csv, &[]).expect_err("no such directory");
        assert_eq!(err.code(), None);
        let report = err.report();
        assert!(
            report.starts_with(&format!("cannot write {}: ", path.display())),
            "{report}"
        );
        assert!(!report.contains("UNKNOWN"), "{report}");
    }

    #[test]
    fn csv_has_exact_decimals_and_keeps_untagged() {
        let answer = answer(
            vec![
                row(Some("search"), "1.5", "0.25", "1.75"),
                row(None, "3.0000000001", "-0.25", "2.7500000001"),
            ],
            "4.5000000001",
        );
        let rows = rows(&args(&[]), &answer).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        write_csv(&mut out, &rows).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8(out).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(
            lines[1],
            "2026-12,USD,iamPrincipal/team,search,false,1.5000000000,0.2500000000,1.7500000000,2000000,1000000,0,0,3000000,0.5833333333,3"
        );
        assert_eq!(
            lines[2],
            "2026-12,USD,iamPrincipal/team,UNTAGGED,true,3.0000000001,-0.2500000000,2.7500000001,2000000,1000000,0,0,3000000,0.9166666667,3"
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn rows_that_do_not_add_up_are_refused() {
        let short = answer(vec![row(Some("search"), "1.5", "0.25", "1.75")], "2");
        assert!(matches!(
            rows(&args(&[]), &short),
            Err(CliError::Reconcile { .. })
        ));
        let split = answer(vec![row(Some("search"), "1.5", "0.5", "1.75")], "1.75");
        assert!(matches!(
            rows(&args(&[]), &split),
            Err(CliError::Reconcile { .. })
        ));
    }

    #[test]
    fn per_million_rounds_half_even() {
        assert_eq!(per_million(Decimal::ONE, 0), None);
        assert_eq!(
            per_million(Decimal::new(1, 0), 3).map(|d| d.to_string()),
            Some("333333.3333333333".into())
        );
        assert_eq!(
            per_million(Decimal::new(5, 17), 1).map(|d| d.to_string()),
            Some("0.0000000000".into()),
            "5e-17 * 1e6 = 5e-11: half-even to ten places is 0"
        );
    }

    #[test]
    fn parquet_holds_the_same_decimals() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let answer = answer(
            vec![
                row(Some("search"), "1.5", "0.25", "1.75"),
                row(None, "3.0000000001", "-0.25", "2.7500000001"),
            ],
            "4.5000000001",
        );
        let rows = rows(&args(&[]), &answer).unwrap_or_else(|e| panic!("{e}"));
        let mut bytes = Vec::new();
        write_parquet(&mut bytes, &rows).unwrap_or_else(|e| panic!("{e}"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{e}"));
        let batches: Vec<RecordBatch> = reader
            .map(|b| b.unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0], batch(&rows).unwrap_or_else(|e| panic!("{e}")));
        let cost = batches[0]
            .column_by_name("cost")
            .and_then(|c| c.as_any().downcast_ref::<Decimal128Array>())
            .map(|c| c.value_as_string(1));
        assert_eq!(cost.as_deref(), Some("2.7500000001"));
    }
}
