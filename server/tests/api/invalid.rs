//! Bad requests get INVALID_ARGUMENT (or another actionable code) with a message that
//! says what to change, never a panic or a silently wrong answer.

use bedrock_attribution_client::{Error, proto};
use tonic::Code;

use crate::common::{TestServer, range, small_export};

fn code_and_message(e: Error) -> (Code, String) {
    (e.code(), e.to_string())
}

#[tokio::test]
async fn invalid_requests_are_rejected_with_actionable_messages() {
    let server = TestServer::start(&[small_export()]).await;
    let c = &server.client;
    let ok_range = range("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z");

    let cases: Vec<(proto::CostByPrincipalRequest, &str)> = vec![
        (proto::CostByPrincipalRequest::default(), "time_range"),
        (
            proto::CostByPrincipalRequest {
                time_range: range("2026-06-01T00:00:00Z", "2026-05-01T00:00:00Z"),
                ..Default::default()
            },
            "not after start",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: range("2026-06-01T00:00:00Z", "2026-06-01T00:00:00Z"),
                ..Default::default()
            },
            "not after start",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: Some(proto::TimeRange {
                    start: ok_range.unwrap().start,
                    end: None,
                }),
                ..Default::default()
            },
            "time_range.end",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                page_size: 10_001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                page_size: -5,
                ..Default::default()
            },
            "page_size",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                cost_metric: 42,
                ..Default::default()
            },
            "cost_metric",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                granularity: 9,
                ..Default::default()
            },
            "granularity",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                grouping: 7,
                ..Default::default()
            },
            "grouping",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                also_group_by: vec![99],
                ..Default::default()
            },
            "also_group_by",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                also_group_by: vec![0],
                ..Default::default()
            },
            "DIMENSION_UNSPECIFIED",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                also_group_by: vec![proto::Dimension::Tag.into()],
                ..Default::default()
            },
            "also_group_by_tag_key",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                filter: Some(proto::Filter {
                    account_ids: vec!["12345".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            "12-digit",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: ok_range,
                filter: Some(proto::Filter {
                    routings: vec![-1],
                    ..Default::default()
                }),
                ..Default::default()
            },
            "filter.routings",
        ),
    ];
    for (request, needle) in cases {
        let (code, message) =
            code_and_message(c.cost_by_principal(request.clone()).await.unwrap_err());
        assert_eq!(code, Code::InvalidArgument, "{request:?}: {message}");
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }

    let (code, message) = code_and_message(
        c.cost_by_tag(proto::CostByTagRequest {
            time_range: ok_range,
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("tag_key"), "{message}");

    let (code, _) = code_and_message(
        c.token_usage(proto::TokenUsageRequest {
            time_range: ok_range,
            group_by: vec![2, 2],
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);

    // A token from one request does not page another.
    let first = c
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: ok_range,
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!first.next_page_token.is_empty());
    let other = proto::CostByPrincipalRequest {
        time_range: ok_range,
        grouping: proto::PrincipalGrouping::Role.into(),
        page_token: first.next_page_token.clone(),
        ..Default::default()
    };
    let (code, message) = code_and_message(c.cost_by_principal(other).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("different request"), "{message}");

    server.stop().await;
}
