//! Schema drift across periods of one export: INT96 and INT64 (ms, ns, µs) timestamps,
//! columns missing from older periods, and a tag key that appears in a later period.

use std::{fs::File, path::Path, sync::Arc};

use bedrock_attribution_client::proto;
use bedrock_attribution_server::demo::{ExportWriter, PeriodLayout, SchemaOptions, TimestampUnit};
use datafusion::parquet::{
    basic::Compression,
    data_type::{ByteArray, ByteArrayType, DoubleType, Int96, Int96Type},
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::parser::parse_message_type,
};

use crate::{
    common::{d, exact},
    s3fixture::{at, bedrock_item, file_url, month_totals, serve, totals_in},
};

/// A January file as older writers (Spark, Athena CTAS) produce it: INT96 timestamps, no
/// caller, tags or product columns (the required CUR 2.0 columns are all there).
/// One line item of the INT96 file: id, usage start, cost.
type Int96Row<'a> = (&'a str, chrono::DateTime<chrono::Utc>, f64);

fn write_int96(path: &Path, rows: &[Int96Row<'_>]) {
    let schema = Arc::new(
        parse_message_type(
            "message schema {
                required binary identity_line_item_id (UTF8);
                required binary bill_payer_account_id (UTF8);
                required binary line_item_usage_account_id (UTF8);
                required binary line_item_line_item_type (UTF8);
                required int96 line_item_usage_start_date;
                required binary line_item_product_code (UTF8);
                required binary line_item_usage_type (UTF8);
                required binary line_item_currency_code (UTF8);
                required double line_item_unblended_cost;
                required double line_item_net_unblended_cost;
                required double line_item_blended_cost;
                required double pricing_public_on_demand_cost;
                required double line_item_usage_amount;
            }",
        )
        .unwrap(),
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let text = |f: &dyn Fn(&Int96Row<'_>) -> String| -> Vec<ByteArray> {
        rows.iter()
            .map(|r| ByteArray::from(f(r).as_str()))
            .collect()
    };
    let columns: [Vec<ByteArray>; 4] = [
        text(&|r| r.0.to_owned()),
        text(&|_| "444455556666".to_owned()),
        text(&|_| "210987654321".to_owned()),
        text(&|_| "Usage".to_owned()),
    ];
    for values in &columns {
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(values, None, None)
            .unwrap();
        col.close().unwrap();
    }
    let stamps: Vec<Int96> = rows
        .iter()
        .map(|(_, t, _)| {
            let days = t.timestamp().div_euclid(86_400);
            let nanos = (t.timestamp() - days * 86_400) as u64 * 1_000_000_000;
            let mut v = Int96::new();
            v.set_data(
                nanos as u32,
                (nanos >> 32) as u32,
                (days + 2_440_588) as u32,
            );
            v
        })
        .collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int96Type>()
        .write_batch(&stamps, None, None)
        .unwrap();
    col.close().unwrap();
    for values in [
        text(&|_| "AmazonBedrock".to_owned()),
        text(&|_| "USE1-Nova2.0Lite-input-tokens".to_owned()),
        text(&|_| "USD".to_owned()),
    ] {
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        col.close().unwrap();
    }
    // Every cost metric holds the cost (CUR 2.0's schema is fixed: a file without
    // them is refused); the usage amount is 0, so the file counts no tokens.
    let costs: Vec<f64> = rows.iter().map(|r| r.2).collect();
    let zeros = vec![0.0; rows.len()];
    for values in [&costs, &costs, &costs, &costs, &zeros] {
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<DoubleType>()
            .write_batch(values, None, None)
            .unwrap();
        col.close().unwrap();
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[tokio::test]
async fn every_timestamp_encoding_missing_columns_and_a_later_tag_key() {
    let dir = tempfile::tempdir().unwrap();
    write_int96(
        &dir.path()
            .join("data/BILLING_PERIOD=2026-01/drift-00001.snappy.parquet"),
        &[
            ("j1", at(2026, 1, 5, 10), 1.25),
            ("j2", at(2026, 1, 31, 23), 2.5),
        ],
    );
    let writer = ExportWriter::new(dir.path(), "drift", "s3://b/drift");
    let team = "iamPrincipal/team";
    let cc = "iamPrincipal/cost-center";
    let item = |id, when, cost, tags: &[(&str, &str)]| {
        bedrock_item(id, "210987654321", when, None, cost, tags)
    };
    let periods = [
        (
            "2026-02",
            TimestampUnit::Millis,
            false,
            vec![
                item("f1", at(2026, 2, 1, 0), 3.0, &[(team, "a")]),
                item("f2", at(2026, 2, 28, 23), 0.5, &[]),
            ],
        ),
        (
            "2026-03",
            TimestampUnit::Nanos,
            true,
            vec![
                item("m1", at(2026, 3, 1, 0), 4.0, &[(team, "a"), (cc, "CC1")]),
                item("m2", at(2026, 3, 31, 23), 1.0, &[(team, "b")]),
            ],
        ),
        (
            "2026-04",
            TimestampUnit::Micros,
            true,
            vec![item(
                "a1",
                at(2026, 4, 30, 23),
                8.0,
                &[(team, "b"), (cc, "CC2")],
            )],
        ),
    ];
    for (period, unit, utc, items) in periods {
        writer
            .write_period(
                period,
                &[items],
                &PeriodLayout::Overwrite {
                    leftover_empty_chunks: 0,
                },
                SchemaOptions {
                    timestamp_unit: unit,
                    utc_annotated: utc,
                    ..SchemaOptions::default()
                },
            )
            .unwrap();
    }
    let server = serve(&[file_url(dir.path())], &[]).await;
    let c = &server.client;
    let usd = |a: &str| vec![("USD".to_owned(), d(a))];
    for (period, total) in [
        ("2026-01", "3.75"),
        ("2026-02", "3.5"),
        ("2026-03", "5"),
        ("2026-04", "8"),
    ] {
        assert_eq!(
            month_totals(c, period).await.unwrap(),
            usd(total),
            "{period}"
        );
    }
    // The last hour of each month lands in that month, to the hour.
    for (start, end, total) in [
        ("2026-01-31T23:00:00Z", "2026-02-01T00:00:00Z", "2.5"),
        ("2026-02-28T23:00:00Z", "2026-03-01T01:00:00Z", "4.5"),
        ("2026-04-30T22:00:00Z", "2026-04-30T23:00:00Z", "0"),
    ] {
        let got = totals_in(c, start, end).await.unwrap();
        let want = if total == "0" { Vec::new() } else { usd(total) };
        assert_eq!(got, want, "{start}");
    }

    // The cost-center key exists from March on; earlier spend is UNTAGGED, never lost.
    let by_cc = c
        .cost_by_tag_all(proto::CostByTagRequest {
            time_range: crate::common::range("2026-01-01T00:00:00Z", "2026-05-01T00:00:00Z"),
            tag_key: cc.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut rows: Vec<(String, bool, rust_decimal::Decimal)> = by_cc
        .rows
        .iter()
        .map(|r| {
            let t = r.tag.as_ref().unwrap();
            (t.value.clone(), t.untagged, exact(r.cost.as_ref().unwrap()))
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("".to_owned(), true, d("8.25")),
            ("CC1".to_owned(), false, d("4")),
            ("CC2".to_owned(), false, d("8")),
        ]
    );
    let notes = &by_cc.info.as_ref().unwrap().notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("2026-01") && n.contains("no tags column")),
        "{notes:?}"
    );

    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    let january = &status.periods[0];
    assert_eq!(
        (january.billing_period.as_str(), january.file_list.as_str()),
        ("2026-01", "listing")
    );
    assert_eq!(
        january.missing_columns,
        ["line_item_iam_principal", "tags", "product"]
    );
    assert!(
        status.periods[1..]
            .iter()
            .all(|p| p.missing_columns.is_empty())
    );
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    server.stop().await;
}
