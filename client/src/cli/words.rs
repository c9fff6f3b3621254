//! The server's messages in the CLI's words.
//!
//! The server speaks to every client in the contract's terms (`use GRANULARITY_UNSPECIFIED
//! or GRANULARITY_MONTHLY`), which name nothing a CLI user can type. The CLI rewrites
//! each proto enum value it has a flag for into that flag and value (`--granularity
//! none`). The table is built from the same `to_proto` mappings the requests use, so it
//! cannot drift from them; names it does not know are left as they are.

use clap::ValueEnum;

use super::args::{
    AllocationArg, DimensionArg, GranularityArg, GroupingArg, MetricArg, RoutingArg,
    UsageCategoryArg,
};

/// `(proto enum value name, what the CLI user types)`.
fn table() -> Vec<(&'static str, String)> {
    fn add<E: ValueEnum>(
        out: &mut Vec<(&'static str, String)>,
        flag: &str,
        proto_name: impl Fn(&E) -> &'static str,
    ) {
        for variant in E::value_variants() {
            if let Some(value) = variant.to_possible_value() {
                let typed = if flag.is_empty() {
                    value.get_name().to_owned()
                } else {
                    format!("{flag} {}", value.get_name())
                };
                out.push((proto_name(variant), typed));
            }
        }
    }
    let mut out = Vec::new();
    add(&mut out, "--granularity", |v: &GranularityArg| {
        v.to_proto().as_str_name()
    });
    add(&mut out, "--allocation", |v: &AllocationArg| {
        v.to_proto().as_str_name()
    });
    add(&mut out, "--metric", |v: &MetricArg| {
        v.to_proto().as_str_name()
    });
    add(&mut out, "--by", |v: &GroupingArg| {
        v.to_proto().as_str_name()
    });
    add(&mut out, "--usage-category", |v: &UsageCategoryArg| {
        v.to_proto().as_str_name()
    });
    add(&mut out, "--routing", |v: &RoutingArg| {
        v.to_proto().as_str_name()
    });
    // Dimensions are given to --also, --group-by or spend-anomalies' --group-by: the
    // value alone.
    add(&mut out, "", |v: &DimensionArg| v.to_proto().as_str_name());
    out
}

/// `message` with every proto enum value name the CLI has a flag for replaced by that
/// flag and value; everything else unchanged.
pub fn in_cli_words(message: &str) -> String {
    let table = table();
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(|c: char| c.is_ascii_uppercase()) {
        out.push_str(&rest[..start]);
        let word = &rest[start..];
        let len = word
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(word.len());
        let (token, after) = word.split_at(len);
        match table.iter().find(|(name, _)| *name == token) {
            Some((_, typed)) => out.push_str(typed),
            None => out.push_str(token),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_enum_names_become_flags() {
        assert_eq!(
            in_cli_words(
                "INVALID_ARGUMENT: granularity: ALLOCATION_PROPORTIONAL is defined per billing period: use GRANULARITY_UNSPECIFIED or GRANULARITY_MONTHLY"
            ),
            "INVALID_ARGUMENT: granularity: --allocation proportional is defined per billing period: use --granularity none or --granularity monthly"
        );
        assert_eq!(
            in_cli_words(
                "also_group_by_tag_key: repeats tag_key; name a different key or drop DIMENSION_TAG"
            ),
            "also_group_by_tag_key: repeats tag_key; name a different key or drop tag"
        );
        assert_eq!(
            in_cli_words(
                "use ROUTING_IN_REGION or PRINCIPAL_GROUPING_ROLE, not COST_METRIC_BLENDED"
            ),
            "use --routing in-region or --by role, not --metric blended"
        );
        // Unknown names, codes and partial words stay as they are.
        assert_eq!(
            in_cli_words("NOT_FOUND: DIMENSION_UNSPECIFIED or GRANULARITY_DAILYX, Usage"),
            "NOT_FOUND: DIMENSION_UNSPECIFIED or GRANULARITY_DAILYX, Usage"
        );
    }
}
