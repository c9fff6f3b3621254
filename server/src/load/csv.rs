//! Reading the CSV form of a CUR 2.0 export (`EXPORT-00001.csv.gz`): streamed from the
//! object store, gunzipped and parsed a batch at a time on a blocking thread, and turned
//! into the batches the parquet form gives, so that both forms go through the same
//! checks and the same rules and give the same answers to the last decimal.
//!
//! What differs in the CSV form (the data contract's CSV section): a header row names
//! the columns; map columns (`product`, `tags`) are JSON objects (`{}` when empty);
//! timestamps read `2026-04-01T00:00:00.000Z`; doubles are printed as Java prints them
//! (`-7.0E-10`, `1.23456789E7`), and are read back as the same doubles; an empty cell is
//! NULL. Amount columns stay text here: the fold parses them as doubles, so that a cell
//! that is not a number is counted, not read as 0.

use std::{
    io::{BufRead, BufReader, Read},
    sync::Arc,
};

use bytes::Bytes;
use datafusion::{
    arrow::{
        array::{Array, ArrayRef, AsArray, MapBuilder, RecordBatch, StringBuilder},
        compute::cast,
        csv::ReaderBuilder,
        datatypes::{DataType, Field, Schema, SchemaRef},
        error::ArrowError,
    },
    datasource::listing::ListingTableUrl,
    error::DataFusionError,
    execution::SendableRecordBatchStream,
    physical_plan::stream::RecordBatchStreamAdapter,
    prelude::SessionContext,
};
use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::file::RAW_COLUMNS;
use crate::layers::time_type;

/// Rows per batch: as many as a parquet row group's batch, so that the fold sees the
/// same shapes from both forms.
const BATCH_ROWS: usize = 8192;

/// Raw chunks and parsed batches in flight between the tasks: what bounds the memory
/// of a file being read, however large it is.
const IN_FLIGHT: usize = 4;

/// Whether `url` names a file of the CSV form.
pub fn is_csv(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.ends_with(".csv.gz") || lower.ends_with(".csv")
}

/// The columns read as timestamps.
const TIMESTAMPS: [&str; 2] = [
    "line_item_usage_start_date",
    "bill_billing_period_start_date",
];

/// The columns read as maps.
const MAPS: [&str; 2] = ["product", "tags"];

/// The type a raw column of the CSV form is given: timestamps and maps as in parquet,
/// everything else (amounts included) as text.
fn typed(name: &str) -> DataType {
    if TIMESTAMPS.contains(&name) {
        time_type()
    } else if MAPS.contains(&name) {
        crate::demo::cur_file::map_field(name).data_type().clone()
    } else {
        DataType::Utf8
    }
}

/// The file's column names and a stream of its [`RAW_COLUMNS`], typed as [`typed`] says.
pub async fn scan(
    ctx: &SessionContext,
    url: &str,
) -> Result<(Vec<String>, SendableRecordBatchStream), DataFusionError> {
    let table_url = ListingTableUrl::parse(url)?;
    let store = ctx.runtime_env().object_store(table_url.object_store())?;
    let mut body = store.get(table_url.prefix()).await?.into_stream();
    let (chunks, chunks_rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            if chunks
                .send(chunk.map_err(std::io::Error::other))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let (header_tx, header_rx) = tokio::sync::oneshot::channel();
    let (batches, batches_rx) =
        tokio::sync::mpsc::channel::<Result<RecordBatch, DataFusionError>>(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            chunks: chunks_rx,
            current: Bytes::new(),
        };
        let mut input = match decompressed(reader) {
            Ok(input) => input,
            Err(e) => {
                let _ = header_tx.send(Err(e));
                return;
            }
        };
        let names = match read_header(&mut input) {
            Ok(names) => names,
            Err(e) => {
                let _ = header_tx.send(Err(e));
                return;
            }
        };
        let wanted: Vec<usize> = RAW_COLUMNS
            .iter()
            .filter_map(|c| names.iter().position(|n| n == c))
            .collect();
        let schema: SchemaRef = Arc::new(Schema::new(
            wanted
                .iter()
                .map(|&i| Field::new(&names[i], typed(&names[i]), true))
                .collect::<Vec<_>>(),
        ));
        let _ = header_tx.send(Ok((names.clone(), schema.clone())));
        let text = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let rows = ReaderBuilder::new(text)
            .with_header(false)
            .with_batch_size(BATCH_ROWS)
            .with_projection(wanted)
            .build_buffered(input);
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                let _ = batches.blocking_send(Err(e.into()));
                return;
            }
        };
        for batch in rows {
            let typed = batch.and_then(|b| to_typed(&b, &schema));
            let failed = typed.is_err();
            if batches.blocking_send(typed.map_err(Into::into)).is_err() || failed {
                break;
            }
        }
    });
    let (names, schema) = header_rx
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .map_err(DataFusionError::from)?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(batches_rx);
    Ok((
        names,
        Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
    ))
}

