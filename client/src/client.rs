//! [`Client`]: one typed async method per RPC of `bedrock.attribution.v1`.
//!
//! A thin layer over the generated tonic stub: it sets the per-request deadline,
//! turns `tonic::Status` into [`Error`], and adds `*_all` helpers that follow
//! `next_page_token` so callers never handle page tokens themselves.
//!
//! `https://` URLs use TLS (rustls): the server is verified against
//! [`ClientBuilder::ca_certificate`] / [`ClientBuilder::ca_file`] when given, else the
//! system's roots; [`ClientBuilder::identity`] presents a client certificate for mutual
//! TLS; [`ClientBuilder::bearer_token`] authenticates every call.

use std::{fmt, path::PathBuf, time::Duration};

use tonic::{
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

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
    inner: AttributionServiceClient<InterceptedService<Channel, Credentials>>,
    request_timeout: Option<Duration>,
    /// Connected with an `http://` URL: a broken connection may be a TLS server.
    plain_text: bool,
}

/// What every call carries: `authorization: Bearer <token>` when a token was given.
///
/// Its `Debug` output never shows the token.
#[derive(Clone, Default)]
pub struct Credentials {
    authorization: Option<AsciiMetadataValue>,
}

impl Credentials {
    /// Credentials sending `token` as a bearer token; `INVALID_ARGUMENT` when the
    /// token cannot be a header value (the message does not repeat it).
    pub fn bearer(token: &str) -> Result<Self, Error> {
        let mut value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| {
                Error::invalid_argument(
                    "the bearer token holds characters not allowed in a header (only visible ASCII)",
                )
            })?;
        // Kept out of HTTP/2 header compression tables and debug output.
        value.set_sensitive(true);
        Ok(Self {
            authorization: Some(value),
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.authorization.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credentials")
            .field("bearer_token", &token)
            .finish()
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where the CA certificates that verify the server come from.
#[derive(Clone, Debug)]
enum CaSource {
    Pem(Vec<u8>),
    File(PathBuf),
}

/// A client certificate and its key, PEM; `Debug` leaves the key out.
#[derive(Clone)]
struct ClientIdentity {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_bytes", &self.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Options for connecting a [`Client`]; start with [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    url: String,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    ca: Option<CaSource>,
    identity: Option<ClientIdentity>,
    domain_name: Option<String>,
    token: Option<Secret>,
}

/// A string that `Debug` does not show.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether `pem` holds at least one certificate block: an empty or wrong file would
/// otherwise surface as an unknown issuer at the first handshake.
fn has_certificate(pem: &[u8]) -> bool {
    let marker = b"-----BEGIN CERTIFICATE-----";
    pem.windows(marker.len()).any(|w| w == marker)
}

impl ClientBuilder {
    /// CA certificates (PEM, one or more) that the server's certificate must chain to,
    /// instead of the system's roots. Needs an `https://` URL.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(CaSource::Pem(pem.into()));
        self
    }

    /// [`ClientBuilder::ca_certificate`] read from a file when connecting.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(CaSource::File(path.into()));
        self
    }

    /// A client certificate chain and its private key (PEM), presented to servers
    /// that require mutual TLS. Needs an `https://` URL.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some(ClientIdentity {
            cert: cert_pem.into(),
            key: key_pem.into(),
        });
        self
    }

    /// The name the server certificate must hold, when it differs from the URL's host
    /// (e.g. connecting through a port-forward to `127.0.0.1`).
    pub fn tls_domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// Sends `authorization: Bearer <token>` with every call. The token never appears
    /// in `Debug` output or errors.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret(token.into()));
        self
    }

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

    /// Connects to the server. A URL without a scheme (`host:port`) means `http://`;
    /// `https://` means TLS.
    pub async fn build(self) -> Result<Client, Error> {
        let url = if self.url.contains("://") {
            self.url.clone()
        } else {
            format!("http://{}", self.url)
        };
        let credentials = match &self.token {
            Some(Secret(token)) => Credentials::bearer(token)?,
            None => Credentials::default(),
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| {
                Error::invalid_argument(format!("invalid server url {:?}: {e}", self.url))
            })?
            .connect_timeout(self.connect_timeout);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(self.tls_config()?)
                .map_err(|e| Error::invalid_argument(format!("tls settings: {e}")))?;
        } else if self.ca.is_some() || self.identity.is_some() || self.domain_name.is_some() {
            return Err(Error::invalid_argument(format!(
                "TLS settings (CA, client certificate, domain name) need an https:// server url, not {:?}",
                self.url
            )));
        }
        let channel = endpoint.connect().await.map_err(|source| Error::Connect {
            url: self.url.clone(),
            source,
        })?;
        Ok(Client {
            inner: AttributionServiceClient::with_interceptor(channel, credentials),
            request_timeout: self.request_timeout,
            plain_text: !url.starts_with("https://"),
        })
    }

    fn tls_config(&self) -> Result<ClientTlsConfig, Error> {
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca {
            None => tls.with_native_roots(),
            Some(source) => {
                let (pem, origin) = match source {
                    CaSource::Pem(pem) => (pem.clone(), "the CA certificate".to_owned()),
                    CaSource::File(path) => {
                        let pem = std::fs::read(path).map_err(|e| {
                            Error::invalid_argument(format!(
                                "cannot read CA file {}: {e}",
                                path.display()
                            ))
                        })?;
                        (pem, format!("CA file {}", path.display()))
                    }
                };
                if !has_certificate(&pem) {
                    return Err(Error::invalid_argument(format!(
                        "{origin} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                    )));
                }
                tls.ca_certificate(Certificate::from_pem(pem))
            }
        };
        if let Some(identity) = &self.identity {
            if !has_certificate(&identity.cert) {
                return Err(Error::invalid_argument(
                    "the client certificate holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
            tls = tls.identity(Identity::from_pem(&identity.cert, &identity.key));
        }
        if let Some(name) = &self.domain_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(tls)
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
            ca: None,
            identity: None,
            domain_name: None,
            token: None,
        }
    }

    /// A client over an existing channel, e.g. one to an in-process test server.
    pub fn from_channel(channel: Channel) -> Client {
        Client::from_channel_with(channel, Credentials::default())
    }

    /// A client over an existing channel that sends `credentials` with every call.
    pub fn from_channel_with(channel: Channel, credentials: Credentials) -> Client {
        Client {
            inner: AttributionServiceClient::with_interceptor(channel, credentials),
            request_timeout: None,
            plain_text: false,
        }
    }

    /// The same client with a different per-request deadline (`None`: no deadline).
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// The generated tonic stub, for anything this wrapper does not cover
    /// (metadata, compression...); it sends the same credentials.
    pub fn raw(&self) -> AttributionServiceClient<InterceptedService<Channel, Credentials>> {
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
            .map_err(|status| match Error::from_status(status, self.request_timeout) {
                Error::Transport { message } if self.plain_text => Error::Transport {
                    message: format!(
                        "{message} (this client speaks plain text: if the server uses TLS, connect to an https:// URL)"
                    ),
                },
                other => other,
            })
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

    /// Creates a monthly budget, owned by the caller.
    pub async fn create_budget(
        &self,
        request: proto::CreateBudgetRequest,
    ) -> Result<proto::CreateBudgetResponse, Error> {
        let result = self.raw().create_budget(self.request(request)).await;
        self.answer(result)
    }

    /// The budgets the caller may see, ordered by id.
    pub async fn list_budgets(
        &self,
        request: proto::ListBudgetsRequest,
    ) -> Result<proto::ListBudgetsResponse, Error> {
        let result = self.raw().list_budgets(self.request(request)).await;
        self.answer(result)
    }

    /// Deletes a budget created through the API.
    pub async fn delete_budget(
        &self,
        request: proto::DeleteBudgetRequest,
    ) -> Result<proto::DeleteBudgetResponse, Error> {
        let result = self.raw().delete_budget(self.request(request)).await;
        self.answer(result)
    }

    /// Spend to date, month-end forecast and status of budgets for one month.
    pub async fn budget_status(
        &self,
        request: proto::BudgetStatusRequest,
    ) -> Result<proto::BudgetStatusResponse, Error> {
        let result = self.raw().budget_status(self.request(request)).await;
        self.answer(result)
    }

    /// Days whose spend departs from its trailing baseline, and new spenders (one page).
    pub async fn spend_anomalies(
        &self,
        request: proto::SpendAnomaliesRequest,
    ) -> Result<proto::SpendAnomaliesResponse, Error> {
        let result = self.raw().spend_anomalies(self.request(request)).await;
        self.answer(result)
    }

    /// [`Client::spend_anomalies`] over every page: the first response, holding the
    /// anomalies of all pages and an empty `next_page_token`.
    pub async fn spend_anomalies_all(
        &self,
        request: proto::SpendAnomaliesRequest,
    ) -> Result<proto::SpendAnomaliesResponse, Error> {
        collect_pages(request, |r| self.spend_anomalies(r)).await
    }

    /// Follows budget status changes: the events come as refreshes and budget changes
    /// move a status, until the server ends the stream (at its shutdown, UNAVAILABLE:
    /// open it again) or the returned [`BudgetEvents`] is dropped. The request timeout
    /// does not apply: a watch lasts as long as the caller wants.
    pub async fn watch_budgets(
        &self,
        request: proto::WatchBudgetsRequest,
    ) -> Result<BudgetEvents, Error> {
        let result = self.raw().watch_budgets(tonic::Request::new(request)).await;
        self.answer(result).map(|inner| BudgetEvents { inner })
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

/// The events of one [`Client::watch_budgets`] call.
#[derive(Debug)]
pub struct BudgetEvents {
    inner: tonic::Streaming<proto::BudgetEvent>,
}

impl BudgetEvents {
    /// The next event; `None` when the server ended the stream normally, an error
    /// (UNAVAILABLE at the server's shutdown, PERMISSION_DENIED when the caller's rights
    /// changed) when it ended it otherwise.
    pub async fn next(&mut self) -> Result<Option<proto::BudgetEvent>, Error> {
        self.inner
            .message()
            .await
            .map_err(|status| Error::from_status(status, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[tokio::test]
    async fn tls_settings_need_https() {
        for builder in [
            Client::builder("http://127.0.0.1:1").ca_certificate(CA),
            Client::builder("127.0.0.1:1").identity(CA, "key"),
            Client::builder("http://127.0.0.1:1").tls_domain_name("localhost"),
        ] {
            let err = builder
                .build()
                .await
                .expect_err("refused before connecting");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.to_string().contains("need an https:// server url"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn unusable_ca_is_named() {
        let err = Client::builder("https://127.0.0.1:1")
            .ca_certificate("not a certificate")
            .build()
            .await
            .expect_err("no certificate");
        assert_eq!(
            err.to_string(),
            "INVALID_ARGUMENT: the CA certificate holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
        let err = Client::builder("https://127.0.0.1:1")
            .ca_file("/nonexistent/ca.pem")
            .build()
            .await
            .expect_err("no file");
        assert!(
            err.to_string()
                .starts_with("INVALID_ARGUMENT: cannot read CA file /nonexistent/ca.pem: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn secrets_stay_out_of_debug_and_errors() {
        let builder = Client::builder("http://127.0.0.1:1")
            .bearer_token("s3cret-token")
            .identity(CA, "PRIVATE-KEY-BYTES");
        let debug = format!("{builder:?}");
        assert!(!debug.contains("s3cret-token"), "{debug}");
        assert!(!debug.contains("PRIVATE-KEY-BYTES"), "{debug}");
        let credentials = Credentials::bearer("s3cret-token").expect("valid token");
        assert_eq!(
            format!("{credentials:?}"),
            "Credentials { bearer_token: Some(\"<redacted>\") }"
        );
        let err = Client::builder("http://127.0.0.1:1")
            .bearer_token("line\nbreak-s3cret")
            .build()
            .await
            .expect_err("not a header value");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn interceptor_adds_the_header() {
        let mut credentials = Credentials::bearer("abc").expect("valid token");
        let request = credentials
            .call(tonic::Request::new(()))
            .expect("intercepted");
        assert_eq!(
            request
                .metadata()
                .get("authorization")
                .map(|v| v.to_str().ok()),
            Some(Some("Bearer abc"))
        );
        let request = Credentials::default()
            .call(tonic::Request::new(()))
            .expect("intercepted");
        assert!(request.metadata().get("authorization").is_none());
    }
}
