//! Mistakes a person makes, said out loud: a tag key no line item carries is named in
//! the answer's notes with the closest keys that exist (CostByTag, TokenUsage,
//! SpendAnomalies, and the chargeback CLI refuses the all-UNTAGGED month), and tag keys
//! and values holding NUL or TAB, which answers and listings show, can be asked for as
//! filters and budget scopes, with the same sums as DuckDB.

use std::collections::BTreeMap;

use bedrock_attribution_client::{
    cli::{self, Cli},
    proto::{self, Dimension as D, PrincipalGrouping as G},
};
use bedrock_attribution_server::demo::{CurLineItem, ExportWriter, PeriodLayout, SchemaOptions};
use clap::Parser;
use serde_json::json;

use crate::{
    budgets::flags,
    common::{TestServer, exact, range, small_export},
    reference::{Key, Sums, assert_same_rows, key_of, reference_at, reference_rows, sums},
};

const JULY: (&str, &str) = ("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z");

/// The note of a grouped key that no line item of July carries.
fn unknown_key_note(key: &str, closest: &str) -> String {
    format!(
        "no line item from 2026-07-01 to 2026-08-01 carries tag key {key:?}, so all its spend is UNTAGGED; keys match exactly, case and source prefix included: did you mean {closest}?"
    )
}

