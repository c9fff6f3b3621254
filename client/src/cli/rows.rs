//! Rendering of the grouped answers (CostByPrincipal, CostByTag, TokenUsage).
//!
//! A row only carries the dimensions its request grouped by, and an empty model can
//! mean "not grouped" or "no model", so the columns come from the request
//! ([`RowLayout`]), never from the rows.

use std::collections::BTreeMap;
use std::io::Write;

use rust_decimal::Decimal;

use serde::Serialize;

use super::table::{Column, Table};
use super::{CliError, Format, labels};
use crate::{AllRows, proto};

/// A dimension column of a grouped answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimColumn {
    /// The caller, grouped as given.
    Principal(proto::PrincipalGrouping),
    /// The value of the tag key.
    Tag,
    /// CostByTag only: the value of the second tag key (`also_group_by_tag_key`).
    AlsoTag,
    /// The model name.
    Model,
    /// The usage account.
    Account,
    /// The region code.
    Region,
    /// The usage category.
    UsageCategory,
    /// The CUR line item type.
    LineItemType,
    /// In-region, cross-region geographic or cross-region global.
    Routing,
}

/// The columns of a grouped answer, derived from its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowLayout {
    /// Grouped dimensions, in request order, without duplicates.
    pub dimensions: Vec<DimColumn>,
    /// A granularity was requested, so rows carry `period_start`.
    pub period: bool,
    /// Show `cost_per_million_tokens` (TokenUsage).
    pub cost_per_million: bool,
    /// Show direct and allocated cost beside the fully loaded cost.
    pub allocation: bool,
    /// Show the efficiency view: output per input token, cache-read share and saving
    /// (TokenUsage with `efficiency`).
    pub efficiency: bool,
}

impl RowLayout {
    /// Columns of a CostByPrincipal answer: the principal, then `also_group_by`.
    pub fn cost_by_principal(request: &proto::CostByPrincipalRequest) -> Self {
        let grouping = request.grouping();
        let first = DimColumn::Principal(grouping);
        let also = request.also_group_by();
        RowLayout {
            allocation: request.allocation() == proto::Allocation::Proportional,
            ..RowLayout::new(
                std::iter::once(first).chain(dims(also, grouping)),
                request.granularity(),
                false,
            )
        }
    }

    /// Columns of a CostByTag answer: the tag value, then `also_group_by`, where a
    /// second tag key shows as its own column (`Row.also_tag`).
    pub fn cost_by_tag(request: &proto::CostByTagRequest) -> Self {
        let also = dims(request.also_group_by(), request.principal_grouping()).map(|d| {
            if d == DimColumn::Tag {
                DimColumn::AlsoTag
            } else {
                d
            }
        });
        RowLayout {
            allocation: request.allocation() == proto::Allocation::Proportional,
            ..RowLayout::new(
                std::iter::once(DimColumn::Tag).chain(also),
                request.granularity(),
                false,
            )
        }
    }

    /// Columns of a TokenUsage answer: `group_by`, plus the cost per million tokens.
    pub fn token_usage(request: &proto::TokenUsageRequest) -> Self {
        let group_by = dims(request.group_by(), request.principal_grouping());
        RowLayout {
            efficiency: request.efficiency,
            ..RowLayout::new(group_by, request.granularity(), true)
        }
    }

    fn new(
        columns: impl Iterator<Item = DimColumn>,
        granularity: proto::Granularity,
        cost_per_million: bool,
    ) -> Self {
        let mut dimensions = Vec::new();
        for column in columns {
            let seen = dimensions.iter().any(|d| same_kind(*d, column));
            if !seen {
                dimensions.push(column);
            }
        }
        RowLayout {
            dimensions,
            period: granularity != proto::Granularity::Unspecified,
            cost_per_million,
            allocation: false,
            efficiency: false,
        }
    }
}

fn same_kind(a: DimColumn, b: DimColumn) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

fn dims(
    dimensions: impl Iterator<Item = proto::Dimension>,
    grouping: proto::PrincipalGrouping,
) -> impl Iterator<Item = DimColumn> {
    dimensions.filter_map(move |d| match d {
        proto::Dimension::Unspecified => None,
        proto::Dimension::Principal => Some(DimColumn::Principal(grouping)),
        proto::Dimension::Model => Some(DimColumn::Model),
        proto::Dimension::Account => Some(DimColumn::Account),
        proto::Dimension::Region => Some(DimColumn::Region),
        proto::Dimension::UsageCategory => Some(DimColumn::UsageCategory),
        proto::Dimension::Tag => Some(DimColumn::Tag),
        proto::Dimension::LineItemType => Some(DimColumn::LineItemType),
        proto::Dimension::Routing => Some(DimColumn::Routing),
    })
}

