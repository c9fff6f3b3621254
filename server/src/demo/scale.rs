//! A seeded, memory-bounded generator of one large organisation's CUR 2.0 export, for
//! benchmarks at millions of line items per month.
//!
//! Unlike [`super::generator`], nothing is collected in memory: each data file is
//! written by one worker that builds Arrow record batches of [`BATCH_ROWS`] line items
//! directly with column builders and streams them to a snappy parquet writer (row groups
//! of [`ROW_GROUP_ROWS`]). Memory stays bounded by a batch and a row group per worker,
//! whatever the size of the export.
//!
//! The files have the full width of a CUR 2.0 export (about 130 columns: the ones the
//! service reads plus reservation, savings plan, split cost allocation, discount and
//! product columns filled with plausible values), so that file sizes and scan costs are
//! realistic. Per month:
//! - about 80% of the line items are hourly Bedrock usage of `callers` callers (mostly
//!   assumed-role sessions over about 60 roles, then IAM users and Bedrock API keys, a
//!   few roles, federated users and roots), each using one to three of `models` models
//!   (native models under three product codes, and Claude through AWS Marketplace under
//!   opaque product codes), with input, output and cache read / write token line items;
//! - provisioned throughput without a caller, every account and day;
//! - per account and data file: Tax, and an EdpDiscount on the USD accounts; one Credit;
//! - the rest is other services (EC2 with savings plans and reservations, S3,
//!   SageMaker, Lambda, RDS, ...) with an empty caller.
//!
//! Twenty usage accounts under one payer, one of them billed in EUR. Output is a pure
//! function of the [`ScaleConfig`]: the same configuration writes the same files,
//! whatever the number of worker threads.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use datafusion::arrow::{
    array::{
        ArrayRef, Float64Builder, MapBuilder, RecordBatch, StringBuilder,
        TimestampMicrosecondBuilder, builder::MapFieldNames,
    },
    datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
};
use datafusion::parquet::{
    arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties,
    schema::types::ColumnPath,
};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use super::cur_file::map_field;

/// Line items per Arrow record batch handed to the parquet writer.
pub const BATCH_ROWS: usize = 64 * 1024;
/// Line items per parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Name of the export (file and manifest prefix).
pub const EXPORT_NAME: &str = "acme-cur2";
/// Where the manifests say the files are.
pub const S3_ROOT: &str = "s3://acme-billing/cur2/acme-cur2";
/// Payer account of the organisation.
pub const PAYER: &str = "100000000001";
/// The tag key every benchmark groups by.
pub const TEAM_TAG_KEY: &str = "iamPrincipal/team";

/// Size, shape and seed of a scale export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleConfig {
    /// Seed of every random choice; the same configuration writes the same files.
    pub seed: u64,
    /// Line items per billing period (all services).
    pub rows_per_month: usize,
    /// Number of consecutive billing periods.
    pub months: u32,
    /// First billing period, (year, month).
    pub first_period: (i32, u32),
    /// Number of distinct callers (IAM principals) of Bedrock.
    pub callers: usize,
    /// Number of distinct model offerings (model, region and tier).
    pub models: usize,
    /// Number of distinct tag keys in `tags` (at most 20).
    pub tag_keys: usize,
    /// Data files per billing period.
    pub chunks: usize,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            seed: 20_260_501,
            rows_per_month: 10_000_000,
            months: 1,
            first_period: (2026, 5),
            callers: 5000,
            models: 30,
            tag_keys: 20,
            chunks: 4,
            threads: 0,
        }
    }
}

impl ScaleConfig {
    /// The billing periods, as (year, month).
    pub fn periods(&self) -> Vec<(i32, u32)> {
        let (year, month) = self.first_period;
        let first = year * 12 + month.clamp(1, 12) as i32 - 1;
        (0..self.months.max(1) as i32)
            .map(|i| ((first + i) / 12, ((first + i) % 12) as u32 + 1))
            .collect()
    }

    /// Start of the first billing period and end of the last one (exclusive), UTC.
    pub fn span(&self) -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
        let periods = self.periods();
        let first = periods[0];
        let last = periods[periods.len() - 1];
        (
            month_start(first.0, first.1),
            next_month_start(last.0, last.1),
        )
    }
}

/// What [`generate_scale`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleExport {
    /// Billing periods written, `YYYY-MM`.
    pub periods: Vec<String>,
    /// Line items written (all services).
    pub rows: usize,
    /// Line items that are Bedrock under the data contract (with or without a caller).
    pub bedrock_rows: usize,
    /// Bytes of the parquet files.
    pub bytes: u64,
    /// Data files written, in period and chunk order.
    pub files: Vec<PathBuf>,
}

fn month_start(year: i32, month: u32) -> chrono::DateTime<Utc> {
    let d = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn next_month_start(year: i32, month: u32) -> chrono::DateTime<Utc> {
    if month >= 12 {
        month_start(year + 1, 1)
    } else {
        month_start(year, month + 1)
    }
}

// ------------------------------------------------------------------------------------
// The organisation: accounts, models, callers and tags.
// ------------------------------------------------------------------------------------

const ACCOUNTS: usize = 20;
/// Index of the account billed in EUR.
const EUR_ACCOUNT: usize = 7;
const ACCOUNT_NAMES: [&str; ACCOUNTS] = [
    "acme-prod-search",
    "acme-prod-support",
    "acme-prod-risk",
    "acme-prod-marketing",
    "acme-data-science",
    "acme-platform",
    "acme-sandbox",
    "acme-emea-research",
    "acme-prod-docs",
    "acme-prod-payments",
    "acme-staging",
    "acme-dev",
    "acme-analytics",
    "acme-security",
    "acme-ml-training",
    "acme-prod-mobile",
    "acme-prod-web",
    "acme-internal-tools",
    "acme-partner-apps",
    "acme-labs",
];
/// Relative size of the accounts (callers per account).
const ACCOUNT_WEIGHTS: [u32; ACCOUNTS] = [
    14, 12, 8, 6, 10, 9, 3, 5, 4, 6, 3, 4, 5, 2, 4, 3, 3, 2, 2, 1,
];

struct Account {
    id: String,
    name: &'static str,
    currency: &'static str,
    invoicing_entity: &'static str,
    invoice_aws: String,
    invoice_mp: String,
    /// `accountTag/...` and `costCategory/...` entries of every Bedrock line item.
    tags: Vec<(String, String)>,
    cost_category: Vec<(String, String)>,
    ec2_instances: Vec<String>,
    buckets: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Standard,
    Global,
    Geo,
    Flex,
    Batch,
    Priority,
}

impl Tier {
    fn suffix(self) -> &'static str {
        match self {
            Tier::Standard => "",
            Tier::Global => "-cross-region-global",
            Tier::Geo => "-cross-region-geo",
            Tier::Flex => "-flex",
            Tier::Batch => "-batch",
            Tier::Priority => "-priority",
        }
    }

    /// Price factor (numerator, denominator) against standard on-demand.
    fn price_factor(self) -> (i64, i64) {
        match self {
            Tier::Standard | Tier::Global => (1, 1),
            Tier::Geo => (11, 10),
            Tier::Flex | Tier::Batch => (1, 2),
            Tier::Priority => (7, 4),
        }
    }
}

struct BaseModel {
    display: &'static str,
    provider: &'static str,
    /// The model part of native usage types (`Claude4.6Sonnet`).
    usage_name: &'static str,
    /// Bedrock model id (`anthropic.claude-sonnet-4-6`).
    model_id: &'static str,
    /// Native product code, or `None` for AWS Marketplace billing.
    product_code: Option<&'static str>,
    /// Price per token in units of 1e-10 USD: input, output, cache read, cache write
    /// (0: the model has no such token kind).
    price: [i64; 4],
}

const BASE_MODELS: [BaseModel; 18] = [
    BaseModel {
        display: "Claude Sonnet 4.6",
        provider: "Anthropic",
        usage_name: "Claude4.6Sonnet",
        model_id: "anthropic.claude-sonnet-4-6",
        product_code: None,
        price: [30_000, 150_000, 3_000, 37_500],
    },
    BaseModel {
        display: "Claude Haiku 4.5",
        provider: "Anthropic",
        usage_name: "Claude4.5Haiku",
        model_id: "anthropic.claude-haiku-4-5",
        product_code: None,
        price: [10_000, 50_000, 1_000, 12_500],
    },
    BaseModel {
        display: "Nova 2.0 Lite",
        provider: "Amazon",
        usage_name: "Nova2.0Lite",
        model_id: "amazon.nova-2-lite-v1:0",
        product_code: Some("AmazonBedrock"),
        price: [600, 2_400, 150, 0],
    },
    BaseModel {
        display: "Claude Opus 4.6",
        provider: "Anthropic",
        usage_name: "Claude4.6Opus",
        model_id: "anthropic.claude-opus-4-6",
        product_code: None,
        price: [150_000, 750_000, 15_000, 187_500],
    },
    BaseModel {
        display: "Claude Sonnet 4.6",
        provider: "Anthropic",
        usage_name: "Claude4.6Sonnet",
        model_id: "anthropic.claude-sonnet-4-6",
        product_code: Some("AmazonBedrock"),
        price: [33_000, 165_000, 3_300, 41_250],
    },
    BaseModel {
        display: "Llama 3.3 70B",
        provider: "Meta",
        usage_name: "Llama3.3-70B",
        model_id: "meta.llama3-3-70b-instruct-v1:0",
        product_code: Some("AmazonBedrockService"),
        price: [7_200, 7_200, 0, 0],
    },
    BaseModel {
        display: "gpt-oss-120b",
        provider: "OpenAI",
        usage_name: "openai.gpt-oss-120b-mantle",
        model_id: "openai.gpt-oss-120b-1:0",
        product_code: Some("AmazonBedrockFoundationModels"),
        price: [1_500, 6_000, 0, 0],
    },
    BaseModel {
        display: "Nova Pro",
        provider: "Amazon",
        usage_name: "NovaPro",
        model_id: "amazon.nova-pro-v1:0",
        product_code: Some("AmazonBedrock"),
        price: [8_000, 32_000, 2_000, 0],
    },
    BaseModel {
        display: "Claude Sonnet 4.5",
        provider: "Anthropic",
        usage_name: "Claude4.5Sonnet",
        model_id: "anthropic.claude-sonnet-4-5",
        product_code: None,
        price: [30_000, 150_000, 3_000, 37_500],
    },
    BaseModel {
        display: "DeepSeek-R1",
        provider: "DeepSeek",
        usage_name: "DeepSeek-R1",
        model_id: "deepseek.r1-v1:0",
        product_code: Some("AmazonBedrockFoundationModels"),
        price: [13_500, 54_000, 0, 0],
    },
    BaseModel {
        display: "Nova Micro",
        provider: "Amazon",
        usage_name: "NovaMicro",
        model_id: "amazon.nova-micro-v1:0",
        product_code: Some("AmazonBedrock"),
        price: [350, 1_400, 88, 0],
    },
    BaseModel {
        display: "Mistral Large 2",
        provider: "Mistral AI",
        usage_name: "MistralLarge2",
        model_id: "mistral.mistral-large-2407-v1:0",
        product_code: Some("AmazonBedrockService"),
        price: [20_000, 60_000, 0, 0],
    },
    BaseModel {
        display: "Titan Text Embeddings V2",
        provider: "Amazon",
        usage_name: "TitanEmbeddingsV2-Text",
        model_id: "amazon.titan-embed-text-v2:0",
        product_code: Some("AmazonBedrock"),
        price: [200, 0, 0, 0],
    },
    BaseModel {
        display: "Llama 4 Maverick 17B",
        provider: "Meta",
        usage_name: "Llama4-Maverick-17B",
        model_id: "meta.llama4-maverick-17b-instruct-v1:0",
        product_code: Some("AmazonBedrockService"),
        price: [2_400, 9_700, 0, 0],
    },
    BaseModel {
        display: "Command R+",
        provider: "Cohere",
        usage_name: "CommandR-Plus",
        model_id: "cohere.command-r-plus-v1:0",
        product_code: Some("AmazonBedrockService"),
        price: [25_000, 100_000, 0, 0],
    },
    BaseModel {
        display: "Qwen3 Coder 480B",
        provider: "Qwen",
        usage_name: "Qwen3-Coder-480B",
        model_id: "qwen.qwen3-coder-480b-a35b-v1:0",
        product_code: Some("AmazonBedrockFoundationModels"),
        price: [2_200, 18_000, 0, 0],
    },
    BaseModel {
        display: "Nova Premier",
        provider: "Amazon",
        usage_name: "NovaPremier",
        model_id: "amazon.nova-premier-v1:0",
        product_code: Some("AmazonBedrock"),
        price: [25_000, 125_000, 6_250, 0],
    },
    BaseModel {
        display: "Claude 3.5 Haiku",
        provider: "Anthropic",
        usage_name: "Claude3.5Haiku",
        model_id: "anthropic.claude-3-5-haiku-20241022-v1:0",
        product_code: Some("AmazonBedrock"),
        price: [8_000, 40_000, 800, 10_000],
    },
];

