//! A realistic, seeded organisation of Bedrock callers and months of their spend.
//!
//! Periods are written so that every trap of the data contract is present:
//! - the first period predates caller identity and tags (no such columns), uses
//!   `1K tokens` pricing units and millisecond timestamps without a UTC annotation;
//! - the second has the principal column but no callers before 2026-04-08;
//! - the third has a leftover empty chunk not named by the manifest and nanosecond
//!   timestamps; the `product` map gains `model` and `inference_type` from here on;
//! - the fourth is written in create-new mode twice, the older execution stale;
//! - the fifth has no manifest; later ones are plain overwrite mode;
//! - Claude is billed through AWS Marketplace under an opaque product code; native
//!   models use three Bedrock product codes; EC2, S3 and a non-Bedrock Marketplace
//!   product must be left out; one account is billed in EUR; one account has no
//!   callers at all (provisioned throughput only); tax, EDP discounts, credits and
//!   provisioned throughput carry no caller; some callers carry no tags; tag keys
//!   hold spaces, quotes, colons and values in several scripts;
//! - 2026-04 to 2026-06 also hold the usage-type shapes seen in 2026 (contract §5):
//!   geographic cross-region routing, mantle `cache-write-tokens` with routing and tier,
//!   one-hour cache writes in both spellings, and reserved-tier capacity rows that name a
//!   token kind (in the usage type and `inference_type`, priced per 1K tokens) but count
//!   none ([`SHAPES_2026_MODELS`]).

use std::path::Path;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use rand::{Rng, SeedableRng, rngs::SmallRng, seq::IndexedRandom};

use super::{
    cur_file::{CurLineItem, SchemaOptions, TimestampUnit},
    export::{ExportWriter, PeriodLayout},
};

/// Size and seed of a generated export.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Seed of the random generator; the same seed writes the same files.
    pub seed: u64,
    /// Number of billing periods, from 2026-03 on (at least 5 to hold every trap).
    pub months: u32,
    /// Number of callers.
    pub principals: usize,
    /// Chance that a caller is active on a given day.
    pub activity: f64,
}

impl DemoConfig {
    /// The `--demo` dataset: eight months, a few hundred callers.
    pub fn demo() -> Self {
        Self {
            seed: 42,
            months: 8,
            principals: 300,
            activity: 0.2,
        }
    }

