//! Access control end to end: callers from an auth file, authenticated by bearer token
//! on a real loopback server, each seeing exactly the line items of its scope. Every
//! scoped answer is held to DuckDB's over the same files with the scope written as a
//! plain SQL WHERE, to the last decimal; refusals carry the documented codes; the file
//! reloads without a restart; audit lines never show a token.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use bedrock_attribution_client::proto::{
    self, Dimension as D, PrincipalGrouping as G,
    attribution_service_client::AttributionServiceClient,
};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::{
    Code, Request, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::{
    common::{TestServer, range, small_export, sum_rows, totals},
    observability::{scrape, value},
    process::{ServerProcess, http_get},
    reference::{Key, Sums, assert_same_rows, key_of, reference, reference_rows, sums},
};

const ALL: (&str, &str) = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
const MONTHS: (&str, &str) = ("2026-03-01T00:00:00Z", "2026-08-01T00:00:00Z");
const TEAM: &str = "iamPrincipal/team";

/// Adds `authorization: Bearer <token>` (or any raw value) to every call.
#[derive(Clone)]
struct Bearer(Option<AsciiMetadataValue>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

type Api = AttributionServiceClient<InterceptedService<Channel, Bearer>>;

/// A caller of the test auth file: name, token, the `scope` as the file and the DuckDB
/// reference read it.
struct TestCaller {
    name: &'static str,
    token: &'static str,
    admin: bool,
    scope: Value,
}

fn callers() -> Vec<TestCaller> {
    vec![
        TestCaller {
            name: "finance",
            token: "admin-token-0b4f",
            admin: true,
            scope: json!(null),
        },
        TestCaller {
            name: "account-210",
            token: "acct-token-7c1e",
            admin: false,
            scope: json!({"accounts": ["210987654321"]}),
        },
        TestCaller {
            name: "ds-and-alpha",
            token: "team-token-93aa",
            admin: false,
            scope: json!({"tags": {TEAM: ["data-science", "チーム-α"]}}),
        },
        TestCaller {
            name: "app-roles",
            token: "prefix-token-55d2",
            admin: false,
            scope: json!({"principal_prefixes": ["arn:aws:sts::345678901234:assumed-role/", "arn:aws:iam::210987654321:user/"]}),
        },
        TestCaller {
            name: "two-accounts-three-teams",
            token: "mixed-token-1f60",
            admin: false,
            scope: json!({"accounts": ["210987654321", "456789012345"], "tags": {TEAM: ["search", "risk", "platform"]}}),
        },
    ]
}

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The callers file of `callers`, as JSON (which is YAML).
fn auth_file_text(callers: &[TestCaller]) -> String {
    let entries: Vec<Value> = callers
        .iter()
        .map(|c| {
            let mut e =
                json!({"name": c.name, "token_sha256": sha256_hex(c.token), "admin": c.admin});
            if !c.scope.is_null() {
                e["scope"] = c.scope.clone();
            }
            e
        })
        .collect();
    json!({ "callers": entries }).to_string()
}

/// Writes the auth file of `callers` into a new temporary folder.
fn write_auth_file(callers: &[TestCaller]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callers.yaml");
    std::fs::write(&path, auth_file_text(callers)).unwrap();
    (dir, path)
}

async fn start(path: &Path, extra: &[&str]) -> TestServer {
    let mut args = vec!["--auth-file".to_owned(), path.display().to_string()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    TestServer::serve(&[format!("file://{}", small_export().display())], &args).await
}

/// The raw stub, sending `authorization` as given (`None`: no header).
async fn api_raw(server: &TestServer, authorization: Option<&str>) -> Api {
    let value = authorization.map(|a| a.parse().unwrap());
    AttributionServiceClient::with_interceptor(server.channel().await, Bearer(value))
}

/// The raw stub of a caller with a bearer token.
async fn api(server: &TestServer, token: &str) -> Api {
    api_raw(server, Some(&format!("Bearer {token}"))).await
}

/// One grouped request of the DuckDB cases.
#[derive(Clone)]
enum Rpc {
    ByPrincipal(proto::CostByPrincipalRequest),
    ByTag(proto::CostByTagRequest),
    Tokens(proto::TokenUsageRequest),
}

/// Rows (all pages), totals and token totals of a grouped request.
struct Answer {
    rows: Vec<proto::Row>,
    totals: Vec<proto::Money>,
    tokens: proto::Tokens,
}

async fn all_pages(api: &mut Api, rpc: &Rpc) -> Result<Answer, Status> {
    let mut rows = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next, totals, tokens) = match rpc.clone() {
            Rpc::ByPrincipal(mut r) => {
                r.page_token = token.clone();
                let a = api.cost_by_principal(r).await?.into_inner();
                (a.rows, a.next_page_token, a.totals, a.total_tokens)
            }
            Rpc::ByTag(mut r) => {
                r.page_token = token.clone();
                let a = api.cost_by_tag(r).await?.into_inner();
                (a.rows, a.next_page_token, a.totals, a.total_tokens)
            }
            Rpc::Tokens(mut r) => {
                r.page_token = token.clone();
                let a = api.token_usage(r).await?.into_inner();
                (a.rows, a.next_page_token, a.totals, a.total_tokens)
            }
        };
        rows.extend(page);
        if next.is_empty() {
            return Ok(Answer {
                rows,
                totals,
                tokens: tokens.unwrap(),
            });
        }
        token = next;
    }
}

/// The grouped cases each scoped caller asks: (id, reference spec, request, grouping).
fn cases() -> Vec<(&'static str, Value, Rpc, G)> {
    let spec = |(s, e): (&str, &str), granularity: &str, group_by: &[&str], extra: Value| {
        let mut v = json!({"start": s, "end": e, "metric": "unblended", "granularity": granularity, "group_by": group_by});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    vec![
        (
            "by_arn",
            spec(ALL, "none", &["principal_arn"], json!({})),
            Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: range(ALL.0, ALL.1),
                page_size: 29,
                ..Default::default()
            }),
            G::Arn,
        ),
        (
            "team_by_model_monthly",
            spec(ALL, "monthly", &["tag", "model"], json!({"tag_key": TEAM})),
            Rpc::ByTag(proto::CostByTagRequest {
                time_range: range(ALL.0, ALL.1),
                tag_key: TEAM.into(),
                granularity: proto::Granularity::Monthly.into(),
                also_group_by: vec![D::Model.into()],
                ..Default::default()
            }),
            G::Arn,
        ),
        (
            "tokens_by_account",
            spec(
                ALL,
                "monthly",
                &["account", "usage_category", "line_item_type"],
                json!({}),
            ),
            Rpc::Tokens(proto::TokenUsageRequest {
                time_range: range(ALL.0, ALL.1),
                granularity: proto::Granularity::Monthly.into(),
                group_by: vec![
                    D::Account.into(),
                    D::UsageCategory.into(),
                    D::LineItemType.into(),
                ],
                ..Default::default()
            }),
            G::Arn,
        ),
        (
            "allocated_by_role",
            spec(
                MONTHS,
                "monthly",
                &["principal_role", "routing"],
                json!({"allocation": true}),
            ),
            Rpc::ByPrincipal(proto::CostByPrincipalRequest {
                time_range: range(MONTHS.0, MONTHS.1),
                grouping: G::Role.into(),
                granularity: proto::Granularity::Monthly.into(),
                also_group_by: vec![D::Routing.into()],
                allocation: proto::Allocation::Proportional.into(),
                ..Default::default()
            }),
            G::Role,
        ),
        (
            "allocated_cost_center",
            spec(
                MONTHS,
                "none",
                &["tag", "principal_account"],
                json!({"allocation": true, "tag_key": "iamPrincipal/cost-center"}),
            ),
            Rpc::ByTag(proto::CostByTagRequest {
                time_range: range(MONTHS.0, MONTHS.1),
                tag_key: "iamPrincipal/cost-center".into(),
                also_group_by: vec![D::Principal.into()],
                principal_grouping: G::Account.into(),
                allocation: proto::Allocation::Proportional.into(),
                ..Default::default()
            }),
            G::Account,
        ),
    ]
}

