//! Rendering of the list answers (ListPrincipals, ListTagKeys, ListModels).
//!
//! Their costs are lists, one amount per currency. Text and CSV print one line per
//! currency and put the counts (tokens, line items) on the first line only, so that
//! summing a column never counts an entry twice.

use std::io::Write;

use serde::Serialize;

use super::table::{Column, Table};
use super::{CliError, Format, labels};
use crate::proto;

/// Writes a ListPrincipals answer (all pages) in `format`.
pub fn render_principals(
    out: &mut dyn Write,
    format: Format,
    grouping: proto::PrincipalGrouping,
    answer: &proto::ListPrincipalsResponse,
) -> Result<(), CliError> {
    if format == Format::Json {
        return super::write_json(out, &principals_document(grouping, answer)?);
    }
    let mut table = Table::new(vec![
        Column::text("PRINCIPAL", "principal"),
        Column::text("KIND", "kind"),
        Column::text("ACCOUNT", "account_id"),
        Column::text("NAME", "name"),
        Column::text("SESSION", "session_name"),
        Column::number("COST", "cost"),
        Column::text("CURRENCY", "currency"),
        Column::number("INPUT TOKENS", "input_tokens"),
        Column::number("OUTPUT TOKENS", "output_tokens"),
        Column::number("CACHE READ", "cache_read_tokens"),
        Column::number("CACHE WRITE", "cache_write_tokens"),
        Column::number("LINE ITEMS", "line_items"),
    ]);
    for summary in &answer.principals {
        let p = summary.principal.clone().unwrap_or_default();
        let key = [
            labels::principal(&p, grouping),
            labels::principal_kind(p.kind()),
            p.account_id.clone(),
            p.name.clone(),
            p.session_name.clone(),
        ];
        let tokens = summary.tokens.unwrap_or_default();
        let mut counts: Vec<String> = labels::token_cells(&tokens).into();
        counts.push(summary.line_items.to_string());
        push_per_currency(&mut table, &key, &summary.cost, &counts, "principal cost")?;
    }
    write_table(out, format, &table, answer.info.as_ref())
}

/// Writes a ListTagKeys answer (all pages) in `format`.
pub fn render_tag_keys(
    out: &mut dyn Write,
    format: Format,
    answer: &proto::ListTagKeysResponse,
) -> Result<(), CliError> {
    if format == Format::Json {
        return super::write_json(out, &tag_keys_document(answer)?);
    }
    let mut table = Table::new(vec![
        Column::text("KEY", "key"),
        Column::number("COST", "cost"),
        Column::text("CURRENCY", "currency"),
        Column::number("DISTINCT VALUES", "distinct_values"),
        Column::number("LINE ITEMS", "line_items"),
    ]);
    for key in &answer.tag_keys {
        let counts = [key.distinct_values.to_string(), key.line_items.to_string()];
        push_per_currency(
            &mut table,
            std::slice::from_ref(&key.key),
            &key.cost,
            &counts,
            "tag key cost",
        )?;
    }
    write_table(out, format, &table, answer.info.as_ref())?;
    if format == Format::Table {
        writeln!(out, "line items in range: {}", answer.total_line_items)?;
    }
    Ok(())
}

/// Writes a ListModels answer (all pages) in `format`.
pub fn render_models(
    out: &mut dyn Write,
    format: Format,
    answer: &proto::ListModelsResponse,
) -> Result<(), CliError> {
    if format == Format::Json {
        return super::write_json(out, &models_document(answer)?);
    }
    let mut table = Table::new(vec![
        Column::text("MODEL", "model"),
        Column::number("COST", "cost"),
        Column::text("CURRENCY", "currency"),
        Column::number("INPUT TOKENS", "input_tokens"),
        Column::number("OUTPUT TOKENS", "output_tokens"),
        Column::number("CACHE READ", "cache_read_tokens"),
        Column::number("CACHE WRITE", "cache_write_tokens"),
        Column::number("LINE ITEMS", "line_items"),
    ]);
    for model in &answer.models {
        let name = if model.model.is_empty() && format == Format::Table {
            labels::NONE.to_owned()
        } else {
            model.model.clone()
        };
        let tokens = model.tokens.unwrap_or_default();
        let mut counts: Vec<String> = labels::token_cells(&tokens).into();
        counts.push(model.line_items.to_string());
        push_per_currency(&mut table, &[name], &model.cost, &counts, "model cost")?;
    }
    write_table(out, format, &table, answer.info.as_ref())
}

