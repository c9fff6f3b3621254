//! Admission: beyond the running and queued limits, large questions are refused at once
//! with RESOURCE_EXHAUSTED and a retry hint; nothing else goes wrong.

use bedrock_attribution_client::proto;
use tonic::Code;

use crate::common::{TestServer, small_export};

#[tokio::test]
async fn a_full_line_sheds_with_a_retry_hint() {
    let sources = [format!("file://{}", small_export().display())];
    let flags: Vec<String> = [
        "--max-concurrent-queries",
        "1",
        "--max-queued-queries",
        "0",
        "--small-query-rows",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let server = TestServer::serve(&sources, &flags).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut raw = server.client.raw();
        tasks.push(tokio::spawn(async move {
            // A range never asked before, so no answer comes from the cache.
            let end = format!("2026-07-{:02}T{:02}:00:00Z", 1 + i / 24, i % 24);
            raw.cost_by_principal(proto::CostByPrincipalRequest {
                time_range: crate::common::range("2026-03-01T00:00:00Z", &end),
                also_group_by: vec![proto::Dimension::Model.into()],
                ..Default::default()
            })
            .await
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("retry in"),
                    "{}",
                    status.message()
                );
                let hint = status
                    .metadata()
                    .get("grpc-retry-pushback-ms")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                assert!(hint.is_some_and(|ms| ms >= 100), "{:?}", status.metadata());
                shed += 1;
            }
        }
    }
    assert!(ok >= 1, "the running query finishes");
    assert!(
        shed >= 1,
        "40 at once with room for one: some are shed ({ok} ok)"
    );
    server.stop().await;
}
