//! SpendAnomalies end to end: a generated export with a planted tenfold day, a steady
//! heavy user, a new principal, a tiny spender, a weekly job, a EUR spike and daily tax;
//! exact expectations computed here from the generated amounts, every anomaly of several
//! requests (and of the small demo export) equal to DuckDB's plain-SQL median and MAD,
//! paging, a caller's scope, and bad input named by field.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use bedrock_attribution_client::{Client, proto};
use bedrock_attribution_server::demo::{CurLineItem, ExportWriter, PeriodLayout, SchemaOptions};
use chrono::{Datelike, NaiveDate, TimeZone, Utc, Weekday};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::{TestServer, exact, range, small_export};

const ALICE: &str = "arn:aws:sts::111111111111:assumed-role/analyst/alice@example.com";
const HEAVY: &str = "arn:aws:iam::111111111111:user/batch-scorer";
const TINY: &str = "arn:aws:iam::111111111111:user/tiny";
const WEEKLY: &str = "arn:aws:iam::111111111111:user/weekly-report";
const NEWJOB: &str = "arn:aws:sts::222222222222:assumed-role/etl/nightly";
const EURO: &str = "arn:aws:iam::333333333333:user/eu-analyst";
const TEAM: &str = "iamPrincipal/team";
/// Ten-thousandths in units of 1e-10.
const E4: i64 = 1_000_000;

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).unwrap()
}

/// The planted tenfold day of ALICE, TINY's tenfold day (too small to count by
/// default), NEWJOB's first day and EURO's eightfold day.
const SPIKE: (u32, u32) = (6, 17);
const TINY_SPIKE: (u32, u32) = (6, 10);
const NEW_DAY: (u32, u32) = (6, 20);
const EURO_SPIKE: (u32, u32) = (6, 25);

/// The generated line items, and each caller's daily spend in units of 1e-10.
struct Fixture {
    items: Vec<CurLineItem>,
    daily: BTreeMap<(&'static str, NaiveDate), i64>,
}

impl Fixture {
    /// May and June 2026, seeded.
    fn generate() -> Self {
        let mut f = Fixture {
            items: Vec::new(),
            daily: BTreeMap::new(),
        };
        let mut seed: u64 = 0x5eed_2026;
        let mut rand = |lo: i64, hi: i64| {
            // xorshift64*: deterministic amounts without a dependency.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            let r = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
            lo + (r % (hi - lo + 1) as u64) as i64
        };
        let mut d = day(5, 1);
        while d <= day(6, 30) {
            let weekend = matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
            let times = |(m, dd): (u32, u32), k: i64| if d == day(m, dd) { k } else { 1 };
            for hour in [9, 13, 17] {
                let cost = rand(14_000, 20_000) * E4 * times(SPIKE, 10);
                f.push(ALICE, "111111111111", d, hour, cost, "nova", "research");
            }
            let heavy = if weekend { 2 } else { 8 };
            for i in 0..heavy {
                let cost = if weekend {
                    rand(27_000, 33_000) * E4
                } else {
                    rand(330_000, 420_000) * E4
                };
                f.push(HEAVY, "111111111111", d, i * 3, cost, "claude", "risk");
            }
            // Ten decimal places, so that medians fall between two steps of 1e-10.
            let cost = (rand(150, 250) * E4 + rand(0, E4 - 1)) * times(TINY_SPIKE, 10);
            f.push(TINY, "111111111111", d, 11, cost, "nova", "research");
            if d.weekday() == Weekday::Mon {
                let cost = rand(280_000, 320_000) * E4;
                f.push(WEEKLY, "111111111111", d, 6, cost, "nova", "research");
            }
            if d >= day(NEW_DAY.0, NEW_DAY.1) {
                for hour in [1, 2, 3, 4] {
                    let cost = rand(190_000, 210_000) * E4;
                    f.push(NEWJOB, "222222222222", d, hour, cost, "llama", "data-eng");
                }
            }
            for hour in [10, 15] {
                let cost = rand(90_000, 110_000) * E4 * times(EURO_SPIKE, 8);
                f.push(EURO, "333333333333", d, hour, cost, "nova", "");
            }
            let cost = rand(11_000, 13_000) * E4;
            f.push("", "111111111111", d, 23, cost, "tax", "");
            d = d.succ_opt().unwrap();
        }
        f
    }

