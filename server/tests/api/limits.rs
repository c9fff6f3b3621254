//! Limits and resilience: every bad field is INVALID_ARGUMENT naming the field in
//! `google.rpc.BadRequest`; page tokens are authenticated; errors carry no server paths;
//! beyond the running and queued limits, large questions are refused at once with
//! RESOURCE_EXHAUSTED and a retry hint.

use std::path::Path;

use bedrock_attribution_client::proto;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::{TestServer, range, small_export};

fn sources() -> Vec<String> {
    vec![format!("file://{}", small_export().display())]
}

/// The one field violation of an INVALID_ARGUMENT status.
fn violation(status: &tonic::Status) -> (String, String) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
    assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
    let v = &bad.field_violations[0];
    (v.field.clone(), v.description.clone())
}

fn may() -> Option<proto::TimeRange> {
    range("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z")
}

fn with_filter(filter: proto::Filter) -> proto::CostByPrincipalRequest {
    proto::CostByPrincipalRequest {
        time_range: may(),
        filter: Some(filter),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_bad_field_is_named_in_bad_request_details() {
    let server = TestServer::serve(&sources(), &["--max-range".into(), "400d".into()]).await;
    let mut raw = server.client.raw();
    let huge = "x".repeat(100 * 1024);
    let many: Vec<String> = (0..10_000).map(|i| format!("model-{i}")).collect();
    let cases: Vec<(proto::CostByPrincipalRequest, &str, &str)> = vec![
        (
            proto::CostByPrincipalRequest::default(),
            "time_range",
            "is required",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: range("2026-06-01T00:00:00Z", "2026-05-01T00:00:00Z"),
                ..Default::default()
            },
            "time_range",
            "not after start",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: range("1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z"),
                ..Default::default()
            },
            "time_range",
            "maximum of 400 days (--max-range)",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: Some(proto::TimeRange {
                    start: Some(prost_types::Timestamp {
                        seconds: i64::MIN,
                        nanos: 0,
                    }),
                    end: may().and_then(|r| r.end),
                }),
                ..Default::default()
            },
            "time_range.start",
            "not a valid timestamp",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: may(),
                page_size: 10_001,
                ..Default::default()
            },
            "page_size",
            "maximum of 10000",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: may(),
                cost_metric: 42,
                ..Default::default()
            },
            "cost_metric",
            "42 is not a known value",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: may(),
                grouping: -1,
                ..Default::default()
            },
            "grouping",
            "not a known value",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: may(),
                also_group_by: vec![proto::Dimension::Tag.into()],
                also_group_by_tag_key: "iamPrincipal/".to_owned() + &"k".repeat(129),
                ..Default::default()
            },
            "also_group_by_tag_key",
            "at most 128 characters",
        ),
        (
            proto::CostByPrincipalRequest {
                time_range: may(),
                also_group_by: vec![proto::Dimension::Tag.into()],
                also_group_by_tag_key: format!("{}/team", "s".repeat(33)),
                ..Default::default()
            },
            "also_group_by_tag_key",
            "at most 128 characters after their source prefix",
        ),
        (
            with_filter(proto::Filter {
                account_ids: vec!["111111111111".into(), "12345".into()],
                ..Default::default()
            }),
            "filter.account_ids[1]",
            "\"12345\" is not a 12-digit AWS account id",
        ),
        (
            with_filter(proto::Filter {
                payer_account_ids: vec!["' OR 1=1 --".into()],
                ..Default::default()
            }),
            "filter.payer_account_ids[0]",
            "not a 12-digit AWS account id",
        ),
        (
            with_filter(proto::Filter {
                principals: vec!["arn:aws:iam::12345:user/alice".into()],
                ..Default::default()
            }),
            "filter.principals[0]",
            "is not an ARN",
        ),
        (
            with_filter(proto::Filter {
                models: many.clone(),
                ..Default::default()
            }),
            "filter.models",
            "has 10000 values; at most 1000",
        ),
        (
            with_filter(proto::Filter {
                regions: vec![huge.clone()],
                ..Default::default()
            }),
            "filter.regions[0]",
            "is 102400 characters long",
        ),
        (
            with_filter(proto::Filter {
                tags: vec![proto::TagFilter {
                    key: "iamPrincipal/team".into(),
                    values: vec!["ok".into(), "v".repeat(257)],
                    untagged: false,
                }],
                ..Default::default()
            }),
            "filter.tags.values[1]",
            "at most 256",
        ),
        (
            with_filter(proto::Filter {
                usage_categories: vec![77],
                ..Default::default()
            }),
            "filter.usage_categories",
            "77 is not a known value",
        ),
        (
            with_filter(proto::Filter {
                routings: vec![proto::Routing::CrossRegionGlobal.into(), 4],
                ..Default::default()
            }),
            "filter.routings",
            "4 is not a known value",
        ),
        (
            with_filter(proto::Filter {
                routings: vec![proto::Routing::Unspecified.into()],
                ..Default::default()
            }),
            "filter.routings",
            "ROUTING_UNSPECIFIED cannot be filtered on",
        ),
    ];
    for (request, field, needle) in cases {
        let status = raw.cost_by_principal(request).await.unwrap_err();
        let (got, description) = violation(&status);
        assert_eq!(got, field, "{status:?}");
        assert!(
            description.contains(needle),
            "{needle:?} not in {description:?}"
        );
        assert!(status.message().contains(field), "{}", status.message());
    }

    // ListTagKeys' prefix is bounded too.
    let status = raw
        .list_tag_keys(proto::ListTagKeysRequest {
            time_range: may(),
            key_prefix: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violation(&status).0, "key_prefix");

    // Hostile but well-formed values are plain values: matched exactly, no rows, no error.
    let answer = raw
        .cost_by_principal(with_filter(proto::Filter {
            models: vec!["x'; DROP TABLE line_items; --".into(), "\"quoted\"".into()],
            principals: vec!["' OR '1'='1".into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.rows.is_empty(), "{:?}", answer.rows);
    assert!(
        answer
            .totals
            .iter()
            .all(|m| m.exact == "0" || m.exact.is_empty())
            || answer.totals.is_empty()
    );
    // The quoted key of the data contract stays accepted.
    raw.cost_by_tag(proto::CostByTagRequest {
        time_range: may(),
        tag_key: "iamPrincipal/it's \"quoted\"".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    server.stop().await;
}

/// Pages of `request` through `raw`, as (rows, next token).
async fn page(
    raw: &mut proto::attribution_service_client::AttributionServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            bedrock_attribution_client::Credentials,
        >,
    >,
    token: &str,
) -> Result<(usize, String), tonic::Status> {
    let r = raw
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: may(),
            page_size: 3,
            page_token: token.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok((r.rows.len(), r.next_page_token))
}

#[tokio::test]
async fn page_tokens_are_authenticated_and_shared_by_replicas_with_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("page-token.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let flags = [
        "--page-token-key-file".to_owned(),
        key.display().to_string(),
    ];
    let a = TestServer::serve(&sources(), &flags).await;
    let b = TestServer::serve(&sources(), &flags).await;
    let other = TestServer::serve(&sources(), &[]).await;
    let (mut ra, mut rb, mut ro) = (a.client.raw(), b.client.raw(), other.client.raw());

    let (rows, token) = page(&mut ra, "").await.unwrap();
    assert_eq!(rows, 3);
    assert!(!token.is_empty());
    // Another replica with the same key and data continues the paging.
    let (rows, next) = page(&mut rb, &token).await.unwrap();
    assert_eq!(rows, 3);
    assert_ne!(next, token);
    // A server with another key refuses it.
    let status = page(&mut ro, &token).await.unwrap_err();
    assert_eq!(violation(&status).0, "page_token");

    // Forged (one character changed), truncated, padded, or another request's token.
    let mut forged = token.clone().into_bytes();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(forged).unwrap(),
        token[..token.len() - 4].to_owned(),
        format!("{token}=="),
        "AAAA".repeat(20),
    ] {
        let status = page(&mut ra, &bad).await.unwrap_err();
        assert_eq!(violation(&status).0, "page_token", "{bad}");
    }
    let status = ra
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: may(),
            page_size: 3,
            page_token: token.clone(),
            grouping: proto::PrincipalGrouping::Role.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let (field, description) = violation(&status);
    assert_eq!(field, "page_token");
    assert!(description.contains("different request"), "{description}");

    a.stop().await;
    b.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn a_page_token_survives_a_restart_with_the_cache_directory_key() {
    let cache = tempfile::tempdir().unwrap();
    let flags = ["--cache-dir".to_owned(), cache.path().display().to_string()];
    let first = TestServer::serve(&sources(), &flags).await;
    let (_, token) = page(&mut first.client.raw(), "").await.unwrap();
    first.stop().await;
    let key = cache.path().join("page-token.key");
    assert!(key.exists(), "the key is kept in the cache directory");
    let second = TestServer::serve(&sources(), &flags).await;
    let (rows, _) = page(&mut second.client.raw(), &token).await.unwrap();
    assert_eq!(rows, 3);
    second.stop().await;
}

#[tokio::test]
async fn unreadable_local_files_are_named_relative_to_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("acme-cur2");
    copy_dir(small_export(), &root);
    let file = root.join("data/BILLING_PERIOD=2026-04/acme-cur2-00001.snappy.parquet");
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
    let server = TestServer::serve(&[format!("file://{}", root.display())], &[]).await;
    let status = server
        .client
        .raw()
        .cost_by_principal(proto::CostByPrincipalRequest {
            time_range: range("2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let message = status.message();
    assert!(
        message.starts_with(
            "billing period 2026-04 of acme-cur2 cannot be served: data/BILLING_PERIOD=2026-04/acme-cur2-00001.snappy.parquet: "
        ),
        "{message}"
    );
    let abs = dir.path().display().to_string();
    assert!(!message.contains(&abs), "{message}");
    assert!(!message.contains("file://"), "{message}");
    server.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_full_line_sheds_with_a_retry_hint() {
    let sources = sources();
    let flags: Vec<String> = [
        "--max-concurrent-queries",
        "1",
        "--max-queued-queries",
        "0",
        "--small-query-rows",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let server = TestServer::serve(&sources, &flags).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut raw = server.client.raw();
        tasks.push(tokio::spawn(async move {
            // A range never asked before, so no answer comes from the cache.
            let end = format!("2026-07-{:02}T{:02}:00:00Z", 1 + i / 24, i % 24);
            raw.cost_by_principal(proto::CostByPrincipalRequest {
                time_range: crate::common::range("2026-03-01T00:00:00Z", &end),
                also_group_by: vec![proto::Dimension::Model.into()],
                ..Default::default()
            })
            .await
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("retry in"),
                    "{}",
                    status.message()
                );
                let hint = status
                    .metadata()
                    .get("grpc-retry-pushback-ms")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                assert!(hint.is_some_and(|ms| ms >= 100), "{:?}", status.metadata());
                shed += 1;
            }
        }
    }
    assert!(ok >= 1, "the running query finishes");
    assert!(
        shed >= 1,
        "40 at once with room for one: some are shed ({ok} ok)"
    );
    server.stop().await;
}

/// A message that is not a `CostByPrincipalRequest`: field 1 (`time_range`, a message)
/// sent as a varint.
#[derive(Clone, PartialEq, prost::Message)]
struct NotARequest {
    #[prost(uint64, tag = "1")]
    time_range: u64,
}

#[tokio::test]
async fn undecodable_requests_are_invalid_and_oversized_ones_exhausted() {
    let server =
        TestServer::serve(&sources(), &["--max-request-bytes".into(), "64KiB".into()]).await;
    let path = http::uri::PathAndQuery::from_static(
        "/bedrock.attribution.v1.AttributionService/CostByPrincipal",
    );
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(NotARequest { time_range: 7 }),
            path,
            tonic_prost::ProstCodec::<NotARequest, proto::CostByPrincipalResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("not a valid message of this RPC"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("wire type"),
        "{}",
        status.message()
    );

    // 100 KB of filter values: over the 64 KiB limit before any validation.
    let status = server
        .client
        .raw()
        .cost_by_principal(with_filter(proto::Filter {
            models: vec!["m".repeat(100 * 1024)],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("larger than the server accepts (65536 bytes)"),
        "{}",
        status.message()
    );
    // The connection still serves.
    page(&mut server.client.raw(), "").await.unwrap();
    server.stop().await;
}

/// The `--demo` dataset (eight months, a few hundred callers): large enough that an
/// hourly question over all of it keeps a core busy for a while.
static DEMO_EXPORT: std::sync::LazyLock<(tempfile::TempDir, std::path::PathBuf)> =
    std::sync::LazyLock::new(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("acme-cur2");
        bedrock_attribution_server::demo::generate(
            &root,
            &bedrock_attribution_server::demo::DemoConfig::demo(),
        )
        .unwrap();
        (dir, root)
    });

fn demo_sources() -> Vec<String> {
    vec![format!("file://{}", DEMO_EXPORT.1.display())]
}

/// A heavy question, different for each `i` (so none is answered from the cache): every
/// hour of the export by caller, model and region.
fn heavy(i: u32) -> proto::CostByPrincipalRequest {
    heavy_from("2026-03-01T00:00:00Z", i)
}

/// [`heavy`] from `start`.
fn heavy_from(start: &str, i: u32) -> proto::CostByPrincipalRequest {
    let end = format!("2026-10-{:02}T{:02}:00:00Z", 1 + i / 24, i % 24);
    proto::CostByPrincipalRequest {
        time_range: range(start, &end),
        granularity: proto::Granularity::Hourly.into(),
        also_group_by: vec![
            proto::Dimension::Model.into(),
            proto::Dimension::Region.into(),
        ],
        page_size: 10,
        ..Default::default()
    }
}

/// CPU time (clock ticks of 10 ms) of this process's threads named `name`.
fn thread_ticks(name: &str) -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime: fields 14 and 15 of stat, 12th and 13th after the name.
        ticks += fields
            .get(11)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        ticks += fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks
}

/// Ticks the pool spends from now until a half second without work (at most 3 ticks),
/// and whether that came within ten seconds.
async fn work_after(pool: &str) -> (u64, bool) {
    let start = thread_ticks(pool);
    for _ in 0..20 {
        let before = thread_ticks(pool);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if thread_ticks(pool) - before <= 3 {
            return (before - start, true);
        }
    }
    (thread_ticks(pool) - start, false)
}

/// A query past its deadline answers DEADLINE_EXCEEDED at the deadline, and its work
/// stops after the synchronous step under way (physical planning, about a second in a
/// debug build) instead of running to the end; its answer is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_deadline_stops_and_says_so() {
    let server = TestServer::serve(&demo_sources(), &[]).await;
    let pool = server.handle.query_thread_name().to_owned();
    let mut raw = server.client.raw();
    // The question with time to finish: its cost on the pool.
    let before = thread_ticks(&pool);
    let started = std::time::Instant::now();
    raw.cost_by_principal(heavy(1)).await.unwrap();
    let full = started.elapsed();
    let worked = thread_ticks(&pool) - before;
    assert!(
        worked >= 20,
        "a heavy question takes CPU: {worked} ticks in {full:?}"
    );

    // The caller's deadline (a tenth of that), shorter than the server's.
    let mut request = tonic::Request::new(heavy(2));
    request.set_timeout(full / 10);
    let started = std::time::Instant::now();
    let status = raw.cost_by_principal(request).await.unwrap_err();
    // The server answers DEADLINE_EXCEEDED at the deadline, but tonic's channel enforces
    // the same `grpc-timeout` on the client side and, on a loaded machine, its own timer
    // can fire first (CANCELLED "Timeout expired"). Either way the caller is answered at
    // its deadline; what this test is about, the server's work stopping, is checked below.
    let client_side_expiry =
        status.code() == Code::Cancelled && status.message() == "Timeout expired";
    assert!(
        status.code() == Code::DeadlineExceeded || client_side_expiry,
        "{status:?}"
    );
    assert!(started.elapsed() < full / 10 + std::time::Duration::from_millis(300));
    let (after, idle) = work_after(&pool).await;
    eprintln!(
        "heavy question: {worked} ticks in {full:?}; after a deadline of {:?}: {after} ticks",
        full / 10
    );
    assert!(
        after < worked * 2 / 3,
        "the work went on: {after} of {worked} ticks"
    );
    assert!(idle, "the pool kept working");
    // Not kept: asked again with time, it is computed again (and answers).
    let before = thread_ticks(&pool);
    raw.cost_by_principal(heavy(2)).await.unwrap();
    let again = thread_ticks(&pool) - before;
    assert!(
        again >= worked / 3,
        "the timed-out answer was kept: {again} ticks"
    );
    server.stop().await;

    // The server's limit (again a tenth of the full question's time, so that the
    // question cannot finish within it however fast the machine): the same, with the
    // message.
    let limit = (full / 10).max(std::time::Duration::from_millis(1));
    let server = TestServer::serve(
        &demo_sources(),
        &["--query-timeout".into(), format!("{}ms", limit.as_millis())],
    )
    .await;
    let pool = server.handle.query_thread_name().to_owned();
    let started = std::time::Instant::now();
    let status = server
        .client
        .raw()
        .cost_by_principal(heavy(3))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.message(),
        "the query did not finish within its deadline"
    );
    assert!(
        elapsed < limit + std::time::Duration::from_millis(300),
        "{elapsed:?} against a limit of {limit:?}"
    );
    let (after, idle) = work_after(&pool).await;
    assert!(
        after < worked * 2 / 3,
        "the work went on: {after} of {worked} ticks"
    );
    assert!(idle, "the pool kept working");
    server.stop().await;
}

/// The server's runtime as in production (multi-threaded, here two threads as on the
/// machine the issue measured), beside the query pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_in_milliseconds_under_heavy_queries() {
    let server =
        TestServer::serve(&demo_sources(), &["--small-query-rows".into(), "0".into()]).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let mut raw = server.client.raw();
        tasks.push(tokio::spawn(async move {
            // About two months of hours: heavy, yet 24 of them end within seconds.
            raw.cost_by_principal(heavy_from("2026-08-15T00:00:00Z", 10 + i))
                .await
                .map(|_| ())
        }));
    }
    let mut worst = std::time::Duration::ZERO;
    let mut all = Vec::new();
    let mut checks = 0;
    while tasks.iter().any(|t| !t.is_finished()) && checks < 40 {
        let started = std::time::Instant::now();
        let r = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "SERVING");
        worst = worst.max(started.elapsed());
        all.push(started.elapsed().as_millis());
        checks += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(
        checks >= 3,
        "the queries ran long enough to be measured ({checks} checks)"
    );
    eprintln!("health under 24 heavy queries: worst of {checks} checks {worst:?}: {all:?}");
    assert!(worst < std::time::Duration::from_millis(500), "{worst:?}");
    server.stop().await;
}

#[tokio::test]
async fn one_caller_is_held_to_its_share() {
    let flags: Vec<String> = [
        "--max-concurrent-queries",
        "1",
        "--max-queued-queries",
        "100",
        "--max-queries-per-caller",
        "2",
        "--small-query-rows",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let server = TestServer::serve(&demo_sources(), &flags).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut raw = server.client.raw();
        tasks.push(tokio::spawn(async move {
            raw.cost_by_principal(heavy(50 + i)).await.map(|_| ())
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().starts_with(
                        "caller anonymous already has 2 large queries running or waiting"
                    ),
                    "{}",
                    status.message()
                );
                refused += 1;
            }
        }
    }
    assert!(ok >= 2 && refused >= 1, "{ok} answered, {refused} refused");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_share_one_build() {
    let server = TestServer::serve(&sources(), &[]).await;
    let catalog = server.handle.catalog();
    // Joined on this task: the call polled first takes the lock and yields before it
    // builds, so the other is made while it runs; that one waits and takes its build.
    let builds = catalog.builds();
    let (first, second) = tokio::join!(catalog.refresh(), catalog.refresh());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        catalog.builds(),
        builds + 1,
        "the second call waited for the first one's build"
    );
    assert!(
        std::sync::Arc::ptr_eq(&first, &second),
        "both calls answer with the same snapshot"
    );
    let builds = catalog.builds();
    // A call after it builds again.
    catalog.refresh().await.unwrap();
    assert_eq!(catalog.builds(), builds + 1);
    // Through the API: two Refresh calls at once both answer, with one version, and
    // build at most once each (whether they overlap depends on timing).
    let before = catalog.builds();
    let (mut a, mut b) = (server.client.raw(), server.client.raw());
    let (first, second) = tokio::join!(
        a.refresh(proto::RefreshRequest {}),
        b.refresh(proto::RefreshRequest {})
    );
    let (first, second) = (first.unwrap().into_inner(), second.unwrap().into_inner());
    assert_eq!(first.snapshot_version, second.snapshot_version);
    let built = catalog.builds() - before;
    assert!((1..=2).contains(&built), "{built} builds for two calls");
    server.stop().await;
}

/// A hash aggregate of every hour of the demo export by caller, model and region needs
/// between 4 and 16 MiB; a day's models need under 1 MiB (measured).
#[tokio::test]
async fn a_query_over_the_memory_cap_is_refused_not_fatal() {
    let server =
        TestServer::serve(&demo_sources(), &["--query-memory".into(), "2MiB".into()]).await;
    let mut raw = server.client.raw();
    let status = raw.cost_by_principal(heavy(0)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "the query needs more memory than the server allows one query; narrow the time range, group by fewer dimensions or use a coarser granularity"
    );
    let quota = status
        .get_details_quota_failure()
        .unwrap_or_else(|| panic!("no QuotaFailure in {status:?}"));
    assert_eq!(quota.violations[0].subject, "query memory");
    // The server goes on serving questions that fit.
    raw.list_models(proto::ListModelsRequest {
        time_range: range("2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z"),
        ..Default::default()
    })
    .await
    .unwrap();
    server.stop().await;
}

/// A question of the mixed load, and what its answer is compared on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Question {
    TeamsMonthly,
    RolesInMay,
    ModelsDailyInJune,
    /// [`heavy`], with a deadline it cannot meet.
    HeavyPastDeadline,
}

type Answer = (Vec<proto::Row>, Vec<proto::Money>, Option<proto::Tokens>);

/// The client crate's raw stub.
type Raw = proto::attribution_service_client::AttributionServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        bedrock_attribution_client::Credentials,
    >,
>;

async fn ask(
    raw: &mut Raw,
    question: Question,
    deadline: Option<std::time::Duration>,
) -> Result<Answer, tonic::Status> {
    fn with<T>(message: T, deadline: Option<std::time::Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(d) = deadline {
            request.set_timeout(d);
        }
        request
    }
    match question {
        Question::TeamsMonthly => {
            let r = raw
                .cost_by_tag(with(
                    proto::CostByTagRequest {
                        time_range: range("2026-03-01T00:00:00Z", "2026-09-01T00:00:00Z"),
                        tag_key: "iamPrincipal/team".into(),
                        granularity: proto::Granularity::Monthly.into(),
                        ..Default::default()
                    },
                    deadline,
                ))
                .await?
                .into_inner();
            Ok((r.rows, r.totals, r.total_tokens))
        }
        Question::RolesInMay => {
            let r = raw
                .cost_by_principal(with(
                    proto::CostByPrincipalRequest {
                        time_range: may(),
                        grouping: proto::PrincipalGrouping::Role.into(),
                        ..Default::default()
                    },
                    deadline,
                ))
                .await?
                .into_inner();
            Ok((r.rows, r.totals, r.total_tokens))
        }
        Question::ModelsDailyInJune => {
            let r = raw
                .token_usage(with(
                    proto::TokenUsageRequest {
                        time_range: range("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"),
                        granularity: proto::Granularity::Daily.into(),
                        group_by: vec![proto::Dimension::Model.into()],
                        ..Default::default()
                    },
                    deadline,
                ))
                .await?
                .into_inner();
            Ok((r.rows, r.totals, r.total_tokens))
        }
        Question::HeavyPastDeadline => {
            let r = raw
                .cost_by_principal(with(heavy(40), deadline))
                .await?
                .into_inner();
            Ok((r.rows, r.totals, r.total_tokens))
        }
    }
}

/// A bounded mixed load on loopback: six callers for five seconds, beyond the running
/// and queued limits, a heavy question with a deadline it cannot meet among the others,
/// and a refresh in the middle. Only the documented codes come back (OK,
/// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, or the client's own timer at the deadline);
/// every answer given equals the one the idle server gave; health answers SERVING
/// throughout, within 500 ms (the bound of the health test above: this is a debug build
/// sharing two cores with the other tests; alone it answers within ~90 ms, three copies
/// at once within ~190 ms); the process's RSS grows by less than 512 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_mixed_load_gets_documented_codes_and_right_answers() {
    use std::{collections::HashMap, time::Duration, time::Instant};
    let flags: Vec<String> = [
        "--max-concurrent-queries",
        "1",
        "--max-queued-queries",
        "2",
        "--max-queries-per-caller",
        "3",
        "--small-query-rows",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let server = TestServer::serve(&demo_sources(), &flags).await;
    let questions = [
        Question::TeamsMonthly,
        Question::RolesInMay,
        Question::ModelsDailyInJune,
        Question::HeavyPastDeadline,
    ];
    let mut expected: HashMap<Question, Answer> = HashMap::new();
    let mut raw = server.client.raw();
    for q in &questions[..3] {
        expected.insert(*q, ask(&mut raw, *q, None).await.unwrap());
    }
    let rss_kib = |field: &str| -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    };
    let rss_before = rss_kib("VmRSS:");

    let until = Instant::now() + Duration::from_secs(5);
    let mut callers = Vec::new();
    for caller in 0..6 {
        let mut raw = server.client.raw();
        callers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = caller;
            while Instant::now() < until {
                let q = questions[n % questions.len()];
                n += 1;
                let deadline = (q == Question::HeavyPastDeadline)
                    .then_some(Duration::from_millis(30))
                    .or(Some(Duration::from_secs(20)));
                seen.push((q, ask(&mut raw, q, deadline).await));
                if matches!(seen.last(), Some((_, Err(s))) if s.code() == Code::ResourceExhausted) {
                    // Shed: back off a little, as a client honouring the hint would.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            seen
        }));
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let mut admin = server.client.raw();
    let mut refreshed = false;
    let mut worst = Duration::ZERO;
    let mut checks = 0;
    while Instant::now() < until {
        if !refreshed && until - Instant::now() < Duration::from_millis(2500) {
            admin.refresh(proto::RefreshRequest {}).await.unwrap();
            refreshed = true;
        }
        let started = Instant::now();
        let r = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "SERVING");
        worst = worst.max(started.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut codes: HashMap<Code, usize> = HashMap::new();
    let mut answered: HashMap<Question, usize> = HashMap::new();
    let mut heavy_answers = Vec::new();
    for caller in callers {
        for (q, result) in caller.await.unwrap() {
            let code = match &result {
                Ok(_) => Code::Ok,
                // The heavy question's deadline: the server's DEADLINE_EXCEEDED, or the
                // client's own timer (tonic's channel enforces `grpc-timeout` too, and
                // gives up as CANCELLED "Timeout expired" when it fires first).
                Err(s)
                    if q == Question::HeavyPastDeadline
                        && s.code() == Code::Cancelled
                        && s.message() == "Timeout expired" =>
                {
                    Code::DeadlineExceeded
                }
                Err(s) => s.code(),
            };
            *codes.entry(code).or_default() += 1;
            match result {
                Ok(answer) if q == Question::HeavyPastDeadline => heavy_answers.push(answer),
                Ok(answer) => {
                    *answered.entry(q).or_default() += 1;
                    assert!(answer == expected[&q], "{q:?}: another answer under load");
                }
                Err(status) => assert!(
                    matches!(code, Code::ResourceExhausted | Code::DeadlineExceeded),
                    "{q:?}: {status:?}"
                ),
            }
        }
    }
    eprintln!("mixed load: codes {codes:?}, answered {answered:?}");
    for q in &questions[..3] {
        assert!(
            answered.get(q).is_some_and(|n| *n > 0),
            "{q:?} never answered"
        );
    }
    // Shedding is likely here but depends on timing (a_full_line_sheds_with_a_retry_hint
    // holds it); the deadline is certain: the heavy question needs seconds.
    assert!(
        codes.get(&Code::DeadlineExceeded).is_some_and(|n| *n > 0),
        "no deadline reached: {codes:?}"
    );
    let rss_after = rss_kib("VmRSS:");
    eprintln!(
        "mixed load: {checks} health checks, worst {worst:?}; RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(refreshed && checks >= 10, "{checks} checks");
    assert!(worst < Duration::from_millis(500), "health took {worst:?}");
    if !heavy_answers.is_empty() {
        // It beat its deadline after all (an answer cached from a late run is never
        // kept): then it must be the right one.
        let right = ask(&mut raw, Question::HeavyPastDeadline, None)
            .await
            .unwrap();
        assert!(heavy_answers.iter().all(|a| *a == right));
    }
    assert!(
        rss_after < rss_before + 512 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    server.stop().await;
}
