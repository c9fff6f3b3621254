//! Pointing the server at an export: what a person sees when the `--source` is wrong
//! (a folder that does not exist, the parent of an export, its `data/` folder, a flat
//! folder, `file://` with two slashes), the line logged once it serves, and the
//! Dockerfile's own demo command.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use bedrock_attribution_client::proto;
use bedrock_attribution_server::demo::{DemoConfig, generate};

use crate::{
    common::{TestServer, small_export},
    process::ServerProcess,
};

const WITHIN: Duration = Duration::from_secs(60);

/// The one problem of a server over `source`, as (source, message).
async fn only_problem(source: String) -> (String, String) {
    let server = TestServer::serve(std::slice::from_ref(&source), &[]).await;
    let status = server
        .client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    assert!(status.periods.is_empty(), "{:?}", status.periods);
    assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
    let p = &status.problems[0];
    let found = (p.source.clone(), p.message.clone());
    server.stop().await;
    found
}

fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}

#[tokio::test]
async fn a_source_that_does_not_exist_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = url(&dir.path().join("acme-cur3"));
    let (source, message) = only_problem(missing.clone()).await;
    assert_eq!(source, missing);
    assert_eq!(
        message,
        format!(
            "no billing periods found: the source {missing} does not exist (nothing is stored under it)"
        )
    );
}

#[tokio::test]
async fn the_parent_of_an_export_names_it() {
    let parent = small_export().parent().unwrap();
    let (_, message) = only_problem(url(parent)).await;
    let export = url(small_export());
    assert!(
        message.starts_with("no billing periods found: ")
            && message.contains(&format!(
                "holds an export: {export}; did you mean {export}?"
            )),
        "{message}"
    );
}

#[tokio::test]
async fn the_grandparent_of_exports_names_each() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["payer-a/cur2", "payer-b/cur2"] {
        generate(&dir.path().join(name), &DemoConfig::small()).unwrap();
    }
    let (_, message) = only_problem(url(dir.path())).await;
    let a = url(&dir.path().join("payer-a/cur2"));
    let b = url(&dir.path().join("payer-b/cur2"));
    assert!(
        message.contains(&format!("holds exports: {a}, {b}; did you mean {a}?")),
        "{message}"
    );
}

#[tokio::test]
async fn the_data_folder_of_an_export_points_above() {
    let data = small_export().join("data");
    let (_, message) = only_problem(url(&data)).await;
    assert!(
        message.ends_with(&format!("did you mean {}?", url(small_export()))),
        "{message}"
    );
}

#[tokio::test]
async fn a_flat_folder_keeps_the_expected_layout() {
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    std::fs::write(flat.join("acme-cur2-00001.snappy.parquet"), b"PAR1").unwrap();
    let (_, message) = only_problem(url(&flat)).await;
    assert_eq!(
        message,
        format!(
            "no billing periods found in {}: expected folders data/BILLING_PERIOD=YYYY-MM/",
            url(&flat)
        )
    );
}

#[tokio::test]
async fn a_file_url_with_a_host_warns_that_it_is_ignored() {
    // file://ignored/abs/path reads /abs/path: it serves, and says what it read.
    let export = small_export().to_str().unwrap();
    let source = format!("file://ignored{export}");
    let server = ServerProcess::serve(&[source], &[]).await;
    let warning = server
        .early
        .iter()
        .find(|l| l.contains("of a file:// URL is ignored"))
        .unwrap_or_else(|| panic!("no warning in {:?}", server.early));
    assert!(
        warning.contains("WARN")
            && warning.contains(r#"host part "ignored""#)
            && warning.contains(&format!("reads {export}")),
        "{warning}"
    );
    server.terminate().await;
}

#[tokio::test]
async fn serving_logs_the_months_and_commands_once() {
    let server = ServerProcess::start(small_export(), &[]).await;
    let line = server.log_line("serving ", WITHIN).await;
    let status = server
        .client()
        .await
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    let mut months: Vec<&str> = status
        .periods
        .iter()
        .map(|p| p.billing_period.as_str())
        .collect();
    months.sort_unstable();
    let (first, last) = (months[0], months[months.len() - 1]);
    let cli = format!("bedrock-attribution --server http://{}", server.addr);
    assert!(
        line.contains(&format!(
            "serving {} billing periods: {} ({first}..{last})",
            months.len(),
            url(small_export())
        )) && line.contains(&format!("`{cli} status`"))
            && line.contains(&format!("`{cli} cost-by-principal --from {last}-01 --to ")),
        "{line}"
    );
    // Once: a refresh that swaps in a snapshot does not log it again.
    server
        .client()
        .await
        .refresh(proto::RefreshRequest {})
        .await
        .unwrap();
    server.log_line("snapshot built", WITHIN).await;
    let rest = server.log_for(Duration::from_millis(500)).await;
    assert!(
        !rest.iter().any(|l| l.contains("billing periods: ")),
        "logged twice: {rest:?}"
    );
    server.terminate().await;
}

#[tokio::test]
async fn problems_log_the_period_as_yyyy_mm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("acme-cur2");
    generate(&root, &DemoConfig::small()).unwrap();
    let metadata = std::fs::read_dir(root.join("metadata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let period = metadata
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .strip_prefix("BILLING_PERIOD=")
        .unwrap()
        .to_owned();
    for entry in std::fs::read_dir(&metadata).unwrap() {
        std::fs::write(entry.unwrap().path(), b"{not json").unwrap();
    }
    let server = ServerProcess::start(&root, &[]).await;
    let line = server
        .log_line("the manifest is not valid JSON", WITHIN)
        .await;
    assert!(
        line.contains(&format!("period={period}")) && !line.contains("Some("),
        "{line}"
    );
    server.terminate().await;
}

/// The Dockerfile's example `docker run ... IMAGE --demo`: the arguments after the
/// image, with the image's `ENV`, must start a server (no Docker engine here: the
/// binary runs with them). Only the port is made ephemeral.
#[tokio::test]
async fn the_dockerfile_demo_starts() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile"))
            .unwrap();
    let example = dockerfile
        .lines()
        .find(|l| l.contains("docker run") && l.contains("--demo"))
        .unwrap_or_else(|| panic!("no demo example in the Dockerfile"));
    let args: Vec<&str> = example
        .split_whitespace()
        .skip_while(|w| !w.starts_with("bedrock-attribution:"))
        .skip(1)
        .collect();
    assert!(args.contains(&"--demo"), "{example}");
    let listen = dockerfile
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("BEDROCK_ATTRIBUTION_LISTEN="))
        })
        .unwrap_or_else(|| panic!("no BEDROCK_ATTRIBUTION_LISTEN in the Dockerfile"));
    let (host, _port) = listen.rsplit_once(':').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bedrock-attribution-server"))
        .args(&args)
        .args(["--no-cache", "--refresh-interval", "0"])
        .env("BEDROCK_ATTRIBUTION_LISTEN", format!("{host}:0"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = ServerProcess::adopt(output).await;
    let line = server.log_line("serving ", WITHIN).await;
    assert!(line.contains("billing periods"), "{line}");
    server.sigterm();
    assert!(server.exited(WITHIN).await.success());
}
