//! [`Client`]: one typed async method per RPC of `bedrock.attribution.v1`.
//!
//! A thin layer over the generated tonic stub: it sets the per-request deadline,
//! turns `tonic::Status` into [`Error`], and adds `*_all` helpers that follow
//! `next_page_token` so callers never handle page tokens themselves.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::paging::collect_pages;
use crate::proto::attribution_service_client::AttributionServiceClient;
use crate::{AllRows, Error, proto};

/// How long [`ClientBuilder::build`] waits for a connection unless told otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the attribution service.
///
/// Cheap to clone: clones share one HTTP/2 channel.
#[derive(Clone, Debug)]
pub struct Client {
    inner: AttributionServiceClient<Channel>,
    request_timeout: Option<Duration>,
}

/// Options for connecting a [`Client`]; start with [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    url: String,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
}

impl ClientBuilder {
    /// How long to wait for the connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of each request, sent to the server as `grpc-timeout` and enforced
    /// locally (default: none). A missed deadline is `DEADLINE_EXCEEDED`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Connects to the server. A URL without a scheme (`host:port`) means `http://`.
    pub async fn build(self) -> Result<Client, Error> {
        let url = if self.url.contains("://") {
            self.url.clone()
        } else {
            format!("http://{}", self.url)
        };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|e| {
                Error::invalid_argument(format!("invalid server url {:?}: {e}", self.url))
            })?
            .connect_timeout(self.connect_timeout);
        let channel = endpoint.connect().await.map_err(|source| Error::Connect {
            url: self.url.clone(),
            source,
        })?;
        let mut client = Client::from_channel(channel);
        client.request_timeout = self.request_timeout;
        Ok(client)
    }
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`) with default options.
    pub async fn connect(url: impl Into<String>) -> Result<Client, Error> {
        Client::builder(url).build().await
    }

    /// Options for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: None,
        }
    }

    /// A client over an existing channel, e.g. one to an in-process test server.
    pub fn from_channel(channel: Channel) -> Client {
        Client {
            inner: AttributionServiceClient::new(channel),
            request_timeout: None,
        }
    }

    /// The same client with a different per-request deadline (`None`: no deadline).
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// The generated tonic stub, for anything this wrapper does not cover
    /// (metadata, compression...).
    pub fn raw(&self) -> AttributionServiceClient<Channel> {
        self.inner.clone()
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = self.request_timeout {
            request.set_timeout(timeout);
        }
        request
    }

    fn answer<T>(&self, result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, Error> {
        result
            .map(tonic::Response::into_inner)
            .map_err(|status| Error::from_status(status, self.request_timeout))
    }

    /// Cost grouped by the IAM principal that made the call (one page).
    pub async fn cost_by_principal(
        &self,
        request: proto::CostByPrincipalRequest,
    ) -> Result<proto::CostByPrincipalResponse, Error> {
        let result = self.raw().cost_by_principal(self.request(request)).await;
        self.answer(result)
    }

    /// Cost grouped by the value of one tag key, with an UNTAGGED row (one page).
    pub async fn cost_by_tag(
        &self,
        request: proto::CostByTagRequest,
    ) -> Result<proto::CostByTagResponse, Error> {
        let result = self.raw().cost_by_tag(self.request(request)).await;
        self.answer(result)
    }

    /// Token counts and cost grouped by any set of dimensions (one page).
    pub async fn token_usage(
        &self,
        request: proto::TokenUsageRequest,
    ) -> Result<proto::TokenUsageResponse, Error> {
        let result = self.raw().token_usage(self.request(request)).await;
        self.answer(result)
    }

    /// The principals seen in a time range, with their spend (one page).
    pub async fn list_principals(
        &self,
        request: proto::ListPrincipalsRequest,
    ) -> Result<proto::ListPrincipalsResponse, Error> {
        let result = self.raw().list_principals(self.request(request)).await;
        self.answer(result)
    }

    /// The tag keys seen in a time range (one page).
    pub async fn list_tag_keys(
        &self,
        request: proto::ListTagKeysRequest,
    ) -> Result<proto::ListTagKeysResponse, Error> {
        let result = self.raw().list_tag_keys(self.request(request)).await;
        self.answer(result)
    }

    /// The model names seen in a time range, with their spend and tokens (one page).
    pub async fn list_models(
        &self,
        request: proto::ListModelsRequest,
    ) -> Result<proto::ListModelsResponse, Error> {
        let result = self.raw().list_models(self.request(request)).await;
        self.answer(result)
    }

    /// What data the service holds.
    pub async fn data_status(
        &self,
        request: proto::DataStatusRequest,
    ) -> Result<proto::DataStatusResponse, Error> {
        let result = self.raw().data_status(self.request(request)).await;
        self.answer(result)
    }

    /// Re-reads the sources now and swaps in a new snapshot.
    pub async fn refresh(
        &self,
        request: proto::RefreshRequest,
    ) -> Result<proto::RefreshResponse, Error> {
        let result = self.raw().refresh(self.request(request)).await;
        self.answer(result)
    }

    /// [`Client::cost_by_principal`] over every page, starting at `request.page_token`.
    pub async fn cost_by_principal_all(
        &self,
        request: proto::CostByPrincipalRequest,
    ) -> Result<AllRows, Error> {
        collect_pages(request, |r| self.cost_by_principal(r))
            .await
            .map(AllRows::from)
    }

    /// [`Client::cost_by_tag`] over every page, starting at `request.page_token`.
    pub async fn cost_by_tag_all(
        &self,
        request: proto::CostByTagRequest,
    ) -> Result<AllRows, Error> {
        collect_pages(request, |r| self.cost_by_tag(r))
            .await
            .map(AllRows::from)
    }

    /// [`Client::token_usage`] over every page, starting at `request.page_token`.
    pub async fn token_usage_all(
        &self,
        request: proto::TokenUsageRequest,
    ) -> Result<AllRows, Error> {
        collect_pages(request, |r| self.token_usage(r))
            .await
            .map(AllRows::from)
    }

    /// [`Client::list_principals`] over every page: the first response, holding the
    /// principals of all pages and an empty `next_page_token`.
    pub async fn list_principals_all(
        &self,
        request: proto::ListPrincipalsRequest,
    ) -> Result<proto::ListPrincipalsResponse, Error> {
        collect_pages(request, |r| self.list_principals(r)).await
    }

    /// [`Client::list_tag_keys`] over every page: the first response, holding the keys
    /// of all pages and an empty `next_page_token`.
    pub async fn list_tag_keys_all(
        &self,
        request: proto::ListTagKeysRequest,
    ) -> Result<proto::ListTagKeysResponse, Error> {
        collect_pages(request, |r| self.list_tag_keys(r)).await
    }

    /// [`Client::list_models`] over every page: the first response, holding the models
    /// of all pages and an empty `next_page_token`.
    pub async fn list_models_all(
        &self,
        request: proto::ListModelsRequest,
    ) -> Result<proto::ListModelsResponse, Error> {
        collect_pages(request, |r| self.list_models(r)).await
    }
}
