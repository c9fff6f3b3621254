//! Proto messages to validated domain types and back. Every check of caller input
//! happens here, with a message that says what to send instead.

use bedrock_attribution::v1 as pb;
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

use crate::{
    account::AccountId,
    error::Error,
    query::{
        CostMetric, Dimension, Filter, Granularity, GroupRow, Key, PrincipalGrouping, QuerySpec,
        TagFilter,
    },
    rules::{
        arn::{Principal, PrincipalKind, is_account_id},
        money::Amount,
        usage::{Routing, UsageCategory},
    },
};

/// Longest tag key name accepted, after its source prefix (`iamPrincipal/`): AWS tag
/// keys are at most 128 characters.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Longest source prefix of a tag key (`costCategory`, `iamPrincipal`, ...).
const MAX_TAG_SOURCE_CHARS: usize = 32;
/// Longest tag value accepted: AWS tag values are at most 256 characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// Most values accepted in one filter list.
pub const MAX_FILTER_VALUES: usize = 1000;
/// Most tag restrictions in one filter (a resource carries at most 50 tags).
pub const MAX_TAG_FILTERS: usize = 50;
/// Longest ARN accepted (IAM role session ARNs stay far below).
pub const MAX_ARN_CHARS: usize = 2048;
/// Longest model name, region code or line item type accepted.
pub const MAX_NAME_CHARS: usize = 256;

/// A protobuf timestamp as a UTC instant; nanos must lie in `[0, 1e9)` (chrono would read
/// larger values as a leap second, which protobuf timestamps never carry).
pub(super) fn timestamp(
    field: &'static str,
    t: Option<&prost_types::Timestamp>,
) -> Result<DateTime<Utc>, Error> {
    let t = t.ok_or_else(|| {
        Error::invalid(
            field,
            "is required (RFC 3339 in JSON, e.g. \"2026-07-01T00:00:00Z\")",
        )
    })?;
    u32::try_from(t.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| Utc.timestamp_opt(t.seconds, nanos).single())
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{}s {}ns is not a valid timestamp", t.seconds, t.nanos),
            )
        })
}