const REGIONS: [(&str, &str, &str); 4] = [
    ("USE1", "us-east-1", "US East (N. Virginia)"),
    ("USW2", "us-west-2", "US West (Oregon)"),
    ("EUC1", "eu-central-1", "EU (Frankfurt)"),
    ("APN1", "ap-northeast-1", "Asia Pacific (Tokyo)"),
];
/// Token kinds as `product['inference_type']` names them.
const KINDS: [&str; 4] = [
    "Input tokens",
    "Output tokens",
    "Cache read input tokens",
    "Cache write input tokens",
];
const NATIVE_KIND_SUFFIX: [&str; 4] = [
    "input-tokens",
    "output-tokens",
    "cache-read-input-token-count",
    "cache-write-input-token-count",
];
const MP_KIND: [&str; 4] = [
    "InputTokenCount",
    "OutputTokenCount",
    "CacheReadInputTokenCount",
    "CacheWriteInputTokenCount",
];
const MP_UNITS: [&str; 4] = [
    "Million Input Tokens",
    "Million Output Tokens",
    "Million Cache Read Input Tokens",
    "Million Cache Write Input Tokens",
];
const OPERATIONS: [&str; 4] = [
    "InvokeModelInference",
    "InvokeModelStreamingInference",
    "Converse",
    "ConverseStream",
];

/// What is constant for one model offering and token kind.
struct Priced {
    usage_type: String,
    description: String,
    sku: String,
    rate_code: String,
    rate_id: String,
    /// Per-token price in 1e-10 units, USD and EUR.
    price_usd: i64,
    price_eur: i64,
    rate_usd: String,
    rate_eur: String,
    rate_net_usd: String,
    rate_net_eur: String,
    product: Vec<(String, String)>,
}

/// One model offering: a model in a region and tier.
struct Offering {
    marketplace: bool,
    product_code: String,
    product_name: String,
    region_code: &'static str,
    location: &'static str,
    tier: Tier,
    /// Per token kind; `None` when the model has no such kind.
    kinds: [Option<Priced>; 4],
    /// `line_item_resource_id` per account.
    resource_ids: Vec<String>,
    /// Expected line items per activation (token kinds, cache kinds by chance).
    expected_kinds: f64,
    /// Popularity when callers pick their models.
    popularity: f64,
}

const CACHE_READ_CHANCE: f64 = 0.6;
const CACHE_WRITE_CHANCE: f64 = 0.35;

struct Caller {
    arn: String,
    account: usize,
    /// Every tag entry of its line items (principal tags and account tags).
    tags: Vec<(String, String)>,
    resource_tags: Vec<(String, String)>,
    offerings: Vec<usize>,
    weight: f64,
}

struct TagKey {
    key: &'static str,
    values: Vec<String>,
    /// Chance that a tagged caller has the key.
    share: f64,
    /// `accountTag/` and `costCategory/` keys come from the account, not the caller.
    per_account: bool,
}

const TEAM_NAMES: [&str; 40] = [
    "search",
    "support-bot",
    "risk",
    "marketing",
    "data-science",
    "platform",
    "Zürich-Forschung",
    "チーム-α",
    "payments",
    "fraud",
    "growth",
    "docs",
    "mobile",
    "web",
    "ml-infra",
    "security",
    "legal-ai",
    "hr-tools",
    "finance-ops",
    "customer-360",
    "recommendations",
    "ads",
    "content",
    "translation",
    "voice",
    "vision",
    "code-assist",
    "devex",
    "sre",
    "analytics",
    "bi",
    "partner-eng",
    "sales-ops",
    "pricing",
    "logistics",
    "catalog",
    "onboarding",
    "research",
    "équipe-données",
    "labs",
];

fn tag_catalog(count: usize) -> Vec<TagKey> {
    let list = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i:02}")).collect();
    let fixed = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect();
    let all = vec![
        TagKey {
            key: TEAM_TAG_KEY,
            values: fixed(&TEAM_NAMES),
            share: 0.95,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/cost-center",
            values: (0..30).map(|i| format!("CC-{}", 1001 + i * 37)).collect(),
            share: 0.85,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/project",
            values: list("proj-", 150),
            share: 0.75,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/env",
            values: fixed(&["prod", "staging", "dev", "sandbox"]),
            share: 0.8,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/owner",
            values: (0..400).map(|i| format!("owner{i}@example.com")).collect(),
            share: 0.25,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/department",
            values: list("dept-", 12),
            share: 0.3,
            per_account: false,
        },
        TagKey {
            key: "accountTag/Environment",
            values: fixed(&["production", "non-production", "sandbox"]),
            share: 1.0,
            per_account: true,
        },
        TagKey {
            key: "iamPrincipal/application",
            values: list("app-", 80),
            share: 0.2,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/business unit",
            values: fixed(&["Retail", "Cloud", "Devices", "Corporate", "Ads", "Média"]),
            share: 0.15,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/data:classification",
            values: fixed(&["public", "internal", "confidential", "restricted"]),
            share: 0.15,
            per_account: false,
        },
        TagKey {
            key: "costCategory/BusinessUnit",
            values: fixed(&["Consumer", "Enterprise", "Shared"]),
            share: 1.0,
            per_account: true,
        },
        TagKey {
            key: "resourceTags/Project",
            values: list("rt-proj-", 50),
            share: 0.15,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/it's \"quoted\"",
            values: fixed(&["O'Brien", "a\"b", "x:y=z", "Ünïcødé 🚀", "plain"]),
            share: 0.1,
            per_account: false,
        },
        TagKey {
            key: "userAttribute/department",
            values: list("ua-dept-", 10),
            share: 0.1,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/Team",
            values: fixed(&TEAM_NAMES[..10]),
            share: 0.05,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/région",
            values: fixed(&["Île-de-France", "Bayern", "東京", "Ontario"]),
            share: 0.1,
            per_account: false,
        },
        TagKey {
            key: "resourceTags/user:Name",
            values: list("resource-", 60),
            share: 0.1,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/compliance",
            values: fixed(&["pci", "hipaa", "sox", "none"]),
            share: 0.1,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/budget-owner",
            values: (0..25).map(|i| format!("vp{i}@example.com")).collect(),
            share: 0.1,
            per_account: false,
        },
        TagKey {
            key: "iamPrincipal/tier",
            values: fixed(&["gold", "silver", "bronze"]),
            share: 0.1,
            per_account: false,
        },
    ];
    all.into_iter().take(count.min(20)).collect()
}

struct Org {
    accounts: Vec<Account>,
    offerings: Vec<Offering>,
    callers: Vec<Caller>,
}

/// Base32 (RFC 4648, lower case) of random bits, like real `identity_line_item_id`s.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn random_token(rng: &mut SmallRng, len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

fn rate_text(price: i64) -> String {
    // Per million tokens, ten decimals as CUR writes rates.
    format!("{:.10}", price as f64 / 1e4)
}