    /// One line item of `cost` units of 1e-10 (a double that prints as that decimal:
    /// at most 15 significant digits).
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        caller: &'static str,
        account: &str,
        d: NaiveDate,
        hour: i64,
        cost: i64,
        model: &str,
        team: &str,
    ) {
        let start = Utc
            .with_ymd_and_hms(d.year(), d.month(), d.day(), hour as u32, 0, 0)
            .single()
            .unwrap();
        let id = format!("li-{}", self.items.len());
        let base = CurLineItem::bedrock(&id, "999999999999", account, start, cost as f64 / 1e10);
        let usage_type = match model {
            "claude" => Some("USE1-Claude4.6Sonnet-output-tokens".to_owned()),
            "llama" => Some("USE1-Llama4Maverick-input-tokens".to_owned()),
            "tax" => None,
            _ => base.usage_type.clone(),
        };
        self.items.push(CurLineItem {
            line_item_type: if model == "tax" { "Tax" } else { "Usage" }.into(),
            usage_type,
            principal: (!caller.is_empty()).then(|| caller.to_owned()),
            currency: if account == "333333333333" {
                "EUR"
            } else {
                "USD"
            }
            .into(),
            tags: if team.is_empty() {
                Vec::new()
            } else {
                vec![(TEAM.to_owned(), team.to_owned())]
            },
            ..base
        });
        *self.daily.entry((caller, d)).or_default() += cost;
    }

    /// Writes the export under `root`, one billing period per month.
    fn write(&self, root: &Path) {
        let w = ExportWriter::new(root, "anomalies", "s3://b/cur/anomalies");
        for (period, month) in [("2026-05", 5), ("2026-06", 6)] {
            let items: Vec<_> = self
                .items
                .iter()
                .filter(|i| i.usage_start.month() == month)
                .cloned()
                .collect();
            w.write_period(
                period,
                &[items],
                &PeriodLayout::Overwrite {
                    leftover_empty_chunks: 0,
                },
                SchemaOptions::default(),
            )
            .unwrap();
        }
    }

    /// A caller's spend on a day, exact.
    fn spend(&self, caller: &str, d: NaiveDate) -> Decimal {
        let t = self
            .daily
            .iter()
            .find(|((c, dd), _)| *c == caller && *dd == d)
            .map_or(0, |(_, v)| *v);
        Decimal::new(t, 10)
    }
}

/// The generated export, written once per run.
static EXPORT: std::sync::LazyLock<(tempfile::TempDir, PathBuf, Fixture)> =
    std::sync::LazyLock::new(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("anomalies-cur2");
        let fixture = Fixture::generate();
        fixture.write(&root);
        (dir, root, fixture)
    });

fn export() -> &'static Path {
    &EXPORT.1
}

fn fixture() -> &'static Fixture {
    &EXPORT.2
}

fn june() -> Option<proto::TimeRange> {
    range("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z")
}

fn by_principal() -> proto::SpendAnomaliesRequest {
    proto::SpendAnomaliesRequest {
        time_range: june(),
        dimension: proto::Dimension::Principal.into(),
        ..Default::default()
    }
}

/// The exact median of decimals (the mean of the two middle ones for an even count).
fn median(mut v: Vec<Decimal>) -> Decimal {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / Decimal::TWO
    }
}

