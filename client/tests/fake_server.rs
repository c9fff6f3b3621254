//! The client and the CLI against an in-process fake of the service: paging over real
//! gRPC, deadlines, error codes, and the binary's output and exit status.
//!
//! The fake answers from canned data; tests against the real server belong to
//! `server/tests/`.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use bedrock_attribution_client::cli::{self, Cli};
use bedrock_attribution_client::proto::attribution_service_server::{
    AttributionService, AttributionServiceServer,
};
use bedrock_attribution_client::{Client, proto};
use clap::Parser as _;
use tonic::{Request, Response, Status};

struct Fake;

fn money(exact: &str) -> Option<proto::Money> {
    Some(proto::Money {
        currency_code: "USD".to_owned(),
        exact: exact.to_owned(),
        ..Default::default()
    })
}

fn model_row(model: &str, exact: &str) -> proto::Row {
    proto::Row {
        model: model.to_owned(),
        cost: money(exact),
        tokens: Some(proto::Tokens {
            input: 10,
            output: 1,
            ..Default::default()
        }),
        line_items: 1,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl AttributionService for Fake {
    async fn cost_by_principal(
        &self,
        _request: Request<proto::CostByPrincipalRequest>,
    ) -> Result<Response<proto::CostByPrincipalResponse>, Status> {
        // Slower than any deadline the tests set.
        tokio::time::sleep(Duration::from_secs(30)).await;
        Err(Status::internal("too late"))
    }

    async fn cost_by_tag(
        &self,
        request: Request<proto::CostByTagRequest>,
    ) -> Result<Response<proto::CostByTagResponse>, Status> {
        Err(Status::not_found(format!(
            "tag key {:?} not seen in the range",
            request.get_ref().tag_key
        )))
    }

    /// Three rows over two pages of two; totals on every page.
    async fn token_usage(
        &self,
        request: Request<proto::TokenUsageRequest>,
    ) -> Result<Response<proto::TokenUsageResponse>, Status> {
        let request = request.into_inner();
        if request.page_size != 2 {
            return Err(Status::invalid_argument("the tests ask for pages of 2"));
        }
        let (rows, next) = match request.page_token.as_str() {
            "" => (
                vec![
                    model_row("claude", "2.5000000000"),
                    model_row("nova", "1.0000000000"),
                ],
                "page-2",
            ),
            "page-2" => (vec![model_row("", "0.2500000000")], ""),
            other => {
                return Err(Status::invalid_argument(format!(
                    "bad page token {other:?}"
                )));
            }
        };
        Ok(Response::new(proto::TokenUsageResponse {
            rows,
            next_page_token: next.to_owned(),
            totals: vec![money("3.7500000000").unwrap_or_default()],
            total_tokens: Some(proto::Tokens {
                input: 30,
                output: 3,
                ..Default::default()
            }),
            info: Some(proto::AnswerInfo {
                snapshot_version: 4,
                notes: vec!["a note".to_owned()],
            }),
            total_cache_read_savings: Vec::new(),
        }))
    }

    async fn list_principals(
        &self,
        _request: Request<proto::ListPrincipalsRequest>,
    ) -> Result<Response<proto::ListPrincipalsResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn list_tag_keys(
        &self,
        _request: Request<proto::ListTagKeysRequest>,
    ) -> Result<Response<proto::ListTagKeysResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn list_models(
        &self,
        request: Request<proto::ListModelsRequest>,
    ) -> Result<Response<proto::ListModelsResponse>, Status> {
        let token = request.into_inner().page_token;
        let (model, next) = match token.as_str() {
            "" => ("a", "1"),
            "1" => ("b", "2"),
            _ => ("c", ""),
        };
        Ok(Response::new(proto::ListModelsResponse {
            models: vec![proto::ModelSummary {
                model: model.to_owned(),
                ..Default::default()
            }],
            next_page_token: next.to_owned(),
            info: None,
        }))
    }

    async fn data_status(
        &self,
        _request: Request<proto::DataStatusRequest>,
    ) -> Result<Response<proto::DataStatusResponse>, Status> {
        Ok(Response::new(proto::DataStatusResponse {
            sources: vec!["s3://cur/bedrock".to_owned()],
            snapshot_version: 4,
            total_line_items: 12,
            ..Default::default()
        }))
    }

    async fn refresh(
        &self,
        _request: Request<proto::RefreshRequest>,
    ) -> Result<Response<proto::RefreshResponse>, Status> {
        Err(Status::permission_denied("refresh is disabled"))
    }

    async fn create_budget(
        &self,
        _request: Request<proto::CreateBudgetRequest>,
    ) -> Result<Response<proto::CreateBudgetResponse>, Status> {
        Err(Status::unimplemented("the fake keeps no budgets"))
    }

    async fn list_budgets(
        &self,
        _request: Request<proto::ListBudgetsRequest>,
    ) -> Result<Response<proto::ListBudgetsResponse>, Status> {
        Err(Status::unimplemented("the fake keeps no budgets"))
    }

    async fn delete_budget(
        &self,
        _request: Request<proto::DeleteBudgetRequest>,
    ) -> Result<Response<proto::DeleteBudgetResponse>, Status> {
        Err(Status::unimplemented("the fake keeps no budgets"))
    }

    async fn budget_status(
        &self,
        _request: Request<proto::BudgetStatusRequest>,
    ) -> Result<Response<proto::BudgetStatusResponse>, Status> {
        Err(Status::unimplemented("the fake keeps no budgets"))
    }

    async fn spend_anomalies(
        &self,
        _request: Request<proto::SpendAnomaliesRequest>,
    ) -> Result<Response<proto::SpendAnomaliesResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    type WatchBudgetsStream =
        tonic::codegen::tokio_stream::Empty<Result<proto::BudgetEvent, Status>>;

    async fn watch_budgets(
        &self,
        _request: Request<proto::WatchBudgetsRequest>,
    ) -> Result<Response<Self::WatchBudgetsStream>, Status> {
        Err(Status::unimplemented("the fake keeps no budgets"))
    }
}

/// Serves the fake on an ephemeral port until the returned sender is dropped.
async fn serve() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AttributionServiceServer::new(Fake))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    (format!("http://{addr}"), stop)
}