fn offerings(rng: &mut SmallRng, count: usize, accounts: &[Account]) -> Vec<Offering> {
    let tiers_by_round = [
        Tier::Standard,
        Tier::Global,
        Tier::Batch,
        Tier::Flex,
        Tier::Geo,
        Tier::Priority,
    ];
    let mut mp_codes: Vec<String> = Vec::new();
    (0..count.max(1))
        .map(|v| {
            let base_index = v % BASE_MODELS.len();
            let base = &BASE_MODELS[base_index];
            let round = v / BASE_MODELS.len();
            let tier = tiers_by_round[round % tiers_by_round.len()];
            let (prefix, region_code, location) = REGIONS[(base_index + round) % REGIONS.len()];
            let marketplace = base.product_code.is_none();
            let product_code = match base.product_code {
                Some(code) => code.to_owned(),
                None => {
                    // One opaque Marketplace product code per Claude model.
                    while mp_codes.len() <= base_index {
                        mp_codes.push(random_token(
                            rng,
                            25,
                            b"abcdefghijklmnopqrstuvwxyz0123456789",
                        ));
                    }
                    mp_codes[base_index].clone()
                }
            };
            let product_name = if marketplace {
                format!("{} (Amazon Bedrock Edition)", base.display)
            } else {
                "Amazon Bedrock".to_owned()
            };
            let (num, den) = tier.price_factor();
            let kinds = std::array::from_fn(|kind| {
                let list = base.price[kind];
                if list == 0 {
                    return None;
                }
                let price_usd = list * num / den;
                let price_eur = price_usd * 92 / 100;
                let usage_type = if marketplace {
                    let routing = if tier == Tier::Global { "_Global" } else { "" };
                    let batch = if tier == Tier::Batch { "_Batch" } else { "" };
                    format!(
                        "{prefix}-MP:{prefix}_{}{batch}{routing}-Units",
                        MP_KIND[kind]
                    )
                } else {
                    format!(
                        "{prefix}-{}-{}{}",
                        base.usage_name,
                        NATIVE_KIND_SUFFIX[kind],
                        tier.suffix()
                    )
                };
                let description = if marketplace {
                    format!("{product_name}|{region_code}|{}", MP_UNITS[kind])
                } else {
                    format!(
                        "${} per 1M {} for {} in {location}",
                        (price_usd as f64 / 1e4),
                        KINDS[kind].to_lowercase(),
                        base.display
                    )
                };
                let sku = random_token(rng, 16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
                let rate_code = format!("{sku}.JRTCKXETXF.6YS6EN2CT7");
                let rate_id = rng
                    .random_range(10_000_000_000_u64..99_999_999_999)
                    .to_string();
                let mut product = vec![("product_name".to_owned(), product_name.clone())];
                if !marketplace {
                    product.push(("model".to_owned(), base.display.to_owned()));
                }
                product.push(("provider".to_owned(), base.provider.to_owned()));
                product.push(("inference_type".to_owned(), KINDS[kind].to_owned()));
                product.push(("region".to_owned(), region_code.to_owned()));
                product.push(("servicename".to_owned(), "Amazon Bedrock".to_owned()));
                let net = if marketplace {
                    price_usd
                } else {
                    price_usd - price_usd / 20
                };
                Some(Priced {
                    usage_type,
                    description,
                    sku,
                    rate_code,
                    rate_id,
                    price_usd,
                    price_eur,
                    rate_usd: rate_text(price_usd),
                    rate_eur: rate_text(price_eur),
                    rate_net_usd: rate_text(net),
                    rate_net_eur: rate_text(net * 92 / 100),
                    product,
                })
            });
            let has = |k: usize| base.price[k] != 0;
            let expected_kinds = f64::from(u8::from(has(0)))
                + f64::from(u8::from(has(1)))
                + if has(2) { CACHE_READ_CHANCE } else { 0.0 }
                + if has(3) { CACHE_WRITE_CHANCE } else { 0.0 };
            let resource_ids = accounts
                .iter()
                .map(|a| match tier {
                    Tier::Global => format!(
                        "arn:aws:bedrock:{region_code}:{}:inference-profile/global.{}",
                        a.id, base.model_id
                    ),
                    Tier::Geo => format!(
                        "arn:aws:bedrock:{region_code}:{}:inference-profile/{}.{}",
                        a.id,
                        &region_code[..2],
                        base.model_id
                    ),
                    _ => format!(
                        "arn:aws:bedrock:{region_code}::foundation-model/{}",
                        base.model_id
                    ),
                })
                .collect();
            Offering {
                marketplace,
                product_code,
                product_name,
                region_code,
                location,
                tier,
                kinds,
                resource_ids,
                expected_kinds,
                popularity: 1.0 / (1.0 + v as f64 * 0.25),
            }
        })
        .collect()
}

const FIRST_NAMES: [&str; 32] = [
    "alice", "bob", "chen", "dmitri", "eva", "farah", "gustavo", "hana", "ivan", "julia", "kofi",
    "lena", "mateo", "noor", "oliver", "priya", "quentin", "rosa", "sven", "tariq", "uma",
    "victor", "wen", "ximena", "yusuf", "zoë", "李雷", "amélie", "bjørn", "chloé", "dong", "elif",
];
const LAST_NAMES: [&str; 16] = [
    "smith", "garcia", "wang", "mueller", "kim", "okafor", "rossi", "silva", "tanaka", "novak",
    "haddad", "cohen", "ivanova", "dubois", "larsen", "patel",
];
const APP_ROLES: [&str; 12] = [
    "chatbot-prod",
    "rag-indexer",
    "doc-summarizer",
    "fraud-scorer",
    "ecs-task-translator",
    "lambda-classifier",
    "search-reranker",
    "support-agent",
    "code-review-bot",
    "batch-enricher",
    "voice-transcriber",
    "eks-inference-gateway",
];

fn pick_weighted(rng: &mut SmallRng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

fn build_org(cfg: &ScaleConfig) -> Org {
    let mut rng = SmallRng::seed_from_u64(cfg.seed ^ 0x5ca1_ab1e);
    let tag_keys = tag_catalog(cfg.tag_keys);
    let (year, month) = cfg.first_period;
    let accounts: Vec<Account> = (0..ACCOUNTS)
        .map(|i| {
            let id = format!(
                "{:012}",
                200_000_000_000_u64 + rng.random_range(0..99_999_999_999)
            );
            let eur = i == EUR_ACCOUNT;
            let mut tags = Vec::new();
            let mut cost_category = Vec::new();
            for key in tag_keys.iter().filter(|k| k.per_account) {
                let value = key.values[i % key.values.len()].clone();
                if let Some(name) = key.key.strip_prefix("costCategory/") {
                    cost_category.push((name.to_owned(), value.clone()));
                }
                tags.push((key.key.to_owned(), value));
            }
            let ec2_instances = (0..40)
                .map(|_| format!("i-0{}", random_token(&mut rng, 16, b"0123456789abcdef")))
                .collect();
            let buckets = (0..12)
                .map(|b| {
                    format!(
                        "{}-{}-{b}",
                        ACCOUNT_NAMES[i],
                        ["logs", "data", "models"][b % 3]
                    )
                })
                .collect();
            Account {
                id,
                name: ACCOUNT_NAMES[i],
                currency: if eur { "EUR" } else { "USD" },
                invoicing_entity: if eur {
                    "Amazon Web Services EMEA SARL"
                } else {
                    "Amazon Web Services, Inc."
                },
                invoice_aws: if eur {
                    format!(
                        "EUINDE{}-{:06}",
                        year % 100,
                        100_000 + month * 10 + i as u32
                    )
                } else {
                    format!("{}{:02}{:07}", year, month, 2_000_000 + i)
                },
                invoice_mp: format!("{}{:02}{:07}", year, month, 9_000_000 + i),
                tags,
                cost_category,
                ec2_instances,
                buckets,
            }
        })
        .collect();
    let offerings = offerings(&mut rng, cfg.models, &accounts);
    let popularity: Vec<f64> = offerings.iter().map(|o| o.popularity).collect();
    let account_weights: Vec<f64> = ACCOUNT_WEIGHTS.iter().map(|w| f64::from(*w)).collect();

    // About 60 roles, each in one account: a few SSO permission sets used by people
    // (sessions named after them) and many application roles.
    let role_count = 60.min(cfg.callers.max(1));
    let roles: Vec<(String, usize, bool)> = (0..role_count)
        .map(|r| {
            let account = pick_weighted(&mut rng, &account_weights);
            let sso = r % 5 == 0;
            let name = if sso {
                format!(
                    "AWSReservedSSO_{}_{}",
                    ["BedrockUsers", "DataScience", "Developers", "PowerUser"][r / 5 % 4],
                    random_token(&mut rng, 16, b"0123456789abcdef")
                )
            } else {
                format!("{}-{}", APP_ROLES[r % APP_ROLES.len()], r / APP_ROLES.len())
            };
            (name, account, sso)
        })
        .collect();
    // People log in through SSO roles far more often than apps get their own role.
    let role_weights: Vec<f64> = roles
        .iter()
        .map(|(_, _, sso)| if *sso { 12.0 } else { 1.0 })
        .collect();
    let mut roots = [false; ACCOUNTS];
    let callers = (0..cfg.callers)
        .map(|i| {
            let person = format!(
                "{}.{}{}",
                FIRST_NAMES[i % FIRST_NAMES.len()],
                LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()],
                i / (FIRST_NAMES.len() * LAST_NAMES.len())
            );
            let mut account = pick_weighted(&mut rng, &account_weights);
            let roll = rng.random_range(0..1000);
            let arn = if roll < 750 || (roll >= 985 && roots[account]) {
                let role = pick_weighted(&mut rng, &role_weights);
                let (name, role_account, sso) = &roles[role];
                account = *role_account;
                let session = if *sso {
                    format!("{person}@example.com")
                } else {
                    match i % 3 {
                        0 => format!("app-{i}"),
                        1 => format!("i-0{}", random_token(&mut rng, 16, b"0123456789abcdef")),
                        _ => format!("botocore-session-{}", 1_767_225_600 + i * 7919),
                    }
                };
                format!(
                    "arn:aws:sts::{}:assumed-role/{name}/{session}",
                    accounts[account].id
                )
            } else if roll < 900 {
                let id = &accounts[account].id;
                match i % 4 {
                    0 => format!(
                        "arn:aws:iam::{id}:user/BedrockAPIKey-{}",
                        random_token(&mut rng, 4, b"abcdefghijklmnopqrstuvwxyz0123456789")
                    ),
                    1 => format!("arn:aws:iam::{id}:user/ops/{person}"),
                    _ => format!("arn:aws:iam::{id}:user/{person}"),
                }
            } else if roll < 940 {
                format!(
                    "arn:aws:iam::{}:role/service-role/{}-{i}",
                    accounts[account].id,
                    APP_ROLES[i % APP_ROLES.len()]
                )
            } else if roll < 985 {
                format!(
                    "arn:aws:sts::{}:federated-user/partner-{person}",
                    accounts[account].id
                )
            } else {
                roots[account] = true;
                format!("arn:aws:iam::{}:root", accounts[account].id)
            };
            let mut tags = Vec::new();
            let mut resource_tags = Vec::new();
            let tagged = rng.random_bool(0.9);
            for key in &tag_keys {
                if key.per_account {
                    continue;
                }
                if tagged && rng.random_bool(key.share) {
                    let value = key.values[rng.random_range(0..key.values.len())].clone();
                    if let Some(name) = key.key.strip_prefix("resourceTags/") {
                        resource_tags.push((
                            name.replace(':', "_").to_lowercase().replace(' ', "_"),
                            value.clone(),
                        ));
                    }
                    tags.push((key.key.to_owned(), value));
                }
            }
            tags.extend(accounts[account].tags.iter().cloned());
            let wanted = 1 + rng.random_range(0..3).min(offerings.len() - 1);
            let mut chosen: Vec<usize> = Vec::with_capacity(wanted);
            while chosen.len() < wanted {
                let o = pick_weighted(&mut rng, &popularity);
                if !chosen.contains(&o) {
                    chosen.push(o);
                }
            }
            // Heavy-tailed activity: a few callers run all day, most now and then.
            let weight = rng.random_range(0.002_f64..1.0).powf(-0.8);
            Caller {
                arn,
                account,
                tags,
                resource_tags,
                offerings: chosen,
                weight,
            }
        })
        .collect();
    Org {
        accounts,
        offerings,
        callers,
    }
}

// ------------------------------------------------------------------------------------
// One line item, and the ~130 columns it is written as.
// ------------------------------------------------------------------------------------

type Entries = [(String, String)];

/// What kind of line item a row is; drives the filler columns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bedrock,
    Provisioned,
    Tax,
    Edp,
    Credit,
    Other,
    /// EC2 usage covered by a savings plan.
    SavingsPlan,
    /// EC2 usage covered by a reservation.
    Reserved,
}

