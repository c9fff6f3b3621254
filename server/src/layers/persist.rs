//! Persisted layers: a built period written to a local cache directory, so that a
//! restart on unchanged data loads its layers instead of reading the export again.
//!
//! One folder per period version, named by a digest of everything the layers depend on
//! (format, Bedrock rule, export root, period, and the fingerprint of its manifest and
//! files), holding Arrow IPC files (readable by DataFusion, or by the workers of a
//! distributed engine) and a `meta.json` with each file's SHA-256. A folder is written
//! under a temporary name and renamed into place, so a crash leaves no half entry; an
//! entry that fails any check (digest, schema, shape) is removed and rebuilt from the
//! export, never served.

use std::{
    collections::BTreeMap,
    fs,
    io::Cursor,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use datafusion::arrow::{
    array::{AsArray, RecordBatch, StringArray, UInt32Array},
    datatypes::{DataType, Field, Schema, UInt32Type},
    error::ArrowError,
    ipc::{reader::FileReader, writer::FileWriter},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    Chunk, Grain, Layer, PeriodLayers, SCHEMA,
    dict::{Dictionaries, Dictionary, TagSets},
    rates::Rate,
};
use crate::{
    allocate::AllocationSummary,
    catalog::listing::PeriodFiles,
    load::LoadedPeriod,
    period::BillingPeriod,
    query::CostMetric,
    rules::{bedrock::BedrockRule, money::Amount},
};

/// Bump when what is written changes meaning or shape (3: the layers gained `routing`;
/// 4: `meta.json` gained the period's rates).
const FORMAT: u32 = 4;
const DICTIONARIES: [&str; 6] = [
    "principals",
    "accounts",
    "regions",
    "models",
    "line_item_types",
    "currencies",
];

/// The cache directory of built periods.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
    rule: String,
    /// Writes under way: a period is served as soon as it is built, and persisted
    /// behind it; [`LayerCache::flush`] waits for them.
    writes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    rule: String,
    source: String,
    period: String,
    fingerprint: Vec<String>,
    rows_read: usize,
    line_items: usize,
    missing_columns: Vec<String>,
    allocation: Vec<StoredAllocation>,
    tag_sets: usize,
    chunks: BTreeMap<String, Vec<(i64, i64)>>,
    sha256: BTreeMap<String, String>,
    rates: Vec<Rate>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredAllocation {
    currency: String,
    metric: String,
    within_account: String,
    across_payer: String,
    unattributed: String,
}

fn metric_name(m: CostMetric) -> &'static str {
    match m {
        CostMetric::Unblended => "unblended",
        CostMetric::NetUnblended => "net_unblended",
        CostMetric::Blended => "blended",
        CostMetric::PublicOnDemand => "public_on_demand",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn bad(reason: impl Into<String>) -> ArrowError {
    ArrowError::InvalidArgumentError(reason.into())
}

impl LayerCache {
    /// A cache under `root` for periods built with `rule`.
    pub fn new(root: PathBuf, rule: &BedrockRule) -> Self {
        Self {
            root,
            rule: rule.product_codes().join(","),
            writes: Arc::default(),
        }
    }

    fn entry(&self, source: &str, files: &PeriodFiles) -> PathBuf {
        let mut h = Sha256::new();
        h.update(
            format!(
                "format {FORMAT}\nrule {}\nsource {source}\nperiod {}\n",
                self.rule, files.period
            )
            .as_bytes(),
        );
        h.update(files.fingerprint.digest());
        self.root
            .join(format!("{}-{}", files.period, hex(&h.finalize()[..16])))
    }

    /// The period as persisted, if the cache holds this exact version intact.
    pub async fn load(&self, source: &str, files: &PeriodFiles) -> Option<LoadedPeriod> {
        let dir = self.entry(source, files);
        if !dir.join("meta.json").exists() {
            return None;
        }
        let (cache, source_owned, files_owned) = (self.clone(), source.to_owned(), files.clone());
        let task_dir = dir.clone();
        let read = tokio::task::spawn_blocking(move || {
            cache.read_entry(&task_dir, &source_owned, &files_owned)
        })
        .await;
        match read {
            Ok(Ok(loaded)) => {
                tracing::info!(period = %files.period, source, dir = %dir.display(), "layers loaded from the cache");
                Some(loaded)
            }
            Ok(Err(e)) => {
                tracing::warn!(period = %files.period, source, dir = %dir.display(), error = %e, "cache entry unusable; rebuilding it from the export");
                let _ = fs::remove_dir_all(&dir);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the cache stopped");
                None
            }
        }
    }

    /// Persists a built period in the background; failures are logged (the period is
    /// served anyway). Writes run one at a time, in the order asked, so a period's newer
    /// version is never removed by the end of an older one's write.
    pub fn store(&self, source: &str, files: &PeriodFiles, period: &LoadedPeriod) {
        let dir = self.entry(source, files);
        let (cache, source, files, period) = (
            self.clone(),
            source.to_owned(),
            files.clone(),
            period.clone(),
        );
        let mut writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        writes.retain(|w| !w.is_finished());
        let previous = writes.pop();
        writes.push(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let task_dir = dir.clone();
            let task_source = source.clone();
            let task_files = files.clone();
            let written = tokio::task::spawn_blocking(move || {
                cache.write_entry(&task_dir, &task_source, &task_files, &period)
            })
            .await;
            match written {
                Ok(Ok(bytes)) => {
                    tracing::info!(period = %files.period, source, dir = %dir.display(), bytes, "layers persisted")
                }
                Ok(Err(e)) => {
                    tracing::warn!(period = %files.period, source, dir = %dir.display(), error = %e, "cannot persist the layers; the next start reads the export again")
                }
                Err(e) => tracing::warn!(error = %e, "persisting the layers stopped"),
            }
        }));
    }

    /// Waits until every period asked to be stored is written (or has failed).
    pub async fn flush(&self) {
        let pending =
            std::mem::take(&mut *self.writes.lock().unwrap_or_else(PoisonError::into_inner));
        for write in pending {
            let _ = write.await;
        }
    }

    fn write_entry(
        &self,
        dir: &Path,
        source: &str,
        files: &PeriodFiles,
        period: &LoadedPeriod,
    ) -> Result<u64, ArrowError> {
        fs::create_dir_all(&self.root)?;
        let tmp = self.root.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir_all(&tmp)?;
        let result = (|| {
            let mut sha256 = BTreeMap::new();
            let mut chunks = BTreeMap::new();
            let mut bytes = 0;
            let mut put = |name: &str, body: Vec<u8>| -> Result<(), ArrowError> {
                sha256.insert(name.to_owned(), hex(&Sha256::digest(&body)));
                bytes += body.len() as u64;
                fs::write(tmp.join(name), body)?;
                Ok(())
            };
            for layer in period.layers.all() {
                let batches: Vec<&RecordBatch> = layer.chunks.iter().map(|c| &c.batch).collect();
                put(
                    &format!("{}.arrow", layer.grain.name()),
                    ipc(&SCHEMA, &batches)?,
                )?;
                chunks.insert(
                    layer.grain.name().to_owned(),
                    layer.chunks.iter().map(|c| (c.start, c.end)).collect(),
                );
            }
            put("dictionaries.arrow", dictionaries_ipc(&period.dicts)?)?;
            put("tag_sets.arrow", tag_sets_ipc(&period.dicts.tag_sets)?)?;
            let meta = Meta {
                format: FORMAT,
                rule: self.rule.clone(),
                source: source.to_owned(),
                period: files.period.to_string(),
                fingerprint: files.fingerprint.lines().to_vec(),
                rows_read: period.rows_read,
                line_items: period.line_items,
                missing_columns: period.missing_columns.clone(),
                allocation: period
                    .allocation
                    .iter()
                    .map(|a| StoredAllocation {
                        currency: a.currency.clone(),
                        metric: metric_name(a.metric).to_owned(),
                        within_account: a.within_account.scaled().to_string(),
                        across_payer: a.across_payer.scaled().to_string(),
                        unattributed: a.unattributed.scaled().to_string(),
                    })
                    .collect(),
                tag_sets: period.dicts.tag_sets.sets().len(),
                chunks,
                sha256,
                rates: period.rates.clone(),
            };
            let meta = serde_json::to_vec_pretty(&meta).map_err(|e| bad(e.to_string()))?;
            fs::write(tmp.join("meta.json"), meta)?;
            Ok(bytes)
        })();
        match result {
            Ok(bytes) => {
                let _ = fs::remove_dir_all(dir);
                fs::rename(&tmp, dir)?;
                self.prune(dir, source, files.period);
                Ok(bytes)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Removes the entries of earlier versions of the same source and period: the current
    /// month changes with every export refresh, and each version would otherwise stay.
    fn prune(&self, keep: &Path, source: &str, period: BillingPeriod) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let same_period = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{period}-")));
            if path == keep || !same_period {
                continue;
            }
            let same_source = fs::read(path.join("meta.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
                .is_none_or(|m| m.source == source);
            if same_source {
                tracing::debug!(dir = %path.display(), "removing an earlier version's layers");
                let _ = fs::remove_dir_all(&path);
            }
        }
    }

    fn read_entry(
        &self,
        dir: &Path,
        source: &str,
        files: &PeriodFiles,
    ) -> Result<LoadedPeriod, ArrowError> {
        let meta: Meta = serde_json::from_slice(&fs::read(dir.join("meta.json"))?)
            .map_err(|e| bad(format!("meta.json: {e}")))?;
        if meta.format != FORMAT
            || meta.rule != self.rule
            || meta.source != source
            || meta.period != files.period.to_string()
            || meta.fingerprint != files.fingerprint.lines()
        {
            return Err(bad("the entry belongs to another version of the period"));
        }
        let read = |name: &str| -> Result<Vec<u8>, ArrowError> {
            let body = fs::read(dir.join(name))?;
            let want = meta
                .sha256
                .get(name)
                .ok_or_else(|| bad(format!("{name} has no recorded digest")))?;
            if &hex(&Sha256::digest(&body)) != want {
                return Err(bad(format!("{name} does not match its SHA-256")));
            }
            Ok(body)
        };
        let layer = |grain: Grain| -> Result<Layer, ArrowError> {
            let batches = read_ipc(read(&format!("{}.arrow", grain.name()))?)?;
            let spans = meta
                .chunks
                .get(grain.name())
                .ok_or_else(|| bad(format!("no chunk list for the {} layer", grain.name())))?;
            if spans.len() != batches.len() {
                return Err(bad("chunk list and batches differ"));
            }
            let chunks = batches
                .into_iter()
                .zip(spans)
                .map(|(batch, &(start, end))| {
                    if batch.schema().fields() != SCHEMA.fields() {
                        return Err(bad("a layer has another schema"));
                    }
                    Ok(Chunk { start, end, batch })
                })
                .collect::<Result<_, ArrowError>>()?;
            Ok(Layer { grain, chunks })
        };
        let layers = PeriodLayers {
            fine: layer(Grain::Fine)?,
            daily: layer(Grain::Daily)?,
            monthly: layer(Grain::Monthly)?,
        };
        let mut dicts = read_dictionaries(read("dictionaries.arrow")?)?;
        dicts.tag_sets = read_tag_sets(read("tag_sets.arrow")?, meta.tag_sets)?;
        let allocation = meta
            .allocation
            .iter()
            .map(|a| {
                let metric = match a.metric.as_str() {
                    "unblended" => CostMetric::Unblended,
                    "net_unblended" => CostMetric::NetUnblended,
                    "blended" => CostMetric::Blended,
                    "public_on_demand" => CostMetric::PublicOnDemand,
                    other => return Err(bad(format!("unknown metric {other}"))),
                };
                let amount = |s: &str| {
                    s.parse::<i128>()
                        .map(Amount::from_scaled)
                        .map_err(|e| bad(e.to_string()))
                };
                Ok(AllocationSummary {
                    currency: a.currency.clone(),
                    metric,
                    within_account: amount(&a.within_account)?,
                    across_payer: amount(&a.across_payer)?,
                    unattributed: amount(&a.unattributed)?,
                })
            })
            .collect::<Result<_, ArrowError>>()?;
        Ok(LoadedPeriod {
            dicts,
            layers,
            rows_read: meta.rows_read,
            line_items: meta.line_items,
            missing_columns: meta.missing_columns,
            allocation,
            rates: meta.rates,
        })
    }
}

fn ipc(schema: &Arc<Schema>, batches: &[&RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut body = Vec::new();
    let mut writer = FileWriter::try_new(&mut body, schema)?;
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(body)
}

fn read_ipc(body: Vec<u8>) -> Result<Vec<RecordBatch>, ArrowError> {
    FileReader::try_new(Cursor::new(body), None)?.collect()
}

fn dictionaries_ipc(dicts: &Dictionaries) -> Result<Vec<u8>, ArrowError> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "value",
        DataType::Utf8,
        false,
    )]));
    let batches = [
        &dicts.principals,
        &dicts.accounts,
        &dicts.regions,
        &dicts.models,
        &dicts.line_item_types,
        &dicts.currencies,
    ]
    .iter()
    .map(|d| RecordBatch::try_new(schema.clone(), vec![Arc::new(d.to_array())]))
    .collect::<Result<Vec<_>, _>>()?;
    ipc(&schema, &batches.iter().collect::<Vec<_>>())
}

