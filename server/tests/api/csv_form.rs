//! The CSV form of a CUR 2.0 export: the test export written as AWS writes it in CSV
//! (gzip, a header row, maps as JSON objects, timestamps with milliseconds and a `Z`,
//! doubles as Java prints them) answers exactly as the parquet form does; a real
//! third-party CSV export loads whole; legacy CUR files are refused with the reason.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use bedrock_attribution_client::proto;
use datafusion::{
    arrow::{
        array::{Array, AsArray, RecordBatch},
        datatypes::{DataType, TimeUnit},
    },
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
};

use crate::{
    common::small_export,
    s3fixture::{file_url, serve, suite},
};

/// `v` as Java's `Double.toString` prints it: scientific below 1e-3 and from 1e7 up
/// (`-7.0E-10`, `1.23456789E7`), plain otherwise, always with a decimal point.
fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    if v != 0.0 && !(1e-3..1e7).contains(&a) {
        let text = format!("{v:E}");
        let (mantissa, exponent) = text.split_once('E').unwrap();
        let mantissa = if mantissa.contains('.') {
            mantissa.to_owned()
        } else {
            format!("{mantissa}.0")
        };
        return format!("{mantissa}E{exponent}");
    }
    let text = format!("{v}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

fn cell(column: &dyn Array, row: usize) -> String {
    if column.is_null(row) {
        return String::new();
    }
    match column.data_type() {
        DataType::Float64 => java_double(
            column
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(row),
        ),
        DataType::Timestamp(unit, _) => {
            let raw = match unit {
                TimeUnit::Millisecond => {
                    column
                        .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                        .value(row)
                        * 1000
                }
                TimeUnit::Microsecond => column
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                    .value(row),
                TimeUnit::Nanosecond => {
                    column
                        .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>()
                        .value(row)
                        / 1000
                }
                TimeUnit::Second => unreachable!("CUR writes no second timestamps"),
            };
            chrono::DateTime::from_timestamp_micros(raw)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
        }
        DataType::Map(_, _) => {
            let map = column.as_map();
            let entries = map.value(row);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_string::<i32>();
            let object: serde_json::Map<String, serde_json::Value> = (0..keys.len())
                .map(|i| {
                    (
                        keys.value(i).to_owned(),
                        serde_json::Value::String(values.value(i).to_owned()),
                    )
                })
                .collect();
            serde_json::Value::Object(object).to_string()
        }
        _ => column.as_string::<i32>().value(row).to_owned(),
    }
}

/// One parquet file of the test export in the CSV form, gzipped.
fn csv_gz_of(parquet: &Path) -> Vec<u8> {
    let file = std::fs::File::open(parquet).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let schema = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(parquet).unwrap())
        .unwrap()
        .schema()
        .clone();
    let mut text = csv::Writer::from_writer(Vec::new());
    text.write_record(schema.fields().iter().map(|f| f.name().as_str()))
        .unwrap();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            text.write_record(batch.columns().iter().map(|c| cell(c.as_ref(), row)))
                .unwrap();
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&text.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// The export at `from` rewritten in the CSV form at `to` (manifests name the CSV files).
fn convert(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            convert(&path, &target);
        } else if let Some(name) = path
            .to_str()
            .and_then(|p| p.strip_suffix(".snappy.parquet"))
        {
            let name = PathBuf::from(format!("{name}.csv.gz"));
            std::fs::write(to.join(name.file_name().unwrap()), csv_gz_of(&path)).unwrap();
        } else if path.to_string_lossy().ends_with("Manifest.json") {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&target, text.replace(".snappy.parquet", ".csv.gz")).unwrap();
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn doubles_print_as_java_prints_them() {
    assert_eq!(java_double(-7.0e-10), "-7.0E-10");
    assert_eq!(java_double(1.23456789e7), "1.23456789E7");
    assert_eq!(java_double(-1.3333e-6), "-1.3333E-6");
    assert_eq!(java_double(0.5), "0.5");
    assert_eq!(java_double(3.0), "3.0");
    assert_eq!(java_double(0.0), "0.0");
}

#[tokio::test]
async fn the_csv_form_answers_exactly_as_the_parquet_form() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("acme-cur2");
    std::fs::create_dir_all(&root).unwrap();
    convert(small_export(), &root);
    let csv_files = walk(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".csv.gz"))
        .count();
    assert!(csv_files >= 5, "{csv_files} CSV files");
    let parquet = serve(&[file_url(small_export())], &[]).await;
    let csv = serve(&[file_url(&root)], &[]).await;
    let (a, b) = (suite(&parquet.client).await, suite(&csv.client).await);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let status = |s: proto::DataStatusResponse| -> Vec<(String, String, i64, i64, usize)> {
        s.periods
            .iter()
            .map(|p| {
                (
                    p.billing_period.clone(),
                    p.state.clone(),
                    p.rows_read,
                    p.bedrock_line_items,
                    s.problems.len(),
                )
            })
            .collect()
    };
    let ps = parquet
        .client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    let cs = csv
        .client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    assert_eq!(status(ps), status(cs));
    parquet.stop().await;
    csv.stop().await;
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The shared folder of real third-party samples (outside the project).
fn realdata() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/realdata");
    [beside, PathBuf::from("/work/shared/realdata")]
        .into_iter()
        .find(|p| p.is_dir())
        .expect("the real samples in ../shared/realdata (see its README)")
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_real_cur2_csv_export_loads_whole_and_legacy_files_are_refused() {
    let real = realdata();
    let csv = std::fs::read(real.join("cur2/ha-project-CUR-daily-1-00001.csv")).unwrap();
    assert_eq!(
        sha256(&csv),
        "e0936aac813e06e41f9d2a17e8029e4c5239076c96c3f9f9114e14fedb4daeed",
        "the untouched file"
    );
    let manifest = std::fs::read(real.join("cur2/ha-project-CUR-daily-1-Manifest.json")).unwrap();
    // Laid out as AWS delivers it: gzipped under the execution folder the manifest names.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ha-project-CUR-daily-1");
    let listed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let uri = listed["dataFiles"][0].as_str().unwrap();
    let relative = &uri[uri.find("data/BILLING_PERIOD=").unwrap()..];
    let data = root.join(relative);
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&csv).unwrap();
    std::fs::write(&data, gz.finish().unwrap()).unwrap();
    let meta = root.join("metadata/BILLING_PERIOD=2026-04");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(meta.join("ha-project-CUR-daily-1-Manifest.json"), &manifest).unwrap();

    // Legacy samples, each as the only file of a period of another export.
    let legacy = dir.path().join("legacy");
    let csv_period = legacy.join("data/BILLING_PERIOD=2023-11");
    std::fs::create_dir_all(&csv_period).unwrap();
    std::fs::copy(
        real.join("legacy/sample-anonymous-aws-export-dataset.csv"),
        csv_period.join("legacy-00001.csv"),
    )
    .unwrap();
    let parquet_period = legacy.join("data/BILLING_PERIOD=2018-10");
    std::fs::create_dir_all(&parquet_period).unwrap();
    std::fs::copy(
        real.join("legacy/Oct2018-WorkshopCUR-00001.snappy.parquet"),
        parquet_period.join("legacy-00001.snappy.parquet"),
    )
    .unwrap();

    let server = serve(&[file_url(&root), file_url(&legacy)], &[]).await;
    let status = server
        .client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    let april = status
        .periods
        .iter()
        .find(|p| p.billing_period == "2026-04")
        .unwrap_or_else(|| panic!("{:?}", status.periods));
    assert_eq!(april.state, "current", "{april:?}");
    assert_eq!(april.rows_read, 1882);
    assert_eq!(april.file_list, "manifest");
    assert_eq!(
        april.bedrock_line_items, 0,
        "the account has no Bedrock rows"
    );
    assert!(
        !status
            .problems
            .iter()
            .any(|p| p.source.ends_with("ha-project-CUR-daily-1")),
        "{:?}",
        status.problems
    );
    for period in ["2018-10", "2023-11"] {
        let p = status
            .periods
            .iter()
            .find(|p| p.billing_period == period)
            .unwrap_or_else(|| panic!("{period}: {:?}", status.periods));
        assert_eq!(p.state, "unavailable", "{p:?}");
        assert!(
            p.problem.contains("legacy Cost and Usage Report file")
                && p.problem.contains("line_item_iam_principal"),
            "{p:?}"
        );
    }
    server.stop().await;
}
