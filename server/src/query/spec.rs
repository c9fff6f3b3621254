//! The validated, engine-independent form of a query.

use chrono::{DateTime, Utc};

use crate::{
    account::AccountId,
    auth::Scope,
    rules::usage::{Routing, UsageCategory},
};

/// Which cost column is summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CostMetric {
    /// `line_item_unblended_cost`.
    #[default]
    Unblended,
    /// `line_item_net_unblended_cost`.
    NetUnblended,
    /// `line_item_blended_cost`.
    Blended,
    /// `pricing_public_on_demand_cost`.
    PublicOnDemand,
}

/// Time bucketing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Granularity {
    /// One bucket for the whole range.
    #[default]
    Whole,
    /// Hour of usage start.
    Hourly,
    /// Day of usage start (UTC).
    Daily,
    /// Calendar month of usage start (UTC).
    Monthly,
}

impl Granularity {
    /// The `date_trunc` unit, if any.
    pub fn trunc_unit(self) -> Option<&'static str> {
        match self {
            Self::Whole => None,
            Self::Hourly => Some("hour"),
            Self::Daily => Some("day"),
            Self::Monthly => Some("month"),
        }
    }
}

/// How callers are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrincipalGrouping {
    /// Exact ARN.
    #[default]
    Arn,
    /// Sessions collapsed to their role.
    Role,
    /// The caller's account.
    Account,
}

/// A dimension to group by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dimension {
    /// The caller.
    Principal(PrincipalGrouping),
    /// Model name.
    Model,
    /// Usage account.
    Account,
    /// Region code.
    Region,
    /// Usage category.
    UsageCategory,
    /// Routing (in-region, cross-region geographic or global).
    Routing,
    /// CUR line item type.
    LineItemType,
    /// The value of a tag key (exact).
    Tag(String),
}

/// Restricts a tag key to values, or to line items without it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagFilter {
    /// Exact key.
    pub key: String,
    /// Values kept.
    pub values: Vec<String>,
    /// Also keep line items lacking the key.
    pub untagged: bool,
}

impl TagFilter {
    /// Whether a line item whose value for the key is `value` passes.
    pub fn accepts(&self, value: Option<&str>) -> bool {
        match value {
            None => self.untagged,
            Some(v) => self.values.iter().any(|want| want == v),
        }
    }
}

/// Restrictions; empty lists restrict nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// Usage accounts.
    pub account_ids: Vec<AccountId>,
    /// Payer accounts.
    pub payer_account_ids: Vec<AccountId>,
    /// Exact caller ARNs; the empty string selects unattributed spend.
    pub principals: Vec<String>,
    /// Model names.
    pub models: Vec<String>,
    /// Region codes.
    pub regions: Vec<String>,
    /// Line item types.
    pub line_item_types: Vec<String>,
    /// Usage categories.
    pub usage_categories: Vec<UsageCategory>,
    /// Routings.
    pub routings: Vec<Routing>,
    /// Tag restrictions, all of which must pass.
    pub tags: Vec<TagFilter>,
}

/// A validated query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySpec {
    /// Inclusive start of usage.
    pub start: DateTime<Utc>,
    /// Exclusive end of usage.
    pub end: DateTime<Utc>,
    /// Restrictions.
    pub filter: Filter,
    /// Cost column.
    pub metric: CostMetric,
    /// Time bucketing.
    pub granularity: Granularity,
    /// Group keys besides currency, in order.
    pub dimensions: Vec<Dimension>,
    /// Sum fully loaded cost (direct plus proportionally allocated), see [`crate::allocate`].
    pub allocation: bool,
    /// Also sum the cache saving of each group (the efficiency view; see
    /// [`crate::layers::rates`]).
    pub efficiency: bool,
    /// The line items the caller may see, ANDed with the filter in every plan; the
    /// default is all of them.
    pub scope: Scope,
}
