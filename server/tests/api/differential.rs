//! Differential test: every answer read from the coarsest layers (monthly, daily and
//! fine rows combined at range edges) equals the same question answered by a plain scan
//! of the fine rows, to the last of ten decimals, over random ranges that cut hours,
//! days and months, random groupings, granularities, filters, metrics and allocation.

use bedrock_attribution_server::{
    account::AccountId,
    query::{
        self, CostMetric, Dimension, Filter, Granularity, LayerChoice, PrincipalGrouping,
        QuerySpec, TagFilter, plan::layer_use,
    },
    rules::usage::{Routing, UsageCategory},
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng, rngs::SmallRng, seq::IndexedRandom};

use crate::common::{TestServer, small_export};

fn pick<T: Clone>(rng: &mut SmallRng, from: &[T], most: usize) -> Vec<T> {
    let n = rng.random_range(1..=most.min(from.len()).max(1));
    from.choose_multiple(rng, n).cloned().collect()
}

fn month(rng: &mut SmallRng) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, rng.random_range(2..=8), 1, 0, 0, 0)
        .single()
        .unwrap()
}

#[tokio::test]
async fn layered_answers_equal_a_plain_scan() {
    let server = TestServer::start(&[small_export()]).await;
    let catalog = server.handle.catalog().clone();
    let snapshot = catalog.require_snapshot().unwrap();
    let ctx = catalog.session();
    let dicts = &snapshot.dicts;
    let principals: Vec<String> = dicts
        .principals
        .values()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let accounts: Vec<AccountId> = dicts.accounts.values()[1..]
        .iter()
        .filter_map(|v| AccountId::parse(v))
        .collect();
    let models: Vec<String> = dicts
        .models
        .values()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let teams: Vec<String> = dicts
        .tag_sets
        .sets()
        .iter()
        .filter_map(|s| {
            s.iter()
                .find(|(k, _)| k == "iamPrincipal/team")
                .map(|(_, v)| v.clone())
        })
        .collect();
    let dimensions = [
        Dimension::Principal(PrincipalGrouping::Arn),
        Dimension::Principal(PrincipalGrouping::Role),
        Dimension::Principal(PrincipalGrouping::Account),
        Dimension::Model,
        Dimension::Account,
        Dimension::Region,
        Dimension::UsageCategory,
        Dimension::LineItemType,
        Dimension::Tag("iamPrincipal/team".into()),
        Dimension::Tag("iamPrincipal/cost-center".into()),
    ];
    let mut rng = SmallRng::seed_from_u64(2026);
    // Callers' scopes from a generator of their own, so that the other draws, and so the
    // cases, stay what they were.
    let mut scopes = SmallRng::seed_from_u64(8);
    // Routing groupings and filters likewise, in cases after the first 160.
    let mut routings = SmallRng::seed_from_u64(10);
    // And the efficiency view (cache savings through the price table).
    let mut efficiencies = SmallRng::seed_from_u64(12);
    let (mut coarse, mut subtracted, mut compared, mut routed) = (0, 0, 0, 0);
    let mut saved = 0;
    for case in 0..220 {
        let routing_case = case >= 160;
        let allocation = rng.random_ratio(1, 5);
        let (start, end) = if allocation || rng.random_ratio(1, 6) {
            let a = month(&mut rng);
            let b = month(&mut rng);
            if a == b {
                (a, a + Duration::days(31))
            } else {
                (a.min(b), a.max(b))
            }
        } else if rng.random_ratio(1, 3) {
            // Month edges moved by hours (or seconds): what a dashboard asks, and where
            // a month minus a few hours beats thirty days plus some.
            let a = month(&mut rng);
            let b = a + Duration::days(rng.random_range(28..=62));
            let b = b - Duration::days(
                i64::from(b.format("%d").to_string().parse::<u8>().unwrap()) - 1,
            );
            let mut shift = || {
                Duration::hours(rng.random_range(-40..40))
                    + Duration::seconds(if rng.random_ratio(1, 4) {
                        rng.random_range(0..3600)
                    } else {
                        0
                    })
            };
            let (s, e) = (a + shift(), b + shift());
            if s < e {
                (s, e)
            } else {
                (e, s + Duration::hours(1))
            }
        } else {
            let base = Utc.with_ymd_and_hms(2026, 2, 25, 0, 0, 0).single().unwrap();
            let start = base + Duration::seconds(rng.random_range(0..160 * 86_400));
            let length = match rng.random_range(0..3) {
                0 => Duration::seconds(rng.random_range(1..2 * 86_400)),
                1 => Duration::hours(rng.random_range(1..24 * 40)),
                _ => Duration::seconds(rng.random_range(86_400..150 * 86_400)),
            };
            (start, start + length)
        };
        let granularity = if allocation {
            *[Granularity::Whole, Granularity::Monthly]
                .choose(&mut rng)
                .unwrap()
        } else {
            *[
                Granularity::Whole,
                Granularity::Hourly,
                Granularity::Daily,
                Granularity::Monthly,
            ]
            .choose(&mut rng)
            .unwrap()
        };
        let mut dims = pick(&mut rng, &dimensions, 2);
        // One principal grouping at a time, as the API allows.
        let mut seen_principal = false;
        dims.retain(|d| {
            let p = matches!(d, Dimension::Principal(_));
            let keep = !(p && seen_principal);
            seen_principal |= p;
            keep
        });
        if rng.random_ratio(1, 8) {
            dims.clear();
        }
        let (by_routing, routing_filter) = match routing_case.then(|| routings.random_range(0..3)) {
            Some(0) => (true, false),
            Some(1) => (false, true),
            Some(_) => (true, true),
            None => (false, false),
        };
        if by_routing {
            dims.push(Dimension::Routing);
        }
        let mut filter = Filter::default();
        if rng.random_ratio(1, 4) {
            let mut p = pick(&mut rng, &principals, 3);
            if rng.random_ratio(1, 3) {
                p.push("arn:aws:iam::000000000000:user/nobody".into());
            }
            filter.principals = p;
        }
        if rng.random_ratio(1, 5) {
            filter.account_ids = pick(&mut rng, &accounts, 2);
        }
        if rng.random_ratio(1, 5) {
            filter.models = pick(&mut rng, &models, 3);
        }
        if rng.random_ratio(1, 6) {
            filter.usage_categories = pick(&mut rng, &UsageCategory::ALL, 3);
        }
        if routing_filter {
            filter.routings = pick(&mut routings, &Routing::ALL, 2);
        }
        if rng.random_ratio(1, 5) && !teams.is_empty() {
            filter.tags = vec![TagFilter {
                key: "iamPrincipal/team".into(),
                values: pick(&mut rng, &teams, 3),
                untagged: rng.random_bool(0.5),
            }];
        }
        let spec = QuerySpec {
            start,
            end,
            filter,
            metric: *[
                CostMetric::Unblended,
                CostMetric::NetUnblended,
                CostMetric::Blended,
                CostMetric::PublicOnDemand,
            ]
            .choose(&mut rng)
            .unwrap(),
            granularity,
            dimensions: dims,
            allocation,
            // The cache saving joins the price table into the plan.
            efficiency: !allocation && efficiencies.random_ratio(1, 3),
            scope: random_scope(&mut scopes, &principals, &accounts, &teams),
        };
        let fast = query::run(ctx, &snapshot, &spec).await;
        let plain = query::run_with(ctx, &snapshot, &spec, LayerChoice::FineOnly).await;
        let (fast, plain) = match (fast, plain) {
            (Ok(f), Ok(p)) => (f, p),
            (Err(f), Err(p)) => {
                assert_eq!(f.to_string(), p.to_string(), "case {case}");
                continue;
            }
            (f, p) => panic!("case {case}: {:?} vs {:?}", f.err(), p.err()),
        };
        assert_eq!(fast.rows, plain.rows, "case {case}: {spec:?}");
        assert_eq!(fast.totals, plain.totals, "case {case}");
        assert_eq!(fast.tokens, plain.tokens, "case {case}");
        assert_eq!(fast.cache_savings, plain.cache_savings, "case {case}");
        // Every grouping reconciles to the ungrouped totals.
        let whole = query::run(
            ctx,
            &snapshot,
            &QuerySpec {
                dimensions: Vec::new(),
                granularity: Granularity::Whole,
                ..spec.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(fast.totals, whole.totals, "case {case}");
        assert_eq!(fast.cache_savings, whole.cache_savings, "case {case}");
        if fast.cache_savings.iter().any(|(_, s)| s.units() != 0) {
            saved += 1;
        }
        compared += 1;
        let used = layer_use(&snapshot, &spec).unwrap();
        if used.daily + used.monthly > 0 && !fast.rows.is_empty() {
            coarse += 1;
        }
        if used.subtracted > 0 && !fast.rows.is_empty() {
            subtracted += 1;
        }
        if routing_case && !fast.rows.is_empty() {
            routed += 1;
        }
    }
    assert!(compared >= 210, "{compared} cases compared");
    assert!(
        coarse >= 60,
        "only {coarse} cases read daily or monthly rows"
    );
    assert!(
        subtracted >= 8,
        "only {subtracted} cases subtracted finer chunks"
    );
    assert!(saved >= 12, "only {saved} cases had a cache saving");
    assert!(
        routed >= 25,
        "only {routed} of the 60 routing cases answered rows"
    );
    server.stop().await;
}

/// A caller's scope: none half of the time, else some of accounts, teams and ARN
/// prefixes (cut from real callers, or matching none).
fn random_scope(
    rng: &mut SmallRng,
    principals: &[String],
    accounts: &[AccountId],
    teams: &[String],
) -> bedrock_attribution_server::auth::Scope {
    let mut scope = bedrock_attribution_server::auth::Scope::default();
    if rng.random_ratio(1, 2) {
        return scope;
    }
    if rng.random_ratio(1, 2) {
        scope.accounts = pick(rng, accounts, 2).into_iter().collect();
    }
    if rng.random_ratio(1, 2) && !teams.is_empty() {
        scope.tags.insert(
            "iamPrincipal/team".into(),
            pick(rng, teams, 3).into_iter().collect(),
        );
    }
    if rng.random_ratio(1, 2) {
        scope.principal_prefixes = pick(rng, principals, 2)
            .into_iter()
            .map(|p| {
                let cut = p.len() * 2 / 3;
                p.chars().take(cut).collect()
            })
            .filter(|p: &String| !p.is_empty())
            .chain(
                rng.random_ratio(1, 4)
                    .then(|| "arn:aws:iam::000000000000:".to_owned()),
            )
            .collect();
    }
    scope
}
