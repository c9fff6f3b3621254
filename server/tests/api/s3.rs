//! The same exports over a real S3-protocol server as over the local file system, and
//! several exports (payers) at once as one table.

use bedrock_attribution_client::proto;
use bedrock_attribution_server::demo::{ExportWriter, PeriodLayout, SchemaOptions};

use crate::{
    common::{d, small_export},
    s3fixture::{S3Server, at, bedrock_item, file_url, month_totals, serve, suite, totals_in},
};

const ALL: (&str, &str) = ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");

#[tokio::test]
async fn answers_over_s3_equal_answers_over_files() {
    let s3 = S3Server::start().await;
    s3.upload_dir(small_export(), "cur2/acme-cur2").await;
    let local = serve(&[file_url(small_export())], &[]).await;
    let remote = serve(&[s3.url("cur2/acme-cur2")], &s3.store_args()).await;

    let (a, b) = (suite(&local.client).await, suite(&remote.client).await);
    assert_eq!(a.len(), b.len());
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert!(a.len() > 500, "query {i} answers something: {a}");
        assert_eq!(a, b, "query {i}");
    }

    let status = |c: bedrock_attribution_client::Client| async move {
        c.data_status(proto::DataStatusRequest {}).await.unwrap()
    };
    let (sa, sb) = (
        status(local.client.clone()).await,
        status(remote.client.clone()).await,
    );
    assert_eq!(sb.sources, ["s3://billing/cur2/acme-cur2"]);
    assert_eq!(sa.periods.len(), 5);
    assert_eq!(sb.periods.len(), 5);
    for (pa, pb) in sa.periods.iter().zip(&sb.periods) {
        let facts = |p: &proto::PeriodStatus| {
            (
                p.billing_period.clone(),
                p.file_list.clone(),
                p.execution.clone(),
                p.files,
                p.rows_read,
                p.bedrock_line_items,
                p.bytes,
                p.missing_columns.clone(),
                p.state.clone(),
            )
        };
        assert_eq!(facts(pa), facts(pb));
        assert_eq!(pb.state, "current");
        assert!(pb.read_at.is_some() && pb.last_refresh.is_some());
    }
    assert!(sb.problems.is_empty(), "{:?}", sb.problems);
    assert!(!sb.degraded);
    assert_eq!((sb.periods_reread, sb.periods_reused), (5, 0));
    local.stop().await;
    remote.stop().await;
}

#[tokio::test]
async fn several_exports_answer_as_one_table() {
    // A second payer's export in the bucket, next to the generated one on disk.
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(dir.path(), "payer-b", "s3://billing/cur2/payer-b");
    let bob = "arn:aws:iam::777777777777:user/bob";
    writer
        .write_period(
            "2026-05",
            &[vec![
                bedrock_item(
                    "b1",
                    "777777777777",
                    at(2026, 5, 3, 9),
                    Some(bob),
                    12.5,
                    &[],
                ),
                bedrock_item(
                    "b2",
                    "777777777777",
                    at(2026, 5, 10, 9),
                    Some(bob),
                    0.25,
                    &[],
                ),
            ]],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 0,
            },
            SchemaOptions::default(),
        )
        .unwrap();
    writer
        .write_period(
            "2026-09",
            &[vec![bedrock_item(
                "b3",
                "777777777777",
                at(2026, 9, 1, 0),
                None,
                100.0,
                &[],
            )]],
            &PeriodLayout::NoManifest,
            SchemaOptions::default(),
        )
        .unwrap();
    s3.upload_dir(dir.path(), "cur2/payer-b").await;

    let alone = serve(&[file_url(small_export())], &[]).await;
    let both = serve(
        &[file_url(small_export()), s3.url("cur2/payer-b")],
        &s3.store_args(),
    )
    .await;
    let c = &both.client;

    let usd = |t: &[(String, rust_decimal::Decimal)]| {
        t.iter()
            .find(|(c, _)| c == "USD")
            .map(|(_, a)| *a)
            .unwrap_or_default()
    };
    let before = totals_in(&alone.client, ALL.0, ALL.1).await.unwrap();
    let after = totals_in(c, ALL.0, ALL.1).await.unwrap();
    assert_eq!(usd(&after), usd(&before) + d("112.75"));
    assert_eq!(
        after.iter().find(|(c, _)| c == "EUR"),
        before.iter().find(|(c, _)| c == "EUR"),
        "the second export has no EUR"
    );
    let may_alone = month_totals(&alone.client, "2026-05").await.unwrap();
    let may = month_totals(c, "2026-05").await.unwrap();
    assert_eq!(usd(&may), usd(&may_alone) + d("12.75"));
    assert_eq!(
        month_totals(c, "2026-09").await.unwrap(),
        vec![("USD".to_owned(), d("100"))]
    );

    // Bob appears once with his exact spend from the second export.
    let by_principal = c
        .cost_by_principal_all(proto::CostByPrincipalRequest {
            time_range: crate::common::range(ALL.0, ALL.1),
            ..Default::default()
        })
        .await
        .unwrap();
    let bobs: Vec<_> = by_principal
        .rows
        .iter()
        .filter(|r| r.principal.as_ref().is_some_and(|p| p.arn == bob))
        .collect();
    assert_eq!(bobs.len(), 1);
    assert_eq!(
        crate::common::exact(bobs[0].cost.as_ref().unwrap()),
        d("12.75")
    );

    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    assert_eq!(status.sources.len(), 2);
    let periods: Vec<(String, String)> = status
        .periods
        .iter()
        .map(|p| (p.source.clone(), p.billing_period.clone()))
        .collect();
    assert_eq!(periods.len(), 7, "{periods:?}");
    assert!(periods.contains(&("s3://billing/cur2/payer-b".into(), "2026-09".into())));
    alone.stop().await;
    both.stop().await;
}
