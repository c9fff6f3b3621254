//! The one error type of the client: a gRPC status from the server, a connection
//! failure, or a value rejected before anything was sent.
//!
//! Every variant maps to a gRPC code ([`Error::code`]) so that callers, and the CLI's
//! `error: <CODE>: <message>` line, treat local and remote failures alike.

use std::time::Duration;

/// Everything that can go wrong when talking to the attribution service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server (or the transport under a request) answered with a gRPC status.
    #[error("{}: {message}", code_name(*code))]
    Status {
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message as sent by the server.
        message: String,
    },
    /// No connection could be opened to the server.
    #[error("UNAVAILABLE: cannot connect to {url}")]
    Connect {
        /// The server URL that was tried.
        url: String,
        /// What the transport reported.
        #[source]
        source: tonic::transport::Error,
    },
    /// The connection broke under a request: the server refused the TLS handshake (no
    /// or an unknown client certificate), spoke TLS to a plain-text client, or went away.
    #[error("UNAVAILABLE: the connection to the server failed: {message}")]
    Transport {
        /// What the transport reported, causes included.
        message: String,
    },
    /// A value given to the client could not be used (bad URL, date, amount...).
    #[error("INVALID_ARGUMENT: {message}")]
    InvalidArgument {
        /// What was wrong with it.
        message: String,
    },
    /// The server answered with something that breaks the API contract.
    #[error("INTERNAL: invalid response: {message}")]
    InvalidResponse {
        /// What was wrong with the answer.
        message: String,
    },
}

impl Error {
    /// The gRPC code of this error: the server's code for [`Error::Status`],
    /// `UNAVAILABLE` for connection failures, `INVALID_ARGUMENT` for rejected input and
    /// `INTERNAL` for answers that break the contract.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::Status { code, .. } => *code,
            Error::Connect { .. } | Error::Transport { .. } => tonic::Code::Unavailable,
            Error::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            Error::InvalidResponse { .. } => tonic::Code::Internal,
        }
    }

    /// Builds an [`Error::InvalidArgument`].
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            message: message.into(),
        }
    }

    /// Builds an [`Error::InvalidResponse`].
    pub(crate) fn invalid_response(message: impl Into<String>) -> Self {
        Error::InvalidResponse {
            message: message.into(),
        }
    }

    /// Converts a status returned by a call made with `timeout`.
    ///
    /// tonic enforces the deadline on the client side and reports it as `CANCELLED`
    /// "Timeout expired"; the gRPC code for a missed deadline is `DEADLINE_EXCEEDED`.
    pub(crate) fn from_status(status: tonic::Status, timeout: Option<Duration>) -> Self {
        let expired = tonic::TimeoutExpired(()).to_string();
        if status.code() == tonic::Code::Cancelled && status.message() == expired {
            let message = match timeout {
                Some(timeout) => format!("no answer within {} s", timeout.as_secs_f64()),
                None => "request deadline expired".to_owned(),
            };
            return Error::Status {
                code: tonic::Code::DeadlineExceeded,
                message,
            };
        }
        // tonic reports a broken connection as UNKNOWN "transport error" or INTERNAL
        // "h2 protocol error", the cause (a TLS alert, a reset, TLS bytes where HTTP/2
        // was expected) only in the source chain: a status the server sent has no
        // source.
        if matches!(
            status.code(),
            tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Unavailable
        ) && let Some(source) = std::error::Error::source(&status)
        {
            let mut causes: Vec<String> = vec![status.message().to_owned()];
            let mut cause = Some(source);
            while let Some(error) = cause {
                let text = error.to_string();
                // Transports often wrap an error in one that repeats its text.
                if !causes.iter().any(|c| c.contains(text.as_str())) {
                    causes.push(text);
                }
                cause = error.source();
            }
            // Words that say nothing beside the cause.
            causes.retain(|c| !matches!(c.as_str(), "transport error" | "connection error"));
            if causes.is_empty() {
                causes.push(status.message().to_owned());
            }
            return Error::Transport {
                message: causes.join(": "),
            };
        }
        Error::Status {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::from_status(status, None)
    }
}

/// The canonical upper-case name of a gRPC code, e.g. `NOT_FOUND`.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keeps_code_and_message() {
        let err = Error::from(tonic::Status::not_found("no such tag key"));
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert_eq!(err.to_string(), "NOT_FOUND: no such tag key");
    }

    #[test]
    fn client_side_timeout_becomes_deadline_exceeded() {
        let status = tonic::Status::cancelled(tonic::TimeoutExpired(()).to_string());
        let err = Error::from_status(status, Some(Duration::from_secs(30)));
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(err.to_string(), "DEADLINE_EXCEEDED: no answer within 30 s");
    }

    #[test]
    fn other_cancellations_stay_cancelled() {
        let err = Error::from(tonic::Status::cancelled("client went away"));
        assert_eq!(err.code(), tonic::Code::Cancelled);
    }

    #[test]
    fn broken_connections_are_unavailable_with_their_cause() {
        let mut status = tonic::Status::unknown("transport error");
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        status.set_source(std::sync::Arc::new(io));
        let err = Error::from(status);
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(
            err.to_string(),
            "UNAVAILABLE: the connection to the server failed: received fatal alert: CertificateRequired"
        );
        // UNKNOWN sent by a server stays what it is.
        let err = Error::from(tonic::Status::unknown("something odd"));
        assert_eq!(err.code(), tonic::Code::Unknown);
    }

    #[test]
    fn local_errors_have_codes() {
        assert_eq!(
            Error::invalid_argument("x").code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(Error::invalid_response("x").code(), tonic::Code::Internal);
    }
}
