//! Export roots in object storage: one store per bucket, built once.

use std::{fmt, sync::Arc};

use object_store::{ObjectStore, path::Path};
use url::Url;

use super::stores::{SCHEMES, StoreRegistry};
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

/// For a `file://` URL with a host part (`file://relative/path`, two slashes), which
/// names the host `relative` and reads `/path`: a warning saying so, else `None`.
fn ignored_host(url: &Url) -> Option<String> {
    let host = url
        .host_str()
        .filter(|h| url.scheme() == "file" && !h.is_empty() && *h != "localhost")?;
    Some(format!(
        "the host part {host:?} of a file:// URL is ignored: this source reads {path}; write file:///absolute/path (three slashes)",
        path = url.path()
    ))
}

impl Source {
    /// Parses an export root URL (`file:///path`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`) and takes its bucket's store from
    /// `stores`, building it on first use. Cloud stores read their standard environment
    /// (for S3: credentials, region, `AWS_ENDPOINT_URL`, web identity).
    pub fn parse(raw: &str, stores: &StoreRegistry) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidConfig { reason };
        let url = Url::parse(raw.trim_end_matches('/')).map_err(|e| {
            invalid(format!(
                "source {raw:?} is not a URL ({e}); use {SCHEMES}, e.g. s3://bucket/prefix/export"
            ))
        })?;
        if let Some(warning) = ignored_host(&url) {
            tracing::warn!(source = raw, "{warning}");
        }
        let root = Path::from_url_path(url.path())
            .map_err(|e| invalid(format!("source {raw:?} has an invalid path: {e}")))?;
        let (store, store_base) = stores.store_for(&url).map_err(|e| match e {
            Error::InvalidConfig { reason } => invalid(format!("source {raw:?}: {reason}")),
            other => other,
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_host_in_a_file_url_is_named() {
        let warning = ignored_host(&url("file://exports/acme-cur2")).unwrap_or_default();
        assert!(
            warning.contains("\"exports\"") && warning.contains("reads /acme-cur2"),
            "{warning}"
        );
        for fine in [
            "file:///exports/acme-cur2",
            "file://localhost/exports/acme-cur2",
            "s3://exports/acme-cur2",
        ] {
            assert_eq!(ignored_host(&url(fine)), None, "{fine}");
        }
    }
}
