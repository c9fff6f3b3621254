//! Every kind of answer, checked against an independent engine: DuckDB (Python) applies
//! the data contract's rules as plain SQL to the same generated files, and the service's
//! answers must equal its answers exactly, to the last of ten decimal places.

use std::{collections::BTreeMap, io::Write, process::Command};

use bedrock_attribution_client::proto::{self, Dimension as D, PrincipalGrouping as G};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::common::{TestServer, exact, range, small_export, sum_rows, totals};

/// One query, as the service is asked it and as the reference script reads it.
struct Case {
    id: &'static str,
    spec: Value,
    rpc: Rpc,
}

enum Rpc {
    ByPrincipal(proto::CostByPrincipalRequest),
    ByTag(proto::CostByTagRequest),
    Tokens(proto::TokenUsageRequest),
}

pub(crate) type Key = BTreeMap<String, Option<String>>;
/// Cost, input, output, cache read, cache write, line items, allocated cost.
pub(crate) type Sums = (Decimal, i64, i64, i64, i64, i64, Option<Decimal>);

fn iso(ts: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(ts.seconds, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

const CATEGORY_NAMES: [&str; 11] = [
    "",
    "on_demand",
    "batch",
    "flex",
    "priority",
    "provisioned_throughput",
    "reserved",
    "latency_optimized",
    "customization",
    "custom_model_import",
    "other",
];

const ROUTING_NAMES: [&str; 4] = [
    "",
    "in_region",
    "cross_region_geographic",
    "cross_region_global",
];

/// The reference script's key names for a row's dimensions.
pub(crate) fn key_of(row: &proto::Row, names: &[&str], grouping: G) -> Key {
    let mut key = Key::new();
    key.insert(
        "currency".into(),
        Some(row.cost.as_ref().unwrap().currency_code.clone()),
    );
    key.insert("period_start".into(), row.period_start.as_ref().map(iso));
    for name in names {
        let value = match *name {
            "principal_arn" | "principal_role" | "principal_account" => {
                let p = row.principal.as_ref().unwrap();
                if p.kind == proto::PrincipalKind::Unattributed as i32 {
                    None
                } else if grouping == G::Account && !p.account_id.is_empty() && p.arn.is_empty() {
                    Some(p.account_id.clone())
                } else {
                    Some(p.arn.clone())
                }
            }
            "tag" => row
                .tag
                .as_ref()
                .and_then(|t| (!t.untagged).then(|| t.value.clone())),
            "tag2" => unreachable!(),
            "model" => Some(row.model.clone()),
            "account" => Some(row.account_id.clone()),
            "region" => Some(row.region.clone()),
            "usage_category" => Some(CATEGORY_NAMES[row.usage_category as usize].to_owned()),
            "routing" => Some(ROUTING_NAMES[row.routing as usize].to_owned()),
            "line_item_type" => Some(row.line_item_type.clone()),
            other => panic!("unknown key {other}"),
        };
        key.insert((*name).to_owned(), value);
    }
    key
}

/// Asserts that the service's rows and DuckDB's are the same groups with the same sums,
/// showing up to five rows of each side that the other lacks or sums differently.
pub(crate) fn assert_same_rows(
    what: &str,
    ours: &BTreeMap<Key, Sums>,
    theirs: &BTreeMap<Key, Sums>,
) {
    let only_ours: Vec<_> = ours
        .iter()
        .filter(|(k, v)| theirs.get(*k) != Some(*v))
        .take(5)
        .collect();
    let only_theirs: Vec<_> = theirs
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(*v))
        .take(5)
        .collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "{what}: service {only_ours:#?}\nDuckDB {only_theirs:#?}"
    );
}

/// The reference's rows of one answer, by key (`allocated` only where it answered one).
pub(crate) fn reference_rows(rows: &Value, id: &str) -> BTreeMap<Key, Sums> {
    rows.as_array()
        .unwrap_or_else(|| panic!("no reference answer for {id}"))
        .iter()
        .map(|row| {
            let key: Key = row["keys"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned)))
                .collect();
            let n = |f: &str| row[f].as_i64().unwrap();
            let cost: Decimal = row["cost"].as_str().unwrap().parse().unwrap();
            (
                key,
                (
                    cost,
                    n("input"),
                    n("output"),
                    n("cache_read"),
                    n("cache_write"),
                    n("line_items"),
                    row["allocated"].as_str().map(|a| a.parse().unwrap()),
                ),
            )
        })
        .collect()
}

