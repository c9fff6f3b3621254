//! Turns parsed arguments into wire requests.
//!
//! Pure functions, so the mapping from flags to the contract is unit-tested without
//! a server: tag flags merged per key, implied tag dimensions, enum mappings.

use super::args::{
    AllocationArg, CostByPrincipalArgs, CostByTagArgs, DimensionArg, FilterArgs, GranularityArg,
    GroupingArg, ListModelsArgs, ListPrincipalsArgs, ListTagKeysArgs, MetricArg, RoutingArg,
    ScopeArgs, TagArg, TokenUsageArgs, UsageCategoryArg,
};
use crate::{proto, time_range};

impl CostByPrincipalArgs {
    /// The first-page request.
    pub fn to_request(&self) -> proto::CostByPrincipalRequest {
        let (also_group_by, also_group_by_tag_key) =
            dimensions(&self.also, self.tag_key.as_deref());
        proto::CostByPrincipalRequest {
            time_range: Some(self.scope.time_range()),
            filter: self.scope.filter.to_proto(),
            cost_metric: self.cost.metric.to_proto() as i32,
            granularity: self.cost.granularity.to_proto() as i32,
            page_size: self.scope.page_size,
            page_token: String::new(),
            grouping: self.by.to_proto() as i32,
            also_group_by,
            also_group_by_tag_key,
            allocation: self.allocation.to_proto() as i32,
        }
    }
}

impl CostByTagArgs {
    /// The first-page request.
    pub fn to_request(&self) -> proto::CostByTagRequest {
        let (also_group_by, also_group_by_tag_key) =
            dimensions(&self.also, self.also_tag_key.as_deref());
        proto::CostByTagRequest {
            time_range: Some(self.scope.time_range()),
            filter: self.scope.filter.to_proto(),
            cost_metric: self.cost.metric.to_proto() as i32,
            granularity: self.cost.granularity.to_proto() as i32,
            page_size: self.scope.page_size,
            page_token: String::new(),
            tag_key: self.tag_key.clone(),
            also_group_by,
            also_group_by_tag_key,
            principal_grouping: self.by.to_proto() as i32,
            allocation: self.allocation.to_proto() as i32,
        }
    }
}

impl TokenUsageArgs {
    /// The first-page request.
    pub fn to_request(&self) -> proto::TokenUsageRequest {
        let (group_by, tag_key) = dimensions(&self.group_by, self.tag_key.as_deref());
        proto::TokenUsageRequest {
            time_range: Some(self.scope.time_range()),
            filter: self.scope.filter.to_proto(),
            cost_metric: self.cost.metric.to_proto() as i32,
            granularity: self.cost.granularity.to_proto() as i32,
            page_size: self.scope.page_size,
            page_token: String::new(),
            group_by,
            tag_key,
            principal_grouping: self.by.to_proto() as i32,
            efficiency: self.efficiency,
        }
    }
}

impl ListPrincipalsArgs {
    /// The first-page request.
    pub fn to_request(&self) -> proto::ListPrincipalsRequest {
        proto::ListPrincipalsRequest {
            time_range: Some(self.scope.time_range()),
            filter: self.scope.filter.to_proto(),
            grouping: self.by.to_proto() as i32,
            page_size: self.scope.page_size,
            page_token: String::new(),
        }
    }
}

impl ListTagKeysArgs {
    /// The first-page request.
    pub fn to_request(&self) -> proto::ListTagKeysRequest {
        proto::ListTagKeysRequest {
            time_range: Some(self.scope.time_range()),
            filter: self.scope.filter.to_proto(),
            key_prefix: self.prefix.clone(),
            page_size: self.scope.page_size,
            page_token: String::new(),
        }
    }
}

impl ListModelsArgs {
    /// The first-page request.
    pub fn to_request(&self) -> proto::ListModelsRequest {
        proto::ListModelsRequest {
            time_range: Some(self.scope.time_range()),
            filter: self.scope.filter.to_proto(),
            page_size: self.scope.page_size,
            page_token: String::new(),
        }
    }
}

