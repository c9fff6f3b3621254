//! The Data Exports manifest reader.

use proptest::prelude::*;
use serde_json::Value;

use super::hostile_string;
use crate::catalog::manifest::{data_files, relative_to_root};

/// Any JSON document a few levels deep, with parquet-looking strings among the leaves.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        hostile_string().prop_map(Value::String),
        "[a-z/=0-9-]{0,20}\\.parquet".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn uri() -> impl Strategy<Value = String> {
    (
        "[a-z0-9-]{1,12}",
        "20[0-9]{2}-(0[1-9]|1[0-2])",
        "[a-z0-9-]{1,12}",
    )
        .prop_map(|(bucket, period, file)| {
            format!("s3://{bucket}/exp/data/BILLING_PERIOD={period}/{file}.snappy.parquet")
        })
}

proptest! {
    #[test]
    fn any_document_yields_only_parquet_uris(doc in json()) {
        for f in data_files(&doc) {
            prop_assert!(f.ends_with(".parquet"), "{f}");
        }
    }

    #[test]
    fn the_file_list_is_found_at_any_depth(
        uris in proptest::collection::vec(uri(), 1..8),
        path in proptest::collection::vec("[a-zA-Z]{1,8}", 0..4),
        noise in proptest::collection::vec(hostile_string(), 0..4),
    ) {
        let mut doc = Value::Array(uris.iter().cloned().map(Value::String).collect());
        for key in path.iter().rev() {
            let mut map = serde_json::Map::new();
            map.insert(key.clone(), doc);
            // Strings that are not parquet URIs beside the list never join it.
            map.insert("~noise".to_owned(), Value::Array(noise.iter().cloned().map(Value::String).collect()));
            doc = Value::Object(map);
        }
        let found = data_files(&doc);
        let extra = found.iter().filter(|f| !uris.contains(f)).count();
        prop_assert!(found.len() >= uris.len());
        // Only noise that happens to be an all-parquet list can add entries.
        prop_assert_eq!(found.len() - extra, uris.len());
        for u in &uris {
            let rel = relative_to_root(u);
            prop_assert!(rel.is_some_and(|r| r.starts_with("data/BILLING_PERIOD=") && u.ends_with(r)));
        }
    }

    #[test]
    fn relative_paths_are_suffixes_below_the_root(s in hostile_string()) {
        if let Some(rel) = relative_to_root(&s) {
            prop_assert!(rel.starts_with("data/BILLING_PERIOD="));
            prop_assert!(s.ends_with(rel));
        } else {
            prop_assert!(!s.contains("data/BILLING_PERIOD="));
        }
    }
}
