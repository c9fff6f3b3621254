//! Budgets end to end: create, list and delete through the real server; every invalid
//! field named; budgets surviving a restart; a broken budgets file or state file
//! reported without stopping the server; and, on a generated export with a planted
//! overrun, BudgetStatus flagging the team FORECAST_OVER days before it is OVER, with
//! spend to date and daily averages equal to DuckDB's on the same files and the
//! forecast equal to the stated formula applied to DuckDB's numbers, exactly.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::LazyLock,
    time::{Duration, Instant},
};

use bedrock_attribution_client::{Client, proto};
use bedrock_attribution_server::demo::{CurLineItem, ExportWriter, PeriodLayout, SchemaOptions};
use chrono::{DateTime, Duration as Span, NaiveDate, TimeZone, Utc};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    common::{TestServer, exact, small_export},
    reference::reference_at,
};

const PAYER: &str = "111122223333";
const ACCT_ROCKET: &str = "210987654321";
const ACCT_QUIET: &str = "345678901234";
const ACCT_EUR: &str = "678901234567";
const ROLE: &str = "arn:aws:iam::210987654321:role/rocket";
const ALICE: &str = "arn:aws:sts::210987654321:assumed-role/rocket/alice@example.com";
const BOB: &str = "arn:aws:sts::210987654321:assumed-role/rocket/bob@example.com";
const EURO: &str = "arn:aws:iam::678901234567:user/euro";
const QUIET: &str = "arn:aws:iam::345678901234:user/quiet1";
const TEAM: &str = "iamPrincipal/team";
const NOVA: &str = "USE1-Nova2.0Lite-input-tokens";
const CLAUDE: &str = "USE1-Claude4.6Sonnet-output-tokens";

/// The budgets export: June and July 2026. Team `rocket` (two sessions of role
/// `rocket`, in USD) spends about 40 a day until July 9th and about 100 a day from
/// the 10th on, so a 1900 budget is reached on July 25th or 26th; one of its members
/// bills in EUR; the role itself calls a little, untagged; `quiet` spends about 5 a
/// day; each month has a tax line item without a caller in the rocket account.
static EXPORT: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("budgets-cur2");
    write_export(&root);
    (dir, root)
});

fn export() -> &'static Path {
    &EXPORT.1
}

fn write_export(root: &Path) {
    let w = ExportWriter::new(root, "budgets", "s3://b/cur/budgets");
    let mut rng = SmallRng::seed_from_u64(10);
    for (period, days) in [("2026-06", 30u32), ("2026-07", 31)] {
        let month: u32 = period[5..].parse().unwrap();
        let mut items = Vec::new();
        let mut n = 0;
        let mut line = |rng: &mut SmallRng,
                        caller: &str,
                        account: &str,
                        day: u32,
                        hour: u32,
                        daily: f64,
                        pieces: u32,
                        usage_type: &str,
                        team: Option<&str>| {
            // About daily / pieces each, with ten decimal places.
            let mean = daily / f64::from(pieces) * 1e10;
            let units = rng.random_range((mean * 0.5) as u64..(mean * 1.5) as u64);
            let start = Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap();
            n += 1;
            CurLineItem {
                usage_type: Some(usage_type.into()),
                principal: Some(caller.into()),
                currency: if account == ACCT_EUR { "EUR" } else { "USD" }.into(),
                tags: team
                    .map(|t| vec![(TEAM.to_owned(), t.to_owned())])
                    .unwrap_or_default(),
                ..CurLineItem::bedrock(
                    &format!("{period}-{n}"),
                    PAYER,
                    account,
                    start,
                    units as f64 / 1e10,
                )
            }
        };
        for day in 1..=days {
            let rocket = if month == 7 && day >= 10 { 100.0 } else { 40.0 };
            for hour in [2, 9, 14, 21] {
                for (who, usage_type) in [(ALICE, NOVA), (BOB, CLAUDE)] {
                    let daily = rocket / 2.0;
                    items.push(line(
                        &mut rng,
                        who,
                        ACCT_ROCKET,
                        day,
                        hour,
                        daily,
                        4,
                        usage_type,
                        Some("rocket"),
                    ));
                }
            }
            items.push(line(
                &mut rng,
                EURO,
                ACCT_EUR,
                day,
                11,
                10.0,
                1,
                NOVA,
                Some("rocket"),
            ));
            items.push(line(
                &mut rng,
                QUIET,
                ACCT_QUIET,
                day,
                12,
                5.0,
                1,
                NOVA,
                Some("quiet"),
            ));
            items.push(line(
                &mut rng,
                ROLE,
                ACCT_ROCKET,
                day,
                7,
                2.0,
                1,
                CLAUDE,
                None,
            ));
        }
        let start = Utc.with_ymd_and_hms(2026, month, 1, 0, 0, 0).unwrap();
        items.push(CurLineItem {
            line_item_type: "Tax".into(),
            usage_type: Some(String::new()),
            ..CurLineItem::bedrock(&format!("{period}-tax"), PAYER, ACCT_ROCKET, start, 15.25)
        });
        w.write_period(
            period,
            &[items],
            &PeriodLayout::Overwrite {
                leftover_empty_chunks: 0,
            },
            SchemaOptions::default(),
        )
        .unwrap();
    }
}

