//! The usage-type shapes seen in 2026 (contract §5) end to end: the generated export holds
//! geographic cross-region rows, mantle `cache-write-tokens` with routing and tier,
//! one-hour cache writes in both spellings and reserved-tier capacity rows (a token kind in
//! the usage type and in `inference_type`, a token pricing unit) in 2026-04 to 2026-06,
//! under models of their own. The service's answers for those models must equal the DuckDB
//! reference's exactly, and the numbers the generator wrote.

use std::collections::BTreeMap;

use bedrock_attribution_client::proto::{self, Dimension as D, PrincipalGrouping as G};
use bedrock_attribution_server::demo::generator::{
    RESERVED_DAILY_COST, RESERVED_DAYS, SHAPES_2026_MODELS,
};
use serde_json::{Value, json};

use crate::{
    common::{TestServer, d, exact, range, small_export, sum_rows, totals},
    reference::{Key, Sums, key_of, reference, reference_rows, sums},
};

/// Input, output, cache read and cache write tokens, and line items.
type Counts = (i64, i64, i64, i64, i64);

const ALL: (&str, &str) = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");

fn request(group_by: &[D]) -> proto::TokenUsageRequest {
    proto::TokenUsageRequest {
        time_range: range(ALL.0, ALL.1),
        granularity: proto::Granularity::Monthly.into(),
        group_by: group_by.iter().map(|g| (*g).into()).collect(),
        filter: Some(proto::Filter {
            models: SHAPES_2026_MODELS.iter().map(|m| (*m).to_owned()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec(id: &str, group_by: &[&str]) -> Value {
    json!({
        "id": id, "start": ALL.0, "end": ALL.1, "metric": "unblended", "granularity": "monthly",
        "group_by": group_by, "filter": {"models": SHAPES_2026_MODELS},
    })
}

#[tokio::test]
async fn shapes_seen_in_2026_equal_duckdb_and_the_generator() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let cases: [(&str, &[D], &[&str]); 3] = [
        (
            "shapes_by_model_category_region",
            &[D::Model, D::UsageCategory, D::Region],
            &["model", "usage_category", "region"],
        ),
        (
            "shapes_by_principal",
            &[D::Principal, D::UsageCategory],
            &["principal_arn", "usage_category"],
        ),
        (
            "shapes_by_model_routing",
            &[D::Model, D::Routing],
            &["model", "routing"],
        ),
    ];
    let expected = reference(
        &cases
            .iter()
            .map(|(id, _, names)| spec(id, names))
            .collect::<Vec<_>>(),
    );
    let mut answers = Vec::new();
    for (id, dims, names) in cases {
        let answer = c.token_usage_all(request(dims)).await.unwrap();
        assert_eq!(sum_rows(&answer.rows), totals(&answer.totals), "{id}");
        let ours: BTreeMap<Key, Sums> = answer
            .rows
            .iter()
            .map(|r| (key_of(r, names, G::Arn), sums(r)))
            .collect();
        assert_eq!(ours.len(), answer.rows.len(), "{id}: a group appears twice");
        let theirs = reference_rows(&expected["results"][id], id);
        assert!(!theirs.is_empty(), "{id}: the reference found nothing");
        assert_eq!(
            ours, theirs,
            "{id}: service (left) and DuckDB (right) differ"
        );
        answers.push(answer);
    }

    // What the generator wrote, per (month, model, category): tokens by kind and line items.
    // Caller n (0..4) in period index i (1..4) writes 1000 * (1 + kind) * (7 + 3n + 5m + i)
    // tokens of each kind of model m, and 2500 * (n + 1) one-hour cache write tokens in the
    // second spelling; the reserved rows (3 a month, no caller) count none.
    let rows = &answers[0].rows;
    let mut got: BTreeMap<(String, String, i32), Counts> = BTreeMap::new();
    for r in rows {
        let t = r.tokens.unwrap();
        let month = r.period_start.as_ref().map_or(0, |p| p.seconds);
        let month = chrono::DateTime::from_timestamp(month, 0)
            .unwrap()
            .format("%Y-%m")
            .to_string();
        let e = got
            .entry((month, r.model.clone(), r.usage_category))
            .or_default();
        e.0 += t.input;
        e.1 += t.output;
        e.2 += t.cache_read;
        e.3 += t.cache_write;
        e.4 += r.line_items;
    }
    let on_demand = proto::UsageCategory::OnDemand as i32;
    let reserved = proto::UsageCategory::Reserved as i32;
    let mut want = BTreeMap::new();
    for (i, month) in [(1, "2026-04"), (2, "2026-05"), (3, "2026-06")] {
        // Without product['model'] (2026-04) the name comes from the usage type, cut at
        // `-input-tokens`, `-mantle-`, `-cache-write-1h-` and `-reserved-`.
        let names: [&str; 3] = if i == 1 {
            [
                "Claude4.5Sonnet",
                "anthropic.claude-opus-4-8",
                "Claude4.6Opus",
            ]
        } else {
            ["Claude Sonnet 4.5", "Claude Opus 4.8", "Claude Opus 4.6"]
        };
        let s = |m: i64| (0..4).map(|n| 7 + 3 * n + 5 * m + i).sum::<i64>();
        want.insert(
            (month.to_owned(), names[0].to_owned(), on_demand),
            (1_000 * s(0), 2_000 * s(0), 0, 0, 8),
        );
        want.insert(
            (month.to_owned(), names[1].to_owned(), on_demand),
            (1_000 * s(1), 2_000 * s(1), 3_000 * s(1), 4_000 * s(1), 16),
        );
        want.insert(
            (month.to_owned(), names[2].to_owned(), on_demand),
            (0, 0, 0, 4_000 * s(2) + 2_500 * (1 + 2 + 3 + 4), 8),
        );
        want.insert(
            (month.to_owned(), names[0].to_owned(), reserved),
            (0, 0, 0, 0, RESERVED_DAYS),
        );
    }
    assert_eq!(got, want);

    // Capacity keeps its cost: 3 days of 250 a month, in us-east-1, with no caller.
    let capacity: Vec<_> = rows
        .iter()
        .filter(|r| r.usage_category == reserved)
        .collect();
    assert_eq!(capacity.len(), 3);
    for r in &capacity {
        assert_eq!(r.region, "us-east-1");
        assert_eq!(
            exact(r.cost.as_ref().unwrap()),
            d(&format!("{}", RESERVED_DAILY_COST * RESERVED_DAYS as f64))
        );
    }
    let unattributed: Vec<_> = answers[1]
        .rows
        .iter()
        .filter(|r| {
            r.principal.as_ref().map(|p| p.kind) == Some(proto::PrincipalKind::Unattributed as i32)
        })
        .collect();
    // Monthly: one unattributed row a month, the capacity rows only, with no tokens.
    assert_eq!(
        unattributed.len(),
        3,
        "only the capacity rows lack a caller"
    );
    for r in unattributed {
        assert_eq!(r.usage_category, reserved);
        assert_eq!(r.tokens, Some(proto::Tokens::default()));
        assert_eq!(exact(r.cost.as_ref().unwrap()), d("750"));
    }

    // Routing, per (month, model): Sonnet 4.5 `-cross-region-geo` (its reserved capacity
    // too), Opus 4.8 mantle `-global-standard`, Opus 4.6 one-hour cache writes in-region.
    let mut got: BTreeMap<(String, String, i32), i64> = BTreeMap::new();
    for r in &answers[2].rows {
        let month = r.period_start.as_ref().map_or(0, |p| p.seconds);
        let month = chrono::DateTime::from_timestamp(month, 0)
            .unwrap()
            .format("%Y-%m")
            .to_string();
        *got.entry((month, r.model.clone(), r.routing)).or_default() += r.line_items;
    }
    let geo = proto::Routing::CrossRegionGeographic as i32;
    let global = proto::Routing::CrossRegionGlobal as i32;
    let in_region = proto::Routing::InRegion as i32;
    let mut want = BTreeMap::new();
    for (i, month) in [(1, "2026-04"), (2, "2026-05"), (3, "2026-06")] {
        let names = if i == 1 {
            SHAPES_2026_MODELS[..3].to_vec()
        } else {
            SHAPES_2026_MODELS[3..].to_vec()
        };
        want.insert(
            (month.to_owned(), names[0].to_owned(), geo),
            8 + RESERVED_DAYS,
        );
        want.insert((month.to_owned(), names[1].to_owned(), global), 16);
        want.insert((month.to_owned(), names[2].to_owned(), in_region), 8);
    }
    assert_eq!(got, want);
    server.stop().await;
}
