//! Every RPC over the generated export: groupings reconcile to totals, paging loses and
//! repeats nothing, discovery, health and reflection.

use std::collections::HashSet;

use bedrock_attribution_client::proto::{self, Dimension as D, PrincipalGrouping as G};
use bedrock_attribution_server::demo::generator::HOSTILE_TAG_KEYS;
use rust_decimal::Decimal;

use crate::common::{TestServer, range, small_export, sum_rows, totals};

const ALL: (&str, &str) = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");

#[tokio::test]
async fn every_grouping_adds_up_to_the_same_totals() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let all = range(ALL.0, ALL.1);
    let ungrouped = c
        .token_usage_all(proto::TokenUsageRequest {
            time_range: all,
            ..Default::default()
        })
        .await
        .unwrap();
    let grand = totals(&ungrouped.totals);
    assert_eq!(grand.len(), 2, "USD and EUR: {grand:?}");
    assert_eq!(sum_rows(&ungrouped.rows), grand);

    let groupings: Vec<Vec<i32>> = vec![
        vec![D::Principal.into()],
        vec![D::Model.into()],
        vec![D::Account.into()],
        vec![D::Region.into()],
        vec![D::UsageCategory.into()],
        vec![D::LineItemType.into()],
        vec![D::Tag.into()],
        vec![D::Principal.into(), D::Model.into(), D::Tag.into()],
    ];
    for group_by in groupings {
        for grouping in [G::Arn, G::Role, G::Account] {
            for granularity in [
                proto::Granularity::Unspecified,
                proto::Granularity::Monthly,
                proto::Granularity::Daily,
            ] {
                let answer = c
                    .token_usage_all(proto::TokenUsageRequest {
                        time_range: all,
                        group_by: group_by.clone(),
                        tag_key: "iamPrincipal/team".into(),
                        principal_grouping: grouping.into(),
                        granularity: granularity.into(),
                        page_size: 500,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert_eq!(
                    totals(&answer.totals),
                    grand,
                    "{group_by:?} {grouping:?} {granularity:?}"
                );
                assert_eq!(
                    sum_rows(&answer.rows),
                    grand,
                    "{group_by:?} {grouping:?} {granularity:?}"
                );
                assert_eq!(answer.total_tokens, ungrouped.total_tokens);
            }
        }
    }
    for key in HOSTILE_TAG_KEYS {
        let by_tag = c
            .cost_by_tag_all(proto::CostByTagRequest {
                time_range: all,
                tag_key: key.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(sum_rows(&by_tag.rows), grand, "{key}");
        assert!(
            by_tag
                .rows
                .iter()
                .any(|r| !r.tag.as_ref().unwrap().untagged),
            "{key} has tagged spend"
        );
        assert!(
            by_tag.rows.iter().any(|r| r.tag.as_ref().unwrap().untagged),
            "{key} has untagged spend"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn pages_lose_and_repeat_nothing() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let request = proto::CostByPrincipalRequest {
        time_range: range(ALL.0, ALL.1),
        granularity: proto::Granularity::Monthly.into(),
        also_group_by: vec![D::Model.into()],
        ..Default::default()
    };
    let whole = c
        .cost_by_principal(proto::CostByPrincipalRequest {
            page_size: 10_000,
            ..request.clone()
        })
        .await
        .unwrap();
    assert!(whole.next_page_token.is_empty());
    assert!(
        whole.rows.len() > 50,
        "enough rows to page: {}",
        whole.rows.len()
    );
    let mut paged = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .cost_by_principal(proto::CostByPrincipalRequest {
                page_size: 7,
                page_token: token.clone(),
                ..request.clone()
            })
            .await
            .unwrap();
        assert!(page.rows.len() <= 7);
        assert_eq!(
            page.totals, whole.totals,
            "totals are the same on every page"
        );
        paged.extend(page.rows);
        pages += 1;
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, whole.rows.len().div_ceil(7));
    assert_eq!(paged, whole.rows, "same rows, same order");
    let keys: HashSet<String> = paged
        .iter()
        .map(|r| {
            format!(
                "{:?}|{}|{:?}|{}",
                r.principal,
                r.model,
                r.period_start,
                r.cost.as_ref().unwrap().currency_code
            )
        })
        .collect();
    assert_eq!(keys.len(), paged.len(), "no group repeated");
    let costs: Vec<Decimal> = paged
        .iter()
        .map(|r| r.cost.as_ref().unwrap().exact.parse().unwrap())
        .collect();
    assert!(
        costs.windows(2).all(|w| w[0] >= w[1]),
        "ordered by cost descending"
    );
    server.stop().await;
}

#[tokio::test]
async fn stale_execution_and_leftover_chunk_are_not_read() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    // The generator keeps blended equal to unblended; its stale create-new execution of
    // 2026-06 doubles unblended only. Equal sums prove only the newest execution is read.
    for (start, end) in [
        ("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"),
        ("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"),
    ] {
        let metric = |m: proto::CostMetric| {
            let c = c.clone();
            async move {
                totals(
                    &c.token_usage(proto::TokenUsageRequest {
                        time_range: range(start, end),
                        cost_metric: m.into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .totals,
                )
            }
        };
        let unblended = metric(proto::CostMetric::Unblended).await;
        assert!(!unblended.is_empty());
        assert_eq!(
            unblended,
            metric(proto::CostMetric::Blended).await,
            "{start}"
        );
    }
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    let june = status
        .periods
        .iter()
        .find(|p| p.billing_period == "2026-06")
        .unwrap();
    assert!(
        june.execution.ends_with("exec-9f8e7d"),
        "{}",
        june.execution
    );
    let may = status
        .periods
        .iter()
        .find(|p| p.billing_period == "2026-05")
        .unwrap();
    assert_eq!(
        (may.files, may.file_list.as_str()),
        (3, "manifest"),
        "the leftover 4th chunk is not listed"
    );
    let july = status
        .periods
        .iter()
        .find(|p| p.billing_period == "2026-07")
        .unwrap();
    assert_eq!(july.file_list, "listing");
    let march = status
        .periods
        .iter()
        .find(|p| p.billing_period == "2026-03")
        .unwrap();
    assert_eq!(
        march.missing_columns,
        vec!["line_item_iam_principal".to_string(), "tags".to_string()]
    );
    assert_eq!(status.periods.len(), 5);
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    server.stop().await;
}

#[tokio::test]
async fn discovery_lists_principals_models_and_tag_keys() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let all = range(ALL.0, ALL.1);
    let principals = c
        .list_principals_all(proto::ListPrincipalsRequest {
            time_range: all,
            page_size: 9,
            ..Default::default()
        })
        .await
        .unwrap()
        .principals;
    assert_eq!(
        principals[0].principal.as_ref().unwrap().kind,
        proto::PrincipalKind::Unattributed as i32,
        "unattributed first"
    );
    let kinds: HashSet<i32> = principals
        .iter()
        .map(|p| p.principal.as_ref().unwrap().kind)
        .collect();
    for k in [
        proto::PrincipalKind::IamUser,
        proto::PrincipalKind::AssumedRole,
        proto::PrincipalKind::IamRole,
        proto::PrincipalKind::FederatedUser,
        proto::PrincipalKind::Root,
        proto::PrincipalKind::Other,
    ] {
        assert!(kinds.contains(&(k as i32)), "{k:?} among {kinds:?}");
    }
    let arns: Vec<&str> = principals
        .iter()
        .skip(1)
        .map(|p| p.principal.as_ref().unwrap().arn.as_str())
        .collect();
    assert!(arns.windows(2).all(|w| w[0] < w[1]), "ordered by ARN");

    let models = c
        .list_models_all(proto::ListModelsRequest {
            time_range: all,
            ..Default::default()
        })
        .await
        .unwrap()
        .models;
    let names: Vec<&str> = models.iter().map(|m| m.model.as_str()).collect();
    for want in [
        "Claude Sonnet 4.6",
        "Claude Haiku 4.5",
        "Nova 2.0 Lite",
        "Nova2.0Lite",
        "openai.gpt-oss-120b",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }

    let keys = c
        .list_tag_keys(proto::ListTagKeysRequest {
            time_range: all,
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = keys.tag_keys.iter().map(|k| k.key.as_str()).collect();
    for want in HOSTILE_TAG_KEYS.iter().copied().chain([
        "iamPrincipal/team",
        "iamPrincipal/cost-center",
        "resourceTags/Project",
    ]) {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let team = keys
        .tag_keys
        .iter()
        .find(|k| k.key == "iamPrincipal/team")
        .unwrap();
    assert_eq!(team.distinct_values, 8);
    assert!(team.line_items < keys.total_line_items);
    // The cost-center key only exists from 2026-06 on.
    let early = c
        .list_tag_keys(proto::ListTagKeysRequest {
            time_range: range("2026-03-01T00:00:00Z", "2026-06-01T00:00:00Z"),
            key_prefix: "iamPrincipal/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        early
            .tag_keys
            .iter()
            .all(|k| k.key.starts_with("iamPrincipal/") && k.key != "iamPrincipal/cost-center")
    );
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection() {
    let server = TestServer::start(&[small_export()]).await;
    let channel = server.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "bedrock.attribution.v1.AttributionService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}")
    };
    let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains("bedrock.attribution.v1.AttributionService"),
        "{names:?}"
    );
    assert!(names.contains("grpc.health.v1.Health"), "{names:?}");

    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest as AlphaRequest,
        server_reflection_client::ServerReflectionClient as AlphaClient,
        server_reflection_request::MessageRequest as AlphaMessage,
        server_reflection_response::MessageResponse as AlphaResponse,
    };
    let mut alpha = AlphaClient::new(channel);
    let request = AlphaRequest {
        host: String::new(),
        message_request: Some(AlphaMessage::FileContainingSymbol(
            "bedrock.attribution.v1.AttributionService".into(),
        )),
    };
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(AlphaResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("{response:?}")
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_flips_health_to_not_serving_before_draining() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let server = TestServer::start(&[small_export()]).await;
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "bedrock.attribution.v1.AttributionService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap().status;
    assert_eq!(first, ServingStatus::Serving as i32);
    // Shutdown waits for requests in flight, this watch included, so it runs aside.
    let stopping = tokio::spawn(server.stop());
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), watch.message())
        .await
        .expect("health changes within 10 s of shutdown")
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(next, ServingStatus::NotServing as i32);
    drop(watch);
    tokio::time::timeout(std::time::Duration::from_secs(30), stopping)
        .await
        .expect("the server drains and stops")
        .unwrap();
}
