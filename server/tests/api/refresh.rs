//! Refresh: only changed periods are read again, answers change exactly as the export
//! did, and every request runs on one snapshot.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bedrock_attribution_client::{Client, proto};
use bedrock_attribution_server::demo::{CurLineItem, ExportWriter, PeriodLayout, SchemaOptions};
use rust_decimal::Decimal;

use crate::{
    common::{d, small_export},
    s3fixture::{S3Server, at, bedrock_item, file_url, month_totals, serve},
};

const MONTHS: [&str; 5] = ["2026-03", "2026-04", "2026-05", "2026-06", "2026-07"];

fn usd(amount: &str) -> Vec<(String, Decimal)> {
    vec![("USD".to_owned(), d(amount))]
}

async fn status(c: &Client) -> proto::DataStatusResponse {
    c.data_status(proto::DataStatusRequest {}).await.unwrap()
}

/// `read_at` of each period, by period.
fn read_times(s: &proto::DataStatusResponse) -> BTreeMap<String, prost_types::Timestamp> {
    s.periods
        .iter()
        .map(|p| (p.billing_period.clone(), p.read_at.unwrap()))
        .collect()
}

async fn refresh(c: &Client) -> proto::RefreshResponse {
    c.refresh(proto::RefreshRequest {}).await.unwrap()
}

fn counts(r: &proto::RefreshResponse) -> (i64, i64, i64) {
    (r.periods_reread, r.periods_reused, r.periods_failed)
}

#[tokio::test]
async fn refresh_reads_only_what_changed_and_answers_change_exactly() {
    let s3 = S3Server::start().await;
    let prefix = "cur2/acme-cur2";
    s3.upload_dir(small_export(), prefix).await;
    let server = serve(&[s3.url(prefix)], &s3.store_args()).await;
    let c = &server.client;
    let mut expected = BTreeMap::new();
    for m in MONTHS {
        expected.insert(m.to_owned(), month_totals(c, m).await.unwrap());
    }
    let first = status(c).await;
    assert_eq!((first.periods_reread, first.periods_reused), (5, 0));

    // Nothing changed: nothing is read, the answers stay, and so does the version
    // (page tokens and cached answers stay valid).
    let r = refresh(c).await;
    assert_eq!(
        (r.snapshot_version, counts(&r)),
        (first.snapshot_version, (0, 5, 0))
    );
    let second = status(c).await;
    assert_eq!(
        read_times(&second),
        read_times(&first),
        "no period read again"
    );
    for p in &second.periods {
        assert_eq!(p.state, "current");
        let secs = |t: &Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
        assert!(secs(&p.last_refresh) > secs(&p.read_at), "{p:?}");
    }

    // Overwrite mode, fewer chunks than before: chunk 2 is emptied, the new manifest
    // names chunk 1 only.
    let staging = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(
        staging.path(),
        "acme-cur2",
        "s3://acme-billing/cur2/acme-cur2",
    );
    let item = |id: &str, when, cost| bedrock_item(id, "210987654321", when, None, cost, &[]);
    writer
        .write_period(
            "2026-03",
            &[vec![
                item("m1", at(2026, 3, 2, 10), 7.5),
                item("m2", at(2026, 3, 30, 23), 2.25),
            ]],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 1,
            },
            SchemaOptions::default(),
        )
        .unwrap();
    s3.upload_dir(staging.path(), prefix).await;
    let r = refresh(c).await;
    assert_eq!(counts(&r), (1, 4, 0), "{:?}", r.problems);
    expected.insert("2026-03".into(), usd("9.75"));
    for m in MONTHS {
        assert_eq!(&month_totals(c, m).await.unwrap(), &expected[m], "{m}");
    }
    let third = status(c).await;
    let march = third
        .periods
        .iter()
        .find(|p| p.billing_period == "2026-03")
        .unwrap();
    assert_eq!(
        (march.files, march.rows_read, march.file_list.as_str()),
        (1, 2, "manifest")
    );
    let (before, after) = (read_times(&second), read_times(&third));
    for m in MONTHS {
        assert_eq!(before[m] != after[m], m == "2026-03", "read_at of {m}");
    }

    // Create-new mode: a newer execution of 2026-06 replaces the one served.
    let staging = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(
        staging.path(),
        "acme-cur2",
        "s3://acme-billing/cur2/acme-cur2",
    );
    let execution = "20260703T000000Z-exec-aaaaaa".to_owned();
    writer
        .write_period(
            "2026-06",
            &[vec![item("j1", at(2026, 6, 15, 12), 40.0)]],
            &PeriodLayout::CreateNew {
                execution: execution.clone(),
            },
            SchemaOptions::default(),
        )
        .unwrap();
    s3.upload_dir(staging.path(), prefix).await;
    let r = refresh(c).await;
    assert_eq!(counts(&r), (1, 4, 0), "{:?}", r.problems);
    expected.insert("2026-06".into(), usd("40"));
    for m in MONTHS {
        assert_eq!(&month_totals(c, m).await.unwrap(), &expected[m], "{m}");
    }
    let june = status(c)
        .await
        .periods
        .into_iter()
        .find(|p| p.billing_period == "2026-06");
    assert_eq!(june.map(|p| (p.execution, p.files)), Some((execution, 1)));

    // A new period.
    let staging = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(
        staging.path(),
        "acme-cur2",
        "s3://acme-billing/cur2/acme-cur2",
    );
    writer
        .write_period(
            "2026-08",
            &[vec![item("a1", at(2026, 8, 1, 0), 3.5)]],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 0,
            },
            SchemaOptions::default(),
        )
        .unwrap();
    s3.upload_dir(staging.path(), prefix).await;
    let r = refresh(c).await;
    assert_eq!((r.periods, counts(&r)), (6, (1, 5, 0)), "{:?}", r.problems);
    for m in MONTHS {
        assert_eq!(&month_totals(c, m).await.unwrap(), &expected[m], "{m}");
    }
    assert_eq!(month_totals(c, "2026-08").await.unwrap(), usd("3.5"));
    let last = status(c).await;
    assert_ne!(last.snapshot_version, first.snapshot_version);
    assert!(last.problems.is_empty() && !last.degraded);
    server.stop().await;
}

