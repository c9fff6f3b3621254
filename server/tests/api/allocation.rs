//! Fully loaded chargeback: hand-computed proportional allocation through the real
//! server (account scope, payer fallback, periods and currencies without callers, an
//! uneven split settled by largest remainder).

use bedrock_attribution_client::proto::{self, Allocation, Dimension, PrincipalGrouping};
use bedrock_attribution_server::demo::{CurLineItem, ExportWriter, PeriodLayout, SchemaOptions};
use chrono::{TimeZone, Utc};
use tonic::Code;

use crate::common::{TestServer, d, range, small_export, sum_rows, totals};

const X: &str = "arn:aws:iam::111111111111:user/x";
const Y: &str = "arn:aws:sts::111111111111:assumed-role/app/y";
const Z: &str = "arn:aws:iam::111111111111:user/z";
const W: &str = "arn:aws:iam::444444444444:user/w";

fn line(
    id: &str,
    period: (i32, u32),
    account: &str,
    kind: &str,
    caller: Option<&str>,
    cost: f64,
) -> CurLineItem {
    let start = Utc
        .with_ymd_and_hms(period.0, period.1, 1, 0, 0, 0)
        .single()
        .unwrap();
    CurLineItem {
        line_item_type: kind.into(),
        usage_type: Some(
            if kind == "Usage" {
                "USE1-Nova2.0Lite-input-tokens"
            } else {
                ""
            }
            .into(),
        ),
        principal: caller.map(str::to_owned),
        currency: if account == "333333333333" {
            "EUR"
        } else {
            "USD"
        }
        .into(),
        tags: caller
            .map(|_| {
                vec![(
                    "iamPrincipal/team".to_string(),
                    if id.starts_with('x') { "a" } else { "b" }.to_string(),
                )]
            })
            .unwrap_or_default(),
        ..CurLineItem::bedrock(
            id,
            "999999999999",
            account,
            start + chrono::Duration::hours(5),
            cost,
        )
    }
}

/// June: no caller column at all. July: tax and an EDP discount in account 1111 split
/// over x, y, z; account 2222 without callers falls back to the payer's callers; EUR
/// account 3333 has no callers anywhere. August: 10 units over three equal callers.
fn write_fixture(root: &std::path::Path) {
    let w = ExportWriter::new(root, "alloc", "s3://b/cur/alloc");
    let july = (2026, 7);
    let items = vec![
        line("x1", july, "111111111111", "Usage", Some(X), 6.0),
        line("y1", july, "111111111111", "Usage", Some(Y), 3.0),
        line("z1", july, "111111111111", "Usage", Some(Z), 1.0),
        line("t1", july, "111111111111", "Tax", None, 0.8),
        line("e1", july, "111111111111", "EdpDiscount", None, -0.5),
        line("p2", july, "222222222222", "Usage", None, 100.0),
        line("t2", july, "222222222222", "Tax", None, 8.0),
        line("w4", july, "444444444444", "Usage", Some(W), 10.0),
        line("t3", july, "333333333333", "Tax", None, 5.0),
    ];
    w.write_period(
        "2026-07",
        &[items],
        &PeriodLayout::Overwrite {
            leftover_empty_chunks: 0,
        },
        SchemaOptions::default(),
    )
    .unwrap();
    let june = vec![
        line("u6", (2026, 6), "111111111111", "Usage", None, 2.0),
        line("t6", (2026, 6), "111111111111", "Tax", None, 0.16),
    ];
    let old = SchemaOptions {
        principal_column: false,
        tags_column: false,
        ..SchemaOptions::default()
    };
    w.write_period(
        "2026-06",
        &[june],
        &PeriodLayout::Overwrite {
            leftover_empty_chunks: 0,
        },
        old,
    )
    .unwrap();
    let aug = (2026, 8);
    let even = vec![
        line("id-b", aug, "111111111111", "Usage", Some(X), 1.0),
        line("id-a", aug, "111111111111", "Usage", Some(Y), 1.0),
        line("id-c", aug, "111111111111", "Usage", Some(Z), 1.0),
        line("id-tax", aug, "111111111111", "Tax", None, 0.000000001),
    ];
    w.write_period(
        "2026-08",
        &[even],
        &PeriodLayout::Overwrite {
            leftover_empty_chunks: 0,
        },
        SchemaOptions::default(),
    )
    .unwrap();
}

type Split = (String, String, String, String, String);