/// Per-service constants of non-Bedrock line items.
struct OtherService {
    code: &'static str,
    name: &'static str,
    family: &'static str,
    usage_type: &'static str,
    operation: &'static str,
    unit: &'static str,
    instance_type: &'static str,
    /// Price per unit in 1e-10 USD.
    price: i64,
    /// Usage per hour (range of units).
    amount: (f64, f64),
}

const OTHER_SERVICES: [OtherService; 10] = [
    OtherService {
        code: "AmazonEC2",
        name: "Amazon Elastic Compute Cloud",
        family: "Compute Instance",
        usage_type: "USE1-BoxUsage:m6i.xlarge",
        operation: "RunInstances",
        unit: "Hrs",
        instance_type: "m6i.xlarge",
        price: 1_920_000_000,
        amount: (1.0, 1.0),
    },
    OtherService {
        code: "AmazonEC2",
        name: "Amazon Elastic Compute Cloud",
        family: "Compute Instance",
        usage_type: "USE1-BoxUsage:g5.2xlarge",
        operation: "RunInstances",
        unit: "Hrs",
        instance_type: "g5.2xlarge",
        price: 12_120_000_000,
        amount: (1.0, 1.0),
    },
    OtherService {
        code: "AmazonEC2",
        name: "Amazon Elastic Compute Cloud",
        family: "Data Transfer",
        usage_type: "USE1-DataTransfer-Out-Bytes",
        operation: "RunInstances",
        unit: "GB",
        instance_type: "",
        price: 900_000_000,
        amount: (0.001, 40.0),
    },
    OtherService {
        code: "AmazonS3",
        name: "Amazon Simple Storage Service",
        family: "Storage",
        usage_type: "USE1-TimedStorage-ByteHrs",
        operation: "StandardStorage",
        unit: "GB-Mo",
        instance_type: "",
        price: 230_000_000,
        amount: (0.01, 900.0),
    },
    OtherService {
        code: "AmazonS3",
        name: "Amazon Simple Storage Service",
        family: "API Request",
        usage_type: "USE1-Requests-Tier1",
        operation: "PutObject",
        unit: "Requests",
        instance_type: "",
        price: 50_000,
        amount: (1.0, 200_000.0),
    },
    OtherService {
        code: "AmazonSageMaker",
        name: "Amazon SageMaker",
        family: "ML Instance",
        usage_type: "USE1-ml.g5.2xlarge-hosting",
        operation: "RunInstance",
        unit: "Hrs",
        instance_type: "ml.g5.2xlarge",
        price: 15_150_000_000,
        amount: (1.0, 1.0),
    },
    OtherService {
        code: "AWSLambda",
        name: "AWS Lambda",
        family: "Serverless",
        usage_type: "USE1-Lambda-GB-Second",
        operation: "Invoke",
        unit: "Lambda-GB-Second",
        instance_type: "",
        price: 166_667,
        amount: (10.0, 500_000.0),
    },
    OtherService {
        code: "AmazonRDS",
        name: "Amazon Relational Database Service",
        family: "Database Instance",
        usage_type: "USE1-InstanceUsage:db.r6g.large",
        operation: "CreateDBInstance:0016",
        unit: "Hrs",
        instance_type: "db.r6g.large",
        price: 2_580_000_000,
        amount: (1.0, 1.0),
    },
    OtherService {
        code: "AmazonDynamoDB",
        name: "Amazon DynamoDB",
        family: "Amazon DynamoDB PayPerRequest Throughput",
        usage_type: "USE1-ReadRequestUnits",
        operation: "PayPerRequestThroughput",
        unit: "ReadRequestUnits",
        instance_type: "",
        price: 1_250,
        amount: (100.0, 5_000_000.0),
    },
    OtherService {
        code: "AmazonCloudWatch",
        name: "AmazonCloudWatch",
        family: "Data Payload",
        usage_type: "USE1-DataProcessing-Bytes",
        operation: "PutLogEvents",
        unit: "GB",
        instance_type: "",
        price: 5_000_000_000,
        amount: (0.001, 20.0),
    },
];

/// The values of one line item; columns read them through [`Column::get`].
struct Line<'a> {
    id: String,
    interval: &'a str,
    period_start: i64,
    period_end: i64,
    start: i64,
    end: i64,
    account: &'a Account,
    entity: &'static str,
    kind: Kind,
    line_type: &'static str,
    product_code: &'a str,
    usage_type: &'a str,
    operation: &'a str,
    resource_id: Option<&'a str>,
    principal: Option<&'a str>,
    description: &'a str,
    amount: f64,
    unblended: f64,
    net: f64,
    public_cost: f64,
    rate: &'a str,
    net_rate: &'a str,
    unit: Option<&'a str>,
    family: Option<&'a str>,
    region: Option<&'a str>,
    location: &'a str,
    servicecode: &'a str,
    servicename: &'a str,
    instance_type: &'a str,
    sku: &'a str,
    rate_code: &'a str,
    rate_id: &'a str,
    legal_entity: &'a str,
    product: &'a Entries,
    tags: &'a Entries,
    resource_tags: &'a Entries,
    cost_category: &'a Entries,
    discount: &'a Entries,
    az: &'a str,
}

#[derive(Clone, Copy)]
enum Cell<'a> {
    Null,
    S(&'a str),
    F(f64),
    T(i64),
    M(&'a Entries),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Utf8,
    Float,
    Timestamp,
    Map,
}

type Getter = for<'b> fn(&'b Line<'b>) -> Cell<'b>;

struct Column {
    name: &'static str,
    ty: Type,
    get: Getter,
}

const EMPTY: &Entries = &[];

fn col(name: &'static str, ty: Type, get: Getter) -> Column {
    Column { name, ty, get }
}

fn opt(v: Option<&str>) -> Cell<'_> {
    v.map_or(Cell::Null, Cell::S)
}

/// A text column holding `$value` on line items of kind `$kind`, "" on the others.
macro_rules! text_when {
    ($l:ident, $kind:pat, $value:expr) => {
        |$l| Cell::S(if matches!($l.kind, $kind) { $value } else { "" })
    };
}

/// A double column holding `$value` on line items of kind `$kind`, 0.0 on the others.
macro_rules! amount_when {
    ($l:ident, $kind:pat, $value:expr) => {
        |$l| {
            Cell::F(if matches!($l.kind, $kind) {
                $value
            } else {
                0.0
            })
        }
    };
}

/// Columns that are 0.0 on every line item of this organisation.
const ZERO_AMOUNTS: [&str; 18] = [
    "discount_bundled_discount",
    "reservation_amortized_upfront_cost_for_usage",
    "reservation_amortized_upfront_fee_for_billing_period",
    "reservation_net_amortized_upfront_cost_for_usage",
    "reservation_net_amortized_upfront_fee_for_billing_period",
    "reservation_net_unused_amortized_upfront_fee_for_billing_period",
    "reservation_net_unused_recurring_fee",
    "reservation_net_upfront_value",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_normalized_unit_quantity",
    "reservation_unused_quantity",
    "reservation_unused_recurring_fee",
    "reservation_upfront_value",
    "savings_plan_amortized_upfront_commitment_for_billing_period",
    "savings_plan_net_amortized_upfront_commitment_for_billing_period",
    "savings_plan_net_recurring_commitment_for_billing_period",
    "savings_plan_recurring_commitment_for_billing_period",
    "savings_plan_total_commitment_to_date",
];
/// Split cost allocation columns: NULL without split cost allocation data.
const NULL_AMOUNTS: [&str; 10] = [
    "split_line_item_actual_usage",
    "split_line_item_net_split_cost",
    "split_line_item_net_unused_cost",
    "split_line_item_public_on_demand_split_cost",
    "split_line_item_public_on_demand_unused_cost",
    "split_line_item_reserved_usage",
    "split_line_item_split_cost",
    "split_line_item_split_usage",
    "split_line_item_split_usage_ratio",
    "split_line_item_unused_cost",
];
/// Text columns that are NULL on every line item of this organisation.
const NULL_TEXTS: [&str; 5] = [
    "product_comment",
    "product_fee_code",
    "product_fee_description",
    "product_instancesku",
    "split_line_item_parent_resource_id",
];
/// Text columns that are empty on every line item of this organisation.
const EMPTY_TEXTS: [&str; 4] = [
    "capacity_reservation_capacity_reservation_a_r_n",
    "capacity_reservation_capacity_reservation_status",
    "capacity_reservation_capacity_reservation_type",
    "product_to_region_code",
];

const RI_ARN: &str =
    "arn:aws:ec2:us-east-1:100000000001:reserved-instances/5c7a1f3e-93b2-4d1e-8f5a-2b6c9d0e1f2a";
const SP_ARN: &str =
    "arn:aws:savingsplans::100000000001:savingsplan/9b2f6c1d-7e4a-4c3b-a5d8-0f1e2d3c4b5a";

