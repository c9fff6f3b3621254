//! The command line, as clap derive structs.
//!
//! Only the shape of the arguments lives here; turning them into requests is
//! [`super::request`]'s job so it can be tested without parsing.

use std::{ffi::OsString, fmt, path::PathBuf};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{Error, parse_datetime};

/// Command line of `bedrock-attribution`.
#[derive(Debug, Parser)]
#[command(
    name = "bedrock-attribution",
    version,
    about = "Query Amazon Bedrock cost attribution (CUR 2.0) from a bedrock-attribution server",
    after_help = "Dates are YYYY-MM-DD (midnight UTC) or RFC 3339; ranges are [--from, --to).\n\
                  A bearer token is read from the environment variable BEDROCK_ATTRIBUTION_TOKEN \
                  only (a flag would leak into ps and shell history).\n\
                  Exit status: 0 on success, 1 on usage errors, 2 on any other error."
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to ask the server.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// URL of the bedrock-attribution server.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// Output format: aligned table with totals, CSV (no totals line) or one JSON document.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_FORMAT",
        value_enum,
        default_value_t = Format::Table,
        global = true
    )]
    pub format: Format,
    /// Seconds to wait for the connection and for each request.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub timeout: u64,
    /// CA certificate(s), PEM, that an https:// server's certificate must chain to
    /// (default: the system's roots).
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_CA_FILE",
        value_name = "PEM",
        global = true
    )]
    pub ca_file: Option<PathBuf>,
    /// Client certificate, PEM, for servers that require mutual TLS (with --client-key).
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_CLIENT_CERT",
        value_name = "PEM",
        global = true,
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// Private key of --client-cert, PEM.
    #[arg(
        long,
        env = "BEDROCK_ATTRIBUTION_CLIENT_KEY",
        value_name = "PEM",
        global = true,
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// The bearer token, from [`TOKEN_ENV`] only: see [`Token::from_env`].
    #[arg(skip)]
    pub token: Option<Token>,
}

/// The environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "BEDROCK_ATTRIBUTION_TOKEN";

/// A bearer token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token in [`TOKEN_ENV`], looked up with `var` (`std::env::var_os` in the
    /// binary): there is deliberately no flag, since command lines are visible to
    /// every user through `ps` and end up in shell history. Unset or empty: no token.
    pub fn from_env(var: impl Fn(&str) -> Option<OsString>) -> Result<Option<Token>, String> {
        match var(TOKEN_ENV) {
            None => Ok(None),
            Some(value) if value.is_empty() => Ok(None),
            Some(value) => value
                .into_string()
                .map(|token| Some(Token(token.trim().to_owned())))
                .map_err(|_| format!("{TOKEN_ENV} is not valid UTF-8")),
        }
    }

    /// The token itself, to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The subcommands: one per RPC, and the chargeback export.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cost grouped by the IAM principal that made the call.
    CostByPrincipal(CostByPrincipalArgs),
    /// Cost grouped by the value of one cost-allocation tag key, with an UNTAGGED row.
    CostByTag(CostByTagArgs),
    /// Token counts and cost grouped by any set of dimensions.
    TokenUsage(TokenUsageArgs),
    /// The principals seen in a time range, with their spend.
    ListPrincipals(ListPrincipalsArgs),
    /// The tag keys seen in a time range, with their reach.
    ListTagKeys(ListTagKeysArgs),
    /// The model names seen in a time range, with their spend and tokens.
    ListModels(ListModelsArgs),
    /// What data the server holds: sources, billing periods, problems.
    Status,
    /// Make the server re-read its sources now.
    Refresh,
    /// One month's fully loaded cost, tokens and cost per million tokens per team (value
    /// of a tag key, UNTAGGED included), as CSV for a finance system or Parquet for BI
    /// tools. The rows are checked to add up to the month's totals before writing.
    Chargeback(super::chargeback::ChargebackArgs),
    /// Create a monthly budget for a scope of spend (tag value, caller, role with its
    /// sessions, account, model; the options given AND together).
    CreateBudget(super::budgets::CreateBudgetArgs),
    /// The budgets you may see.
    ListBudgets,
    /// Delete a budget created through the API.
    DeleteBudget(super::budgets::DeleteBudgetArgs),
    /// Spend to date, month-end forecast and status of budgets for one month.
    BudgetStatus(super::budgets::BudgetStatusArgs),
    /// Days whose spend departs from its own trailing baseline (median and median
    /// absolute deviation), and new spenders, per principal, tag value or model.
    SpendAnomalies(super::anomalies::SpendAnomaliesArgs),
    /// Follow budget status changes: one line per event as refreshes and budget changes
    /// move a status (JSON Lines with --format json), until the server ends the stream.
    WatchBudgets(super::watch::WatchBudgetsArgs),
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, then a totals line per currency.
    Table,
    /// A header and one line per row, exact decimals, no totals line.
    Csv,
    /// One JSON document with rows and totals; amounts are decimal strings.
    Json,
}