fn split(rows: &[proto::Row]) -> Vec<Split> {
    rows.iter()
        .map(|r| {
            let p = r.principal.clone().unwrap();
            let who = if p.kind == proto::PrincipalKind::Unattributed as i32 {
                "UNATTRIBUTED".to_string()
            } else {
                p.arn
            };
            (
                who,
                r.cost.clone().unwrap().currency_code,
                r.direct_cost.clone().unwrap().exact,
                r.allocated_cost.clone().unwrap().exact,
                r.cost.clone().unwrap().exact,
            )
        })
        .collect()
}

fn s(a: &str, b: &str, c: &str, e: &str, f: &str) -> Split {
    (a.into(), b.into(), c.into(), e.into(), f.into())
}

#[tokio::test]
async fn tax_discount_and_callerless_accounts_are_shared_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let server = TestServer::start(&[dir.path()]).await;
    let c = &server.client;
    let july = range("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z");
    let loaded = c
        .cost_by_principal_all(proto::CostByPrincipalRequest {
            time_range: july,
            allocation: Allocation::Proportional.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Account 1111: pool 0.8 - 0.5 = 0.3 over 6:3:1. Account 2222 has no callers: its
    // 108 goes to the payer's callers x, y, z, w (6:3:1:10). EUR has no callers at all.
    assert_eq!(
        split(&loaded.rows),
        vec![
            s(W, "USD", "10.0000000000", "54.0000000000", "64.0000000000"),
            s(X, "USD", "6.0000000000", "32.5800000000", "38.5800000000"),
            s(Y, "USD", "3.0000000000", "16.2900000000", "19.2900000000"),
            s(Z, "USD", "1.0000000000", "5.4300000000", "6.4300000000"),
            s(
                "UNATTRIBUTED",
                "EUR",
                "5.0000000000",
                "0.0000000000",
                "5.0000000000"
            ),
            s(
                "UNATTRIBUTED",
                "USD",
                "108.3000000000",
                "-108.3000000000",
                "0.0000000000"
            ),
        ]
    );
    let direct = c
        .cost_by_principal_all(proto::CostByPrincipalRequest {
            time_range: july,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        totals(&loaded.totals),
        totals(&direct.totals),
        "allocation only moves money between groups"
    );
    assert_eq!(
        totals(&loaded.totals),
        vec![("EUR".into(), d("5")), ("USD".into(), d("128.3"))]
    );
    assert!(
        direct
            .rows
            .iter()
            .all(|r| r.direct_cost.is_none() && r.allocated_cost.is_none())
    );

    // The same money by tag: x is team a, the other callers team b.
    let by_team = c
        .cost_by_tag_all(proto::CostByTagRequest {
            time_range: july,
            tag_key: "iamPrincipal/team".into(),
            allocation: Allocation::Proportional.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let teams: Vec<(String, String)> = by_team
        .rows
        .iter()
        .map(|r| (r.tag.clone().unwrap().value, r.cost.clone().unwrap().exact))
        .collect();
    assert_eq!(
        teams,
        vec![
            ("b".into(), "89.7200000000".into()),
            ("a".into(), "38.5800000000".into()),
            ("".into(), "5.0000000000".into()),
            ("".into(), "0.0000000000".into())
        ]
    );

    // June has no callers: its spend stays unattributed even fully loaded.
    let june = c
        .cost_by_principal_all(proto::CostByPrincipalRequest {
            time_range: range("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"),
            allocation: Allocation::Proportional.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        split(&june.rows),
        vec![s(
            "UNATTRIBUTED",
            "USD",
            "2.1600000000",
            "0.0000000000",
            "2.1600000000"
        )]
    );

    // Where the money went, per period, currency and metric.
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    let unblended: Vec<(String, String, String, String, String)> = status
        .allocation
        .iter()
        .filter(|a| a.cost_metric == proto::CostMetric::Unblended as i32)
        .map(|a| {
            let m = |x: &Option<proto::Money>| x.clone().unwrap();
            (
                a.billing_period.clone(),
                m(&a.unattributed).currency_code,
                m(&a.shared_within_account).exact,
                m(&a.shared_across_payer).exact,
                m(&a.unattributed).exact,
            )
        })
        .collect();
    assert_eq!(
        unblended,
        vec![
            (
                "2026-06".into(),
                "USD".into(),
                "0.0000000000".into(),
                "0.0000000000".into(),
                "2.1600000000".into()
            ),
            (
                "2026-07".into(),
                "EUR".into(),
                "0.0000000000".into(),
                "0.0000000000".into(),
                "5.0000000000".into()
            ),
            (
                "2026-07".into(),
                "USD".into(),
                "0.3000000000".into(),
                "108.0000000000".into(),
                "0.0000000000".into()
            ),
            (
                "2026-08".into(),
                "USD".into(),
                "0.0000000010".into(),
                "0.0000000000".into(),
                "0.0000000000".into()
            ),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn an_uneven_split_is_settled_by_largest_remainder() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let server = TestServer::start(&[dir.path()]).await;
    let aug = server
        .client
        .cost_by_principal_all(proto::CostByPrincipalRequest {
            time_range: range("2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z"),
            allocation: Allocation::Proportional.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // 10 units of 1e-10 over three equal callers: 3 each, and the last unit to the
    // smallest line item id ("id-a", y's).
    assert_eq!(
        split(&aug.rows),
        vec![
            s(Y, "USD", "1.0000000000", "0.0000000004", "1.0000000004"),
            s(X, "USD", "1.0000000000", "0.0000000003", "1.0000000003"),
            s(Z, "USD", "1.0000000000", "0.0000000003", "1.0000000003"),
            s(
                "UNATTRIBUTED",
                "USD",
                "0.0000000010",
                "-0.0000000010",
                "0.0000000000"
            ),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn allocation_needs_whole_billing_periods() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let mid = c
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: range("2026-05-03T00:00:00Z", "2026-06-01T00:00:00Z"),
            allocation: Allocation::Proportional.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(mid.code(), Code::InvalidArgument);
    assert!(mid.to_string().contains("whole billing periods"), "{mid}");
    let daily = c
        .cost_by_tag(proto::CostByTagRequest {
            time_range: range("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"),
            tag_key: "iamPrincipal/team".into(),
            granularity: proto::Granularity::Daily.into(),
            allocation: Allocation::Proportional.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(daily.code(), Code::InvalidArgument);
    assert!(daily.to_string().contains("GRANULARITY_MONTHLY"), "{daily}");
    let unknown = c
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: range("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"),
            allocation: 7,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn totals_are_the_same_with_and_without_allocation_for_every_grouping() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let all = range("2026-03-01T00:00:00Z", "2026-08-01T00:00:00Z");
    for metric in [
        proto::CostMetric::Unblended,
        proto::CostMetric::NetUnblended,
    ] {
        let direct = c
            .cost_by_principal_all(proto::CostByPrincipalRequest {
                time_range: all,
                cost_metric: metric.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let grand = totals(&direct.totals);
        for grouping in [
            PrincipalGrouping::Arn,
            PrincipalGrouping::Role,
            PrincipalGrouping::Account,
        ] {
            for also in [
                vec![],
                vec![Dimension::Model.into()],
                vec![Dimension::Tag.into()],
                vec![Dimension::Account.into(), Dimension::LineItemType.into()],
            ] {
                let loaded = c
                    .cost_by_principal_all(proto::CostByPrincipalRequest {
                        time_range: all,
                        cost_metric: metric.into(),
                        grouping: grouping.into(),
                        also_group_by: also.clone(),
                        also_group_by_tag_key: "iamPrincipal/team".into(),
                        granularity: proto::Granularity::Monthly.into(),
                        allocation: Allocation::Proportional.into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert_eq!(
                    totals(&loaded.totals),
                    grand,
                    "{metric:?} {grouping:?} {also:?}"
                );
                assert_eq!(
                    sum_rows(&loaded.rows),
                    grand,
                    "{metric:?} {grouping:?} {also:?}"
                );
                let allocated: rust_decimal::Decimal = loaded
                    .rows
                    .iter()
                    .map(|r| crate::common::exact(r.allocated_cost.as_ref().unwrap()))
                    .sum();
                assert_eq!(
                    allocated,
                    rust_decimal::Decimal::ZERO,
                    "allocation moves money, never makes it"
                );
            }
        }
        // The March period predates caller identity, so some spend must stay unattributed,
        // while in the later periods the unattributed group shrinks.
        let loaded = c
            .cost_by_principal_all(proto::CostByPrincipalRequest {
                time_range: all,
                cost_metric: metric.into(),
                allocation: Allocation::Proportional.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let unattributed = |rows: &[proto::Row]| -> rust_decimal::Decimal {
            rows.iter()
                .filter(|r| {
                    r.principal.as_ref().unwrap().kind == proto::PrincipalKind::Unattributed as i32
                        && r.cost.as_ref().unwrap().currency_code == "USD"
                })
                .map(|r| crate::common::exact(r.cost.as_ref().unwrap()))
                .sum()
        };
        let (before, after) = (unattributed(&direct.rows), unattributed(&loaded.rows));
        assert!(
            after > rust_decimal::Decimal::ZERO && after < before,
            "{after} < {before}"
        );
    }
    server.stop().await;
}
