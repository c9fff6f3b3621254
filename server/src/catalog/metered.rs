//! Counting what the object stores do, for the Prometheus endpoint: every store
//! operation and its failures ([`MeteredStore`], wrapped around each store of the
//! registry, so DataFusion's reads count too), and, for cloud stores, every HTTP attempt
//! with its status class and the failures object_store retries ([`MeteredConnector`],
//! the HTTP client under its retry loop). Labels are the store's `scheme://bucket/`.

use std::{fmt, ops::Range, sync::Arc};

use futures::StreamExt;
use metrics::counter;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    client::{
        ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
        HttpResponse, HttpService, ReqwestConnector,
    },
    path::Path,
};

use crate::telemetry::metrics::{
    STORE_ERRORS, STORE_HTTP_REQUESTS, STORE_REQUESTS, STORE_RETRYABLE_ERRORS,
};

type BoxStream<T> = futures::stream::BoxStream<'static, T>;
use hyper::body::Bytes;

/// A store whose operations are counted under `store`.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    store: Arc<str>,
}

impl MeteredStore {
    /// Counts the operations of `inner` under the label `store`.
    pub fn new(inner: Arc<dyn ObjectStore>, store: &str) -> Self {
        Self {
            inner,
            store: store.into(),
        }
    }

    fn count<T>(&self, operation: &'static str, result: Result<T>) -> Result<T> {
        counter!(STORE_REQUESTS, "store" => self.store.to_string(), "operation" => operation)
            .increment(1);
        if let Err(e) = &result {
            count_error(&self.store, operation, e);
        }
        result
    }

    /// Counts a listing once, and its failure when one of its pages fails.
    fn count_stream(
        &self,
        operation: &'static str,
        stream: BoxStream<Result<ObjectMeta>>,
    ) -> BoxStream<Result<ObjectMeta>> {
        counter!(STORE_REQUESTS, "store" => self.store.to_string(), "operation" => operation)
            .increment(1);
        let store = self.store.clone();
        stream
            .inspect(move |item| {
                if let Err(e) = item {
                    count_error(&store, operation, e);
                }
            })
            .boxed()
    }
}

fn count_error(store: &str, operation: &'static str, error: &object_store::Error) {
    counter!(
        STORE_ERRORS,
        "store" => store.to_string(),
        "operation" => operation,
        "kind" => error_kind(error)
    )
    .increment(1);
}

/// A bounded name for an object_store error.
fn error_kind(error: &object_store::Error) -> &'static str {
    use object_store::Error as E;
    match error {
        E::NotFound { .. } => "not_found",
        E::AlreadyExists { .. } => "already_exists",
        E::Precondition { .. } => "precondition",
        E::NotModified { .. } => "not_modified",
        E::PermissionDenied { .. } => "permission_denied",
        E::Unauthenticated { .. } => "unauthenticated",
        E::NotSupported { .. } | E::NotImplemented { .. } => "not_supported",
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => "invalid",
        _ => "other",
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The wrapped store's name (tests and logs read it).
        self.inner.fmt(f)
    }
}

#[tonic::async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.count("put", self.inner.put_opts(location, payload, opts).await)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.count(
            "put_multipart",
            self.inner.put_multipart_opts(location, opts).await,
        )
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = if options.head { "head" } else { "get" };
        self.count(operation, self.inner.get_opts(location, options).await)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.count("get_ranges", self.inner.get_ranges(location, ranges).await)
    }

    fn delete_stream(&self, locations: BoxStream<Result<Path>>) -> BoxStream<Result<Path>> {
        counter!(STORE_REQUESTS, "store" => self.store.to_string(), "operation" => "delete")
            .increment(1);
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<Result<ObjectMeta>> {
        self.count_stream("list", self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<Result<ObjectMeta>> {
        self.count_stream("list", self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.count(
            "list_with_delimiter",
            self.inner.list_with_delimiter(prefix).await,
        )
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.count("copy", self.inner.copy_opts(from, to, options).await)
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.count("rename", self.inner.rename_opts(from, to, options).await)
    }
}

/// object_store's default HTTP client, with every attempt counted under `store`.
#[derive(Debug)]
pub struct MeteredConnector {
    store: Arc<str>,
}

impl MeteredConnector {
    /// Counts the HTTP attempts of a store under the label `store`.
    pub fn new(store: &str) -> Self {
        Self {
            store: store.into(),
        }
    }
}

impl HttpConnector for MeteredConnector {
    fn connect(&self, options: &ClientOptions) -> Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(MeteredHttp {
            inner,
            store: self.store.clone(),
        }))
    }
}

#[derive(Debug)]
struct MeteredHttp {
    inner: HttpClient,
    store: Arc<str>,
}

#[tonic::async_trait]
impl HttpService for MeteredHttp {
    async fn call(&self, request: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let result = self.inner.execute(request).await;
        let (status, retryable) = match &result {
            Ok(r) => {
                let s = r.status();
                let class = match s.as_u16() {
                    100..=199 => "1xx",
                    200..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                };
                // The statuses object_store's retry loop retries.
                let retryable = s.is_server_error()
                    || s == http::StatusCode::TOO_MANY_REQUESTS
                    || s == http::StatusCode::REQUEST_TIMEOUT;
                (class, retryable)
            }
            Err(e) => (
                "transport_error",
                // Connection and send errors always; timeouts and interruptions for
                // idempotent requests (reads are), as object_store decides.
                matches!(
                    e.kind(),
                    HttpErrorKind::Connect
                        | HttpErrorKind::Request
                        | HttpErrorKind::Timeout
                        | HttpErrorKind::Interrupted
                ),
            ),
        };
        counter!(STORE_HTTP_REQUESTS, "store" => self.store.to_string(), "status" => status)
            .increment(1);
        if retryable {
            counter!(STORE_RETRYABLE_ERRORS, "store" => self.store.to_string()).increment(1);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, memory::InMemory};

    #[tokio::test]
    async fn a_metered_store_answers_as_the_store_it_wraps() {
        let store = MeteredStore::new(Arc::new(InMemory::new()), "memory:///");
        let path = Path::from("a/b.parquet");
        store
            .put(&path, PutPayload::from_static(b"abc"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = store.get(&path).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.bytes().await.ok().as_deref(), Some(&b"abc"[..]));
        assert_eq!(
            store.head(&path).await.map(|m| m.size).ok(),
            Some(3),
            "head goes through get_opts"
        );
        let listed: Vec<_> = store.list(None).collect().await;
        assert_eq!(listed.len(), 1);
        let missing = store.head(&Path::from("nope")).await;
        assert!(
            matches!(&missing, Err(e) if error_kind(e) == "not_found"),
            "{missing:?}"
        );
        assert_eq!(store.to_string(), InMemory::new().to_string());
    }
}