fn names_of(spec: &Value) -> Vec<&str> {
    spec["group_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn by_key(rows: &[proto::Row], names: &[&str], grouping: G) -> BTreeMap<Key, Sums> {
    let map: BTreeMap<Key, Sums> = rows
        .iter()
        .map(|r| (key_of(r, names, grouping), sums(r)))
        .collect();
    assert_eq!(map.len(), rows.len(), "a group appears twice");
    map
}

fn token_sum(rows: &[proto::Row]) -> [i64; 4] {
    rows.iter().fold([0; 4], |mut s, r| {
        let t = r.tokens.unwrap();
        for (a, b) in s
            .iter_mut()
            .zip([t.input, t.output, t.cache_read, t.cache_write])
        {
            *a += b;
        }
        s
    })
}

/// Per currency: cost and line items, summed over the reference rows.
fn per_currency(rows: &BTreeMap<Key, Sums>) -> BTreeMap<(Option<String>, String), (Decimal, i64)> {
    let mut out: BTreeMap<(Option<String>, String), (Decimal, i64)> = BTreeMap::new();
    for (key, s) in rows {
        let first = key
            .iter()
            .find(|(k, _)| *k != "currency" && *k != "period_start")
            .and_then(|(_, v)| v.clone())
            .filter(|v| !v.is_empty());
        let e = out
            .entry((first, key["currency"].clone().unwrap()))
            .or_default();
        e.0 += s.0;
        e.1 += s.5;
    }
    out
}

#[tokio::test]
async fn every_scoped_answer_equals_duckdb_with_the_scope_as_where() {
    let callers = callers();
    let (_dir, path) = write_auth_file(&callers);
    let server = start(&path, &[]).await;
    let cases = cases();
    // One reference run: every case for every caller, plus the List* groupings.
    let mut specs = Vec::new();
    for caller in &callers {
        for (id, spec, _, _) in &cases {
            let mut s = spec.clone();
            s["id"] = json!(format!("{}/{id}", caller.name));
            s["scope"] = caller.scope.clone();
            specs.push(s);
        }
        for (id, key) in [("principals", "principal_arn"), ("models", "model")] {
            specs.push(json!({"id": format!("{}/{id}", caller.name), "start": ALL.0, "end": ALL.1,
                "metric": "unblended", "granularity": "none", "group_by": [key], "scope": caller.scope}));
        }
    }
    let expected = reference(&specs);
    let mut checked_unattributed = false;
    let mut checked_untagged = false;
    for caller in &callers {
        let mut c = api(&server, caller.token).await;
        for (id, spec, rpc, grouping) in &cases {
            let what = format!("{}/{id}", caller.name);
            let answer = all_pages(&mut c, rpc)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(sum_rows(&answer.rows), totals(&answer.totals), "{what}");
            let t = answer.tokens;
            assert_eq!(
                token_sum(&answer.rows),
                [t.input, t.output, t.cache_read, t.cache_write],
                "{what}: token totals"
            );
            let names = names_of(spec);
            let ours = by_key(&answer.rows, &names, *grouping);
            let theirs = reference_rows(&expected["results"][&what], &what);
            assert!(!theirs.is_empty(), "{what}: the scope matches nothing");
            assert_same_rows(&what, &ours, &theirs);
            // Within an account scope, spend without a caller stays (UNATTRIBUTED), and
            // so does spend without the grouped tag (UNTAGGED).
            if caller.name == "account-210" && *id == "by_arn" {
                assert!(ours.keys().any(|k| k["principal_arn"].is_none()));
                checked_unattributed = true;
            }
            if caller.name == "account-210" && *id == "team_by_model_monthly" {
                assert!(ours.keys().any(|k| k["tag"].is_none()));
                checked_untagged = true;
            }
            // A team scope never shows another team's value.
            if caller.name == "ds-and-alpha" && *id == "team_by_model_monthly" {
                for k in ours.keys() {
                    let team = k["tag"].as_deref();
                    assert!(
                        matches!(team, Some("data-science" | "チーム-α")),
                        "{team:?}"
                    );
                }
            }
            if caller.name == "app-roles" && *id == "by_arn" {
                assert!(
                    ours.keys().all(|k| k["principal_arn"].is_some()),
                    "no unattributed spend under a principal scope"
                );
            }
        }

        // ListPrincipals and ListModels: the same line items as the grouped answers.
        for (id, name) in [("principals", "principal_arn"), ("models", "model")] {
            let what = format!("{}/{id}", caller.name);
            let theirs = per_currency(&reference_rows(&expected["results"][&what], &what));
            let mut ours = BTreeMap::new();
            let entries: Vec<(Option<String>, Vec<proto::Money>, i64)> = if id == "principals" {
                let r = c
                    .list_principals(proto::ListPrincipalsRequest {
                        time_range: range(ALL.0, ALL.1),
                        page_size: 10_000,
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"))
                    .into_inner();
                assert!(r.next_page_token.is_empty());
                r.principals
                    .into_iter()
                    .map(|p| {
                        let principal = p.principal.unwrap();
                        let arn = (principal.kind != proto::PrincipalKind::Unattributed as i32)
                            .then_some(principal.arn);
                        (arn, p.cost, p.line_items)
                    })
                    .collect()
            } else {
                let r = c
                    .list_models(proto::ListModelsRequest {
                        time_range: range(ALL.0, ALL.1),
                        page_size: 10_000,
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"))
                    .into_inner();
                r.models
                    .into_iter()
                    .map(|m| {
                        (
                            (!m.model.is_empty()).then_some(m.model),
                            m.cost,
                            m.line_items,
                        )
                    })
                    .collect()
            };
            let mut line_items: BTreeMap<Option<String>, i64> = BTreeMap::new();
            for (key, cost, n) in entries {
                for (currency, amount) in totals(&cost) {
                    ours.insert((key.clone(), currency), amount);
                }
                *line_items.entry(key).or_default() += n;
            }
            let theirs_cost: BTreeMap<_, _> =
                theirs.iter().map(|(k, (c, _))| (k.clone(), *c)).collect();
            let mut theirs_n: BTreeMap<Option<String>, i64> = BTreeMap::new();
            for ((key, _), (_, n)) in &theirs {
                *theirs_n.entry(key.clone()).or_default() += n;
            }
            assert_eq!(ours, theirs_cost, "{what} ({name}): cost");
            assert_eq!(line_items, theirs_n, "{what} ({name}): line items");
        }

        // ListTagKeys: a team scope counts only its own teams' values.
        let keys = c
            .list_tag_keys(proto::ListTagKeysRequest {
                time_range: range(ALL.0, ALL.1),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let theirs_total: i64 = reference_rows(
            &expected["results"][&format!("{}/models", caller.name)],
            "models",
        )
        .values()
        .map(|s| s.5)
        .sum();
        assert_eq!(keys.total_line_items, theirs_total, "{}", caller.name);
        if caller.name == "ds-and-alpha" {
            let team = keys.tag_keys.iter().find(|k| k.key == TEAM).unwrap();
            assert_eq!(team.distinct_values, 2, "only its two teams");
            assert_eq!(team.line_items, theirs_total, "every line item has the key");
        }
    }
    assert!(checked_unattributed && checked_untagged);

    // An account scope answers exactly what an admin gets with the same filter.
    let mut admin = api(&server, "admin-token-0b4f").await;
    let mut scoped = api(&server, "acct-token-7c1e").await;
    let request = |filter: Option<proto::Filter>| proto::CostByTagRequest {
        time_range: range(ALL.0, ALL.1),
        tag_key: TEAM.into(),
        filter,
        ..Default::default()
    };
    let filtered = admin
        .cost_by_tag(request(Some(proto::Filter {
            account_ids: vec!["210987654321".into()],
            ..Default::default()
        })))
        .await
        .unwrap()
        .into_inner();
    let own = scoped
        .cost_by_tag(request(None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.rows, filtered.rows);
    assert_eq!(own.totals, filtered.totals);
    server.stop().await;
}

#[tokio::test]
async fn credentials_rights_and_filters_are_checked() {
    let callers = callers();
    let (_dir, path) = write_auth_file(&callers);
    let server = start(&path, &[]).await;
    let request = proto::CostByPrincipalRequest {
        time_range: range(ALL.0, ALL.1),
        ..Default::default()
    };

    // Missing, malformed and unknown credentials.
    for authorization in [
        None,
        Some("Bearer"),
        Some("Basic YWRtaW46YWRtaW4="),
        Some("admin-token-0b4f"),
        Some("Bearer admin-token-0b4F"),
        Some("Bearer not-a-known-token-2c9d"),
    ] {
        let mut c = api_raw(&server, authorization).await;
        let e = c.cost_by_principal(request.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{authorization:?}");
        assert_eq!(e.message(), "missing or unknown bearer token");
        let e = c
            .list_models(proto::ListModelsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{authorization:?}");
    }

    // Health answers probes without credentials.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "bedrock.attribution.v1.AttributionService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // DataStatus and Refresh need an admin.
    let mut admin = api(&server, "admin-token-0b4f").await;
    let mut team = api(&server, "team-token-93aa").await;
    let e = team
        .data_status(proto::DataStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("DataStatus"), "{}", e.message());
    let e = team
        .refresh(proto::RefreshRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        admin
            .data_status(proto::DataStatusRequest::default())
            .await
            .unwrap()
            .into_inner()
            .total_line_items
            > 0
    );
    admin
        .refresh(proto::RefreshRequest::default())
        .await
        .unwrap();

    // Reflection is admin-only too.
    let reflect = |token: &'static str| {
        let channel = server.channel();
        async move {
            let value: AsciiMetadataValue = format!("Bearer {token}").parse().unwrap();
            let mut c = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::with_interceptor(
                channel.await,
                Bearer(Some(value)),
            );
            let request = tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            };
            match c
                .server_reflection_info(tokio_stream::iter([request]))
                .await
            {
                Ok(mut stream) => stream.get_mut().message().await.map(|m| m.is_some()),
                Err(e) => Err(e),
            }
        }
    };
    assert_eq!(
        reflect("team-token-93aa").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert!(reflect("admin-token-0b4f").await.unwrap());

    // A filter that reaches outside the scope is refused, naming the field.
    let denied = |filter: proto::Filter| proto::CostByTagRequest {
        time_range: range(ALL.0, ALL.1),
        tag_key: TEAM.into(),
        filter: Some(filter),
        ..Default::default()
    };
    for (token, filter, field) in [
        (
            "acct-token-7c1e",
            proto::Filter {
                account_ids: vec!["210987654321".into(), "345678901234".into()],
                ..Default::default()
            },
            "filter.account_ids",
        ),
        (
            "prefix-token-55d2",
            proto::Filter {
                principals: vec!["arn:aws:iam::345678901234:user/eva4".into()],
                ..Default::default()
            },
            "filter.principals",
        ),
        (
            "prefix-token-55d2",
            proto::Filter {
                principals: vec![String::new()],
                ..Default::default()
            },
            "filter.principals",
        ),
        (
            "team-token-93aa",
            proto::Filter {
                tags: vec![proto::TagFilter {
                    key: TEAM.into(),
                    values: vec!["search".into()],
                    untagged: false,
                }],
                ..Default::default()
            },
            "filter.tags",
        ),
        (
            "team-token-93aa",
            proto::Filter {
                tags: vec![proto::TagFilter {
                    key: TEAM.into(),
                    values: vec!["data-science".into()],
                    untagged: true,
                }],
                ..Default::default()
            },
            "filter.tags",
        ),
    ] {
        let mut c = api(&server, token).await;
        let e = c.cost_by_tag(denied(filter.clone())).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{filter:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
        let e = c
            .list_principals(proto::ListPrincipalsRequest {
                time_range: range(ALL.0, ALL.1),
                filter: Some(filter),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    // Narrowing inside the scope is fine.
    let inside = team
        .cost_by_tag(denied(proto::Filter {
            tags: vec![proto::TagFilter {
                key: TEAM.into(),
                values: vec!["data-science".into()],
                untagged: false,
            }],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inside.rows.len(), 1);
    assert_eq!(inside.rows[0].tag.as_ref().unwrap().value, "data-science");
    server.stop().await;
}

#[tokio::test]
async fn two_scopes_never_share_an_answer_or_a_page_token() {
    let callers = callers();
    let (_dir, path) = write_auth_file(&callers);
    let server = start(&path, &[]).await;
    let mut acct = api(&server, "acct-token-7c1e").await;
    let mut team = api(&server, "team-token-93aa").await;
    let request = proto::CostByPrincipalRequest {
        time_range: range(ALL.0, ALL.1),
        page_size: 2,
        ..Default::default()
    };
    // The same request, one caller right after the other (the first answer is cached).
    let a = acct
        .cost_by_principal(request.clone())
        .await
        .unwrap()
        .into_inner();
    let t = team
        .cost_by_principal(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.totals, t.totals);
    assert_ne!(a.rows, t.rows);
    assert!(!a.next_page_token.is_empty());
    // A page token of one caller is refused for the other, and still works for its own.
    let next = proto::CostByPrincipalRequest {
        page_token: a.next_page_token.clone(),
        ..request.clone()
    };
    let e = team.cost_by_principal(next.clone()).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::FailedPrecondition),
        "{e:?}"
    );
    let a2 = acct.cost_by_principal(next).await.unwrap().into_inner();
    assert_eq!(a2.rows.len(), 2);
    assert_ne!(a2.rows, a.rows);
    server.stop().await;
}

/// Polls `check` every 50 ms until it holds, for at most 15 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_changed_auth_file_takes_effect_without_a_restart() {
    let mut callers = callers();
    callers.truncate(2);
    let (_dir, path) = write_auth_file(&callers);
    let server = start(&path, &["--auth-reload-interval", "100ms"]).await;
    let request = proto::ListModelsRequest {
        time_range: range(ALL.0, ALL.1),
        ..Default::default()
    };
    let works = |token: &'static str| {
        let server = &server;
        let request = request.clone();
        async move {
            match api(server, token).await.list_models(request).await {
                Ok(_) => true,
                Err(e) => {
                    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
                    false
                }
            }
        }
    };
    assert!(works("acct-token-7c1e").await);
    assert!(!works("rotated-token-e3b0").await);
    // Rotate the token: the new one is accepted, the old one refused.
    callers[1].token = "rotated-token-e3b0";
    std::fs::write(&path, auth_file_text(&callers)).unwrap();
    eventually("the new token accepted", || works("rotated-token-e3b0")).await;
    assert!(!works("acct-token-7c1e").await);
    // A broken file keeps the callers in force.
    std::fs::write(&path, "callers: [{name: x, token_sha256: not-hex}]").unwrap();
    // Ten reload intervals: the broken file has been read by then.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(works("rotated-token-e3b0").await);
    assert!(works("admin-token-0b4f").await);
    server.stop().await;
}

#[tokio::test]
async fn no_access_control_off_loopback_unless_allowed() {
    let output = tokio::task::spawn_blocking(|| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bedrock-attribution-server"))
            .args([
                "--listen",
                "0.0.0.0:0",
                "--refresh-interval",
                "0",
                "--no-cache",
            ])
            .arg("--source")
            .arg(format!("file://{}", small_export().display()))
            .env_remove("BEDROCK_ATTRIBUTION_AUTH_FILE")
            .env_remove("BEDROCK_ATTRIBUTION_ALLOW_UNAUTHENTICATED")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: it must refuse at once, before loading anything.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
                    .unwrap();
                return (status, stderr);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not refuse to start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let (status, stderr) = output;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("--auth-file") && stderr.contains("--allow-unauthenticated"),
        "{stderr}"
    );
}

#[tokio::test]
async fn audit_lines_and_metrics_name_the_caller_and_never_a_token() {
    let callers = callers();
    let (_dir, path) = write_auth_file(&callers);
    let server = ServerProcess::start(
        small_export(),
        &[
            "--auth-file",
            path.to_str().unwrap(),
            "--log-format",
            "json",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let channel = server.channel().await;
    let wrong = "wrong-secret-token-8d1f";
    let mut good = AttributionServiceClient::with_interceptor(
        channel.clone(),
        Bearer(Some(
            MetadataValue::try_from("Bearer team-token-93aa").unwrap(),
        )),
    );
    let mut bad = AttributionServiceClient::with_interceptor(
        channel,
        Bearer(Some(
            MetadataValue::try_from(format!("Bearer {wrong}")).unwrap(),
        )),
    );
    let answer = good
        .cost_by_tag(proto::CostByTagRequest {
            time_range: range(ALL.0, ALL.1),
            tag_key: TEAM.into(),
            filter: Some(proto::Filter {
                tags: vec![proto::TagFilter {
                    key: TEAM.into(),
                    values: vec!["data-science".into()],
                    untagged: false,
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = bad
        .list_models(proto::ListModelsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(!e.message().contains(wrong));
    // Both calls' audit events, in order.
    let mut audits = Vec::new();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while audits.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .log
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no audit lines: {e}; got {lines:#?}"));
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["target"] == "audit"
        {
            audits.push(v);
        }
        lines.push(line);
    }
    while let Ok(line) = server.log.recv_timeout(Duration::from_millis(200)) {
        lines.push(line);
    }
    let f = &audits[0];
    assert_eq!(f["caller"], "ds-and-alpha", "{f}");
    assert_eq!(
        f["rpc"],
        "bedrock.attribution.v1.AttributionService/CostByTag"
    );
    assert_eq!(f["code"], "OK");
    assert_eq!(f["range"], "2026-01-01T00:00:00Z/2027-01-01T00:00:00Z");
    assert_eq!(f["filters"], r#"tags=["iamPrincipal/team":"data-science"]"#);
    assert_eq!(f["rows"], answer.rows.len() as i64);
    assert!(f["duration_ms"].is_u64());
    let f = &audits[1];
    assert_eq!(f["caller"], "-");
    assert_eq!(
        f["rpc"],
        "bedrock.attribution.v1.AttributionService/ListModels"
    );
    assert_eq!(f["code"], "UNAUTHENTICATED");
    for line in &lines {
        for secret in [wrong, "team-token-93aa"] {
            assert!(!line.contains(secret), "a token in the log: {line}");
        }
    }

    // The same two calls in the metrics, under the caller's name; the refused one has
    // no caller.
    let m = scrape(&server).await;
    let calls = "bedrock_attribution_caller_requests_total";
    let count = |caller, method, code| {
        value(
            &m,
            calls,
            &[("caller", caller), ("method", method), ("code", code)],
        )
    };
    assert_eq!(count("ds-and-alpha", "CostByTag", "OK"), 1.0);
    assert_eq!(count("none", "ListModels", "UNAUTHENTICATED"), 1.0);
    let callers_seen: BTreeSet<&str> = m
        .samples
        .iter()
        .filter(|s| s.metric == calls)
        .filter_map(|s| s.labels.get("caller"))
        .collect();
    assert_eq!(callers_seen, BTreeSet::from(["ds-and-alpha", "none"]));
    let (_, text) = http_get(server.metrics.unwrap(), "/metrics").await;
    for secret in [wrong, "team-token-93aa"] {
        assert!(!text.contains(secret), "a token in the metrics");
    }
}