impl ScopeArgs {
    /// `[--from, --to)`.
    pub fn time_range(&self) -> proto::TimeRange {
        time_range(self.from, self.to)
    }
}

impl FilterArgs {
    /// The filter, or `None` when no flag restricts anything.
    pub fn to_proto(&self) -> Option<proto::Filter> {
        let filter = proto::Filter {
            account_ids: self.accounts.clone(),
            principals: self.principals.clone(),
            models: self.models.clone(),
            regions: self.regions.clone(),
            line_item_types: self.line_item_types.clone(),
            tags: tag_filters(&self.tags, &self.untagged),
            payer_account_ids: self.payers.clone(),
            usage_categories: self
                .usage_categories
                .iter()
                .map(|c| c.to_proto() as i32)
                .collect(),
            routings: self.routings.iter().map(|r| r.to_proto() as i32).collect(),
        };
        (filter != proto::Filter::default()).then_some(filter)
    }
}

/// One `TagFilter` per key, in order of first mention: `--tag` values of a key are
/// collected (without duplicates) and `--untagged KEY` sets its `untagged`.
pub fn tag_filters(tags: &[TagArg], untagged: &[String]) -> Vec<proto::TagFilter> {
    fn apply(filter: &mut proto::TagFilter, value: Option<&String>) {
        match value {
            Some(value) if !filter.values.contains(value) => filter.values.push(value.clone()),
            Some(_) => {}
            None => filter.untagged = true,
        }
    }
    let mentions = tags
        .iter()
        .map(|t| (&t.key, Some(&t.value)))
        .chain(untagged.iter().map(|key| (key, None)));
    let mut filters: Vec<proto::TagFilter> = Vec::new();
    for (key, value) in mentions {
        match filters.iter_mut().find(|f| f.key == *key) {
            Some(filter) => apply(filter, value),
            None => {
                let mut filter = proto::TagFilter {
                    key: key.clone(),
                    ..Default::default()
                };
                apply(&mut filter, value);
                filters.push(filter);
            }
        }
    }
    filters
}

