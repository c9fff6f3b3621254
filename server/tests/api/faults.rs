//! Faults between the service and the S3 server: throttling and dropped connections
//! are retried, a store down during a refresh keeps the last good snapshot, and bad
//! files or manifests degrade only their period.

use std::sync::atomic::Ordering;

use bedrock_attribution_client::proto;
use tonic::Code;

use crate::{
    common::small_export,
    s3fixture::{S3Server, file_url, month_totals, serve, suite},
};

const PREFIX: &str = "cur2/acme-cur2";

fn key(relative: &str) -> String {
    format!("{PREFIX}/{relative}")
}

async fn health(server: &crate::common::TestServer) -> i32 {
    let channel = server.channel().await;
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "bedrock.attribution.v1.AttributionService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;

#[tokio::test]
async fn slowdowns_and_dropped_connections_are_retried() {
    let s3 = S3Server::start().await;
    s3.upload_dir(small_export(), PREFIX).await;
    // Every read request: first a 503 SlowDown, then a dropped connection, then served.
    s3.faults.fail_first_attempts(1, 1);
    let remote = serve(&[s3.url(PREFIX)], &s3.store_args()).await;
    let slowdowns = s3.faults.slowdowns.load(Ordering::SeqCst);
    let drops = s3.faults.drops.load(Ordering::SeqCst);
    assert!(
        slowdowns >= 10,
        "every list and read was throttled once: {slowdowns}"
    );
    assert_eq!(drops, slowdowns, "and dropped once");
    let status = remote
        .client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    assert_eq!(status.periods.len(), 5);

    let local = serve(&[file_url(small_export())], &[]).await;
    assert_eq!(suite(&remote.client).await, suite(&local.client).await);
    local.stop().await;
    remote.stop().await;
}

#[tokio::test]
async fn a_store_down_during_refresh_keeps_the_last_good_snapshot() {
    let s3 = S3Server::start().await;
    s3.upload_dir(small_export(), PREFIX).await;
    let server = serve(&[s3.url(PREFIX)], &s3.store_args()).await;
    let c = &server.client;
    let before = suite(c).await;
    let version = c
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap()
        .snapshot_version;

    s3.faults.set_down(true);
    let r = c.refresh(proto::RefreshRequest {}).await.unwrap();
    // The last good data is served: the same data, so the same version.
    assert_eq!(
        (r.snapshot_version, r.periods, r.periods_failed),
        (version, 5, 5)
    );
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let p = &r.problems[0];
    assert_eq!(
        (
            p.source.as_str(),
            p.billing_period.as_str(),
            p.impact.as_str()
        ),
        ("s3://billing/cur2/acme-cur2", "", "serving_last_good")
    );
    assert!(
        p.message.starts_with("cannot list the export"),
        "{}",
        p.message
    );
    assert!(p.at.is_some() && p.since.is_some());
    assert_eq!(
        suite(c).await,
        before,
        "answers from the last good snapshot"
    );
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    assert!(status.degraded);
    assert_eq!(status.periods.len(), 5);
    for period in &status.periods {
        assert_eq!(period.state, "stale", "{}", period.billing_period);
        assert!(
            period.problem.contains("cannot list the export"),
            "{}",
            period.problem
        );
    }
    assert_eq!(health(&server).await, SERVING);

    // Still down: the problem keeps its first time.
    let again = c.refresh(proto::RefreshRequest {}).await.unwrap();
    assert_eq!(again.problems[0].since, p.since);
    let secs = |t: &Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
    assert!(secs(&again.problems[0].at) > secs(&p.at));

    // Back up: nothing changed in the bucket, so nothing is read again.
    s3.faults.set_down(false);
    let r = c.refresh(proto::RefreshRequest {}).await.unwrap();
    assert_eq!(
        (r.periods_reread, r.periods_reused, r.periods_failed),
        (0, 5, 0)
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    assert!(!status.degraded);
    assert!(status.periods.iter().all(|p| p.state == "current"));
    assert_eq!(suite(c).await, before);
    server.stop().await;
}

#[tokio::test]
async fn a_store_down_from_the_start_refuses_answers_it_would_get_wrong() {
    let s3 = S3Server::start().await;
    s3.upload_dir(small_export(), PREFIX).await;
    s3.faults.set_down(true);
    let server = serve(
        &[file_url(small_export()), s3.url(PREFIX)],
        &s3.store_args(),
    )
    .await;
    let c = &server.client;
    let e = month_totals(c, "2026-05").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.to_string()
            .contains("the export of s3://billing/cur2/acme-cur2 cannot be served"),
        "{e}"
    );
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    assert_eq!(status.problems.len(), 1);
    assert_eq!(status.problems[0].impact, "unavailable");
    assert_eq!(
        health(&server).await,
        SERVING,
        "the local export is servable"
    );

    s3.faults.set_down(false);
    let r = c.refresh(proto::RefreshRequest {}).await.unwrap();
    assert_eq!((r.periods, r.periods_reread, r.periods_reused), (10, 5, 5));
    assert!(month_totals(c, "2026-05").await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn bad_files_degrade_only_their_period() {
    let s3 = S3Server::start().await;
    s3.upload_dir(small_export(), PREFIX).await;
    // 2026-04: a chunk cut in half; 2026-05: the manifest names a key that is missing.
    let april = key("data/BILLING_PERIOD=2026-04/acme-cur2-00001.snappy.parquet");
    let whole = std::fs::read(
        small_export().join("data/BILLING_PERIOD=2026-04/acme-cur2-00001.snappy.parquet"),
    )
    .unwrap();
    s3.put(&april, whole[..whole.len() / 2].to_vec()).await;
    let manifest_path = "metadata/BILLING_PERIOD=2026-05/acme-cur2-Manifest.json";
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(small_export().join(manifest_path)).unwrap())
            .unwrap();
    let missing = "s3://acme-billing/cur2/acme-cur2/data/BILLING_PERIOD=2026-05/acme-cur2-00009.snappy.parquet";
    manifest["dataFiles"]
        .as_array_mut()
        .unwrap()
        .push(missing.into());
    s3.put(&key(manifest_path), serde_json::to_vec(&manifest).unwrap())
        .await;

    let server = serve(&[s3.url(PREFIX)], &s3.store_args()).await;
    let local = serve(&[file_url(small_export())], &[]).await;
    let c = &server.client;

    // Periods never read: refused, naming the period and the file relative to the
    // export root (the log has the full URL).
    for (period, file) in [
        (
            "2026-04",
            "data/BILLING_PERIOD=2026-04/acme-cur2-00001.snappy.parquet",
        ),
        (
            "2026-05",
            "data/BILLING_PERIOD=2026-05/acme-cur2-00009.snappy.parquet",
        ),
    ] {
        let e = month_totals(c, period).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        let text = e.to_string();
        assert!(text.contains(&format!("billing period {period}")), "{text}");
        assert!(text.contains(&format!(": {file}: ")), "{text}");
        assert!(!text.contains("s3://billing/cur2/acme-cur2/data"), "{text}");
        // A plain cause, not the parser's text (which is logged).
        assert!(
            !text.contains("Parquet error") && !text.contains("Arrow error"),
            "{text}"
        );
    }
    // A range over both good and bad periods is refused too: its total would be wrong.
    let e = crate::s3fixture::totals_in(c, "2026-03-01T00:00:00Z", "2026-07-01T00:00:00Z")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // The other periods answer exactly as from the intact files.
    for period in ["2026-03", "2026-06", "2026-07"] {
        assert_eq!(
            month_totals(c, period).await.unwrap(),
            month_totals(&local.client, period).await.unwrap(),
            "{period}"
        );
    }
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    let states: Vec<(String, String)> = status
        .periods
        .iter()
        .map(|p| (p.billing_period.clone(), p.state.clone()))
        .collect();
    assert_eq!(
        states,
        [
            ("2026-03", "current"),
            ("2026-06", "current"),
            ("2026-07", "current"),
            ("2026-04", "unavailable"),
            ("2026-05", "unavailable"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let mut problems: Vec<(String, String, String)> = status
        .problems
        .iter()
        .map(|p| (p.billing_period.clone(), p.file.clone(), p.impact.clone()))
        .collect();
    problems.sort();
    assert_eq!(problems.len(), 2, "{:?}", status.problems);
    assert_eq!(problems[0].0, "2026-04");
    assert_eq!(problems[0].1, format!("s3://billing/{april}"));
    assert_eq!(problems[1].0, "2026-05");
    assert!(problems.iter().all(|p| p.2 == "unavailable"));
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.message.contains("does not exist"))
    );
    assert_eq!(health(&server).await, SERVING);

    // Repaired: everything answers as from the intact files.
    s3.put(&april, whole.clone()).await;
    s3.put(
        &key(manifest_path),
        std::fs::read(small_export().join(manifest_path)).unwrap(),
    )
    .await;
    let r = c.refresh(proto::RefreshRequest {}).await.unwrap();
    assert_eq!(
        (r.periods_reread, r.periods_reused, r.periods_failed),
        (2, 3, 0)
    );
    assert_eq!(suite(c).await, suite(&local.client).await);

    // Broken after a good read: the last good version keeps answering.
    let before = suite(c).await;
    s3.put(&april, whole[..100].to_vec()).await;
    s3.put(
        &key("metadata/BILLING_PERIOD=2026-06/acme-cur2-Manifest.json"),
        b"{not json".to_vec(),
    )
    .await;
    let r = c.refresh(proto::RefreshRequest {}).await.unwrap();
    assert_eq!(
        (r.periods_reread, r.periods_reused, r.periods_failed),
        (0, 3, 2)
    );
    assert_eq!(suite(c).await, before);
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    let stale: Vec<&str> = status
        .periods
        .iter()
        .filter(|p| p.state == "stale")
        .map(|p| p.billing_period.as_str())
        .collect();
    assert_eq!(stale, ["2026-04", "2026-06"]);
    assert!(
        status
            .problems
            .iter()
            .all(|p| p.impact == "serving_last_good")
    );
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.message.contains("the manifest is not valid JSON"))
    );
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.message
                == "cannot read the parquet file: the file is not a readable parquet file: it is damaged, truncated or in another format")
    );
    server.stop().await;
    local.stop().await;
}
