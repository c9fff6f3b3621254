//! Persisted layers: a restart on unchanged data loads every period from the cache
//! directory and answers exactly as a fresh read; a damaged entry is rebuilt from the
//! export, never served.

use std::path::Path;

use bedrock_attribution_client::proto;

use crate::{
    common::small_export,
    s3fixture::{file_url, serve, suite},
};

async fn start(cache: &Path) -> crate::common::TestServer {
    serve(
        &[file_url(small_export())],
        &["--cache-dir".to_owned(), cache.display().to_string()],
    )
    .await
}

async fn origins(server: &crate::common::TestServer) -> (Vec<String>, u64) {
    let status = server
        .client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    (
        status
            .periods
            .iter()
            .map(|p| p.layers_from.clone())
            .collect(),
        status.snapshot_version,
    )
}

fn entries(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    dirs
}

#[tokio::test]
async fn restarts_load_persisted_layers_and_rebuild_damaged_ones() {
    let cache = tempfile::tempdir().unwrap();
    let first = start(cache.path()).await;
    let (from, version) = origins(&first).await;
    assert_eq!(from, vec!["export"; 5]);
    let answers = suite(&first.client).await;
    first.stop().await;
    assert_eq!(entries(cache.path()).len(), 5, "one entry per period");

    // Unchanged data: every period from the cache, the same answers and version.
    let second = start(cache.path()).await;
    assert_eq!(
        origins(&second).await,
        (vec!["cache".to_owned(); 5], version)
    );
    assert_eq!(suite(&second.client).await, answers);
    second.stop().await;

    // Damage two entries: flip a byte inside one layer file, truncate another's meta.
    let dirs = entries(cache.path());
    let fine = dirs[1].join("fine.arrow");
    let mut bytes = std::fs::read(&fine).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&fine, bytes).unwrap();
    let meta = dirs[3].join("meta.json");
    let text = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, &text[..text.len() / 2]).unwrap();

    let third = start(cache.path()).await;
    let (from, v) = origins(&third).await;
    assert_eq!(v, version);
    assert_eq!(
        from,
        vec!["cache", "export", "cache", "export", "cache"],
        "damaged entries are read again from the export"
    );
    assert_eq!(suite(&third.client).await, answers);
    third.stop().await;

    // ... and written again, intact.
    let fourth = start(cache.path()).await;
    assert_eq!(origins(&fourth).await.0, vec!["cache"; 5]);
    assert_eq!(suite(&fourth.client).await, answers);
    fourth.stop().await;
}

#[tokio::test]
async fn a_new_version_of_a_period_replaces_its_cache_entry() {
    use bedrock_attribution_server::demo::{ExportWriter, PeriodLayout, SchemaOptions};
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let writer = ExportWriter::new(dir.path(), "tiny", "s3://b/tiny");
    let write = |cost: f64| {
        let item = crate::s3fixture::bedrock_item(
            "a",
            "210987654321",
            crate::s3fixture::at(2026, 5, 2, 8),
            None,
            cost,
            &[],
        );
        writer
            .write_period(
                "2026-05",
                &[vec![item]],
                &PeriodLayout::Overwrite {
                    leftover_empty_chunks: 0,
                },
                SchemaOptions::default(),
            )
            .unwrap();
    };
    write(1.0);
    let flags = ["--cache-dir".to_owned(), cache.path().display().to_string()];
    let server = serve(&[file_url(dir.path())], &flags).await;
    // Layers are written behind the snapshot that serves them.
    server.handle.catalog().flush_cache().await;
    assert_eq!(entries(cache.path()).len(), 1);
    let first = entries(cache.path());
    write(2.0);
    let r = server
        .client
        .refresh(proto::RefreshRequest {})
        .await
        .unwrap();
    assert_eq!(r.periods_reread, 1);
    server.handle.catalog().flush_cache().await;
    let now = entries(cache.path());
    assert_eq!(now.len(), 1, "the earlier version's entry is removed");
    assert_ne!(now, first);
    server.stop().await;
}
