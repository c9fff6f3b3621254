//! The server's errors, and their one mapping to gRPC status codes.
//!
//! Every status a caller sees is built here: INVALID_ARGUMENT carries a
//! `google.rpc.BadRequest` naming the field to fix, RESOURCE_EXHAUSTED from admission a
//! `google.rpc.RetryInfo` besides the `grpc-retry-pushback-ms` header, and messages never
//! carry absolute server paths or parser internals (those go to the log).

use std::borrow::Cow;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::period::BillingPeriod;

/// Everything that can go wrong while serving a request or building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field, as named in the proto (`filter.account_ids[2]` for an
        /// element of a list).
        field: Cow<'static, str>,
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
        period.map_or_else(|| "the export".to_owned(), |p| format!("billing period {p}"))
    )]
    DataUnavailable {
        /// Export root URL.
        export: String,
        /// The billing period; `None` when the export itself could never be listed.
        period: Option<BillingPeriod>,
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
    /// One caller already has as many large queries running or waiting as it may.
    #[error(
        "caller {caller} already has {held} large queries running or waiting, the most one caller may; retry in {} ms",
        retry_after.as_millis()
    )]
    CallerOverloaded {
        /// The caller's name.
        caller: String,
        /// Its queries running or waiting.
        held: usize,
        /// A wait worth suggesting before retrying.
        retry_after: std::time::Duration,
    },
    /// A named thing does not exist, or the caller may not see it.
    #[error("{what} not found; {hint}")]
    NotFound {
        /// What was asked for, e.g. `budget "b-12"`.
        what: String,
        /// Where to find what exists.
        hint: String,
    },
    /// The request cannot be done in the current state of the server.
    #[error("{reason}")]
    Precondition {
        /// Why, and what to change.
        reason: String,
    },
    /// A change could not be saved; nothing changed.
    #[error("cannot save the budgets ({reason}); nothing changed, try again")]
    Persist {
        /// Why, without server paths (those are logged).
        reason: String,
    },
    /// No snapshot has been built yet.
    #[error("the billing data is still loading; retry in a few seconds")]
    NotReady,
    /// The server is stopping: long-lived streams end with this.
    #[error("the server is shutting down; open the stream again (another replica answers)")]
    ShuttingDown,
    /// A query needed more memory than the server's query memory pool allows.
    #[error(
        "the query needs more memory than the server allows one query ({detail}); narrow the time range, group by fewer dimensions or use a coarser granularity"
    )]
    QueryMemory {
        /// What DataFusion could not reserve (logged; not sent).
        detail: String,
    },
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
        // DataFusion reports a full memory pool as ResourcesExhausted, possibly wrapped in
        // context: that is the caller's query being too large, not a server fault.
        let error = match error {
            Error::Query(e) if is_resources_exhausted(&e) => Error::QueryMemory {
                detail: e.find_root().to_string(),
            },
            other => other,
        };
        let code = match &error {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::InvalidConfig { .. } => Code::FailedPrecondition,
            Error::StalePageToken { .. } => Code::FailedPrecondition,
            Error::DataUnavailable { .. } => Code::FailedPrecondition,
            Error::TooLarge { .. } => Code::ResourceExhausted,
            Error::Unauthenticated => Code::Unauthenticated,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::QueryMemory { .. } => Code::ResourceExhausted,
            Error::Overloaded { .. } | Error::CallerOverloaded { .. } => Code::ResourceExhausted,
            Error::NotReady | Error::ShuttingDown => Code::Unavailable,
            Error::NotFound { .. } => Code::NotFound,
            Error::Precondition { .. } => Code::FailedPrecondition,
            Error::Persist { .. } => Code::Unavailable,
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
                match &error {
                    Error::InvalidArgument { field, reason } => Status::with_error_details(
                        code,
                        error.to_string(),
                        ErrorDetails::with_bad_request_violation(field.as_ref(), reason.as_str()),
                    ),
                    Error::Overloaded { retry_after, .. }
                    | Error::CallerOverloaded { retry_after, .. } => {
                        let mut status = Status::with_error_details(
                            code,
                            error.to_string(),
                            ErrorDetails::with_retry_info(Some(*retry_after)),
                        );
                        // gRPC's retry pushback: clients with a retry policy wait this long.
                        if let Ok(v) = retry_after.as_millis().to_string().parse() {
                            status.metadata_mut().insert("grpc-retry-pushback-ms", v);
                        }
                        status
                    }
                    Error::DataUnavailable {
                        export,
                        period,
                        file,
                        reason,
                    } => {
                        tracing::warn!(error = %error, "request refused: data unavailable");
                        Status::new(code, unavailable_message(export, *period, file, reason))
                    }
                    Error::QueryMemory { .. } => {
                        tracing::warn!(error = %error, "query refused: memory pool full");
                        Status::with_error_details(
                            code,
                            "the query needs more memory than the server allows one query; narrow the time range, group by fewer dimensions or use a coarser granularity",
                            ErrorDetails::with_quota_failure_violation(
                                "query memory",
                                "the server's --query-memory pool",
                            ),
                        )
                    }
                    _ => Status::new(code, error.to_string()),
                }
            }
        }
    }
}

/// Whether DataFusion ran out of its memory pool, however deep in context the error is.
fn is_resources_exhausted(e: &datafusion::error::DataFusionError) -> bool {
    matches!(
        e.find_root(),
        datafusion::error::DataFusionError::ResourcesExhausted(_)
    ) || e.to_string().contains("Resources exhausted")
}

/// The caller's view of [`Error::DataUnavailable`]: the export named by its URL, or only
/// by its folder name when it is a local path of the server; the file relative to the
/// export root; the reason's first line, without the server's paths.
fn unavailable_message(
    export: &str,
    period: Option<BillingPeriod>,
    file: &str,
    reason: &str,
) -> String {
    let root = export.trim_end_matches('/');
    let shown_export = match root.strip_prefix("file://") {
        Some(path) => path.rsplit('/').next().unwrap_or_default().to_owned(),
        None => root.to_owned(),
    };
    let relative = |text: &str| -> String {
        let mut text = text.replace(&format!("{root}/"), "");
        if let Some(path) = root.strip_prefix("file://") {
            text = text
                .replace(&format!("{path}/"), "")
                .replace(path, &shown_export);
        }
        text
    };
    let file = relative(file);
    let mut reason = relative(reason.lines().next().unwrap_or_default());
    if reason.chars().count() > 200 {
        reason = reason.chars().take(200).collect::<String>() + "...";
    }
    let what = period.map_or_else(
        || "the export".to_owned(),
        |p| format!("billing period {p}"),
    );
    format!(
        "{what} of {shown_export} cannot be served: {file}: {reason}; it has never been read successfully, so any answer would miss its spend; fix the export or narrow the time range to other billing periods"
    )
}

impl Error {
    /// An INVALID_ARGUMENT error for `field`.
    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
