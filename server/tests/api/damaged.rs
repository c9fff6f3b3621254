//! Damaged and foreign files never lower a total in silence: a file without CUR columns,
//! without a required column, with non-finite or non-numeric amounts, or with line items
//! dated outside its billing period is a problem of its period, which keeps its last good
//! version or becomes unavailable; DataStatus names the file and what is wrong, and the
//! DuckDB reference refuses the same files.

use std::{path::Path, sync::Arc};

use bedrock_attribution_client::proto;
use bedrock_attribution_server::demo::{CurLineItem, ExportWriter, PeriodLayout, SchemaOptions};
use datafusion::{
    arrow::{
        array::{ArrayRef, Float64Array, RecordBatch, StringArray},
        datatypes::{DataType, Field, Schema},
    },
    parquet::arrow::ArrowWriter,
};
use rust_decimal::Decimal;
use serde_json::json;
use tonic::Code;

use crate::{
    reference::{reference_at, reference_rows},
    s3fixture::{at, bedrock_item, file_url, month_totals, serve},
};

const CALLER: &str = "arn:aws:iam::210987654321:user/alice";

fn write_batch(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// `batch` with column `name` replaced by `column` (or dropped when `None`).
fn with_column(batch: &RecordBatch, name: &str, column: Option<ArrayRef>) -> RecordBatch {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.name() != name {
            fields.push(field.as_ref().clone());
            columns.push(array.clone());
        } else if let Some(c) = &column {
            fields.push(Field::new(name, c.data_type().clone(), true));
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn items(period: (i32, u32), cost: f64) -> Vec<CurLineItem> {
    (0..2)
        .map(|i| {
            bedrock_item(
                &format!("{}-{}-{i}", period.0, period.1),
                "210987654321",
                at(period.0, period.1, 3 + i, 10),
                Some(CALLER),
                cost,
                &[],
            )
        })
        .collect()
}

/// The damaged file of each period, written beside its good chunk, and the words its
/// problem must hold.
fn damage(root: &Path) -> Vec<(&'static str, String, &'static str)> {
    let schema = SchemaOptions::default();
    let folder = |p: &str| root.join(format!("data/BILLING_PERIOD={p}"));
    let file = "dmg-00002.snappy.parquet";
    let mut out = Vec::new();

    // 2026-02: a parquet file with no CUR column at all.
    let foreign = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("customer", DataType::Utf8, true),
            Field::new("revenue", DataType::Float64, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
        ],
    )
    .unwrap();
    write_batch(&folder("2026-02").join(file), &foreign);
    out.push(("2026-02", "not_cur", "this is not a CUR 2.0 file"));

    // 2026-03: no line_item_unblended_cost.
    let batch = schema.to_batch(&items((2026, 3), 9.0)).unwrap();
    write_batch(
        &folder("2026-03").join(file),
        &with_column(&batch, "line_item_unblended_cost", None),
    );
    out.push((
        "2026-03",
        "columns",
        "required CUR 2.0 columns are missing: line_item_unblended_cost",
    ));

    // 2026-04: NaN, +inf and -inf costs.
    let mut bad = items((2026, 4), 1.0);
    bad.push(bad[0].clone());
    for (item, v) in bad
        .iter_mut()
        .zip([f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
    {
        item.unblended_cost = Some(v);
    }
    schema
        .write_parquet(&folder("2026-04").join(file), &bad)
        .unwrap();
    out.push((
        "2026-04",
        "cells",
        "line_item_unblended_cost has 3 non-finite (NaN or infinite) cells",
    ));

    // 2026-05: a text cost column holding "abc".
    let batch = schema.to_batch(&items((2026, 5), 1.0)).unwrap();
    let text: ArrayRef = Arc::new(StringArray::from(vec![Some("1.5"), Some("abc")]));
    write_batch(
        &folder("2026-05").join(file),
        &with_column(&batch, "line_item_unblended_cost", Some(text)),
    );
    out.push((
        "2026-05",
        "cells",
        "line_item_unblended_cost has 1 non-numeric cells",
    ));

    // 2026-06: one line item dated 9999-12-31 in the June file.
    let mut late = items((2026, 6), 10_754.0);
    late[1].usage_start = at(9999, 12, 31, 0);
    schema
        .write_parquet(&folder("2026-06").join(file), &late)
        .unwrap();
    out.push((
        "2026-06",
        "cells",
        "1 line items start outside billing period 2026-06 (from 9999-12-31T00:00:00Z to 9999-12-31T00:00:00Z)",
    ));
    out.into_iter()
        .map(|(p, _kind, words)| (p, format!("data/BILLING_PERIOD={p}/{file}"), words))
        .collect()
}

fn write_good(root: &Path) {
    let w = ExportWriter::new(root, "dmg", "s3://b/dmg");
    for month in 2..=7 {
        w.write_period(
            &format!("2026-{month:02}"),
            &[items((2026, month), f64::from(month))],
            &PeriodLayout::NoManifest,
            SchemaOptions::default(),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn damaged_files_are_problems_of_their_period_never_a_short_total() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dmg");
    write_good(&root);
    let server = serve(&[file_url(&root)], &[]).await;
    let c = &server.client;
    let mut before = Vec::new();
    for month in 2..=7 {
        before.push(month_totals(c, &format!("2026-{month:02}")).await.unwrap());
    }
    assert_eq!(
        before[4],
        [("USD".to_owned(), Decimal::from(12))],
        "two line items of 6"
    );

    let damaged = damage(&root);
    let r = c.refresh(proto::RefreshRequest {}).await.unwrap();
    assert_eq!(
        (r.periods_reread, r.periods_reused, r.periods_failed),
        (0, 1, 5),
        "{:?}",
        r.problems
    );
    // Every damaged period keeps its last good version: the totals are unchanged.
    for month in 2..=7 {
        assert_eq!(
            month_totals(c, &format!("2026-{month:02}")).await.unwrap(),
            before[month as usize - 2],
            "2026-{month:02}"
        );
    }
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    let states: Vec<(&str, &str)> = status
        .periods
        .iter()
        .map(|p| (p.billing_period.as_str(), p.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("2026-02", "stale"),
            ("2026-03", "stale"),
            ("2026-04", "stale"),
            ("2026-05", "stale"),
            ("2026-06", "stale"),
            ("2026-07", "current"),
        ]
    );
    for (period, file, words) in &damaged {
        let problem = status
            .problems
            .iter()
            .find(|p| p.billing_period == *period)
            .unwrap_or_else(|| panic!("no problem for {period}: {:?}", status.problems));
        assert!(problem.file.ends_with(file.as_str()), "{problem:?}");
        assert!(problem.message.contains(words), "{period}: {problem:?}");
        assert_eq!(problem.impact, "serving_last_good");
        // No parser internals reach the caller.
        assert!(
            !problem.message.contains("error:") && !problem.message.contains("Error"),
            "{problem:?}"
        );
    }
    server.stop().await;

    // Never read successfully: unavailable, and refused by answers that touch them.
    let fresh = serve(&[file_url(&root)], &[]).await;
    let c = &fresh.client;
    for (period, file, words) in &damaged {
        let e = month_totals(c, period).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        let text = e.to_string();
        assert!(text.contains(&format!("billing period {period}")), "{text}");
        assert!(text.contains(file.as_str()), "{text}");
        assert!(text.contains(&words[..40.min(words.len())]), "{text}");
    }
    assert_eq!(month_totals(c, "2026-07").await.unwrap(), before[5]);

    // The reference refuses exactly these files, and agrees on what is served.
    let expected = reference_at(
        &root,
        &[json!({"id": "july", "start": "2026-07-01T00:00:00Z", "end": "2026-08-01T00:00:00Z"})],
    );
    let mut refused: Vec<(String, String)> = expected["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["period"].as_str().unwrap().to_owned(),
                r["file"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    refused.sort();
    let ours: Vec<(String, String)> = damaged
        .iter()
        .map(|(p, f, _)| ((*p).to_owned(), f.clone()))
        .collect();
    assert_eq!(refused, ours);
    let july: Decimal = reference_rows(&expected["results"]["july"], "july")
        .values()
        .map(|s| s.0)
        .sum();
    assert_eq!(vec![("USD".to_owned(), july)], before[5]);
    let status = c.data_status(proto::DataStatusRequest {}).await.unwrap();
    let unavailable: Vec<&str> = status
        .periods
        .iter()
        .filter(|p| p.state == "unavailable")
        .map(|p| p.billing_period.as_str())
        .collect();
    assert_eq!(
        unavailable,
        ["2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
    );
    fresh.stop().await;
}
