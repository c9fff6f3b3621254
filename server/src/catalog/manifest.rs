//! Reading Data Exports manifests: the list of the current version's data files.

/// Whether `name` is a data file of an export: parquet, or the CSV form (`.csv.gz`, or
/// `.csv` when copied uncompressed).
pub fn is_data_file(name: &str) -> bool {
    name.ends_with(".parquet") || crate::load::csv::is_csv(name)
}

/// Data-file URIs named by a manifest. AWS does not document the field names, so the
/// list is the string array whose entries are data-file URIs (parquet or CSV), wherever
/// it sits.
pub fn data_files(manifest: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    collect(manifest, &mut found);
    found
}

fn collect(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Array(items) => {
            let uris: Vec<&str> = items.iter().filter_map(|v| v.as_str()).collect();
            if !uris.is_empty() && uris.len() == items.len() && uris.iter().all(|u| is_data_file(u))
            {
                found.extend(uris.into_iter().map(str::to_owned));
            } else {
                items.iter().for_each(|v| collect(v, found));
            }
        }
        serde_json::Value::Object(map) => map.values().for_each(|v| collect(v, found)),
        _ => {}
    }
}

/// The part of a data-file URI below the export root (`data/BILLING_PERIOD=.../x.parquet`),
/// so that an export copied to another bucket or a local folder still resolves.
pub fn relative_to_root(uri: &str) -> Option<&str> {
    uri.find("data/BILLING_PERIOD=").map(|at| &uri[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_file_list_wherever_it_is() {
        let m = serde_json::json!({
            "columns": [{"name": "a"}],
            "reportKeys": ["not-a-parquet"],
            "dataFiles": [
                "s3://b/p/e/data/BILLING_PERIOD=2026-05/e-00001.snappy.parquet",
                "s3://b/p/e/data/BILLING_PERIOD=2026-05/e-00002.snappy.parquet"
            ]
        });
        assert_eq!(data_files(&m).len(), 2);
        let nested =
            serde_json::json!({"x": {"files": ["s3://b/data/BILLING_PERIOD=2026-01/f.parquet"]}});
        assert_eq!(
            data_files(&nested),
            ["s3://b/data/BILLING_PERIOD=2026-01/f.parquet"]
        );
        assert!(data_files(&serde_json::json!({"dataFiles": []})).is_empty());
    }

    #[test]
    fn maps_uris_below_the_root() {
        assert_eq!(
            relative_to_root(
                "s3://acme/cur2/acme-cur2/data/BILLING_PERIOD=2026-05/acme-cur2-00001.snappy.parquet"
            ),
            Some("data/BILLING_PERIOD=2026-05/acme-cur2-00001.snappy.parquet")
        );
        assert_eq!(relative_to_root("s3://acme/elsewhere/file.parquet"), None);
    }
}