/// One line per currency: `key` cells, amount, currency, then `counts` on the first
/// line only. An entry without cost still gets one line.
fn push_per_currency(
    table: &mut Table,
    key: &[String],
    costs: &[proto::Money],
    counts: &[String],
    what: &str,
) -> Result<(), CliError> {
    let mut amounts = Vec::with_capacity(costs.len().max(1));
    for cost in costs {
        let cost = labels::money(Some(cost), what)?;
        amounts.push((cost.amount.to_string(), cost.currency_code));
    }
    if amounts.is_empty() {
        amounts.push((String::new(), String::new()));
    }
    for (i, (amount, currency)) in amounts.into_iter().enumerate() {
        let mut cells = key.to_vec();
        cells.push(amount);
        cells.push(currency);
        if i == 0 {
            cells.extend_from_slice(counts);
        }
        table.push(cells);
    }
    Ok(())
}

fn write_table(
    out: &mut dyn Write,
    format: Format,
    table: &Table,
    info: Option<&proto::AnswerInfo>,
) -> Result<(), CliError> {
    match format {
        Format::Csv => table.write_csv(out)?,
        Format::Table | Format::Json => {
            table.write_text(out)?;
            labels::write_notes(out, info)?;
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct PrincipalsDocument {
    principals: Vec<JsonPrincipalSummary>,
    snapshot_version: u64,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct JsonPrincipalSummary {
    principal: labels::JsonPrincipal,
    cost: Vec<labels::JsonMoney>,
    tokens: labels::JsonTokens,
    line_items: i64,
}

fn principals_document(
    grouping: proto::PrincipalGrouping,
    answer: &proto::ListPrincipalsResponse,
) -> Result<PrincipalsDocument, CliError> {
    let mut principals = Vec::with_capacity(answer.principals.len());
    for s in &answer.principals {
        principals.push(JsonPrincipalSummary {
            principal: labels::JsonPrincipal::new(
                &s.principal.clone().unwrap_or_default(),
                grouping,
            ),
            cost: labels::JsonMoney::list(&s.cost, "principal cost")?,
            tokens: s.tokens.unwrap_or_default().into(),
            line_items: s.line_items,
        });
    }
    let info = answer.info.clone().unwrap_or_default();
    Ok(PrincipalsDocument {
        principals,
        snapshot_version: info.snapshot_version,
        notes: info.notes,
    })
}

#[derive(Debug, Serialize)]
struct TagKeysDocument {
    tag_keys: Vec<JsonTagKey>,
    total_line_items: i64,
    snapshot_version: u64,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct JsonTagKey {
    key: String,
    cost: Vec<labels::JsonMoney>,
    distinct_values: i64,
    line_items: i64,
}

fn tag_keys_document(answer: &proto::ListTagKeysResponse) -> Result<TagKeysDocument, CliError> {
    let mut tag_keys = Vec::with_capacity(answer.tag_keys.len());
    for k in &answer.tag_keys {
        tag_keys.push(JsonTagKey {
            key: k.key.clone(),
            cost: labels::JsonMoney::list(&k.cost, "tag key cost")?,
            distinct_values: k.distinct_values,
            line_items: k.line_items,
        });
    }
    let info = answer.info.clone().unwrap_or_default();
    Ok(TagKeysDocument {
        tag_keys,
        total_line_items: answer.total_line_items,
        snapshot_version: info.snapshot_version,
        notes: info.notes,
    })
}

#[derive(Debug, Serialize)]
struct ModelsDocument {
    models: Vec<JsonModel>,
    snapshot_version: u64,
    notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct JsonModel {
    model: String,
    cost: Vec<labels::JsonMoney>,
    tokens: labels::JsonTokens,
    line_items: i64,
}

fn models_document(answer: &proto::ListModelsResponse) -> Result<ModelsDocument, CliError> {
    let mut models = Vec::with_capacity(answer.models.len());
    for m in &answer.models {
        models.push(JsonModel {
            model: m.model.clone(),
            cost: labels::JsonMoney::list(&m.cost, "model cost")?,
            tokens: m.tokens.unwrap_or_default().into(),
            line_items: m.line_items,
        });
    }
    let info = answer.info.clone().unwrap_or_default();
    Ok(ModelsDocument {
        models,
        snapshot_version: info.snapshot_version,
        notes: info.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(exact: &str) -> proto::Money {
        proto::Money {
            currency_code: "USD".to_owned(),
            exact: exact.to_owned(),
            ..Default::default()
        }
    }

    fn render(f: impl FnOnce(&mut Vec<u8>) -> Result<(), CliError>) -> String {
        let mut out = Vec::new();
        f(&mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    fn principals() -> proto::ListPrincipalsResponse {
        proto::ListPrincipalsResponse {
            principals: vec![
                proto::PrincipalSummary {
                    principal: Some(proto::Principal {
                        kind: proto::PrincipalKind::Unattributed as i32,
                        ..Default::default()
                    }),
                    cost: vec![usd("0.1000000000")],
                    tokens: None,
                    line_items: 2,
                },
                proto::PrincipalSummary {
                    principal: Some(proto::Principal {
                        arn: "arn:aws:iam::123456789012:user/BedrockAPIKey-x".to_owned(),
                        kind: proto::PrincipalKind::IamUser as i32,
                        account_id: "123456789012".to_owned(),
                        name: "BedrockAPIKey-x".to_owned(),
                        ..Default::default()
                    }),
                    cost: vec![
                        usd("1.0000000000"),
                        proto::Money {
                            currency_code: "EUR".to_owned(),
                            exact: "2.0000000000".to_owned(),
                            ..Default::default()
                        },
                    ],
                    tokens: Some(proto::Tokens {
                        input: 5,
                        output: 6,
                        cache_read: 7,
                        cache_write: 8,
                    }),
                    line_items: 3,
                },
            ],
            next_page_token: String::new(),
            info: None,
        }
    }

    #[test]
    fn principals_table_and_csv() {
        let answer = principals();
        let grouping = proto::PrincipalGrouping::Arn;
        let table = render(|out| render_principals(out, Format::Table, grouping, &answer));
        assert_eq!(
            table,
            "\
PRINCIPAL                                       KIND          ACCOUNT       NAME             SESSION          COST  CURRENCY  INPUT TOKENS  OUTPUT TOKENS  CACHE READ  CACHE WRITE  LINE ITEMS
UNATTRIBUTED                                    unattributed                                          0.1000000000  USD                  0              0           0            0           2
arn:aws:iam::123456789012:user/BedrockAPIKey-x  iam-user      123456789012  BedrockAPIKey-x           1.0000000000  USD                  5              6           7            8           3
arn:aws:iam::123456789012:user/BedrockAPIKey-x  iam-user      123456789012  BedrockAPIKey-x           2.0000000000  EUR
"
        );
        let csv = render(|out| render_principals(out, Format::Csv, grouping, &answer));
        assert_eq!(
            csv,
            "\
principal,kind,account_id,name,session_name,cost,currency,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,line_items
UNATTRIBUTED,unattributed,,,,0.1000000000,USD,0,0,0,0,2
arn:aws:iam::123456789012:user/BedrockAPIKey-x,iam-user,123456789012,BedrockAPIKey-x,,1.0000000000,USD,5,6,7,8,3
arn:aws:iam::123456789012:user/BedrockAPIKey-x,iam-user,123456789012,BedrockAPIKey-x,,2.0000000000,EUR,,,,,
"
        );
        let by_account = render(|out| {
            render_principals(out, Format::Csv, proto::PrincipalGrouping::Account, &answer)
        });
        assert!(by_account.contains("\n123456789012,iam-user,"));
    }

    #[test]
    fn tag_keys_and_models() {
        let keys = proto::ListTagKeysResponse {
            tag_keys: vec![proto::TagKeySummary {
                key: "iamPrincipal/team".to_owned(),
                line_items: 40,
                cost: vec![usd("3.5000000000")],
                distinct_values: 3,
            }],
            next_page_token: String::new(),
            total_line_items: 50,
            info: Some(proto::AnswerInfo {
                snapshot_version: 2,
                notes: vec!["answered from resource_tags".to_owned()],
            }),
        };
        assert_eq!(
            render(|out| render_tag_keys(out, Format::Table, &keys)),
            "\
KEY                        COST  CURRENCY  DISTINCT VALUES  LINE ITEMS
iamPrincipal/team  3.5000000000  USD                     3          40
note: answered from resource_tags
line items in range: 50
"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(|out| render_tag_keys(out, Format::Json, &keys)))
                .expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "tag_keys": [{
                    "key": "iamPrincipal/team",
                    "cost": [{"amount": "3.5000000000", "currency_code": "USD"}],
                    "distinct_values": 3,
                    "line_items": 40
                }],
                "total_line_items": 50,
                "snapshot_version": 2,
                "notes": ["answered from resource_tags"]
            })
        );

        let models = proto::ListModelsResponse {
            models: vec![proto::ModelSummary {
                model: String::new(),
                cost: vec![usd("0.0100000000")],
                tokens: None,
                line_items: 1,
            }],
            next_page_token: String::new(),
            info: None,
        };
        let table = render(|out| render_models(out, Format::Table, &models));
        assert!(
            table
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("(none)  "))
        );
        let csv = render(|out| render_models(out, Format::Csv, &models));
        assert_eq!(csv.lines().nth(1), Some(",0.0100000000,USD,0,0,0,0,1"));
    }
}
