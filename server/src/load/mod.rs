//! Loading a billing period: its files read in parallel and streamed, Bedrock line items
//! normalized by the data contract's rules and summed into fine rows, allocation shared
//! per line item, then the three layers built. What comes out holds ids in the period's
//! own dictionaries, so that it can be persisted as is ([`crate::layers::persist`]).

pub mod classify;
pub mod file;

use datafusion::{
    arrow::{array::StringArray, compute::concat, error::ArrowError},
    prelude::SessionContext,
};
use futures::{StreamExt, TryStreamExt};

use crate::{
    allocate::{self, AllocationSummary, Donor, Participants, Receiver},
    layers::{LineKey, PeriodLayers, dict::Dictionaries},
    rules::bedrock::BedrockRule,
};
pub use file::{FileLines, NOTABLE_COLUMNS, RAW_COLUMNS};

/// One period, normalized and layered, with ids in its own dictionaries.
#[derive(Debug, Clone)]
pub struct LoadedPeriod {
    /// The period's dictionaries.
    pub dicts: Dictionaries,
    /// Its layers.
    pub layers: PeriodLayers,
    /// Parquet rows read (all services).
    pub rows_read: usize,
    /// Bedrock line items kept.
    pub line_items: usize,
    /// Notable CUR columns that no file of the period has.
    pub missing_columns: Vec<String>,
    /// Where the period's spend without a caller went.
    pub allocation: Vec<AllocationSummary>,
}

/// A failure to load a period: the object concerned and what went wrong.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// Object URL (a data file, or the export root when no single file is to blame).
    pub file: String,
    /// For a person.
    pub message: String,
}

/// Reads `urls` (one period's data files), at most `parallel` at a time, and builds the
/// period's layers. Any bad file fails the whole period, so that a period is never
/// served half-read.
pub async fn load_period(
    ctx: &SessionContext,
    urls: &[String],
    rule: &BedrockRule,
    parallel: usize,
    root: &str,
) -> Result<LoadedPeriod, LoadError> {
    let reads: Vec<FileLines> = futures::stream::iter(urls.iter().cloned().map(|url| {
        let (ctx, rule) = (ctx.clone(), rule.clone());
        // A task per file: DataFusion decodes a single-partition stream on the task
        // that polls it, so files only use several cores when they are polled apart.
        let task = tokio::spawn(async move {
            let read = file::read_file(&ctx, &url, rule).await;
            (url, read)
        });
        async move {
            match task.await {
                Ok((_, Ok(lines))) => Ok(lines),
                Ok((url, Err(e))) => Err(LoadError {
                    file: url,
                    message: format!("cannot read the parquet file: {e}"),
                }),
                Err(e) => Err(LoadError {
                    file: root.to_owned(),
                    message: format!("reading a file stopped: {e}"),
                }),
            }
        }
    }))
    .buffered(parallel.max(1))
    .try_collect()
    .await?;
    let missing_columns = NOTABLE_COLUMNS
        .iter()
        .filter(|c| {
            !reads
                .iter()
                .any(|r| r.columns.iter().any(|have| have == *c))
        })
        .map(|c| c.to_string())
        .collect();
    let fail = |e: ArrowError| LoadError {
        file: root.to_owned(),
        message: format!("cannot build the period's layers: {e}"),
    };
    let mut merged = merge(reads).map_err(fail)?;
    let allocation = allocate::apply(
        &mut merged.fine,
        Participants {
            receivers: &merged.receivers,
            ids: &merged.receiver_ids,
            donors: &merged.donors,
        },
        &merged.dicts,
    )
    .map_err(|e| LoadError {
        file: root.to_owned(),
        message: format!("cannot allocate the period's unattributed spend: {e}"),
    })?;
    let layers = PeriodLayers::build(&merged.fine, &merged.dicts).map_err(fail)?;
    Ok(LoadedPeriod {
        dicts: merged.dicts,
        layers,
        rows_read: merged.rows_read,
        line_items: merged.line_items,
        missing_columns,
        allocation,
    })
}

/// The files of a period, in file order, onto one set of dictionaries and fine rows.
fn merge(mut reads: Vec<FileLines>) -> Result<FileLines, ArrowError> {
    if reads.len() == 1 {
        return Ok(reads.remove(0));
    }
    let mut out = FileLines::default();
    let mut ids: Vec<StringArray> = Vec::with_capacity(reads.len());
    for read in reads {
        let map = out.dicts.absorb(&read.dicts);
        let through = |v: &[u32], id: u32| v.get(id as usize).copied().unwrap_or(0);
        let rows: Vec<u32> = read
            .fine
            .keys
            .iter()
            .zip(&read.fine.sums)
            .map(|(k, s)| {
                let key = LineKey {
                    start: k.start,
                    principal: through(&map.principals, k.principal),
                    account: through(&map.accounts, k.account),
                    payer: through(&map.accounts, k.payer),
                    region: through(&map.regions, k.region),
                    line_item_type: through(&map.line_item_types, k.line_item_type),
                    currency: through(&map.currencies, k.currency),
                    model: through(&map.models, k.model),
                    category: k.category,
                    tag_set: through(&map.tag_sets, k.tag_set),
                };
                out.fine.add(key, s)
            })
            .collect::<Result<_, _>>()?;
        out.receivers
            .extend(read.receivers.iter().map(|r| Receiver {
                row: rows[r.row as usize],
                cost: r.cost,
            }));
        out.donors.extend(read.donors.iter().map(|d| Donor {
            row: rows[d.row as usize],
            cost: d.cost,
        }));
        ids.push(read.receiver_ids);
        out.rows_read += read.rows_read;
        out.line_items += read.line_items;
    }
    let refs: Vec<&dyn datafusion::arrow::array::Array> = ids
        .iter()
        .map(|a| a as &dyn datafusion::arrow::array::Array)
        .collect();
    out.receiver_ids = if refs.is_empty() {
        StringArray::from(Vec::<&str>::new())
    } else {
        use datafusion::arrow::array::AsArray;
        concat(&refs)?.as_string::<i32>().clone()
    };
    Ok(out)
}