fn iso_day(t: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.seconds, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

fn arn(a: &proto::SpendAnomaly) -> &str {
    a.principal.as_ref().map_or("", |p| p.arn.as_str())
}

#[tokio::test]
async fn planted_tenfold_day_is_found_and_steady_heavy_user_is_not() {
    let f = fixture();
    let server = TestServer::start(&[export()]).await;
    let answer = server
        .client
        .spend_anomalies_all(by_principal())
        .await
        .unwrap();
    let found: Vec<(&str, String, i32)> = answer
        .anomalies
        .iter()
        .map(|a| (arn(a), iso_day(a.day.as_ref().unwrap()), a.kind))
        .collect();
    let spike = proto::AnomalyKind::Spike as i32;
    let new = proto::AnomalyKind::New as i32;
    // The weekly job spends on Mondays only: its median over fourteen zero-filled days
    // is zero, which is no baseline, so its Mondays are not spikes (they all were
    // before the rule). The heavy user's quiet weekends keep its median a weekday's.
    let mut want = vec![
        (ALICE, "2026-06-17".to_owned(), spike),
        (NEWJOB, "2026-06-20".to_owned(), new),
        (EURO, "2026-06-25".to_owned(), spike),
    ];
    let mut sorted = found.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "{found:#?}");
    assert!(
        !found
            .iter()
            .any(|(who, _, _)| *who == HEAVY || *who == TINY || *who == WEEKLY)
    );
    assert_eq!(no_baseline_count(answer.info.as_ref()), 0);

    // The planted day: observed and baseline equal the generated amounts exactly.
    let a = answer.anomalies.iter().find(|a| arn(a) == ALICE).unwrap();
    let spike_day = day(SPIKE.0, SPIKE.1);
    let window: Vec<Decimal> = (1..=14)
        .map(|k| f.spend(ALICE, spike_day - chrono::Duration::days(k)))
        .collect();
    let observed = f.spend(ALICE, spike_day);
    let baseline = median(window.clone());
    let mad = median(window.iter().map(|v| (v - baseline).abs()).collect());
    assert_eq!(exact(a.observed.as_ref().unwrap()), observed);
    assert_eq!(exact(a.baseline.as_ref().unwrap()), baseline);
    assert_eq!(exact(a.median_absolute_deviation.as_ref().unwrap()), mad);
    assert_eq!(exact(a.excess.as_ref().unwrap()), observed - baseline);
    assert_eq!(a.observed.as_ref().unwrap().currency_code, "USD");
    assert_eq!((a.baseline_days_counted, a.line_items), (14, 3));
    let z = (observed - baseline) / (Decimal::new(14826, 4) * mad);
    let z_f: f64 = z.to_string().parse().unwrap();
    let got = a.robust_z.unwrap();
    assert!((got - z_f).abs() <= 1e-9 * z_f, "z {got} vs {z_f}");
    let factor: f64 = (observed / baseline).to_string().parse().unwrap();
    assert!((a.factor.unwrap() - factor).abs() <= 1e-9 * factor);
    assert!(factor > 8.0 && factor < 12.0, "{factor}");

    // The new principal: its first day, everything in excess.
    let n = answer.anomalies.iter().find(|a| arn(a) == NEWJOB).unwrap();
    let first = f.spend(NEWJOB, day(NEW_DAY.0, NEW_DAY.1));
    assert_eq!(exact(n.observed.as_ref().unwrap()), first);
    assert_eq!(exact(n.excess.as_ref().unwrap()), first);
    assert_eq!(exact(n.baseline.as_ref().unwrap()), Decimal::ZERO);
    assert_eq!(
        (n.robust_z, n.factor, n.baseline_days_counted),
        (None, None, 0)
    );
    assert_eq!(n.principal.as_ref().unwrap().session_name, "nightly");

    // Ordered by excess, descending.
    let excess: Vec<Decimal> = answer
        .anomalies
        .iter()
        .map(|a| exact(a.excess.as_ref().unwrap()))
        .collect();
    assert!(excess.windows(2).all(|p| p[0] >= p[1]), "{excess:?}");

    // A lower min_excess lets the tiny caller's tenfold day through, nothing else new.
    let lower = server
        .client
        .spend_anomalies_all(proto::SpendAnomaliesRequest {
            min_excess: "0.1".into(),
            ..by_principal()
        })
        .await
        .unwrap();
    let tiny: Vec<String> = lower
        .anomalies
        .iter()
        .filter(|a| arn(a) == TINY)
        .map(|a| iso_day(a.day.as_ref().unwrap()))
        .collect();
    assert_eq!(tiny, ["2026-06-10"]);
    assert_eq!(lower.anomalies.len(), answer.anomalies.len() + 1);

    // Pages of two hold the same anomalies in the same order.
    let paged = server
        .client
        .spend_anomalies_all(proto::SpendAnomaliesRequest {
            page_size: 2,
            ..by_principal()
        })
        .await
        .unwrap();
    assert_eq!(paged.anomalies, answer.anomalies);
    server.stop().await;
}

