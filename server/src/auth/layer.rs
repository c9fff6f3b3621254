//! The tower layer that authenticates and authorizes every request before any service
//! sees it: health stays open for probes; everything else needs a caller of the
//! callers file, by bearer token or client certificate subject; `DataStatus`, `Refresh`
//! and reflection need an admin. The caller goes into the request's extensions as an
//! `Arc<Caller>`, where handlers find its scope. Refusals are answered here, as
//! trailers-only gRPC responses built from [`Error`].

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::{Either, Ready, ready};

use super::{Caller, PeerSubject, audit::Audit, file::AuthFile, token_digest};
use crate::error::Error;

/// Paths no credentials are asked for: liveness and readiness probes.
const OPEN_PREFIX: &str = "/grpc.health.v1.Health/";

/// Whether `path` needs an admin caller.
fn admin_only(path: &str) -> bool {
    matches!(
        path,
        "/bedrock.attribution.v1.AttributionService/DataStatus"
            | "/bedrock.attribution.v1.AttributionService/Refresh"
    ) || path.starts_with("/grpc.reflection.")
}

/// The layer; `None` inside means access control is off and every request passes as it
/// is, without a caller.
#[derive(Debug, Clone, Default)]
pub struct AuthLayer {
    file: Option<Arc<AuthFile>>,
}

impl AuthLayer {
    /// Checks requests against the callers of `file`, or lets all through without one.
    pub fn new(file: Option<Arc<AuthFile>>) -> Self {
        Self { file }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            file: self.file.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    file: Option<Arc<AuthFile>>,
}

/// The caller of a request, from the callers of `file`: by bearer token when an
/// `authorization` header is present, else by the client certificate subject.
pub fn authenticate(
    file: &AuthFile,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
) -> Result<Arc<Caller>, Error> {
    let callers = file.callers();
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .filter(|token| !token.is_empty())
                .ok_or(Error::Unauthenticated)?;
            callers
                .by_token_digest(&token_digest(token.as_bytes()))
                .ok_or(Error::Unauthenticated)
        }
        // Two authorization headers: ambiguous, refused.
        (Some(_), Some(_)) => Err(Error::Unauthenticated),
        (None, _) => extensions
            .get::<PeerSubject>()
            .and_then(|PeerSubject(subject)| callers.by_subject(subject))
            .ok_or(Error::Unauthenticated),
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let Some(file) = &self.file else {
            return Either::Right(self.inner.call(request));
        };
        let path = request.uri().path();
        if path.starts_with(OPEN_PREFIX) {
            return Either::Right(self.inner.call(request));
        }
        let decided =
            authenticate(file, request.headers(), request.extensions()).and_then(|caller| {
                if let Some(audit) = request.extensions().get::<Arc<Audit>>() {
                    audit.set_caller(&caller.name);
                }
                if admin_only(path) && !caller.admin {
                    return Err(Error::PermissionDenied {
                        what: path.trim_start_matches('/').to_owned(),
                        reason: format!(
                            "needs an admin caller, and caller {} is not one",
                            caller.name
                        ),
                    });
                }
                Ok(caller)
            });
        match decided {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Either::Right(self.inner.call(request))
            }
            Err(e) => Either::Left(ready(Ok(tonic::Status::from(e).into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn file(dir: &Path) -> Arc<AuthFile> {
        let path = dir.join("callers.yaml");
        let text = format!(
            "callers:\n  - name: tok\n    token_sha256: \"{}\"\n  - name: bi\n    mtls_subject: \"CN=bi-backend,O=Acme\"\n    scope: {{accounts: [\"111111111111\"]}}\n",
            // SHA-256 of "test"
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        AuthFile::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    #[test]
    fn bearer_tokens() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = file(dir.path());
        let none = http::Extensions::new();
        let name = |h: &[&str]| authenticate(&f, &headers(h), &none).map(|c| c.name.clone());
        assert_eq!(name(&["Bearer test"]).ok().as_deref(), Some("tok"));
        assert_eq!(name(&["bearer  test "]).ok().as_deref(), Some("tok"));
        for bad in [
            &[][..],
            &["Bearer"],
            &["Bearer "],
            &["Basic test"],
            &["test"],
            &["Bearer tesT"],
            &["Bearer test", "Bearer test"],
        ] {
            assert!(matches!(name(bad), Err(Error::Unauthenticated)), "{bad:?}");
        }
    }

    #[test]
    fn client_certificate_subjects() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = file(dir.path());
        let mut ext = http::Extensions::new();
        ext.insert(PeerSubject("CN=bi-backend,O=Acme".into()));
        let bi = authenticate(&f, &headers(&[]), &ext).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bi.name, "bi");
        assert!(
            bi.scope
                .accounts
                .contains(&crate::account::test_id("111111111111"))
        );
        let mut other = http::Extensions::new();
        other.insert(PeerSubject("CN=bi-backend,O=Evil".into()));
        assert!(matches!(
            authenticate(&f, &headers(&[]), &other),
            Err(Error::Unauthenticated)
        ));
        // A token presented decides, even beside a known certificate.
        assert!(matches!(
            authenticate(&f, &headers(&["Bearer wrong"]), &ext),
            Err(Error::Unauthenticated)
        ));
    }

    #[test]
    fn admin_paths() {
        assert!(admin_only(
            "/bedrock.attribution.v1.AttributionService/Refresh"
        ));
        assert!(admin_only(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!admin_only(
            "/bedrock.attribution.v1.AttributionService/CostByTag"
        ));
    }
}
