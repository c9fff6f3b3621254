//! TLS on the real server, with certificates generated here (rcgen): TLS calls through
//! the client crate, plain text and unknown CAs refused, mutual TLS, the client
//! certificate's subject reaching the request, and certificates rotated under a
//! running server.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bedrock_attribution_client::{Client, Error, proto};
use bedrock_attribution_server::server::{
    self, ServerHandle,
    tls::{self, PeerSubject, PeerSubjectLayer, TlsReloader},
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::common::{config, small_export};

/// A certificate authority of its own.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for localhost and 127.0.0.1 named `cn`.
    fn server(&self, cn: &str) -> Leaf {
        self.leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            &[(DnType::CommonName, cn)],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with the subject `subject`.
    fn client(&self, subject: &[(DnType, &str)]) -> Leaf {
        self.leaf(Vec::new(), subject, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(
        &self,
        names: Vec<String>,
        subject: &[(DnType, &str)],
        usage: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

/// The files the server reads, in a temporary folder.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

impl Files {
    fn new(server: &Leaf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = Self {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: dir.path().join("ca.crt"),
            _dir: dir,
        };
        files.write(server);
        files
    }

    /// Replaces certificate and key, each file written aside and renamed into place.
    fn write(&self, server: &Leaf) {
        write_atomically(&self.cert, &server.cert);
        write_atomically(&self.key, &server.key);
    }

    fn flags(&self, mutual: bool) -> Vec<String> {
        let mut flags = vec![
            "--tls-cert".to_owned(),
            self.cert.display().to_string(),
            "--tls-key".to_owned(),
            self.key.display().to_string(),
        ];
        if mutual {
            flags.push("--tls-client-ca".into());
            flags.push(self.client_ca.display().to_string());
        }
        flags
    }
}

fn write_atomically(path: &Path, content: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Starts the real server over the small export with `flags`.
async fn start(flags: &[String]) -> ServerHandle {
    let config = config(&[format!("file://{}", small_export().display())], flags);
    let catalog = server::catalog_from(&config.data).unwrap();
    let handle = server::start(&config, catalog).await.unwrap();
    handle.ready().await;
    handle
}

/// A TLS client trusting `ca` only, presenting `identity` when given; connects and
/// makes one call.
async fn call(handle: &ServerHandle, ca: &Ca, identity: Option<&Leaf>) -> Result<Client, Error> {
    let mut builder = Client::builder(format!("https://{}", handle.addr()))
        .ca_certificate(ca.pem())
        .connect_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(10));
    if let Some(leaf) = identity {
        builder = builder.identity(leaf.cert.clone(), leaf.key.clone());
    }
    let client = builder.build().await?;
    client.data_status(proto::DataStatusRequest {}).await?;
    Ok(client)
}

#[tokio::test]
async fn tls_calls_work_and_plain_text_is_refused() {
    let ca = Ca::new("test CA");
    let files = Files::new(&ca.server("bedrock-attribution"));
    let mut flags = files.flags(false);
    flags.push("--reflection=false".into());
    flags.push("--health-listen".into());
    flags.push("127.0.0.1:0".into());
    let handle = start(&flags).await;

    let client = call(&handle, &ca, None).await.unwrap();
    let models = client
        .list_models_all(proto::ListModelsRequest {
            time_range: crate::common::range("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!models.models.is_empty(), "answers come over TLS");
    // By DNS name too (the certificate holds both).
    let by_name = Client::builder(format!("https://{}", handle.addr()))
        .ca_certificate(ca.pem())
        .tls_domain_name("localhost")
        .build()
        .await
        .unwrap();
    by_name
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();

    // A client that connects and never starts its handshake holds up no one.
    let stalled = tokio::net::TcpStream::connect(handle.addr()).await.unwrap();
    call(&handle, &ca, None).await.unwrap();

    // A plain-text client gets nowhere, whether at connect or at its first call.
    let plain = async {
        let client = Client::builder(format!("http://{}", handle.addr()))
            .connect_timeout(Duration::from_secs(5))
            .request_timeout(Duration::from_secs(5))
            .build()
            .await?;
        client.data_status(proto::DataStatusRequest {}).await
    };
    let err = plain.await.expect_err("plain text refused");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        err.to_string()
            .contains("if the server uses TLS, connect to an https:// URL"),
        "{err}"
    );

    // A client that does not trust the server's CA refuses it, and says why.
    let err = call(&handle, &Ca::new("other CA"), None)
        .await
        .expect_err("unknown issuer");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let chain = error_chain(&err);
    assert!(chain.contains("UnknownIssuer"), "{chain}");

    // Neither disturbed the connection already open.
    drop(stalled);
    client
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap();

    // --reflection=false: the service is gone, the API stays.
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", handle.addr()))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem())),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel.clone(),
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let status = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect_err("reflection off");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    // Health over TLS, and over the plain-text probe listener.
    assert_serving(HealthClient::new(channel)).await;
    let probe_addr = handle.health_addr().expect("--health-listen");
    let probe = tonic::transport::Channel::from_shared(format!("http://{probe_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_serving(HealthClient::new(probe.clone())).await;
    // The probe listener serves nothing but health.
    let err = Client::from_channel(probe)
        .data_status(proto::DataStatusRequest {})
        .await
        .expect_err("no API in plain text");
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    handle.shutdown().await.unwrap();
}

async fn assert_serving(mut health: HealthClient<tonic::transport::Channel>) {
    let status = health
        .check(HealthCheckRequest {
            service: "bedrock.attribution.v1.AttributionService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// An error and its causes on one line.
fn error_chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn mutual_tls_wants_a_certificate_of_the_client_ca() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = Files::new(&ca.server("bedrock-attribution"));
    std::fs::write(&files.client_ca, client_ca.pem()).unwrap();
    let handle = start(&files.flags(true)).await;

    let bi = client_ca.client(&[
        (DnType::CommonName, "bi-backend"),
        (DnType::OrganizationName, "Acme"),
    ]);
    call(&handle, &ca, Some(&bi)).await.unwrap();

    let err = call(&handle, &ca, None)
        .await
        .expect_err("no client certificate");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
    // Another CA, under another name or posing under the same one.
    for other in [Ca::new("someone else's CA"), Ca::new("client CA")] {
        let stranger = other.client(&[
            (DnType::CommonName, "bi-backend"),
            (DnType::OrganizationName, "Acme"),
        ]);
        let err = call(&handle, &ca, Some(&stranger))
            .await
            .expect_err("certificate of another CA");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(err.to_string().contains("received fatal alert"), "{err}");
    }
    // The refusals left the server serving.
    call(&handle, &ca, Some(&bi)).await.unwrap();
    handle.shutdown().await.unwrap();
}

/// The accept loop and [`PeerSubjectLayer`] of the server, in front of a health
/// service whose interceptor records what each request saw.
#[tokio::test]
async fn requests_carry_the_client_certificate_subject() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = Files::new(&ca.server("bedrock-attribution"));
    std::fs::write(&files.client_ca, client_ca.pem()).unwrap();
    let mut args = vec!["test".to_owned()];
    args.extend(files.flags(true));
    let config =
        <bedrock_attribution_server::Config as clap::Parser>::try_parse_from(args).unwrap();
    let reloader = TlsReloader::from_config(&config.tls).unwrap().unwrap();
    assert!(reloader.mutual());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = {
        let seen = seen.clone();
        move |request: tonic::Request<()>| {
            let subject = request
                .extensions()
                .get::<PeerSubject>()
                .map(|s| s.0.clone());
            seen.lock().unwrap().push(subject);
            let certs = request.peer_certs().map_or(0, |c| c.len());
            assert_eq!(certs, 1, "tonic's peer_certs sees the client certificate");
            Ok(request)
        }
    };
    let (_reporter, health) = tonic_health::server::health_reporter();
    let serve = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(PeerSubjectLayer)
            .layer(tonic::service::InterceptorLayer::new(record))
            .add_service(health)
            .serve_with_incoming(tls::incoming(listener, reloader)),
    );

    let bi = client_ca.client(&[
        (DnType::CommonName, "bi-backend"),
        (DnType::OrganizationName, "Acme"),
    ]);
    let channel = tonic::transport::Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem()))
                .identity(tonic::transport::Identity::from_pem(&bi.cert, &bi.key)),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    // A forged extension header means nothing: only the handshake sets the subject.
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request
        .metadata_mut()
        .insert("peer-subject", "CN=admin".parse().unwrap());
    HealthClient::new(channel).check(request).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [Some("CN=bi-backend,O=Acme".to_owned())]
    );
    serve.abort();
}

/// Connects with a client that trusts only `ca`, until it succeeds or `within` passes.
async fn wait_for_certificate(handle: &ServerHandle, ca: &Ca, within: Duration) {
    let start = Instant::now();
    loop {
        match call(handle, ca, None).await {
            Ok(_) => return,
            Err(_) if start.elapsed() < within => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the new certificate was not served within {within:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn rotated_certificates_are_served_without_a_restart() {
    let first = Ca::new("first CA");
    let files = Files::new(&first.server("server-1"));
    let mut flags = files.flags(false);
    flags.push("--tls-reload-interval".into());
    flags.push("100ms".into());
    let handle = start(&flags).await;
    let open = call(&handle, &first, None).await.unwrap();

    // cert-manager renews: a new certificate, from a new CA here so that a client
    // trusting only that CA tells which one the server presents.
    let second = Ca::new("second CA");
    files.write(&second.server("server-2"));
    wait_for_certificate(&handle, &second, Duration::from_secs(10)).await;
    let err = call(&handle, &first, None)
        .await
        .expect_err("the old certificate is gone for new connections");
    assert!(error_chain(&err).contains("UnknownIssuer"), "{err}");
    // The connection opened before the rotation goes on.
    open.data_status(proto::DataStatusRequest {}).await.unwrap();

    // A broken rotation keeps the certificate in use: garbage, then a key that does not
    // belong to the certificate.
    write_atomically(&files.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(&handle, &second, None).await.unwrap();
    let third = Ca::new("third CA");
    write_atomically(&files.cert, &third.server("server-3").cert);
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(&handle, &second, None).await.unwrap();
    call(&handle, &third, None)
        .await
        .expect_err("a certificate without its key is not served");

    // Once both files are good again, they are served.
    files.write(&third.server("server-3"));
    wait_for_certificate(&handle, &third, Duration::from_secs(10)).await;
    open.data_status(proto::DataStatusRequest {}).await.unwrap();
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn unusable_files_stop_the_start_naming_the_flag() {
    let ca = Ca::new("test CA");
    let good = ca.server("bedrock-attribution");
    let other = ca.server("other");
    let files = Files::new(&good);
    let source = [format!("file://{}", small_export().display())];
    let start_err = |flags: Vec<String>| {
        let config = config(&source, &flags);
        async move {
            let catalog = server::catalog_from(&config.data).unwrap();
            server::start(&config, catalog)
                .await
                .expect_err("refused")
                .to_string()
        }
    };

    std::fs::write(&files.key, &other.key).unwrap();
    let err = start_err(files.flags(false)).await;
    assert!(
        err.contains("--tls-cert") && err.contains("--tls-key") && err.contains("tls.key"),
        "{err}"
    );

    std::fs::write(&files.key, "not a key").unwrap();
    let err = start_err(files.flags(false)).await;
    assert!(
        err.contains("--tls-key ") && err.contains("no usable private key"),
        "{err}"
    );

    std::fs::write(&files.key, &good.key).unwrap();
    std::fs::write(&files.cert, "").unwrap();
    let err = start_err(files.flags(false)).await;
    assert!(
        err.contains("--tls-cert ") && err.contains("no CERTIFICATE block"),
        "{err}"
    );

    files.write(&good);
    let err = start_err(files.flags(true)).await;
    assert!(
        err.contains("--tls-client-ca ") && err.contains("ca.crt"),
        "{err}"
    );
}

/// Callers of the auth file named by their client certificate: the subject the TLS
/// acceptor verified is who calls, held to that caller's scope, with no token; another
/// subject of the same CA is nobody.
#[tokio::test]
async fn mtls_callers_are_known_by_their_certificate_and_held_to_their_scope() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = Files::new(&ca.server("bedrock-attribution"));
    std::fs::write(&files.client_ca, client_ca.pem()).unwrap();
    let admin_token = "admin-token-5e0c";
    let digest: String = <sha2::Sha256 as sha2::Digest>::digest(admin_token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let callers = files._dir.path().join("callers.json");
    std::fs::write(
        &callers,
        serde_json::json!({"callers": [
            {"name": "finance", "token_sha256": digest, "admin": true},
            {"name": "bi-backend", "mtls_subject": "CN=bi-backend,O=Acme",
             "scope": {"accounts": ["210987654321"]}},
        ]})
        .to_string(),
    )
    .unwrap();
    let mut flags = files.flags(true);
    flags.extend(["--auth-file".to_owned(), callers.display().to_string()]);
    let handle = start(&flags).await;
    let connect = |leaf: &Leaf, token: Option<&str>| {
        let mut builder = Client::builder(format!("https://{}", handle.addr()))
            .ca_certificate(ca.pem())
            .identity(leaf.cert.clone(), leaf.key.clone())
            .request_timeout(Duration::from_secs(10));
        if let Some(token) = token {
            builder = builder.bearer_token(token);
        }
        builder.build()
    };
    let question = |account: Option<&str>| proto::CostByPrincipalRequest {
        time_range: crate::common::range("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        filter: account.map(|a| proto::Filter {
            account_ids: vec![a.to_owned()],
            ..Default::default()
        }),
        page_size: 1000,
        ..Default::default()
    };

    let bi_leaf = client_ca.client(&[
        (DnType::CommonName, "bi-backend"),
        (DnType::OrganizationName, "Acme"),
    ]);
    let bi = connect(&bi_leaf, None).await.unwrap();
    let scoped = bi.cost_by_principal(question(None)).await.unwrap();
    let admin = connect(&bi_leaf, Some(admin_token)).await.unwrap();
    let filtered = admin
        .cost_by_principal(question(Some("210987654321")))
        .await
        .unwrap();
    let everything = admin.cost_by_principal(question(None)).await.unwrap();
    assert!(!scoped.rows.is_empty());
    assert_eq!(
        scoped.rows, filtered.rows,
        "the scope is the account filter"
    );
    assert_eq!(scoped.totals, filtered.totals);
    assert_ne!(scoped.totals, everything.totals, "the scope narrows");
    // Not an admin, and the scope holds.
    let err = bi
        .data_status(proto::DataStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let err = bi
        .cost_by_principal(question(Some("345678901234")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.to_string().contains("filter.account_ids"), "{err}");

    // A certificate of the same CA with a subject no caller has: verified, but nobody.
    let stranger = client_ca.client(&[
        (DnType::CommonName, "bi-backend"),
        (DnType::OrganizationName, "Evil"),
    ]);
    let err = connect(&stranger, None)
        .await
        .unwrap()
        .cost_by_principal(question(None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    handle.shutdown().await.unwrap();
}
