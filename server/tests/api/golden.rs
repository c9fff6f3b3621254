//! A hand-computed golden month: a dozen line items whose every answer was worked out
//! on paper, served through the real server.

use bedrock_attribution_client::proto::{self, Dimension, PrincipalGrouping, PrincipalKind};
use bedrock_attribution_server::demo::{
    CurLineItem, ExportWriter, PeriodLayout, SchemaOptions, TimestampUnit,
};
use chrono::{DateTime, TimeZone, Utc};

use crate::common::{TestServer, d, range, sum_rows, totals};

const ALICE: &str = "arn:aws:iam::111111111111:user/alice";
const BOB: &str = "arn:aws:sts::111111111111:assumed-role/BedrockUsers/bob@example.com";
const CAROL: &str = "arn:aws:sts::111111111111:assumed-role/BedrockUsers/carol@example.com";
const DAVE: &str = "arn:aws:iam::333333333333:user/dave";
const ROLE: &str = "arn:aws:iam::111111111111:role/BedrockUsers";

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().unwrap()
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn item(
    account: &str,
    kind: &str,
    start: DateTime<Utc>,
    code: &str,
    usage_type: &str,
    caller: Option<&str>,
    amount: f64,
    unit: &str,
    cost: f64,
) -> CurLineItem {
    CurLineItem {
        line_item_type: kind.into(),
        product_code: code.into(),
        usage_type: Some(usage_type.into()),
        principal: caller.map(str::to_owned),
        usage_amount: Some(amount),
        currency: if account == "333333333333" {
            "EUR"
        } else {
            "USD"
        }
        .into(),
        pricing_unit: Some(unit.into()),
        ..CurLineItem::bedrock(
            &format!("{usage_type}-{start}-{cost}"),
            "999999999999",
            account,
            start,
            cost,
        )
    }
}

fn marketplace(mut i: CurLineItem, units: &str) -> CurLineItem {
    i.billing_entity = "AWS Marketplace".into();
    i.description = Some(format!(
        "Claude Sonnet 4.6 (Amazon Bedrock Edition)|US East|{units}"
    ));
    i.product = tags(&[("product_name", "Claude Sonnet 4.6 (Amazon Bedrock Edition)")]);
    i
}