/// Version A: two line items, 1.5 each; version B: three, 5 each.
fn may(version_b: bool) -> Vec<CurLineItem> {
    let (n, cost) = if version_b { (3, 5.0) } else { (2, 1.5) };
    (0..n)
        .map(|i| {
            bedrock_item(
                &format!("may-{i}"),
                "210987654321",
                at(2026, 5, 1 + i, 8),
                Some("arn:aws:iam::210987654321:user/ann"),
                cost,
                &[],
            )
        })
        .collect()
}

fn write_may(writer: &ExportWriter, version_b: bool) {
    writer
        .write_period(
            "2026-05",
            &[may(version_b)],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 0,
            },
            SchemaOptions::default(),
        )
        .unwrap();
}

#[tokio::test]
async fn requests_run_wholly_on_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(dir.path(), "tiny", "s3://b/tiny");
    writer
        .write_period(
            "2026-04",
            &[vec![bedrock_item(
                "apr",
                "210987654321",
                at(2026, 4, 9, 0),
                None,
                100.0,
                &[],
            )]],
            &PeriodLayout::NoManifest,
            SchemaOptions::default(),
        )
        .unwrap();
    write_may(&writer, false);
    let server = serve(&[file_url(dir.path())], &[]).await;
    let catalog = server.handle.catalog().clone();

    // What a request holds from its start: the snapshot of that moment.
    let held = catalog.snapshot().unwrap();
    write_may(&writer, true);
    refresh(&server.client).await;
    let now = catalog.snapshot().unwrap();
    assert_ne!(held.version, now.version, "new data, new version");
    let may_of = |s: &bedrock_attribution_server::snapshot::Snapshot| {
        s.periods
            .iter()
            .find(|p| p.period.to_string() == "2026-05")
            .map(|p| (p.line_items, p.layers.fine.rows()))
    };
    assert_eq!(
        may_of(&held),
        Some((2, 2)),
        "the held snapshot is untouched"
    );
    assert_eq!(may_of(&now), Some((3, 3)));
    assert!(
        Arc::ptr_eq(&held.periods[0], &now.periods[0]),
        "the unchanged period is shared, not read again"
    );
    drop(held);

    // Queries racing with refreshes: each answer matches exactly the version that
    // answered it, never a mix.
    let totals_of = |b: bool| vec![("USD".to_owned(), if b { d("115") } else { d("103") })];
    let mut expected = std::collections::HashMap::new();
    expected.insert(now.version, totals_of(true));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (c, stop) = (server.client.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..200 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let answer = c
                    .token_usage(proto::TokenUsageRequest {
                        time_range: crate::common::range(
                            "2026-04-01T00:00:00Z",
                            "2026-06-01T00:00:00Z",
                        ),
                        group_by: vec![proto::Dimension::Principal.into()],
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let version = answer.info.as_ref().unwrap().snapshot_version;
                seen.push((version, crate::common::totals(&answer.totals)));
            }
            seen
        }));
    }
    for round in 0..6 {
        // The export holds B; round 0 writes A, and so on.
        let b = round % 2 == 1;
        write_may(&writer, b);
        let r = refresh(&server.client).await;
        assert_eq!(counts(&r), (1, 1, 0));
        expected.insert(r.snapshot_version, totals_of(b));
    }
    stop.store(true, Ordering::SeqCst);
    let mut versions = std::collections::BTreeSet::new();
    for task in tasks {
        for (version, totals) in task.await.unwrap() {
            assert_eq!(Some(&totals), expected.get(&version), "version {version}");
            versions.insert(version);
        }
    }
    assert!(!versions.is_empty());
    assert_eq!(expected.len(), 7, "every rewrite is a new version");
    server.stop().await;
}

