//! Writing CUR 2.0 line items to snappy parquet, with the column set and timestamp
//! encoding of a chosen export vintage.

use std::{fs::File, path::Path, sync::Arc};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use datafusion::arrow::{
    array::{
        ArrayRef, Float64Builder, MapBuilder, RecordBatch, StringBuilder,
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    },
    datatypes::{DataType, Field, Schema, TimeUnit},
};
use datafusion::parquet::{
    arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties,
};

/// One CUR 2.0 line item, with the columns the service reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CurLineItem {
    /// `identity_line_item_id`.
    pub line_item_id: String,
    /// `bill_billing_period_start_date`.
    pub billing_period_start: DateTime<Utc>,
    /// `bill_payer_account_id`.
    pub payer_account_id: String,
    /// `bill_billing_entity`: `AWS` or `AWS Marketplace`.
    pub billing_entity: String,
    /// `line_item_usage_account_id`.
    pub usage_account_id: String,
    /// `line_item_line_item_type`.
    pub line_item_type: String,
    /// `line_item_usage_start_date`.
    pub usage_start: DateTime<Utc>,
    /// `line_item_usage_end_date`.
    pub usage_end: DateTime<Utc>,
    /// `line_item_product_code`.
    pub product_code: String,
    /// `line_item_usage_type`.
    pub usage_type: Option<String>,
    /// `line_item_operation`.
    pub operation: Option<String>,
    /// `line_item_resource_id`.
    pub resource_id: Option<String>,
    /// `line_item_iam_principal` (written only when the schema has the column).
    pub principal: Option<String>,
    /// `line_item_line_item_description`.
    pub description: Option<String>,
    /// `line_item_usage_amount`.
    pub usage_amount: Option<f64>,
    /// `line_item_unblended_cost`.
    pub unblended_cost: Option<f64>,
    /// `line_item_net_unblended_cost`.
    pub net_unblended_cost: Option<f64>,
    /// `line_item_blended_cost`.
    pub blended_cost: Option<f64>,
    /// `pricing_public_on_demand_cost`.
    pub public_on_demand_cost: Option<f64>,
    /// `line_item_currency_code`.
    pub currency: String,
    /// `pricing_unit`.
    pub pricing_unit: Option<String>,
    /// `product_product_family`.
    pub product_family: Option<String>,
    /// `product_region_code`.
    pub region: Option<String>,
    /// `product` map (written only when the schema has the column).
    pub product: Vec<(String, String)>,
    /// `tags` map (written only when the schema has the column).
    pub tags: Vec<(String, String)>,
}

impl CurLineItem {
    /// A one-hour native Bedrock `Usage` line item (Nova input tokens in us-east-1,
    /// priced per million tokens) of `cost` USD under every cost metric, without a
    /// caller. Fixtures change what they need with struct update syntax.
    pub fn bedrock(id: &str, payer: &str, account: &str, start: DateTime<Utc>, cost: f64) -> Self {
        let period_start = NaiveDate::from_ymd_opt(start.year(), start.month(), 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(start, |d| d.and_utc());
        Self {
            line_item_id: id.to_owned(),
            billing_period_start: period_start,
            payer_account_id: payer.to_owned(),
            billing_entity: "AWS".to_owned(),
            usage_account_id: account.to_owned(),
            line_item_type: "Usage".to_owned(),
            usage_start: start,
            usage_end: start + chrono::Duration::hours(1),
            product_code: "AmazonBedrock".to_owned(),
            usage_type: Some("USE1-Nova2.0Lite-input-tokens".to_owned()),
            usage_amount: Some(1.0),
            unblended_cost: Some(cost),
            net_unblended_cost: Some(cost),
            blended_cost: Some(cost),
            public_on_demand_cost: Some(cost),
            currency: "USD".to_owned(),
            pricing_unit: Some("1M tokens".to_owned()),
            region: Some("us-east-1".to_owned()),
            ..Self::default()
        }
    }
}

/// Physical encoding of timestamp columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    /// INT64 milliseconds.
    Millis,
    /// INT64 microseconds.
    Micros,
    /// INT64 nanoseconds.
    Nanos,
}

