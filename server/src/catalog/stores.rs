//! One object store per bucket, built once, with the configured timeouts, retries with
//! backoff and cap on concurrent requests, and registered with DataFusion's runtime so
//! that reads of `scheme://bucket/...` URLs go through the same client. Every store is
//! counted for the metrics endpoint ([`super::metered`]).

use std::{
    collections::BTreeMap,
    str::FromStr,
    sync::{Arc, Mutex},
};

use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    azure::{AzureConfigKey, MicrosoftAzureBuilder},
    gcp::{GoogleCloudStorageBuilder, GoogleConfigKey},
    limit::LimitStore,
    local::LocalFileSystem,
};
use url::Url;

use super::metered::{MeteredConnector, MeteredStore};
use crate::{config::StoreConfig, error::Error};

/// URL schemes served, for messages.
pub const SCHEMES: &str = "file://, s3://, gs:// or az://";

/// The stores of the process, keyed by `scheme://bucket/`.
pub struct StoreRegistry {
    config: StoreConfig,
    stores: Mutex<BTreeMap<String, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for StoreRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .stores
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("StoreRegistry")
            .field("stores", &keys)
            .finish_non_exhaustive()
    }
}

/// Which cloud builder a `--store-option` key belongs to.
fn known_key(key: &str) -> bool {
    AmazonS3ConfigKey::from_str(key).is_ok()
        || GoogleConfigKey::from_str(key).is_ok()
        || AzureConfigKey::from_str(key).is_ok()
}

fn millis(d: std::time::Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl StoreRegistry {
    /// A registry building stores with `config`; rejects `--store-option` keys that no
    /// object_store builder knows.
    pub fn new(config: StoreConfig) -> Result<Self, Error> {
        if let Some(bad) = config.store_options.iter().find(|o| !known_key(&o.key)) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "--store-option {:?} is not an object_store setting; use keys such as aws_endpoint, aws_region, google_service_account or azure_storage_account_name",
                    bad.key
                ),
            });
        }
        Ok(Self {
            config,
            stores: Mutex::new(BTreeMap::new()),
        })
    }

    /// The store serving `url` and its key `scheme://bucket/`, built on first use.
    pub fn store_for(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, String), Error> {
        let key = store_key(url)?;
        let mut stores = self.stores.lock().map_err(|_| Error::InvalidConfig {
            reason: "the store registry lock is poisoned".into(),
        })?;
        if let Some(store) = stores.get(&key) {
            return Ok((store.clone(), key));
        }
        let store: Arc<dyn ObjectStore> = Arc::new(MeteredStore::new(self.build(url, &key)?, &key));
        stores.insert(key.clone(), store.clone());
        Ok((store, key))
    }

    /// Uses `store` for every URL below `base` (`scheme://bucket/`), e.g. a wrapped or
    /// in-memory store when embedding the service.
    pub fn insert(&self, base: &Url, store: Arc<dyn ObjectStore>) -> Result<(), Error> {
        let key = store_key(base)?;
        let store = Arc::new(MeteredStore::new(store, &key));
        if let Ok(mut stores) = self.stores.lock() {
            stores.insert(key, store);
        }
        Ok(())
    }

    /// Registers every store with DataFusion's runtime.
    pub fn register(&self, runtime: &RuntimeEnv) {
        let Ok(stores) = self.stores.lock() else {
            return;
        };
        for (key, store) in stores.iter() {
            if let Ok(url) = Url::parse(key) {
                runtime.register_object_store(&url, store.clone());
            }
        }
    }

    /// Keys of the stores built so far.
    pub fn keys(&self) -> Vec<String> {
        self.stores
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn retry(&self) -> RetryConfig {
        let c = &self.config;
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: c.store_backoff_initial,
                max_backoff: c.store_backoff_max,
                base: c.store_backoff_base,
            },
            max_retries: c.store_max_retries,
            retry_timeout: c.store_retry_timeout,
        }
    }

    /// Settings applied to every cloud builder: timeouts from the flags, then the
    /// `--store-option`s the builder knows (so that an option wins over a flag).
    fn settings<K: FromStr>(&self, client: fn(ClientConfigKey) -> K) -> Vec<(K, String)> {
        let mut out = vec![
            (
                client(ClientConfigKey::Timeout),
                millis(self.config.store_request_timeout),
            ),
            (
                client(ClientConfigKey::ConnectTimeout),
                millis(self.config.store_connect_timeout),
            ),
        ];
        out.extend(
            self.config
                .store_options
                .iter()
                .filter_map(|o| Some((K::from_str(&o.key).ok()?, o.value.clone()))),
        );
        out
    }

    fn limit<T: ObjectStore>(&self, store: T) -> Arc<dyn ObjectStore> {
        Arc::new(LimitStore::new(
            store,
            self.config.store_max_concurrent_requests as usize,
        ))
    }

    fn build(&self, url: &Url, key: &str) -> Result<Arc<dyn ObjectStore>, Error> {
        let invalid = |e: object_store::Error| Error::InvalidConfig {
            reason: format!("cannot configure the store for {key}: {e}"),
        };
        let bucket_url = key.trim_end_matches('/');
        match url.scheme() {
            "file" => Ok(Arc::new(LocalFileSystem::new())),
            "s3" | "s3a" => {
                let mut b =
                    super::aws_profile::apply(AmazonS3Builder::from_env()).with_url(bucket_url);
                for (k, v) in self.settings(AmazonS3ConfigKey::Client) {
                    b = b.with_config(k, v);
                }
                // S3-compatible stores on plain http (MinIO, LocalStack, tests).
                if b.get_config_value(&AmazonS3ConfigKey::Endpoint)
                    .is_some_and(|e| e.starts_with("http://"))
                {
                    b = b.with_allow_http(true);
                }
                let store = b
                    .with_retry(self.retry())
                    .with_http_connector(MeteredConnector::new(key))
                    .build()
                    .map_err(invalid)?;
                Ok(self.limit(store))
            }
            "gs" => {
                let mut b = GoogleCloudStorageBuilder::from_env().with_url(bucket_url);
                for (k, v) in self.settings(GoogleConfigKey::Client) {
                    b = b.with_config(k, v);
                }
                let store = b
                    .with_retry(self.retry())
                    .with_http_connector(MeteredConnector::new(key))
                    .build()
                    .map_err(invalid)?;
                Ok(self.limit(store))
            }
            "az" => {
                let mut b = MicrosoftAzureBuilder::from_env().with_url(bucket_url);
                for (k, v) in self.settings(AzureConfigKey::Client) {
                    b = b.with_config(k, v);
                }
                if b.get_config_value(&AzureConfigKey::Endpoint)
                    .is_some_and(|e| e.starts_with("http://"))
                {
                    b = b.with_allow_http(true);
                }
                let store = b
                    .with_retry(self.retry())
                    .with_http_connector(MeteredConnector::new(key))
                    .build()
                    .map_err(invalid)?;
                Ok(self.limit(store))
            }
            other => Err(Error::InvalidConfig {
                reason: format!("unsupported scheme {other:?}; use {SCHEMES}"),
            }),
        }
    }
}

