//! Random and mutated requests to every RPC of a running server (of WatchBudgets, the
//! start of its stream): each answer is OK or one of the documented codes with a message,
//! never INTERNAL or UNKNOWN, and an OK answer that fits in one page still reconciles (its
//! rows add up to its totals). Garbage bytes in place of a request are INVALID_ARGUMENT.
//! The server answers health after all of it.
//!
//! `FUZZ_REQUESTS` (default 300) and `FUZZ_SEED` (default fixed, so CI repeats itself)
//! make longer or other runs; a failure names the seed and request number.

use std::time::Duration;

use bedrock_attribution_client::proto;
use prost::bytes::{Buf, BufMut};
use rand::{Rng, SeedableRng, rngs::SmallRng, seq::IndexedRandom};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::common::{TestServer, small_export, sum_rows, totals};

/// Codes a caller may be answered with for a request it made up.
const DOCUMENTED: [Code; 5] = [
    Code::InvalidArgument,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
    Code::DeadlineExceeded,
];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

/// Strings that parsers, SQL and logs could trip on, and real values from the data.
struct Vocabulary {
    real: Vec<String>,
}

impl Vocabulary {
    fn string(&self, rng: &mut SmallRng, sane: bool) -> String {
        if sane {
            return match rng.random_range(0..3) {
                0 => String::new(),
                _ => self.real.choose(rng).cloned().unwrap_or_default(),
            };
        }
        match rng.random_range(0..12) {
            0 => String::new(),
            1 => "' OR 1=1; DROP TABLE cur; --".into(),
            2 => "a\0b".into(),
            3 => "\"quoted\" \\ back".into(),
            4 => "é🦀\u{202e}".into(),
            5 => "x".repeat(rng.random_range(200..3000)),
            6 => "arn:aws:sts::123456789012:assumed-role/r/s".into(),
            7 => "arn:aws:iam::12345:role/short".into(),
            8 => format!("{:012}", rng.random_range(0u64..1_000_000_000_000)),
            9 => (0..rng.random_range(0..20))
                .map(|_| char::from(rng.random_range(32u8..127)))
                .collect(),
            _ => self.real.choose(rng).cloned().unwrap_or_default(),
        }
    }

    /// For a field that a well-formed request leaves empty here (a tag key without
    /// DIMENSION_TAG): empty when `sane`, else anything.
    fn unless_sane(&self, rng: &mut SmallRng, sane: bool) -> String {
        if sane {
            String::new()
        } else {
            self.string(rng, false)
        }
    }

    fn strings(&self, rng: &mut SmallRng, sane: bool) -> Vec<String> {
        match rng.random_range(0..10) {
            0..=5 => Vec::new(),
            6..=8 => (0..rng.random_range(1..4))
                .map(|_| self.string(rng, sane))
                .collect(),
            _ if sane => Vec::new(),
            _ => vec!["111111111111".into(); rng.random_range(990..1010)],
        }
    }
}

fn timestamp(rng: &mut SmallRng) -> Option<prost_types::Timestamp> {
    // 2026-01-01 .. 2026-10-01, hour-aligned mostly; sometimes absurd.
    let base = BASE;
    let seconds = match rng.random_range(0..10) {
        0 => rng.random(),
        1 => -rng.random_range(0..100_000_000_000i64),
        2..=4 => base + rng.random_range(0..273 * 86_400),
        _ => base + 3600 * rng.random_range(0..273 * 24),
    };
    let nanos = match rng.random_range(0..12) {
        0 => rng.random(),
        1 => 1_000_000_000 + rng.random_range(0..1000),
        2 => rng.random_range(0..1_000_000_000),
        _ => 0,
    };
    (rng.random_range(0..20) != 0).then_some(prost_types::Timestamp { seconds, nanos })
}

/// 2026-01-01T00:00:00Z.
const BASE: i64 = 1_767_225_600;

