//! Manifests taken literally but safely: a file named twice counts once (and says so), a
//! manifest naming no files never serves $0 as current, and a range no billing period
//! covers says so.

use bedrock_attribution_client::proto;
use bedrock_attribution_server::demo::{ExportWriter, PeriodLayout, SchemaOptions};

use crate::{
    common::{d, range},
    s3fixture::{at, bedrock_item, file_url, month_totals, serve},
};

fn manifest_path(root: &std::path::Path) -> std::path::PathBuf {
    root.join("metadata/BILLING_PERIOD=2026-08/tiny-Manifest.json")
}

/// Rewrites the period's manifest with `files` as its data file list.
fn set_files(
    root: &std::path::Path,
    files: impl Fn(&[serde_json::Value]) -> Vec<serde_json::Value>,
) {
    let path = manifest_path(root);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let listed = m["dataFiles"].as_array().unwrap().clone();
    m["dataFiles"] = serde_json::Value::Array(files(&listed));
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[tokio::test]
async fn duplicates_count_once_and_empty_manifests_keep_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(dir.path(), "tiny", "s3://b/tiny");
    let items = vec![
        bedrock_item(
            "a",
            "210987654321",
            at(2026, 8, 3, 8),
            Some("arn:aws:iam::210987654321:user/ann"),
            2.25,
            &[],
        ),
        bedrock_item("b", "210987654321", at(2026, 8, 4, 9), None, 0.75, &[]),
    ];
    writer
        .write_period(
            "2026-08",
            &[items],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 0,
            },
            SchemaOptions::default(),
        )
        .unwrap();
    // The file named 100,000 times: read once, and said once (not 99,999 problems).
    set_files(dir.path(), |listed| {
        std::iter::repeat_n(listed.to_vec(), 100_000)
            .flatten()
            .collect()
    });
    let server = serve(&[file_url(dir.path())], &[]).await;
    let c = &server.client;
    let usd = |a: &str| vec![("USD".to_owned(), d(a))];
    assert_eq!(
        month_totals(c, "2026-08").await.unwrap(),
        usd("3"),
        "counted once"
    );
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    assert_eq!(status.periods[0].state, "current");
    assert_eq!(status.periods[0].bedrock_line_items, 2);
    let dup = status
        .problems
        .iter()
        .find(|p| p.impact == "corrected")
        .unwrap_or_else(|| panic!("{:?}", status.problems));
    assert!(
        dup.message
            .contains("tiny-00001.snappy.parquet 100,000 times; it is read once"),
        "{}",
        dup.message
    );
    assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
    let bytes = prost::Message::encoded_len(&status);
    assert!(bytes < 4096, "DataStatus is {bytes} bytes");
    assert!(!status.degraded);

    // An empty list: the last good version stays, marked stale, with the reason.
    set_files(dir.path(), |_| Vec::new());
    let r = c.refresh(proto::RefreshRequest {}).await.unwrap();
    assert_eq!(r.periods_failed, 1);
    assert_eq!(month_totals(c, "2026-08").await.unwrap(), usd("3"));
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    assert_eq!(status.periods[0].state, "stale");
    assert!(
        status.periods[0].problem.contains("names no data files"),
        "{}",
        status.periods[0].problem
    );
    assert!(status.degraded);
    server.stop().await;

    // Never read before: the period is unavailable and answers touching it refused.
    let fresh = serve(&[file_url(dir.path())], &[]).await;
    let e = month_totals(&fresh.client, "2026-08").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("names no data files"), "{e}");
    fresh.stop().await;
}

#[tokio::test]
async fn ranges_without_billing_periods_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(dir.path(), "tiny", "s3://b/tiny");
    writer
        .write_period(
            "2026-08",
            &[vec![bedrock_item(
                "a",
                "210987654321",
                at(2026, 8, 3, 8),
                None,
                1.0,
                &[],
            )]],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 0,
            },
            SchemaOptions::default(),
        )
        .unwrap();
    let server = serve(&[file_url(dir.path())], &[]).await;
    let answer = server
        .client
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: range("2026-07-15T00:00:00Z", "2026-09-02T00:00:00Z"),
            ..Default::default()
        })
        .await
        .unwrap();
    let notes = answer.info.unwrap().notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("no billing period of the exports covers 2026-07, 2026-09")),
        "{notes:?}"
    );
    let covered = server
        .client
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: range("2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(covered.info.unwrap().notes.is_empty());
    server.stop().await;
}
