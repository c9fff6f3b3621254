//! WatchBudgets end to end: an event when a refresh moves a budget's status, with the
//! report BudgetStatus gives and the spend DuckDB sums from the same files; nothing
//! when a refresh read nothing new; the current statuses first when asked; events of
//! budgets created and deleted; scoped callers held to their own budgets and to the
//! rights they had when the stream opened; the per-caller bound on open streams, given
//! back when a client goes away; and the stream ended by a SIGTERM, without holding the
//! process.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use bedrock_attribution_client::{Client, proto};
use bedrock_attribution_server::demo::{CurLineItem, ExportWriter, PeriodLayout, SchemaOptions};
use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use tonic::{Code, Streaming};

use crate::{
    budgets::{CALLERS, as_caller, auth_file, daily_of, expected, flags, reference_spec},
    common::{TestServer, d, exact, range},
    process::ServerProcess,
    reference::reference_at,
};

const PAYER: &str = "111122223333";
const ACCT_ROCKET: &str = "210987654321";
const ACCT_QUIET: &str = "345678901234";
const ALICE: &str = "arn:aws:sts::210987654321:assumed-role/rocket/alice@example.com";
const QUIET: &str = "arn:aws:iam::345678901234:user/quiet1";
const TEAM: &str = "iamPrincipal/team";
/// The end of the spend counted by default: the newest usage hour (July 20th, 12:00)
/// ends at 13:00.
const AS_OF: &str = "2026-07-20T13:00:00Z";

/// Budgets of the file: the rocket team (200 spent of 240 as of the 20th, forecast over
/// it, 0.8 crossed) and quiet (100 of 1000).
const BUDGETS: &str = r#"
budgets:
  - id: rocket
    name: Rocket team
    scope: {tag: {key: iamPrincipal/team, value: rocket}}
    amount: "240"
    currency: USD
  - id: quiet
    name: Quiet
    scope: {principal_arn: "arn:aws:iam::345678901234:user/quiet1"}
    amount: 1000
    currency: USD
"#;

/// July 2026 up to the 20th: alice (team rocket) spends 10.00 a day at 09:00, quiet
/// (team quiet) 5.00 a day at 12:00; plus `extra` line items at 10:00, as (alice or
/// quiet, day, cost).
/// Written again, the period's one chunk and manifest are replaced.
fn write_july(root: &Path, extra: &[(&str, u32, f64)]) {
    let item = |id: String, caller: &str, account: &str, team: &str, day, hour, cost| CurLineItem {
        principal: Some(caller.into()),
        tags: vec![(TEAM.to_owned(), team.to_owned())],
        ..CurLineItem::bedrock(
            &id,
            PAYER,
            account,
            Utc.with_ymd_and_hms(2026, 7, day, hour, 0, 0).unwrap(),
            cost,
        )
    };
    let mut items = Vec::new();
    for day in 1..=20 {
        items.push(item(
            format!("a{day}"),
            ALICE,
            ACCT_ROCKET,
            "rocket",
            day,
            9,
            10.0,
        ));
        items.push(item(
            format!("q{day}"),
            QUIET,
            ACCT_QUIET,
            "quiet",
            day,
            12,
            5.0,
        ));
    }
    for (i, (caller, day, cost)) in extra.iter().enumerate() {
        let (account, team) = if *caller == QUIET {
            (ACCT_QUIET, "quiet")
        } else {
            (ACCT_ROCKET, "rocket")
        };
        items.push(item(
            format!("x{i}"),
            caller,
            account,
            team,
            *day,
            10,
            *cost,
        ));
    }
    ExportWriter::new(root, "watch", "s3://b/cur/watch")
        .write_period(
            "2026-07",
            &[items],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 0,
            },
            SchemaOptions::default(),
        )
        .unwrap();
}

/// A temporary export (the July data) and a budgets file next to it.
fn fixture() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("watch-cur2");
    write_july(&root, &[]);
    let file = dir.path().join("budgets.yaml");
    std::fs::write(&file, BUDGETS).unwrap();
    (dir, root, file)
}

async fn serve(root: &Path, extra: &[String]) -> TestServer {
    TestServer::serve(&[format!("file://{}", root.display())], extra).await
}

