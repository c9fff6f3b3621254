//! `spend-anomalies`: days whose spend departs from its own trailing baseline, and new
//! spenders, per principal, tag value or model (the `SpendAnomalies` RPC).

use std::io::Write;

use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;

use super::args::{GroupingArg, MetricArg, ScopeArgs};
use super::table::{Column, Table};
use super::{CliError, Format, labels};
use crate::{Client, proto};

/// Arguments of `spend-anomalies`.
#[derive(Clone, Debug, Args)]
pub struct SpendAnomaliesArgs {
    /// Days to examine ([--from, --to), whole UTC days), filters, page size.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Whose daily spend is compared with its own baseline.
    #[arg(long, value_enum, default_value_t = AnomalyGroupArg::Principal)]
    pub group_by: AnomalyGroupArg,
    /// Principal grouping for `--group-by principal`.
    #[arg(long, value_enum, default_value_t = GroupingArg::Arn)]
    pub by: GroupingArg,
    /// Tag key for `--group-by tag` (given with the default `--group-by`, it implies tag).
    #[arg(long, value_name = "KEY", required_if_eq("group_by", "tag"))]
    pub tag_key: Option<String>,
    /// CUR cost column to sum.
    #[arg(long, value_enum, default_value_t = MetricArg::Unblended)]
    pub metric: MetricArg,
    /// Days before each examined day that form its baseline, 3 to 90 (server default 14).
    #[arg(long, value_name = "DAYS")]
    pub baseline_days: Option<i32>,
    /// Spend must be at least this many times the baseline (decimal, server default 3).
    #[arg(long, value_name = "DECIMAL")]
    pub min_factor: Option<String>,
    /// The robust z-score must be at least this (server default 3.5; 0 turns it off).
    #[arg(long, value_name = "NUMBER")]
    pub min_z: Option<f64>,
    /// Spend must exceed the baseline by at least this amount (server default 1).
    #[arg(long, value_name = "DECIMAL")]
    pub min_excess: Option<String>,
}

/// The groups anomalies are found for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AnomalyGroupArg {
    /// The caller (see --by).
    Principal,
    /// The value of a tag key (see --tag-key).
    Tag,
    /// The model name.
    Model,
}

impl SpendAnomaliesArgs {
    /// The first-page request.
    pub fn to_request(&self) -> proto::SpendAnomaliesRequest {
        let dimension = match (self.group_by, &self.tag_key) {
            (AnomalyGroupArg::Tag, _) | (AnomalyGroupArg::Principal, Some(_)) => {
                proto::Dimension::Tag
            }
            (AnomalyGroupArg::Principal, None) => proto::Dimension::Principal,
            (AnomalyGroupArg::Model, _) => proto::Dimension::Model,
        };
        proto::SpendAnomaliesRequest {
            time_range: Some(self.scope.time_range()),
            filter: self.scope.filter.to_proto(),
            cost_metric: self.metric.to_proto() as i32,
            page_size: self.scope.page_size,
            page_token: String::new(),
            dimension: dimension as i32,
            principal_grouping: self.by.to_proto() as i32,
            tag_key: self.tag_key.clone().unwrap_or_default(),
            baseline_days: self.baseline_days.unwrap_or(0),
            min_factor: self.min_factor.clone().unwrap_or_default(),
            min_robust_z: self.min_z,
            min_excess: self.min_excess.clone().unwrap_or_default(),
        }
    }
}

/// Asks for every page and writes the anomalies in `format`.
pub async fn run(
    client: &Client,
    args: &SpendAnomaliesArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let request = args.to_request();
    let answer = client.spend_anomalies_all(request.clone()).await?;
    super::notes_to_stderr(format, answer.info.as_ref());
    render_anomalies(out, format, &request, &answer)
}

/// The group column of an anomaly: principal label, tag value (or `UNTAGGED`) or model.
fn group(a: &proto::SpendAnomaly, request: &proto::SpendAnomaliesRequest) -> String {
    if let Some(p) = &a.principal {
        labels::principal(p, request.principal_grouping())
    } else if let Some(t) = &a.tag {
        labels::tag_value(t)
    } else {
        a.model.clone()
    }
}