/// July 2026 (create-new, with a stale older execution) and June 2026 (older schema
/// without caller or tags, a leftover empty chunk).
fn write_golden(root: &std::path::Path) {
    let w = ExportWriter::new(root, "gold", "s3://gold-bucket/cur/gold");
    let mp = "opaquecode123";
    let mut alice_in = marketplace(
        item(
            "111111111111",
            "Usage",
            at(2026, 7, 1, 10),
            mp,
            "USE1-MP:USE1_InputTokenCount-Units",
            Some(ALICE),
            1.5,
            "Units",
            4.5,
        ),
        "Million Input Tokens",
    );
    alice_in.tags = tags(&[("iamPrincipal/team", "search")]);
    let mut alice_out = marketplace(
        item(
            "111111111111",
            "Usage",
            at(2026, 7, 1, 10),
            mp,
            "USE1-MP:USE1_OutputTokenCount-Units",
            Some(ALICE),
            0.2,
            "Units",
            3.0,
        ),
        "Million Output Tokens",
    );
    alice_out.tags = tags(&[("iamPrincipal/team", "search")]);
    let mut bob = item(
        "111111111111",
        "Usage",
        at(2026, 7, 2, 9),
        "AmazonBedrock",
        "USE1-Nova2.0Lite-input-tokens",
        Some(BOB),
        1234.5678,
        "1K tokens",
        0.074074068,
    );
    bob.tags = tags(&[("iamPrincipal/team", "risk")]);
    let mut carol = item(
        "111111111111",
        "Usage",
        at(2026, 7, 3, 14),
        "AmazonBedrock",
        "USE1-Nova2.0Lite-output-tokens-flex",
        Some(CAROL),
        0.25,
        "1M tokens",
        0.06,
    );
    carol.tags = tags(&[
        ("iamPrincipal/team", "risk"),
        ("iamPrincipal/cost center", "CC 1"),
    ]);
    let pt = item(
        "222222222222",
        "Usage",
        at(2026, 7, 1, 0),
        "AmazonBedrock",
        "USE1-ProvisionedThroughput-ModelUnits",
        None,
        24.0,
        "Hrs",
        480.0,
    );
    let mut tax = item(
        "111111111111",
        "Tax",
        at(2026, 7, 1, 0),
        "AmazonBedrock",
        "",
        None,
        0.0,
        "",
        0.61,
    );
    tax.usage_type = None;
    let edp = item(
        "111111111111",
        "EdpDiscount",
        at(2026, 7, 1, 0),
        "AmazonBedrock",
        "USE1-EDP",
        None,
        0.0,
        "",
        -0.375,
    );
    let ec2 = item(
        "111111111111",
        "Usage",
        at(2026, 7, 4, 0),
        "AmazonEC2",
        "USE1-BoxUsage:g5.xlarge",
        None,
        1.0,
        "Hrs",
        100.0,
    );
    let dave = item(
        "333333333333",
        "Usage",
        at(2026, 7, 5, 8),
        "AmazonBedrockFoundationModels",
        "USE1-openai.gpt-oss-120b-mantle-input-tokens-standard",
        Some(DAVE),
        0.1,
        "1M tokens",
        0.015,
    );
    let nobody = marketplace(
        item(
            "111111111111",
            "Usage",
            at(2026, 7, 6, 8),
            mp,
            "USE1-MP:USE1_CacheReadInputTokenCount_Global-Units",
            Some(""),
            0.5,
            "Units",
            0.15,
        ),
        "Million Cache Read Input Tokens",
    );
    let after = item(
        "111111111111",
        "Usage",
        at(2026, 8, 1, 0),
        "AmazonBedrock",
        "USE1-Nova2.0Lite-input-tokens",
        Some(ALICE),
        1.0,
        "1K tokens",
        7.0,
    );
    let july = vec![
        alice_in, alice_out, bob, carol, pt, tax, edp, ec2, dave, nobody,
    ];
    let stale: Vec<CurLineItem> = july
        .iter()
        .map(|i| CurLineItem {
            unblended_cost: i.unblended_cost.map(|c| c * 10.0),
            ..i.clone()
        })
        .collect();
    let schema = SchemaOptions::default();
    w.write_period(
        "2026-07",
        &[stale],
        &PeriodLayout::CreateNew {
            execution: "20260720T000000Z-old".into(),
        },
        schema,
    )
    .unwrap();
    w.write_period(
        "2026-07",
        &[july[..5].to_vec(), july[5..].to_vec()],
        &PeriodLayout::CreateNew {
            execution: "20260802T000000Z-new".into(),
        },
        schema,
    )
    .unwrap();

    // The first hour after July, in its own period: a July range ends before it (a July
    // file may not hold it: CUR dates every line item within its billing period).
    w.write_period(
        "2026-08",
        &[vec![after]],
        &PeriodLayout::Overwrite {
            leftover_empty_chunks: 0,
        },
        SchemaOptions::default(),
    )
    .unwrap();

    let june = vec![marketplace(
        item(
            "111111111111",
            "Usage",
            at(2026, 6, 15, 12),
            mp,
            "USE1-MP:USE1_InputTokenCount-Units",
            Some(ALICE),
            0.1,
            "Units",
            0.3,
        ),
        "Million Input Tokens",
    )];
    let old_schema = SchemaOptions {
        principal_column: false,
        tags_column: false,
        product_column: true,
        timestamp_unit: TimestampUnit::Millis,
        utc_annotated: false,
    };
    w.write_period(
        "2026-06",
        &[june],
        &PeriodLayout::Overwrite {
            leftover_empty_chunks: 2,
        },
        old_schema,
    )
    .unwrap();
}

fn principal_rows(rows: &[proto::Row]) -> Vec<(String, i32, String, String)> {
    rows.iter()
        .map(|r| {
            let p = r.principal.clone().unwrap();
            let c = r.cost.clone().unwrap();
            (p.arn, p.kind, c.currency_code, c.exact)
        })
        .collect()
}