/// The number in the answer's "N groups have no baseline yet" note (0 without it).
fn no_baseline_count(info: Option<&proto::AnswerInfo>) -> u64 {
    let notes = info.map(|i| i.notes.as_slice()).unwrap_or_default();
    let counts: Vec<u64> = notes
        .iter()
        .filter(|n| n.contains("no baseline yet"))
        .map(|n| n.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(counts.len() <= 1, "{notes:?}");
    counts.first().copied().unwrap_or(0)
}

#[tokio::test]
async fn the_first_days_of_data_have_no_baseline_and_nothing_is_new() {
    // The export starts on 2026-05-01: every caller spends from its first days, whose
    // windows reach back before the data. Without the rule each was NEW on its first
    // day (and the heavy user's first Monday, against a history of one weekday and a
    // weekend, a fiftyfold spike).
    let server = TestServer::start(&[export()]).await;
    let may = proto::SpendAnomaliesRequest {
        time_range: range("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"),
        ..by_principal()
    };
    let answer = server.client.spend_anomalies_all(may).await.unwrap();
    let found: Vec<_> = answer
        .anomalies
        .iter()
        .map(|a| (arn(a), iso_day(a.day.as_ref().unwrap())))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
    // ALICE, HEAVY, TINY, WEEKLY (first on Monday 2026-05-04), the tax without a caller
    // (USD) and EURO (EUR).
    let notes = &answer.info.as_ref().unwrap().notes;
    assert!(
        notes.contains(&"6 groups have no baseline yet: on examined days their baseline window starts before the first day of data (2026-05-01) and holds none of their line items, which is neither new nor a spike".to_owned()),
        "{notes:?}"
    );
    // From 2026-05-15 on every window is covered: June's new job is new (the planted
    // test), and a range starting there has no such note.
    let late = server
        .client
        .spend_anomalies_all(proto::SpendAnomaliesRequest {
            time_range: range("2026-05-15T00:00:00Z", "2026-07-01T00:00:00Z"),
            ..by_principal()
        })
        .await
        .unwrap();
    assert_eq!(no_baseline_count(late.info.as_ref()), 0);
    assert!(late.anomalies.iter().any(|a| arn(a) == NEWJOB));
    server.stop().await;
}

/// One request, as the service is asked it and as duckdb_anomalies.py reads it.
struct Case {
    id: &'static str,
    root: &'static Path,
    spec: Value,
    request: proto::SpendAnomaliesRequest,
}

fn cases() -> Vec<Case> {
    let small_range = range("2026-04-01T00:00:00Z", "2026-08-01T00:00:00Z");
    let small = ("2026-04-01T00:00:00Z", "2026-08-01T00:00:00Z");
    let june = ("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z");
    let spec = |(start, end): (&str, &str), dimension: &str, extra: Value| {
        let mut v = json!({"start": start, "end": end, "dimension": dimension});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let d = |x: proto::Dimension| i32::from(x);
    vec![
        Case {
            id: "arn_defaults",
            root: export(),
            spec: spec(june, "principal_arn", json!({})),
            request: by_principal(),
        },
        Case {
            id: "team_week_loose",
            root: export(),
            spec: spec(
                june,
                "tag",
                json!({"tag_key": TEAM, "baseline_days": 7, "min_factor": "2.5",
                       "min_robust_z": 2.0, "min_excess": "0.1"}),
            ),
            request: proto::SpendAnomaliesRequest {
                time_range: range(june.0, june.1),
                dimension: d(proto::Dimension::Tag),
                tag_key: TEAM.into(),
                baseline_days: 7,
                min_factor: "2.5".into(),
                min_robust_z: Some(2.0),
                min_excess: "0.1".into(),
                ..Default::default()
            },
        },
        Case {
            id: "role_everything",
            root: export(),
            spec: spec(
                ("2026-05-10T00:00:00Z", "2026-07-01T00:00:00Z"),
                "principal_role",
                json!({"min_factor": "1", "min_robust_z": 0.0, "min_excess": "0"}),
            ),
            request: proto::SpendAnomaliesRequest {
                time_range: range("2026-05-10T00:00:00Z", "2026-07-01T00:00:00Z"),
                dimension: d(proto::Dimension::Principal),
                principal_grouping: proto::PrincipalGrouping::Role.into(),
                min_factor: "1".into(),
                min_robust_z: Some(0.0),
                min_excess: "0".into(),
                ..Default::default()
            },
        },
        Case {
            id: "account_usage_only",
            root: export(),
            spec: spec(
                june,
                "principal_account",
                json!({"baseline_days": 3, "min_factor": "1.5", "min_robust_z": 1.0,
                       "filter": {"line_item_types": ["Usage"]}}),
            ),
            request: proto::SpendAnomaliesRequest {
                time_range: range(june.0, june.1),
                dimension: d(proto::Dimension::Principal),
                principal_grouping: proto::PrincipalGrouping::Account.into(),
                baseline_days: 3,
                min_factor: "1.5".into(),
                min_robust_z: Some(1.0),
                filter: Some(proto::Filter {
                    line_item_types: vec!["Usage".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        },
        Case {
            id: "may_from_the_data_start_everything",
            root: export(),
            spec: spec(
                ("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"),
                "principal_arn",
                json!({"baseline_days": 10, "min_factor": "1", "min_robust_z": 0.0, "min_excess": "0"}),
            ),
            request: proto::SpendAnomaliesRequest {
                time_range: range("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"),
                dimension: d(proto::Dimension::Principal),
                baseline_days: 10,
                min_factor: "1".into(),
                min_robust_z: Some(0.0),
                min_excess: "0".into(),
                ..Default::default()
            },
        },
        Case {
            id: "model_defaults",
            root: export(),
            spec: spec(june, "model", json!({})),
            request: proto::SpendAnomaliesRequest {
                time_range: range(june.0, june.1),
                dimension: d(proto::Dimension::Model),
                ..Default::default()
            },
        },
        Case {
            id: "small_role_month",
            root: small_export(),
            spec: spec(small, "principal_role", json!({"baseline_days": 30})),
            request: proto::SpendAnomaliesRequest {
                time_range: small_range,
                dimension: d(proto::Dimension::Principal),
                principal_grouping: proto::PrincipalGrouping::Role.into(),
                baseline_days: 30,
                ..Default::default()
            },
        },
        Case {
            id: "small_team_net_loose",
            root: small_export(),
            spec: spec(
                small,
                "tag",
                json!({"tag_key": TEAM, "metric": "net_unblended", "min_factor": "1.25",
                       "min_robust_z": 1.5, "min_excess": "0.05"}),
            ),
            request: proto::SpendAnomaliesRequest {
                time_range: small_range,
                dimension: d(proto::Dimension::Tag),
                tag_key: TEAM.into(),
                cost_metric: proto::CostMetric::NetUnblended.into(),
                min_factor: "1.25".into(),
                min_robust_z: Some(1.5),
                min_excess: "0.05".into(),
                ..Default::default()
            },
        },
        Case {
            id: "small_arn_everything",
            root: small_export(),
            spec: spec(
                small,
                "principal_arn",
                json!({"baseline_days": 5, "min_factor": "1", "min_robust_z": 0.0,
                       "min_excess": "0"}),
            ),
            request: proto::SpendAnomaliesRequest {
                time_range: small_range,
                dimension: d(proto::Dimension::Principal),
                baseline_days: 5,
                min_factor: "1".into(),
                min_robust_z: Some(0.0),
                min_excess: "0".into(),
                page_size: 500,
                ..Default::default()
            },
        },
        Case {
            id: "small_model_everything",
            root: small_export(),
            spec: spec(
                small,
                "model",
                json!({"min_factor": "1", "min_robust_z": 0.0, "min_excess": "0"}),
            ),
            request: proto::SpendAnomaliesRequest {
                time_range: small_range,
                dimension: d(proto::Dimension::Model),
                min_factor: "1".into(),
                min_robust_z: Some(0.0),
                min_excess: "0".into(),
                ..Default::default()
            },
        },
    ]
}

/// duckdb_anomalies.py's answers to `queries` over the export at `root`.
fn reference(root: &Path, queries: &[Value]) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/duckdb_anomalies.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .arg(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is needed for the DuckDB cross-check: {e}"));
    let input = json!({ "queries": queries }).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the DuckDB anomalies reference failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// An anomaly's exact fields (currency, group, day, kind, observed, baseline, MAD,
/// excess, counted days, line items) and its two doubles (robust z, factor).
type Exact = (
    String,
    Option<String>,
    String,
    String,
    [Decimal; 4],
    i64,
    i64,
);
type Doubles = (Option<f64>, Option<f64>);

fn ours(a: &proto::SpendAnomaly, dimension: &str) -> (Exact, Doubles) {
    let group = match dimension {
        "tag" => a
            .tag
            .as_ref()
            .and_then(|t| (!t.untagged).then(|| t.value.clone())),
        "model" => Some(a.model.clone()),
        _ => {
            let p = a.principal.as_ref().unwrap();
            if p.kind == proto::PrincipalKind::Unattributed as i32 {
                None
            } else if p.arn.is_empty() {
                Some(p.account_id.clone())
            } else {
                Some(p.arn.clone())
            }
        }
    };
    let kind = match proto::AnomalyKind::try_from(a.kind).unwrap() {
        proto::AnomalyKind::Spike => "spike",
        proto::AnomalyKind::New => "new",
        proto::AnomalyKind::Unspecified => "unspecified",
    };
    let m = |m: &Option<proto::Money>| exact(m.as_ref().unwrap());
    (
        (
            a.observed.as_ref().unwrap().currency_code.clone(),
            group,
            iso_day(a.day.as_ref().unwrap()),
            kind.to_owned(),
            [
                m(&a.observed),
                m(&a.baseline),
                m(&a.median_absolute_deviation),
                m(&a.excess),
            ],
            i64::from(a.baseline_days_counted),
            a.line_items,
        ),
        (a.robust_z, a.factor),
    )
}

fn theirs(r: &Value) -> (Exact, Doubles) {
    let dec = |f: &str| -> Decimal { r[f].as_str().unwrap().parse().unwrap() };
    let double = |f: &str| r[f].as_str().map(|s| s.parse::<f64>().unwrap());
    (
        (
            r["currency"].as_str().unwrap().to_owned(),
            r["group"].as_str().map(str::to_owned),
            r["day"].as_str().unwrap().to_owned(),
            r["kind"].as_str().unwrap().to_owned(),
            [dec("observed"), dec("baseline"), dec("mad"), dec("excess")],
            r["counted_days"].as_i64().unwrap(),
            r["line_items"].as_i64().unwrap(),
        ),
        (double("robust_z"), double("factor")),
    )
}

/// Doubles equal to 1e-9 relative (both computed from the same exact integers, in a
/// possibly different order of rounding), infinities equal.
fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) if x.is_infinite() || y.is_infinite() => x == y,
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    }
}

/// Asserts the service's anomalies equal DuckDB's, in the same order, and its count
/// of groups without a baseline yet too.
fn assert_same(id: &str, dimension: &str, got: &proto::SpendAnomaliesResponse, expected: &Value) {
    assert_eq!(
        Some(no_baseline_count(got.info.as_ref())),
        expected["without_baseline"][id].as_u64(),
        "{id}: groups without a baseline yet"
    );
    let got = &got.anomalies;
    let want: Vec<_> = expected["results"][id]
        .as_array()
        .unwrap_or_else(|| panic!("no reference answer for {id}"))
        .iter()
        .map(theirs)
        .collect();
    let got: Vec<_> = got.iter().map(|a| ours(a, dimension)).collect();
    assert!(
        !want.is_empty(),
        "{id}: DuckDB found no anomaly, the case tests nothing"
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g.0 == w.0 && close(g.1.0, w.1.0) && close(g.1.1, w.1.1),
            "{id}: anomaly {i} differs:\nservice {g:?}\nDuckDB  {w:?}"
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{id}: service and DuckDB count differently"
    );
}

#[tokio::test]
async fn every_anomaly_equals_duckdb_median_and_mad() {
    // The reference is first held to its own hand-computed case (the same one the unit
    // test query::anomalies::tests::the_reference_self_test_case holds the service to).
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/duckdb_anomalies.py"
    );
    let check = Command::new("python3")
        .args([script, "--self-test"])
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stdout == b"OK\n",
        "the DuckDB anomalies reference fails its self-test:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let cases = cases();
    for root in [export(), small_export()] {
        let mine: Vec<&Case> = cases.iter().filter(|c| c.root == root).collect();
        let queries: Vec<Value> = mine
            .iter()
            .map(|c| {
                let mut q = c.spec.clone();
                q["id"] = json!(c.id);
                q
            })
            .collect();
        let expected = reference(root, &queries);
        let server = TestServer::start(&[root]).await;
        for case in mine {
            let answer = server
                .client
                .spend_anomalies_all(case.request.clone())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.id));
            let dimension = case.spec["dimension"].as_str().unwrap();
            assert_same(case.id, dimension, &answer, &expected);
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_scoped_caller_sees_only_its_own_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callers.yaml");
    let token = "anomaly-scope-token-3e1a";
    let digest: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let scope = json!({"accounts": ["111111111111", "333333333333"]});
    let file = json!({"callers": [{"name": "two-accounts", "token_sha256": digest, "admin": false, "scope": scope}]});
    std::fs::write(&path, file.to_string()).unwrap();
    let server = TestServer::serve(
        &[format!("file://{}", export().display())],
        &["--auth-file".into(), path.display().to_string()],
    )
    .await;
    let client = Client::builder(format!("http://{}", server.handle.addr()))
        .bearer_token(token)
        .build()
        .await
        .unwrap();
    let answer = client.spend_anomalies_all(by_principal()).await.unwrap();
    let spec = json!({"id": "scoped", "start": "2026-06-01T00:00:00Z", "end": "2026-07-01T00:00:00Z",
                      "dimension": "principal_arn", "scope": scope});
    let expected = reference(export(), &[spec]);
    assert_same("scoped", "principal_arn", &answer, &expected);
    assert!(answer.anomalies.iter().any(|a| arn(a) == ALICE));
    assert!(!answer.anomalies.iter().any(|a| arn(a) == NEWJOB));
    // Asking for another account's callers is refused, not answered empty.
    let outside = client
        .spend_anomalies(proto::SpendAnomaliesRequest {
            filter: Some(proto::Filter {
                account_ids: vec!["222222222222".into()],
                ..Default::default()
            }),
            ..by_principal()
        })
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Code::PermissionDenied, "{outside}");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let server = TestServer::start(&[export()]).await;
    let mut raw = server.client.raw();
    let r = by_principal;
    let cases: Vec<(proto::SpendAnomaliesRequest, &str, &str)> = vec![
        (
            proto::SpendAnomaliesRequest {
                time_range: range("2026-07-01T00:00:00Z", "2026-06-01T00:00:00Z"),
                ..r()
            },
            "time_range",
            "not after start",
        ),
        (
            proto::SpendAnomaliesRequest {
                time_range: range("2026-06-01T12:00:00Z", "2026-07-01T00:00:00Z"),
                ..r()
            },
            "time_range.start",
            "not the start of a UTC day",
        ),
        (
            proto::SpendAnomaliesRequest {
                baseline_days: 2,
                ..r()
            },
            "baseline_days",
            "use 3 to 90 days",
        ),
        (
            proto::SpendAnomaliesRequest {
                baseline_days: 91,
                ..r()
            },
            "baseline_days",
            "use 3 to 90 days",
        ),
        (
            proto::SpendAnomaliesRequest {
                baseline_days: -14,
                ..r()
            },
            "baseline_days",
            "out of bounds",
        ),
        (
            proto::SpendAnomaliesRequest {
                min_factor: "-3".into(),
                ..r()
            },
            "min_factor",
            "out of bounds",
        ),
        (
            proto::SpendAnomaliesRequest {
                min_factor: "0.5".into(),
                ..r()
            },
            "min_factor",
            "from 1 (no factor test)",
        ),
        (
            proto::SpendAnomaliesRequest {
                min_factor: "3x".into(),
                ..r()
            },
            "min_factor",
            "not a plain decimal",
        ),
        (
            proto::SpendAnomaliesRequest {
                min_robust_z: Some(-1.0),
                ..r()
            },
            "min_robust_z",
            "at least 0",
        ),
        (
            proto::SpendAnomaliesRequest {
                min_robust_z: Some(f64::NAN),
                ..r()
            },
            "min_robust_z",
            "finite",
        ),
        (
            proto::SpendAnomaliesRequest {
                min_excess: "-1".into(),
                ..r()
            },
            "min_excess",
            "at least 0",
        ),
        (
            proto::SpendAnomaliesRequest {
                min_excess: "0.00000000001".into(),
                ..r()
            },
            "min_excess",
            "at most 10 decimal places",
        ),
        (
            proto::SpendAnomaliesRequest {
                dimension: proto::Dimension::Tag.into(),
                // Any character is a key the data may hold (a newline too); only the
                // length is bounded.
                tag_key: format!("iamPrincipal/{}", "k".repeat(129)),
                ..r()
            },
            "tag_key",
            "at most 128 characters",
        ),
        (
            proto::SpendAnomaliesRequest {
                dimension: proto::Dimension::Tag.into(),
                ..r()
            },
            "tag_key",
            "is required",
        ),
        (
            proto::SpendAnomaliesRequest {
                dimension: proto::Dimension::Unspecified.into(),
                ..r()
            },
            "dimension",
            "is required",
        ),
        (
            proto::SpendAnomaliesRequest {
                dimension: proto::Dimension::Region.into(),
                ..r()
            },
            "dimension",
            "DIMENSION_REGION cannot group anomalies",
        ),
        (
            proto::SpendAnomaliesRequest {
                principal_grouping: 9,
                ..r()
            },
            "principal_grouping",
            "not a known value",
        ),
        (
            proto::SpendAnomaliesRequest {
                page_size: 10_001,
                ..r()
            },
            "page_size",
            "",
        ),
    ];
    for (request, field, needle) in cases {
        let status = raw.spend_anomalies(request.clone()).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{request:?}: {status:?}"
        );
        let bad = status
            .get_details_bad_request()
            .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
        assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
        assert_eq!(bad.field_violations[0].field, field, "{status:?}");
        assert!(
            status.message().contains(needle),
            "{field}: {:?} lacks {needle:?}",
            status.message()
        );
    }
    server.stop().await;
}
