//! TLS on the gRPC listener, with certificates that rotate under a running server.
//!
//! cert-manager renews certificates by rewriting the files of a mounted Secret; a
//! restart per renewal would drop every connection and reload every snapshot. So the
//! server owns its accept loop: each new TCP connection is handshaken with the
//! [`ServerConfig`] current at that moment, and that configuration is rebuilt from the
//! files when their modification time or size changes (looked at most once per
//! `--tls-reload-interval`). Connections already open keep the certificate they were
//! set up with. A rotated file that cannot be used (half written, key and certificate
//! that do not match) keeps the previous configuration and logs a warning; at start the
//! same problem stops the server with a message naming the flag.
//!
//! Each handshake runs in its own task with a deadline, so a plain-text client, a
//! client of another CA or one that stalls mid-handshake costs one task and never holds
//! up the accept loop or other connections. Handshaken streams go to tonic as
//! `tokio_rustls::server::TlsStream`s, for which tonic implements `Connected`:
//! `Request::peer_certs()` works, and [`PeerSubjectLayer`] turns the client
//! certificate into a [`PeerSubject`] request extension for the authorization layer.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, RootCertStore, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{config::TlsConfig, error::Error};

/// Longest a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for tonic to pick them up.
const ACCEPTED_BACKLOG: usize = 128;

/// Handshakes in progress at once; beyond it, new connections wait in the kernel's
/// accept queue, so a flood of stalled handshakes costs bounded memory.
const MAX_HANDSHAKES: usize = 1024;

/// The subject of a verified client certificate, e.g. `CN=bi-backend,O=Acme`, as
/// [`peer_subject`] writes it. Present in a request's extensions only when the
/// connection presented a client certificate that `--tls-client-ca` verified.
pub use crate::auth::PeerSubject;

/// The subject of a DER certificate as `CN=bi-backend,O=Acme`: the attributes in the
/// order the certificate holds them, `,` between RDNs, `+` inside a multi-valued one,
/// short names (`CN`, `O`, `OU`, `C`...) or the dotted OID, and `,+"\<>;` in values
/// escaped with a backslash so that no value can forge another attribute. `None` when
/// the certificate cannot be parsed.
pub fn peer_subject(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(certificate.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut subject = String::new();
    for (i, rdn) in parsed.subject().iter().enumerate() {
        if i > 0 {
            subject.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                subject.push('+');
            }
            let oid = attribute.attr_type();
            match x509_parser::objects::oid2abbrev(oid, registry) {
                Ok(name) => subject.push_str(name),
                Err(_) => subject.push_str(&oid.to_id_string()),
            }
            subject.push('=');
            match attribute.as_str() {
                Ok(value) => escape_into(&mut subject, value),
                // Not a string type: its DER bytes in hex, as RFC 4514 does.
                Err(_) => {
                    subject.push('#');
                    for byte in attribute.attr_value().data.iter() {
                        subject.push_str(&format!("{byte:02x}"));
                    }
                }
            }
        }
    }
    Some(subject)
}

