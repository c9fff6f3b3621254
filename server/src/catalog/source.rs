//! Export roots in object storage: one store per bucket, built once.

use std::{fmt, sync::Arc};

use object_store::{ObjectStore, aws::AmazonS3Builder, local::LocalFileSystem, path::Path};
use url::Url;

use crate::error::Error;

/// An export root: the folder (prefix) holding `data/` and `metadata/`.
#[derive(Clone)]
pub struct Source {
    url: Url,
    store: Arc<dyn ObjectStore>,
    store_base: String,
    root: Path,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl Source {
    /// Parses an export root URL (`file:///path`, `s3://bucket/prefix`) and builds its
    /// store. S3 reads the standard AWS environment (credentials, region,
    /// `AWS_ENDPOINT_URL`, web identity).
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidConfig { reason };
        let url = Url::parse(raw.trim_end_matches('/')).map_err(|e| {
            invalid(format!(
                "source {raw:?} is not a URL ({e}); use file:///path or s3://bucket/prefix"
            ))
        })?;
        let (store, store_base, root): (Arc<dyn ObjectStore>, String, Path) = match url.scheme() {
            "file" => {
                let root = Path::from_url_path(url.path())
                    .map_err(|e| invalid(format!("source {raw:?} has an invalid path: {e}")))?;
                (
                    Arc::new(LocalFileSystem::new()),
                    "file:///".to_owned(),
                    root,
                )
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .ok_or_else(|| invalid(format!("source {raw:?} names no bucket")))?;
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| invalid(format!("cannot configure S3 for {raw:?}: {e}")))?;
                let root = Path::from_url_path(url.path())
                    .map_err(|e| invalid(format!("source {raw:?} has an invalid path: {e}")))?;
                (Arc::new(store), format!("s3://{bucket}/"), root)
            }
            other => {
                return Err(invalid(format!(
                    "source {raw:?} has unsupported scheme {other:?}; use file:// or s3://"
                )));
            }
        };
        Ok(Self {
            url,
            store,
            store_base,
            root,
        })
    }

    /// The root URL as configured (without a trailing slash).
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The store holding the export.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `scheme://bucket/` of the store, as DataFusion's object store registry keys it.
    pub fn store_url(&self) -> Url {
        // Both forms are built above from a parsed URL, so they parse again.
        Url::parse(&self.store_base).unwrap_or_else(|_| self.url.clone())
    }

    /// The root prefix inside the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path below the root.
    pub fn child(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    /// The URL DataFusion reads an object at.
    pub fn object_url(&self, location: &Path) -> String {
        format!("{}{}", self.store_base, location)
    }
}