/// Time range, filters and page size: what every query and list command takes.
#[derive(Clone, Debug, Args)]
pub struct ScopeArgs {
    /// Start of the range, inclusive: YYYY-MM-DD (midnight UTC) or RFC 3339.
    #[arg(long, value_name = "DATE", value_parser = parse_time_arg)]
    pub from: DateTime<Utc>,
    /// End of the range, exclusive: YYYY-MM-DD (midnight UTC) or RFC 3339.
    #[arg(long, value_name = "DATE", value_parser = parse_time_arg)]
    pub to: DateTime<Utc>,
    /// Which line items count.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Entries per request (1..=10000); every page is fetched.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..=10000))]
    pub page_size: i32,
}

/// Restrictions on the line items; repeated flags are ORed, different flags ANDed.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Only this usage account (12 digits); repeatable.
    #[arg(long = "account", value_name = "ACCOUNT_ID")]
    pub accounts: Vec<String>,
    /// Only this payer account (12 digits); repeatable.
    #[arg(long = "payer", value_name = "ACCOUNT_ID")]
    pub payers: Vec<String>,
    /// Only this exact caller ARN; repeatable. An empty ARN ('') selects spend without a caller.
    #[arg(long = "principal", value_name = "ARN")]
    pub principals: Vec<String>,
    /// Only this model name (as listed by list-models); repeatable.
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// Only this region code, e.g. us-east-1; repeatable.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// Only this CUR line item type, e.g. Usage, Tax, Credit; repeatable.
    #[arg(long = "line-item-type", value_name = "TYPE")]
    pub line_item_types: Vec<String>,
    /// Only this usage category; repeatable.
    #[arg(long = "usage-category", value_name = "CATEGORY", value_enum)]
    pub usage_categories: Vec<UsageCategoryArg>,
    /// Only this routing (where Bedrock served the call); repeatable.
    #[arg(long = "routing", value_name = "ROUTING", value_enum)]
    pub routings: Vec<RoutingArg>,
    /// Only line items whose tag KEY has VALUE; repeatable (values of one key are ORed,
    /// keys ANDed). Split at the LAST '=': keys may contain '=', values may not.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<TagArg>,
    /// Also keep line items that lack tag KEY (alone: only those); repeatable.
    #[arg(long = "untagged", value_name = "KEY")]
    pub untagged: Vec<String>,
}

/// How the cost is computed and bucketed.
#[derive(Clone, Debug, Args)]
pub struct CostArgs {
    /// Time bucketing of rows (by line item usage start, UTC).
    #[arg(long, value_enum, default_value_t = GranularityArg::None)]
    pub granularity: GranularityArg,
    /// CUR cost column to sum.
    #[arg(long, value_enum, default_value_t = MetricArg::Unblended)]
    pub metric: MetricArg,
}