/// RFC 4514 escaping of an attribute value.
fn escape_into(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The files of a TLS configuration, each named by the flag that gave it.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// What the files looked like when last read: modification time and size of each.
type Stamp = Vec<Option<(SystemTime, u64)>>;

impl Files {
    fn stamp(&self) -> Stamp {
        let paths = [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()];
        paths
            .into_iter()
            .flatten()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }

    /// A rustls configuration from the files: the chain and key, the client CA when
    /// given (client certificates then required), HTTP/2 by ALPN.
    fn build(&self) -> Result<ServerConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certs("--tls-cert", &self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            invalid(
                "--tls-key",
                &self.key,
                format!("no usable private key: {e}"),
            )
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("--tls-cert", &self.cert, e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in read_certs("--tls-client-ca", path)? {
                    roots
                        .add(ca)
                        .map_err(|e| invalid("--tls-client-ca", path, e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| invalid("--tls-client-ca", path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            // Also checks that the key belongs to the certificate: a rotation caught
            // between writing the two files must not serve handshakes that fail.
            .with_single_cert(chain, key)
            .map_err(|e| Error::InvalidConfig {
                reason: format!(
                    "--tls-cert {} with --tls-key {}: {e}",
                    self.cert.display(),
                    self.key.display()
                ),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(flag, path, e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid(
            flag,
            path,
            "no CERTIFICATE block in the file".into(),
        ));
    }
    Ok(certs)
}

fn invalid(flag: &str, path: &Path, reason: String) -> Error {
    Error::InvalidConfig {
        reason: format!("{flag} {}: {reason}", path.display()),
    }
}

/// The TLS configuration in effect, rebuilt when its files change.
#[derive(Debug)]
pub struct TlsReloader {
    files: Files,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    config: Arc<ServerConfig>,
    stamp: Stamp,
    checked: Instant,
}

impl TlsReloader {
    /// Reads the files named by `config`; `None` when TLS is off. A file that cannot be
    /// used is an error naming its flag.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Arc<Self>>, Error> {
        let (cert, key) = match (&config.tls_cert, &config.tls_key) {
            (None, None) if config.tls_client_ca.is_none() => return Ok(None),
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => {
                return Err(Error::InvalidConfig {
                    reason: "TLS needs both --tls-cert and --tls-key (--tls-client-ca adds client certificates on top of them)".into(),
                });
            }
        };
        let files = Files {
            cert,
            key,
            client_ca: config.tls_client_ca.clone(),
        };
        let stamp = files.stamp();
        let server = files.build()?;
        Ok(Some(Arc::new(Self {
            files,
            interval: config.tls_reload_interval,
            state: Mutex::new(State {
                config: Arc::new(server),
                stamp,
                checked: Instant::now(),
            }),
        })))
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The configuration for a new connection, re-read first when the files changed
    /// and the last look is older than the reload interval.
    pub fn current(&self) -> Arc<ServerConfig> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            // A panic while holding the lock left a complete configuration behind.
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked.elapsed() >= self.interval {
            state.checked = Instant::now();
            let stamp = self.files.stamp();
            if stamp != state.stamp {
                // Remembered even when the files are unusable, so a broken rotation is
                // reported once, and tried again when the files change again.
                state.stamp = stamp;
                match self.files.build() {
                    Ok(config) => {
                        tracing::info!(cert = %self.files.cert.display(), "tls certificate reloaded");
                        state.config = Arc::new(config);
                    }
                    Err(e) => tracing::warn!(
                        "tls files changed but cannot be used, keeping the previous certificate: {e}"
                    ),
                }
            }
        }
        state.config.clone()
    }
}

/// Accepts TCP connections on `listener` and handshakes each with the configuration
/// current at that moment, in its own task. The stream ends when tonic drops it.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<TlsReloader>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                () = tx.closed() => break,
                permit = handshakes.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let (tcp, peer) = tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Small answers are several writes; Nagle would delay each by ~40 ms.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
            }
            // At most once per reload interval this stats (and maybe reads) three small
            // files inline: cheaper than a task of its own, and bounded.
            let acceptor = TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    // Plain-text clients, unknown CAs and port scans: worth a line, not
                    // a warning.
                    Ok(Err(e)) => tracing::info!(%peer, "tls handshake failed: {e}"),
                    Err(_) => tracing::info!(
                        %peer,
                        "tls handshake did not finish within {HANDSHAKE_TIMEOUT:?}"
                    ),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Adds [`PeerSubject`] to the extensions of requests that came over a connection with
/// a verified client certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerSubjectLayer;

impl<S> tower_layer::Layer<S> for PeerSubjectLayer {
    type Service = PeerSubjectService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerSubjectService { inner }
    }
}

/// The service of [`PeerSubjectLayer`].
#[derive(Debug, Clone)]
pub struct PeerSubjectService<S> {
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for PeerSubjectService<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Never trust a value from elsewhere: only the handshake sets it.
        request.extensions_mut().remove::<PeerSubject>();
        let subject = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|certs| certs.first().and_then(peer_subject));
        if let Some(subject) = subject {
            request.extensions_mut().insert(PeerSubject(subject));
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert_with(subject: &[(DnType, &str)]) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .der()
            .clone()
    }

    #[test]
    fn subject_in_certificate_order() {
        let cert = cert_with(&[
            (DnType::CommonName, "bi-backend"),
            (DnType::OrganizationName, "Acme"),
        ]);
        assert_eq!(peer_subject(&cert).as_deref(), Some("CN=bi-backend,O=Acme"));
        let cert = cert_with(&[
            (DnType::CountryName, "DE"),
            (DnType::OrganizationName, "Acme"),
            (DnType::OrganizationalUnitName, "BI"),
            (DnType::CommonName, "bi-backend"),
        ]);
        assert_eq!(
            peer_subject(&cert).as_deref(),
            Some("C=DE,O=Acme,OU=BI,CN=bi-backend")
        );
    }

    #[test]
    fn values_cannot_forge_attributes() {
        let cert = cert_with(&[(DnType::CommonName, "evil,O=Acme")]);
        assert_eq!(peer_subject(&cert).as_deref(), Some("CN=evil\\,O=Acme"));
    }

    #[test]
    fn garbage_has_no_subject() {
        assert_eq!(
            peer_subject(&CertificateDer::from(vec![0x30, 0x03, 1])),
            None
        );
    }
}