/// Which optional columns a file has and how its timestamps are encoded, so that
/// fixtures can reproduce older export vintages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Has `line_item_iam_principal` (exports with caller identity enabled).
    pub principal_column: bool,
    /// Has the `tags` map (exports made after late 2025).
    pub tags_column: bool,
    /// Has the `product` map.
    pub product_column: bool,
    /// Timestamp encoding.
    pub timestamp_unit: TimestampUnit,
    /// Whether timestamps carry the UTC annotation.
    pub utc_annotated: bool,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        Self {
            principal_column: true,
            tags_column: true,
            product_column: true,
            timestamp_unit: TimestampUnit::Micros,
            utc_annotated: true,
        }
    }
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn float(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

/// A nullable `map<string, string>` field as CUR 2.0 parquet files declare it.
pub(crate) fn map_field(name: &str) -> Field {
    let entries = Field::new(
        "key_value",
        DataType::Struct(
            vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ]
            .into(),
        ),
        false,
    );
    Field::new(name, DataType::Map(Arc::new(entries), false), true)
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut b = StringBuilder::new();
    for v in values {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

fn floats(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    let mut b = Float64Builder::new();
    for v in values {
        b.append_option(v);
    }
    Arc::new(b.finish())
}

fn map_array<'a>(values: impl Iterator<Item = &'a [(String, String)]>) -> ArrayRef {
    let names = datafusion::arrow::array::builder::MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for entries in values {
        for (k, v) in entries {
            b.keys().append_value(k);
            b.values().append_value(v);
        }
        // An empty map, not NULL: that is how exports write "no tags".
        b.append(true)
            .expect("keys and values were appended in pairs");
    }
    Arc::new(b.finish())
}

impl SchemaOptions {
    fn timestamp_type(&self) -> DataType {
        let unit = match self.timestamp_unit {
            TimestampUnit::Millis => TimeUnit::Millisecond,
            TimestampUnit::Micros => TimeUnit::Microsecond,
            TimestampUnit::Nanos => TimeUnit::Nanosecond,
        };
        DataType::Timestamp(unit, self.utc_annotated.then(|| "UTC".into()))
    }

    fn timestamps(&self, values: impl Iterator<Item = DateTime<Utc>>) -> ArrayRef {
        let tz = self.utc_annotated.then_some("UTC");
        match self.timestamp_unit {
            TimestampUnit::Millis => Arc::new(
                TimestampMillisecondArray::from_iter_values(values.map(|t| t.timestamp_millis()))
                    .with_timezone_opt(tz),
            ),
            TimestampUnit::Micros => Arc::new(
                TimestampMicrosecondArray::from_iter_values(values.map(|t| t.timestamp_micros()))
                    .with_timezone_opt(tz),
            ),
            TimestampUnit::Nanos => Arc::new(
                TimestampNanosecondArray::from_iter_values(
                    values.map(|t| t.timestamp_nanos_opt().unwrap_or(i64::MAX)),
                )
                .with_timezone_opt(tz),
            ),
        }
    }

    /// The line items as one Arrow batch with this vintage's columns.
    pub fn to_batch(&self, items: &[CurLineItem]) -> datafusion::arrow::error::Result<RecordBatch> {
        let ts = self.timestamp_type();
        let mut fields = vec![
            utf8("identity_line_item_id"),
            Field::new("bill_billing_period_start_date", ts.clone(), true),
            utf8("bill_payer_account_id"),
            utf8("bill_billing_entity"),
            utf8("line_item_usage_account_id"),
            utf8("line_item_line_item_type"),
            Field::new("line_item_usage_start_date", ts.clone(), true),
            Field::new("line_item_usage_end_date", ts, true),
            utf8("line_item_product_code"),
            utf8("line_item_usage_type"),
            utf8("line_item_operation"),
            utf8("line_item_resource_id"),
        ];
        let s = |f: fn(&CurLineItem) -> Option<&str>| strings(items.iter().map(f));
        let mut columns: Vec<ArrayRef> = vec![
            s(|i| Some(&i.line_item_id)),
            self.timestamps(items.iter().map(|i| i.billing_period_start)),
            s(|i| Some(&i.payer_account_id)),
            s(|i| Some(&i.billing_entity)),
            s(|i| Some(&i.usage_account_id)),
            s(|i| Some(&i.line_item_type)),
            self.timestamps(items.iter().map(|i| i.usage_start)),
            self.timestamps(items.iter().map(|i| i.usage_end)),
            s(|i| Some(&i.product_code)),
            s(|i| i.usage_type.as_deref()),
            s(|i| i.operation.as_deref()),
            s(|i| i.resource_id.as_deref()),
        ];
        if self.principal_column {
            fields.push(utf8("line_item_iam_principal"));
            columns.push(s(|i| i.principal.as_deref()));
        }
        fields.extend([
            utf8("line_item_line_item_description"),
            float("line_item_usage_amount"),
            float("line_item_unblended_cost"),
            float("line_item_net_unblended_cost"),
            float("line_item_blended_cost"),
            float("pricing_public_on_demand_cost"),
            utf8("line_item_currency_code"),
            utf8("pricing_unit"),
            utf8("product_product_family"),
            utf8("product_region_code"),
        ]);
        let f = |g: fn(&CurLineItem) -> Option<f64>| floats(items.iter().map(g));
        columns.extend([
            s(|i| i.description.as_deref()),
            f(|i| i.usage_amount),
            f(|i| i.unblended_cost),
            f(|i| i.net_unblended_cost),
            f(|i| i.blended_cost),
            f(|i| i.public_on_demand_cost),
            s(|i| Some(&i.currency)),
            s(|i| i.pricing_unit.as_deref()),
            s(|i| i.product_family.as_deref()),
            s(|i| i.region.as_deref()),
        ]);
        if self.product_column {
            fields.push(map_field("product"));
            columns.push(map_array(items.iter().map(|i| i.product.as_slice())));
        }
        if self.tags_column {
            fields.push(map_field("tags"));
            columns.push(map_array(items.iter().map(|i| i.tags.as_slice())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }

    /// Writes the line items to `path` as one snappy parquet file (zero items give an
    /// empty file with the full schema, as an overwritten leftover chunk is).
    pub fn write_parquet(&self, path: &Path, items: &[CurLineItem]) -> std::io::Result<u64> {
        let batch = self.to_batch(items).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(path)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
            .map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        Ok(std::fs::metadata(path)?.len())
    }
}