/// Arguments of `cost-by-principal`.
#[derive(Clone, Debug, Args)]
pub struct CostByPrincipalArgs {
    /// Range, filters, page size.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Metric and granularity.
    #[command(flatten)]
    pub cost: CostArgs,
    /// Group callers by exact ARN, by role (sessions collapsed) or by account.
    #[arg(long, value_enum, default_value_t = GroupingArg::Arn)]
    pub by: GroupingArg,
    /// Further dimensions to split each principal by (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "DIMENSION")]
    pub also: Vec<DimensionArg>,
    /// Tag key for `--also tag`, exactly as in the CUR `tags` column, e.g.
    /// iamPrincipal/team (given alone, it implies `--also tag`).
    #[arg(
        long = "tag-key",
        alias = "also-tag-key",
        value_name = "KEY",
        required_if_eq("also", "tag")
    )]
    pub tag_key: Option<String>,
    /// Share spend without a caller (tax, credits, discounts, provisioned throughput)
    /// out to the callers: `proportional` gives fully loaded cost, with DIRECT and
    /// ALLOCATED columns. Needs whole months (--from/--to on the 1st).
    #[arg(long, value_enum, default_value_t = AllocationArg::None)]
    pub allocation: AllocationArg,
}

/// Arguments of `cost-by-tag`.
#[derive(Clone, Debug, Args)]
pub struct CostByTagArgs {
    /// The tag key to group by, exactly as in the CUR `tags` column, e.g. iamPrincipal/team
    /// (list-tag-keys lists them).
    #[arg(long = "tag-key", alias = "key", value_name = "KEY")]
    pub tag_key: String,
    /// Range, filters, page size.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Metric and granularity.
    #[command(flatten)]
    pub cost: CostArgs,
    /// Further dimensions to split each tag value by (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "DIMENSION")]
    pub also: Vec<DimensionArg>,
    /// Second tag key for `--also tag` (given alone, it implies `--also tag`).
    #[arg(long, value_name = "KEY", required_if_eq("also", "tag"))]
    pub also_tag_key: Option<String>,
    /// Principal grouping for `--also principal`.
    #[arg(long, value_enum, default_value_t = GroupingArg::Arn)]
    pub by: GroupingArg,
    /// Share spend without a caller out to the callers (see cost-by-principal).
    #[arg(long, value_enum, default_value_t = AllocationArg::None)]
    pub allocation: AllocationArg,
}

/// Arguments of `token-usage`.
#[derive(Clone, Debug, Args)]
pub struct TokenUsageArgs {
    /// Range, filters, page size.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Metric and granularity.
    #[command(flatten)]
    pub cost: CostArgs,
    /// Dimensions to group by (comma-separated or repeated); none: one row per currency.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "DIMENSION")]
    pub group_by: Vec<DimensionArg>,
    /// Tag key for `--group-by tag`, exactly as in the CUR `tags` column, e.g.
    /// iamPrincipal/team (given alone, it implies `--group-by tag`).
    #[arg(long, value_name = "KEY", required_if_eq("group_by", "tag"))]
    pub tag_key: Option<String>,
    /// Principal grouping for `--group-by principal`.
    #[arg(long, value_enum, default_value_t = GroupingArg::Arn)]
    pub by: GroupingArg,
    /// The efficiency view: output per input token, cache-read share and the saving
    /// cache reads brought against plain input, per row.
    #[arg(long)]
    pub efficiency: bool,
}

/// Arguments of `list-principals`.
#[derive(Clone, Debug, Args)]
pub struct ListPrincipalsArgs {
    /// Range, filters, page size.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// List exact ARNs, roles (sessions collapsed) or accounts.
    #[arg(long, value_enum, default_value_t = GroupingArg::Arn)]
    pub by: GroupingArg,
}

/// Arguments of `list-tag-keys`.
#[derive(Clone, Debug, Args)]
pub struct ListTagKeysArgs {
    /// Range, filters, page size.
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Only keys starting with this prefix, e.g. iamPrincipal/.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub prefix: String,
}

/// Arguments of `list-models`.
#[derive(Clone, Debug, Args)]
pub struct ListModelsArgs {
    /// Range, filters, page size.
    #[command(flatten)]
    pub scope: ScopeArgs,
}

/// How callers are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GroupingArg {
    /// The exact caller ARN: each assumed-role session is its own row.
    Arn,
    /// Sessions collapsed to their role.
    Role,
    /// The caller's account.
    Account,
}

/// Time bucketing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GranularityArg {
    /// One bucket for the whole range.
    None,
    /// Hour of the usage start.
    Hourly,
    /// Day of the usage start.
    Daily,
    /// Calendar month of the usage start.
    Monthly,
}