/// Serves the fake behind an interceptor that wants `authorization: Bearer <token>`,
/// as the real server's auth layer does.
async fn serve_with_token(token: &'static str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let check = move |request: Request<()>| {
        let expected = format!("Bearer {token}");
        match request.metadata().get("authorization") {
            Some(value) if value.to_str().ok() == Some(expected.as_str()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong token")),
            None => Err(Status::unauthenticated("no authorization header")),
        }
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AttributionServiceServer::with_interceptor(Fake, check))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    (format!("http://{addr}"), stop)
}

fn range() -> Option<proto::TimeRange> {
    let start = bedrock_attribution_client::parse_datetime("2026-07-01").expect("date");
    let end = bedrock_attribution_client::parse_datetime("2026-08-01").expect("date");
    Some(bedrock_attribution_client::time_range(start, end))
}

#[tokio::test]
async fn follows_pages_over_grpc() {
    let (url, _stop) = serve().await;
    // Without a scheme, the client assumes plain http.
    let bare = url.trim_start_matches("http://").to_owned();
    let client = Client::connect(bare).await.expect("connect");
    let all = client
        .token_usage_all(proto::TokenUsageRequest {
            time_range: range(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("token usage");
    let models: Vec<_> = all.rows.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(models, ["claude", "nova", ""]);
    assert_eq!(all.totals.len(), 1);
    assert_eq!(all.info.map(|i| i.snapshot_version), Some(4));

    let models = client
        .list_models_all(proto::ListModelsRequest::default())
        .await
        .expect("list models");
    let names: Vec<_> = models.models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(models.next_page_token.is_empty());
}

#[tokio::test]
async fn keeps_server_codes_and_deadlines() {
    let (url, _stop) = serve().await;
    let client = Client::builder(url)
        .request_timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("connect");
    let err = client
        .cost_by_tag(proto::CostByTagRequest {
            tag_key: "team".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("not found");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        err.to_string(),
        "NOT_FOUND: tag key \"team\" not seen in the range"
    );

    let err = client
        .cost_by_principal_all(proto::CostByPrincipalRequest::default())
        .await
        .expect_err("too slow");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
}

#[tokio::test]
async fn connect_failures_are_unavailable() {
    // Port 1 on loopback: nothing listens there in a test environment.
    let err = Client::connect("http://127.0.0.1:1")
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let err = Client::connect("not a url").await.expect_err("invalid");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn cli_prints_csv_of_all_pages() {
    let (url, _stop) = serve().await;
    let cli = Cli::try_parse_from([
        "bedrock-attribution",
        "--server",
        &url,
        "--format",
        "csv",
        "token-usage",
        "--from",
        "2026-07-01",
        "--to",
        "2026-08-01",
        "--group-by",
        "model",
        "--page-size",
        "2",
    ])
    .expect("args");
    let mut out = Vec::new();
    cli::run(&cli, &mut out).await.expect("run");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "model,cost,currency,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,line_items,cost_per_million_tokens\n\
         claude,2.5000000000,USD,10,1,0,0,1,\n\
         nova,1.0000000000,USD,10,1,0,0,1,\n\
         ,0.2500000000,USD,10,1,0,0,1,\n"
    );
}

/// Runs the built binary with `args`.
async fn binary(args: &[&str]) -> Output {
    binary_with_env(args, &[]).await
}

/// Runs the built binary with `args` and the environment variables `env`.
async fn binary_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bedrock-attribution"));
    command
        .args(args)
        .env_remove("BEDROCK_ATTRIBUTION_SERVER")
        .env_remove("BEDROCK_ATTRIBUTION_TOKEN")
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exit_status_and_messages() {
    let (url, _stop) = serve().await;

    let ok = binary(&["--server", &url, "status"]).await;
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).starts_with("snapshot version: 4\n"));

    let denied = binary(&["--server", &url, "refresh"]).await;
    assert_eq!(denied.status.code(), Some(2));
    assert_eq!(
        text(&denied.stderr),
        "error: PERMISSION_DENIED: refresh is disabled\n"
    );

    let refused = binary(&["--server", "http://127.0.0.1:1", "status"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr)
            .starts_with("error: UNAVAILABLE: cannot connect to http://127.0.0.1:1: "),
        "{}",
        text(&refused.stderr)
    );

    let usage = binary(&["cost-by-tag", "--from", "2026-07-01"]).await;
    assert_eq!(usage.status.code(), Some(1));
    let help = binary(&["--help"]).await;
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("BEDROCK_ATTRIBUTION_SERVER"));
}

#[tokio::test]
async fn client_sends_the_bearer_token() {
    let (url, _stop) = serve_with_token("s3cret-token").await;
    let client = Client::builder(url.clone())
        .bearer_token("s3cret-token")
        .build()
        .await
        .expect("connect");
    let status = client
        .data_status(proto::DataStatusRequest {})
        .await
        .expect("authenticated");
    assert_eq!(status.snapshot_version, 4);
    // The raw stub carries the same credentials.
    let raw = client
        .raw()
        .data_status(proto::DataStatusRequest {})
        .await
        .expect("raw call authenticated");
    assert_eq!(raw.into_inner().snapshot_version, 4);

    let anonymous = Client::connect(url.clone()).await.expect("connect");
    let err = anonymous
        .data_status(proto::DataStatusRequest {})
        .await
        .expect_err("no token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let wrong = Client::builder(url)
        .bearer_token("other")
        .build()
        .await
        .expect("connect");
    let err = wrong
        .data_status(proto::DataStatusRequest {})
        .await
        .expect_err("wrong token");
    assert_eq!(err.to_string(), "UNAUTHENTICATED: wrong token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_reads_the_token_from_the_environment() {
    let (url, _stop) = serve_with_token("s3cret-token").await;
    let ok = binary_with_env(
        &["--server", &url, "status"],
        &[("BEDROCK_ATTRIBUTION_TOKEN", "s3cret-token")],
    )
    .await;
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).starts_with("snapshot version: 4\n"));

    let missing = binary(&["--server", &url, "status"]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        text(&missing.stderr),
        "error: UNAUTHENTICATED: no authorization header\n"
    );

    let wrong = binary_with_env(
        &["--server", &url, "status"],
        &[("BEDROCK_ATTRIBUTION_TOKEN", "not-the-token")],
    )
    .await;
    assert_eq!(wrong.status.code(), Some(2));
    assert!(!text(&wrong.stderr).contains("not-the-token"));

    // Never from the command line.
    let flag = binary(&["--server", &url, "--token", "s3cret-token", "status"]).await;
    assert_eq!(flag.status.code(), Some(1));
    let help = binary(&["--help"]).await;
    assert!(text(&help.stdout).contains("BEDROCK_ATTRIBUTION_TOKEN"));
    assert!(text(&help.stdout).contains("BEDROCK_ATTRIBUTION_CA_FILE"));
}
