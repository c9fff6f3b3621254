//! What makes a file unfit to serve, found while it is read: columns a CUR 2.0 file
//! must have (with the types they must have), amounts that are not finite numbers, and
//! line items dated outside the file's billing period.
//!
//! Each of these used to read as NULL or 0 and lower the totals without a word. A file
//! with any of them is a problem of its period ([`FileFault`]): the period keeps its last
//! good version, or is unavailable, and `DataStatus` names the file and what is wrong.
//! The parser's own text never reaches a caller: it is logged, and the fault carries a
//! plain cause.

use datafusion::arrow::datatypes::{DataType, Schema};

use crate::period::BillingPeriod;

/// What a column must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Text (plain or dictionary-encoded).
    Text,
    /// A point in time.
    Timestamp,
    /// A number (floating point, integer or decimal), or text that reads as one.
    Number,
    /// A `map<string, string>`.
    Map,
}

impl Expected {
    fn describe(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Timestamp => "a timestamp",
            Self::Number => "a number",
            Self::Map => "a map of strings",
        }
    }

    fn accepts(self, data_type: &DataType) -> bool {
        match (self, data_type) {
            (_, DataType::Null) => true,
            (expected, DataType::Dictionary(_, values)) if expected != Self::Map => {
                expected.accepts(values)
            }
            (Self::Text, t) => is_text(t),
            (Self::Timestamp, t) => matches!(t, DataType::Timestamp(_, _)),
            (Self::Number, t) => t.is_numeric() || is_text(t),
            (Self::Map, DataType::Map(entries, _)) => match entries.data_type() {
                DataType::Struct(fields) => {
                    fields.len() == 2 && fields.iter().all(|f| Self::Text.accepts(f.data_type()))
                }
                _ => false,
            },
            (Self::Map, _) => false,
        }
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Columns every CUR 2.0 file with line items has (its schema is fixed), and their
/// types: without any of them an answer would be short or wrong.
pub const REQUIRED: [(&str, Expected); 10] = [
    ("line_item_line_item_type", Expected::Text),
    ("line_item_usage_start_date", Expected::Timestamp),
    ("line_item_product_code", Expected::Text),
    ("line_item_usage_type", Expected::Text),
    ("line_item_currency_code", Expected::Text),
    ("line_item_usage_amount", Expected::Number),
    ("line_item_unblended_cost", Expected::Number),
    ("line_item_net_unblended_cost", Expected::Number),
    ("line_item_blended_cost", Expected::Number),
    ("pricing_public_on_demand_cost", Expected::Number),
];

/// Columns a file may lack (older vintages, exports without caller identity), and the
/// types they must have when present.
pub const OPTIONAL: [(&str, Expected); 12] = [
    ("identity_line_item_id", Expected::Text),
    ("bill_payer_account_id", Expected::Text),
    ("bill_billing_entity", Expected::Text),
    ("line_item_usage_account_id", Expected::Text),
    ("line_item_iam_principal", Expected::Text),
    ("line_item_line_item_description", Expected::Text),
    ("pricing_unit", Expected::Text),
    ("product_product_family", Expected::Text),
    ("product_region_code", Expected::Text),
    ("product", Expected::Map),
    ("tags", Expected::Map),
    ("bill_billing_period_start_date", Expected::Timestamp),
];

/// The amount columns whose cells are checked one by one.
pub const AMOUNT_COLUMNS: [&str; 5] = [
    "line_item_usage_amount",
    "line_item_unblended_cost",
    "line_item_net_unblended_cost",
    "line_item_blended_cost",
    "pricing_public_on_demand_cost",
];

/// Column names by which a legacy CUR file (not a CUR 2.0 Data Export) is known: the
/// slash headers of its CSV form, or the flattened names of its Athena parquet form.
const LEGACY_MARKS: [&str; 4] = [
    "lineItem/UnblendedCost",
    "lineItem/LineItemType",
    "identity/LineItemId",
    "product_product_name",
];

/// A column the file lacks or holds with the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongType {
    /// The column.
    pub column: &'static str,
    /// What the file holds, as Arrow names it.
    pub found: String,
    /// What it must hold.
    pub expected: Expected,
}

/// Bad cells of one amount column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BadCells {
    /// NaN or an infinity.
    pub non_finite: usize,
    /// Text that is not a number.
    pub non_numeric: usize,
    /// Beyond what one line item may hold (±922,337,203).
    pub too_large: usize,
}

impl BadCells {
    fn any(&self) -> bool {
        self.non_finite + self.non_numeric + self.too_large > 0
    }
}

/// Line items dated outside the billing period of the file's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfPeriod {
    /// The folder's billing period.
    pub period: BillingPeriod,
    /// How many line items start outside it.
    pub line_items: usize,
    /// The earliest such usage start (µs since the epoch).
    pub earliest: i64,
    /// The latest.
    pub latest: i64,
}

