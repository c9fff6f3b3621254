//! Which files make up each billing period of an export: the manifest's list when there
//! is one, otherwise the newest execution folder, otherwise every parquet file.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt, path::Path};

use super::{manifest, source::Source};
use crate::period::BillingPeriod;

/// Where a period's file list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileListOrigin {
    /// The period's manifest in `metadata/`.
    Manifest,
    /// A listing of the period folder (no manifest).
    Listing,
}

impl FileListOrigin {
    /// `manifest` or `listing`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Listing => "listing",
        }
    }
}

/// The files to read for one billing period.
#[derive(Debug, Clone)]
pub struct PeriodFiles {
    /// The billing period.
    pub period: BillingPeriod,
    /// Where the list came from.
    pub origin: FileListOrigin,
    /// The create-new execution folder served, if any.
    pub execution: Option<String>,
    /// The data files, with size and modification time.
    pub files: Vec<ObjectMeta>,
    /// The objects the list depends on, as they were when listed.
    pub fingerprint: Fingerprint,
    /// Oddities of the list that were corrected (e.g. a file named twice), for people.
    pub corrections: Vec<String>,
}

/// Every object a period's file list depends on (its manifest, if any, and its data
/// files) with ETag, size and modification time. An unchanged fingerprint means the
/// period need not be read again; any difference, even a same-size rewrite within the
/// same second (S3 times have whole seconds), shows in the ETag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<String>);

impl Fingerprint {
    fn of<'a>(
        manifest: Option<&'a ObjectMeta>,
        files: impl Iterator<Item = &'a ObjectMeta>,
    ) -> Self {
        Self(
            manifest
                .into_iter()
                .chain(files)
                .map(|m| {
                    format!(
                        "{}|{}|{}|{}",
                        m.location,
                        m.e_tag.as_deref().unwrap_or(""),
                        m.size,
                        m.last_modified.timestamp_nanos_opt().unwrap_or_default()
                    )
                })
                .collect(),
        )
    }
}

impl Fingerprint {
    /// The objects, one `location|etag|size|mtime` line each.
    pub fn lines(&self) -> &[String] {
        &self.0
    }

    /// A SHA-256 digest of the objects: equal digests mean the same content.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for line in &self.0 {
            h.update(line.as_bytes());
            h.update(b"\n");
        }
        h.finalize().into()
    }
}

/// A period whose file list could not be made.
#[derive(Debug, Clone)]
pub struct ListingProblem {
    /// The period concerned.
    pub period: BillingPeriod,
    /// The object concerned.
    pub file: String,
    /// What went wrong.
    pub message: String,
}

const PERIOD_PREFIX: &str = "BILLING_PERIOD=";

/// Lists the periods of an export and their files. Problems with one period do not stop
/// the others; a failure to list the export at all is returned as the error.
pub async fn list_export(
    source: &Source,
) -> Result<(Vec<PeriodFiles>, Vec<ListingProblem>), object_store::Error> {
    let store = source.store();
    let data = source.child("data");
    let listing = store.list_with_delimiter(Some(&data)).await?;
    let mut periods = Vec::new();
    let mut problems = Vec::new();
    for prefix in listing.common_prefixes {
        let Some(period) = prefix
            .filename()
            .and_then(|f| f.strip_prefix(PERIOD_PREFIX))
            .and_then(BillingPeriod::parse)
        else {
            continue;
        };
        match list_period(source, &prefix, period).await {
            Ok(files) => periods.push(files),
            Err(problem) => problems.push(problem),
        }
    }
    periods.sort_by_key(|p| p.period);
    Ok((periods, problems))
}