#[tokio::test]
async fn golden_month_by_principal_role_account_and_tag() {
    let dir = tempfile::tempdir().unwrap();
    write_golden(dir.path());
    let server = TestServer::start(&[dir.path()]).await;
    let july = range("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z");
    let unattributed = PrincipalKind::Unattributed as i32;
    let user = PrincipalKind::IamUser as i32;
    let session = PrincipalKind::AssumedRole as i32;

    let by_arn = server
        .client
        .cost_by_principal_all(proto::CostByPrincipalRequest {
            time_range: july,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        principal_rows(&by_arn.rows),
        vec![
            (
                String::new(),
                unattributed,
                "USD".into(),
                "480.3850000000".into()
            ),
            (ALICE.into(), user, "USD".into(), "7.5000000000".into()),
            (BOB.into(), session, "USD".into(), "0.0740740680".into()),
            (CAROL.into(), session, "USD".into(), "0.0600000000".into()),
            (DAVE.into(), user, "EUR".into(), "0.0150000000".into()),
        ]
    );
    assert_eq!(
        totals(&by_arn.totals),
        vec![
            ("EUR".into(), d("0.015")),
            ("USD".into(), d("488.019074068"))
        ]
    );
    assert_eq!(sum_rows(&by_arn.rows), totals(&by_arn.totals));
    let bob = by_arn.rows[2].principal.clone().unwrap();
    assert_eq!(
        (
            bob.account_id.as_str(),
            bob.name.as_str(),
            bob.session_name.as_str()
        ),
        ("111111111111", "BedrockUsers", "bob@example.com")
    );
    let tokens = |i: usize| by_arn.rows[i].tokens.unwrap();
    assert_eq!(
        tokens(0),
        proto::Tokens {
            input: 0,
            output: 0,
            cache_read: 500_000,
            cache_write: 0
        }
    );
    assert_eq!(
        tokens(1),
        proto::Tokens {
            input: 1_500_000,
            output: 200_000,
            cache_read: 0,
            cache_write: 0
        }
    );
    assert_eq!(
        tokens(2).input,
        1_234_568,
        "1234.5678 thousand tokens round to the nearest token"
    );
    assert_eq!(tokens(3).output, 250_000);
    assert_eq!(
        by_arn.rows[0].line_items, 4,
        "PT, tax, EDP and the empty caller"
    );
    let money = by_arn.rows[2].cost.clone().unwrap();
    assert_eq!((money.units, money.nanos), (0, 74_074_068));

    let by_role = server
        .client
        .cost_by_principal_all(proto::CostByPrincipalRequest {
            time_range: july,
            grouping: PrincipalGrouping::Role.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        principal_rows(&by_role.rows),
        vec![
            (
                String::new(),
                unattributed,
                "USD".into(),
                "480.3850000000".into()
            ),
            (ALICE.into(), user, "USD".into(), "7.5000000000".into()),
            (
                ROLE.into(),
                PrincipalKind::IamRole as i32,
                "USD".into(),
                "0.1340740680".into()
            ),
            (DAVE.into(), user, "EUR".into(), "0.0150000000".into()),
        ]
    );

    let by_account = server
        .client
        .cost_by_principal_all(proto::CostByPrincipalRequest {
            time_range: july,
            grouping: PrincipalGrouping::Account.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let accounts: Vec<(String, String)> = by_account
        .rows
        .iter()
        .map(|r| {
            (
                r.principal.clone().unwrap().account_id,
                r.cost.clone().unwrap().exact,
            )
        })
        .collect();
    assert_eq!(
        accounts,
        vec![
            (String::new(), "480.3850000000".into()),
            ("111111111111".into(), "7.6340740680".into()),
            ("333333333333".into(), "0.0150000000".into()),
        ]
    );

    let by_team = server
        .client
        .cost_by_tag_all(proto::CostByTagRequest {
            time_range: july,
            tag_key: "iamPrincipal/team".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let teams: Vec<(String, bool, String, String)> = by_team
        .rows
        .iter()
        .map(|r| {
            let t = r.tag.clone().unwrap();
            let c = r.cost.clone().unwrap();
            (t.value, t.untagged, c.currency_code, c.exact)
        })
        .collect();
    assert_eq!(
        teams,
        vec![
            (String::new(), true, "USD".into(), "480.3850000000".into()),
            ("search".into(), false, "USD".into(), "7.5000000000".into()),
            ("risk".into(), false, "USD".into(), "0.1340740680".into()),
            (String::new(), true, "EUR".into(), "0.0150000000".into()),
        ]
    );
    assert_eq!(totals(&by_team.totals), totals(&by_arn.totals));

    let spaced = server
        .client
        .cost_by_tag_all(proto::CostByTagRequest {
            time_range: july,
            tag_key: "iamPrincipal/cost center".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let cc: Vec<_> = spaced
        .rows
        .iter()
        .filter(|r| !r.tag.clone().unwrap().untagged)
        .map(|r| (r.tag.clone().unwrap().value, r.cost.clone().unwrap().exact))
        .collect();
    assert_eq!(cc, vec![("CC 1".to_string(), "0.0600000000".to_string())]);

    let two_keys = server
        .client
        .cost_by_tag_all(proto::CostByTagRequest {
            time_range: july,
            tag_key: "iamPrincipal/team".into(),
            also_group_by: vec![Dimension::Tag.into()],
            also_group_by_tag_key: "iamPrincipal/cost center".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pairs: Vec<(String, String, String)> = two_keys
        .rows
        .iter()
        .map(|r| {
            (
                r.tag.clone().unwrap().value,
                r.also_tag.clone().unwrap().value,
                r.cost.clone().unwrap().exact,
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            (String::new(), String::new(), "480.3850000000".into()),
            ("search".into(), String::new(), "7.5000000000".into()),
            ("risk".into(), String::new(), "0.0740740680".into()),
            ("risk".into(), "CC 1".into(), "0.0600000000".into()),
            (String::new(), String::new(), "0.0150000000".into()),
        ]
    );
    assert_eq!(
        two_keys.rows[3].also_tag.clone().unwrap().key,
        "iamPrincipal/cost center"
    );
    server.stop().await;
}

#[tokio::test]
async fn golden_tokens_models_and_older_period() {
    let dir = tempfile::tempdir().unwrap();
    write_golden(dir.path());
    let server = TestServer::start(&[dir.path()]).await;
    let usage = server
        .client
        .token_usage_all(proto::TokenUsageRequest {
            time_range: range("2026-06-01T00:00:00Z", "2026-08-01T00:00:00Z"),
            group_by: vec![Dimension::Model.into(), Dimension::UsageCategory.into()],
            granularity: proto::Granularity::Monthly.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let rows: Vec<(String, i32, i64, String, i64)> = usage
        .rows
        .iter()
        .map(|r| {
            let t = r.tokens.unwrap();
            (
                r.model.clone(),
                r.usage_category,
                r.period_start.unwrap().seconds,
                r.cost.clone().unwrap().exact,
                t.input + t.output + t.cache_read + t.cache_write,
            )
        })
        .collect();
    let june = at(2026, 6, 1, 0).timestamp();
    let july = at(2026, 7, 1, 0).timestamp();
    use proto::UsageCategory as U;
    assert_eq!(
        rows,
        vec![
            (
                "ProvisionedThroughput-ModelUnits".into(),
                U::ProvisionedThroughput as i32,
                july,
                "480.0000000000".into(),
                0
            ),
            (
                "Claude Sonnet 4.6".into(),
                U::OnDemand as i32,
                july,
                "7.6500000000".into(),
                2_200_000
            ),
            ("".into(), U::Other as i32, july, "0.6100000000".into(), 0),
            (
                "Claude Sonnet 4.6".into(),
                U::OnDemand as i32,
                june,
                "0.3000000000".into(),
                100_000
            ),
            (
                "Nova2.0Lite".into(),
                U::OnDemand as i32,
                july,
                "0.0740740680".into(),
                1_234_568
            ),
            (
                "Nova2.0Lite".into(),
                U::Flex as i32,
                july,
                "0.0600000000".into(),
                250_000
            ),
            (
                "openai.gpt-oss-120b".into(),
                U::OnDemand as i32,
                july,
                "0.0150000000".into(),
                100_000
            ),
            (
                "EDP".into(),
                U::Other as i32,
                july,
                "-0.3750000000".into(),
                0
            ),
        ]
    );
    // Cost per million tokens: 7.65 / 2.2M tokens * 1e6 = 3.4772727272727... -> 3.4772727273
    assert_eq!(
        usage.rows[1].cost_per_million_tokens.clone().unwrap().exact,
        "3.4772727273"
    );
    assert!(usage.rows[0].cost_per_million_tokens.is_none());

    let notes = server
        .client
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: range("2026-06-01T00:00:00Z", "2026-08-01T00:00:00Z"),
            ..Default::default()
        })
        .await
        .unwrap()
        .info
        .unwrap()
        .notes;
    assert_eq!(
        notes,
        vec![
            "billing periods 2026-06 have no caller identity column; their spend is UNATTRIBUTED"
                .to_string()
        ]
    );

    let status = server
        .client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    let periods: Vec<(String, String, i64, i64, String, Vec<String>)> = status
        .periods
        .iter()
        .map(|p| {
            (
                p.billing_period.clone(),
                p.file_list.clone(),
                p.files,
                p.bedrock_line_items,
                p.execution.clone(),
                p.missing_columns.clone(),
            )
        })
        .collect();
    assert_eq!(
        periods,
        vec![
            (
                "2026-06".into(),
                "manifest".into(),
                1,
                1,
                String::new(),
                vec!["line_item_iam_principal".into(), "tags".into()]
            ),
            (
                "2026-07".into(),
                "manifest".into(),
                2,
                9,
                "20260802T000000Z-new".into(),
                vec![]
            ),
            (
                "2026-08".into(),
                "manifest".into(),
                1,
                1,
                String::new(),
                vec![]
            ),
        ]
    );
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    server.stop().await;
}