fn time_range(rng: &mut SmallRng, sane: bool) -> Option<proto::TimeRange> {
    if sane {
        // Whole hours within the data's months, start before end.
        let a = rng.random_range(0..273 * 24);
        let b = rng.random_range(a + 1..=273 * 24);
        let at = |h: i64| {
            Some(prost_types::Timestamp {
                seconds: BASE + 3600 * h,
                nanos: 0,
            })
        };
        return Some(proto::TimeRange {
            start: at(a),
            end: at(b),
        });
    }
    (rng.random_range(0..20) != 0).then(|| proto::TimeRange {
        start: timestamp(rng),
        end: timestamp(rng),
    })
}

fn small_enum(rng: &mut SmallRng, known: i32, sane: bool) -> i32 {
    if sane {
        return rng.random_range(0..=known);
    }
    match rng.random_range(0..10) {
        0 => rng.random(),
        1 => -1,
        _ => rng.random_range(0..=known),
    }
}

fn filter(rng: &mut SmallRng, v: &Vocabulary, sane: bool) -> Option<proto::Filter> {
    if sane {
        // Callers and tag values of the data; other fields would mostly be refused.
        return rng.random_bool(0.5).then(|| proto::Filter {
            principals: v.strings(rng, true),
            tags: (0..rng.random_range(0..2))
                .map(|_| proto::TagFilter {
                    key: "iamPrincipal/team".into(),
                    values: v.strings(rng, true),
                    untagged: rng.random(),
                })
                .collect(),
            ..Default::default()
        });
    }
    (rng.random_bool(0.5)).then(|| proto::Filter {
        account_ids: v.strings(rng, false),
        principals: v.strings(rng, false),
        models: v.strings(rng, false),
        regions: v.strings(rng, false),
        line_item_types: v.strings(rng, false),
        tags: (0..rng.random_range(0..3))
            .map(|_| proto::TagFilter {
                key: v.string(rng, false),
                values: v.strings(rng, false),
                untagged: rng.random(),
            })
            .collect(),
        payer_account_ids: v.strings(rng, false),
        usage_categories: (0..rng.random_range(0..3))
            .map(|_| small_enum(rng, 10, false))
            .collect(),
        routings: (0..rng.random_range(0..3))
            .map(|_| small_enum(rng, 3, false))
            .collect(),
    })
}

fn page_size(rng: &mut SmallRng, sane: bool) -> i32 {
    match rng.random_range(0..8) {
        0 if !sane => rng.random(),
        1 => rng.random_range(1..5),
        _ => 0,
    }
}

/// A page token: none, garbage, or one the server issued (possibly for another request)
/// with one character changed.
fn page_token(rng: &mut SmallRng, issued: &[String]) -> String {
    match rng.random_range(0..10) {
        0 => "AAAA".repeat(rng.random_range(1..40)),
        1 | 2 => match issued.choose(rng) {
            Some(t) if rng.random_bool(0.5) => t.clone(),
            Some(t) => {
                let mut bytes = t.clone().into_bytes();
                let i = rng.random_range(0..bytes.len());
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(bytes).unwrap()
            }
            None => String::new(),
        },
        _ => String::new(),
    }
}

fn dimensions(rng: &mut SmallRng, sane: bool) -> Vec<i32> {
    let mut d: Vec<i32> = (0..rng.random_range(0..3))
        .map(|_| small_enum(rng, 8, sane))
        .collect();
    if sane {
        // DIMENSION_TAG needs a tag key of its own; a dimension listed twice is refused.
        d.retain(|x| *x != 0 && *x != 6);
        d.sort_unstable();
        d.dedup();
    }
    d
}

/// The fields the three grouped questions share, drawn in their field order.
struct Question {
    time_range: Option<proto::TimeRange>,
    filter: Option<proto::Filter>,
    cost_metric: i32,
    granularity: i32,
    page_size: i32,
}

impl Question {
    fn draw(rng: &mut SmallRng, v: &Vocabulary, sane: bool) -> Self {
        Self {
            time_range: time_range(rng, sane),
            filter: filter(rng, v, sane),
            cost_metric: small_enum(rng, 3, sane),
            granularity: small_enum(rng, 3, sane),
            page_size: page_size(rng, sane),
        }
    }
}

