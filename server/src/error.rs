//! The server's errors, and their one mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything that can go wrong while serving a request or building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field, as named in the proto.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The server configuration is unusable.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A page token belongs to another request or an older snapshot.
    #[error("{reason}")]
    StalePageToken {
        /// Why the token cannot be used.
        reason: String,
    },
    /// The answer would exceed a limit.
    #[error("{reason}")]
    TooLarge {
        /// Which limit, and how to stay under it.
        reason: String,
    },
    /// The request's time range touches data that has never been read successfully.
    #[error(
        "{} of {export} cannot be served: {file}: {reason}; it has never been read successfully, so any answer would miss its spend; fix the export or narrow the time range to other billing periods",
        period.as_deref().map_or_else(|| "the export".to_owned(), |p| format!("billing period {p}"))
    )]
    DataUnavailable {
        /// Export root URL.
        export: String,
        /// `YYYY-MM`; `None` when the export itself could never be listed.
        period: Option<String>,
        /// The object that failed.
        file: String,
        /// Why it failed.
        reason: String,
    },
    /// Too many large queries are running and waiting.
    #[error(
        "the server is busy: {running} queries are running and {queued} waiting; retry in {} ms",
        retry_after.as_millis()
    )]
    Overloaded {
        /// Queries running.
        running: usize,
        /// Queries waiting.
        queued: usize,
        /// A wait worth suggesting before retrying.
        retry_after: std::time::Duration,
    },
    /// The request carries no credentials of a known caller.
    #[error("missing or unknown bearer token")]
    Unauthenticated,
    /// The caller's rights or scope do not cover the request.
    #[error("permission denied: {what} {reason}")]
    PermissionDenied {
        /// The request field (`filter.account_ids`) or RPC refused.
        what: String,
        /// Why, and what the caller may do instead.
        reason: String,
    },
    /// No snapshot has been built yet.
    #[error("the billing data is still loading; retry in a few seconds")]
    NotReady,
    /// The request ran past its deadline.
    #[error("the query did not finish within its deadline")]
    Deadline,
    /// DataFusion failed to plan or run a query.
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Arrow failed on a batch.
    #[error("data conversion failed: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Object storage failed.
    #[error("object storage failed: {0}")]
    Storage(#[from] object_store::Error),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::InvalidConfig { .. } => Code::FailedPrecondition,
            Error::StalePageToken { .. } => Code::FailedPrecondition,
            Error::DataUnavailable { .. } => Code::FailedPrecondition,
            Error::TooLarge { .. } => Code::ResourceExhausted,
            Error::Overloaded { .. } => Code::ResourceExhausted,
            Error::Unauthenticated => Code::Unauthenticated,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::NotReady => Code::Unavailable,
            Error::Deadline => Code::DeadlineExceeded,
            Error::Query(_) | Error::Arrow(_) => Code::Internal,
            Error::Storage(_) => Code::Unavailable,
        };
        match code {
            // Internals are logged in full, not sent: the caller cannot act on them.
            Code::Internal => {
                tracing::error!(error = %error, "request failed");
                Status::internal(
                    "the query failed inside the server; the error is in the server log",
                )
            }
            _ => {
                tracing::debug!(error = %error, code = ?code, "request rejected");
                let mut status = Status::new(code, error.to_string());
                if let Error::Overloaded { retry_after, .. } = &error {
                    // gRPC's retry pushback: clients with a retry policy wait this long.
                    if let Ok(v) = retry_after.as_millis().to_string().parse() {
                        status.metadata_mut().insert("grpc-retry-pushback-ms", v);
                    }
                }
                status
            }
        }
    }
}

impl Error {
    /// An INVALID_ARGUMENT error for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}
