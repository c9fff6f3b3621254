//! How wire values read in every output: principal and tag labels, enum names,
//! timestamps, exact amounts, and the JSON shapes shared by several commands.

use std::io::{self, Write};

use chrono::SecondsFormat;
use serde::Serialize;

use super::CliError;
use crate::{Error, Money, from_timestamp, proto};

/// Shown in table output for an empty model or region.
pub(crate) const NONE: &str = "(none)";
/// Shown for spend without a caller.
pub(crate) const UNATTRIBUTED: &str = "UNATTRIBUTED";
/// Shown for line items without the tag key.
pub(crate) const UNTAGGED: &str = "UNTAGGED";

/// The principal column: `UNATTRIBUTED`, the account id under account grouping, or
/// the ARN.
pub(crate) fn principal(p: &proto::Principal, grouping: proto::PrincipalGrouping) -> String {
    if p.kind() == proto::PrincipalKind::Unattributed {
        return UNATTRIBUTED.to_owned();
    }
    match grouping {
        proto::PrincipalGrouping::Account if !p.account_id.is_empty() => p.account_id.clone(),
        proto::PrincipalGrouping::Account
        | proto::PrincipalGrouping::Arn
        | proto::PrincipalGrouping::Role => p.arn.clone(),
    }
}

/// The tag column: the value, or `UNTAGGED`.
pub(crate) fn tag_value(tag: &proto::TagValue) -> String {
    if tag.untagged {
        UNTAGGED.to_owned()
    } else {
        tag.value.clone()
    }
}

/// `USAGE_CATEGORY_ON_DEMAND` reads `on-demand`, as on the command line.
pub(crate) fn usage_category(category: proto::UsageCategory) -> String {
    enum_label(category.as_str_name(), "USAGE_CATEGORY_")
}

/// `ROUTING_CROSS_REGION_GLOBAL` reads `cross-region-global`, as on the command line.
pub(crate) fn routing(routing: proto::Routing) -> String {
    enum_label(routing.as_str_name(), "ROUTING_")
}

/// `PRINCIPAL_KIND_ASSUMED_ROLE` reads `assumed-role`.
pub(crate) fn principal_kind(kind: proto::PrincipalKind) -> String {
    enum_label(kind.as_str_name(), "PRINCIPAL_KIND_")
}

fn enum_label(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// RFC 3339 in UTC, whole seconds unless the timestamp has a fraction.
pub(crate) fn timestamp(t: &prost_types::Timestamp) -> String {
    match from_timestamp(t) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("invalid timestamp ({}s {}ns)", t.seconds, t.nanos),
    }
}

/// An optional timestamp, empty when unset.
pub(crate) fn opt_timestamp(t: Option<&prost_types::Timestamp>) -> String {
    t.map(timestamp).unwrap_or_default()
}

/// Reads an amount the server sent; `what` names it in the error.
pub(crate) fn money(money: Option<&proto::Money>, what: &str) -> Result<Money, CliError> {
    let money = money.ok_or_else(|| Error::invalid_response(format!("{what} is missing")))?;
    Money::try_from(money).map_err(|e| {
        let detail = match e {
            Error::InvalidArgument { message } => message,
            other => other.to_string(),
        };
        CliError::Client(Error::invalid_response(format!("{what}: {detail}")))
    })
}

/// Input, output, cache-read and cache-write token cells.
pub(crate) fn token_cells(t: &proto::Tokens) -> [String; 4] {
    [
        t.input.to_string(),
        t.output.to_string(),
        t.cache_read.to_string(),
        t.cache_write.to_string(),
    ]
}

/// Adds `b` into `a`, saturating.
pub(crate) fn add_tokens(a: &mut proto::Tokens, b: &proto::Tokens) {
    a.input = a.input.saturating_add(b.input);
    a.output = a.output.saturating_add(b.output);
    a.cache_read = a.cache_read.saturating_add(b.cache_read);
    a.cache_write = a.cache_write.saturating_add(b.cache_write);
}

/// `note: ...` lines for the remarks of an answer.
pub(crate) fn write_notes(out: &mut dyn Write, info: Option<&proto::AnswerInfo>) -> io::Result<()> {
    for note in info.map(|i| i.notes.as_slice()).unwrap_or_default() {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}

/// An amount in JSON: the exact decimal as a string, never a float.
#[derive(Debug, Serialize)]
pub(crate) struct JsonMoney {
    pub(crate) amount: String,
    pub(crate) currency_code: String,
}

impl JsonMoney {
    pub(crate) fn from_proto(m: Option<&proto::Money>, what: &str) -> Result<Self, CliError> {
        let m = money(m, what)?;
        Ok(JsonMoney {
            amount: m.amount.to_string(),
            currency_code: m.currency_code,
        })
    }

    pub(crate) fn list(costs: &[proto::Money], what: &str) -> Result<Vec<Self>, CliError> {
        costs
            .iter()
            .map(|m| JsonMoney::from_proto(Some(m), what))
            .collect()
    }
}

/// Token counts in JSON.
#[derive(Debug, Serialize)]
pub(crate) struct JsonTokens {
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
}

impl From<proto::Tokens> for JsonTokens {
    fn from(t: proto::Tokens) -> Self {
        JsonTokens {
            input: t.input,
            output: t.output,
            cache_read: t.cache_read,
            cache_write: t.cache_write,
        }
    }
}

/// A principal in JSON: the column label plus every parsed field.
#[derive(Debug, Serialize)]
pub(crate) struct JsonPrincipal {
    /// What the table shows: ARN, account id or `UNATTRIBUTED`.
    label: String,
    arn: String,
    kind: String,
    account_id: String,
    name: String,
    session_name: String,
    partition: String,
}

impl JsonPrincipal {
    pub(crate) fn new(p: &proto::Principal, grouping: proto::PrincipalGrouping) -> Self {
        JsonPrincipal {
            label: principal(p, grouping),
            arn: p.arn.clone(),
            kind: principal_kind(p.kind()),
            account_id: p.account_id.clone(),
            name: p.name.clone(),
            session_name: p.session_name.clone(),
            partition: p.partition.clone(),
        }
    }
}

/// A problem the server met, in JSON.
#[derive(Debug, Serialize)]
pub(crate) struct JsonProblem {
    at: String,
    source: String,
    billing_period: String,
    file: String,
    message: String,
}

impl From<&proto::Problem> for JsonProblem {
    fn from(p: &proto::Problem) -> Self {
        JsonProblem {
            at: opt_timestamp(p.at.as_ref()),
            source: p.source.clone(),
            billing_period: p.billing_period.clone(),
            file: p.file.clone(),
            message: p.message.clone(),
        }
    }
}