async fn list_period(
    source: &Source,
    folder: &Path,
    period: BillingPeriod,
) -> Result<PeriodFiles, ListingProblem> {
    let store = source.store();
    let problem = |file: String, message: String| ListingProblem {
        period,
        file,
        message,
    };
    let objects: Vec<ObjectMeta> = store.list(Some(folder)).try_collect().await.map_err(|e| {
        problem(
            source.object_url(folder),
            format!("cannot list the period folder: {e}"),
        )
    })?;
    let by_path: BTreeMap<String, ObjectMeta> = objects
        .into_iter()
        .map(|m| (m.location.to_string(), m))
        .collect();

    let metadata = source.child(&format!("metadata/{PERIOD_PREFIX}{period}"));
    // A failed listing of metadata/ must not fall back to reading every parquet file:
    // that would read the emptied leftovers and stale chunks the manifest excludes.
    let manifests = store
        .list_with_delimiter(Some(&metadata))
        .await
        .map_err(|e| {
            problem(
                source.object_url(&metadata),
                format!("cannot list the manifest folder: {e}"),
            )
        })?
        .objects;
    let manifest = manifests
        .into_iter()
        .filter(|m| {
            m.location
                .filename()
                .is_some_and(|f| f.ends_with("Manifest.json"))
        })
        .max_by_key(|m| m.last_modified);

    if let Some(manifest_meta) = manifest {
        let manifest_url = source.object_url(&manifest_meta.location);
        let bytes = store
            .get(&manifest_meta.location)
            .await
            .map_err(|e| {
                problem(
                    manifest_url.clone(),
                    format!("cannot read the manifest: {e}"),
                )
            })?
            .bytes()
            .await
            .map_err(|e| {
                problem(
                    manifest_url.clone(),
                    format!("cannot read the manifest: {e}"),
                )
            })?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            problem(
                manifest_url.clone(),
                format!("the manifest is not valid JSON: {e}"),
            )
        })?;
        let mut files: Vec<ObjectMeta> = Vec::new();
        let mut execution = None;
        let mut corrections = Vec::new();
        // Files named more than once: how many extra times, and one of them to name.
        let mut named: std::collections::HashSet<Path> = std::collections::HashSet::new();
        let (mut repeated_files, mut extra_entries) = (BTreeMap::<String, usize>::new(), 0usize);
        for uri in manifest::data_files(&json) {
            let relative = manifest::relative_to_root(&uri).ok_or_else(|| {
                problem(
                    manifest_url.clone(),
                    format!("the manifest names {uri}, which is not below data/{PERIOD_PREFIX}..."),
                )
            })?;
            let location = source.child(relative);
            let meta = by_path.get(location.as_ref()).ok_or_else(|| {
                problem(
                    source.object_url(&location),
                    "the manifest names a data file that does not exist".to_owned(),
                )
            })?;
            execution = execution_of(folder, &location).or(execution);
            if !named.insert(meta.location.clone()) {
                // Read literally, the file would count twice; it is one file.
                *repeated_files.entry(uri.clone()).or_default() += 1;
                extra_entries += 1;
                continue;
            }
            files.push(meta.clone());
        }
        // One correction for the whole manifest, however many entries repeat: a
        // manifest naming a file 100,000 times must not make a 29 MB status reply.
        if let Some((uri, extra)) = repeated_files.iter().max_by_key(|(_, n)| **n) {
            corrections.push(if repeated_files.len() == 1 {
                format!(
                    "the manifest names {uri} {} times; it is read once",
                    crate::load::check::thousands(extra + 1)
                )
            } else {
                format!(
                    "the manifest names {} files more than once ({} extra entries; {uri} {} times); each is read once",
                    crate::load::check::thousands(repeated_files.len()),
                    crate::load::check::thousands(extra_entries),
                    crate::load::check::thousands(extra + 1)
                )
            });
        }
        if files.is_empty() {
            return Err(problem(
                manifest_url,
                "the manifest names no data files: AWS writes it after the data, so this is an export being rewritten or a broken one; serving $0 as current would be wrong".to_owned(),
            ));
        }
        let files = with_etags(source, files, period).await?;
        let manifest_meta = with_etags(source, vec![manifest_meta], period)
            .await?
            .remove(0);
        return Ok(PeriodFiles {
            period,
            origin: FileListOrigin::Manifest,
            execution,
            fingerprint: Fingerprint::of(Some(&manifest_meta), files.iter()),
            files,
            corrections,
        });
    }

    // No manifest: the newest execution folder if there are any, else the folder itself.
    let newest = by_path
        .values()
        .filter_map(|m| execution_of(folder, &m.location))
        .max();
    let files: Vec<ObjectMeta> = by_path
        .values()
        .filter(|m| manifest::is_data_file(m.location.as_ref()))
        .filter(|m| execution_of(folder, &m.location) == newest)
        .cloned()
        .collect();
    let files = with_etags(source, files, period).await?;
    Ok(PeriodFiles {
        period,
        origin: FileListOrigin::Listing,
        execution: newest,
        fingerprint: Fingerprint::of(None, files.iter()),
        files,
        corrections: Vec::new(),
    })
}

/// Listing calls [`no_periods_message`] may make while looking for exports below a
/// source, so that a source set on a whole bucket costs a bounded time.
const SEARCH_LISTINGS: usize = 64;

/// How deep below a source [`no_periods_message`] looks for export roots.
const SEARCH_DEPTH: usize = 3;