async fn watch(client: &Client, ids: &[&str], send_initial: bool) -> Streaming<proto::BudgetEvent> {
    client
        .raw()
        .watch_budgets(proto::WatchBudgetsRequest {
            budget_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            send_initial,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next event, within a bound.
async fn next(stream: &mut Streaming<proto::BudgetEvent>) -> proto::BudgetEvent {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("an event within 30 s")
        .unwrap_or_else(|e| panic!("the stream failed: {e:?}"))
        .expect("the stream ended")
}

/// Asserts that nothing arrives for a second.
async fn silent(stream: &mut Streaming<proto::BudgetEvent>, what: &str) {
    if let Ok(got) = tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
        panic!("{what}: expected nothing within 1 s, got {got:?}");
    }
}

/// The status of `ids` as BudgetStatus answers it by default, for `client`.
async fn budget_status(client: &Client, ids: &[&str]) -> proto::BudgetStatusResponse {
    client
        .raw()
        .budget_status(proto::BudgetStatusRequest {
            budget_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn refresh(client: &Client) -> u64 {
    client
        .refresh(proto::RefreshRequest {})
        .await
        .unwrap()
        .snapshot_version
}

fn ts(s: &str) -> prost_types::Timestamp {
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// The rocket team's July spend to `AS_OF` by DuckDB over `root`, within `scope`.
fn duckdb_rocket_spend(root: &Path, scope: serde_json::Value) -> Decimal {
    let filter = json!({"tags": [{"key": TEAM, "values": ["rocket"]}]});
    let duck = reference_at(
        root,
        &[reference_spec(
            "rocket",
            filter,
            "2026-07-01T00:00:00Z",
            AS_OF,
            scope,
        )],
    );
    daily_of(&duck["results"]["rocket"], "USD").values().sum()
}

/// Checks an event against BudgetStatus's answer for the same budget, field by field.
fn same_as_status(event: &proto::BudgetEvent, status: &proto::BudgetStatusResponse) {
    let report = status
        .budgets
        .iter()
        .find(|r| r.budget.as_ref().unwrap().id == event.budget_id)
        .unwrap_or_else(|| panic!("BudgetStatus has no {}", event.budget_id));
    assert_eq!(event.report.as_ref(), Some(report), "{}", event.budget_id);
    assert_eq!(event.status, report.status);
    assert_eq!(event.budget_name, report.budget.as_ref().unwrap().name);
    assert_eq!(
        (event.month.as_str(), event.as_of),
        (status.month.as_str(), status.as_of)
    );
    assert_eq!(
        event.snapshot_version,
        status.info.as_ref().unwrap().snapshot_version
    );
}

use proto::{
    BudgetEventReason as Reason,
    BudgetState::{ForecastOver, Ok as Fine, Over, Unspecified},
};

#[tokio::test]
async fn a_refresh_that_moves_a_status_sends_one_event_and_one_that_changes_nothing_none() {
    let (dir, root, file) = fixture();
    let state = dir.path().join("state.json");
    let server = serve(
        &root,
        &flags(&[("--budgets-file", &file), ("--budgets-state", &state)]),
    )
    .await;
    let c = &server.client;

    // The current statuses first, ordered by id, equal to BudgetStatus's.
    let mut all = watch(c, &[], true).await;
    let mut rocket_only = watch(c, &["rocket"], false).await;
    let before = budget_status(c, &[]).await;
    assert_eq!(before.as_of, Some(ts(AS_OF)));
    let initial = [next(&mut all).await, next(&mut all).await];
    for (event, (id, state, crossed)) in initial.iter().zip([
        ("quiet", Fine, vec![]),
        ("rocket", ForecastOver, vec!["0.8"]),
    ]) {
        assert_eq!(event.budget_id, id);
        assert_eq!(event.reason, Reason::Initial as i32, "{event:?}");
        assert_eq!(event.previous_status, Unspecified as i32);
        assert!(event.previous_thresholds_crossed.is_empty());
        assert_eq!(event.status, state as i32, "{id}");
        assert_eq!(event.report.as_ref().unwrap().thresholds_crossed, crossed);
        same_as_status(event, &before);
    }
    let rocket = initial[1].report.as_ref().unwrap();
    assert_eq!(exact(rocket.spend_to_date.as_ref().unwrap()), d("200"));
    assert_eq!(
        exact(rocket.spend_to_date.as_ref().unwrap()),
        duckdb_rocket_spend(&root, json!({}))
    );

    // A refresh that reads nothing new keeps the version and sends nothing.
    let version = refresh(c).await;
    assert_eq!(version, before.info.as_ref().unwrap().snapshot_version);
    silent(&mut all, "unchanged data").await;
    silent(&mut rocket_only, "unchanged data, one budget").await;

    // 45 more for the team on the 15th: 245 of 240, OVER, both thresholds crossed.
    // Quiet's status stays: exactly one event.
    write_july(&root, &[(ALICE, 15, 45.0)]);
    let changed = refresh(c).await;
    assert_ne!(changed, version);
    let after = budget_status(c, &[]).await;
    assert_eq!(after.info.as_ref().unwrap().snapshot_version, changed);
    for stream in [&mut all, &mut rocket_only] {
        let event = next(stream).await;
        assert_eq!(event.budget_id, "rocket");
        assert_eq!(event.reason, Reason::DataChanged as i32);
        assert_eq!(
            (event.previous_status, event.status),
            (ForecastOver as i32, Over as i32)
        );
        assert_eq!(event.previous_thresholds_crossed, ["0.8"]);
        assert_eq!(event.snapshot_version, changed);
        same_as_status(&event, &after);
        let report = event.report.as_ref().unwrap();
        assert_eq!(report.thresholds_crossed, ["0.8", "1"]);
        let spend = exact(report.spend_to_date.as_ref().unwrap());
        assert_eq!(spend, d("245"));
        assert_eq!(spend, duckdb_rocket_spend(&root, json!({})));
        // The forecast is the stated formula over DuckDB's daily sums.
        let duck = reference_at(
            &root,
            &[reference_spec(
                "r",
                json!({"tags": [{"key": TEAM, "values": ["rocket"]}]}),
                "2026-07-01T00:00:00Z",
                AS_OF,
                json!({}),
            )],
        );
        let e = expected(
            &daily_of(&duck["results"]["r"], "USD"),
            NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
            AS_OF.parse().unwrap(),
        );
        assert_eq!(exact(report.forecast.as_ref().unwrap()), e.forecast);
        silent(stream, "after the one change").await;
    }

    // A budget created while watching every budget: its first status; deleted: a last
    // event without a status. The stream of one budget hears of neither.
    let created = c
        .raw()
        .create_budget(proto::CreateBudgetRequest {
            name: "quiet too".into(),
            scope: Some(proto::BudgetScope {
                principal_arn: QUIET.into(),
                ..Default::default()
            }),
            monthly_amount: Some(proto::Money {
                currency_code: "USD".into(),
                exact: "90".into(),
                ..Default::default()
            }),
            thresholds: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    let event = next(&mut all).await;
    assert_eq!(
        (event.budget_id.as_str(), event.reason),
        (created.id.as_str(), Reason::BudgetChanged as i32)
    );
    assert_eq!(
        (event.previous_status, event.status),
        (Unspecified as i32, Over as i32)
    );
    same_as_status(&event, &budget_status(c, &[&created.id]).await);
    c.raw()
        .delete_budget(proto::DeleteBudgetRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    let event = next(&mut all).await;
    assert_eq!(
        (event.budget_id.as_str(), event.reason),
        (created.id.as_str(), Reason::BudgetDeleted as i32)
    );
    assert_eq!(
        (event.previous_status, event.status, event.report.is_none()),
        (Over as i32, Unspecified as i32, true)
    );
    silent(&mut all, "after the deletion").await;
    silent(&mut rocket_only, "budgets of others").await;

    // Unknown ids are refused as BudgetStatus refuses them.
    let e = c
        .raw()
        .watch_budgets(proto::WatchBudgetsRequest {
            budget_ids: vec!["rocket".into(), "nope".into()],
            send_initial: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("budget_ids[1]"), "{}", e.message());
    drop((all, rocket_only, dir));
    server.stop().await;
}

#[tokio::test]
async fn scoped_callers_watch_only_their_own_within_their_scope_and_rights() {
    let (dir, root, _) = fixture();
    let state = dir.path().join("state.json");
    let auth = auth_file(dir.path());
    let mut extra = flags(&[("--auth-file", &auth), ("--budgets-state", &state)]);
    extra.extend(["--auth-reload-interval".to_owned(), "50ms".to_owned()]);
    let server = serve(&root, &extra).await;
    let admin = as_caller(&server, CALLERS[0].1).await;
    let rocket = as_caller(&server, CALLERS[1].1).await;
    let quiet = as_caller(&server, CALLERS[2].1).await;
    let create = |name: &str, team: &str, amount: &str| proto::CreateBudgetRequest {
        name: name.into(),
        scope: Some(proto::BudgetScope {
            tag: Some(proto::BudgetTag {
                key: TEAM.into(),
                value: team.into(),
            }),
            ..Default::default()
        }),
        monthly_amount: Some(proto::Money {
            currency_code: "USD".into(),
            exact: amount.into(),
            ..Default::default()
        }),
        thresholds: Vec::new(),
    };
    let mine = rocket
        .raw()
        .create_budget(create("rocket", "rocket", "240"))
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    let theirs = quiet
        .raw()
        .create_budget(create("quiet", "quiet", "1000"))
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();

    let mut rocket_stream = watch(&rocket, &[], true).await;
    let mut quiet_stream = watch(&quiet, &[], true).await;
    let mut admin_stream = watch(&admin, &[], true).await;
    for (stream, client, id) in [
        (&mut rocket_stream, &rocket, &mine.id),
        (&mut quiet_stream, &quiet, &theirs.id),
    ] {
        let event = next(stream).await;
        assert_eq!(&event.budget_id, id);
        same_as_status(&event, &budget_status(client, &[]).await);
        silent(stream, "one budget each").await;
    }
    let admin_initial = [next(&mut admin_stream).await, next(&mut admin_stream).await];
    let mut ids: Vec<&str> = admin_initial.iter().map(|e| e.budget_id.as_str()).collect();
    ids.sort();
    let mut both = [mine.id.as_str(), theirs.id.as_str()];
    both.sort();
    assert_eq!(ids, both);
    // The rocket lead's spend is computed within its accounts, equal to DuckDB's.
    let first = budget_status(&rocket, &[]).await;
    assert_eq!(
        exact(first.budgets[0].spend_to_date.as_ref().unwrap()),
        duckdb_rocket_spend(&root, json!({"accounts": [ACCT_ROCKET, "678901234567"]}))
    );
    // Another caller's budget cannot be watched.
    let e = quiet
        .raw()
        .watch_budgets(proto::WatchBudgetsRequest {
            budget_ids: vec![mine.id.clone()],
            send_initial: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // The team overruns: the rocket lead and the admin hear of it, the quiet lead not.
    write_july(&root, &[(ALICE, 15, 45.0)]);
    let version = refresh(&admin).await;
    for (stream, client) in [(&mut rocket_stream, &rocket), (&mut admin_stream, &admin)] {
        let event = next(stream).await;
        assert_eq!(event.budget_id, mine.id);
        assert_eq!(
            (event.status, event.snapshot_version),
            (Over as i32, version)
        );
        same_as_status(&event, &budget_status(client, &[&mine.id]).await);
    }
    silent(&mut quiet_stream, "the other team's overrun").await;

    // Eight streams per caller; a ninth is refused until a client goes away.
    let mut more = Vec::new();
    for _ in 0..7 {
        more.push(watch(&rocket, &[], false).await);
    }
    let e = rocket
        .raw()
        .watch_budgets(proto::WatchBudgetsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("rocket-lead"), "{}", e.message());
    // Other callers keep their own share.
    let _quiet_second = watch(&quiet, &[], false).await;
    drop(more.pop());
    let until = Instant::now() + Duration::from_secs(10);
    let replaced = loop {
        match rocket
            .raw()
            .watch_budgets(proto::WatchBudgetsRequest::default())
            .await
        {
            Ok(stream) => break stream.into_inner(),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(Instant::now() < until, "the slot was never given back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    more.push(replaced);

    // The rocket lead's scope narrows: its open stream ends at the next change instead
    // of computing with rights it lost.
    let callers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    let mut callers = callers;
    callers["callers"][1]["scope"] = json!({"accounts": [ACCT_ROCKET]});
    std::fs::write(&auth, callers.to_string()).unwrap();
    // Reloaded once the EUR account is outside the lead's scope.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let asked = rocket
            .raw()
            .list_principals(proto::ListPrincipalsRequest {
                time_range: range("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"),
                filter: Some(proto::Filter {
                    account_ids: vec!["678901234567".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        match asked {
            Err(e) if e.code() == Code::PermissionDenied => break,
            other => {
                assert!(Instant::now() < until, "not reloaded: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Quiet reaches its 1000: the admin and the quiet lead hear of it.
    write_july(&root, &[(ALICE, 15, 45.0), (QUIET, 16, 900.0)]);
    let version = refresh(&admin).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), rocket_stream.message())
        .await
        .expect("the stream ends within 30 s")
        .unwrap_err();
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert!(
        ended.message().contains("rocket-lead"),
        "{}",
        ended.message()
    );
    // The others go on.
    for (stream, client) in [(&mut quiet_stream, &quiet), (&mut admin_stream, &admin)] {
        let event = next(stream).await;
        assert_eq!(event.budget_id, theirs.id);
        assert_eq!(
            (event.status, event.snapshot_version),
            (Over as i32, version)
        );
        same_as_status(&event, &budget_status(client, &[&theirs.id]).await);
        silent(stream, "one budget changed").await;
    }
    drop((more, quiet_stream, admin_stream, dir));
    server.stop().await;
}

/// A caller whose rights change has its open stream ended by the reload of the callers
/// file itself, with nothing else changing (no refresh, no budget created or deleted):
/// the removed caller's stream and the narrowed caller's stream end with
/// PERMISSION_DENIED naming them, while the admin's stream, whose entry is unchanged,
/// stays open and silent.
#[tokio::test]
async fn a_revoked_callers_stream_ends_when_the_callers_file_is_reloaded() {
    let (dir, root, file) = fixture();
    let auth = auth_file(dir.path());
    let mut extra = flags(&[("--auth-file", &auth), ("--budgets-file", &file)]);
    extra.extend(["--auth-reload-interval".to_owned(), "50ms".to_owned()]);
    let server = serve(&root, &extra).await;
    let admin = as_caller(&server, CALLERS[0].1).await;
    let rocket = as_caller(&server, CALLERS[1].1).await;
    let quiet = as_caller(&server, CALLERS[2].1).await;
    let mut admin_stream = watch(&admin, &[], false).await;
    let mut rocket_stream = watch(&rocket, &[], false).await;
    let mut quiet_stream = watch(&quiet, &[], false).await;
    silent(&mut rocket_stream, "nothing changed yet").await;

    // The rocket lead is removed, the quiet lead's scope narrows.
    let mut callers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    callers["callers"][2]["scope"] = json!({"tags": {TEAM: ["quiet"]}, "accounts": [ACCT_QUIET]});
    callers["callers"].as_array_mut().unwrap().remove(1);
    std::fs::write(&auth, callers.to_string()).unwrap();
    for (stream, name) in [
        (&mut rocket_stream, "rocket-lead"),
        (&mut quiet_stream, "quiet-lead"),
    ] {
        let ended = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| panic!("{name}'s stream still open 10 s after the change"))
            .unwrap_err();
        assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
        assert!(ended.message().contains(name), "{}", ended.message());
    }
    silent(&mut admin_stream, "the admin's rights did not change").await;
    drop((admin_stream, rocket_stream, quiet_stream, dir));
    server.stop().await;
}

#[tokio::test]
async fn a_sigterm_ends_an_open_stream_and_the_process() {
    let (_dir, root, file) = fixture();
    let file = file.display().to_string();
    let server = ServerProcess::start(&root, &["--budgets-file", &file]).await;
    let client = server.client().await;
    let mut stream = watch(&client, &[], true).await;
    assert_eq!(next(&mut stream).await.budget_id, "quiet");
    assert_eq!(next(&mut stream).await.budget_id, "rocket");
    let started = Instant::now();
    server.terminate().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "exit took {took:?}");
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends with the process");
    let e = ended.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("shutting down"), "{}", e.message());
}