pub(crate) fn sums(row: &proto::Row) -> Sums {
    let t = row.tokens.unwrap();
    (
        exact(row.cost.as_ref().unwrap()),
        t.input,
        t.output,
        t.cache_read,
        t.cache_write,
        row.line_items,
        row.allocated_cost.as_ref().map(exact),
    )
}

fn names_of(spec: &Value) -> Vec<&str> {
    spec["group_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn cases() -> Vec<Case> {
    let all = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
    let mid = ("2026-04-05T00:00:00Z", "2026-06-17T13:00:00Z");
    let week = ("2026-06-08T00:00:00Z", "2026-06-15T00:00:00Z");
    let months = ("2026-03-01T00:00:00Z", "2026-08-01T00:00:00Z");
    let r = |(s, e): (&str, &str)| range(s, e);
    let spec = |(s, e): (&str, &str),
                metric: &str,
                granularity: &str,
                group_by: &[&str],
                extra: Value| {
        let mut v = json!({"start": s, "end": e, "metric": metric, "granularity": granularity, "group_by": group_by});
        if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        v
    };
    let team_filter = proto::Filter {
        tags: vec![proto::TagFilter {
            key: "iamPrincipal/team".into(),
            values: vec!["search".into(), "チーム-α".into()],
            untagged: true,
        }],
        ..Default::default()
    };
    let mixed_filter = proto::Filter {
        account_ids: vec!["210987654321".into(), "678901234567".into()],
        line_item_types: vec!["Usage".into(), "Tax".into()],
        regions: vec!["us-east-1".into(), "".into()],
        usage_categories: vec![
            proto::UsageCategory::OnDemand.into(),
            proto::UsageCategory::Other.into(),
            proto::UsageCategory::ProvisionedThroughput.into(),
        ],
        payer_account_ids: vec!["111122223333".into()],
        ..Default::default()
    };
    let routing_filter = proto::Filter {
        routings: vec![
            proto::Routing::CrossRegionGeographic.into(),
            proto::Routing::CrossRegionGlobal.into(),
        ],
        ..Default::default()
    };
    let principal_filter = proto::Filter {
        principals: vec![
            "".into(),
            "arn:aws:iam::210987654321:user/alice0".into(),
            "bedrock-console-session:unknown".into(),
        ],
        models: vec![
            "Claude Sonnet 4.6".into(),
            "Claude4.6Sonnet".into(),
            "".into(),
        ],
        ..Default::default()
    };
    vec![
        Case {
            id: "arn_all",
            spec: spec(all, "unblended", "none", &["principal_arn"], json!({})),
            rpc: Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: r(all),
                page_size: 37,
                ..Default::default()
            }),
        },
        Case {
            id: "role_monthly_net",
            spec: spec(
                all,
                "net_unblended",
                "monthly",
                &["principal_role", "model"],
                json!({}),
            ),
            rpc: Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: r(all),
                grouping: G::Role.into(),
                cost_metric: proto::CostMetric::NetUnblended.into(),
                granularity: proto::Granularity::Monthly.into(),
                also_group_by: vec![D::Model.into()],
                ..Default::default()
            }),
        },
        Case {
            id: "account_daily_blended_mid",
            spec: spec(
                mid,
                "blended",
                "daily",
                &["principal_account", "region"],
                json!({}),
            ),
            rpc: Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: r(mid),
                grouping: G::Account.into(),
                cost_metric: proto::CostMetric::Blended.into(),
                granularity: proto::Granularity::Daily.into(),
                also_group_by: vec![D::Region.into()],
                ..Default::default()
            }),
        },
        Case {
            id: "team_monthly_public",
            spec: spec(
                all,
                "public_on_demand",
                "monthly",
                &["tag", "line_item_type"],
                json!({"tag_key": "iamPrincipal/team"}),
            ),
            rpc: Rpc::ByTag(proto::CostByTagRequest {
                time_range: r(all),
                tag_key: "iamPrincipal/team".into(),
                cost_metric: proto::CostMetric::PublicOnDemand.into(),
                granularity: proto::Granularity::Monthly.into(),
                also_group_by: vec![D::LineItemType.into()],
                ..Default::default()
            }),
        },
        Case {
            id: "quoted_key_by_role",
            spec: spec(
                all,
                "unblended",
                "none",
                &["tag", "principal_role"],
                json!({"tag_key": "iamPrincipal/it's \"quoted\""}),
            ),
            rpc: Rpc::ByTag(proto::CostByTagRequest {
                time_range: r(all),
                tag_key: "iamPrincipal/it's \"quoted\"".into(),
                also_group_by: vec![D::Principal.into()],
                principal_grouping: G::Role.into(),
                ..Default::default()
            }),
        },
        Case {
            id: "cost_center_filtered",
            spec: spec(
                all,
                "unblended",
                "none",
                &["tag"],
                json!({"tag_key": "iamPrincipal/cost-center", "filter": {"tags": [{"key": "iamPrincipal/team", "values": ["search", "チーム-α"], "untagged": true}]}}),
            ),
            rpc: Rpc::ByTag(proto::CostByTagRequest {
                time_range: r(all),
                tag_key: "iamPrincipal/cost-center".into(),
                filter: Some(team_filter),
                ..Default::default()
            }),
        },
        Case {
            id: "tokens_hourly_week",
            spec: spec(
                week,
                "unblended",
                "hourly",
                &["principal_arn", "model", "usage_category"],
                json!({}),
            ),
            rpc: Rpc::Tokens(proto::TokenUsageRequest {
                time_range: r(week),
                granularity: proto::Granularity::Hourly.into(),
                group_by: vec![
                    D::Principal.into(),
                    D::Model.into(),
                    D::UsageCategory.into(),
                ],
                page_size: 250,
                ..Default::default()
            }),
        },
        Case {
            id: "tokens_mixed_filter",
            spec: spec(
                all,
                "unblended",
                "monthly",
                &["account", "usage_category", "line_item_type"],
                json!({"filter": {
                "account_ids": ["210987654321", "678901234567"], "line_item_types": ["Usage", "Tax"], "regions": ["us-east-1", ""],
                "usage_categories": ["on_demand", "other", "provisioned_throughput"], "payer_account_ids": ["111122223333"]}}),
            ),
            rpc: Rpc::Tokens(proto::TokenUsageRequest {
                time_range: r(all),
                granularity: proto::Granularity::Monthly.into(),
                group_by: vec![
                    D::Account.into(),
                    D::UsageCategory.into(),
                    D::LineItemType.into(),
                ],
                filter: Some(mixed_filter),
                ..Default::default()
            }),
        },
        Case {
            id: "tokens_principal_filter",
            spec: spec(
                all,
                "unblended",
                "none",
                &["principal_arn", "model"],
                json!({"filter": {
                "principals": ["", "arn:aws:iam::210987654321:user/alice0", "bedrock-console-session:unknown"],
                "models": ["Claude Sonnet 4.6", "Claude4.6Sonnet", ""]}}),
            ),
            rpc: Rpc::Tokens(proto::TokenUsageRequest {
                time_range: r(all),
                group_by: vec![D::Principal.into(), D::Model.into()],
                filter: Some(principal_filter),
                ..Default::default()
            }),
        },
        Case {
            id: "models_by_region_all",
            spec: spec(all, "unblended", "none", &["model", "region"], json!({})),
            rpc: Rpc::Tokens(proto::TokenUsageRequest {
                time_range: r(all),
                group_by: vec![D::Model.into(), D::Region.into()],
                ..Default::default()
            }),
        },
        Case {
            id: "routing_all",
            spec: spec(all, "unblended", "none", &["routing"], json!({})),
            rpc: Rpc::Tokens(proto::TokenUsageRequest {
                time_range: r(all),
                group_by: vec![D::Routing.into()],
                ..Default::default()
            }),
        },
        Case {
            id: "model_routing_monthly",
            spec: spec(
                all,
                "unblended",
                "monthly",
                &["model", "routing"],
                json!({}),
            ),
            rpc: Rpc::Tokens(proto::TokenUsageRequest {
                time_range: r(all),
                granularity: proto::Granularity::Monthly.into(),
                group_by: vec![D::Model.into(), D::Routing.into()],
                ..Default::default()
            }),
        },
        Case {
            id: "cross_region_by_role_daily",
            spec: spec(
                mid,
                "net_unblended",
                "daily",
                &["principal_role", "usage_category"],
                json!({"filter": {"routings": ["cross_region_geographic", "cross_region_global"]}}),
            ),
            rpc: Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: r(mid),
                grouping: G::Role.into(),
                cost_metric: proto::CostMetric::NetUnblended.into(),
                granularity: proto::Granularity::Daily.into(),
                also_group_by: vec![D::UsageCategory.into()],
                filter: Some(routing_filter),
                ..Default::default()
            }),
        },
        Case {
            id: "allocated_routing_monthly",
            spec: spec(
                months,
                "unblended",
                "monthly",
                &["principal_account", "routing"],
                json!({"allocation": true}),
            ),
            rpc: Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: r(months),
                grouping: G::Account.into(),
                granularity: proto::Granularity::Monthly.into(),
                also_group_by: vec![D::Routing.into()],
                allocation: proto::Allocation::Proportional.into(),
                ..Default::default()
            }),
        },
        Case {
            id: "allocated_role_monthly",
            spec: spec(
                months,
                "unblended",
                "monthly",
                &["principal_role"],
                json!({"allocation": true}),
            ),
            rpc: Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: r(months),
                grouping: G::Role.into(),
                granularity: proto::Granularity::Monthly.into(),
                allocation: proto::Allocation::Proportional.into(),
                page_size: 41,
                ..Default::default()
            }),
        },
        Case {
            id: "allocated_team_net",
            spec: spec(
                months,
                "net_unblended",
                "none",
                &["tag", "model"],
                json!({"allocation": true, "tag_key": "iamPrincipal/team"}),
            ),
            rpc: Rpc::ByTag(proto::CostByTagRequest {
                time_range: r(months),
                tag_key: "iamPrincipal/team".into(),
                cost_metric: proto::CostMetric::NetUnblended.into(),
                also_group_by: vec![D::Model.into()],
                allocation: proto::Allocation::Proportional.into(),
                ..Default::default()
            }),
        },
        Case {
            id: "allocated_arn_public",
            spec: spec(
                months,
                "public_on_demand",
                "none",
                &["principal_arn", "account"],
                json!({"allocation": true}),
            ),
            rpc: Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: r(months),
                cost_metric: proto::CostMetric::PublicOnDemand.into(),
                also_group_by: vec![D::Account.into()],
                allocation: proto::Allocation::Proportional.into(),
                ..Default::default()
            }),
        },
    ]
}