/// `spike` or `new`.
fn kind(a: &proto::SpendAnomaly) -> String {
    let name = a.kind().as_str_name();
    name.strip_prefix("ANOMALY_KIND_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// A double as CSV writes it: Rust's shortest round-trip form, `inf` for infinity,
/// empty when unset.
fn double(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Significant digits of a ratio in the table: a person compares `4.707` with `3`, not
/// `4.706533420661826`.
const TABLE_DIGITS: i32 = 4;

/// A double as the table shows it: [`TABLE_DIGITS`] significant digits (whole numbers
/// from 10^4 up), `inf` for infinity, empty when unset.
fn significant(v: Option<f64>) -> String {
    let Some(v) = v else {
        return String::new();
    };
    if !v.is_finite() || v == 0.0 {
        return v.to_string();
    }
    let places =
        |x: f64| usize::try_from(TABLE_DIGITS - 1 - x.abs().log10().floor() as i32).unwrap_or(0);
    let text = format!("{v:.*}", places(v));
    // Rounding can carry into one more digit (9.9996 -> 10.000): one place fewer.
    match text.parse::<f64>() {
        Ok(r) if places(r) < places(v) => format!("{v:.*}", places(r)),
        _ => text,
    }
}

/// Writes a SpendAnomalies answer (all pages) in `format`.
pub fn render_anomalies(
    out: &mut dyn Write,
    format: Format,
    request: &proto::SpendAnomaliesRequest,
    answer: &proto::SpendAnomaliesResponse,
) -> Result<(), CliError> {
    if format == Format::Json {
        return super::write_json(out, &document(request, answer)?);
    }
    let group_column = match request.dimension() {
        proto::Dimension::Tag => Column::text("TAG", "tag"),
        proto::Dimension::Model => Column::text("MODEL", "model"),
        _ => Column::text("PRINCIPAL", "principal"),
    };
    let mut table = Table::new(vec![
        group_column,
        Column::text("DAY", "day"),
        Column::text("KIND", "kind"),
        Column::number("OBSERVED", "observed"),
        Column::number("BASELINE", "baseline"),
        Column::number("MAD", "median_absolute_deviation"),
        Column::number("EXCESS", "excess"),
        Column::text("CURRENCY", "currency"),
        Column::number("FACTOR", "factor"),
        Column::number("ROBUST Z", "robust_z"),
        Column::number("DAYS", "baseline_days_counted"),
        Column::number("LINE ITEMS", "line_items"),
    ]);
    for a in &answer.anomalies {
        let observed = labels::money(a.observed.as_ref(), "observed")?;
        let amount = |m: Option<&proto::Money>, what: &str| -> Result<String, CliError> {
            Ok(labels::money(m, what)?.amount.to_string())
        };
        let mut g = group(a, request);
        if g.is_empty() && format == Format::Table {
            g = labels::NONE.to_owned();
        }
        let ratio = |v: Option<f64>| {
            if format == Format::Csv {
                double(v)
            } else {
                significant(v)
            }
        };
        table.push(vec![
            g,
            a.day
                .as_ref()
                .map(|t| labels::timestamp(t).chars().take(10).collect())
                .unwrap_or_default(),
            kind(a),
            observed.amount.to_string(),
            amount(a.baseline.as_ref(), "baseline")?,
            amount(
                a.median_absolute_deviation.as_ref(),
                "median absolute deviation",
            )?,
            amount(a.excess.as_ref(), "excess")?,
            observed.currency_code,
            ratio(a.factor),
            ratio(a.robust_z),
            a.baseline_days_counted.to_string(),
            a.line_items.to_string(),
        ]);
    }
    match format {
        Format::Csv => table.write_csv(out)?,
        Format::Table | Format::Json => {
            table.write_text(out)?;
            labels::write_notes(out, answer.info.as_ref())?;
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct AnomaliesDocument {
    anomalies: Vec<JsonAnomaly>,
    snapshot_version: u64,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct JsonAnomaly {
    /// What the table's first column shows.
    group: String,
    principal: Option<labels::JsonPrincipal>,
    tag: Option<JsonTag>,
    model: String,
    day: String,
    kind: String,
    observed: labels::JsonMoney,
    baseline: labels::JsonMoney,
    median_absolute_deviation: labels::JsonMoney,
    excess: labels::JsonMoney,
    /// A number, `"Infinity"` (as proto3 JSON writes it) or null.
    robust_z: Value,
    /// A number or null.
    factor: Value,
    baseline_days_counted: i32,
    line_items: i64,
}

#[derive(Debug, Serialize)]
struct JsonTag {
    key: String,
    value: String,
    untagged: bool,
}

/// A double in JSON: JSON numbers have no infinity, so it is written as proto3 JSON
/// does, `"Infinity"`.
fn json_double(v: Option<f64>) -> Value {
    match v {
        None => Value::Null,
        Some(v) if v == f64::INFINITY => Value::from("Infinity"),
        Some(v) if v == f64::NEG_INFINITY => Value::from("-Infinity"),
        Some(v) => Value::from(v),
    }
}

fn document(
    request: &proto::SpendAnomaliesRequest,
    answer: &proto::SpendAnomaliesResponse,
) -> Result<AnomaliesDocument, CliError> {
    let mut anomalies = Vec::with_capacity(answer.anomalies.len());
    for a in &answer.anomalies {
        let money = |m: Option<&proto::Money>, what| labels::JsonMoney::from_proto(m, what);
        anomalies.push(JsonAnomaly {
            group: group(a, request),
            principal: a
                .principal
                .as_ref()
                .map(|p| labels::JsonPrincipal::new(p, request.principal_grouping())),
            tag: a.tag.as_ref().map(|t| JsonTag {
                key: t.key.clone(),
                value: t.value.clone(),
                untagged: t.untagged,
            }),
            model: a.model.clone(),
            day: labels::opt_timestamp(a.day.as_ref()),
            kind: kind(a),
            observed: money(a.observed.as_ref(), "observed")?,
            baseline: money(a.baseline.as_ref(), "baseline")?,
            median_absolute_deviation: money(
                a.median_absolute_deviation.as_ref(),
                "median absolute deviation",
            )?,
            excess: money(a.excess.as_ref(), "excess")?,
            robust_z: json_double(a.robust_z),
            factor: json_double(a.factor),
            baseline_days_counted: a.baseline_days_counted,
            line_items: a.line_items,
        });
    }
    let info = answer.info.clone().unwrap_or_default();
    Ok(AnomaliesDocument {
        anomalies,
        snapshot_version: info.snapshot_version,
        notes: info.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(extra: &[&str]) -> SpendAnomaliesArgs {
        let mut argv = vec![
            "bedrock-attribution",
            "spend-anomalies",
            "--from",
            "2026-07-01",
            "--to",
            "2026-08-01",
        ];
        argv.extend_from_slice(extra);
        match super::super::Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(super::super::Command::SpendAnomalies(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_request() {
        let r = args(&[]).to_request();
        assert_eq!(r.dimension(), proto::Dimension::Principal);
        assert_eq!((r.baseline_days, r.min_robust_z), (0, None));
        assert!(r.min_factor.is_empty() && r.min_excess.is_empty());
        let r = args(&[
            "--tag-key",
            "iamPrincipal/team",
            "--baseline-days",
            "7",
            "--min-factor",
            "2.5",
            "--min-z",
            "0",
            "--min-excess",
            "0.10",
            "--metric",
            "net-unblended",
        ])
        .to_request();
        assert_eq!(r.dimension(), proto::Dimension::Tag);
        assert_eq!(r.tag_key, "iamPrincipal/team");
        assert_eq!((r.baseline_days, r.min_robust_z), (7, Some(0.0)));
        assert_eq!(
            (r.min_factor.as_str(), r.min_excess.as_str()),
            ("2.5", "0.10")
        );
        assert_eq!(r.cost_metric(), proto::CostMetric::NetUnblended);
        let r = args(&["--group-by", "model", "--by", "role"]).to_request();
        assert_eq!(r.dimension(), proto::Dimension::Model);
        assert!(
            super::super::Cli::try_parse_from([
                "bedrock-attribution",
                "spend-anomalies",
                "--from",
                "2026-07-01",
                "--to",
                "2026-08-01",
                "--group-by",
                "tag"
            ])
            .is_err()
        );
    }

    #[test]
    fn the_table_shows_ratios_to_four_significant_digits() {
        let shown: Vec<String> = [
            Some(4.706533420661826),
            Some(495.9966941629334),
            Some(333.8706961843609),
            Some(9.99996),
            Some(0.0123456),
            Some(123_456.7),
            Some(3.0),
            Some(f64::INFINITY),
            None,
        ]
        .into_iter()
        .map(significant)
        .collect();
        assert_eq!(
            shown,
            [
                "4.707", "496.0", "333.9", "10.00", "0.01235", "123457", "3.000", "inf", ""
            ]
        );
    }

    #[test]
    fn renders_every_format() {
        let usd = |exact: &str| proto::Money {
            currency_code: "USD".into(),
            exact: exact.into(),
            ..Default::default()
        };
        let request = args(&["--by", "role"]).to_request();
        let answer = proto::SpendAnomaliesResponse {
            anomalies: vec![proto::SpendAnomaly {
                principal: Some(proto::Principal {
                    arn: "arn:aws:iam::210987654321:role/rag-indexer".into(),
                    kind: proto::PrincipalKind::IamRole as i32,
                    ..Default::default()
                }),
                day: Some(prost_types::Timestamp {
                    seconds: 1_785_110_400,
                    nanos: 0,
                }),
                kind: proto::AnomalyKind::Spike as i32,
                observed: Some(usd("43.3253310750")),
                baseline: Some(usd("0.0873500400")),
                median_absolute_deviation: Some(usd("0.0873500400")),
                excess: Some(usd("43.2379810350")),
                robust_z: Some(333.8706961843609),
                factor: Some(495.9966941629334),
                baseline_days_counted: 13,
                line_items: 24,
                ..Default::default()
            }],
            ..Default::default()
        };
        let render = |format| {
            let mut out = Vec::new();
            render_anomalies(&mut out, format, &request, &answer).expect("render");
            String::from_utf8(out).expect("utf-8")
        };
        let csv = render(Format::Csv);
        assert_eq!(
            csv,
            "principal,day,kind,observed,baseline,median_absolute_deviation,excess,currency,factor,robust_z,baseline_days_counted,line_items\n\
             arn:aws:iam::210987654321:role/rag-indexer,2026-07-27,spike,43.3253310750,0.0873500400,0.0873500400,43.2379810350,USD,495.9966941629334,333.8706961843609,13,24\n"
        );
        let json: Value = serde_json::from_str(&render(Format::Json)).expect("json");
        assert_eq!(json["anomalies"][0]["robust_z"], 333.8706961843609);
        assert_eq!(json["anomalies"][0]["factor"], 495.9966941629334);
        assert_eq!(json_double(Some(f64::INFINITY)), "Infinity");
        assert_eq!(json_double(None), Value::Null);
        assert_eq!(json["anomalies"][0]["observed"]["amount"], "43.3253310750");
        assert_eq!(json["anomalies"][0]["day"], "2026-07-27T00:00:00Z");
        let table = render(Format::Table);
        assert!(table.starts_with("PRINCIPAL"), "{table}");
        assert!(table.contains("2026-07-27  spike"), "{table}");
        // FACTOR and ROBUST Z to four significant digits; CSV and JSON keep every digit.
        assert!(table.contains("USD        496.0     333.9"), "{table}");
    }
}
