//! Loading a billing period: its files read in parallel and streamed, Bedrock line items
//! normalized by the data contract's rules and summed into fine rows, allocation shared
//! per line item, then the three layers built. What comes out holds ids in the period's
//! own dictionaries, so that it can be persisted as is ([`crate::layers::persist`]).

pub mod check;
pub mod classify;
pub mod csv;
pub mod file;
pub mod strings;

use std::collections::BTreeSet;

use datafusion::{arrow::error::ArrowError, prelude::SessionContext};
use futures::StreamExt;

use crate::{
    allocate::{self, AllocationSummary, Donor, Participants, Receiver},
    layers::{
        LineKey, PeriodLayers,
        dict::Dictionaries,
        rates::{PriceKey, Rate},
    },
    period::BillingPeriod,
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
    /// Plain input and cache-read sums by price key, by name.
    pub rates: Vec<Rate>,
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
/// served half-read. Every line item must start within `period` (the files' folder).
pub async fn load_period(
    ctx: &SessionContext,
    urls: &[String],
    rule: &BedrockRule,
    parallel: usize,
    root: &str,
    period: Option<BillingPeriod>,
) -> Result<LoadedPeriod, LoadError> {
    let mut reads = futures::stream::iter(urls.iter().cloned().map(|url| {
        let (ctx, rule) = (ctx.clone(), rule.clone());
        // A task per file: DataFusion decodes a single-partition stream on the task
        // that polls it, so files only use several cores when they are polled apart.
        let task = tokio::spawn(async move {
            let read = file::read_file(&ctx, &url, rule, period).await;
            (url, read)
        });
        async move {
            match task.await {
                Ok((_, Ok(lines))) => Ok(lines),
                Ok((url, Err(fault))) => Err(LoadError {
                    message: match fault {
                        check::FileFault::Unreadable { .. } if csv::is_csv(&url) => {
                            format!("cannot read the CSV file: {fault}")
                        }
                        check::FileFault::Unreadable { .. } => {
                            format!("cannot read the parquet file: {fault}")
                        }
                        _ => fault.to_string(),
                    },
                    file: url,
                }),
                Err(e) => Err(LoadError {
                    file: root.to_owned(),
                    message: format!("reading a file stopped: {e}"),
                }),
            }
        }
    }))
    .buffered(parallel.max(1));
    let fail = |e: ArrowError| LoadError {
        file: root.to_owned(),
        message: format!("cannot build the period's layers: {e}"),
    };
    // Each file is merged as soon as it is read, so at most `parallel` files' rows
    // exist beside the period's.
    let started = std::time::Instant::now();
    let mut merged: Option<FileLines> = None;
    let mut columns: BTreeSet<String> = BTreeSet::new();
    while let Some(read) = reads.next().await {
        let read = read?;
        columns.extend(read.columns.iter().cloned());
        merged = Some(match merged {
            None => read,
            Some(mut into) => {
                absorb(&mut into, read).map_err(fail)?;
                into
            }
        });
    }
    let read_ms = started.elapsed().as_millis();
    let FileLines {
        dicts,
        mut fine,
        receivers,
        receiver_ids,
        donors,
        rows_read,
        line_items,
        rates,
        ..
    } = merged.unwrap_or_default();
    let rates = rates.named(&dicts);
    let missing_columns = NOTABLE_COLUMNS
        .iter()
        .filter(|c| !columns.contains(**c))
        .map(|c| c.to_string())
        .collect();
    let allocation = allocate::apply(
        &mut fine,
        Participants {
            receivers: &receivers,
            ids: &receiver_ids,
            donors: &donors,
        },
        &dicts,
    )
    .map_err(|e| LoadError {
        file: root.to_owned(),
        message: format!("cannot allocate the period's unattributed spend: {e}"),
    })?;
    let allocate_ms = started.elapsed().as_millis() - read_ms;
    // Line items are done with: only the summed rows go on.
    drop((receivers, receiver_ids, donors));
    fine.seal();
    let layers = PeriodLayers::build(&fine, &dicts).map_err(fail)?;
    drop(fine);
    tracing::info!(
        root,
        files = urls.len(),
        line_items,
        fine_rows = layers.fine.rows(),
        daily_rows = layers.daily.rows(),
        monthly_rows = layers.monthly.rows(),
        read_ms,
        allocate_ms,
        build_ms = started.elapsed().as_millis() - read_ms - allocate_ms,
        "period loaded"
    );
    Ok(LoadedPeriod {
        dicts,
        layers,
        rows_read,
        line_items,
        missing_columns,
        allocation,
        rates,
    })
}

/// Adds one file's rows to those of the files before it, mapping its ids onto theirs.
fn absorb(out: &mut FileLines, read: FileLines) -> Result<(), ArrowError> {
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
                routing: k.routing,
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
    for segment in read.receiver_ids.segments() {
        out.receiver_ids.push(segment.clone());
    }
    out.rates.absorb(&read.rates, |k| PriceKey {
        model: through(&map.models, k.model),
        region: through(&map.regions, k.region),
        currency: through(&map.currencies, k.currency),
        ..*k
    })?;
    out.rows_read += read.rows_read;
    out.line_items += read.line_items;
    Ok(())
}