/// Writes a grouped answer in `format`: a table with a totals line per currency, CSV
/// without totals, or one JSON document with rows, totals and notes.
///
/// In table output, token and line-item totals are the sums over the rows of each
/// currency; cost totals are the server's.
pub fn render_rows(
    out: &mut dyn Write,
    format: Format,
    layout: &RowLayout,
    answer: &AllRows,
) -> Result<(), CliError> {
    match format {
        Format::Table => {
            rows_table(layout, answer, true)?.write_text(out)?;
            labels::write_notes(out, answer.info.as_ref())?;
        }
        Format::Csv => rows_table(layout, answer, false)?.write_csv(out)?,
        Format::Json => super::write_json(out, &rows_document(layout, answer)?)?,
    }
    Ok(())
}

fn dim_column(dim: DimColumn) -> Column {
    match dim {
        DimColumn::Principal(_) => Column::text("PRINCIPAL", "principal"),
        DimColumn::Tag => Column::text("TAG", "tag"),
        DimColumn::AlsoTag => Column::text("TAG 2", "also_tag"),
        DimColumn::Model => Column::text("MODEL", "model"),
        DimColumn::Account => Column::text("ACCOUNT", "account_id"),
        DimColumn::Region => Column::text("REGION", "region"),
        DimColumn::UsageCategory => Column::text("USAGE CATEGORY", "usage_category"),
        DimColumn::LineItemType => Column::text("LINE ITEM TYPE", "line_item_type"),
        DimColumn::Routing => Column::text("ROUTING", "routing"),
    }
}

/// The text of a dimension cell; `table` shows `(none)` for missing model and region.
fn dim_cell(dim: DimColumn, row: &proto::Row, table: bool) -> String {
    let or_none = |s: &str| {
        if s.is_empty() && table {
            labels::NONE.to_owned()
        } else {
            s.to_owned()
        }
    };
    match dim {
        DimColumn::Principal(grouping) => row
            .principal
            .as_ref()
            .map(|p| labels::principal(p, grouping))
            .unwrap_or_default(),
        DimColumn::Tag => row.tag.as_ref().map(labels::tag_value).unwrap_or_default(),
        DimColumn::AlsoTag => row
            .also_tag
            .as_ref()
            .map(labels::tag_value)
            .unwrap_or_default(),
        DimColumn::Model => or_none(&row.model),
        DimColumn::Account => row.account_id.clone(),
        DimColumn::Region => or_none(&row.region),
        DimColumn::UsageCategory => labels::usage_category(row.usage_category()),
        DimColumn::LineItemType => row.line_item_type.clone(),
        DimColumn::Routing => labels::routing(row.routing()),
    }
}