/// Every column of the files (about 130, as a full CUR 2.0 export), sorted by name.
fn columns() -> Vec<Column> {
    use Kind::{Edp, Reserved, SavingsPlan, Tax};
    use Type::{Float, Map, Timestamp, Utf8};
    let mut all = vec![
        col("bill_bill_type", Utf8, |_| Cell::S("Anniversary")),
        col("bill_billing_entity", Utf8, |l| Cell::S(l.entity)),
        col("bill_billing_period_end_date", Timestamp, |l| {
            Cell::T(l.period_end)
        }),
        col("bill_billing_period_start_date", Timestamp, |l| {
            Cell::T(l.period_start)
        }),
        col("bill_invoice_id", Utf8, |l| {
            Cell::S(if l.entity == "AWS" {
                &l.account.invoice_aws
            } else {
                &l.account.invoice_mp
            })
        }),
        col("bill_invoicing_entity", Utf8, |l| {
            Cell::S(if l.entity == "AWS" {
                l.account.invoicing_entity
            } else {
                "Amazon Web Services, Inc."
            })
        }),
        col("bill_payer_account_id", Utf8, |_| Cell::S(PAYER)),
        col("bill_payer_account_name", Utf8, |_| {
            Cell::S("Acme Corp Management")
        }),
        col("cost_category", Map, |l| Cell::M(l.cost_category)),
        col("discount", Map, |l| Cell::M(l.discount)),
        col(
            "discount_total_discount",
            Float,
            amount_when!(l, Edp, l.unblended),
        ),
        col("identity_line_item_id", Utf8, |l| Cell::S(&l.id)),
        col("identity_time_interval", Utf8, |l| Cell::S(l.interval)),
        col("line_item_availability_zone", Utf8, |l| Cell::S(l.az)),
        col("line_item_blended_cost", Float, |l| Cell::F(l.unblended)),
        col("line_item_blended_rate", Utf8, |l| Cell::S(l.rate)),
        col("line_item_currency_code", Utf8, |l| {
            Cell::S(l.account.currency)
        }),
        col("line_item_iam_principal", Utf8, |l| opt(l.principal)),
        col("line_item_legal_entity", Utf8, |l| Cell::S(l.legal_entity)),
        col("line_item_line_item_description", Utf8, |l| {
            Cell::S(l.description)
        }),
        col("line_item_line_item_type", Utf8, |l| Cell::S(l.line_type)),
        col("line_item_net_unblended_cost", Float, |l| Cell::F(l.net)),
        col("line_item_net_unblended_rate", Utf8, |l| {
            Cell::S(l.net_rate)
        }),
        col("line_item_normalization_factor", Float, |l| {
            Cell::F(if l.instance_type.is_empty() { 0.0 } else { 8.0 })
        }),
        col("line_item_normalized_usage_amount", Float, |l| {
            Cell::F(if l.instance_type.is_empty() {
                0.0
            } else {
                l.amount * 8.0
            })
        }),
        col("line_item_operation", Utf8, |l| Cell::S(l.operation)),
        col("line_item_product_code", Utf8, |l| Cell::S(l.product_code)),
        col("line_item_resource_id", Utf8, |l| opt(l.resource_id)),
        col("line_item_tax_type", Utf8, |l| {
            Cell::S(match (l.kind, l.account.currency) {
                (Tax, "EUR") => "VAT",
                (Tax, _) => "Sales Tax",
                _ => "",
            })
        }),
        col("line_item_unblended_cost", Float, |l| Cell::F(l.unblended)),
        col("line_item_unblended_rate", Utf8, |l| Cell::S(l.rate)),
        col("line_item_usage_account_id", Utf8, |l| {
            Cell::S(&l.account.id)
        }),
        col("line_item_usage_account_name", Utf8, |l| {
            Cell::S(l.account.name)
        }),
        col("line_item_usage_amount", Float, |l| Cell::F(l.amount)),
        col("line_item_usage_end_date", Timestamp, |l| Cell::T(l.end)),
        col("line_item_usage_start_date", Timestamp, |l| {
            Cell::T(l.start)
        }),
        col("line_item_usage_type", Utf8, |l| Cell::S(l.usage_type)),
        col("pricing_currency", Utf8, |_| Cell::S("USD")),
        col(
            "pricing_lease_contract_length",
            Utf8,
            text_when!(l, Reserved | SavingsPlan, "1yr"),
        ),
        col(
            "pricing_offering_class",
            Utf8,
            text_when!(l, Reserved, "standard"),
        ),
        col("pricing_public_on_demand_cost", Float, |l| {
            Cell::F(l.public_cost)
        }),
        col("pricing_public_on_demand_rate", Utf8, |l| Cell::S(l.rate)),
        col(
            "pricing_purchase_option",
            Utf8,
            text_when!(l, Reserved | SavingsPlan, "No Upfront"),
        ),
        col("pricing_rate_code", Utf8, |l| Cell::S(l.rate_code)),
        col("pricing_rate_id", Utf8, |l| Cell::S(l.rate_id)),
        col("pricing_term", Utf8, |l| {
            Cell::S(match l.kind {
                Kind::Tax | Kind::Edp | Kind::Credit => "",
                Kind::Reserved => "Reserved",
                _ => "OnDemand",
            })
        }),
        col("pricing_unit", Utf8, |l| opt(l.unit)),
        col("product", Map, |l| Cell::M(l.product)),
        col("product_from_location", Utf8, |l| {
            Cell::S(if l.usage_type.contains("DataTransfer") {
                l.location
            } else {
                ""
            })
        }),
        col("product_from_location_type", Utf8, |l| {
            Cell::S(if l.usage_type.contains("DataTransfer") {
                "AWS Region"
            } else {
                ""
            })
        }),
        col("product_from_region_code", Utf8, |l| {
            Cell::S(if l.usage_type.contains("DataTransfer") {
                "us-east-1"
            } else {
                ""
            })
        }),
        col("product_instance_family", Utf8, |l| {
            Cell::S(match l.instance_type.split('.').next() {
                Some("m6i") => "General purpose",
                Some("g5" | "ml") => "GPU instance",
                Some("db") => "Memory optimized",
                _ => "",
            })
        }),
        col("product_instance_type", Utf8, |l| Cell::S(l.instance_type)),
        col("product_location", Utf8, |l| Cell::S(l.location)),
        col("product_location_type", Utf8, |l| {
            Cell::S(if l.location.is_empty() {
                ""
            } else {
                "AWS Region"
            })
        }),
        col("product_operation", Utf8, |l| Cell::S(l.operation)),
        col("product_pricing_unit", Utf8, |l| opt(l.unit)),
        col("product_product_family", Utf8, |l| opt(l.family)),
        col("product_region_code", Utf8, |l| opt(l.region)),
        col("product_servicecode", Utf8, |l| Cell::S(l.servicecode)),
        col("product_servicename", Utf8, |l| Cell::S(l.servicename)),
        col("product_sku", Utf8, |l| Cell::S(l.sku)),
        col("product_to_location", Utf8, |l| {
            Cell::S(if l.usage_type.contains("DataTransfer") {
                "External"
            } else {
                ""
            })
        }),
        col("product_to_location_type", Utf8, |l| {
            Cell::S(if l.usage_type.contains("DataTransfer") {
                "Other"
            } else {
                ""
            })
        }),
        col("product_usagetype", Utf8, |l| Cell::S(l.usage_type)),
        col(
            "reservation_availability_zone",
            Utf8,
            text_when!(l, Reserved, l.az),
        ),
        col(
            "reservation_effective_cost",
            Float,
            amount_when!(l, Reserved, l.unblended * 0.62),
        ),
        col(
            "reservation_end_time",
            Utf8,
            text_when!(l, Reserved, "2027-01-15T00:00:00.000Z"),
        ),
        col(
            "reservation_modification_status",
            Utf8,
            text_when!(l, Reserved, "Original"),
        ),
        col(
            "reservation_net_effective_cost",
            Float,
            amount_when!(l, Reserved, l.unblended * 0.62),
        ),
        col(
            "reservation_net_recurring_fee_for_usage",
            Float,
            amount_when!(l, Reserved, l.unblended * 0.62),
        ),
        col(
            "reservation_normalized_units_per_reservation",
            Utf8,
            text_when!(l, Reserved, "8"),
        ),
        col(
            "reservation_number_of_reservations",
            Utf8,
            text_when!(l, Reserved, "4"),
        ),
        col(
            "reservation_recurring_fee_for_usage",
            Float,
            amount_when!(l, Reserved, l.unblended * 0.62),
        ),
        col(
            "reservation_reservation_a_r_n",
            Utf8,
            text_when!(l, Reserved, RI_ARN),
        ),
        col(
            "reservation_start_time",
            Utf8,
            text_when!(l, Reserved, "2026-01-15T00:00:00.000Z"),
        ),
        col(
            "reservation_subscription_id",
            Utf8,
            text_when!(l, Reserved | SavingsPlan, "8123456789"),
        ),
        col(
            "reservation_total_reserved_normalized_units",
            Utf8,
            text_when!(l, Reserved, "32"),
        ),
        col(
            "reservation_total_reserved_units",
            Utf8,
            text_when!(l, Reserved, "4"),
        ),
        col(
            "reservation_units_per_reservation",
            Utf8,
            text_when!(l, Reserved, "1"),
        ),
        col("resource_tags", Map, |l| Cell::M(l.resource_tags)),
        col(
            "savings_plan_end_time",
            Utf8,
            text_when!(l, SavingsPlan, "2029-03-01T00:00:00.000Z"),
        ),
        col(
            "savings_plan_instance_type_family",
            Utf8,
            text_when!(l, SavingsPlan, "m6i"),
        ),
        col(
            "savings_plan_net_savings_plan_effective_cost",
            Float,
            amount_when!(l, SavingsPlan, l.unblended * 0.72),
        ),
        col(
            "savings_plan_offering_type",
            Utf8,
            text_when!(l, SavingsPlan, "ComputeSavingsPlans"),
        ),
        col(
            "savings_plan_payment_option",
            Utf8,
            text_when!(l, SavingsPlan, "No Upfront"),
        ),
        col(
            "savings_plan_purchase_term",
            Utf8,
            text_when!(l, SavingsPlan, "3yr"),
        ),
        col(
            "savings_plan_region",
            Utf8,
            text_when!(l, SavingsPlan, "US East (N. Virginia)"),
        ),
        col(
            "savings_plan_savings_plan_a_r_n",
            Utf8,
            text_when!(l, SavingsPlan, SP_ARN),
        ),
        col(
            "savings_plan_savings_plan_effective_cost",
            Float,
            amount_when!(l, SavingsPlan, l.unblended * 0.72),
        ),
        col(
            "savings_plan_savings_plan_rate",
            Float,
            amount_when!(l, SavingsPlan, 0.1382),
        ),
        col(
            "savings_plan_start_time",
            Utf8,
            text_when!(l, SavingsPlan, "2026-03-01T00:00:00.000Z"),
        ),
        col(
            "savings_plan_used_commitment",
            Float,
            amount_when!(l, SavingsPlan, l.unblended * 0.72),
        ),
        col("tags", Map, |l| Cell::M(l.tags)),
    ];
    all.extend(ZERO_AMOUNTS.iter().map(|n| col(n, Float, |_| Cell::F(0.0))));
    all.extend(NULL_AMOUNTS.iter().map(|n| col(n, Float, |_| Cell::Null)));
    all.extend(NULL_TEXTS.iter().map(|n| col(n, Utf8, |_| Cell::Null)));
    all.extend(EMPTY_TEXTS.iter().map(|n| col(n, Utf8, |_| Cell::S(""))));
    all.sort_by_key(|c| c.name);
    all
}

