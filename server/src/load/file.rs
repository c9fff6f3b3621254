//! Reading one CUR parquet file: streamed batch by batch through DataFusion, each
//! Bedrock line item summed into the file's fine rows at once, so a file is never held
//! whole and what stays is a few dozen bytes per line item until the period is done.

use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray, MapArray, RecordBatch, StringArray, StringBuilder},
        compute::cast,
        datatypes::{DataType, Decimal128Type, Float64Type, TimestampMicrosecondType},
        error::ArrowError,
    },
    error::DataFusionError,
    prelude::{ParquetReadOptions, SessionContext},
};
use futures::StreamExt;
use rustc_hash::FxHashMap;

use super::classify::{ClassFields, Classifier};
use crate::{
    allocate::{Donor, Receiver, ReceiverIds},
    layers::{Amounts, GroupedRows, LineKey, Sums, Tokens, dict::Dictionaries, time_type},
    rules::{bedrock::BedrockRule, money, usage},
};

/// The CUR columns read from each file (those present).
pub const RAW_COLUMNS: [&str; 22] = [
    "identity_line_item_id",
    "bill_payer_account_id",
    "bill_billing_entity",
    "line_item_usage_account_id",
    "line_item_line_item_type",
    "line_item_usage_start_date",
    "line_item_product_code",
    "line_item_usage_type",
    "line_item_iam_principal",
    "line_item_line_item_description",
    "line_item_usage_amount",
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "line_item_blended_cost",
    "pricing_public_on_demand_cost",
    "line_item_currency_code",
    "pricing_unit",
    "product_product_family",
    "product_region_code",
    "product",
    "tags",
    "bill_billing_period_start_date",
];

/// Columns whose absence changes answers, reported per period in `DataStatus`.
pub const NOTABLE_COLUMNS: [&str; 4] = [
    "line_item_iam_principal",
    "tags",
    "product",
    "identity_line_item_id",
];

/// What one file contributes to its period, with ids in the file's own dictionaries.
#[derive(Debug, Default)]
pub struct FileLines {
    /// The file's dictionaries.
    pub dicts: Dictionaries,
    /// Its Bedrock line items summed by every key, at exact usage start.
    pub fine: GroupedRows,
    /// Its attributed `Usage` line items (allocation receivers).
    pub receivers: Vec<Receiver>,
    /// Their line item ids, aligned with `receivers`.
    pub receiver_ids: ReceiverIds,
    /// Its line items without a caller (allocation donors).
    pub donors: Vec<Donor>,
    /// Parquet rows read (all services).
    pub rows_read: usize,
    /// Bedrock line items kept.
    pub line_items: usize,
    /// Column names the file has.
    pub columns: Vec<String>,
}

/// Streams one CUR parquet file through DataFusion and folds its Bedrock line items
/// into fine rows.
pub async fn read_file(
    ctx: &SessionContext,
    url: &str,
    rule: BedrockRule,
) -> Result<FileLines, DataFusionError> {
    let df = ctx.read_parquet(url, ParquetReadOptions::default()).await?;
    let columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let wanted: Vec<&str> = RAW_COLUMNS
        .iter()
        .copied()
        .filter(|c| columns.iter().any(|have| have == c))
        .collect();
    let mut stream = df.select_columns(&wanted)?.execute_stream().await?;
    let mut state = FileState {
        out: FileLines {
            columns,
            ..FileLines::default()
        },
        classifier: Classifier::new(rule),
        tag_ids: FxHashMap::default(),
        tag_key: String::new(),
        ids: StringBuilder::new(),
    };
    let mut index = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        state.fold(&batch, &format!("{url}#{index}"))?;
        index += 1;
    }
    let mut out = state.out;
    out.receiver_ids.push(state.ids.finish());
    // Growth by doubling leaves up to half of each vector unused; the period holds
    // these until its layers are built.
    out.receivers.shrink_to_fit();
    out.donors.shrink_to_fit();
    out.fine.shrink_to_fit();
    Ok(out)
}