fn rows_table(layout: &RowLayout, answer: &AllRows, table: bool) -> Result<Table, CliError> {
    let mut columns: Vec<Column> = layout.dimensions.iter().map(|d| dim_column(*d)).collect();
    if layout.period {
        columns.push(Column::text("PERIOD START", "period_start"));
    }
    let leading = columns.len();
    if layout.allocation {
        columns.push(Column::number("DIRECT", "direct_cost"));
        columns.push(Column::number("ALLOCATED", "allocated_cost"));
    }
    columns.extend([
        Column::number("COST", "cost"),
        Column::text("CURRENCY", "currency"),
        Column::number("INPUT TOKENS", "input_tokens"),
        Column::number("OUTPUT TOKENS", "output_tokens"),
        Column::number("CACHE READ", "cache_read_tokens"),
        Column::number("CACHE WRITE", "cache_write_tokens"),
        Column::number("LINE ITEMS", "line_items"),
    ]);
    if layout.cost_per_million {
        columns.push(Column::number("COST/1M TOK", "cost_per_million_tokens"));
    }
    if layout.efficiency {
        columns.extend([
            Column::number("OUT/IN", "output_input_ratio"),
            Column::number("CACHE SHARE", "cache_read_share"),
            Column::number("CACHE SAVING", "cache_read_saving"),
        ]);
    }
    let mut out = Table::new(columns);
    // Per currency: summed tokens and line items of the rows, for the totals lines.
    let mut sums: BTreeMap<String, (proto::Tokens, i64)> = BTreeMap::new();
    let mut split: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for row in &answer.rows {
        let mut cells: Vec<String> = layout
            .dimensions
            .iter()
            .map(|d| dim_cell(*d, row, table))
            .collect();
        if layout.period {
            cells.push(
                row.period_start
                    .as_ref()
                    .map(labels::timestamp)
                    .unwrap_or_default(),
            );
        }
        let cost = labels::money(row.cost.as_ref(), "row cost")?;
        if layout.allocation {
            let direct = labels::money(row.direct_cost.as_ref(), "direct cost")?.amount;
            let allocated = labels::money(row.allocated_cost.as_ref(), "allocated cost")?.amount;
            let sum = split.entry(cost.currency_code.clone()).or_default();
            sum.0 += direct;
            sum.1 += allocated;
            cells.push(direct.to_string());
            cells.push(allocated.to_string());
        }
        let tokens = row.tokens.unwrap_or_default();
        let sum = sums.entry(cost.currency_code.clone()).or_default();
        labels::add_tokens(&mut sum.0, &tokens);
        sum.1 = sum.1.saturating_add(row.line_items);
        cells.push(cost.amount.to_string());
        cells.push(cost.currency_code);
        cells.extend(labels::token_cells(&tokens));
        cells.push(row.line_items.to_string());
        if layout.cost_per_million {
            let per_million = match &row.cost_per_million_tokens {
                Some(m) => labels::money(Some(m), "cost per million tokens")?
                    .amount
                    .to_string(),
                None => String::new(),
            };
            cells.push(per_million);
        }
        if layout.efficiency {
            // Ratios are shown to four places; the saving exactly.
            let ratio = |r: Option<f64>| r.map(|r| format!("{r:.4}")).unwrap_or_default();
            cells.push(ratio(row.output_input_ratio));
            cells.push(ratio(row.cache_read_share));
            cells.push(match &row.cache_read_saving {
                Some(m) => labels::money(Some(m), "cache read saving")?
                    .amount
                    .to_string(),
                None => String::new(),
            });
        }
        out.push(cells);
    }
    if table {
        for total in &answer.totals {
            let total = labels::money(Some(total), "total")?;
            let (tokens, line_items) = sums.remove(&total.currency_code).unwrap_or_default();
            let mut cells = vec![String::new(); leading];
            if let Some(first) = cells.first_mut() {
                *first = "TOTAL".to_owned();
            }
            if layout.allocation {
                let (direct, allocated) = split.remove(&total.currency_code).unwrap_or_default();
                cells.push(direct.to_string());
                cells.push(allocated.to_string());
            }
            cells.push(total.amount.to_string());
            cells.push(total.currency_code);
            cells.extend(labels::token_cells(&tokens));
            cells.push(line_items.to_string());
            out.push_footer(cells);
        }
    }
    Ok(out)
}

/// The JSON document of a grouped answer.
#[derive(Debug, Serialize)]
struct RowsDocument {
    rows: Vec<JsonRow>,
    totals: Vec<labels::JsonMoney>,
    total_tokens: labels::JsonTokens,
    snapshot_version: u64,
    notes: Vec<String>,
}

/// One row; only the grouped dimensions are present.
#[derive(Debug, Serialize)]
struct JsonRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<labels::JsonPrincipal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<JsonTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    also_tag: Option<JsonTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line_item_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direct_cost: Option<labels::JsonMoney>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allocated_cost: Option<labels::JsonMoney>,
    cost: labels::JsonMoney,
    tokens: labels::JsonTokens,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_per_million_tokens: Option<labels::JsonMoney>,
    line_items: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_input_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_saving: Option<labels::JsonMoney>,
}

#[derive(Debug, Serialize)]
struct JsonTag {
    key: String,
    value: String,
    untagged: bool,
}

