//! A generated export rewritten in the CSV form Data Exports also writes: gzip, a header
//! row, maps as JSON objects, timestamps with milliseconds and a `Z`, doubles as Java
//! prints them (`-7.0E-10`, `1.23456789E7`), an empty cell for NULL; manifests name the
//! `.csv.gz` files. The tests hold the CSV form's answers to the parquet form's, and the
//! scale benchmark loads both.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use datafusion::{
    arrow::{
        array::{Array, AsArray},
        datatypes::{
            DataType, Float64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
            TimestampNanosecondType,
        },
    },
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
};

/// `v` as Java's `Double.toString` prints it: scientific below 1e-3 and from 1e7 up,
/// plain otherwise, always with a decimal point.
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v != 0.0 && !(1e-3..1e7).contains(&v.abs()) {
        let text = format!("{v:E}");
        let (mantissa, exponent) = text.split_once('E').unwrap_or((&text, "0"));
        let dot = if mantissa.contains('.') { "" } else { ".0" };
        return format!("{mantissa}{dot}E{exponent}");
    }
    let text = format!("{v}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

fn micros(column: &dyn Array, unit: TimeUnit, row: usize) -> i64 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => {
            column.as_primitive::<TimestampMillisecondType>().value(row) * 1000
        }
        TimeUnit::Microsecond => column.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => column.as_primitive::<TimestampNanosecondType>().value(row) / 1000,
    }
}

/// One cell as the CSV form writes it.
fn cell(column: &dyn Array, row: usize) -> String {
    if column.is_null(row) {
        return String::new();
    }
    match column.data_type() {
        DataType::Float64 => java_double(column.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(unit, _) => {
            chrono::DateTime::from_timestamp_micros(micros(column, *unit, row))
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                .unwrap_or_default()
        }
        DataType::Map(_, _) => {
            let entries = column.as_map().value(row);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_string::<i32>();
            let object: serde_json::Map<String, serde_json::Value> = (0..keys.len())
                .map(|i| {
                    (
                        keys.value(i).to_owned(),
                        serde_json::Value::String(values.value(i).to_owned()),
                    )
                })
                .collect();
            serde_json::Value::Object(object).to_string()
        }
        DataType::Utf8 => column.as_string::<i32>().value(row).to_owned(),
        _ => String::new(),
    }
}

/// Writes one CSV record, quoting the fields that need it.
fn record(out: &mut impl Write, fields: impl Iterator<Item = String>) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, field) in fields.enumerate() {
        if i > 0 {
            line.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&field.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&field);
        }
    }
    line.push('\n');
    out.write_all(line.as_bytes())
}

/// One parquet file of a generated export in the CSV form, gzipped, streamed batch by
/// batch.
pub fn csv_gz_of(parquet: &Path) -> std::io::Result<Vec<u8>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(parquet)?)
        .map_err(std::io::Error::other)?
        .build()
        .map_err(std::io::Error::other)?;
    let names: Vec<String> = datafusion::arrow::record_batch::RecordBatchReader::schema(&reader)
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    record(&mut gz, names.into_iter())?;
    for batch in reader {
        let batch = batch.map_err(std::io::Error::other)?;
        for row in 0..batch.num_rows() {
            record(
                &mut gz,
                batch.columns().iter().map(|c| cell(c.as_ref(), row)),
            )?;
        }
    }
    gz.finish()
}

/// The export at `from` rewritten in the CSV form at `to`: each `.snappy.parquet` file
/// as `.csv.gz`, manifests naming the CSV files, anything else copied. Returns the CSV
/// files written.
pub fn convert_export(from: &Path, to: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let target = to.join(name);
        if path.is_dir() {
            written.extend(convert_export(&path, &target)?);
        } else if let Some(stem) = name.strip_suffix(".snappy.parquet") {
            let csv = to.join(format!("{stem}.csv.gz"));
            std::fs::write(&csv, csv_gz_of(&path)?)?;
            written.push(csv);
        } else if name.ends_with("Manifest.json") {
            let text = std::fs::read_to_string(&path)?;
            std::fs::write(&target, text.replace(".snappy.parquet", ".csv.gz"))?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_java_prints_them_and_fields_are_quoted() {
        assert_eq!(java_double(-7.0e-10), "-7.0E-10");
        assert_eq!(java_double(1.23456789e7), "1.23456789E7");
        assert_eq!(java_double(-1.3333e-6), "-1.3333E-6");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(3.0), "3.0");
        assert_eq!(java_double(0.0), "0.0");
        let mut out = Vec::new();
        record(
            &mut out,
            ["a".to_owned(), "b,c".to_owned(), "{\"k\":\"v\"}".to_owned()].into_iter(),
        )
        .unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "a,\"b,c\",\"{\"\"k\"\":\"\"v\"\"}\"\n"
        );
    }
}
