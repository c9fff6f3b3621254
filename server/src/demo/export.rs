//! Laying out an export folder as AWS Data Exports writes it.

use std::path::{Path, PathBuf};

use super::cur_file::{CurLineItem, SchemaOptions};

/// How one billing period is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeriodLayout {
    /// Overwrite mode: chunks directly in the period folder and a manifest naming them.
    /// `leftover_empty_chunks` more chunks follow, emptied, as when a refresh needed
    /// fewer chunks than the one before; the manifest does not name them.
    Overwrite {
        /// Empty chunks left behind after the listed ones.
        leftover_empty_chunks: usize,
    },
    /// Create-new mode: chunks under `<execution>/` and the manifest copied to
    /// `metadata/`. Writing a second execution later makes it the newest.
    CreateNew {
        /// Folder name, `<timestamp>-<execution-id>`.
        execution: String,
    },
    /// Chunks directly in the period folder and no manifest at all.
    NoManifest,
}

/// Writes periods of one export under `root` (the folder holding `data/` and `metadata/`).
#[derive(Debug, Clone)]
pub struct ExportWriter {
    root: PathBuf,
    name: String,
    s3_root: String,
}

impl ExportWriter {
    /// An export named `name` at `root`; manifests will name files under `s3_root`
    /// (e.g. `s3://acme-billing/cur2/acme-cur2`), as if the folder were a copy of a bucket.
    pub fn new(root: impl Into<PathBuf>, name: &str, s3_root: &str) -> Self {
        Self {
            root: root.into(),
            name: name.to_owned(),
            s3_root: s3_root.trim_end_matches('/').to_owned(),
        }
    }

    /// The export root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes one billing period (`YYYY-MM`) as `chunks`, returning the data files written.
    pub fn write_period(
        &self,
        period: &str,
        chunks: &[Vec<CurLineItem>],
        layout: &PeriodLayout,
        schema: SchemaOptions,
    ) -> std::io::Result<Vec<PathBuf>> {
        let partition = format!("BILLING_PERIOD={period}");
        let data_rel = match layout {
            PeriodLayout::CreateNew { execution } => format!("data/{partition}/{execution}"),
            _ => format!("data/{partition}"),
        };
        let mut listed = Vec::new();
        let mut written = Vec::new();
        for (index, items) in chunks.iter().enumerate() {
            let file = format!("{}-{:05}.snappy.parquet", self.name, index + 1);
            let path = self.root.join(&data_rel).join(&file);
            schema.write_parquet(&path, items)?;
            listed.push(format!("{}/{data_rel}/{file}", self.s3_root));
            written.push(path);
        }
        if let PeriodLayout::Overwrite {
            leftover_empty_chunks,
        } = layout
        {
            for extra in 0..*leftover_empty_chunks {
                let file = format!(
                    "{}-{:05}.snappy.parquet",
                    self.name,
                    chunks.len() + extra + 1
                );
                schema.write_parquet(&self.root.join(&data_rel).join(file), &[])?;
            }
        }
        if *layout != PeriodLayout::NoManifest {
            let manifest = serde_json::json!({
                "assemblyId": format!("{}-{period}", self.name),
                "billingPeriod": { "start": format!("{period}-01T00:00:00Z") },
                "bucket": self.s3_root,
                "reportName": self.name,
                "dataFiles": listed,
            });
            let dir = self.root.join("metadata").join(&partition);
            std::fs::create_dir_all(&dir)?;
            let body = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
            std::fs::write(dir.join(format!("{}-Manifest.json", self.name)), body)?;
        }
        Ok(written)
    }
}