/// The bytes of the file as a blocking reader, fed by the task that reads the object.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// The text of the file: gunzipped when it starts as gzip does (AWS writes `.csv.gz`;
/// a file copied uncompressed is read as it is).
fn decompressed(reader: impl Read + Send + 'static) -> Result<Box<dyn BufRead + Send>, ArrowError> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let head = buffered.fill_buf().map_err(ArrowError::from)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// The header row's column names (a byte-order mark and quotes removed).
fn read_header(input: &mut impl BufRead) -> Result<Vec<String>, ArrowError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|_| ArrowError::CsvError("the file is not text".into()))?;
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return Err(ArrowError::CsvError("the file has no header row".into()));
    }
    Ok(line
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_owned())
        .collect())
}

/// A batch of text columns as `schema` types them.
fn to_typed(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| match field.data_type() {
            DataType::Utf8 => Ok(column.clone()),
            DataType::Map(_, _) => json_maps(column, field.name()),
            other => cast(column, other),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// JSON object strings as a `map<string, string>` (a NULL or empty cell is an empty
/// map; a value that is not a string keeps its JSON text).
fn json_maps(column: &ArrayRef, name: &str) -> Result<ArrayRef, ArrowError> {
    let names = datafusion::arrow::array::builder::MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut out = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    let text = column.as_string::<i32>();
    for i in 0..text.len() {
        if text.is_valid(i) && !text.value(i).trim().is_empty() {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text.value(i)).map_err(|_| {
                    ArrowError::CsvError(format!(
                        "column {name} holds a cell that is not a JSON object"
                    ))
                })?;
            for (k, v) in object {
                out.keys().append_value(k);
                match v {
                    serde_json::Value::String(s) => out.values().append_value(s),
                    serde_json::Value::Null => out.values().append_null(),
                    other => out.values().append_value(other.to_string()),
                }
            }
        }
        out.append(true)?;
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(datafusion::arrow::array::StringArray::from(values.to_vec()))
    }

    #[test]
    fn maps_timestamps_and_headers_read_as_the_parquet_form_has_them() {
        let maps = json_maps(
            &text(&[Some("{}"), Some(r#"{"model":"Nova","n":3}"#), None]),
            "product",
        )
        .expect("maps");
        let maps = maps.as_map();
        assert_eq!(maps.value_offsets(), &[0, 0, 2, 2]);
        let keys = maps.keys().as_string::<i32>();
        let values = maps.values().as_string::<i32>();
        assert_eq!((keys.value(0), values.value(0)), ("model", "Nova"));
        assert_eq!((keys.value(1), values.value(1)), ("n", "3"));
        assert!(json_maps(&text(&[Some("[1]")]), "tags").is_err());

        let stamps = cast(
            &text(&[
                Some("2026-04-01T00:00:00.000Z"),
                Some("2026-04-16T13:00:00Z"),
            ]),
            &time_type(),
        )
        .expect("timestamps");
        let stamps =
            stamps.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(stamps.value(0), 1_775_001_600_000_000);
        assert_eq!(
            stamps.value(1) - stamps.value(0),
            (15 * 24 + 13) * 3_600_000_000
        );

        let mut input = BufReader::new("\u{feff}a,\"b\",c\r\n1,2,3\n".as_bytes());
        assert_eq!(read_header(&mut input).expect("a header"), ["a", "b", "c"]);
        let mut rest = String::new();
        input.read_to_string(&mut rest).expect("the rest");
        assert_eq!(rest, "1,2,3\n");
        assert!(is_csv(
            "s3://b/e/data/BILLING_PERIOD=2026-04/x/e-00001.csv.gz"
        ));
        assert!(!is_csv(
            "s3://b/e/data/BILLING_PERIOD=2026-04/e-00001.snappy.parquet"
        ));
    }
}