pub(crate) fn reference(specs: &[Value]) -> Value {
    reference_at(crate::common::small_export(), specs)
}

/// The DuckDB reference's answers to `specs` over the export at `root`.
pub(crate) fn reference_at(root: &std::path::Path, specs: &[Value]) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/duckdb_reference.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .arg(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is needed for the DuckDB cross-check: {e}"));
    let input = json!({ "queries": specs }).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the DuckDB reference failed (is the duckdb package installed? `pip install duckdb`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn answers_equal_duckdb_on_the_same_files() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let cases = cases();
    let expected = reference(
        &cases
            .iter()
            .map(|c| {
                json!({"id": c.id})
                    .as_object()
                    .unwrap()
                    .clone()
                    .into_iter()
                    .chain(c.spec.as_object().unwrap().clone())
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            })
            .collect::<Vec<Value>>(),
    );
    for case in &cases {
        let (answer, grouping) = match &case.rpc {
            Rpc::ByPrincipal(r) => (
                c.cost_by_principal_all(r.clone()).await.unwrap(),
                G::try_from(r.grouping).unwrap(),
            ),
            Rpc::ByTag(r) => (
                c.cost_by_tag_all(r.clone()).await.unwrap(),
                G::try_from(r.principal_grouping).unwrap(),
            ),
            Rpc::Tokens(r) => (
                c.token_usage_all(r.clone()).await.unwrap(),
                G::try_from(r.principal_grouping).unwrap(),
            ),
        };
        assert_eq!(
            sum_rows(&answer.rows),
            totals(&answer.totals),
            "{}",
            case.id
        );
        let names = names_of(&case.spec);
        let ours: BTreeMap<Key, Sums> = answer
            .rows
            .iter()
            .map(|r| (key_of(r, &names, grouping), sums(r)))
            .collect();
        assert_eq!(
            ours.len(),
            answer.rows.len(),
            "{}: a group appears twice",
            case.id
        );
        let theirs = reference_rows(&expected["results"][case.id], case.id);
        assert!(
            !theirs.is_empty(),
            "{}: the reference found nothing, the case tests nothing",
            case.id
        );
        assert_same_rows(case.id, &ours, &theirs);
        if case.id == "routing_all" {
            let seen: std::collections::BTreeSet<_> = ours
                .keys()
                .filter_map(|k| k["routing"].as_deref())
                .collect();
            assert_eq!(
                seen,
                ROUTING_NAMES[1..].iter().copied().collect(),
                "{seen:?}"
            );
        }
    }
    server.stop().await;
}

/// Id, range, metric (request and reference names), reference group names, request
/// dimensions and tag key.
type EfficiencyCase<'a> = (
    &'a str,
    (&'a str, &'a str),
    proto::CostMetric,
    &'a str,
    &'a [&'a str],
    Vec<i32>,
    &'a str,
);