fn ts(s: &str) -> prost_types::Timestamp {
    let t = DateTime::parse_from_rfc3339(s).unwrap();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn usd(amount: &str) -> Option<proto::Money> {
    Some(proto::Money {
        currency_code: "USD".into(),
        exact: amount.into(),
        ..Default::default()
    })
}

fn create(name: &str, scope: proto::BudgetScope, amount: &str) -> proto::CreateBudgetRequest {
    proto::CreateBudgetRequest {
        name: name.into(),
        scope: Some(scope),
        monthly_amount: usd(amount),
        thresholds: Vec::new(),
    }
}

fn tag(value: &str) -> Option<proto::BudgetTag> {
    Some(proto::BudgetTag {
        key: TEAM.into(),
        value: value.into(),
    })
}

/// A change making a valid request invalid.
type Change = Box<dyn Fn(&mut proto::CreateBudgetRequest)>;

/// The one field violation of an INVALID_ARGUMENT status.
fn violation(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
    assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
    bad.field_violations[0].field.clone()
}

async fn serve(root: &Path, extra: &[String]) -> TestServer {
    TestServer::serve(&[format!("file://{}", root.display())], extra).await
}

pub(crate) fn flags(pairs: &[(&str, &Path)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(flag, path)| [(*flag).to_owned(), path.display().to_string()])
        .collect()
}

async fn list_ids(client: &Client) -> Vec<String> {
    let list = client
        .raw()
        .list_budgets(proto::ListBudgetsRequest {})
        .await
        .unwrap()
        .into_inner();
    list.budgets.into_iter().map(|b| b.id).collect()
}

async fn budget_problems(client: &Client) -> Vec<proto::Problem> {
    let status = client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();
    status
        .problems
        .into_iter()
        .filter(|p| p.source.starts_with("--budgets"))
        .collect()
}

/// Polls `check` for up to ten seconds (the reload interval of these tests is 50 ms).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn budgets_are_created_listed_deleted_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").join("budgets.json");
    let server = serve(small_export(), &flags(&[("--budgets-state", &state)])).await;
    let api = server.client.raw();

    let mut request = create(
        "Search team",
        proto::BudgetScope {
            tag: tag("search"),
            account_id: "210987654321".into(),
            ..Default::default()
        },
        "1500.25",
    );
    request.thresholds = vec!["1".into(), "0.5".into(), "0.90".into()];
    let created = api
        .clone()
        .create_budget(request.clone())
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert!(
        created.id.starts_with("b-") && created.id.len() == 18,
        "{}",
        created.id
    );
    assert_eq!(created.name, "Search team");
    assert_eq!(created.thresholds, ["0.5", "0.9", "1"]);
    assert_eq!(
        exact(created.monthly_amount.as_ref().unwrap()).to_string(),
        "1500.2500000000"
    );
    assert_eq!(created.origin, proto::BudgetOrigin::Api as i32);
    assert_eq!(created.owner, "", "no access control, no owner");
    assert!(created.created_at.is_some());
    // units/nanos are accepted when exact is empty, and must agree when both are sent.
    let mut by_units = create(
        "Nova",
        proto::BudgetScope {
            model: "Nova2.0Lite".into(),
            ..Default::default()
        },
        "",
    );
    by_units.monthly_amount = Some(proto::Money {
        currency_code: "EUR".into(),
        units: 12,
        nanos: 500_000_000,
        exact: String::new(),
    });
    let nova = api
        .clone()
        .create_budget(by_units.clone())
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert_eq!(nova.monthly_amount.unwrap().exact, "12.5000000000");
    let mut disagree = by_units.clone();
    disagree.monthly_amount.as_mut().unwrap().exact = "13".into();
    let e = api.clone().create_budget(disagree).await.unwrap_err();
    assert_eq!(violation(&e), "monthly_amount");

    let mut ids = vec![created.id.clone(), nova.id.clone()];
    ids.sort();
    assert_eq!(list_ids(&server.client).await, ids);
    let listed = api
        .clone()
        .list_budgets(proto::ListBudgetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.budgets.contains(&created));

    // Every invalid field, named.
    let cases: Vec<(&str, Change)> = vec![
        ("name", Box::new(|r| r.name = String::new())),
        ("name", Box::new(|r| r.name = "n".repeat(129))),
        ("scope", Box::new(|r| r.scope = None)),
        ("scope", Box::new(|r| r.scope = Some(Default::default()))),
        (
            "scope.tag.key",
            Box::new(|r| r.scope.as_mut().unwrap().tag.as_mut().unwrap().key = String::new()),
        ),
        (
            "scope.tag.key",
            Box::new(|r| {
                r.scope.as_mut().unwrap().tag.as_mut().unwrap().key =
                    format!("iamPrincipal/{}", "k".repeat(129))
            }),
        ),
        (
            "scope.tag.value",
            Box::new(|r| r.scope.as_mut().unwrap().tag.as_mut().unwrap().value = String::new()),
        ),
        (
            "scope.principal_arn",
            Box::new(|r| {
                r.scope.as_mut().unwrap().principal_arn = "arn:aws:iam::1234:user/x".into()
            }),
        ),
        (
            "scope.role_arn",
            Box::new(|r| r.scope.as_mut().unwrap().role_arn = ALICE.into()),
        ),
        (
            "scope.role_arn",
            Box::new(|r| r.scope.as_mut().unwrap().role_arn = "rocket".into()),
        ),
        (
            "scope.account_id",
            Box::new(|r| r.scope.as_mut().unwrap().account_id = "12345".into()),
        ),
        (
            "scope.model",
            Box::new(|r| r.scope.as_mut().unwrap().model = "m".repeat(257)),
        ),
        ("monthly_amount", Box::new(|r| r.monthly_amount = None)),
        (
            "monthly_amount.exact",
            Box::new(|r| r.monthly_amount.as_mut().unwrap().exact = "0".into()),
        ),
        (
            "monthly_amount.exact",
            Box::new(|r| r.monthly_amount.as_mut().unwrap().exact = "-5".into()),
        ),
        (
            "monthly_amount.exact",
            Box::new(|r| r.monthly_amount.as_mut().unwrap().exact = "1e3".into()),
        ),
        (
            "monthly_amount.exact",
            Box::new(|r| r.monthly_amount.as_mut().unwrap().exact = "1.00000000001".into()),
        ),
        (
            "monthly_amount.exact",
            Box::new(|r| r.monthly_amount.as_mut().unwrap().exact = "10000000000000001".into()),
        ),
        (
            "monthly_amount.currency_code",
            Box::new(|r| r.monthly_amount.as_mut().unwrap().currency_code = "usd".into()),
        ),
        (
            "monthly_amount.currency_code",
            Box::new(|r| r.monthly_amount.as_mut().unwrap().currency_code = String::new()),
        ),
        (
            "thresholds[0]",
            Box::new(|r| r.thresholds = vec!["0".into()]),
        ),
        (
            "thresholds[1]",
            Box::new(|r| r.thresholds = vec!["0.8".into(), "10.5".into()]),
        ),
        (
            "thresholds[0]",
            Box::new(|r| r.thresholds = vec!["80%".into()]),
        ),
        (
            "thresholds[0]",
            Box::new(|r| r.thresholds = vec!["0.12345".into()]),
        ),
        (
            "thresholds[1]",
            Box::new(|r| r.thresholds = vec!["1".into(), "1.0".into()]),
        ),
    ];
    for (field, change) in &cases {
        let mut bad = request.clone();
        change(&mut bad);
        let e = api.clone().create_budget(bad).await.unwrap_err();
        assert_eq!(violation(&e), *field, "{e:?}");
    }
    assert_eq!(
        list_ids(&server.client).await,
        ids,
        "nothing invalid was stored"
    );

    // Unknown ids, malformed ids.
    let e = api
        .clone()
        .delete_budget(proto::DeleteBudgetRequest { id: "b-00".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("ListBudgets"), "{}", e.message());
    let e = api
        .clone()
        .delete_budget(proto::DeleteBudgetRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(violation(&e), "id");
    let e = api
        .clone()
        .budget_status(proto::BudgetStatusRequest {
            budget_ids: vec![created.id.clone(), "b-nope".into()],
            month: "2026-07".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("budget_ids[1]"), "{}", e.message());
    for (month, as_of, field) in [
        ("2026-13", None, "month"),
        ("July", None, "month"),
        ("", Some("2026-07-20T00:30:00Z"), "as_of"),
        ("2026-06", Some("2026-07-20T00:00:00Z"), "as_of"),
    ] {
        let e = api
            .clone()
            .budget_status(proto::BudgetStatusRequest {
                month: month.into(),
                as_of: as_of.map(ts),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&e), field, "{month} {as_of:?}: {e:?}");
    }

    // The state file holds both, written whole; deleting one rewrites it.
    let stored: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(stored["budgets"].as_array().unwrap().len(), 2);
    api.clone()
        .delete_budget(proto::DeleteBudgetRequest {
            id: nova.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(list_ids(&server.client).await, [created.id.as_str()]);
    let e = api
        .clone()
        .delete_budget(proto::DeleteBudgetRequest {
            id: nova.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;

    // A restart on the same state file, with a temporary file that a crash mid-write
    // left behind: the budget is back, the leftover gone.
    let leftover = state.with_file_name(".budgets.json.tmp-999-00000000deadbeef");
    std::fs::write(&leftover, b"{\"budgets\": [{\"id\": \"half").unwrap();
    let server = serve(small_export(), &flags(&[("--budgets-state", &state)])).await;
    let after = server
        .client
        .raw()
        .list_budgets(proto::ListBudgetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after.budgets,
        std::slice::from_ref(&created),
        "the budget survives a restart unchanged"
    );
    assert!(
        !leftover.exists(),
        "the half-written temporary file is removed"
    );
    assert!(budget_problems(&server.client).await.is_empty());
    let mut names: Vec<String> = std::fs::read_dir(state.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The lock file that processes sharing the state file take stays.
    assert_eq!(names, ["budgets.json", "budgets.json.lock"]);
    server.stop().await;
}

#[tokio::test]
async fn without_a_state_file_creation_is_refused() {
    let server = serve(small_export(), &[]).await;
    let e = server
        .client
        .raw()
        .create_budget(create(
            "x",
            proto::BudgetScope {
                account_id: ACCT_ROCKET.into(),
                ..Default::default()
            },
            "10",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("--budgets-state"), "{}", e.message());
    server.stop().await;
}

/// `--no-api-budgets` (the Kubernetes manifests: replicas share no volume) refuses
/// creation and deletion with the reason, even with a cache directory, and writes
/// nothing there.
#[tokio::test]
async fn api_budgets_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let server = serve(
        small_export(),
        &[
            "--cache-dir".to_owned(),
            cache.display().to_string(),
            "--no-api-budgets".to_owned(),
        ],
    )
    .await;
    let e = server
        .client
        .raw()
        .create_budget(create(
            "x",
            proto::BudgetScope {
                account_id: ACCT_ROCKET.into(),
                ..Default::default()
            },
            "10",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("--no-api-budgets") && e.message().contains("--budgets-file"),
        "{}",
        e.message()
    );
    let e = server
        .client
        .raw()
        .delete_budget(proto::DeleteBudgetRequest {
            id: "b-0000000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(!cache.join("budgets.json").exists());
    server.stop().await;
}

/// The ids of the budgets in a state file.
fn state_ids(state: &Path) -> Vec<String> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    let mut ids: Vec<String> = doc["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn create_one(client: &Client, name: &str) -> String {
    client
        .raw()
        .create_budget(create(
            name,
            proto::BudgetScope {
                account_id: ACCT_ROCKET.into(),
                ..Default::default()
            },
            "10",
        ))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
        .into_inner()
        .budget
        .unwrap()
        .id
}

/// Two server processes on one `--budgets-state` file: creations interleaved one by
/// one and all at once, and a deletion through the process that did not create the
/// budget, lose nothing. Each write re-reads the file under its lock, so a process's
/// write keeps the other's budgets (without that, A's next write erased B's three);
/// each process sees the other's budgets at its own next write, and within its reload
/// interval otherwise; a third process started on the file lists them all.
#[tokio::test]
async fn two_processes_on_one_state_file_keep_every_acknowledged_budget() {
    use crate::process::ServerProcess;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("shared").join("budgets.json");
    let state_text = state.display().to_string();
    let extra = [
        "--budgets-state",
        &state_text,
        "--budgets-reload-interval",
        "100ms",
    ];
    let a = ServerProcess::start(small_export(), &extra).await;
    let b = ServerProcess::start(small_export(), &extra).await;
    let (ca, cb) = (a.client().await, b.client().await);

    let mut made = vec![create_one(&ca, "a1").await];
    for name in ["b1", "b2", "b3"] {
        made.push(create_one(&cb, name).await);
    }
    made.push(create_one(&ca, "a2").await);
    made.sort();
    assert_eq!(state_ids(&state), made, "A's second write kept B's three");
    // A's write read B's budgets: A lists them at once.
    assert_eq!(list_ids(&ca).await, made);
    // B sees A's second within its reload interval.
    eventually("B lists A's budgets", || {
        let (cb, made) = (cb.clone(), made.clone());
        async move { list_ids(&cb).await == made }
    })
    .await;

    // Ten creations on each process at once.
    let burst = |client: Client, who: &'static str| async move {
        let mut ids = Vec::new();
        let calls = (0..10).map(|i| {
            let client = client.clone();
            async move { create_one(&client, &format!("{who}{i}")).await }
        });
        for id in futures::future::join_all(calls).await {
            ids.push(id);
        }
        ids
    };
    let (from_a, from_b) = tokio::join!(burst(ca.clone(), "a"), burst(cb.clone(), "b"));
    made.extend(from_a);
    made.extend(from_b);
    made.sort();
    assert_eq!(made.len(), 25);
    assert_eq!(
        state_ids(&state),
        made,
        "every acknowledged budget is in the file"
    );

    // A deletes a budget B created (and A may not have reloaded yet).
    let gone = create_one(&cb, "b-late").await;
    ca.raw()
        .delete_budget(proto::DeleteBudgetRequest { id: gone.clone() })
        .await
        .unwrap_or_else(|e| panic!("delete through A: {e:?}"));
    assert_eq!(state_ids(&state), made);
    eventually("B drops the deleted budget", || {
        let (cb, made) = (cb.clone(), made.clone());
        async move { list_ids(&cb).await == made }
    })
    .await;

    // What a new process (a replaced pod on the same volume) starts with.
    let c = ServerProcess::start(small_export(), &extra).await;
    assert_eq!(list_ids(&c.client().await).await, made);
    for server in [a, b, c] {
        server.terminate().await;
    }
}

/// Callers of the quota test: one admin, two scoped leads (accounts; a caller prefix).
const QUOTA_CALLERS: [(&str, &str, bool, &str); 3] = [
    ("finance", "tok-finance-1", true, "null"),
    (
        "rocket-lead",
        "tok-rocket-2",
        false,
        r#"{"principal_prefixes": ["arn:aws:sts::210987654321:assumed-role/rock"]}"#,
    ),
    (
        "quiet-lead",
        "tok-quiet-3",
        false,
        r#"{"accounts": ["345678901234"]}"#,
    ),
];

/// One scoped caller cannot take every budget: past `--max-budgets-per-caller` its
/// creations are RESOURCE_EXHAUSTED naming its count and the limit, while the other
/// callers keep their share and admins are not counted; a deletion makes room again.
/// And a role outside a caller's principal prefixes is refused like a caller outside
/// them, each naming its field.
#[tokio::test]
async fn each_caller_has_a_budget_quota_and_roles_obey_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("budgets.json");
    let auth = auth_file_of(dir.path(), &QUOTA_CALLERS);
    let mut extra = flags(&[("--auth-file", &auth), ("--budgets-state", &state)]);
    extra.extend(["--max-budgets-per-caller".to_owned(), "2".to_owned()]);
    let server = serve(export(), &extra).await;
    let admin = as_caller(&server, QUOTA_CALLERS[0].1).await;
    let rocket = as_caller(&server, QUOTA_CALLERS[1].1).await;
    let quiet = as_caller(&server, QUOTA_CALLERS[2].1).await;
    let role = |arn: &str| proto::BudgetScope {
        role_arn: arn.into(),
        ..Default::default()
    };
    let by_rocket = |name: &str| create(name, role(ROLE), "100");
    let by_quiet = |name: &str| {
        create(
            name,
            proto::BudgetScope {
                account_id: ACCT_QUIET.into(),
                ..Default::default()
            },
            "100",
        )
    };

    let first = rocket.raw().create_budget(by_rocket("r1")).await.unwrap();
    rocket.raw().create_budget(by_rocket("r2")).await.unwrap();
    let e = rocket
        .raw()
        .create_budget(by_rocket("r3"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("rocket-lead already holds 2 budgets")
            && e.message().contains("(2, --max-budgets-per-caller)"),
        "{}",
        e.message()
    );
    // The others keep their share; admins are not counted against one.
    quiet.raw().create_budget(by_quiet("q1")).await.unwrap();
    for i in 0..3 {
        admin
            .raw()
            .create_budget(by_quiet(&format!("admin{i}")))
            .await
            .unwrap();
    }
    rocket
        .raw()
        .delete_budget(proto::DeleteBudgetRequest {
            id: first.into_inner().budget.unwrap().id,
        })
        .await
        .unwrap();
    rocket.raw().create_budget(by_rocket("r3")).await.unwrap();
    assert_eq!(list_ids(&rocket).await.len(), 2);
    assert_eq!(list_ids(&admin).await.len(), 6);

    // One rule for callers and roles: inside the prefixes when the role's sessions
    // are (`.../assumed-role/rocket/...` starts with `.../assumed-role/rock`).
    let outside_role = "arn:aws:iam::345678901234:role/quiet";
    let e = rocket
        .raw()
        .create_budget(create("q", role(outside_role), "1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("scope.role_arn") && e.message().contains("rocket-lead"),
        "{}",
        e.message()
    );
    let e = rocket
        .raw()
        .create_budget(create(
            "q",
            proto::BudgetScope {
                principal_arn: QUIET.into(),
                ..Default::default()
            },
            "1",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("scope.principal_arn"),
        "{}",
        e.message()
    );
    // The quota is held: the refusals created nothing.
    assert_eq!(list_ids(&rocket).await.len(), 2);
    server.stop().await;
}

const FILE: &str = r#"
budgets:
  - id: rocket-team
    name: Rocket team
    scope: {tag: {key: iamPrincipal/team, value: rocket}}
    amount: "1900"
    currency: USD
    thresholds: [0.5, 0.8, 1]
  - id: quiet
    name: Quiet
    scope: {principal_arn: "arn:aws:iam::345678901234:user/quiet1"}
    amount: 1000
    currency: USD
"#;

#[tokio::test]
async fn the_budgets_file_is_read_reloaded_and_kept_when_broken() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("budgets.yaml");
    let state = dir.path().join("budgets.json");
    // Broken at start: the server serves, reports it, and has no file budgets.
    std::fs::write(&file, "budgets: [{id: x, name: \"unterminated").unwrap();
    let mut args = flags(&[("--budgets-file", &file), ("--budgets-state", &state)]);
    args.extend(["--budgets-reload-interval".into(), "50ms".into()]);
    let server = serve(small_export(), &args).await;
    let c = &server.client;
    assert!(list_ids(c).await.is_empty());
    let problems = budget_problems(c).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].source, "--budgets-file");
    assert_eq!(problems[0].impact, "none");
    assert!(
        problems[0]
            .message
            .contains("budgets file refused, 0 earlier definitions kept"),
        "{}",
        problems[0].message
    );

    // Fixed: the definitions take effect without a restart, and the problem goes.
    std::fs::write(&file, FILE).unwrap();
    eventually("the fixed file", || async {
        list_ids(c).await == ["quiet", "rocket-team"]
    })
    .await;
    assert!(budget_problems(c).await.is_empty());
    let listed = c
        .raw()
        .list_budgets(proto::ListBudgetsRequest {})
        .await
        .unwrap()
        .into_inner();
    let rocket = &listed.budgets[1];
    assert_eq!(rocket.origin, proto::BudgetOrigin::File as i32);
    assert_eq!(rocket.thresholds, ["0.5", "0.8", "1"]);
    assert_eq!(
        rocket.monthly_amount.as_ref().unwrap().exact,
        "1900.0000000000"
    );
    // A budget of the file cannot be deleted through the API.
    let e = c
        .raw()
        .delete_budget(proto::DeleteBudgetRequest { id: "quiet".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("budgets file"), "{}", e.message());

    // Broken again (an invalid account): the two definitions stay, the problem names
    // the entry and field.
    std::fs::write(
        &file,
        FILE.replace("user/quiet1", "user/quiet1\"\n    extra: 1 #"),
    )
    .unwrap();
    eventually("the problem", || async {
        !budget_problems(c).await.is_empty()
    })
    .await;
    let problems = budget_problems(c).await;
    assert_eq!(problems[0].impact, "serving_last_good");
    assert!(
        problems[0].message.contains("2 earlier definitions kept"),
        "{}",
        problems[0].message
    );
    assert_eq!(list_ids(c).await, ["quiet", "rocket-team"]);
    std::fs::write(&file, FILE.replace("\"1900\"", "\"19OO\"")).unwrap();
    eventually("the new problem", || async {
        budget_problems(c)
            .await
            .first()
            .is_some_and(|p| p.message.contains("budgets[0] (\"rocket-team\"): amount:"))
    })
    .await;
    assert_eq!(list_ids(c).await, ["quiet", "rocket-team"]);
    server.stop().await;
}

#[tokio::test]
async fn a_damaged_state_file_is_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("budgets.json");
    let damaged = b"{\"budgets\": [{\"id\": \"b-1\", \"name\": ".to_vec();
    std::fs::write(&state, &damaged).unwrap();
    let mut args = flags(&[("--budgets-state", &state)]);
    args.extend(["--budgets-reload-interval".into(), "50ms".into()]);
    let server = serve(small_export(), &args).await;
    let c = &server.client;
    let problems = budget_problems(c).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].source, "--budgets-state");
    let e = c
        .raw()
        .create_budget(create(
            "x",
            proto::BudgetScope {
                account_id: ACCT_ROCKET.into(),
                ..Default::default()
            },
            "10",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        damaged,
        "the state file is kept as it was"
    );
    // Repaired by an admin: read again, the problem goes and creating works.
    std::fs::write(&state, "{\"budgets\": []}").unwrap();
    eventually("the repaired state file", || async {
        budget_problems(c).await.is_empty()
    })
    .await;
    let made = c
        .raw()
        .create_budget(create(
            "x",
            proto::BudgetScope {
                account_id: ACCT_ROCKET.into(),
                ..Default::default()
            },
            "10",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list_ids(c).await, [made.budget.unwrap().id]);
    server.stop().await;
}

#[tokio::test]
async fn more_budgets_than_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("budgets.yaml");
    let state = dir.path().join("budgets.json");
    let entries: Vec<Value> = (0..1000)
        .map(|i| json!({"id": format!("b{i}"), "name": format!("budget {i}"), "scope": {"account_id": ACCT_ROCKET}, "amount": "10", "currency": "USD"}))
        .collect();
    std::fs::write(&file, json!({ "budgets": entries }).to_string()).unwrap();
    let server = serve(
        small_export(),
        &flags(&[("--budgets-file", &file), ("--budgets-state", &state)]),
    )
    .await;
    assert_eq!(list_ids(&server.client).await.len(), 1000);
    let e = server
        .client
        .raw()
        .create_budget(create(
            "one more",
            proto::BudgetScope {
                account_id: ACCT_ROCKET.into(),
                ..Default::default()
            },
            "10",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    server.stop().await;
}

/// The reference spec of a budget's daily unblended spend over `[start, end)`.
pub(crate) fn reference_spec(
    id: &str,
    filter: Value,
    start: &str,
    end: &str,
    scope: Value,
) -> Value {
    json!({"id": id, "start": start, "end": end, "metric": "unblended", "granularity": "daily",
           "group_by": [], "filter": filter, "scope": scope})
}

/// DuckDB's daily spend in one currency, by day.
pub(crate) fn daily_of(rows: &Value, currency: &str) -> BTreeMap<NaiveDate, Decimal> {
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["keys"]["currency"] == currency)
        .map(|r| {
            let day = r["keys"]["period_start"].as_str().unwrap();
            let day = NaiveDate::parse_from_str(&day[..10], "%Y-%m-%d").unwrap();
            (day, r["cost"].as_str().unwrap().parse::<Decimal>().unwrap())
        })
        .collect()
}

/// The method of docs/budgets.md applied to DuckDB's daily sums: spend to date; the days
/// averaged (the seven before the last day with data, which is the day of the hour
/// before `as_of` here, as the data runs to the end of July); their mean, and spend
/// plus mean x remaining hours / 24, rounded half-even to ten places.
pub(crate) struct Expected {
    pub(crate) spend: Decimal,
    pub(crate) days: i64,
    pub(crate) average: Decimal,
    pub(crate) forecast: Decimal,
}

pub(crate) fn expected(
    daily: &BTreeMap<NaiveDate, Decimal>,
    month_start: NaiveDate,
    as_of: DateTime<Utc>,
) -> Expected {
    let spend: Decimal = daily.values().sum();
    let last_day = (as_of - Span::microseconds(1)).date_naive();
    let from = (last_day - Span::days(7)).max(month_start);
    let days = (last_day - from).num_days().max(0);
    let window: Decimal = daily.range(from..last_day).map(|(_, v)| *v).sum();
    let month_end =
        Utc.from_utc_datetime(&month_start.and_hms_opt(0, 0, 0).unwrap()) + Span::days(31);
    let hours = (month_end - as_of).num_hours();
    let round = |d: Decimal| d.round_dp_with_strategy(10, RoundingStrategy::MidpointNearestEven);
    let (average, forecast) = if days == 0 {
        (Decimal::ZERO, spend)
    } else {
        (
            round(window / Decimal::from(days)),
            spend + round(window * Decimal::from(hours) / Decimal::from(24 * days)),
        )
    };
    Expected {
        spend,
        days,
        average,
        forecast,
    }
}

#[tokio::test]
async fn status_flags_the_overrun_days_ahead_and_equals_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("budgets.json");
    let server = serve(export(), &flags(&[("--budgets-state", &state)])).await;
    let api = server.client.raw();
    let scope = |f: fn(&mut proto::BudgetScope)| {
        let mut s = proto::BudgetScope::default();
        f(&mut s);
        s
    };
    // (name, scope, amount, the reference filter)
    let budgets: Vec<(&str, proto::BudgetScope, &str, Value)> = vec![
        (
            "rocket team",
            scope(|s| s.tag = tag("rocket")),
            "1900",
            json!({"tags": [{"key": TEAM, "values": ["rocket"]}]}),
        ),
        (
            "rocket role",
            scope(|s| s.role_arn = ROLE.into()),
            "5000",
            json!({"roles": [ROLE]}),
        ),
        (
            "quiet",
            scope(|s| s.principal_arn = QUIET.into()),
            "1000",
            json!({"principals": [QUIET]}),
        ),
        (
            "rocket account",
            scope(|s| s.account_id = ACCT_ROCKET.into()),
            "2500",
            json!({"account_ids": [ACCT_ROCKET]}),
        ),
        (
            "rocket account on nova",
            scope(|s| {
                s.account_id = ACCT_ROCKET.into();
                s.model = "Nova2.0Lite".into();
            }),
            "1000.5",
            json!({"account_ids": [ACCT_ROCKET], "models": ["Nova2.0Lite"]}),
        ),
        (
            "alice in rocket",
            scope(|s| {
                s.principal_arn = ALICE.into();
                s.role_arn = ROLE.into();
                s.tag = tag("rocket");
            }),
            "800",
            json!({"principals": [ALICE], "roles": [ROLE], "tags": [{"key": TEAM, "values": ["rocket"]}]}),
        ),
        (
            "quiet is not in rocket",
            scope(|s| {
                s.principal_arn = QUIET.into();
                s.role_arn = ROLE.into();
            }),
            "10",
            json!({"principals": [QUIET], "roles": [ROLE]}),
        ),
        (
            "nobody's role",
            scope(|s| s.role_arn = "arn:aws:iam::210987654321:role/ghost".into()),
            "10",
            json!({"roles": ["arn:aws:iam::210987654321:role/ghost"]}),
        ),
    ];
    let mut ids = BTreeMap::new();
    for (name, scope, amount, _) in &budgets {
        let mut request = create(name, scope.clone(), amount);
        request.thresholds = vec!["0.5".into(), "0.8".into(), "1".into()];
        let b = api
            .clone()
            .create_budget(request)
            .await
            .unwrap()
            .into_inner()
            .budget
            .unwrap();
        ids.insert(*name, b.id);
    }

    // As of three dates of July; the data runs to 2026-07-31 23:00.
    let july = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
    let dates = [
        "2026-07-08T00:00:00Z",
        "2026-07-20T00:00:00Z",
        "2026-07-28T00:00:00Z",
        "2026-07-03T05:00:00Z",
    ];
    let mut specs = Vec::new();
    for (i, date) in dates.iter().enumerate() {
        for (j, (_, _, _, filter)) in budgets.iter().enumerate() {
            specs.push(reference_spec(
                &format!("{i}-{j}"),
                filter.clone(),
                "2026-07-01T00:00:00Z",
                date,
                json!({}),
            ));
        }
    }
    let duck = reference_at(export(), &specs);
    let mut states = BTreeMap::new();
    for (i, date) in dates.iter().enumerate() {
        let answer = api
            .clone()
            .budget_status(proto::BudgetStatusRequest {
                as_of: Some(ts(date)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.month, "2026-07");
        assert_eq!(answer.as_of, Some(ts(date)));
        assert_eq!(answer.newest_usage_hour, Some(ts("2026-07-31T21:00:00Z")));
        assert_eq!(answer.budgets.len(), budgets.len());
        let as_of: DateTime<Utc> = date.parse().unwrap();
        for (j, (name, _, amount, _)) in budgets.iter().enumerate() {
            let report = answer
                .budgets
                .iter()
                .find(|r| r.budget.as_ref().unwrap().id == ids[name])
                .unwrap();
            let theirs = &duck["results"][format!("{i}-{j}")];
            let usd = daily_of(theirs, "USD");
            let e = expected(&usd, july, as_of);
            let inputs = report.forecast_inputs.as_ref().unwrap();
            let what = format!("{name} as of {date}");
            assert_eq!(
                exact(report.spend_to_date.as_ref().unwrap()),
                e.spend,
                "{what}"
            );
            assert_eq!(i64::from(inputs.days_averaged), e.days, "{what}");
            assert_eq!(
                exact(inputs.daily_average.as_ref().unwrap()),
                e.average,
                "{what}"
            );
            assert_eq!(
                exact(report.forecast.as_ref().unwrap()),
                e.forecast,
                "{what}"
            );
            assert_eq!(
                inputs.remaining_hours,
                (Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap() - as_of).num_hours(),
                "{what}"
            );
            let amount: Decimal = amount.parse().unwrap();
            let state = if e.spend >= amount {
                proto::BudgetState::Over
            } else if e.forecast >= amount {
                proto::BudgetState::ForecastOver
            } else {
                proto::BudgetState::Ok
            };
            assert_eq!(report.status, state as i32, "{what}");
            // The EUR spend of the team is not counted, and said so.
            let eur = daily_of(theirs, "EUR");
            assert_eq!(
                report.notes.iter().any(|n| n.contains("EUR")),
                eur.values().any(|v| !v.is_zero()),
                "{what}: {:?}",
                report.notes
            );
            states.insert((*name, i), state);
        }
    }
    use proto::BudgetState::{ForecastOver, Ok as Fine, Over};
    // The planted overrun: fine on the 8th, flagged on the 20th, over on the 28th.
    assert_eq!(
        [0, 1, 2].map(|i| states[&("rocket team", i)]),
        [Fine, ForecastOver, Over]
    );
    assert_eq!([0, 1, 2].map(|i| states[&("quiet", i)]), [Fine, Fine, Fine]);
    // The cases are not vacuous: spend where there should be, none where not.
    let on_20th = api
        .clone()
        .budget_status(proto::BudgetStatusRequest {
            as_of: Some(ts("2026-07-20T00:00:00Z")),
            budget_ids: vec![
                ids["rocket team"].clone(),
                ids["quiet is not in rocket"].clone(),
                ids["nobody's role"].clone(),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let by_name = |name: &str| {
        on_20th
            .budgets
            .iter()
            .find(|r| r.budget.as_ref().unwrap().id == ids[name])
            .unwrap()
    };
    assert_eq!(on_20th.budgets.len(), 3);
    for name in ["quiet is not in rocket", "nobody's role"] {
        let r = by_name(name);
        assert_eq!(r.spend_to_date.as_ref().unwrap().exact, "0.0000000000");
        assert!(
            r.notes.iter().any(|n| n.contains("matches no caller")),
            "{:?}",
            r.notes
        );
    }
    let team = on_20th
        .budgets
        .iter()
        .find(|r| r.budget.as_ref().unwrap().id == ids["rocket team"])
        .unwrap();
    let inputs = team.forecast_inputs.as_ref().unwrap();
    assert_eq!(inputs.days_averaged, 7);
    assert_eq!(inputs.averaged_from, Some(ts("2026-07-12T00:00:00Z")));
    assert_eq!(inputs.averaged_to, Some(ts("2026-07-19T00:00:00Z")));
    assert_eq!(inputs.remaining_hours, 288);
    assert_eq!(inputs.remaining_days, "12.0000000000");
    assert_eq!(team.thresholds_crossed, ["0.5"]);
    assert_eq!(team.thresholds_forecast, ["0.5", "0.8", "1"]);

    // Defaults: as of the end of the newest usage hour; June given as a month is
    // complete (as of its end, nothing remaining).
    let latest = api
        .clone()
        .budget_status(proto::BudgetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.as_of, Some(ts("2026-07-31T22:00:00Z")));
    assert_eq!(latest.month, "2026-07");
    let june = api
        .clone()
        .budget_status(proto::BudgetStatusRequest {
            month: "2026-06".into(),
            budget_ids: vec![ids["rocket team"].clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(june.as_of, Some(ts("2026-07-01T00:00:00Z")));
    let r = &june.budgets[0];
    assert_eq!(r.forecast_inputs.as_ref().unwrap().remaining_hours, 0);
    assert_eq!(r.forecast, r.spend_to_date);
    server.stop().await;
}

/// Auth file callers: (name, token, admin, scope).
pub(crate) const CALLERS: [(&str, &str, bool, &str); 3] = [
    ("finance", "tok-finance-1", true, "null"),
    (
        "rocket-lead",
        "tok-rocket-2",
        false,
        r#"{"accounts": ["210987654321", "678901234567"]}"#,
    ),
    (
        "quiet-lead",
        "tok-quiet-3",
        false,
        r#"{"tags": {"iamPrincipal/team": ["quiet"]}}"#,
    ),
];

pub(crate) fn auth_file(dir: &Path) -> PathBuf {
    auth_file_of(dir, &CALLERS)
}

/// A callers file of `callers` (name, token, admin, scope) in `dir`.
pub(crate) fn auth_file_of(dir: &Path, callers: &[(&str, &str, bool, &str)]) -> PathBuf {
    let callers: Vec<Value> = callers
        .iter()
        .map(|(name, token, admin, scope)| {
            let hash: String = Sha256::digest(token.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let mut c = json!({"name": name, "token_sha256": hash, "admin": admin});
            let scope: Value = serde_json::from_str(scope).unwrap();
            if !scope.is_null() {
                c["scope"] = scope;
            }
            c
        })
        .collect();
    let path = dir.join("callers.json");
    std::fs::write(&path, json!({ "callers": callers }).to_string()).unwrap();
    path
}

pub(crate) async fn as_caller(server: &TestServer, token: &str) -> Client {
    Client::builder(format!("http://{}", server.handle.addr()))
        .bearer_token(token)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn scoped_callers_see_and_spend_only_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("budgets.json");
    let file = dir.path().join("budgets.yaml");
    std::fs::write(&file, FILE).unwrap();
    let auth = auth_file(dir.path());
    let server = serve(
        export(),
        &flags(&[
            ("--auth-file", &auth),
            ("--budgets-state", &state),
            ("--budgets-file", &file),
        ]),
    )
    .await;
    let admin = as_caller(&server, CALLERS[0].1).await;
    let rocket = as_caller(&server, CALLERS[1].1).await;
    let quiet = as_caller(&server, CALLERS[2].1).await;

    // Each scoped caller creates a budget within its scope; each owns its own.
    let team = || {
        create(
            "team",
            proto::BudgetScope {
                tag: tag("rocket"),
                ..Default::default()
            },
            "100",
        )
    };
    let mine = rocket
        .raw()
        .create_budget(team())
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert_eq!(mine.owner, "rocket-lead");
    let account = create(
        "rocket account",
        proto::BudgetScope {
            account_id: ACCT_ROCKET.into(),
            ..Default::default()
        },
        "100",
    );
    let theirs = quiet
        .raw()
        .create_budget(account)
        .await
        .unwrap()
        .into_inner()
        .budget
        .unwrap();
    assert_eq!(theirs.owner, "quiet-lead");
    let e = quiet.raw().create_budget(team()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("scope.tag"), "{}", e.message());
    // A budget reaching outside the caller's scope is refused.
    let e = rocket
        .raw()
        .create_budget(create(
            "q",
            proto::BudgetScope {
                account_id: ACCT_QUIET.into(),
                ..Default::default()
            },
            "1",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("scope.account_id"), "{}", e.message());

    // Visibility: admins see all (file budgets included), others their own.
    let mut all = vec![
        mine.id.clone(),
        theirs.id.clone(),
        "quiet".into(),
        "rocket-team".into(),
    ];
    all.sort();
    assert_eq!(list_ids(&admin).await, all);
    assert_eq!(list_ids(&rocket).await, [mine.id.as_str()]);
    assert_eq!(list_ids(&quiet).await, [theirs.id.as_str()]);
    for (who, id) in [
        (&rocket, &theirs.id),
        (&rocket, &"rocket-team".to_owned()),
        (&quiet, &mine.id),
    ] {
        let e = who
            .raw()
            .delete_budget(proto::DeleteBudgetRequest { id: id.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{id}: {e:?}");
        let e = who
            .raw()
            .budget_status(proto::BudgetStatusRequest {
                budget_ids: vec![id.clone()],
                month: "2026-07".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{id}: {e:?}");
    }

    // Spend within each caller's scope, equal to DuckDB with the scope as WHERE: the
    // rocket lead sees its accounts' part of the team (not the EUR, which a USD budget
    // does not count), the quiet lead none of the rocket account's spend, an admin all.
    let date = "2026-07-20T00:00:00Z";
    let (start, team_filter) = (
        "2026-07-01T00:00:00Z",
        json!({"tags": [{"key": TEAM, "values": ["rocket"]}]}),
    );
    let account_filter = json!({"account_ids": [ACCT_ROCKET]});
    let duck = reference_at(
        export(),
        &[
            reference_spec(
                "rocket",
                team_filter,
                start,
                date,
                json!({"accounts": [ACCT_ROCKET, ACCT_EUR]}),
            ),
            reference_spec(
                "quiet",
                account_filter.clone(),
                start,
                date,
                json!({"tags": {TEAM: ["quiet"]}}),
            ),
            reference_spec("admin", account_filter, start, date, json!({})),
        ],
    );
    let july = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
    let status = |client: &Client| {
        let client = client.clone();
        async move {
            client
                .raw()
                .budget_status(proto::BudgetStatusRequest {
                    as_of: Some(ts(date)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    for (client, id, key) in [
        (&rocket, &mine.id, "rocket"),
        (&quiet, &theirs.id, "quiet"),
        (&admin, &theirs.id, "admin"),
    ] {
        let answer = status(client).await;
        let r = answer
            .budgets
            .iter()
            .find(|r| &r.budget.as_ref().unwrap().id == id)
            .unwrap();
        let e = expected(
            &daily_of(&duck["results"][key], "USD"),
            july,
            date.parse().unwrap(),
        );
        assert_eq!(exact(r.spend_to_date.as_ref().unwrap()), e.spend, "{key}");
        assert_eq!(exact(r.forecast.as_ref().unwrap()), e.forecast, "{key}");
        assert_eq!(
            e.spend.is_zero(),
            key == "quiet",
            "{key}: the case tests something"
        );
    }
    assert_eq!(status(&rocket).await.budgets.len(), 1);
    assert_eq!(status(&quiet).await.budgets.len(), 1);
    assert_eq!(status(&admin).await.budgets.len(), 4);

    rocket
        .raw()
        .delete_budget(proto::DeleteBudgetRequest {
            id: mine.id.clone(),
        })
        .await
        .unwrap();
    assert!(list_ids(&rocket).await.is_empty());
    // DataStatus stays an admin's.
    let e = rocket
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("admin"), "{e}");
    server.stop().await;
}