struct FileState {
    out: FileLines,
    classifier: Classifier,
    /// Serialized tag map -> id in the file's tag sets.
    tag_ids: FxHashMap<String, u32>,
    tag_key: String,
    ids: StringBuilder,
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>, ArrowError> {
    batch
        .column_by_name(name)
        .map(|c| cast(c, &DataType::Utf8).map(|a| a.as_string::<i32>().clone()))
        .transpose()
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Option<ArrayRef>, ArrowError> {
    batch
        .column_by_name(name)
        .map(|c| cast(c, &DataType::Float64))
        .transpose()
}

/// Cost column as exact amounts: doubles through their shortest decimal, anything else
/// (decimals, integers, strings) through Arrow's cast to Decimal128(38, 10).
fn amounts(batch: &RecordBatch, name: &str) -> Result<Vec<i64>, ArrowError> {
    let rows = batch.num_rows();
    let Some(column) = batch.column_by_name(name) else {
        return Ok(vec![0; rows]);
    };
    let exact: Vec<i128> = if matches!(
        column.data_type(),
        DataType::Float64 | DataType::Float32 | DataType::Float16
    ) {
        let f = cast(column, &DataType::Float64)?;
        let f = f.as_primitive::<Float64Type>();
        (0..rows)
            .map(|i| money::amount_from_f64(f.is_valid(i).then(|| f.value(i))))
            .collect()
    } else {
        let d = cast(column, &DataType::Decimal128(38, money::SCALE as i8))?;
        let d = d.as_primitive::<Decimal128Type>();
        (0..rows)
            .map(|i| if d.is_valid(i) { d.value(i) } else { 0 })
            .collect()
    };
    exact
        .into_iter()
        .map(|a| {
            i64::try_from(a).map_err(|_| {
                ArrowError::ComputeError(format!(
                    "{name} holds {} in one line item, beyond the ±922,337,203 a line item may hold",
                    money::exact_string(a)
                ))
            })
        })
        .collect()
}

struct MapColumn {
    map: MapArray,
    keys: StringArray,
    values: StringArray,
}

impl MapColumn {
    fn read(batch: &RecordBatch, name: &str) -> Result<Option<Self>, ArrowError> {
        let Some(column) = batch.column_by_name(name) else {
            return Ok(None);
        };
        let Some(map) = column.as_map_opt() else {
            return Err(ArrowError::CastError(format!(
                "column {name} is {} and not a map",
                column.data_type()
            )));
        };
        let keys = cast(map.keys(), &DataType::Utf8)?
            .as_string::<i32>()
            .clone();
        let values = cast(map.values(), &DataType::Utf8)?
            .as_string::<i32>()
            .clone();
        Ok(Some(Self {
            map: map.clone(),
            keys,
            values,
        }))
    }

    fn entries(&self, row: usize) -> impl Iterator<Item = (&str, Option<&str>)> {
        let offsets = self.map.value_offsets();
        let (start, end) = if self.map.is_valid(row) {
            (offsets[row] as usize, offsets[row + 1] as usize)
        } else {
            (0, 0)
        };
        (start..end).filter(|&i| self.keys.is_valid(i)).map(|i| {
            (
                self.keys.value(i),
                self.values.is_valid(i).then(|| self.values.value(i)),
            )
        })
    }
}

fn value(array: &Option<StringArray>, row: usize) -> Option<&str> {
    array
        .as_ref()
        .and_then(|a| a.is_valid(row).then(|| a.value(row)))
}

impl FileState {
    /// Folds one raw batch into the file's rows; rows that are not Bedrock are dropped.
    fn fold(&mut self, batch: &RecordBatch, origin: &str) -> Result<(), ArrowError> {
        let s = |name| strings(batch, name);
        let line_item_id = s("identity_line_item_id")?;
        let payer = s("bill_payer_account_id")?;
        let entity = s("bill_billing_entity")?;
        let account = s("line_item_usage_account_id")?;
        let item_type = s("line_item_line_item_type")?;
        let product_code = s("line_item_product_code")?;
        let usage_type = s("line_item_usage_type")?;
        let principal = s("line_item_iam_principal")?;
        let description = s("line_item_line_item_description")?;
        let currency = s("line_item_currency_code")?;
        let pricing_unit = s("pricing_unit")?;
        let family = s("product_product_family")?;
        let region = s("product_region_code")?;
        let amount = floats(batch, "line_item_usage_amount")?;
        let amount = amount.as_ref().map(|a| a.as_primitive::<Float64Type>());
        let starts = batch
            .column_by_name("line_item_usage_start_date")
            .map(|c| cast(c, &time_type()))
            .transpose()?;
        let starts = starts
            .as_ref()
            .map(|a| a.as_primitive::<TimestampMicrosecondType>());
        let costs: Vec<Amounts> = {
            let [u, n, b, p] = [
                "line_item_unblended_cost",
                "line_item_net_unblended_cost",
                "line_item_blended_cost",
                "pricing_public_on_demand_cost",
            ]
            .map(|name| amounts(batch, name));
            let (u, n, b, p) = (u?, n?, b?, p?);
            (0..batch.num_rows())
                .map(|i| Amounts {
                    unblended: u[i],
                    net_unblended: n[i],
                    blended: b[i],
                    public_on_demand: p[i],
                })
                .collect()
        };
        let product = MapColumn::read(batch, "product")?;
        let tags = MapColumn::read(batch, "tags")?;

        let out = &mut self.out;
        out.rows_read += batch.num_rows();
        let mut entries: Vec<(&str, &str)> = Vec::new();
        for (row, &cost) in costs.iter().enumerate() {
            let mut fields = ClassFields {
                product_code: value(&product_code, row),
                product_family: value(&family, row),
                billing_entity: value(&entity, row),
                usage_type: value(&usage_type, row),
                line_item_type: value(&item_type, row),
                pricing_unit: value(&pricing_unit, row),
                description: value(&description, row),
                ..ClassFields::default()
            };
            if let Some(p) = &product {
                for (k, v) in p.entries(row) {
                    match k {
                        "product_name" => fields.product_name = v,
                        "model" => fields.product_model = v,
                        "inference_type" => fields.inference_type = v,
                        _ => {}
                    }
                }
            }
            let class = self.classifier.classify(&fields, &mut out.dicts);
            let caller = value(&principal, row).unwrap_or("");
            if !class.bedrock_by_product && caller.is_empty() {
                continue;
            }
            let Some(start) = starts.and_then(|s| s.is_valid(row).then(|| s.value(row))) else {
                continue;
            };
            let mut tokens = Tokens::default();
            if let Some((kind, per_unit)) = class.tokens {
                let amount = amount.and_then(|a| a.is_valid(row).then(|| a.value(row)));
                tokens.add(kind, usage::token_count(amount, per_unit));
            }
            let tag_set = match &tags {
                None => 0,
                Some(t) => {
                    entries.clear();
                    entries.extend(t.entries(row).filter_map(|(k, v)| Some((k, v?))));
                    // A key given twice keeps its last value, as a map lookup would.
                    entries.reverse();
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                    entries.dedup_by(|later, earlier| later.0 == earlier.0);
                    self.tag_key.clear();
                    for (k, v) in &entries {
                        self.tag_key.push_str(k);
                        self.tag_key.push('\u{0}');
                        self.tag_key.push_str(v);
                        self.tag_key.push('\u{0}');
                    }
                    match self.tag_ids.get(self.tag_key.as_str()) {
                        Some(id) => *id,
                        None => {
                            let id = out.dicts.tag_sets.intern(
                                entries
                                    .iter()
                                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                                    .collect(),
                            );
                            self.tag_ids.insert(self.tag_key.clone(), id);
                            id
                        }
                    }
                }
            };
            let key = LineKey {
                start,
                principal: out.dicts.principals.intern(caller),
                account: out
                    .dicts
                    .accounts
                    .intern(value(&account, row).unwrap_or("")),
                payer: out.dicts.accounts.intern(value(&payer, row).unwrap_or("")),
                region: out.dicts.regions.intern(value(&region, row).unwrap_or("")),
                line_item_type: class.line_item_type,
                currency: out
                    .dicts
                    .currencies
                    .intern(value(&currency, row).unwrap_or("")),
                model: class.model,
                category: class.category,
                routing: class.routing,
                tag_set,
            };
            let sums = Sums {
                tokens,
                cost,
                allocated: Amounts::default(),
                line_items: 1,
            };
            let fine_row = out.fine.add(key, &sums)?;
            out.line_items += 1;
            if key.principal == 0 {
                out.donors.push(Donor {
                    row: fine_row,
                    cost,
                });
            } else if class.usage {
                out.receivers.push(Receiver {
                    row: fine_row,
                    cost,
                });
                match value(&line_item_id, row) {
                    Some(id) if !id.is_empty() => self.ids.append_value(id),
                    _ => self.ids.append_value(format!("{origin}#{row}")),
                }
            }
        }
        Ok(())
    }
}