#[tokio::test]
async fn a_tag_key_no_line_item_carries_is_named_with_the_closest_keys() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let by_tag = |key: &str| proto::CostByTagRequest {
        time_range: range(JULY.0, JULY.1),
        tag_key: key.into(),
        ..Default::default()
    };
    // Without the source prefix, and in the wrong case.
    for (key, closest) in [
        ("team", "\"iamPrincipal/team\""),
        ("iamPrincipal/Team", "\"iamPrincipal/team\""),
        (
            "iamPrincipal/costcenter",
            "\"iamPrincipal/cost center\" or \"iamPrincipal/cost-center\"",
        ),
    ] {
        let answer = c.cost_by_tag_all(by_tag(key)).await.unwrap();
        assert!(!answer.rows.is_empty(), "{key}: July has spend");
        assert!(
            answer.rows.iter().all(|r| r.tag.as_ref().unwrap().untagged),
            "{key}: all UNTAGGED"
        );
        let notes = answer.info.unwrap().notes;
        assert!(
            notes.contains(&unknown_key_note(key, closest)),
            "{key}: {notes:#?}"
        );
    }
    // The right key: no such note.
    let answer = c
        .cost_by_tag_all(by_tag("iamPrincipal/team"))
        .await
        .unwrap();
    let notes = answer.info.unwrap().notes;
    assert!(
        !notes.iter().any(|n| n.contains("carries tag key")),
        "{notes:#?}"
    );
    // The second key of CostByTag, and TokenUsage's.
    let answer = c
        .cost_by_tag_all(proto::CostByTagRequest {
            also_group_by: vec![D::Tag.into()],
            also_group_by_tag_key: "cost-center".into(),
            ..by_tag("iamPrincipal/team")
        })
        .await
        .unwrap();
    let notes = answer.info.unwrap().notes;
    assert!(
        notes.contains(&unknown_key_note(
            "cost-center",
            "\"iamPrincipal/cost-center\" or \"iamPrincipal/cost center\""
        )),
        "{notes:#?}"
    );
    assert!(
        !notes.iter().any(|n| n.contains("\"iamPrincipal/team\",")),
        "the first key is found: {notes:#?}"
    );
    let answer = c
        .token_usage_all(proto::TokenUsageRequest {
            time_range: range(JULY.0, JULY.1),
            group_by: vec![D::Model.into(), D::Tag.into()],
            tag_key: "team".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let notes = answer.info.unwrap().notes;
    assert!(
        notes.contains(&unknown_key_note("team", "\"iamPrincipal/team\"")),
        "{notes:#?}"
    );
    // SpendAnomalies: its series reaches back over the baseline days.
    let anomalies = c
        .raw()
        .spend_anomalies(proto::SpendAnomaliesRequest {
            time_range: range(JULY.0, JULY.1),
            dimension: D::Tag.into(),
            tag_key: "TEAM".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let notes = anomalies.info.unwrap().notes;
    assert!(
        notes.iter().any(|n| n.starts_with("no line item from 2026-06-")
            && n.ends_with(
                "carries tag key \"TEAM\", so all its spend is UNTAGGED; keys match exactly, case and source prefix included: did you mean \"iamPrincipal/team\"?"
            )),
        "{notes:#?}"
    );
    // A filter on a key no line item carries selects nothing, and says why.
    let answer = c
        .cost_by_tag_all(proto::CostByTagRequest {
            filter: Some(proto::Filter {
                tags: vec![proto::TagFilter {
                    key: "Team".into(),
                    values: vec!["search".into()],
                    untagged: false,
                }],
                ..Default::default()
            }),
            ..by_tag("iamPrincipal/team")
        })
        .await
        .unwrap();
    assert!(answer.rows.is_empty());
    let notes = answer.info.unwrap().notes;
    assert!(
        notes.contains(
            &"no line item from 2026-07-01 to 2026-08-01 carries tag key \"Team\", so the tag filter selects nothing; keys match exactly, case and source prefix included: did you mean \"iamPrincipal/team\"?".to_owned()
        ),
        "{notes:#?}"
    );
    server.stop().await;
}

/// Runs the CLI's `chargeback ARGS...` against the server: what it printed, or the
/// error's report.
async fn chargeback(server: &TestServer, args: &[&str]) -> Result<String, String> {
    let url = format!("http://{}", server.handle.addr());
    let mut argv = vec!["bedrock-attribution", "--server", &url, "chargeback"];
    argv.extend(args);
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    cli::run(&cli, &mut out).await.map_err(|e| e.report())?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn chargeback_refuses_an_all_untagged_month_and_a_month_without_data() {
    let server = TestServer::start(&[small_export()]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("july.csv");
    let file = path.to_str().unwrap();
    let err = chargeback(
        &server,
        &["--month", "2026-07", "--tag-key", "team", "-o", file],
    )
    .await
    .expect_err("all UNTAGGED");
    assert_eq!(
        err,
        format!(
            "every dollar of 2026-07 is UNTAGGED for tag key \"team\" ({}); nothing written: check the key with `list-tag-keys`, or pass --allow-all-untagged to write it anyway",
            unknown_key_note("team", "\"iamPrincipal/team\"")
        )
    );
    assert!(!path.exists(), "nothing written");
    // Meant: written, one UNTAGGED row per currency.
    chargeback(
        &server,
        &[
            "--month",
            "2026-07",
            "--tag-key",
            "team",
            "--allow-all-untagged",
            "-o",
            file,
        ],
    )
    .await
    .unwrap();
    let csv = std::fs::read_to_string(&path).unwrap();
    assert!(csv.lines().count() > 1, "{csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.contains(",team,UNTAGGED,true,")),
        "{csv}"
    );
    // A month no billing period covers.
    let err = chargeback(
        &server,
        &["--month", "2025-01", "--tag-key", "iamPrincipal/team"],
    )
    .await
    .expect_err("no data");
    assert_eq!(
        err,
        "no spend to charge back for 2025-01 (no billing period of the exports covers 2025-01: the answer holds no spend for it); nothing written (`status` shows the billing periods the server holds)"
    );
    // A file that cannot be written is named, without a gRPC code; another format's
    // name is refused before asking.
    let missing = dir.path().join("no-such-dir").join("july.csv");
    let err = chargeback(
        &server,
        &[
            "--month",
            "2026-07",
            "--tag-key",
            "iamPrincipal/team",
            "-o",
            missing.to_str().unwrap(),
        ],
    )
    .await
    .expect_err("no such directory");
    assert!(
        err.starts_with(&format!("cannot write {}: ", missing.display())),
        "{err}"
    );
    let xlsx = dir.path().join("july.xlsx");
    let err = chargeback(
        &server,
        &[
            "--month",
            "2026-07",
            "--tag-key",
            "iamPrincipal/team",
            "-o",
            xlsx.to_str().unwrap(),
        ],
    )
    .await
    .expect_err("xlsx");
    assert!(err.starts_with("INVALID_ARGUMENT: --output "), "{err}");
    assert!(!xlsx.exists());
    server.stop().await;
}

#[tokio::test]
async fn cli_errors_name_the_cli_values() {
    let server = TestServer::start(&[small_export()]).await;
    let url = format!("http://{}", server.handle.addr());
    let cli = Cli::try_parse_from([
        "bedrock-attribution",
        "--server",
        &url,
        "cost-by-principal",
        "--from",
        "2026-07-01",
        "--to",
        "2026-08-01",
        "--allocation",
        "proportional",
        "--granularity",
        "daily",
    ])
    .unwrap();
    let err = cli::run(&cli, &mut Vec::new())
        .await
        .expect_err("daily allocation");
    assert_eq!(
        err.report(),
        "INVALID_ARGUMENT: invalid granularity: --allocation proportional is defined per billing period: use --granularity none or --granularity monthly"
    );
    server.stop().await;
}

const ODD_KEY: &str = "iamPrincipal/te\tam";
const NUL_VALUE: &str = "a\0b";
const TAB_VALUE: &str = "c\td";

/// July: three line items tagged with NUL and TAB in the key or the value, one without.
fn write_odd_export(root: &std::path::Path) {
    let start = chrono::DateTime::parse_from_rfc3339("2026-07-03T10:00:00Z")
        .unwrap()
        .to_utc();
    let item = |id: &str, cost: f64, tags: &[(&str, &str)]| CurLineItem {
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..CurLineItem::bedrock(id, "999999999999", "111111111111", start, cost)
    };
    let items = vec![
        item("n1", 1.25, &[(ODD_KEY, NUL_VALUE)]),
        item(
            "t1",
            2.5,
            &[(ODD_KEY, TAB_VALUE), ("iamPrincipal/team", "x")],
        ),
        item("t2", 0.125, &[(ODD_KEY, TAB_VALUE)]),
        item("u1", 4.0, &[("iamPrincipal/team", "x\0y")]),
    ];
    ExportWriter::new(root, "odd", "s3://b/cur/odd")
        .write_period(
            "2026-07",
            &[items],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 0,
            },
            SchemaOptions::default(),
        )
        .unwrap();
}

#[tokio::test]
async fn tag_keys_and_values_with_nul_and_tab_can_be_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("odd-cur2");
    write_odd_export(&root);
    let state = dir.path().join("budgets.json");
    let server = TestServer::serve(
        &[format!("file://{}", root.display())],
        &flags(&[("--budgets-state", &state)]),
    )
    .await;
    let c = &server.client;

    // The listing shows the key, and a prefix holding the TAB finds it.
    let keys = c
        .list_tag_keys_all(proto::ListTagKeysRequest {
            time_range: range(JULY.0, JULY.1),
            key_prefix: "iamPrincipal/te\t".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = keys.tag_keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(names, [ODD_KEY]);

    // Grouping by the key shows both values; each one, asked for as a filter, gives the
    // same sums as DuckDB's.
    let grouped = c
        .cost_by_tag_all(proto::CostByTagRequest {
            time_range: range(JULY.0, JULY.1),
            tag_key: ODD_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let values: Vec<String> = grouped
        .rows
        .iter()
        .filter_map(|r| {
            r.tag
                .as_ref()
                .filter(|t| !t.untagged)
                .map(|t| t.value.clone())
        })
        .collect();
    assert_eq!(values, [TAB_VALUE, NUL_VALUE], "cost descending");
    let mut specs = Vec::new();
    let mut ours: Vec<(String, BTreeMap<Key, Sums>)> = Vec::new();
    for (i, (key, value)) in [
        (ODD_KEY, NUL_VALUE),
        (ODD_KEY, TAB_VALUE),
        ("iamPrincipal/team", "x\0y"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("odd-{i}");
        let answer = c
            .cost_by_tag_all(proto::CostByTagRequest {
                time_range: range(JULY.0, JULY.1),
                tag_key: "iamPrincipal/team".into(),
                filter: Some(proto::Filter {
                    tags: vec![proto::TagFilter {
                        key: key.into(),
                        values: vec![value.into()],
                        untagged: false,
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{key:?}={value:?}: {e}"));
        assert!(!answer.rows.is_empty(), "{key:?}={value:?} selects spend");
        let rows = answer
            .rows
            .iter()
            .map(|r| (key_of(r, &["tag"], G::Arn), sums(r)))
            .collect();
        ours.push((id.clone(), rows));
        specs.push(json!({
            "id": id,
            "start": JULY.0,
            "end": JULY.1,
            "group_by": ["tag"],
            "tag_key": "iamPrincipal/team",
            "filter": {"tags": [{"key": key, "values": [value]}]},
        }));
    }
    let duck = reference_at(&root, &specs);
    for (id, rows) in &ours {
        let theirs = reference_rows(&duck["results"][id.as_str()], id);
        assert!(!theirs.is_empty(), "{id}: the reference found nothing");
        assert_same_rows(id, rows, &theirs);
    }

    // A budget scoped to the NUL value is accepted and counts that value's spend.
    let budget = c
        .raw()
        .create_budget(proto::CreateBudgetRequest {
            name: "odd".into(),
            scope: Some(proto::BudgetScope {
                tag: Some(proto::BudgetTag {
                    key: ODD_KEY.into(),
                    value: NUL_VALUE.into(),
                }),
                ..Default::default()
            }),
            monthly_amount: Some(proto::Money {
                currency_code: "USD".into(),
                exact: "100".into(),
                ..Default::default()
            }),
            thresholds: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    let status = c
        .raw()
        .budget_status(proto::BudgetStatusRequest {
            month: "2026-07".into(),
            budget_ids: vec![budget.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let nul_row = grouped
        .rows
        .iter()
        .find(|r| r.tag.as_ref().is_some_and(|t| t.value == NUL_VALUE))
        .unwrap();
    assert_eq!(
        exact(status.budgets[0].spend_to_date.as_ref().unwrap()),
        exact(nul_row.cost.as_ref().unwrap())
    );
    server.stop().await;
}