/// Why a source lists no billing periods, for the person who configured it: the folder
/// does not exist; it is the parent of exports (naming them: "did you mean ...?"); it is
/// an export's `data/` folder; or it holds files but no `data/BILLING_PERIOD=YYYY-MM/`.
pub async fn no_periods_message(source: &Source) -> String {
    const EXPECTED: &str = "expected folders data/BILLING_PERIOD=YYYY-MM/";
    let url = source.url();
    let store = source.store();
    let Ok(top) = store.list_with_delimiter(Some(source.root())).await else {
        return format!("no billing periods found: {EXPECTED}");
    };
    if top.objects.is_empty() && top.common_prefixes.is_empty() {
        let empty_folder = url::Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
            .is_some_and(|path| path.is_dir());
        return if empty_folder {
            format!("no billing periods found: the source folder {url} is empty")
        } else {
            format!(
                "no billing periods found: the source {url} does not exist (nothing is stored under it)"
            )
        };
    }
    let names = |prefixes: &[Path]| -> Vec<String> {
        prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect()
    };
    if names(&top.common_prefixes)
        .iter()
        .any(|n| n.starts_with(PERIOD_PREFIX))
    {
        let parent = url.rsplit_once('/').map_or(url, |(parent, _)| parent);
        return format!(
            "no billing periods found: {url} holds BILLING_PERIOD= folders, so it is an export's data/ folder; the source is the folder above it: did you mean {parent}?"
        );
    }
    let exports = exports_below(source, top.common_prefixes).await;
    match exports.first() {
        Some(first) => format!(
            "no billing periods found: {url} is not an export root (the folder holding data/ and metadata/) but holds {}: {}; did you mean {first}?",
            if exports.len() == 1 {
                "an export"
            } else {
                "exports"
            },
            exports.join(", ")
        ),
        None => format!("no billing periods found in {url}: {EXPECTED}"),
    }
}

/// URLs of the export roots (folders whose `data/` holds `BILLING_PERIOD=` folders)
/// among `prefixes` and below them, breadth first, within the search bounds.
async fn exports_below(source: &Source, prefixes: Vec<Path>) -> Vec<String> {
    let store = source.store();
    let mut found = Vec::new();
    let mut level = prefixes;
    let mut listings = 0;
    for _ in 0..SEARCH_DEPTH {
        let mut next = Vec::new();
        for prefix in level {
            if listings >= SEARCH_LISTINGS {
                return found;
            }
            listings += 1;
            let Ok(children) = store.list_with_delimiter(Some(&prefix)).await else {
                continue;
            };
            let data = children
                .common_prefixes
                .iter()
                .find(|c| c.filename() == Some("data"));
            if let Some(data) = data {
                listings += 1;
                let periods = store
                    .list_with_delimiter(Some(data))
                    .await
                    .map(|l| l.common_prefixes)
                    .unwrap_or_default();
                if periods.iter().any(|p| {
                    p.filename()
                        .and_then(|f| f.strip_prefix(PERIOD_PREFIX))
                        .and_then(BillingPeriod::parse)
                        .is_some()
                }) {
                    found.push(source.object_url(&prefix));
                    continue;
                }
            }
            next.extend(children.common_prefixes);
        }
        level = next;
    }
    found
}

/// The objects with their ETags. S3 listings carry them, but some S3-compatible stores
/// list only size and time; those objects are asked for one by one, because without the
/// ETag a same-size rewrite within a second would go unseen.
async fn with_etags(
    source: &Source,
    metas: Vec<ObjectMeta>,
    period: BillingPeriod,
) -> Result<Vec<ObjectMeta>, ListingProblem> {
    futures::stream::iter(metas.into_iter().map(|meta| async move {
        if meta.e_tag.is_some() {
            return Ok(meta);
        }
        source
            .store()
            .head(&meta.location)
            .await
            .map_err(|e| ListingProblem {
                period,
                file: source.object_url(&meta.location),
                message: format!("cannot read the object's metadata: {e}"),
            })
    }))
    .buffered(8)
    .try_collect()
    .await
}

/// The execution folder of a file below the period folder, if it is in one.
fn execution_of(folder: &Path, location: &Path) -> Option<String> {
    let parts: Vec<_> = location.prefix_match(folder)?.collect();
    (parts.len() > 1).then(|| parts[0].as_ref().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_folders() {
        let folder = Path::from("e/data/BILLING_PERIOD=2026-06");
        let inside = Path::from("e/data/BILLING_PERIOD=2026-06/20260702T000000Z-exec-1/f.parquet");
        let direct = Path::from("e/data/BILLING_PERIOD=2026-06/f.parquet");
        assert_eq!(
            execution_of(&folder, &inside).as_deref(),
            Some("20260702T000000Z-exec-1")
        );
        assert_eq!(execution_of(&folder, &direct), None);
    }
}