fn read_dictionaries(body: Vec<u8>) -> Result<Dictionaries, ArrowError> {
    let batches = read_ipc(body)?;
    if batches.len() != DICTIONARIES.len() {
        return Err(bad("dictionaries.arrow does not hold every dictionary"));
    }
    let mut out = batches.iter().zip(DICTIONARIES).map(|(b, name)| {
        let values = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad(format!("dictionary {name} is not text")))?;
        Dictionary::from_values(values.iter().map(|v| v.unwrap_or("")))
            .ok_or_else(|| bad(format!("dictionary {name} is malformed")))
    });
    let mut next = || out.next().unwrap_or_else(|| Err(bad("missing dictionary")));
    Ok(Dictionaries {
        principals: next()?,
        accounts: next()?,
        regions: next()?,
        models: next()?,
        line_item_types: next()?,
        currencies: next()?,
        tag_sets: TagSets::default(),
    })
}

fn tag_sets_ipc(sets: &TagSets) -> Result<Vec<u8>, ArrowError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("set", DataType::UInt32, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]));
    let entries = sets
        .sets()
        .iter()
        .enumerate()
        .flat_map(|(id, set)| set.iter().map(move |(k, v)| (id as u32, k, v)));
    let (mut ids, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (id, k, v) in entries {
        ids.push(id);
        keys.push(k.as_str());
        values.push(v.as_str());
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt32Array::from(ids)),
            Arc::new(StringArray::from(keys)),
            Arc::new(StringArray::from(values)),
        ],
    )?;
    ipc(&schema, &[&batch])
}

fn read_tag_sets(body: Vec<u8>, count: usize) -> Result<TagSets, ArrowError> {
    let mut sets: Vec<Vec<(String, String)>> = vec![Vec::new(); count];
    for batch in read_ipc(body)? {
        let ids = batch
            .column(0)
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| bad("tag set ids are not u32"))?;
        let keys = batch
            .column(1)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("tag keys are not text"))?;
        let values = batch
            .column(2)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("tag values are not text"))?;
        for i in 0..batch.num_rows() {
            let set = sets
                .get_mut(ids.value(i) as usize)
                .ok_or_else(|| bad("a tag set id is out of range"))?;
            set.push((keys.value(i).to_owned(), values.value(i).to_owned()));
        }
    }
    let mut out = TagSets::default();
    for (id, set) in sets.into_iter().enumerate() {
        if id == 0 {
            if !set.is_empty() {
                return Err(bad("tag set 0 must be empty"));
            }
            continue;
        }
        if out.intern(set) != id as u32 {
            return Err(bad("tag sets are not distinct"));
        }
    }
    Ok(out)
}
