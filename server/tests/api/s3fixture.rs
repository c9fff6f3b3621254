//! A real S3-protocol server in the test process (s3s over a temp folder, on an ephemeral
//! loopback port) with faults injected between it and the service under test: 503
//! SlowDown answers and dropped connections on the first attempts of each request, or
//! a store that is down altogether.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use bedrock_attribution_client::Client;
use hyper::{Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, path::Path as ObjectPath,
};
use s3s::{Body, HttpError, auth::SimpleAuth, service::S3ServiceBuilder};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::common::TestServer;

/// The bucket every test export is uploaded to.
pub const BUCKET: &str = "billing";
const ACCESS_KEY: &str = "AKIATESTFIXTURE";
const SECRET_KEY: &str = "test-secret-key-for-the-loopback-s3-server";

/// What the server does to requests that read (GET and HEAD).
#[derive(Debug, Default)]
pub struct Faults {
    /// While set, every request is answered by closing the connection.
    down: AtomicBool,
    /// Per request: this many 503 SlowDown answers, then this many dropped connections.
    plan: Mutex<(usize, usize)>,
    attempts: Mutex<HashMap<String, usize>>,
    /// SlowDown answers given.
    pub slowdowns: AtomicUsize,
    /// Connections dropped.
    pub drops: AtomicUsize,
    /// Read requests that reached the S3 implementation.
    pub served: AtomicUsize,
}

enum Fault {
    SlowDown,
    Drop,
}

impl Faults {
    /// Sets whether the store is down.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// From now on, each distinct read request (method, path, list prefix and range)
    /// first gets `slowdowns` 503 SlowDown answers, then `drops` dropped connections.
    pub fn fail_first_attempts(&self, slowdowns: usize, drops: usize) {
        if let Ok(mut plan) = self.plan.lock() {
            *plan = (slowdowns, drops);
        }
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.clear();
        }
    }

    fn decide(&self, req: &hyper::Request<Incoming>) -> Option<Fault> {
        if self.down.load(Ordering::SeqCst) {
            self.drops.fetch_add(1, Ordering::SeqCst);
            return Some(Fault::Drop);
        }
        let reading = matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD);
        if !reading {
            return None;
        }
        let (slowdowns, drops) = self.plan.lock().map(|p| *p).unwrap_or_default();
        let prefix = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| kv.starts_with("prefix=") || kv.starts_with("list-type="))
            .collect::<Vec<_>>()
            .join("&");
        let range = req
            .headers()
            .get(hyper::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let key = format!("{} {} {prefix} {range}", req.method(), req.uri().path());
        let attempt = {
            let mut attempts = self.attempts.lock().ok()?;
            let n = attempts.entry(key).or_default();
            *n += 1;
            *n
        };
        if attempt <= slowdowns {
            self.slowdowns.fetch_add(1, Ordering::SeqCst);
            Some(Fault::SlowDown)
        } else if attempt <= slowdowns + drops {
            self.drops.fetch_add(1, Ordering::SeqCst);
            Some(Fault::Drop)
        } else {
            self.served.fetch_add(1, Ordering::SeqCst);
            None
        }
    }
}

/// An in-process S3 server and a client to upload with.
pub struct S3Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Faults it injects.
    pub faults: Arc<Faults>,
    /// The folder holding the buckets.
    pub dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
    task: JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Server {
    /// Starts the server on `127.0.0.1:0` with an empty bucket [`BUCKET`].
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Faults::default());
        let task_faults = faults.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                let faults = task_faults.clone();
                tokio::spawn(async move {
                    let handler = service_fn(move |req: hyper::Request<Incoming>| {
                        let service = service.clone();
                        let fault = faults.decide(&req);
                        async move {
                            match fault {
                                Some(Fault::SlowDown) => Ok(slow_down()),
                                // An error from the service makes hyper close the
                                // connection without an answer.
                                Some(Fault::Drop) => Err(HttpError::new(Box::new(
                                    std::io::Error::other("fault: connection dropped"),
                                ))),
                                None => hyper::service::Service::call(&service, req).await,
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
            }
        });
        let store = AmazonS3Builder::new()
            .with_endpoint(format!("http://{addr}"))
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap();
        Self {
            addr,
            faults,
            dir,
            store: Arc::new(store),
            task,
        }
    }

    /// `s3://billing/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{}", prefix.trim_matches('/'))
    }

    /// The object's file in the server's folder.
    pub fn file_of(&self, key: &str) -> PathBuf {
        self.dir.path().join(BUCKET).join(key)
    }

    /// Uploads `body` at `key`.
    pub async fn put(&self, key: &str, body: Vec<u8>) {
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(body))
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }

    /// Uploads every file below `local` to `prefix/<relative path>`.
    pub async fn upload_dir(&self, local: &Path, prefix: &str) {
        let mut stack = vec![local.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let relative = path.strip_prefix(local).unwrap().to_str().unwrap();
                let key = format!("{}/{relative}", prefix.trim_matches('/'));
                self.put(&key, std::fs::read(&path).unwrap()).await;
            }
        }
    }

    /// The object's metadata as the S3 API reports it.
    pub async fn head(&self, key: &str) -> object_store::ObjectMeta {
        self.store.head(&ObjectPath::from(key)).await.unwrap()
    }

    /// `--store-option` flags reaching this server, and store tuning fit for tests:
    /// few quick retries, short timeouts.
    pub fn store_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for option in [
            format!("aws_endpoint=http://{}", self.addr),
            format!("aws_access_key_id={ACCESS_KEY}"),
            format!("aws_secret_access_key={SECRET_KEY}"),
            "aws_region=us-east-1".to_owned(),
        ] {
            args.push("--store-option".to_owned());
            args.push(option);
        }
        for (flag, value) in [
            ("--store-max-retries", "3"),
            ("--store-backoff-initial", "10ms"),
            ("--store-backoff-max", "40ms"),
            ("--store-retry-timeout", "10s"),
            ("--store-request-timeout", "10s"),
            ("--store-connect-timeout", "2s"),
            ("--store-max-concurrent-requests", "8"),
        ] {
            args.push(flag.to_owned());
            args.push(value.to_owned());
        }
        args
    }
}