/// The efficiency view (TokenUsage with `efficiency`): every row's cost, tokens, cache
/// saving, output/input ratio and cache-read share, and the total saving, equal DuckDB's
/// on the same files, grouped by model, caller, tag value and not at all, over ranges
/// that cut days, under every metric.
#[tokio::test]
async fn efficiency_equals_duckdb() {
    let server = TestServer::start(&[small_export()]).await;
    let mut raw = server.client.raw();
    let cases: [EfficiencyCase<'_>; 4] = [
        (
            "efficiency_models",
            ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            proto::CostMetric::Unblended,
            "unblended",
            &["model"],
            vec![D::Model.into()],
            "",
        ),
        (
            "efficiency_callers_cut_days",
            ("2026-04-05T07:00:00Z", "2026-06-17T13:00:00Z"),
            proto::CostMetric::NetUnblended,
            "net_unblended",
            &["principal_arn"],
            vec![D::Principal.into()],
            "",
        ),
        (
            "efficiency_teams",
            ("2026-03-01T00:00:00Z", "2026-08-01T00:00:00Z"),
            proto::CostMetric::Blended,
            "blended",
            &["tag"],
            vec![D::Tag.into()],
            "iamPrincipal/team",
        ),
        (
            "efficiency_whole",
            ("2026-06-08T00:00:00Z", "2026-06-15T00:00:00Z"),
            proto::CostMetric::PublicOnDemand,
            "public_on_demand",
            &[],
            vec![],
            "",
        ),
    ];
    let specs: Vec<Value> = cases
        .iter()
        .map(|(id, (s, e), _, metric, names, _, tag_key)| {
            json!({"id": id, "start": s, "end": e, "metric": metric, "granularity": "none",
                   "group_by": names, "tag_key": tag_key, "efficiency": true})
        })
        .collect();
    let expected = reference(&specs);
    let mut saving_rows = 0;
    for (id, (s, e), metric, _, names, group_by, tag_key) in &cases {
        let answer = raw
            .token_usage(proto::TokenUsageRequest {
                time_range: range(s, e),
                cost_metric: (*metric).into(),
                group_by: group_by.clone(),
                tag_key: tag_key.to_string(),
                page_size: 10_000,
                efficiency: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.next_page_token.is_empty(), "{id}: one page");
        type Efficiency = (Sums, Decimal, Option<f64>, Option<f64>);
        let ours: BTreeMap<Key, Efficiency> = answer
            .rows
            .iter()
            .map(|r| {
                (
                    key_of(r, names, G::Arn),
                    (
                        sums(r),
                        exact(r.cache_read_saving.as_ref().unwrap()),
                        r.output_input_ratio,
                        r.cache_read_share,
                    ),
                )
            })
            .collect();
        let rows = expected["results"][id].as_array().unwrap();
        let mut total_units: BTreeMap<String, i128> = BTreeMap::new();
        let theirs: BTreeMap<Key, Efficiency> = rows
            .iter()
            .map(|row| {
                let (key, sums) = reference_rows(&Value::Array(vec![row.clone()]), id)
                    .pop_first()
                    .unwrap();
                let saving: Decimal = row["cache_saving"].as_str().unwrap().parse().unwrap();
                let units: i128 = row["cache_saving_units16"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                *total_units
                    .entry(key["currency"].clone().unwrap())
                    .or_default() += units;
                let (_, input, output, cache_read, cache_write, _, _) = sums;
                let all_input = input + cache_read + cache_write;
                let ratio = (all_input > 0).then(|| output as f64 / all_input as f64);
                let share = (all_input > 0).then(|| cache_read as f64 / all_input as f64);
                (key, (sums, saving, ratio, share))
            })
            .collect();
        assert!(!theirs.is_empty(), "{id}: the reference found nothing");
        assert_eq!(ours, theirs, "{id}");
        saving_rows += ours.values().filter(|v| !v.1.is_zero()).count();
        // The total is the exact sum of the rows' savings, rounded once.
        let total: BTreeMap<String, Decimal> = answer
            .total_cache_read_savings
            .iter()
            .map(|m| (m.currency_code.clone(), exact(m)))
            .collect();
        let want: BTreeMap<String, Decimal> = total_units
            .into_iter()
            .map(|(c, u)| {
                let d = Decimal::from_i128_with_scale(u, 16).round_dp_with_strategy(
                    10,
                    rust_decimal::RoundingStrategy::MidpointNearestEven,
                );
                (c, d)
            })
            .collect();
        assert_eq!(total, want, "{id}: total saving");
    }
    assert!(
        saving_rows >= 5,
        "only {saving_rows} rows saved anything: the cases test little"
    );
    server.stop().await;
}