/// The half-open range `[start, end)`; both ends required, start before end, spanning at
/// most `max_span` (`--max-range`: a range of decades would only plan a long empty scan).
pub fn time_range(
    range: Option<&pb::TimeRange>,
    max_span: std::time::Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Error> {
    let range = range.ok_or_else(|| {
        Error::invalid(
            "time_range",
            "is required: give start and end (end exclusive)",
        )
    })?;
    let start = timestamp("time_range.start", range.start.as_ref())?;
    let end = timestamp("time_range.end", range.end.as_ref())?;
    if end <= start {
        return Err(Error::invalid(
            "time_range",
            format!(
                "end {} is not after start {}; the range is half-open [start, end)",
                end.to_rfc3339(),
                start.to_rfc3339()
            ),
        ));
    }
    let span = (end - start).to_std().unwrap_or(std::time::Duration::MAX);
    if span > max_span {
        return Err(Error::invalid(
            "time_range",
            format!(
                "spans {} days, more than the server's maximum of {} days (--max-range); split it into several requests",
                span.as_secs() / 86_400,
                max_span.as_secs() / 86_400
            ),
        ));
    }
    Ok((start, end))
}

fn enum_value<T: TryFrom<i32>>(field: &'static str, value: i32, known: &str) -> Result<T, Error> {
    T::try_from(value).map_err(|_| {
        Error::invalid(
            field,
            format!("{value} is not a known value; use one of {known}"),
        )
    })
}

/// The cost metric.
pub fn metric(value: i32) -> Result<CostMetric, Error> {
    let m: pb::CostMetric = enum_value(
        "cost_metric",
        value,
        "COST_METRIC_UNBLENDED, COST_METRIC_NET_UNBLENDED, COST_METRIC_BLENDED, COST_METRIC_PUBLIC_ON_DEMAND",
    )?;
    Ok(match m {
        pb::CostMetric::Unblended => CostMetric::Unblended,
        pb::CostMetric::NetUnblended => CostMetric::NetUnblended,
        pb::CostMetric::Blended => CostMetric::Blended,
        pb::CostMetric::PublicOnDemand => CostMetric::PublicOnDemand,
    })
}

/// The granularity.
pub fn granularity(value: i32) -> Result<Granularity, Error> {
    let g: pb::Granularity = enum_value(
        "granularity",
        value,
        "GRANULARITY_UNSPECIFIED, GRANULARITY_HOURLY, GRANULARITY_DAILY, GRANULARITY_MONTHLY",
    )?;
    Ok(match g {
        pb::Granularity::Unspecified => Granularity::Whole,
        pb::Granularity::Hourly => Granularity::Hourly,
        pb::Granularity::Daily => Granularity::Daily,
        pb::Granularity::Monthly => Granularity::Monthly,
    })
}

/// Whether the request asks for fully loaded cost; allocation is defined per billing
/// period, so the range must cover whole months and buckets must be months or the range.
pub fn allocation(value: i32, spec: &QuerySpec) -> Result<bool, Error> {
    let a: pb::Allocation = enum_value(
        "allocation",
        value,
        "ALLOCATION_NONE, ALLOCATION_PROPORTIONAL",
    )?;
    if a == pb::Allocation::None {
        return Ok(false);
    }
    let month_start = |t: &DateTime<Utc>| {
        t.day() == 1 && t.num_seconds_from_midnight() == 0 && t.nanosecond() == 0
    };
    if !month_start(&spec.start) || !month_start(&spec.end) {
        return Err(Error::invalid(
            "time_range",
            format!(
                "ALLOCATION_PROPORTIONAL shares each billing period's spend, so the range must cover whole billing periods: start and end on the 1st of a month at 00:00 UTC (got {} to {})",
                spec.start.to_rfc3339(),
                spec.end.to_rfc3339()
            ),
        ));
    }
    if !matches!(spec.granularity, Granularity::Whole | Granularity::Monthly) {
        return Err(Error::invalid(
            "granularity",
            "ALLOCATION_PROPORTIONAL is defined per billing period: use GRANULARITY_UNSPECIFIED or GRANULARITY_MONTHLY",
        ));
    }
    Ok(true)
}

/// The principal grouping.
pub fn grouping(field: &'static str, value: i32) -> Result<PrincipalGrouping, Error> {
    let g: pb::PrincipalGrouping = enum_value(
        field,
        value,
        "PRINCIPAL_GROUPING_ARN, PRINCIPAL_GROUPING_ROLE, PRINCIPAL_GROUPING_ACCOUNT",
    )?;
    Ok(match g {
        pb::PrincipalGrouping::Arn => PrincipalGrouping::Arn,
        pb::PrincipalGrouping::Role => PrincipalGrouping::Role,
        pb::PrincipalGrouping::Account => PrincipalGrouping::Account,
    })
}

/// A tag key as callers send it: non-empty, a source prefix and at most 128 characters
/// after it; matched exactly. Any character is accepted, control characters included:
/// keys are the data's strings (data contract §4), a caller may ask for every key it can
/// see in an answer or a listing, and a key is only ever compared with the data, never
/// put into SQL or a log line unquoted.
pub fn tag_key(field: &'static str, key: &str) -> Result<String, Error> {
    if key.is_empty() {
        return Err(Error::invalid(
            field,
            "is required: the exact key as in the CUR tags column, e.g. \"iamPrincipal/team\" (ListTagKeys lists them)",
        ));
    }
    let (source, name) = key.split_once('/').unwrap_or(("", key));
    let chars = name.chars().count();
    if chars > MAX_TAG_KEY_CHARS || source.chars().count() > MAX_TAG_SOURCE_CHARS {
        return Err(Error::invalid(
            field,
            format!(
                "is {} characters long; tag keys are at most {MAX_TAG_KEY_CHARS} characters after their source prefix (e.g. \"iamPrincipal/\")",
                key.chars().count()
            ),
        ));
    }
    Ok(key.to_owned())
}

/// A tag value as callers send it: at most [`MAX_TAG_VALUE_CHARS`] characters, any of
/// them (see [`tag_key`]: values the data holds, NUL and TAB included, can be asked for).
pub fn tag_value(value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > MAX_TAG_VALUE_CHARS {
        return Err(format!(
            "is {chars} characters long; tag values are at most {MAX_TAG_VALUE_CHARS}"
        ));
    }
    Ok(())
}

/// Dimensions from proto values; DIMENSION_TAG takes `tag_key`.
pub fn dimensions(
    field: &'static str,
    values: &[i32],
    tag_key_field: &'static str,
    tag: &str,
    principals: PrincipalGrouping,
) -> Result<Vec<Dimension>, Error> {
    let mut out = Vec::new();
    for value in values {
        let d: pb::Dimension = enum_value(
            field,
            *value,
            "DIMENSION_PRINCIPAL, DIMENSION_MODEL, DIMENSION_ACCOUNT, DIMENSION_REGION, DIMENSION_USAGE_CATEGORY, DIMENSION_TAG, DIMENSION_LINE_ITEM_TYPE, DIMENSION_ROUTING",
        )?;
        let dimension = match d {
            pb::Dimension::Unspecified => {
                return Err(Error::invalid(
                    field,
                    "DIMENSION_UNSPECIFIED is not a dimension",
                ));
            }
            pb::Dimension::Principal => Dimension::Principal(principals),
            pb::Dimension::Model => Dimension::Model,
            pb::Dimension::Account => Dimension::Account,
            pb::Dimension::Region => Dimension::Region,
            pb::Dimension::UsageCategory => Dimension::UsageCategory,
            pb::Dimension::LineItemType => Dimension::LineItemType,
            pb::Dimension::Routing => Dimension::Routing,
            pb::Dimension::Tag => Dimension::Tag(tag_key(tag_key_field, tag)?),
        };
        if out.contains(&dimension) {
            return Err(Error::invalid(
                field,
                format!("{} is listed twice", d.as_str_name()),
            ));
        }
        out.push(dimension);
    }
    Ok(out)
}

/// A list of at most [`MAX_FILTER_VALUES`] strings, each passing `check` (which says
/// what is wrong with a value); violations name the element, `filter.models[3]`.
fn strings(
    field: &'static str,
    values: &[String],
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, Error> {
    list(field, values, |v| check(v).map(|()| v.to_owned()))
}

/// A list of at most [`MAX_FILTER_VALUES`] values, each read by `parse` (which says what is
/// wrong with a value); violations name the element, `filter.account_ids[3]`.
fn list<T>(
    field: &'static str,
    values: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, Error> {
    if values.len() > MAX_FILTER_VALUES {
        return Err(Error::invalid(
            field,
            format!(
                "has {} values; at most {MAX_FILTER_VALUES}: split the request or leave the list empty for all",
                values.len()
            ),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            parse(value).map_err(|reason| Error::invalid(format!("{field}[{i}]"), reason))
        })
        .collect()
}

/// At most `max` characters, none of them a control character (NUL, newline...).
pub fn text(value: &str, max: usize, what: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > max {
        return Err(format!(
            "is {chars} characters long; {what} are at most {max}"
        ));
    }
    if let Some(bad) = value.chars().find(|c| c.is_control()) {
        return Err(format!("contains the control character {bad:?}"));
    }
    Ok(())
}

/// A twelve-digit AWS account id.
pub fn account(value: &str) -> Result<AccountId, String> {
    AccountId::parse(value).ok_or_else(|| {
        format!(
            "{:?} is not a 12-digit AWS account id",
            value.chars().take(40).collect::<String>()
        )
    })
}

/// A caller as CUR names it: empty (no caller), an ARN `arn:partition:service:region:account:resource`,
/// or another identity string CUR writes (`bedrock-console-session:unknown`).
pub fn principal_filter(value: &str) -> Result<(), String> {
    text(value, MAX_ARN_CHARS, "principals")?;
    if value.starts_with("arn:") {
        let parts: Vec<&str> = value.splitn(6, ':').collect();
        let shaped = parts.len() == 6
            && !parts[1].is_empty()
            && !parts[2].is_empty()
            && (parts[4].is_empty() || is_account_id(parts[4]))
            && !parts[5].is_empty();
        if !shaped {
            return Err(format!(
                "{:?} is not an ARN: use arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE with a 12-digit account, e.g. arn:aws:iam::123456789012:role/app",
                value.chars().take(80).collect::<String>()
            ));
        }
    }
    Ok(())
}

/// The filter (absent = no restriction).
pub fn filter(filter: Option<&pb::Filter>) -> Result<Filter, Error> {
    let Some(f) = filter else {
        return Ok(Filter::default());
    };
    if f.usage_categories.len() > MAX_FILTER_VALUES {
        return Err(Error::invalid(
            "filter.usage_categories",
            format!(
                "has {} values; at most {MAX_FILTER_VALUES}",
                f.usage_categories.len()
            ),
        ));
    }
    if f.routings.len() > MAX_FILTER_VALUES {
        return Err(Error::invalid(
            "filter.routings",
            format!(
                "has {} values; at most {MAX_FILTER_VALUES}",
                f.routings.len()
            ),
        ));
    }
    if f.tags.len() > MAX_TAG_FILTERS {
        return Err(Error::invalid(
            "filter.tags",
            format!(
                "has {} tag restrictions; at most {MAX_TAG_FILTERS}",
                f.tags.len()
            ),
        ));
    }
    let usage_categories = f
        .usage_categories
        .iter()
        .map(|v| {
            let u: pb::UsageCategory = enum_value(
                "filter.usage_categories",
                *v,
                "USAGE_CATEGORY_ON_DEMAND ... USAGE_CATEGORY_OTHER",
            )?;
            u8::try_from(*v)
                .ok()
                .and_then(UsageCategory::from_code)
                .ok_or_else(|| {
                    Error::invalid(
                        "filter.usage_categories",
                        format!("{} cannot be filtered on", u.as_str_name()),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let routings = f
        .routings
        .iter()
        .map(|v| {
            let r: pb::Routing = enum_value(
                "filter.routings",
                *v,
                "ROUTING_IN_REGION, ROUTING_CROSS_REGION_GEOGRAPHIC, ROUTING_CROSS_REGION_GLOBAL",
            )?;
            u8::try_from(*v)
                .ok()
                .and_then(Routing::from_code)
                .ok_or_else(|| {
                    Error::invalid(
                        "filter.routings",
                        format!(
                            "{} cannot be filtered on; use ROUTING_IN_REGION, ROUTING_CROSS_REGION_GEOGRAPHIC or ROUTING_CROSS_REGION_GLOBAL",
                            r.as_str_name()
                        ),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let tags = f
        .tags
        .iter()
        .map(|t| {
            Ok(TagFilter {
                key: tag_key("filter.tags.key", &t.key)?,
                values: strings("filter.tags.values", &t.values, tag_value)?,
                untagged: t.untagged,
            })
        })
        .collect::<Result<_, Error>>()?;
    let name = |v: &str| text(v, MAX_NAME_CHARS, "names");
    Ok(Filter {
        account_ids: list("filter.account_ids", &f.account_ids, account)?,
        payer_account_ids: list("filter.payer_account_ids", &f.payer_account_ids, account)?,
        principals: strings("filter.principals", &f.principals, principal_filter)?,
        models: strings("filter.models", &f.models, name)?,
        regions: strings("filter.regions", &f.regions, name)?,
        line_item_types: strings("filter.line_item_types", &f.line_item_types, name)?,
        usage_categories,
        routings,
        tags,
    })
}

/// The `key_prefix` of ListTagKeys: at most a tag key long, any characters (a prefix
/// of any key [`tag_key`] accepts).
pub fn key_prefix(prefix: &str) -> Result<&str, Error> {
    let chars = prefix.chars().count();
    let max = MAX_TAG_KEY_CHARS + MAX_TAG_SOURCE_CHARS + 1;
    if chars > max {
        return Err(Error::invalid(
            "key_prefix",
            format!("is {chars} characters long; key prefixes are at most {max}"),
        ));
    }
    Ok(prefix)
}

/// An exact amount as `Money`.
pub fn money(currency: &str, amount: Amount) -> pb::Money {
    let (units, nanos) = amount.units_and_nanos();
    pb::Money {
        currency_code: currency.to_owned(),
        units,
        nanos,
        exact: amount.exact_string(),
    }
}

/// Per-currency amounts as `Money` values.
pub fn moneys<'a>(amounts: impl IntoIterator<Item = (&'a String, &'a Amount)>) -> Vec<pb::Money> {
    amounts.into_iter().map(|(c, a)| money(c, *a)).collect()
}

/// Token sums as `Tokens`.
pub fn tokens(t: crate::layers::Tokens) -> pb::Tokens {
    pb::Tokens {
        input: t.input,
        output: t.output,
        cache_read: t.cache_read,
        cache_write: t.cache_write,
    }
}

fn kind(kind: PrincipalKind) -> pb::PrincipalKind {
    match kind {
        PrincipalKind::IamUser => pb::PrincipalKind::IamUser,
        PrincipalKind::IamRole => pb::PrincipalKind::IamRole,
        PrincipalKind::AssumedRole => pb::PrincipalKind::AssumedRole,
        PrincipalKind::FederatedUser => pb::PrincipalKind::FederatedUser,
        PrincipalKind::Root => pb::PrincipalKind::Root,
        PrincipalKind::Unattributed => pb::PrincipalKind::Unattributed,
        PrincipalKind::Other => pb::PrincipalKind::Other,
    }
}

/// The `Principal` message of a group key under a grouping.
pub fn principal(key: Option<&str>, grouping: PrincipalGrouping) -> pb::Principal {
    match (key, grouping) {
        (None, _) => pb::Principal {
            kind: pb::PrincipalKind::Unattributed.into(),
            ..Default::default()
        },
        (Some(account), PrincipalGrouping::Account) if is_account_id(account) => pb::Principal {
            account_id: account.to_owned(),
            ..Default::default()
        },
        (Some(arn), _) => {
            let p = Principal::parse(Some(arn));
            pb::Principal {
                arn: p.arn,
                kind: kind(p.kind).into(),
                account_id: p.account_id.map(|a| a.to_string()).unwrap_or_default(),
                name: p.name,
                session_name: p.session_name,
                partition: p.partition,
            }
        }
    }
}

/// A proto row from a group row, setting the fields the spec's dimensions name, and the
/// direct and allocated parts when it asks for allocation.
pub fn row(group: &GroupRow, spec: &QuerySpec) -> pb::Row {
    let mut row = pb::Row {
        cost: Some(money(&group.currency, group.cost)),
        direct_cost: spec
            .allocation
            .then(|| money(&group.currency, group.cost - group.allocated)),
        allocated_cost: spec
            .allocation
            .then(|| money(&group.currency, group.allocated)),
        tokens: Some(tokens(group.tokens)),
        line_items: group.line_items,
        period_start: group.bucket.map(|us| prost_types::Timestamp {
            seconds: us.div_euclid(1_000_000),
            nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
        }),
        ..Default::default()
    };
    for (dimension, key) in spec.dimensions.iter().zip(&group.keys) {
        let text = key.as_ref().and_then(Key::text);
        let owned = text.unwrap_or_default().to_owned();
        match dimension {
            Dimension::Principal(grouping) => row.principal = Some(principal(text, *grouping)),
            Dimension::Model => row.model = owned,
            Dimension::Account => row.account_id = owned,
            Dimension::Region => row.region = owned,
            Dimension::LineItemType => row.line_item_type = owned,
            Dimension::UsageCategory => {
                row.usage_category = match key {
                    Some(Key::Category(c)) => i32::from(c.code()),
                    _ => pb::UsageCategory::Other as i32,
                };
            }
            Dimension::Routing => {
                row.routing = match key {
                    Some(Key::Routing(r)) => i32::from(r.code()),
                    _ => pb::Routing::InRegion as i32,
                };
            }
            Dimension::Tag(tag_key) => {
                let tag = Some(pb::TagValue {
                    key: tag_key.clone(),
                    value: owned,
                    untagged: key.is_none(),
                });
                // A second tag dimension (CostByTag's also_group_by) has its own field.
                if row.tag.is_none() {
                    row.tag = tag;
                } else {
                    row.also_tag = tag;
                }
            }
        }
    }
    row
}

/// Sets the efficiency view's fields of `row` from its group: output per input token
/// and cache-read share (input counting plain, cache-read and cache-write tokens; unset
/// without input) and the cache saving, rounded half-even from units of 1e-16.
pub fn efficiency(row: &mut pb::Row, group: &GroupRow) {
    let t = &group.tokens;
    let input = t.input + t.cache_read + t.cache_write;
    if input > 0 {
        row.output_input_ratio = Some(t.output as f64 / input as f64);
        row.cache_read_share = Some(t.cache_read as f64 / input as f64);
    }
    row.cache_read_saving = Some(money(&group.currency, group.cache_saving.rounded()));
}

/// One period's allocation summary as a proto message.
pub fn allocation_summary(
    period: &crate::snapshot::PeriodData,
    a: &crate::allocate::AllocationSummary,
) -> pb::AllocationSummary {
    let metric = match a.metric {
        CostMetric::Unblended => pb::CostMetric::Unblended,
        CostMetric::NetUnblended => pb::CostMetric::NetUnblended,
        CostMetric::Blended => pb::CostMetric::Blended,
        CostMetric::PublicOnDemand => pb::CostMetric::PublicOnDemand,
    };
    pb::AllocationSummary {
        source: period.source.clone(),
        billing_period: period.period.to_string(),
        cost_metric: metric.into(),
        shared_within_account: Some(money(&a.currency, a.within_account)),
        shared_across_payer: Some(money(&a.currency, a.across_payer)),
        unattributed: Some(money(&a.currency, a.unattributed)),
    }
}

/// A time as a proto timestamp.
pub fn time(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored codes go on the wire as they are, so each must be its proto value.
    #[test]
    fn stored_codes_are_the_proto_values() {
        for c in UsageCategory::ALL {
            let wire = pb::UsageCategory::try_from(i32::from(c.code())).map(|w| w.as_str_name());
            let want = format!("USAGE_CATEGORY_{}", c.name().to_ascii_uppercase());
            assert_eq!(wire.ok(), Some(want.as_str()));
        }
        for r in Routing::ALL {
            let wire = pb::Routing::try_from(i32::from(r.code())).map(|w| w.as_str_name());
            let want = format!("ROUTING_{}", r.name().to_ascii_uppercase());
            assert_eq!(wire.ok(), Some(want.as_str()));
        }
    }

    #[test]
    fn routing_filters() {
        let with = |routings: Vec<i32>| {
            filter(Some(&pb::Filter {
                routings,
                ..Default::default()
            }))
        };
        let f = with(vec![
            pb::Routing::CrossRegionGlobal.into(),
            pb::Routing::InRegion.into(),
        ]);
        assert_eq!(
            f.ok().map(|f| f.routings),
            Some(vec![Routing::CrossRegionGlobal, Routing::InRegion])
        );
        for (bad, needle) in [
            (0, "ROUTING_UNSPECIFIED cannot be filtered on"),
            (4, "4 is not a known value"),
        ] {
            let message = with(vec![bad]).err().map(|e| e.to_string());
            assert!(
                message.as_deref().is_some_and(|m| m.contains(needle)),
                "{message:?}"
            );
        }
    }
}