/// One parquet file of `items` in row groups of `rows_per_group`, its footer padded by
/// `pad` bytes of key-value metadata.
fn parquet_bytes(items: &[CurLineItem], rows_per_group: usize, pad: usize) -> Vec<u8> {
    use datafusion::parquet::{
        arrow::ArrowWriter,
        basic::Compression,
        file::{metadata::KeyValue, properties::WriterProperties},
    };
    let batch = SchemaOptions::default().to_batch(items).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_key_value_metadata(Some(vec![KeyValue::new("pad".into(), "x".repeat(pad))]))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

#[tokio::test]
async fn a_file_rewritten_in_place_is_read_anew_never_from_a_cached_footer() {
    // Version A: four line items of 1 in two row groups. Version B: four of 2.5 in one
    // row group, padded to A's exact size. With the same key, size and modification
    // time, only the ETag tells them apart, and a footer cached from A would misread B.
    let items = |cost| -> Vec<CurLineItem> {
        (0..4)
            .map(|i| {
                bedrock_item(
                    &format!("i{i}"),
                    "210987654321",
                    at(2026, 5, 2 + i, 0),
                    None,
                    cost,
                    &[],
                )
            })
            .collect()
    };
    let a = parquet_bytes(&items(1.0), 2, 0);
    let mut pad = 0;
    let mut b = parquet_bytes(&items(2.5), 4, pad);
    for _ in 0..20 {
        if b.len() == a.len() {
            break;
        }
        pad = (pad as i64 + a.len() as i64 - b.len() as i64).max(0) as usize;
        b = parquet_bytes(&items(2.5), 4, pad);
    }
    assert_eq!(a.len(), b.len(), "B padded to A's size");
    assert_ne!(a, b);

    let s3 = S3Server::start().await;
    let key = "cur2/tiny/data/BILLING_PERIOD=2026-05/tiny-00001.snappy.parquet";
    s3.put(key, a).await;
    let server = serve(&[s3.url("cur2/tiny")], &s3.store_args()).await;
    let c = &server.client;
    assert_eq!(month_totals(c, "2026-05").await.unwrap(), usd("4"));

    let first = s3.head(key).await;
    let modified = std::fs::metadata(s3.file_of(key))
        .unwrap()
        .modified()
        .unwrap();
    s3.put(key, b).await;
    std::fs::File::options()
        .write(true)
        .open(s3.file_of(key))
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let second = s3.head(key).await;
    assert_eq!(
        (first.size, first.last_modified),
        (second.size, second.last_modified),
        "same size and time"
    );
    assert_ne!(first.e_tag, second.e_tag, "different content");

    let r = refresh(c).await;
    assert_eq!(counts(&r), (1, 0, 0), "{:?}", r.problems);
    assert_eq!(month_totals(c, "2026-05").await.unwrap(), usd("10"));
    let status = status(c).await;
    assert_eq!(
        (
            status.periods[0].rows_read,
            status.periods[0].state.as_str()
        ),
        (4, "current")
    );
    server.stop().await;
}

/// Page tokens follow the data, not the process: a refresh that changes nothing and a
/// restart on the same files keep them valid; changed data refuses them.
#[tokio::test]
async fn page_tokens_live_as_long_as_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(dir.path(), "tiny", "s3://b/tiny");
    let items = |cost: f64| -> Vec<CurLineItem> {
        ["ann", "bob", "cid"]
            .iter()
            .enumerate()
            .map(|(i, who)| {
                bedrock_item(
                    &format!("{who}-1"),
                    "210987654321",
                    at(2026, 5, 2, 8),
                    Some(&format!("arn:aws:iam::210987654321:user/{who}")),
                    cost + i as f64,
                    &[],
                )
            })
            .collect()
    };
    let write = |cost: f64| {
        writer
            .write_period(
                "2026-05",
                &[items(cost)],
                &PeriodLayout::Overwrite {
                    leftover_empty_chunks: 0,
                },
                SchemaOptions::default(),
            )
            .unwrap();
    };
    write(1.0);
    let request = |token: String| proto::CostByPrincipalRequest {
        time_range: crate::common::range("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"),
        page_size: 1,
        page_token: token,
        ..Default::default()
    };
    // Replicas share the page token key (a mounted Secret in a deployment).
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("page-token.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let keyed = [
        "--page-token-key-file".to_owned(),
        key.display().to_string(),
    ];
    let server = serve(&[file_url(dir.path())], &keyed).await;
    let first = server
        .client
        .cost_by_principal(request(String::new()))
        .await
        .unwrap();
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());
    let second = server
        .client
        .cost_by_principal(request(token.clone()))
        .await
        .unwrap();

    // A refresh that finds nothing new keeps the token valid.
    assert_eq!(counts(&refresh(&server.client).await), (0, 1, 0));
    let again = server
        .client
        .cost_by_principal(request(token.clone()))
        .await
        .unwrap();
    assert_eq!(again.rows, second.rows);

    // Another process on the same files accepts it and answers the same page.
    let replica = serve(&[file_url(dir.path())], &keyed).await;
    let there = replica
        .client
        .cost_by_principal(request(token.clone()))
        .await
        .unwrap();
    assert_eq!(there.rows, second.rows);
    replica.stop().await;

    // New data: the token is refused, not answered from a mix of versions.
    write(2.0);
    assert_eq!(counts(&refresh(&server.client).await), (1, 0, 0));
    let e = server
        .client
        .cost_by_principal(request(token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("restart paging"), "{e}");
    server.stop().await;
}