fn rows_document(layout: &RowLayout, answer: &AllRows) -> Result<RowsDocument, CliError> {
    let mut rows = Vec::with_capacity(answer.rows.len());
    for row in &answer.rows {
        let mut json = JsonRow {
            principal: None,
            tag: None,
            also_tag: None,
            model: None,
            account_id: None,
            region: None,
            usage_category: None,
            line_item_type: None,
            routing: None,
            period_start: None,
            direct_cost: match &row.direct_cost {
                Some(m) => Some(labels::JsonMoney::from_proto(Some(m), "direct cost")?),
                None => None,
            },
            allocated_cost: match &row.allocated_cost {
                Some(m) => Some(labels::JsonMoney::from_proto(Some(m), "allocated cost")?),
                None => None,
            },
            cost: labels::JsonMoney::from_proto(row.cost.as_ref(), "row cost")?,
            tokens: row.tokens.unwrap_or_default().into(),
            cost_per_million_tokens: match &row.cost_per_million_tokens {
                Some(m) => Some(labels::JsonMoney::from_proto(
                    Some(m),
                    "cost per million tokens",
                )?),
                None => None,
            },
            line_items: row.line_items,
            output_input_ratio: row.output_input_ratio,
            cache_read_share: row.cache_read_share,
            cache_read_saving: match &row.cache_read_saving {
                Some(m) => Some(labels::JsonMoney::from_proto(Some(m), "cache read saving")?),
                None => None,
            },
        };
        for dim in &layout.dimensions {
            match dim {
                DimColumn::Principal(grouping) => {
                    json.principal = Some(labels::JsonPrincipal::new(
                        &row.principal.clone().unwrap_or_default(),
                        *grouping,
                    ));
                }
                DimColumn::Tag | DimColumn::AlsoTag => {
                    let (source, target) = if *dim == DimColumn::Tag {
                        (&row.tag, &mut json.tag)
                    } else {
                        (&row.also_tag, &mut json.also_tag)
                    };
                    let tag = source.clone().unwrap_or_default();
                    *target = Some(JsonTag {
                        key: tag.key,
                        value: tag.value,
                        untagged: tag.untagged,
                    });
                }
                DimColumn::Model => json.model = Some(row.model.clone()),
                DimColumn::Account => json.account_id = Some(row.account_id.clone()),
                DimColumn::Region => json.region = Some(row.region.clone()),
                DimColumn::UsageCategory => {
                    json.usage_category = Some(labels::usage_category(row.usage_category()));
                }
                DimColumn::LineItemType => json.line_item_type = Some(row.line_item_type.clone()),
                DimColumn::Routing => json.routing = Some(labels::routing(row.routing())),
            }
        }
        if layout.period {
            json.period_start = row.period_start.as_ref().map(labels::timestamp);
        }
        rows.push(json);
    }
    let totals = answer
        .totals
        .iter()
        .map(|m| labels::JsonMoney::from_proto(Some(m), "total"))
        .collect::<Result<_, _>>()?;
    let info = answer.info.clone().unwrap_or_default();
    Ok(RowsDocument {
        rows,
        totals,
        total_tokens: answer.total_tokens.unwrap_or_default().into(),
        snapshot_version: info.snapshot_version,
        notes: info.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(exact: &str, currency: &str) -> Option<proto::Money> {
        Some(proto::Money {
            currency_code: currency.to_owned(),
            exact: exact.to_owned(),
            ..Default::default()
        })
    }

    fn tokens(input: i64, output: i64, cache_read: i64, cache_write: i64) -> Option<proto::Tokens> {
        Some(proto::Tokens {
            input,
            output,
            cache_read,
            cache_write,
        })
    }

    const DAY: i64 = 1_782_864_000; // 2026-07-01T00:00:00Z

    /// Two callers, one of them spend without a caller, daily, split by model.
    fn answer() -> AllRows {
        AllRows {
            rows: vec![
                proto::Row {
                    principal: Some(proto::Principal {
                        arn: "arn:aws:sts::123456789012:assumed-role/ml/alice".to_owned(),
                        kind: proto::PrincipalKind::AssumedRole as i32,
                        account_id: "123456789012".to_owned(),
                        name: "ml".to_owned(),
                        session_name: "alice".to_owned(),
                        partition: "aws".to_owned(),
                    }),
                    model: "claude-sonnet-4".to_owned(),
                    period_start: Some(prost_types::Timestamp {
                        seconds: DAY,
                        nanos: 0,
                    }),
                    cost: money("12.3456789012", "USD"),
                    tokens: tokens(1000, 200, 50, 10),
                    line_items: 3,
                    ..Default::default()
                },
                proto::Row {
                    principal: Some(proto::Principal {
                        kind: proto::PrincipalKind::Unattributed as i32,
                        ..Default::default()
                    }),
                    period_start: Some(prost_types::Timestamp {
                        seconds: DAY + 86_400,
                        nanos: 0,
                    }),
                    cost: money("-0.5000000000", "USD"),
                    tokens: tokens(0, 0, 0, 0),
                    line_items: 1,
                    ..Default::default()
                },
            ],
            totals: vec![proto::Money {
                currency_code: "USD".to_owned(),
                units: 11,
                nanos: 845_678_901,
                exact: "11.8456789012".to_owned(),
            }],
            total_tokens: tokens(1000, 200, 50, 10),
            info: Some(proto::AnswerInfo {
                snapshot_version: 7,
                notes: vec!["periods before 2025-09 carry no caller identity".to_owned()],
            }),
        }
    }

    fn layout() -> RowLayout {
        RowLayout::cost_by_principal(&proto::CostByPrincipalRequest {
            granularity: proto::Granularity::Daily as i32,
            also_group_by: vec![
                proto::Dimension::Model as i32,
                proto::Dimension::Model as i32,
            ],
            ..Default::default()
        })
    }

    fn render(format: Format, layout: &RowLayout, answer: &AllRows) -> String {
        let mut out = Vec::new();
        render_rows(&mut out, format, layout, answer).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn layouts_follow_the_request() {
        assert_eq!(
            layout(),
            RowLayout {
                dimensions: vec![
                    DimColumn::Principal(proto::PrincipalGrouping::Arn),
                    DimColumn::Model
                ],
                period: true,
                cost_per_million: false,
                allocation: false,
                efficiency: false,
            }
        );
        let by_tag = RowLayout::cost_by_tag(&proto::CostByTagRequest {
            tag_key: "team".to_owned(),
            also_group_by: vec![
                proto::Dimension::Principal as i32,
                proto::Dimension::Tag as i32,
            ],
            principal_grouping: proto::PrincipalGrouping::Role as i32,
            ..Default::default()
        });
        assert_eq!(
            by_tag.dimensions,
            [
                DimColumn::Tag,
                DimColumn::Principal(proto::PrincipalGrouping::Role),
                DimColumn::AlsoTag
            ]
        );
        assert!(!by_tag.period);
        let usage = RowLayout::token_usage(&proto::TokenUsageRequest::default());
        assert!(usage.dimensions.is_empty());
        assert!(usage.cost_per_million);
        assert!(!usage.efficiency);
        let efficiency = RowLayout::token_usage(&proto::TokenUsageRequest {
            efficiency: true,
            ..Default::default()
        });
        assert!(efficiency.efficiency);
    }

    #[test]
    fn table() {
        let text = render(Format::Table, &layout(), &answer());
        let expected = "\
PRINCIPAL                                        MODEL            PERIOD START                   COST  CURRENCY  INPUT TOKENS  OUTPUT TOKENS  CACHE READ  CACHE WRITE  LINE ITEMS
arn:aws:sts::123456789012:assumed-role/ml/alice  claude-sonnet-4  2026-07-01T00:00:00Z  12.3456789012  USD               1000            200          50           10           3
UNATTRIBUTED                                     (none)           2026-07-02T00:00:00Z  -0.5000000000  USD                  0              0           0            0           1
-----------------------------------------------  ---------------  --------------------  -------------  --------  ------------  -------------  ----------  -----------  ----------
TOTAL                                                                                   11.8456789012  USD               1000            200          50           10           4
note: periods before 2025-09 carry no caller identity
";
        assert_eq!(text, expected);
    }

    #[test]
    fn csv() {
        let text = render(Format::Csv, &layout(), &answer());
        let expected = "\
principal,model,period_start,cost,currency,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,line_items
arn:aws:sts::123456789012:assumed-role/ml/alice,claude-sonnet-4,2026-07-01T00:00:00Z,12.3456789012,USD,1000,200,50,10,3
UNATTRIBUTED,,2026-07-02T00:00:00Z,-0.5000000000,USD,0,0,0,0,1
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json() {
        let text = render(Format::Json, &layout(), &answer());
        let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
        let expected = serde_json::json!({
            "rows": [
                {
                    "principal": {
                        "label": "arn:aws:sts::123456789012:assumed-role/ml/alice",
                        "arn": "arn:aws:sts::123456789012:assumed-role/ml/alice",
                        "kind": "assumed-role",
                        "account_id": "123456789012",
                        "name": "ml",
                        "session_name": "alice",
                        "partition": "aws"
                    },
                    "model": "claude-sonnet-4",
                    "period_start": "2026-07-01T00:00:00Z",
                    "cost": {"amount": "12.3456789012", "currency_code": "USD"},
                    "tokens": {"input": 1000, "output": 200, "cache_read": 50, "cache_write": 10},
                    "line_items": 3
                },
                {
                    "principal": {
                        "label": "UNATTRIBUTED",
                        "arn": "",
                        "kind": "unattributed",
                        "account_id": "",
                        "name": "",
                        "session_name": "",
                        "partition": ""
                    },
                    "model": "",
                    "period_start": "2026-07-02T00:00:00Z",
                    "cost": {"amount": "-0.5000000000", "currency_code": "USD"},
                    "tokens": {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0},
                    "line_items": 1
                }
            ],
            "totals": [{"amount": "11.8456789012", "currency_code": "USD"}],
            "total_tokens": {"input": 1000, "output": 200, "cache_read": 50, "cache_write": 10},
            "snapshot_version": 7,
            "notes": ["periods before 2025-09 carry no caller identity"]
        });
        assert_eq!(doc, expected);
    }

    #[test]
    fn tags_accounts_and_cost_per_million() {
        let layout = RowLayout::token_usage(&proto::TokenUsageRequest {
            group_by: vec![
                proto::Dimension::Tag as i32,
                proto::Dimension::Principal as i32,
                proto::Dimension::UsageCategory as i32,
            ],
            tag_key: "team".to_owned(),
            principal_grouping: proto::PrincipalGrouping::Account as i32,
            ..Default::default()
        });
        let row =
            |tag: proto::TagValue, cost: &str, per_million: Option<proto::Money>| proto::Row {
                principal: Some(proto::Principal {
                    arn: "arn:aws:iam::123456789012:root".to_owned(),
                    kind: proto::PrincipalKind::Root as i32,
                    account_id: "123456789012".to_owned(),
                    ..Default::default()
                }),
                tag: Some(tag),
                usage_category: proto::UsageCategory::OnDemand as i32,
                cost: money(cost, "USD"),
                tokens: tokens(2_000_000, 0, 0, 0),
                cost_per_million_tokens: per_million,
                line_items: 2,
                ..Default::default()
            };
        let answer = AllRows {
            rows: vec![
                row(
                    proto::TagValue {
                        key: "team".to_owned(),
                        value: "ml".to_owned(),
                        untagged: false,
                    },
                    "6.0000000000",
                    money("3.0000000000", "USD"),
                ),
                row(
                    proto::TagValue {
                        key: "team".to_owned(),
                        value: String::new(),
                        untagged: true,
                    },
                    "1.0000000000",
                    None,
                ),
            ],
            totals: vec![
                money("7.0000000000", "USD").unwrap_or_default(),
                money("0.1000000000", "EUR").unwrap_or_default(),
            ],
            ..Default::default()
        };
        let expected = "\
TAG       PRINCIPAL     USAGE CATEGORY          COST  CURRENCY  INPUT TOKENS  OUTPUT TOKENS  CACHE READ  CACHE WRITE  LINE ITEMS   COST/1M TOK
ml        123456789012  on-demand       6.0000000000  USD            2000000              0           0            0           2  3.0000000000
UNTAGGED  123456789012  on-demand       1.0000000000  USD            2000000              0           0            0           2
--------  ------------  --------------  ------------  --------  ------------  -------------  ----------  -----------  ----------  ------------
TOTAL                                   7.0000000000  USD            4000000              0           0            0           4
TOTAL                                   0.1000000000  EUR                  0              0           0            0           0
";
        assert_eq!(render(Format::Table, &layout, &answer), expected);
        let expected = "\
tag,principal,usage_category,cost,currency,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,line_items,cost_per_million_tokens
ml,123456789012,on-demand,6.0000000000,USD,2000000,0,0,0,2,3.0000000000
UNTAGGED,123456789012,on-demand,1.0000000000,USD,2000000,0,0,0,2,
";
        assert_eq!(render(Format::Csv, &layout, &answer), expected);
    }

    #[test]
    fn efficiency_columns() {
        let layout = RowLayout::token_usage(&proto::TokenUsageRequest {
            group_by: vec![proto::Dimension::Model as i32],
            efficiency: true,
            ..Default::default()
        });
        let answer = AllRows {
            rows: vec![
                proto::Row {
                    model: "claude".to_owned(),
                    cost: money("9.0000000000", "USD"),
                    tokens: tokens(1_000_000, 250_000, 500_000, 500_000),
                    line_items: 4,
                    output_input_ratio: Some(0.125),
                    cache_read_share: Some(0.25),
                    cache_read_saving: money("1.3500000000", "USD"),
                    ..Default::default()
                },
                proto::Row {
                    model: String::new(),
                    cost: money("2.0000000000", "USD"),
                    tokens: tokens(0, 0, 0, 0),
                    line_items: 1,
                    cache_read_saving: money("0.0000000000", "USD"),
                    ..Default::default()
                },
            ],
            totals: vec![money("11.0000000000", "USD").unwrap_or_default()],
            ..Default::default()
        };
        let expected = "\
model,cost,currency,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,line_items,cost_per_million_tokens,output_input_ratio,cache_read_share,cache_read_saving
claude,9.0000000000,USD,1000000,250000,500000,500000,4,,0.1250,0.2500,1.3500000000
,2.0000000000,USD,0,0,0,0,1,,,,0.0000000000
";
        assert_eq!(render(Format::Csv, &layout, &answer), expected);
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &layout, &answer)).expect("json");
        assert_eq!(json["rows"][0]["output_input_ratio"], 0.125);
        assert_eq!(json["rows"][0]["cache_read_share"], 0.25);
        assert!(json["rows"][1].get("cache_read_share").is_none());
        assert_eq!(
            json["rows"][0]["cache_read_saving"]["amount"],
            "1.3500000000"
        );
    }

    #[test]
    fn routings_read_as_on_the_command_line() {
        let layout = RowLayout::token_usage(&proto::TokenUsageRequest {
            group_by: vec![proto::Dimension::Routing as i32],
            ..Default::default()
        });
        assert_eq!(layout.dimensions, [DimColumn::Routing]);
        let row = |routing: proto::Routing, cost: &str| proto::Row {
            routing: routing as i32,
            cost: money(cost, "USD"),
            tokens: tokens(1_000_000, 0, 0, 0),
            line_items: 1,
            ..Default::default()
        };
        let answer = AllRows {
            rows: vec![
                row(proto::Routing::CrossRegionGlobal, "3.0000000000"),
                row(proto::Routing::CrossRegionGeographic, "2.0000000000"),
                row(proto::Routing::InRegion, "1.0000000000"),
            ],
            totals: vec![money("6.0000000000", "USD").unwrap_or_default()],
            ..Default::default()
        };
        let expected = "\
routing,cost,currency,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,line_items,cost_per_million_tokens
cross-region-global,3.0000000000,USD,1000000,0,0,0,1,
cross-region-geographic,2.0000000000,USD,1000000,0,0,0,1,
in-region,1.0000000000,USD,1000000,0,0,0,1,
";
        assert_eq!(render(Format::Csv, &layout, &answer), expected);
        let doc: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &layout, &answer)).expect("json");
        let routings: Vec<&str> = doc["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["routing"].as_str().expect("routing"))
            .collect();
        assert_eq!(
            routings,
            [
                "cross-region-global",
                "cross-region-geographic",
                "in-region"
            ]
        );
    }

    #[test]
    fn bad_amounts_are_invalid_responses() {
        let mut answer = answer();
        if let Some(row) = answer.rows.first_mut() {
            row.cost = money("a lot", "USD");
        }
        let mut out = Vec::new();
        let err = render_rows(&mut out, Format::Table, &layout(), &answer).expect_err("bad");
        assert_eq!(err.code(), Some(tonic::Code::Internal));
        assert!(
            err.report()
                .starts_with("INTERNAL: invalid response: row cost: ")
        );
        answer.rows.truncate(1);
        if let Some(row) = answer.rows.first_mut() {
            row.cost = None;
        }
        let err = render_rows(&mut out, Format::Json, &layout(), &answer).expect_err("missing");
        assert_eq!(
            err.report(),
            "INTERNAL: invalid response: row cost is missing"
        );
    }
}