    /// A small dataset for tests: every trap, a few thousand line items.
    pub fn small() -> Self {
        Self {
            seed: 7,
            months: 5,
            principals: 40,
            activity: 0.08,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct GeneratedExport {
    /// Billing periods written, `YYYY-MM`.
    pub periods: Vec<String>,
    /// Line items served by the newest version of every period (Bedrock or not).
    pub line_items: usize,
}

/// Payer of the generated organisation.
pub const PAYER: &str = "111122223333";
/// Usage account billed in EUR.
pub const EUR_ACCOUNT: &str = "678901234567";
/// Usage account without any caller: only provisioned throughput and its tax.
pub const NO_CALLER_ACCOUNT: &str = "567890123456";
const USD_ACCOUNTS: [&str; 3] = ["210987654321", "345678901234", "456789012345"];
const MARKETPLACE_CLAUDE_CODE: &str = "3zk7q2sm0c8f4xw9";
const TEAMS: [&str; 8] = [
    "search",
    "support-bot",
    "risk",
    "marketing",
    "data-science",
    "platform",
    "Zürich-Forschung",
    "チーム-α",
];
const COST_CENTERS: [&str; 4] = ["CC-1001", "CC-1002", "CC-2001", "CC 3001"];
/// Tag keys with characters that break naive SQL building.
pub const HOSTILE_TAG_KEYS: [&str; 3] = [
    "iamPrincipal/cost center",
    "iamPrincipal/it's \"quoted\"",
    "iamPrincipal/a:b=c",
];

#[derive(Clone, Copy)]
enum Billing {
    /// Marketplace, `Units` priced per million tokens named in the description.
    Marketplace { product_name: &'static str },
    /// Native Bedrock under a product code.
    Native { product_code: &'static str },
}

#[derive(Clone, Copy)]
struct Model {
    display: &'static str,
    provider: &'static str,
    billing: Billing,
    region_prefix: &'static str,
    region: &'static str,
    /// Usage types per token kind (input, output, cache read, cache write); empty = none.
    usage_types: [&'static str; 4],
    /// Price per token in units of 1e-10, per token kind.
    price: [i128; 4],
}

const KINDS: [&str; 4] = [
    "Input tokens",
    "Output tokens",
    "Cache read input tokens",
    "Cache write input tokens",
];
const MP_UNITS: [&str; 4] = [
    "Million Input Tokens",
    "Million Output Tokens",
    "Million Cache Read Input Tokens",
    "Million Cache Write Input Tokens",
];

const MODELS: [Model; 8] = [
    Model {
        display: "Claude Sonnet 4.6",
        provider: "Anthropic",
        billing: Billing::Marketplace {
            product_name: "Claude Sonnet 4.6 (Amazon Bedrock Edition)",
        },
        region_prefix: "USE1",
        region: "us-east-1",
        usage_types: [
            "USE1-MP:USE1_InputTokenCount-Units",
            "USE1-MP:USE1_OutputTokenCount-Units",
            "USE1-MP:USE1_CacheReadInputTokenCount_Global-Units",
            "USE1-MP:USE1_CacheWriteInputTokenCount-Units",
        ],
        price: [30_000, 150_000, 3_000, 37_500],
    },
    Model {
        display: "Claude Haiku 4.5",
        provider: "Anthropic",
        billing: Billing::Marketplace {
            product_name: "Claude Haiku 4.5 (Amazon Bedrock Edition)",
        },
        region_prefix: "USW2",
        region: "us-west-2",
        usage_types: [
            "USW2-MP:USW2_InputTokenCount-Units",
            "USW2-MP:USW2_output_tokens_standard-Units",
            "",
            "",
        ],
        price: [10_000, 50_000, 0, 0],
    },
    Model {
        display: "Claude Sonnet 4.6",
        provider: "Anthropic",
        billing: Billing::Native {
            product_code: "AmazonBedrock",
        },
        region_prefix: "USE1",
        region: "us-east-1",
        usage_types: [
            "USE1-Claude4.6Sonnet-input-tokens-cross-region-global",
            "USE1-Claude4.6Sonnet-output-tokens-cross-region-global",
            "USE1-Claude4.6Sonnet-cache-read-input-token-count",
            "USE1-Claude4.6Sonnet-cache-write-input-token-count",
        ],
        price: [33_000, 165_000, 3_300, 41_250],
    },
    Model {
        display: "Nova 2.0 Lite",
        provider: "Amazon",
        billing: Billing::Native {
            product_code: "AmazonBedrock",
        },
        region_prefix: "USE1",
        region: "us-east-1",
        usage_types: [
            "USE1-Nova2.0Lite-input-tokens",
            "USE1-Nova2.0Lite-output-tokens",
            "",
            "",
        ],
        price: [600, 2_400, 0, 0],
    },
    Model {
        display: "Nova 2.0 Lite",
        provider: "Amazon",
        billing: Billing::Native {
            product_code: "AmazonBedrock",
        },
        region_prefix: "USE1",
        region: "us-east-1",
        usage_types: [
            "USE1-Nova2.0Lite-input-tokens-flex",
            "USE1-Nova2.0Lite-output-tokens-priority",
            "",
            "",
        ],
        price: [300, 4_200, 0, 0],
    },
    Model {
        display: "Llama 3.3 70B",
        provider: "Meta",
        billing: Billing::Native {
            product_code: "AmazonBedrockService",
        },
        region_prefix: "USW2",
        region: "us-west-2",
        usage_types: [
            "USW2-Llama3.3-70B-batch-input-tokens",
            "USW2-Llama3.3-70B-output-tokens",
            "",
            "",
        ],
        price: [3_600, 7_200, 0, 0],
    },
    Model {
        display: "gpt-oss-120b",
        provider: "OpenAI",
        billing: Billing::Native {
            product_code: "AmazonBedrockFoundationModels",
        },
        region_prefix: "USE1",
        region: "us-east-1",
        usage_types: [
            "USE1-openai.gpt-oss-120b-mantle-input-tokens-standard",
            "USE1-openai.gpt-oss-120b-mantle-output-tokens-standard",
            "",
            "",
        ],
        price: [1_500, 6_000, 0, 0],
    },
    Model {
        display: "Claude 3.5 Haiku",
        provider: "Anthropic",
        billing: Billing::Native {
            product_code: "AmazonBedrock",
        },
        region_prefix: "USE2",
        region: "us-east-2",
        usage_types: [
            "USE2-Claude3.5Haiku-latency-optimized-input-tokens",
            "USE2-Claude3.5Haiku-latency-optimized-output-tokens",
            "",
            "",
        ],
        price: [10_000, 50_000, 0, 0],
    },
];

/// Models billed only under the usage-type shapes seen in 2026, so that a filter on them
/// isolates those shapes.
const SHAPE_MODELS: [Model; 3] = [
    Model {
        display: "Claude Sonnet 4.5",
        provider: "Anthropic",
        billing: Billing::Native {
            product_code: "AmazonBedrock",
        },
        region_prefix: "USE1",
        region: "us-east-1",
        usage_types: [
            "USE1-Claude4.5Sonnet-input-tokens-cross-region-geo",
            "USE1-Claude4.5Sonnet-output-tokens-cross-region-geo",
            "",
            "",
        ],
        price: [33_000, 165_000, 0, 0],
    },
    Model {
        display: "Claude Opus 4.8",
        provider: "Anthropic",
        billing: Billing::Native {
            product_code: "AmazonBedrockFoundationModels",
        },
        region_prefix: "USW2",
        region: "us-west-2",
        usage_types: [
            "USW2-anthropic.claude-opus-4-8-mantle-input-tokens-global-standard",
            "USW2-anthropic.claude-opus-4-8-mantle-output-tokens-global-standard",
            "USW2-anthropic.claude-opus-4-8-mantle-cache-read-tokens-global-standard",
            "USW2-anthropic.claude-opus-4-8-mantle-cache-write-tokens-global-standard",
        ],
        price: [50_000, 250_000, 5_000, 62_500],
    },
    Model {
        display: "Claude Opus 4.6",
        provider: "Anthropic",
        billing: Billing::Native {
            product_code: "AmazonBedrock",
        },
        region_prefix: "USE1",
        region: "us-east-1",
        usage_types: [
            "",
            "",
            "",
            "USE1-Claude4.6Opus-cache-write-1h-input-token-count",
        ],
        price: [0, 0, 0, 100_000],
    },
];
/// The other spelling of a one-hour cache write (of [`SHAPE_MODELS`]' last model).
const ONE_HOUR_CACHE_WRITE_TOKENS: &str = "USE1-Claude4.6Opus-cache-write-1h-tokens";
/// Reserved-tier capacity: names input tokens, counts none.
const RESERVED_CAPACITY: &str =
    "USE1-Claude4.5Sonnet-reserved-3-month-input-tokens-per-minute-cross-region-geo";
/// Model names of the 2026 shapes' line items: from the usage type in 2026-04 (no
/// `product['model']` yet), from `product['model']` after.
pub const SHAPES_2026_MODELS: [&str; 6] = [
    "Claude4.5Sonnet",
    "anthropic.claude-opus-4-8",
    "Claude4.6Opus",
    "Claude Sonnet 4.5",
    "Claude Opus 4.8",
    "Claude Opus 4.6",
];
/// Reserved capacity line items per period, each of [`RESERVED_DAILY_COST`].
pub const RESERVED_DAYS: i64 = 3;
/// Unblended cost of one reserved capacity line item (a day).
pub const RESERVED_DAILY_COST: f64 = 250.0;

struct Caller {
    arn: String,
    account: &'static str,
    tags: Vec<(String, String)>,
    /// Tag activated only from the fourth period on (activation is not retroactive).
    late_tags: Vec<(String, String)>,
    models: Vec<usize>,
}

fn callers(rng: &mut SmallRng, count: usize) -> Vec<Caller> {
    let mut out = Vec::with_capacity(count);
    let people = [
        "alice", "bob", "chen.wei", "dmitri", "eva", "farah", "gustavo", "hana", "zoë", "李雷",
    ];
    let app_roles = [
        "chatbot-prod",
        "rag-indexer",
        "doc-summarizer",
        "fraud-scorer",
    ];
    for i in 0..count {
        let account = if i % 17 == 5 {
            EUR_ACCOUNT
        } else {
            USD_ACCOUNTS[i % USD_ACCOUNTS.len()]
        };
        let person = format!("{}{}", people[i % people.len()], i / people.len());
        let arn = match i % 20 {
            0 => format!("arn:aws:iam::{account}:user/{person}"),
            1 => format!("arn:aws:iam::{account}:user/ops/{person}"),
            2 if i < 60 => format!(
                "arn:aws:iam::{account}:user/BedrockAPIKey-{:04x}",
                i * 7919 % 65536
            ),
            3..=7 => format!(
                "arn:aws:sts::{account}:assumed-role/{}/{}-{}",
                app_roles[i % app_roles.len()],
                app_roles[i % app_roles.len()],
                i % 11
            ),
            8 if i < 20 => format!("arn:aws:iam::{account}:role/service-role/batch-runner"),
            9 if i < 20 => format!("arn:aws:sts::{account}:federated-user/partner-{person}"),
            10 if i < 20 => format!("arn:aws:iam::{account}:root"),
            11 if i < 20 => "bedrock-console-session:unknown".to_owned(),
            _ => format!(
                "arn:aws:sts::{account}:assumed-role/AWSReservedSSO_BedrockUsers_5f2a9c01/{person}@example.com"
            ),
        };
        let mut tags = Vec::new();
        let mut late_tags = Vec::new();
        if i % 9 != 4 {
            tags.push((
                "iamPrincipal/team".to_owned(),
                TEAMS[i % TEAMS.len()].to_owned(),
            ));
            late_tags.push((
                "iamPrincipal/cost-center".to_owned(),
                COST_CENTERS[i % COST_CENTERS.len()].to_owned(),
            ));
        }
        if i % 5 == 0 {
            tags.push(("resourceTags/Project".to_owned(), format!("proj-{}", i % 3)));
        }
        if i % 7 == 1 {
            let key = HOSTILE_TAG_KEYS[i % HOSTILE_TAG_KEYS.len()];
            tags.push((
                key.to_owned(),
                ["O'Brien", "a\"b", "x:y=z", "Ünïcødé 🚀"][i % 4].to_owned(),
            ));
        }
        let mut models: Vec<usize> = (0..MODELS.len()).collect();
        models.sort_by_key(|_| rng.random::<u32>());
        models.truncate(1 + i % 3);
        out.push(Caller {
            arn,
            account,
            tags,
            late_tags,
            models,
        });
    }
    out
}

struct PeriodPlan {
    index: u32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    name: String,
}

impl PeriodPlan {
    fn new(index: u32) -> Self {
        let month0 = 2 + index; // 2026-03 is index 0
        let (year, month) = (2026 + (month0 / 12) as i32, month0 % 12 + 1);
        let first = |y: i32, m: u32| {
            let d = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or_default();
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
        };
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        Self {
            index,
            start: first(year, month),
            end: first(ny, nm),
            name: format!("{year}-{month:02}"),
        }
    }

    fn schema(&self) -> SchemaOptions {
        match self.index {
            0 => SchemaOptions {
                principal_column: false,
                tags_column: false,
                product_column: true,
                timestamp_unit: TimestampUnit::Millis,
                utc_annotated: false,
            },
            2 => SchemaOptions {
                timestamp_unit: TimestampUnit::Nanos,
                ..SchemaOptions::default()
            },
            _ => SchemaOptions::default(),
        }
    }

    fn has_model_keys(&self) -> bool {
        self.index >= 2
    }
}

struct Items<'a> {
    period: &'a PeriodPlan,
    out: Vec<CurLineItem>,
}

impl Items<'_> {
    fn base(
        &self,
        account: &str,
        line_item_type: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> CurLineItem {
        CurLineItem {
            line_item_id: format!("{}-{:07}", self.period.name, self.out.len()),
            billing_period_start: self.period.start,
            payer_account_id: PAYER.to_owned(),
            billing_entity: "AWS".to_owned(),
            usage_account_id: account.to_owned(),
            line_item_type: line_item_type.to_owned(),
            usage_start: start,
            usage_end: end,
            currency: if account == EUR_ACCOUNT { "EUR" } else { "USD" }.to_owned(),
            ..CurLineItem::default()
        }
    }

    fn push(&mut self, item: CurLineItem) {
        self.out.push(item);
    }
}

fn money(units: i128) -> f64 {
    units as f64 / 1e10
}

fn model_item(
    items: &Items<'_>,
    model: &Model,
    kind: usize,
    tokens: i64,
    account: &str,
    at: DateTime<Utc>,
) -> CurLineItem {
    let price = model.price[kind] * i128::from(tokens);
    let mut item = items.base(account, "Usage", at, at + Duration::hours(1));
    item.usage_type = Some(model.usage_types[kind].to_owned());
    item.operation = Some("InvokeModelInference".to_owned());
    item.region = Some(model.region.to_owned());
    let discounted =
        model.usage_types[kind].contains("batch") || model.usage_types[kind].contains("-flex");
    item.unblended_cost = Some(money(price));
    item.blended_cost = Some(money(price));
    item.public_on_demand_cost = Some(money(if discounted { price * 2 } else { price }));
    let mut product = Vec::new();
    match model.billing {
        Billing::Marketplace { product_name } => {
            item.billing_entity = "AWS Marketplace".to_owned();
            item.product_code = MARKETPLACE_CLAUDE_CODE.to_owned();
            item.pricing_unit = Some("Units".to_owned());
            item.description = Some(format!(
                "{product_name}|{}|{}",
                model.region, MP_UNITS[kind]
            ));
            item.usage_amount = Some(tokens as f64 / 1e6);
            item.net_unblended_cost = Some(money(price));
            product.push(("product_name".to_owned(), product_name.to_owned()));
        }
        Billing::Native { product_code } => {
            item.product_code = product_code.to_owned();
            item.resource_id = Some(format!(
                "arn:aws:bedrock:{}::foundation-model/{}",
                model.region,
                model.display.to_lowercase().replace(' ', "-")
            ));
            // The pricing unit changed over time: older periods price per 1K tokens.
            if items.period.index < 2 {
                item.pricing_unit = Some("1K tokens".to_owned());
                item.usage_amount = Some(tokens as f64 / 1e3);
            } else {
                item.pricing_unit = Some("1M tokens".to_owned());
                item.usage_amount = Some(tokens as f64 / 1e6);
                item.product_family = Some("Amazon Bedrock".to_owned());
            }
            item.description = Some(format!(
                "{} {} in {}",
                model.display, KINDS[kind], model.region_prefix
            ));
            // Accounts under the enterprise discount: net is 5% below unblended.
            item.net_unblended_cost = Some(money(price - price / 20));
            product.push(("product_name".to_owned(), "Amazon Bedrock".to_owned()));
        }
    }
    if items.period.has_model_keys() {
        product.push(("model".to_owned(), model.display.to_owned()));
        product.push(("provider".to_owned(), model.provider.to_owned()));
        product.push(("inference_type".to_owned(), KINDS[kind].to_owned()));
    }
    item.product = product;
    item
}

fn caller_usage(rng: &mut SmallRng, items: &mut Items<'_>, callers: &[Caller], activity: f64) {
    let attribution_from = Utc
        .with_ymd_and_hms(2026, 4, 8, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let days = (items.period.end - items.period.start).num_days();
    for caller in callers {
        for day in 0..days {
            if !rng.random_bool(activity.clamp(0.0, 1.0)) {
                continue;
            }
            let hours = 1 + rng.random_range(0..3);
            for h in 0..hours {
                let at = items.period.start
                    + Duration::days(day)
                    + Duration::hours(6 + 4 * h + rng.random_range(0..4));
                let model_index = *caller.models.choose(rng).unwrap_or(&0);
                let model = &MODELS[model_index];
                for kind in 0..4 {
                    if model.usage_types[kind].is_empty() {
                        continue;
                    }
                    let tokens = match kind {
                        0 => rng.random_range(500..2_000_000),
                        1 => rng.random_range(50..200_000),
                        _ => rng.random_range(1_000..800_000),
                    };
                    let mut item = model_item(items, model, kind, tokens, caller.account, at);
                    if items.period.schema().principal_column && at >= attribution_from {
                        // A few calls arrive without identity even when the export has it.
                        item.principal = Some(if rng.random_ratio(1, 60) {
                            String::new()
                        } else {
                            caller.arn.clone()
                        });
                    }
                    if item.principal.as_deref().is_some_and(|p| !p.is_empty()) {
                        item.tags = caller.tags.clone();
                        if items.period.index >= 3 {
                            item.tags.extend(caller.late_tags.iter().cloned());
                        }
                    }
                    items.push(item);
                }
            }
        }
        // Guardrails: caller-stamped Bedrock spend without tokens.
        if caller.models.len() == 3 && items.period.schema().principal_column {
            let at = items.period.start + Duration::days(9) + Duration::hours(13);
            let mut item = items.base(caller.account, "Usage", at, at + Duration::hours(1));
            item.product_code = "AmazonBedrock".to_owned();
            item.usage_type = Some("USE1-Guardrail-ContentPolicyUnits".to_owned());
            item.operation = Some("ApplyGuardrail".to_owned());
            item.region = Some("us-east-1".to_owned());
            item.pricing_unit = Some("Units".to_owned());
            item.description = Some("Guardrails|US East|1K text units".to_owned());
            item.usage_amount = Some(12.0);
            item.unblended_cost = Some(1.8);
            item.net_unblended_cost = Some(1.71);
            item.blended_cost = Some(1.8);
            item.public_on_demand_cost = Some(1.8);
            item.principal = Some(caller.arn.clone());
            item.tags = caller.tags.clone();
            items.push(item);
        }
    }
}

/// The usage-type shapes seen in 2026 (contract §5), in 2026-04 to 2026-06. Nothing here
/// draws from the random generator, so every other line item is as it was.
fn shapes_2026(items: &mut Items<'_>, callers: &[Caller]) {
    let period = items.period;
    if !(1..=3).contains(&period.index) {
        return;
    }
    let index = i64::from(period.index);
    for (n, caller) in callers.iter().step_by(7).take(4).enumerate() {
        let n = n as i64;
        let at = period.start + Duration::days(14 + n) + Duration::hours(9 + n);
        let push = |items: &mut Items<'_>, mut item: CurLineItem| {
            item.principal = Some(caller.arn.clone());
            item.tags = caller.tags.clone();
            if period.index >= 3 {
                item.tags.extend(caller.late_tags.iter().cloned());
            }
            items.push(item);
        };
        for (m, model) in SHAPE_MODELS.iter().enumerate() {
            for kind in 0..4 {
                if model.usage_types[kind].is_empty() {
                    continue;
                }
                let tokens = 1_000 * (1 + kind as i64) * (7 + 3 * n + 5 * m as i64 + index);
                let item = model_item(items, model, kind, tokens, caller.account, at);
                push(items, item);
            }
        }
        let one_hour = &SHAPE_MODELS[2];
        let mut item = model_item(items, one_hour, 3, 2_500 * (n + 1), caller.account, at);
        item.usage_type = Some(ONE_HOUR_CACHE_WRITE_TOKENS.to_owned());
        push(items, item);
    }
    // Reserved capacity: no caller; the usage type and inference_type name input tokens
    // and the unit is a token unit, yet it buys tokens per minute, not tokens used.
    for day in 0..RESERVED_DAYS {
        let at = period.start + Duration::days(14 + day);
        let mut item = items.base(USD_ACCOUNTS[0], "Usage", at, at + Duration::days(1));
        item.product_code = "AmazonBedrock".to_owned();
        item.usage_type = Some(RESERVED_CAPACITY.to_owned());
        item.operation = Some("ReservedCapacity".to_owned());
        item.region = Some("us-east-1".to_owned());
        item.pricing_unit = Some("1K tokens".to_owned());
        item.usage_amount = Some(1_440.0);
        item.description =
            Some("Claude Sonnet 4.5 reserved 3-month input tokens per minute".to_owned());
        item.unblended_cost = Some(RESERVED_DAILY_COST);
        item.net_unblended_cost = Some(RESERVED_DAILY_COST * 0.95);
        item.blended_cost = Some(RESERVED_DAILY_COST);
        item.public_on_demand_cost = Some(RESERVED_DAILY_COST);
        if period.has_model_keys() {
            item.product_family = Some("Amazon Bedrock".to_owned());
            item.product = vec![
                ("model".to_owned(), "Claude Sonnet 4.5".to_owned()),
                ("inference_type".to_owned(), KINDS[0].to_owned()),
            ];
        }
        items.push(item);
    }
}

fn unattributed_spend(items: &mut Items<'_>) {
    let period = items.period;
    let days = (period.end - period.start).num_days();
    // Provisioned throughput, bought for everyone: one line item a day.
    for account in [NO_CALLER_ACCOUNT, USD_ACCOUNTS[0]] {
        for day in 0..days {
            let at = period.start + Duration::days(day);
            let mut item = items.base(account, "Usage", at, at + Duration::days(1));
            item.product_code = "AmazonBedrock".to_owned();
            item.usage_type = Some("USE1-ProvisionedThroughput-ModelUnits".to_owned());
            item.operation = Some("ProvisionedThroughput".to_owned());
            item.region = Some("us-east-1".to_owned());
            item.pricing_unit = Some("Hrs".to_owned());
            item.usage_amount = Some(24.0);
            item.unblended_cost = Some(480.0);
            item.net_unblended_cost = Some(456.0);
            item.blended_cost = Some(480.0);
            item.public_on_demand_cost = Some(480.0);
            if period.has_model_keys() {
                item.product = vec![("model".to_owned(), "Claude Haiku 4.5".to_owned())];
            }
            items.push(item);
        }
    }
    // Per account: tax on Bedrock usage, and the enterprise discount (USD accounts).
    let mut accounts: Vec<(String, String, i128, i128)> = Vec::new();
    for item in &items.out {
        if item.line_item_type != "Usage" {
            continue;
        }
        let cost = (item.unblended_cost.unwrap_or(0.0) * 1e10).round() as i128;
        let key = (item.usage_account_id.clone(), item.billing_entity.clone());
        match accounts
            .iter_mut()
            .find(|a| (a.0.as_str(), a.1.as_str()) == (key.0.as_str(), key.1.as_str()))
        {
            Some(a) => a.2 += cost,
            None => accounts.push((key.0, key.1, cost, 0)),
        }
    }
    for (account, entity, usage, _) in accounts {
        let mut tax = items.base(&account, "Tax", period.start, period.end);
        let tax_cents = usage * 8 / 100 / 100_000_000;
        let tax_amount = money(tax_cents * 100_000_000);
        tax.unblended_cost = Some(tax_amount);
        tax.net_unblended_cost = Some(tax_amount);
        tax.blended_cost = Some(tax_amount);
        tax.public_on_demand_cost = Some(0.0);
        tax.description = Some("Tax for product code".to_owned());
        if entity == "AWS Marketplace" {
            tax.billing_entity = entity.clone();
            tax.product_code = MARKETPLACE_CLAUDE_CODE.to_owned();
            tax.product = vec![(
                "product_name".to_owned(),
                "Claude Sonnet 4.6 (Amazon Bedrock Edition)".to_owned(),
            )];
        } else {
            tax.product_code = "AmazonBedrock".to_owned();
        }
        items.push(tax);
        if entity == "AWS" && account != EUR_ACCOUNT {
            let mut edp = items.base(&account, "EdpDiscount", period.start, period.end);
            edp.product_code = "AmazonBedrock".to_owned();
            edp.usage_type = Some("USE1-EDP-Discount".to_owned());
            edp.unblended_cost = Some(money(-(usage / 20)));
            edp.net_unblended_cost = Some(0.0);
            edp.blended_cost = Some(money(-(usage / 20)));
            edp.public_on_demand_cost = Some(0.0);
            edp.description = Some("Enterprise Discount Program".to_owned());
            items.push(edp);
        }
    }
    let mut credit = items.base(USD_ACCOUNTS[1], "Credit", period.start, period.end);
    credit.product_code = "AmazonBedrock".to_owned();
    credit.unblended_cost = Some(-25.0);
    credit.net_unblended_cost = Some(-25.0);
    credit.blended_cost = Some(-25.0);
    credit.public_on_demand_cost = Some(0.0);
    credit.description = Some("AWS Activate credit".to_owned());
    items.push(credit);
}

fn other_services(rng: &mut SmallRng, items: &mut Items<'_>) {
    let period = items.period;
    for n in 0..40 {
        let at = period.start + Duration::hours(n * 7);
        let account = USD_ACCOUNTS[n as usize % USD_ACCOUNTS.len()];
        let mut item = items.base(account, "Usage", at, at + Duration::hours(1));
        let (code, usage_type, family) = match n % 3 {
            0 => ("AmazonEC2", "USE1-BoxUsage:g5.xlarge", "Compute Instance"),
            1 => ("AmazonS3", "USE1-TimedStorage-ByteHrs", "Storage"),
            _ => (
                "AmazonSageMaker",
                "USE1-ml.g5.2xlarge-hosting",
                "ML Instance",
            ),
        };
        item.product_code = code.to_owned();
        item.usage_type = Some(usage_type.to_owned());
        item.product_family = Some(family.to_owned());
        item.region = Some("us-east-1".to_owned());
        item.usage_amount = Some(1.0);
        let cost = money(rng.random_range(1_000_000_000..90_000_000_000));
        item.unblended_cost = Some(cost);
        item.net_unblended_cost = Some(cost);
        item.blended_cost = Some(cost);
        item.public_on_demand_cost = Some(cost);
        if period.schema().principal_column {
            item.principal = Some(String::new());
        }
        items.push(item);
    }
    let at = period.start + Duration::days(2);
    let mut saas = items.base(USD_ACCOUNTS[2], "Usage", at, at + Duration::hours(1));
    saas.billing_entity = "AWS Marketplace".to_owned();
    saas.product_code = "9xq1observability".to_owned();
    saas.usage_type = Some("USE1-MP:Hosts-Units".to_owned());
    saas.product = vec![(
        "product_name".to_owned(),
        "Observability Pro (SaaS)".to_owned(),
    )];
    saas.unblended_cost = Some(199.0);
    saas.net_unblended_cost = Some(199.0);
    saas.blended_cost = Some(199.0);
    items.push(saas);
}

fn chunks(items: Vec<CurLineItem>, count: usize) -> Vec<Vec<CurLineItem>> {
    let size = items.len().div_ceil(count.max(1)).max(1);
    items.chunks(size).map(<[CurLineItem]>::to_vec).collect()
}

/// Writes a generated export at `root` (the folder that will hold `data/` and `metadata/`).
pub fn generate(root: &Path, config: &DemoConfig) -> std::io::Result<GeneratedExport> {
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let population = callers(&mut rng, config.principals);
    let writer = ExportWriter::new(root, "acme-cur2", "s3://acme-billing/cur2/acme-cur2");
    let mut periods = Vec::new();
    let mut line_items = 0;
    for index in 0..config.months.max(5) {
        let period = PeriodPlan::new(index);
        let mut items = Items {
            period: &period,
            out: Vec::new(),
        };
        caller_usage(&mut rng, &mut items, &population, config.activity);
        shapes_2026(&mut items, &population);
        unattributed_spend(&mut items);
        other_services(&mut rng, &mut items);
        let schema = period.schema();
        let rows = items.out;
        line_items += rows.len();
        match index {
            2 => {
                writer.write_period(
                    &period.name,
                    &chunks(rows, 3),
                    &PeriodLayout::Overwrite {
                        leftover_empty_chunks: 1,
                    },
                    schema,
                )?;
            }
            3 => {
                // An older execution with stale numbers, then the one to serve.
                let stale: Vec<CurLineItem> = rows
                    .iter()
                    .map(|i| CurLineItem {
                        unblended_cost: i.unblended_cost.map(|c| c * 2.0),
                        ..i.clone()
                    })
                    .collect();
                let next = period.end + Duration::days(1);
                let old = format!(
                    "{}-exec-0a1b2c",
                    (next - Duration::days(20)).format("%Y%m%dT%H%M%SZ")
                );
                let new = format!("{}-exec-9f8e7d", next.format("%Y%m%dT%H%M%SZ"));
                writer.write_period(
                    &period.name,
                    &chunks(stale, 2),
                    &PeriodLayout::CreateNew { execution: old },
                    schema,
                )?;
                writer.write_period(
                    &period.name,
                    &chunks(rows, 2),
                    &PeriodLayout::CreateNew { execution: new },
                    schema,
                )?;
            }
            4 => {
                writer.write_period(
                    &period.name,
                    &chunks(rows, 2),
                    &PeriodLayout::NoManifest,
                    schema,
                )?;
            }
            _ => {
                writer.write_period(
                    &period.name,
                    &chunks(rows, 2),
                    &PeriodLayout::Overwrite {
                        leftover_empty_chunks: 0,
                    },
                    schema,
                )?;
            }
        }
        debug_assert!(period.start.day() == 1);
        periods.push(period.name);
    }
    Ok(GeneratedExport {
        periods,
        line_items,
    })
}