/// Why a file cannot be served, for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFault {
    /// The bytes cannot be read as the file's format (damaged, truncated, another
    /// format, or the object is gone); the parser's text is in the log.
    Unreadable {
        /// A plain cause.
        cause: String,
    },
    /// A legacy CUR file: it has no caller column, which only CUR 2.0 Data Exports
    /// carry.
    Legacy,
    /// The file has none of the CUR 2.0 columns.
    NotCur,
    /// Required columns are missing, or columns have the wrong type.
    Columns {
        /// Required columns the file lacks.
        missing: Vec<&'static str>,
        /// Columns of the wrong type.
        wrong: Vec<WrongType>,
    },
    /// Cells that cannot be counted.
    Cells {
        /// Amount columns with bad cells, with their counts.
        amounts: Vec<(&'static str, BadCells)>,
        /// Line items without a usage start.
        undated: usize,
        /// Line items dated outside the billing period.
        out_of_period: Option<OutOfPeriod>,
    },
}

impl std::fmt::Display for FileFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable { cause } => f.write_str(cause),
            Self::Legacy => f.write_str(
                "this is a legacy Cost and Usage Report file, not a CUR 2.0 Data Export: the caller (line_item_iam_principal) exists only in CUR 2.0; create a CUR 2.0 export that includes caller identity and point the service at it",
            ),
            Self::NotCur => f.write_str(
                "this is not a CUR 2.0 file: it has none of the CUR 2.0 columns (line_item_unblended_cost, line_item_usage_start_date...); remove it from the period folder or the manifest",
            ),
            Self::Columns { missing, wrong } => {
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!(
                        "required CUR 2.0 columns are missing: {}",
                        missing.join(", ")
                    ));
                }
                for w in wrong {
                    parts.push(format!(
                        "column {} holds {} where {} is expected",
                        w.column,
                        w.found,
                        w.expected.describe()
                    ));
                }
                write!(f, "{}; the file is not read", parts.join("; "))
            }
            Self::Cells {
                amounts,
                undated,
                out_of_period,
            } => {
                let mut parts = Vec::new();
                for (column, bad) in amounts {
                    let mut counts = Vec::new();
                    let mut count = |n: usize, what: &str| {
                        if n > 0 {
                            counts.push(format!("{} {what}", thousands(n)));
                        }
                    };
                    count(bad.non_finite, "non-finite (NaN or infinite)");
                    count(bad.non_numeric, "non-numeric");
                    count(bad.too_large, "too large (beyond ±922,337,203)");
                    parts.push(format!("{column} has {} cells", counts.join(", ")));
                }
                if *undated > 0 {
                    parts.push(format!(
                        "{} line items have no line_item_usage_start_date",
                        thousands(*undated)
                    ));
                }
                if let Some(o) = out_of_period {
                    parts.push(format!(
                        "{} line items start outside billing period {} (from {} to {}); CUR dates every line item within its billing period",
                        thousands(o.line_items),
                        o.period,
                        time(o.earliest),
                        time(o.latest),
                    ));
                }
                write!(
                    f,
                    "{}; serving the file would miscount its spend, so it is not read",
                    parts.join("; ")
                )
            }
        }
    }
}

fn time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map_or_else(|| micros.to_string(), crate::catalog::format_time)
}

/// `n` with thousands separators.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checks the columns of a file that holds line items: `names` are all its columns,
/// `schema` those read (a subset of [`REQUIRED`] and [`OPTIONAL`], with the types read).
pub fn columns(names: &[String], schema: &Schema) -> Result<(), FileFault> {
    let has = |c: &str| names.iter().any(|n| n == c);
    if LEGACY_MARKS.iter().any(|c| has(c)) && !has("line_item_iam_principal") {
        return Err(FileFault::Legacy);
    }
    let known = REQUIRED.iter().chain(&OPTIONAL).any(|(c, _)| has(c));
    if !known {
        return Err(FileFault::NotCur);
    }
    let missing: Vec<&'static str> = REQUIRED
        .iter()
        .filter(|(c, _)| !has(c))
        .map(|(c, _)| *c)
        .collect();
    let wrong: Vec<WrongType> = REQUIRED
        .iter()
        .chain(&OPTIONAL)
        .filter_map(|(c, expected)| {
            let field = schema.field_with_name(c).ok()?;
            (!expected.accepts(field.data_type())).then(|| WrongType {
                column: c,
                found: field.data_type().to_string(),
                expected: *expected,
            })
        })
        .collect();
    if missing.is_empty() && wrong.is_empty() {
        Ok(())
    } else {
        Err(FileFault::Columns { missing, wrong })
    }
}

/// Bad cells counted over a whole file.
#[derive(Debug, Default)]
pub struct CellTally {
    amounts: [BadCells; AMOUNT_COLUMNS.len()],
    undated: usize,
    outside: usize,
    earliest: i64,
    latest: i64,
}

impl CellTally {
    /// The counts of amount column `column` ([`AMOUNT_COLUMNS`]).
    pub fn amount(&mut self, column: &str) -> Option<&mut BadCells> {
        let at = AMOUNT_COLUMNS.iter().position(|c| *c == column)?;
        Some(&mut self.amounts[at])
    }