fn schema(columns: &[Column]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| match c.ty {
            Type::Utf8 => Field::new(c.name, DataType::Utf8, true),
            Type::Float => Field::new(c.name, DataType::Float64, true),
            Type::Timestamp => Field::new(
                c.name,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Type::Map => map_field(c.name),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

enum Builder {
    Utf8(StringBuilder),
    Float(Float64Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Map(Box<MapBuilder<StringBuilder, StringBuilder>>),
}

impl Builder {
    fn new(ty: Type) -> Self {
        match ty {
            Type::Utf8 => Builder::Utf8(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)),
            Type::Float => Builder::Float(Float64Builder::with_capacity(BATCH_ROWS)),
            Type::Timestamp => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS))
            }
            Type::Map => Builder::Map(Box::new(MapBuilder::new(
                Some(MapFieldNames {
                    entry: "key_value".into(),
                    key: "key".into(),
                    value: "value".into(),
                }),
                StringBuilder::new(),
                StringBuilder::new(),
            ))),
        }
    }

    fn append(&mut self, cell: Cell<'_>) -> std::io::Result<()> {
        match (self, cell) {
            (Builder::Utf8(b), Cell::S(v)) => b.append_value(v),
            (Builder::Utf8(b), Cell::Null) => b.append_null(),
            (Builder::Float(b), Cell::F(v)) => b.append_value(v),
            (Builder::Float(b), Cell::Null) => b.append_null(),
            (Builder::Timestamp(b), Cell::T(v)) => b.append_value(v),
            (Builder::Timestamp(b), Cell::Null) => b.append_null(),
            (Builder::Map(b), Cell::M(entries)) => {
                for (k, v) in entries {
                    b.keys().append_value(k);
                    b.values().append_value(v);
                }
                // An empty map, not NULL: that is how exports write "no tags".
                b.append(true).map_err(std::io::Error::other)?;
            }
            (Builder::Map(b), Cell::Null) => b.append(false).map_err(std::io::Error::other)?,
            _ => {
                return Err(std::io::Error::other(
                    "scale generator: a column getter returned a value of the wrong type",
                ));
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish().with_timezone("UTC")),
            Builder::Map(b) => Arc::new(b.finish()),
        }
    }
}

/// Columns written without dictionary encoding: (nearly) every value is distinct.
const PLAIN_COLUMNS: [&str; 6] = [
    "identity_line_item_id",
    "line_item_usage_amount",
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "line_item_blended_cost",
    "pricing_public_on_demand_cost",
];

/// Streams line items of one data file into parquet, a batch at a time.
struct Sink<'c> {
    columns: &'c [Column],
    schema: SchemaRef,
    builders: Vec<Builder>,
    pending: usize,
    rows: usize,
    writer: ArrowWriter<BufWriter<File>>,
}

impl<'c> Sink<'c> {
    fn create(path: &Path, columns: &'c [Column]) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let schema = schema(columns);
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        // Unique per line item: a dictionary would only be tried and dropped.
        for column in PLAIN_COLUMNS {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        let props = props.build();
        let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))
            .map_err(std::io::Error::other)?;
        Ok(Self {
            columns,
            schema,
            builders: columns.iter().map(|c| Builder::new(c.ty)).collect(),
            pending: 0,
            rows: 0,
            writer,
        })
    }

    fn push(&mut self, line: &Line<'_>) -> std::io::Result<()> {
        for (column, builder) in self.columns.iter().zip(&mut self.builders) {
            builder.append((column.get)(line))?;
        }
        self.pending += 1;
        self.rows += 1;
        if self.pending == BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(std::io::Error::other)?;
        self.writer.write(&batch).map_err(std::io::Error::other)?;
        self.pending = 0;
        Ok(())
    }

    fn close(mut self) -> std::io::Result<usize> {
        self.flush()?;
        self.writer.close().map_err(std::io::Error::other)?;
        Ok(self.rows)
    }
}

// ------------------------------------------------------------------------------------
// Planning a billing period and writing one of its data files.
// ------------------------------------------------------------------------------------

/// One data file to write: a billing period and a chunk of it.
struct Job {
    period: usize,
    chunk: usize,
    path: PathBuf,
}

struct JobResult {
    rows: usize,
    bedrock_rows: usize,
    bytes: u64,
}

/// Line items per hour split into integers that add up to `total`, shaped like a
/// working week in UTC (busy afternoons, quiet weekends).
fn hourly_split(total: usize, hours: usize, first_weekday: u32) -> Vec<usize> {
    let weights: Vec<f64> = (0..hours)
        .map(|h| {
            let hour = (h % 24) as f64;
            let weekday = (first_weekday as usize + h / 24) % 7; // 0 = Monday
            let day = if weekday >= 5 { 0.35 } else { 1.0 };
            let curve = 0.35 + (-(hour - 15.0).powi(2) / 18.0).exp();
            day * curve
        })
        .collect();
    let sum: f64 = weights.iter().sum();
    let mut out = Vec::with_capacity(hours);
    let mut acc = 0.0;
    let mut given = 0usize;
    for w in weights {
        acc += w;
        let upto = ((acc / sum) * total as f64).round() as usize;
        let upto = upto.min(total);
        out.push(upto - given);
        given = upto;
    }
    if let Some(last) = out.last_mut() {
        *last += total - given;
    }
    out
}