fn slow_down() -> Response<Body> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>fault</RequestId></Error>";
    let mut response = Response::new(Body::from(body.to_owned()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

/// Serves `sources` (any URLs) with `extra` flags on `127.0.0.1:0` and waits for the
/// first snapshot.
pub async fn serve(sources: &[String], extra: &[String]) -> TestServer {
    TestServer::serve(sources, extra).await
}

/// `file://` URL of a local export root.
pub fn file_url(root: &Path) -> String {
    format!("file://{}", root.display())
}

/// A Bedrock usage line item of `cost` USD at `start`, by `caller`, with `tags`.
pub fn bedrock_item(
    id: &str,
    account: &str,
    start: chrono::DateTime<chrono::Utc>,
    caller: Option<&str>,
    cost: f64,
    tags: &[(&str, &str)],
) -> bedrock_attribution_server::demo::CurLineItem {
    bedrock_attribution_server::demo::CurLineItem {
        principal: caller.map(str::to_owned),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..bedrock_attribution_server::demo::CurLineItem::bedrock(
            id,
            "444455556666",
            account,
            start,
            cost,
        )
    }
}

/// A UTC time.
pub fn at(y: i32, m: u32, d: u32, h: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .unwrap()
}

/// The answer info with the snapshot version blanked, so two servers compare equal.
fn without_version(
    info: Option<bedrock_attribution_client::proto::AnswerInfo>,
) -> Option<bedrock_attribution_client::proto::AnswerInfo> {
    info.map(|i| bedrock_attribution_client::proto::AnswerInfo {
        snapshot_version: 0,
        ..i
    })
}

/// Whole answers (every row, total and note) of a few grouped queries over everything,
/// as text so that answers of two servers, or of two snapshots, compare exactly (the
/// snapshot version is left out).
pub async fn suite(c: &Client) -> Vec<String> {
    use bedrock_attribution_client::proto::{self, Dimension as D, PrincipalGrouping as G};
    let all = crate::common::range("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
    vec![
        format!(
            "{:?}",
            c.token_usage_all(proto::TokenUsageRequest {
                time_range: all,
                group_by: vec![D::Principal.into(), D::Model.into()],
                granularity: proto::Granularity::Monthly.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .map(|mut a| {
                a.info = without_version(a.info);
                a
            })
            .unwrap()
        ),
        format!(
            "{:?}",
            c.cost_by_principal_all(proto::CostByPrincipalRequest {
                time_range: all,
                grouping: G::Role.into(),
                also_group_by: vec![D::Tag.into()],
                also_group_by_tag_key: "iamPrincipal/team".into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .map(|mut a| {
                a.info = without_version(a.info);
                a
            })
            .unwrap()
        ),
        format!(
            "{:?}",
            c.cost_by_tag_all(proto::CostByTagRequest {
                time_range: all,
                tag_key: "iamPrincipal/cost-center".into(),
                granularity: proto::Granularity::Daily.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .map(|mut a| {
                a.info = without_version(a.info);
                a
            })
            .unwrap()
        ),
        format!(
            "{:?}",
            c.list_models_all(proto::ListModelsRequest {
                time_range: all,
                ..Default::default()
            })
            .await
            .map(|mut a| {
                a.info = without_version(a.info);
                a
            })
            .unwrap()
        ),
        format!(
            "{:?}",
            c.list_tag_keys_all(proto::ListTagKeysRequest {
                time_range: all,
                ..Default::default()
            })
            .await
            .map(|mut a| {
                a.info = without_version(a.info);
                a
            })
            .unwrap()
        ),
    ]
}

/// Exact totals per currency of every line item starting in `[start, end)`.
pub async fn totals_in(
    c: &Client,
    start: &str,
    end: &str,
) -> Result<Vec<(String, rust_decimal::Decimal)>, bedrock_attribution_client::Error> {
    use bedrock_attribution_client::proto;
    let answer = c
        .token_usage(proto::TokenUsageRequest {
            time_range: crate::common::range(start, end),
            ..Default::default()
        })
        .await?;
    Ok(crate::common::totals(&answer.totals))
}

/// Exact totals of one billing period `YYYY-MM`.
pub async fn month_totals(
    c: &Client,
    period: &str,
) -> Result<Vec<(String, rust_decimal::Decimal)>, bedrock_attribution_client::Error> {
    let (y, m): (i32, u32) = (period[..4].parse().unwrap(), period[5..].parse().unwrap());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    totals_in(
        c,
        &format!("{y}-{m:02}-01T00:00:00Z"),
        &format!("{ny}-{nm:02}-01T00:00:00Z"),
    )
    .await
}
