//! The CSV form of a CUR 2.0 export: the test export written as AWS writes it in CSV
//! (gzip, a header row, maps as JSON objects, timestamps with milliseconds and a `Z`,
//! doubles as Java prints them) answers exactly as the parquet form does; a real
//! third-party CSV export loads whole; legacy CUR files are refused with the reason.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use bedrock_attribution_client::proto;
use bedrock_attribution_server::demo::csv_form::convert_export;

use crate::{
    common::small_export,
    s3fixture::{file_url, serve, suite},
};

#[tokio::test]
async fn the_csv_form_answers_exactly_as_the_parquet_form() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("acme-cur2");
    let csv_files = convert_export(small_export(), &root).unwrap().len();
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