fn split_even(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// Provisioned throughput line items per account and day.
fn provisioned_per_day(rows_per_month: usize) -> usize {
    (rows_per_month / 2_000_000 + 1).min(3)
}

/// Accounts whose provisioned throughput and fees go to chunk `chunk`.
fn chunk_accounts(chunk: usize, chunks: usize) -> impl Iterator<Item = usize> {
    (0..ACCOUNTS).filter(move |a| a % chunks == chunk)
}

/// Line items per chunk that do not depend on usage: provisioned throughput, tax, EDP
/// and the credit.
fn fixed_rows(chunk: usize, chunks: usize, days: usize, rows_per_month: usize) -> usize {
    let pt = chunk_accounts(chunk, chunks).count() * days * provisioned_per_day(rows_per_month);
    // Per account: tax under AWS and under AWS Marketplace, EDP for USD accounts.
    let fees = 2 * ACCOUNTS + (ACCOUNTS - 1);
    pt + fees + usize::from(chunk == 0)
}

fn money(units: i64) -> f64 {
    units as f64 / 1e10
}

fn fill_id(rng: &mut SmallRng, id: &mut String) {
    id.clear();
    let mut bits = 0u64;
    let mut left = 0;
    for _ in 0..52 {
        if left < 5 {
            bits = rng.random();
            left = 64;
        }
        id.push(char::from(ID_ALPHABET[(bits & 31) as usize]));
        bits >>= 5;
        left -= 5;
    }
}

fn interval(start: chrono::DateTime<Utc>, end: chrono::DateTime<Utc>) -> String {
    format!(
        "{}/{}",
        start.format("%Y-%m-%dT%H:%M:%SZ"),
        end.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

struct Fees {
    /// Usage cost per account, in 1e-10 units: AWS entity, AWS Marketplace.
    usage: Vec<[i64; 2]>,
}

fn write_chunk(
    org: &Org,
    cfg: &ScaleConfig,
    columns: &[Column],
    job: &Job,
    period: (i32, u32),
) -> std::io::Result<JobResult> {
    let chunks = cfg.chunks.max(1);
    let mut rng = SmallRng::seed_from_u64(
        cfg.seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(((job.period as u64) << 32) | job.chunk as u64),
    );
    let period_start = month_start(period.0, period.1);
    let period_end = next_month_start(period.0, period.1);
    let hours = ((period_end - period_start).num_hours()) as usize;
    let days = hours / 24;
    let hour_us = 3_600_000_000_i64;
    let start_us = period_start.timestamp_micros();
    let intervals: Vec<String> = (0..hours)
        .map(|h| {
            let s = period_start + chrono::Duration::hours(h as i64);
            interval(s, s + chrono::Duration::hours(1))
        })
        .collect();
    let day_intervals: Vec<String> = (0..days)
        .map(|d| {
            let s = period_start + chrono::Duration::days(d as i64);
            interval(s, s + chrono::Duration::days(1))
        })
        .collect();
    let month_interval = interval(period_start, period_end);

    // Row budget of this chunk.
    let total = split_even(cfg.rows_per_month, chunks, job.chunk);
    let fixed = fixed_rows(job.chunk, chunks, days, cfg.rows_per_month);
    let other_total = split_even(cfg.rows_per_month / 5, chunks, job.chunk);
    let bedrock_total = total.saturating_sub(fixed + other_total);
    let other_total = total.saturating_sub(fixed + bedrock_total);
    let first_weekday = period_start.weekday().num_days_from_monday();
    let bedrock_hourly = hourly_split(bedrock_total, hours, first_weekday);
    let other_hourly = hourly_split(other_total, hours, first_weekday);

    // The (caller, offering) pairs of this chunk's callers.
    let pairs: Vec<(usize, usize, f64)> = org
        .callers
        .iter()
        .enumerate()
        .filter(|(i, _)| i % chunks == job.chunk)
        .flat_map(|(i, c)| c.offerings.iter().map(move |o| (i, *o, c.weight)))
        .collect();
    let density: f64 = pairs
        .iter()
        .map(|(_, o, w)| w * org.offerings[*o].expected_kinds)
        .sum();

    let mut sink = Sink::create(&job.path, columns)?;
    let mut fees = Fees {
        usage: vec![[0, 0]; ACCOUNTS],
    };
    let mut bedrock_rows = 0usize;
    let mut line = Line {
        id: String::with_capacity(52),
        interval: "",
        period_start: start_us,
        period_end: period_end.timestamp_micros(),
        start: start_us,
        end: start_us,
        account: &org.accounts[0],
        entity: "AWS",
        kind: Kind::Bedrock,
        line_type: "Usage",
        product_code: "",
        usage_type: "",
        operation: "",
        resource_id: None,
        principal: None,
        description: "",
        amount: 0.0,
        unblended: 0.0,
        net: 0.0,
        public_cost: 0.0,
        rate: "",
        net_rate: "",
        unit: None,
        family: None,
        region: None,
        location: "",
        servicecode: "",
        servicename: "",
        instance_type: "",
        sku: "",
        rate_code: "",
        rate_id: "",
        legal_entity: "",
        product: EMPTY,
        tags: EMPTY,
        resource_tags: EMPTY,
        cost_category: EMPTY,
        discount: EMPTY,
        az: "",
    };
    let pt_per_day = provisioned_per_day(cfg.rows_per_month);
    let pt_product: Vec<Vec<(String, String)>> = (0..pt_per_day)
        .map(|m| {
            vec![
                ("product_name".to_owned(), "Amazon Bedrock".to_owned()),
                ("model".to_owned(), BASE_MODELS[m].display.to_owned()),
                ("provider".to_owned(), BASE_MODELS[m].provider.to_owned()),
            ]
        })
        .collect();
    let other_skus: Vec<(String, String)> = OTHER_SERVICES
        .iter()
        .map(|_| {
            let sku = random_token(&mut rng, 16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
            let code = format!("{sku}.JRTCKXETXF.6YS6EN2CT7");
            (sku, code)
        })
        .collect();
    let other_rates: Vec<String> = OTHER_SERVICES
        .iter()
        .map(|s| format!("{:.10}", s.price as f64 / 1e10))
        .collect();
    let fee_description = [
        "Tax for product code AmazonBedrock",
        "Tax for product code Claude (Amazon Bedrock Edition)",
    ];

    for hour in 0..hours {
        let at = start_us + hour as i64 * hour_us;
        line.interval = &intervals[hour];
        line.start = at;
        line.end = at + hour_us;

        // Provisioned throughput of this chunk's accounts, at the start of each day.
        if hour % 24 == 0 {
            let day = hour / 24;
            for account in chunk_accounts(job.chunk, chunks) {
                for (m, product) in pt_product.iter().enumerate() {
                    let acct = &org.accounts[account];
                    let units = 1 + (account + m) as i64 % 3;
                    let cost = units * 24 * 396_000_000_000; // $39.60 per model unit hour
                    let cost = if acct.currency == "EUR" {
                        cost * 92 / 100
                    } else {
                        cost
                    };
                    fill_id(&mut rng, &mut line.id);
                    line.interval = &day_intervals[day];
                    line.end = at + 24 * hour_us;
                    line.account = acct;
                    line.entity = "AWS";
                    line.kind = Kind::Provisioned;
                    line.line_type = "Usage";
                    line.product_code = "AmazonBedrock";
                    line.usage_type = "USE1-ProvisionedThroughput-ModelUnits";
                    line.operation = "ProvisionedThroughput";
                    line.resource_id = None;
                    line.principal = Some("");
                    line.description = "Provisioned throughput model units";
                    line.amount = (24 * units) as f64;
                    line.unblended = money(cost);
                    line.net = money(cost - cost / 20);
                    line.public_cost = money(cost);
                    line.rate = "39.6000000000";
                    line.net_rate = "37.6200000000";
                    line.unit = Some("ModelUnit-Hours");
                    line.family = Some("Amazon Bedrock");
                    line.region = Some("us-east-1");
                    line.location = "US East (N. Virginia)";
                    line.servicecode = "AmazonBedrock";
                    line.servicename = "Amazon Bedrock";
                    line.instance_type = "";
                    line.sku = "PT7QX9KD2M4N8R6Z";
                    line.rate_code = "PT7QX9KD2M4N8R6Z.JRTCKXETXF.6YS6EN2CT7";
                    line.rate_id = "31415926535";
                    line.legal_entity = "Amazon Web Services, Inc.";
                    line.product = product;
                    line.tags = &acct.tags;
                    line.resource_tags = EMPTY;
                    line.cost_category = &acct.cost_category;
                    line.discount = EMPTY;
                    line.az = "";
                    sink.push(&line)?;
                    bedrock_rows += 1;
                    fees.usage[account][0] += cost;
                }
            }
            line.interval = &intervals[hour];
            line.end = at + hour_us;
        }

        // Bedrock usage of callers: walk the pairs from a random place, each active
        // with a chance proportional to its caller's weight, until the hour is full.
        // A second walk uses the next operation, so no two line items of an hour
        // share caller, usage type and operation until every operation is used.
        let mut left = bedrock_hourly[hour];
        if !pairs.is_empty() && left > 0 {
            let scale = left as f64 / density.max(f64::MIN_POSITIVE);
            let offset = rng.random_range(0..pairs.len());
            let mut step = 0usize;
            while left > 0 {
                let pass = step / pairs.len();
                let (caller_index, offering_index, weight) = pairs[(offset + step) % pairs.len()];
                step += 1;
                let chance = if pass >= 8 {
                    1.0
                } else {
                    (scale * weight).min(1.0)
                };
                if rng.random::<f64>() >= chance {
                    continue;
                }
                let caller = &org.callers[caller_index];
                let offering = &org.offerings[offering_index];
                let acct = &org.accounts[caller.account];
                let eur = acct.currency == "EUR";
                for (kind, priced) in offering.kinds.iter().enumerate() {
                    let Some(priced) = priced else { continue };
                    if left == 0 {
                        break;
                    }
                    let chance = match kind {
                        2 => CACHE_READ_CHANCE,
                        3 => CACHE_WRITE_CHANCE,
                        _ => 1.0,
                    };
                    if chance < 1.0 && !rng.random_bool(chance) {
                        continue;
                    }
                    let tokens: i64 = match kind {
                        0 => rng.random_range(1_000..3_000_000),
                        1 => rng.random_range(100..300_000),
                        2 => rng.random_range(10_000..5_000_000),
                        _ => rng.random_range(1_000..500_000),
                    };
                    let price = if eur {
                        priced.price_eur
                    } else {
                        priced.price_usd
                    };
                    let cost = price * tokens;
                    let net = if offering.marketplace {
                        cost
                    } else {
                        cost - cost / 20
                    };
                    fill_id(&mut rng, &mut line.id);
                    line.account = acct;
                    line.entity = if offering.marketplace {
                        "AWS Marketplace"
                    } else {
                        "AWS"
                    };
                    line.kind = Kind::Bedrock;
                    line.line_type = "Usage";
                    line.product_code = &offering.product_code;
                    line.usage_type = &priced.usage_type;
                    line.operation = if offering.tier == Tier::Batch {
                        "CreateModelInvocationJob"
                    } else {
                        OPERATIONS[pass % OPERATIONS.len()]
                    };
                    line.resource_id = Some(&offering.resource_ids[caller.account]);
                    line.principal = Some(&caller.arn);
                    line.description = &priced.description;
                    line.amount = tokens as f64 / 1e6;
                    line.unblended = money(cost);
                    line.net = money(net);
                    line.public_cost = money(cost);
                    line.rate = if eur {
                        &priced.rate_eur
                    } else {
                        &priced.rate_usd
                    };
                    line.net_rate = if eur {
                        &priced.rate_net_eur
                    } else {
                        &priced.rate_net_usd
                    };
                    line.unit = Some(if offering.marketplace {
                        "Units"
                    } else {
                        "1M tokens"
                    });
                    line.family = Some(if offering.marketplace {
                        ""
                    } else {
                        "Amazon Bedrock"
                    });
                    line.region = Some(offering.region_code);
                    line.location = offering.location;
                    line.servicecode = if offering.marketplace {
                        &offering.product_code
                    } else {
                        "AmazonBedrock"
                    };
                    line.servicename = if offering.marketplace {
                        &offering.product_name
                    } else {
                        "Amazon Bedrock"
                    };
                    line.instance_type = "";
                    line.sku = &priced.sku;
                    line.rate_code = &priced.rate_code;
                    line.rate_id = &priced.rate_id;
                    line.legal_entity = if offering.marketplace {
                        "Anthropic, PBC"
                    } else {
                        "Amazon Web Services, Inc."
                    };
                    line.product = &priced.product;
                    line.tags = &caller.tags;
                    line.resource_tags = &caller.resource_tags;
                    line.cost_category = &acct.cost_category;
                    line.discount = EMPTY;
                    line.az = "";
                    sink.push(&line)?;
                    bedrock_rows += 1;
                    left -= 1;
                    fees.usage[caller.account][usize::from(offering.marketplace)] += cost;
                }
            }
        }

        // Other services, without a caller.
        for _ in 0..other_hourly[hour] {
            let s = rng.random_range(0..OTHER_SERVICES.len());
            let service = &OTHER_SERVICES[s];
            let account = rng.random_range(0..ACCOUNTS);
            let acct = &org.accounts[account];
            let amount = if service.amount.0 == service.amount.1 {
                service.amount.0
            } else {
                (rng.random_range(service.amount.0..service.amount.1) * 1e4).round() / 1e4
            };
            let cost = (service.price as f64 * amount).round() as i64;
            let cost = if acct.currency == "EUR" {
                cost * 92 / 100
            } else {
                cost
            };
            let kind = if s == 0 {
                match rng.random_range(0..4) {
                    0 => Kind::SavingsPlan,
                    1 => Kind::Reserved,
                    _ => Kind::Other,
                }
            } else {
                Kind::Other
            };
            fill_id(&mut rng, &mut line.id);
            line.account = acct;
            line.entity = "AWS";
            line.kind = kind;
            line.line_type = match kind {
                Kind::SavingsPlan => "SavingsPlanCoveredUsage",
                Kind::Reserved => "DiscountedUsage",
                _ => "Usage",
            };
            line.product_code = service.code;
            line.usage_type = service.usage_type;
            line.operation = service.operation;
            line.resource_id = Some(match service.code {
                "AmazonEC2" => &acct.ec2_instances[rng.random_range(0..acct.ec2_instances.len())],
                "AmazonS3" => &acct.buckets[rng.random_range(0..acct.buckets.len())],
                _ => acct.name,
            });
            line.principal = Some("");
            line.description = service.name;
            line.amount = amount;
            line.unblended = money(cost);
            line.net = money(cost - cost / 20);
            line.public_cost = money(cost);
            line.rate = &other_rates[s];
            line.net_rate = &other_rates[s];
            line.unit = Some(service.unit);
            line.family = Some(service.family);
            line.region = Some("us-east-1");
            line.location = "US East (N. Virginia)";
            line.servicecode = service.code;
            line.servicename = service.name;
            line.instance_type = service.instance_type;
            line.sku = &other_skus[s].0;
            line.rate_code = &other_skus[s].1;
            line.rate_id = "27182818284";
            line.legal_entity = "Amazon Web Services, Inc.";
            line.product = EMPTY;
            line.tags = EMPTY;
            line.resource_tags = EMPTY;
            line.cost_category = &acct.cost_category;
            line.discount = EMPTY;
            line.az = if service.instance_type.is_empty() {
                ""
            } else {
                ["us-east-1a", "us-east-1b", "us-east-1c"][account % 3]
            };
            sink.push(&line)?;
        }
    }

    // Monthly lines without a caller: tax per account and billing entity, the EDP
    // discount of USD accounts, one credit.
    line.interval = &month_interval;
    line.start = start_us;
    line.end = period_end.timestamp_micros();
    let mp_claude = org.offerings.iter().find(|o| o.marketplace);
    for (account, usage) in fees.usage.iter().enumerate() {
        let acct = &org.accounts[account];
        let eur = acct.currency == "EUR";
        for (entity, sum) in usage.iter().enumerate() {
            let percent = if eur { 19 } else { 8 };
            let tax = sum * percent / 100 / 100_000_000 * 100_000_000;
            fill_id(&mut rng, &mut line.id);
            line.account = acct;
            line.kind = Kind::Tax;
            line.line_type = "Tax";
            line.resource_id = None;
            line.principal = None;
            line.description = fee_description[entity];
            line.amount = 1.0;
            line.unblended = money(tax);
            line.net = money(tax);
            line.public_cost = 0.0;
            line.rate = "";
            line.net_rate = "";
            line.unit = None;
            line.region = None;
            line.location = "";
            line.instance_type = "";
            line.sku = "";
            line.rate_code = "";
            line.rate_id = "";
            line.tags = &acct.tags;
            line.resource_tags = EMPTY;
            line.cost_category = &acct.cost_category;
            line.discount = EMPTY;
            line.az = "";
            line.usage_type = "";
            line.operation = "";
            match (entity, mp_claude) {
                (1, Some(o)) => {
                    line.entity = "AWS Marketplace";
                    line.product_code = &o.product_code;
                    line.family = Some("");
                    line.servicecode = &o.product_code;
                    line.servicename = &o.product_name;
                    line.legal_entity = "Anthropic, PBC";
                    line.product = o
                        .kinds
                        .iter()
                        .flatten()
                        .next()
                        .map_or(EMPTY, |p| &p.product[..1]);
                }
                _ => {
                    line.entity = "AWS";
                    line.product_code = "AmazonBedrock";
                    line.family = None;
                    line.servicecode = "AmazonBedrock";
                    line.servicename = "Amazon Bedrock";
                    line.legal_entity = acct.invoicing_entity;
                    line.product = EMPTY;
                }
            }
            sink.push(&line)?;
            bedrock_rows += 1;
        }
        if !eur {
            let discount = -(usage[0] / 20);
            fill_id(&mut rng, &mut line.id);
            line.entity = "AWS";
            line.kind = Kind::Edp;
            line.line_type = "EdpDiscount";
            line.product_code = "AmazonBedrock";
            line.usage_type = "USE1-EDP-Discount";
            line.description = "Enterprise Discount Program";
            line.unblended = money(discount);
            line.net = 0.0;
            line.family = None;
            line.servicecode = "AmazonBedrock";
            line.servicename = "Amazon Bedrock";
            line.legal_entity = "Amazon Web Services, Inc.";
            line.product = EMPTY;
            sink.push(&line)?;
            bedrock_rows += 1;
        }
    }
    if job.chunk == 0 {
        fill_id(&mut rng, &mut line.id);
        line.account = &org.accounts[1];
        line.entity = "AWS";
        line.kind = Kind::Credit;
        line.line_type = "Credit";
        line.product_code = "AmazonBedrock";
        line.usage_type = "";
        line.description = "AWS Activate credit";
        line.unblended = -250.0;
        line.net = -250.0;
        line.product = EMPTY;
        line.tags = &org.accounts[1].tags;
        sink.push(&line)?;
        bedrock_rows += 1;
    }

    let rows = sink.close()?;
    Ok(JobResult {
        rows,
        bedrock_rows,
        bytes: std::fs::metadata(&job.path)?.len(),
    })
}

/// Writes a scale export at `root` (the folder that will hold `data/` and `metadata/`):
/// `cfg.chunks` data files per billing period and a manifest naming them, written after
/// them. Files are written by `cfg.threads` workers in parallel; memory stays bounded
/// by one batch and one row group per worker.
pub fn generate_scale(root: &Path, cfg: &ScaleConfig) -> std::io::Result<ScaleExport> {
    let org = build_org(cfg);
    let columns = columns();
    let periods = cfg.periods();
    let names: Vec<String> = periods.iter().map(|(y, m)| format!("{y}-{m:02}")).collect();
    let chunks = cfg.chunks.max(1);
    let jobs: Vec<Job> = names
        .iter()
        .enumerate()
        .flat_map(|(p, name)| {
            (0..chunks).map(move |c| Job {
                period: p,
                chunk: c,
                path: root
                    .join("data")
                    .join(format!("BILLING_PERIOD={name}"))
                    .join(format!("{EXPORT_NAME}-{:05}.snappy.parquet", c + 1)),
            })
        })
        .collect();
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        cfg.threads
    }
    .min(jobs.len())
    .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<std::io::Result<JobResult>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let result = write_chunk(&org, cfg, &columns, job, periods[job.period]);
                    let failed = result.is_err();
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(result);
                    }
                    if failed {
                        // Let the other workers stop early.
                        next.store(jobs.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| std::io::Error::other("a scale generator worker panicked"))?;
    let mut export = ScaleExport {
        periods: names.clone(),
        rows: 0,
        bedrock_rows: 0,
        bytes: 0,
        files: Vec::new(),
    };
    for (job, result) in jobs.iter().zip(results) {
        let result = result.ok_or_else(|| {
            std::io::Error::other("a scale generator worker stopped before its file")
        })??;
        export.rows += result.rows;
        export.bedrock_rows += result.bedrock_rows;
        export.bytes += result.bytes;
        export.files.push(job.path.clone());
    }
    for name in &names {
        let partition = format!("BILLING_PERIOD={name}");
        let listed: Vec<String> = (1..=chunks)
            .map(|c| format!("{S3_ROOT}/data/{partition}/{EXPORT_NAME}-{c:05}.snappy.parquet"))
            .collect();
        let columns_json: Vec<serde_json::Value> = columns
            .iter()
            .map(|c| {
                let ty = match c.ty {
                    Type::Utf8 => "string",
                    Type::Float => "double",
                    Type::Timestamp => "timestamp",
                    Type::Map => "map",
                };
                serde_json::json!({ "name": c.name, "type": ty })
            })
            .collect();
        let manifest = serde_json::json!({
            "assemblyId": format!("{EXPORT_NAME}-{name}"),
            "billingPeriod": { "start": format!("{name}-01T00:00:00Z") },
            "bucket": S3_ROOT,
            "reportName": EXPORT_NAME,
            "columns": columns_json,
            "dataFiles": listed,
        });
        let dir = root.join("metadata").join(&partition);
        std::fs::create_dir_all(&dir)?;
        let body = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("{EXPORT_NAME}-Manifest.json")), body)?;
    }
    Ok(export)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn small() -> ScaleConfig {
        ScaleConfig {
            rows_per_month: 20_000,
            callers: 300,
            ..ScaleConfig::default()
        }
    }

    #[test]
    fn writes_files_manifest_and_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join(EXPORT_NAME);
        let cfg = small();
        let export = generate_scale(&root, &cfg).expect("generate");
        assert_eq!(export.periods, ["2026-05"]);
        assert_eq!(export.rows, 20_000);
        assert!(export.bedrock_rows > 14_000 && export.bedrock_rows < 17_000);
        assert_eq!(export.files.len(), 4);

        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join("metadata/BILLING_PERIOD=2026-05/acme-cur2-Manifest.json"))
                .expect("manifest"),
        )
        .expect("manifest json");
        let listed: Vec<&str> = manifest["dataFiles"]
            .as_array()
            .expect("dataFiles")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(listed.len(), 4);
        assert_eq!(
            listed[0],
            "s3://acme-billing/cur2/acme-cur2/data/BILLING_PERIOD=2026-05/acme-cur2-00001.snappy.parquet"
        );

        let mut rows = 0;
        let mut ids = std::collections::HashSet::new();
        for (n, path) in export.files.iter().enumerate() {
            assert!(path.ends_with(format!("acme-cur2-{:05}.snappy.parquet", n + 1)));
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open"))
                .expect("parquet");
            let fields = reader.schema().fields().len();
            assert!(fields >= 120, "{fields} columns");
            let meta = reader.metadata().clone();
            rows += meta.file_metadata().num_rows() as usize;
            for batch in reader.build().expect("reader") {
                let batch = batch.expect("batch");
                let id = batch
                    .column_by_name("identity_line_item_id")
                    .expect("id column");
                let id = datafusion::arrow::array::AsArray::as_string::<i32>(id);
                for v in id.iter().flatten() {
                    assert_eq!(v.len(), 52);
                    ids.insert(v.to_owned());
                }
            }
        }
        assert_eq!(rows, 20_000);
        assert_eq!(ids.len(), 20_000, "line item ids are unique");
    }

    #[test]
    fn same_seed_same_files() {
        let a = tempfile::tempdir().expect("temp dir");
        let b = tempfile::tempdir().expect("temp dir");
        let cfg = ScaleConfig {
            rows_per_month: 5_000,
            callers: 100,
            threads: 1,
            ..ScaleConfig::default()
        };
        let one = generate_scale(a.path(), &cfg).expect("generate");
        let two = generate_scale(
            b.path(),
            &ScaleConfig {
                threads: 2,
                ..cfg.clone()
            },
        )
        .expect("generate");
        assert_eq!(one.rows, two.rows);
        for (x, y) in one.files.iter().zip(&two.files) {
            assert_eq!(
                std::fs::read(x).expect("read"),
                std::fs::read(y).expect("read")
            );
        }
    }

    #[test]
    fn periods_roll_over_the_year() {
        let cfg = ScaleConfig {
            months: 3,
            first_period: (2026, 11),
            ..ScaleConfig::default()
        };
        assert_eq!(cfg.periods(), [(2026, 11), (2026, 12), (2027, 1)]);
        let (start, end) = cfg.span();
        assert_eq!(start.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2027-02-01T00:00:00+00:00");
    }
}