/// The dimension list without duplicates; a tag key implies the tag dimension.
fn dimensions(dims: &[DimensionArg], tag_key: Option<&str>) -> (Vec<i32>, String) {
    let mut out: Vec<i32> = Vec::new();
    let implied = tag_key.map(|_| DimensionArg::Tag);
    for dim in dims.iter().copied().chain(implied) {
        let value = dim.to_proto() as i32;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    (out, tag_key.unwrap_or_default().to_owned())
}

impl GroupingArg {
    /// The wire enum.
    pub fn to_proto(self) -> proto::PrincipalGrouping {
        match self {
            GroupingArg::Arn => proto::PrincipalGrouping::Arn,
            GroupingArg::Role => proto::PrincipalGrouping::Role,
            GroupingArg::Account => proto::PrincipalGrouping::Account,
        }
    }
}

impl GranularityArg {
    /// The wire enum.
    pub fn to_proto(self) -> proto::Granularity {
        match self {
            GranularityArg::None => proto::Granularity::Unspecified,
            GranularityArg::Hourly => proto::Granularity::Hourly,
            GranularityArg::Daily => proto::Granularity::Daily,
            GranularityArg::Monthly => proto::Granularity::Monthly,
        }
    }
}

impl AllocationArg {
    /// The proto value.
    pub fn to_proto(self) -> proto::Allocation {
        match self {
            AllocationArg::None => proto::Allocation::None,
            AllocationArg::Proportional => proto::Allocation::Proportional,
        }
    }
}

impl MetricArg {
    /// The wire enum.
    pub fn to_proto(self) -> proto::CostMetric {
        match self {
            MetricArg::Unblended => proto::CostMetric::Unblended,
            MetricArg::NetUnblended => proto::CostMetric::NetUnblended,
            MetricArg::Blended => proto::CostMetric::Blended,
            MetricArg::PublicOnDemand => proto::CostMetric::PublicOnDemand,
        }
    }
}

impl DimensionArg {
    /// The wire enum.
    pub fn to_proto(self) -> proto::Dimension {
        match self {
            DimensionArg::Principal => proto::Dimension::Principal,
            DimensionArg::Model => proto::Dimension::Model,
            DimensionArg::Account => proto::Dimension::Account,
            DimensionArg::Region => proto::Dimension::Region,
            DimensionArg::UsageCategory => proto::Dimension::UsageCategory,
            DimensionArg::Tag => proto::Dimension::Tag,
            DimensionArg::LineItemType => proto::Dimension::LineItemType,
            DimensionArg::Routing => proto::Dimension::Routing,
        }
    }
}

impl UsageCategoryArg {
    /// The wire enum.
    pub fn to_proto(self) -> proto::UsageCategory {
        match self {
            UsageCategoryArg::OnDemand => proto::UsageCategory::OnDemand,
            UsageCategoryArg::Batch => proto::UsageCategory::Batch,
            UsageCategoryArg::Flex => proto::UsageCategory::Flex,
            UsageCategoryArg::Priority => proto::UsageCategory::Priority,
            UsageCategoryArg::ProvisionedThroughput => proto::UsageCategory::ProvisionedThroughput,
            UsageCategoryArg::Reserved => proto::UsageCategory::Reserved,
            UsageCategoryArg::LatencyOptimized => proto::UsageCategory::LatencyOptimized,
            UsageCategoryArg::Customization => proto::UsageCategory::Customization,
            UsageCategoryArg::CustomModelImport => proto::UsageCategory::CustomModelImport,
            UsageCategoryArg::Other => proto::UsageCategory::Other,
        }
    }
}

impl RoutingArg {
    /// The wire enum.
    pub fn to_proto(self) -> proto::Routing {
        match self {
            RoutingArg::InRegion => proto::Routing::InRegion,
            RoutingArg::CrossRegionGeographic => proto::Routing::CrossRegionGeographic,
            RoutingArg::CrossRegionGlobal => proto::Routing::CrossRegionGlobal,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::args::{Cli, Command, parse_tag};
    use crate::proto::{
        CostMetric, Dimension, Granularity, PrincipalGrouping, Routing, UsageCategory,
    };

    fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("bedrock-attribution").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("valid command line")
    }

    fn parse_err(args: &[&str]) -> clap::Error {
        let argv = std::iter::once("bedrock-attribution").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect_err("invalid command line")
    }

    const RANGE: [&str; 4] = ["--from", "2026-07-01", "--to", "2026-08-01"];

    fn with_range<'a>(command: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![command];
        args.extend(RANGE);
        args.extend(rest);
        args
    }

    #[test]
    fn cost_by_principal_defaults() {
        let cli = parse(&with_range("cost-by-principal", &[]));
        let Command::CostByPrincipal(args) = cli.command else {
            panic!("wrong command")
        };
        let req = args.to_request();
        let range = req.time_range.expect("range");
        assert_eq!(range.start.expect("start").seconds, 1_782_864_000);
        assert_eq!(range.end.expect("end").seconds, 1_785_542_400);
        assert_eq!(req.filter, None);
        assert_eq!(req.cost_metric(), CostMetric::Unblended);
        assert_eq!(req.granularity(), Granularity::Unspecified);
        assert_eq!(req.grouping(), PrincipalGrouping::Arn);
        assert_eq!(req.page_size, 1000);
        assert!(req.also_group_by.is_empty());
        assert_eq!(cli.global.server, "http://127.0.0.1:50051");
        assert_eq!(cli.global.timeout, 30);
    }

    #[test]
    fn cost_by_principal_options() {
        let cli = parse(&with_range(
            "cost-by-principal",
            &[
                "--by",
                "role",
                "--granularity",
                "daily",
                "--metric",
                "net-unblended",
                "--also",
                "model,region",
                "--also",
                "model",
                "--tag-key",
                "team",
                "--page-size",
                "50",
                "--format",
                "csv",
            ],
        ));
        assert_eq!(cli.global.format, crate::cli::Format::Csv);
        let Command::CostByPrincipal(args) = cli.command else {
            panic!("wrong command")
        };
        let req = args.to_request();
        assert_eq!(req.grouping(), PrincipalGrouping::Role);
        assert_eq!(req.granularity(), Granularity::Daily);
        assert_eq!(req.cost_metric(), CostMetric::NetUnblended);
        let dims: Vec<_> = req.also_group_by().collect();
        assert_eq!(dims, [Dimension::Model, Dimension::Region, Dimension::Tag]);
        assert_eq!(req.also_group_by_tag_key, "team");
        assert_eq!(req.page_size, 50);
    }

    #[test]
    fn also_tag_needs_a_key() {
        let err = parse_err(&with_range("cost-by-principal", &["--also", "model,tag"]));
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = parse_err(&with_range("token-usage", &["--group-by", "tag"]));
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn filters_merge_tags_per_key() {
        let cli = parse(&with_range(
            "token-usage",
            &[
                "--account",
                "111111111111",
                "--account",
                "222222222222",
                "--payer",
                "999999999999",
                "--principal",
                "",
                "--model",
                "claude",
                "--region",
                "us-east-1",
                "--line-item-type",
                "Usage",
                "--usage-category",
                "on-demand",
                "--usage-category",
                "batch",
                "--routing",
                "cross-region-geographic",
                "--routing",
                "in-region",
                "--tag",
                "team=ml",
                "--tag",
                "cost=center=a=b",
                "--tag",
                "team=ops",
                "--tag",
                "team=ml",
                "--untagged",
                "team",
                "--untagged",
                "env",
            ],
        ));
        let Command::TokenUsage(args) = cli.command else {
            panic!("wrong command")
        };
        let filter = args.to_request().filter.expect("filter");
        assert_eq!(filter.account_ids, ["111111111111", "222222222222"]);
        assert_eq!(filter.payer_account_ids, ["999999999999"]);
        assert_eq!(filter.principals, [""]);
        assert_eq!(filter.models, ["claude"]);
        assert_eq!(filter.regions, ["us-east-1"]);
        assert_eq!(filter.line_item_types, ["Usage"]);
        let categories: Vec<_> = filter.usage_categories().collect();
        assert_eq!(categories, [UsageCategory::OnDemand, UsageCategory::Batch]);
        let routings: Vec<_> = filter.routings().collect();
        assert_eq!(
            routings,
            [Routing::CrossRegionGeographic, Routing::InRegion]
        );
        let tag = |key: &str, values: &[&str], untagged| proto::TagFilter {
            key: key.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            untagged,
        };
        assert_eq!(
            filter.tags,
            [
                tag("team", &["ml", "ops"], true),
                tag("cost=center=a", &["b"], false),
                tag("env", &[], true),
            ]
        );
    }

    #[test]
    fn tag_split_at_last_equals() {
        assert_eq!(
            parse_tag("a=b=c"),
            Ok(TagArg {
                key: "a=b".to_owned(),
                value: "c".to_owned()
            })
        );
        assert_eq!(
            parse_tag("team="),
            Ok(TagArg {
                key: "team".to_owned(),
                value: String::new()
            })
        );
        assert!(parse_tag("team").is_err());
        assert!(parse_tag("=ml").is_err());
        let err = parse_err(&with_range("list-models", &["--tag", "nokey"]));
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn cost_by_tag_and_token_usage() {
        let cli = parse(&with_range(
            "cost-by-tag",
            &[
                "--tag-key",
                "iamPrincipal/team",
                "--also",
                "principal",
                "--by",
                "account",
            ],
        ));
        let Command::CostByTag(args) = cli.command else {
            panic!("wrong command")
        };
        let req = args.to_request();
        assert_eq!(req.tag_key, "iamPrincipal/team");
        assert_eq!(
            req.also_group_by().collect::<Vec<_>>(),
            [Dimension::Principal]
        );
        assert_eq!(req.principal_grouping(), PrincipalGrouping::Account);
        assert_eq!(req.also_group_by_tag_key, "");

        let cli = parse(&with_range(
            "token-usage",
            &[
                "--group-by",
                "model,usage-category,line-item-type,routing",
                "--granularity",
                "monthly",
            ],
        ));
        let Command::TokenUsage(args) = cli.command else {
            panic!("wrong command")
        };
        let req = args.to_request();
        assert_eq!(
            req.group_by().collect::<Vec<_>>(),
            [
                Dimension::Model,
                Dimension::UsageCategory,
                Dimension::LineItemType,
                Dimension::Routing
            ]
        );
        assert_eq!(req.granularity(), Granularity::Monthly);
    }

    #[test]
    fn list_commands() {
        let cli = parse(&with_range("list-tag-keys", &["--prefix", "iamPrincipal/"]));
        let Command::ListTagKeys(args) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(args.to_request().key_prefix, "iamPrincipal/");

        let cli = parse(&with_range(
            "list-principals",
            &["--by", "role", "--region", "eu-west-1"],
        ));
        let Command::ListPrincipals(args) = cli.command else {
            panic!("wrong command")
        };
        let req = args.to_request();
        assert_eq!(req.grouping(), PrincipalGrouping::Role);
        assert_eq!(req.filter.expect("filter").regions, ["eu-west-1"]);

        assert!(matches!(parse(&["status"]).command, Command::Status));
        assert!(matches!(
            parse(&["refresh", "--timeout", "5"]).command,
            Command::Refresh
        ));
    }

    #[test]
    fn rfc3339_dates_and_bad_dates() {
        let cli = parse(&[
            "list-models",
            "--from",
            "2026-07-01T12:00:00+02:00",
            "--to",
            "2026-07-02",
        ]);
        let Command::ListModels(args) = cli.command else {
            panic!("wrong command")
        };
        let start = args
            .to_request()
            .time_range
            .expect("range")
            .start
            .expect("start");
        assert_eq!(start.seconds, 1_782_864_000 + 10 * 3600);

        let err = parse_err(&["list-models", "--from", "July", "--to", "2026-07-02"]);
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let err = parse_err(&with_range("list-models", &["--page-size", "0"]));
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let err = parse_err(&["list-models", "--from", "2026-07-01"]);
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn the_tag_key_is_tag_key_in_every_command() {
        use clap::CommandFactory as _;
        // The flag naming the key to group by, in each command that takes one.
        for (command, extra) in [
            ("cost-by-principal", &[][..]),
            ("cost-by-tag", &[][..]),
            ("token-usage", &[][..]),
            ("spend-anomalies", &["--group-by", "tag"][..]),
        ] {
            let mut args = with_range(command, &["--tag-key", "iamPrincipal/team"]);
            args.extend(extra);
            let argv = std::iter::once("bedrock-attribution").chain(args.iter().copied());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("{command} --tag-key: {e}");
            }
        }
        let cli = parse(&["chargeback", "--month", "2026-07", "--tag-key", "k"]);
        assert!(matches!(cli.command, Command::Chargeback(_)));
        // No other visible flag names a tag key (the second key of cost-by-tag is
        // --also-tag-key); the old spellings are hidden aliases.
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                let long = arg.get_long().unwrap_or_default();
                let second = sub.get_name() == "cost-by-tag" && long == "also-tag-key";
                assert!(
                    !long.ends_with("key") || long == "tag-key" || second,
                    "{} --{long}",
                    sub.get_name()
                );
            }
        }
        let Command::CostByTag(args) =
            parse(&with_range("cost-by-tag", &["--key", "iamPrincipal/team"])).command
        else {
            panic!("wrong command")
        };
        assert_eq!(args.to_request().tag_key, "iamPrincipal/team");
        let Command::CostByPrincipal(args) = parse(&with_range(
            "cost-by-principal",
            &["--also-tag-key", "team"],
        ))
        .command
        else {
            panic!("wrong command")
        };
        assert_eq!(args.to_request().also_group_by_tag_key, "team");
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
