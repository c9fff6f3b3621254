//! Access control: who may call, and which line items each caller sees.
//!
//! [`file`] reads the callers file (`--auth-file`), [`layer`] authenticates every
//! request (bearer token or client certificate subject) and checks admin-only RPCs,
//! [`scope`] is the condition on line items a caller is held to inside every query, and
//! [`audit`] writes one event per call. Without `--auth-file` the server is open, which
//! [`check_open`] allows only on a loopback address unless told otherwise.

pub mod audit;
pub mod file;
pub mod layer;
pub mod scope;

use std::{net::SocketAddr, sync::Arc};

pub use file::{AuthFile, Callers, token_digest};
pub use layer::AuthLayer;
pub use scope::Scope;

use crate::error::Error;

/// An authenticated caller, in the extensions of each request it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Name from the callers file: shown in audit events, never a secret.
    pub name: String,
    /// May call `DataStatus`, `Refresh` and reflection.
    pub admin: bool,
    /// The line items it sees.
    pub scope: Scope,
}

/// The subject of a request's verified client certificate (e.g. `CN=bi-backend,O=Acme`),
/// put into the request's extensions by the TLS acceptor; callers with `mtls_subject`
/// are matched against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSubject(pub String);

/// The caller of a request and its scope: `None` (every line item) when access control
/// is off.
pub fn caller_of<T>(request: &tonic::Request<T>) -> Option<&Caller> {
    request.extensions().get::<Arc<Caller>>().map(|c| &**c)
}

/// Refuses to serve without access control on an address other than loopback, unless
/// `allow_unauthenticated`: per-person spend is sensitive, and a pod or host address
/// reaches far more people than the developer who started a demo.
pub fn check_open(
    listen: SocketAddr,
    auth_file: bool,
    allow_unauthenticated: bool,
) -> Result<(), Error> {
    if auth_file || allow_unauthenticated || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(Error::InvalidConfig {
        reason: format!(
            "refusing to serve without access control on {listen}, which is not a loopback address: anyone who reaches it could read every caller's spend; pass --auth-file PATH (BEDROCK_ATTRIBUTION_AUTH_FILE) with the callers, or --allow-unauthenticated (BEDROCK_ATTRIBUTION_ALLOW_UNAUTHENTICATED) when something in front of the server authenticates"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_only_on_loopback_unless_allowed() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap_or_else(|e| panic!("{e}"));
        assert!(check_open(at("127.0.0.1:50051"), false, false).is_ok());
        assert!(check_open(at("[::1]:50051"), false, false).is_ok());
        let e = check_open(at("0.0.0.0:50051"), false, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("--auth-file") && e.contains("--allow-unauthenticated"),
            "{e}"
        );
        assert!(check_open(at("0.0.0.0:50051"), true, false).is_ok());
        assert!(check_open(at("10.0.0.7:50051"), false, true).is_ok());
    }
}