/// Sends raw bytes as the request message and ignores the answer's body.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = ();
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Checks one answer and counts its code in `seen`.
fn judge<T>(
    what: &str,
    seen: &mut std::collections::BTreeMap<String, usize>,
    answer: Result<tonic::Response<T>, Status>,
    check: impl FnOnce(&T) -> String,
) {
    let code = answer.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
    *seen.entry(format!("{code:?}")).or_default() += 1;
    match answer {
        Ok(r) => {
            let problem = check(r.get_ref());
            assert!(problem.is_empty(), "{what}: {problem}");
        }
        Err(s) => {
            assert!(
                DOCUMENTED.contains(&s.code()),
                "{what}: undocumented code {:?}: {}",
                s.code(),
                s.message()
            );
            assert!(
                !s.message().is_empty(),
                "{what}: {:?} without a message",
                s.code()
            );
            assert!(
                !s.message().contains(small_export().to_str().unwrap()),
                "{what}: the message shows a server path: {}",
                s.message()
            );
        }
    }
}

/// Rows add up to totals when the whole answer is on this page.
fn reconciles(rows: &[proto::Row], totals_: &[proto::Money], next: &str) -> String {
    if !next.is_empty() || rows.iter().any(|r| r.cost.is_none()) {
        return String::new();
    }
    let (sum, total) = (sum_rows(rows), totals(totals_));
    if sum == total {
        String::new()
    } else {
        format!("rows add up to {sum:?}, totals say {total:?}")
    }
}