    /// Counts a line item without a usage start.
    pub fn undated(&mut self) {
        self.undated += 1;
    }

    /// Counts a line item starting at `start` outside its period.
    pub fn outside(&mut self, start: i64) {
        if self.outside == 0 {
            (self.earliest, self.latest) = (start, start);
        }
        self.outside += 1;
        self.earliest = self.earliest.min(start);
        self.latest = self.latest.max(start);
    }

    /// The file's fault, if any cell was bad.
    pub fn finish(self, period: Option<BillingPeriod>) -> Result<(), FileFault> {
        let amounts: Vec<(&'static str, BadCells)> = AMOUNT_COLUMNS
            .iter()
            .zip(self.amounts)
            .filter(|(_, bad)| bad.any())
            .map(|(c, bad)| (*c, bad))
            .collect();
        let out_of_period = period
            .filter(|_| self.outside > 0)
            .map(|period| OutOfPeriod {
                period,
                line_items: self.outside,
                earliest: self.earliest,
                latest: self.latest,
            });
        if amounts.is_empty() && self.undated == 0 && out_of_period.is_none() {
            return Ok(());
        }
        Err(FileFault::Cells {
            amounts,
            undated: self.undated,
            out_of_period,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, TimeUnit};

    fn schema(fields: &[(&str, DataType)]) -> (Vec<String>, Schema) {
        (
            fields.iter().map(|(n, _)| (*n).to_owned()).collect(),
            Schema::new(
                fields
                    .iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), true))
                    .collect::<Vec<_>>(),
            ),
        )
    }

    fn complete() -> Vec<(&'static str, DataType)> {
        REQUIRED
            .iter()
            .map(|(c, e)| {
                let t = match e {
                    Expected::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
                    Expected::Number => DataType::Float64,
                    _ => DataType::Utf8,
                };
                (*c, t)
            })
            .collect()
    }

    #[test]
    fn a_complete_file_passes_and_each_missing_column_is_named() {
        let (names, s) = schema(&complete());
        assert_eq!(columns(&names, &s), Ok(()));
        for (drop, _) in REQUIRED {
            let fields: Vec<_> = complete().into_iter().filter(|(c, _)| *c != drop).collect();
            let (names, s) = schema(&fields);
            assert_eq!(
                columns(&names, &s),
                Err(FileFault::Columns {
                    missing: vec![drop],
                    wrong: vec![]
                }),
                "{drop}"
            );
        }
    }

    #[test]
    fn wrong_types_are_named_and_text_amounts_are_allowed() {
        let mut fields = complete();
        fields[1].1 = DataType::Int64; // usage start as a bare integer
        fields[6].1 = DataType::Utf8; // unblended cost as text: checked cell by cell
        fields.push(("tags", DataType::Utf8));
        let (names, s) = schema(&fields);
        let Err(FileFault::Columns { missing, wrong }) = columns(&names, &s) else {
            panic!("wrong types pass");
        };
        assert!(missing.is_empty());
        let named: Vec<&str> = wrong.iter().map(|w| w.column).collect();
        assert_eq!(named, ["line_item_usage_start_date", "tags"]);
        let text = FileFault::Columns { missing, wrong }.to_string();
        assert!(
            text.contains(
                "column line_item_usage_start_date holds Int64 where a timestamp is expected"
            ),
            "{text}"
        );
    }

    #[test]
    fn foreign_and_legacy_files_are_told_apart() {
        let (names, s) = schema(&[("a", DataType::Utf8), ("b", DataType::Float64)]);
        assert_eq!(columns(&names, &s), Err(FileFault::NotCur));
        let (names, s) = schema(&[
            ("lineItem/UnblendedCost", DataType::Utf8),
            ("lineItem/LineItemType", DataType::Utf8),
        ]);
        assert_eq!(columns(&names, &s), Err(FileFault::Legacy));
        let mut legacy = complete();
        legacy.push(("product_product_name", DataType::Utf8));
        let (names, s) = schema(&legacy);
        assert_eq!(columns(&names, &s), Err(FileFault::Legacy));
        assert!(
            FileFault::Legacy
                .to_string()
                .contains("line_item_iam_principal")
        );
    }

    #[test]
    fn tallies_say_what_and_how_many() {
        let mut t = CellTally::default();
        assert_eq!(CellTally::default().finish(None), Ok(()));
        if let Some(c) = t.amount("line_item_unblended_cost") {
            c.non_finite += 3;
            c.non_numeric += 1;
        }
        t.outside(1_000_000_000);
        t.outside(1);
        let period = BillingPeriod::parse("2026-07");
        let text = t
            .finish(period)
            .err()
            .map(|f| f.to_string())
            .unwrap_or_default();
        assert!(
            text.contains(
                "line_item_unblended_cost has 3 non-finite (NaN or infinite), 1 non-numeric cells"
            ),
            "{text}"
        );
        assert!(
            text.contains("2 line items start outside billing period 2026-07 (from 1970-01-01T00:00:00Z to 1970-01-01T00:16:40Z)"),
            "{text}"
        );
        assert_eq!(thousands(99_999), "99,999");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