/// Whether spend without a caller is shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AllocationArg {
    /// Direct cost; spend without a caller stays UNATTRIBUTED.
    None,
    /// Fully loaded: shared over the callers of the same account, else of the payer.
    Proportional,
}

/// CUR cost column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    /// line_item_unblended_cost (Cost Explorer's default).
    Unblended,
    /// line_item_net_unblended_cost (after discounts).
    NetUnblended,
    /// line_item_blended_cost.
    Blended,
    /// pricing_public_on_demand_cost (list price).
    PublicOnDemand,
}

/// A dimension to group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DimensionArg {
    /// The caller (see --by).
    Principal,
    /// The model name.
    Model,
    /// The usage account.
    Account,
    /// The region code.
    Region,
    /// On-demand, batch, provisioned throughput...
    UsageCategory,
    /// The value of a tag key.
    Tag,
    /// The CUR line item type.
    LineItemType,
    /// In-region, cross-region geographic or cross-region global.
    Routing,
}

/// How Bedrock was bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UsageCategoryArg {
    /// Pay-per-token invocations.
    OnDemand,
    /// Batch inference.
    Batch,
    /// Flex service tier.
    Flex,
    /// Priority service tier.
    Priority,
    /// Provisioned throughput.
    ProvisionedThroughput,
    /// Reserved capacity.
    Reserved,
    /// Latency-optimized inference.
    LatencyOptimized,
    /// Model customization.
    Customization,
    /// Custom model import.
    CustomModelImport,
    /// Anything else.
    Other,
}

/// Where Bedrock served a call, from the usage type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoutingArg {
    /// In the region of the call.
    InRegion,
    /// Cross-region inference within a geography.
    CrossRegionGeographic,
    /// Cross-region inference anywhere.
    CrossRegionGlobal,
}

/// A `--tag KEY=VALUE` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagArg {
    /// The tag key (everything before the last `=`).
    pub key: String,
    /// The value (everything after the last `=`; may be empty).
    pub value: String,
}

/// Parses `KEY=VALUE`, splitting at the last `=` so that keys may contain `=`.
pub fn parse_tag(input: &str) -> Result<TagArg, String> {
    match input.rsplit_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(TagArg {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
        Some(_) => Err("the tag key is empty".to_owned()),
        None => Err("expected KEY=VALUE".to_owned()),
    }
}

/// Parses a `--from`/`--to` value (see [`parse_datetime`]).
fn parse_time_arg(input: &str) -> Result<DateTime<Utc>, String> {
    parse_datetime(input).map_err(|e| match e {
        Error::InvalidArgument { message } => message,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, OsString)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn token_comes_from_the_environment_only() {
        let token = Token::from_env(env(&[(TOKEN_ENV, "s3cret\n")])).expect("utf-8");
        assert_eq!(token.as_ref().map(Token::expose), Some("s3cret"));
        assert_eq!(format!("{token:?}"), "Some(Token(<redacted>))");
        assert_eq!(Token::from_env(env(&[])), Ok(None));
        assert_eq!(Token::from_env(env(&[(TOKEN_ENV, "")])), Ok(None));
        // No flag takes it: a token on the command line is a usage error.
        let err = Cli::try_parse_from(["bedrock-attribution", "--token", "s3cret", "status"])
            .expect_err("no --token flag");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        let cli = Cli::try_parse_from(["bedrock-attribution", "status"]).expect("args");
        assert_eq!(cli.global.token, None, "parsing never fills the token");
    }

    #[test]
    fn tls_flags() {
        let cli = Cli::try_parse_from([
            "bedrock-attribution",
            "--server",
            "https://attribution.example:443",
            "status",
            "--ca-file",
            "/etc/ca.pem",
            "--client-cert",
            "/etc/me.pem",
            "--client-key",
            "/etc/me.key",
        ])
        .expect("args");
        assert_eq!(cli.global.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(cli.global.client_cert, Some(PathBuf::from("/etc/me.pem")));
        assert_eq!(cli.global.client_key, Some(PathBuf::from("/etc/me.key")));
        let err = Cli::try_parse_from(["bedrock-attribution", "--client-cert", "/c", "status"])
            .expect_err("a certificate without its key");
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