/// `scheme://bucket/` of a URL (`file:///` for local paths).
pub fn store_key(url: &Url) -> Result<String, Error> {
    match url.scheme() {
        "file" => Ok("file:///".to_owned()),
        scheme => {
            let bucket =
                url.host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| Error::InvalidConfig {
                        reason: format!("{url} names no bucket; use {scheme}://bucket/prefix"),
                    })?;
            Ok(format!("{scheme}://{bucket}/"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_store_option;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn registry(options: &[&str]) -> Result<StoreRegistry, Error> {
        StoreRegistry::new(StoreConfig {
            store_options: options
                .iter()
                .map(|o| parse_store_option(o).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            ..StoreConfig::default()
        })
    }

    #[test]
    fn one_store_per_bucket() {
        let r = registry(&[
            "aws_endpoint=http://127.0.0.1:1",
            "aws_access_key_id=a",
            "aws_secret_access_key=b",
            "aws_region=us-east-1",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let (a, ka) = r
            .store_for(&url("s3://billing/cur2/payer-a"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (b, kb) = r
            .store_for(&url("s3://billing/cur2/payer-b"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (c, kc) = r
            .store_for(&url("s3://other/x"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (ka.as_str(), kb.as_str()),
            ("s3://billing/", "s3://billing/")
        );
        assert_eq!(kc, "s3://other/");
        assert!(Arc::ptr_eq(&a, &b), "the same bucket shares one client");
        assert!(!Arc::ptr_eq(&a, &c));
        let (f1, kf) = r
            .store_for(&url("file:///tmp/a"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (f2, _) = r
            .store_for(&url("file:///var/b"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kf, "file:///");
        assert!(Arc::ptr_eq(&f1, &f2));
        assert_eq!(r.keys(), ["file:///", "s3://billing/", "s3://other/"]);
        // The limit wrapper is in place for cloud stores.
        assert!(a.to_string().starts_with("LimitStore(32"), "{a}");
    }

    #[test]
    fn gcs_and_azure_build_from_urls() {
        let r = registry(&[
            "google_service_account_key={\"type\":\"service_account\",\"private_key\":\"\",\"client_email\":\"a@b\"}",
            "azure_storage_account_name=acct",
            "azure_storage_account_key=AAAA",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let (_, k) = r
            .store_for(&url("az://billing/cur2"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k, "az://billing/");
        // GCS validates the key at build time; a configuration error names the store.
        match r.store_for(&url("gs://billing/cur2")) {
            Ok((_, k)) => assert_eq!(k, "gs://billing/"),
            Err(e) => assert!(e.to_string().contains("gs://billing/"), "{e}"),
        }
    }

    #[test]
    fn bad_urls_and_options_are_rejected() {
        assert!(registry(&["nonsense_key=1"]).is_err());
        let r = registry(&[]).unwrap_or_else(|e| panic!("{e}"));
        let e = r
            .store_for(&url("ftp://host/x"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unsupported scheme \"ftp\""), "{e}");
        assert!(store_key(&url("s3:///x")).is_err());
    }
}