#[tokio::test]
async fn random_requests_get_documented_answers() {
    let count = env_number("FUZZ_REQUESTS", 300);
    let seed = env_number("FUZZ_SEED", 190_731_757);
    let server = TestServer::start(&[small_export()]).await;
    let mut api = server.client.raw();

    // Real values to mix in, so that some requests pass validation and run.
    let all = common_range();
    let mut real = Vec::new();
    let principals = api
        .list_principals(proto::ListPrincipalsRequest {
            time_range: all,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    real.extend(
        principals
            .principals
            .iter()
            .filter_map(|p| p.principal.as_ref().map(|p| p.arn.clone())),
    );
    let keys = api
        .list_tag_keys(proto::ListTagKeysRequest {
            time_range: all,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    real.extend(keys.tag_keys.iter().map(|k| k.key.clone()));
    real.extend(["iamPrincipal/team".into(), "data-science".into()]);
    let v = Vocabulary { real };

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut issued: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for n in 0..count {
        let what = format!("seed {seed}, request {n}");
        // Half the requests are well-formed, so that answers get computed and checked.
        let sane = rng.random_bool(0.5);
        let token = if sane {
            String::new()
        } else {
            page_token(&mut rng, &issued)
        };
        match rng.random_range(0..12) {
            0 => {
                let q = Question::draw(&mut rng, &v, sane);
                let r = proto::CostByPrincipalRequest {
                    time_range: q.time_range,
                    filter: q.filter,
                    cost_metric: q.cost_metric,
                    granularity: q.granularity,
                    page_size: q.page_size,
                    page_token: token,
                    grouping: small_enum(&mut rng, 2, sane),
                    also_group_by: dimensions(&mut rng, sane),
                    also_group_by_tag_key: v.unless_sane(&mut rng, sane),
                    allocation: small_enum(&mut rng, 1, sane),
                };
                judge(&what, &mut seen, api.cost_by_principal(r).await, |a| {
                    issued.push(a.next_page_token.clone());
                    reconciles(&a.rows, &a.totals, &a.next_page_token)
                });
            }
            1 => {
                let q = Question::draw(&mut rng, &v, sane);
                let r = proto::CostByTagRequest {
                    time_range: q.time_range,
                    filter: q.filter,
                    cost_metric: q.cost_metric,
                    granularity: q.granularity,
                    page_size: q.page_size,
                    page_token: token,
                    tag_key: if sane {
                        "iamPrincipal/team".into()
                    } else {
                        v.string(&mut rng, false)
                    },
                    also_group_by: dimensions(&mut rng, sane),
                    also_group_by_tag_key: v.unless_sane(&mut rng, sane),
                    principal_grouping: small_enum(&mut rng, 2, sane),
                    allocation: small_enum(&mut rng, 1, sane),
                };
                judge(&what, &mut seen, api.cost_by_tag(r).await, |a| {
                    issued.push(a.next_page_token.clone());
                    reconciles(&a.rows, &a.totals, &a.next_page_token)
                });
            }
            2 => {
                let q = Question::draw(&mut rng, &v, sane);
                let r = proto::TokenUsageRequest {
                    time_range: q.time_range,
                    filter: q.filter,
                    cost_metric: q.cost_metric,
                    granularity: q.granularity,
                    page_size: q.page_size,
                    page_token: token,
                    group_by: dimensions(&mut rng, sane),
                    tag_key: v.unless_sane(&mut rng, sane),
                    principal_grouping: small_enum(&mut rng, 2, sane),
                    efficiency: rng.random(),
                };
                judge(&what, &mut seen, api.token_usage(r).await, |a| {
                    issued.push(a.next_page_token.clone());
                    String::new()
                });
            }
            3 => {
                let r = proto::ListPrincipalsRequest {
                    time_range: time_range(&mut rng, sane),
                    filter: filter(&mut rng, &v, sane),
                    grouping: small_enum(&mut rng, 2, sane),
                    page_size: page_size(&mut rng, sane),
                    page_token: token,
                };
                judge(&what, &mut seen, api.list_principals(r).await, |a| {
                    issued.push(a.next_page_token.clone());
                    String::new()
                });
            }
            4 => {
                let r = proto::ListTagKeysRequest {
                    time_range: time_range(&mut rng, sane),
                    filter: filter(&mut rng, &v, sane),
                    key_prefix: v.string(&mut rng, sane),
                    page_size: page_size(&mut rng, sane),
                    page_token: token,
                };
                judge(&what, &mut seen, api.list_tag_keys(r).await, |_| {
                    String::new()
                });
            }
            5 => {
                let r = proto::ListModelsRequest {
                    time_range: time_range(&mut rng, sane),
                    filter: filter(&mut rng, &v, sane),
                    page_size: page_size(&mut rng, sane),
                    page_token: token,
                };
                judge(&what, &mut seen, api.list_models(r).await, |_| {
                    String::new()
                });
            }
            6 => {
                let r = proto::SpendAnomaliesRequest {
                    time_range: time_range(&mut rng, sane),
                    filter: filter(&mut rng, &v, sane),
                    cost_metric: small_enum(&mut rng, 3, sane),
                    page_size: page_size(&mut rng, sane),
                    page_token: token,
                    dimension: small_enum(&mut rng, 8, sane),
                    principal_grouping: small_enum(&mut rng, 2, sane),
                    tag_key: v.string(&mut rng, sane),
                    baseline_days: rng.random_range(-3..60),
                    min_factor: [
                        String::new(),
                        "3".into(),
                        "-1".into(),
                        v.string(&mut rng, sane),
                    ]
                    .choose(&mut rng)
                    .cloned()
                    .unwrap(),
                    min_robust_z: rng.random_bool(0.3).then(|| rng.random_range(-5.0..50.0)),
                    min_excess: [
                        String::new(),
                        "10.5".into(),
                        "1e400".into(),
                        v.string(&mut rng, sane),
                    ]
                    .choose(&mut rng)
                    .cloned()
                    .unwrap(),
                };
                judge(&what, &mut seen, api.spend_anomalies(r).await, |_| {
                    String::new()
                });
            }
            7 => {
                let r = proto::BudgetStatusRequest {
                    month: [
                        "".into(),
                        "2026-05".into(),
                        "2026-13".into(),
                        v.string(&mut rng, sane),
                    ]
                    .choose(&mut rng)
                    .cloned()
                    .unwrap(),
                    as_of: timestamp(&mut rng),
                    budget_ids: v.strings(&mut rng, sane),
                };
                judge(&what, &mut seen, api.budget_status(r).await, |_| {
                    String::new()
                });
            }
            8 => {
                let scope = proto::BudgetScope {
                    tag: rng.random_bool(0.5).then(|| proto::BudgetTag {
                        key: v.string(&mut rng, sane),
                        value: v.string(&mut rng, sane),
                    }),
                    principal_arn: v.string(&mut rng, sane),
                    role_arn: v.string(&mut rng, sane),
                    account_id: v.string(&mut rng, sane),
                    model: v.string(&mut rng, sane),
                };
                let r = proto::CreateBudgetRequest {
                    name: v.string(&mut rng, sane),
                    scope: rng.random_bool(0.8).then_some(scope),
                    monthly_amount: rng.random_bool(0.8).then(|| proto::Money {
                        currency_code: ["USD", "usd", "", "XXX"]
                            .choose(&mut rng)
                            .unwrap()
                            .to_string(),
                        units: rng.random_range(-10..100_000),
                        nanos: small_enum(&mut rng, 999_999_999, sane),
                        exact: ["", "100", "-1", "1.00000000001", "nan"]
                            .choose(&mut rng)
                            .unwrap()
                            .to_string(),
                    }),
                    thresholds: v.strings(&mut rng, sane),
                };
                judge(&what, &mut seen, api.create_budget(r).await, |_| {
                    String::new()
                });
            }
            9 => {
                let r = proto::DeleteBudgetRequest {
                    id: v.string(&mut rng, sane),
                };
                judge(&what, &mut seen, api.delete_budget(r).await, |_| {
                    String::new()
                });
            }
            10 => {
                let r = proto::WatchBudgetsRequest {
                    budget_ids: v.strings(&mut rng, sane),
                    send_initial: true,
                };
                match api.watch_budgets(r).await {
                    Ok(response) => {
                        *seen.entry("Ok".to_owned()).or_default() += 1;
                        // The initial statuses (none without budgets) or an error; the
                        // stream is then dropped, which ends the call.
                        let mut stream = response.into_inner();
                        if let Ok(Err(status)) =
                            tokio::time::timeout(Duration::from_millis(50), stream.message()).await
                        {
                            judge::<()>(&what, &mut seen, Err(status), |_| String::new());
                        }
                    }
                    Err(status) => judge::<()>(&what, &mut seen, Err(status), |_| String::new()),
                }
            }
            _ => {
                // Random bytes, or a valid request with some bytes changed.
                let mut bytes: Vec<u8> = if rng.random_bool(0.5) {
                    (0..rng.random_range(0..200))
                        .map(|_| rng.random())
                        .collect()
                } else {
                    prost::Message::encode_to_vec(&proto::CostByPrincipalRequest {
                        time_range: common_range(),
                        ..Default::default()
                    })
                };
                for _ in 0..rng.random_range(1..4) {
                    if !bytes.is_empty() {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] = rng.random();
                    }
                }
                let path = http::uri::PathAndQuery::from_static(
                    "/bedrock.attribution.v1.AttributionService/CostByPrincipal",
                );
                let mut grpc = tonic::client::Grpc::new(server.channel().await);
                grpc.ready().await.unwrap();
                judge(
                    &what,
                    &mut seen,
                    grpc.unary(tonic::Request::new(bytes), path, RawCodec).await,
                    |_| String::new(),
                );
            }
        }
        issued.retain(|t| !t.is_empty());
    }
    eprintln!("fuzz: seed {seed}, {count} requests, answers by code: {seen:?}");
    assert!(
        seen.get("Ok").is_some_and(|n| *n > 0),
        "some made-up requests are valid and answered"
    );

    let mut health = HealthClient::new(server.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 1, "SERVING after {count} requests");
    server.stop().await;
}

/// All of the small export.
fn common_range() -> Option<proto::TimeRange> {
    crate::common::range("2026-01-01T00:00:00Z", "2026-10-01T00:00:00Z")
}
