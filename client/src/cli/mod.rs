//! The `bedrock-attribution` command-line tool.
//!
//! Kept in the library so the binary is a one-line shell and so everything between
//! the command line and the bytes printed can be tested without a server: [`args`]
//! parses, [`request`] builds requests, the `render_*` functions print fixed answers.

pub mod anomalies;
pub mod args;
pub mod budgets;
pub mod chargeback;
mod labels;
mod lists;
pub mod request;
mod rows;
mod status;
mod table;
pub mod watch;
pub mod words;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

pub use args::{Cli, Command, Format};
pub use lists::{render_models, render_principals, render_tag_keys};
pub use rows::{DimColumn, RowLayout, render_rows};
pub use status::{render_refresh, render_status};

use crate::{Client, Error, proto};

/// Exit status for usage errors reported by clap.
const EXIT_USAGE: u8 = 1;
/// Exit status for every other error.
const EXIT_ERROR: u8 = 2;

/// What can stop a command: the client's errors, a refusal of the command line, or a
/// local failure (writing the output, an answer that does not add up). Only the first
/// two carry a gRPC code: a full disk is not the server's answer.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Connecting, the RPC, or reading its answer failed.
    #[error(transparent)]
    Client(#[from] Error),
    /// Writing to standard output failed.
    #[error("cannot write to standard output")]
    Io(#[from] io::Error),
    /// Writing CSV failed.
    #[error("cannot write csv")]
    Csv(#[from] csv::Error),
    /// Writing JSON failed.
    #[error("cannot write json")]
    Json(#[from] serde_json::Error),
    /// Building the Arrow batch of an export failed.
    #[error("cannot build the arrow batch")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Writing Parquet failed.
    #[error("cannot write parquet")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Writing the output file failed; nothing was left at its path.
    #[error("cannot write {}", path.display())]
    Output {
        /// The file asked for with `--output`.
        path: std::path::PathBuf,
        /// What the file system (or the encoder) reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An answer's rows do not add up, so nothing was written.
    #[error("the answer does not reconcile, nothing written: {reason}")]
    Reconcile {
        /// What does not add up.
        reason: String,
    },
    /// The answer is not what the command exists to produce (a chargeback with no
    /// spend, or all of it UNTAGGED), so nothing was written.
    #[error("{reason}")]
    Refused {
        /// What is wrong and what to do.
        reason: String,
    },
    /// The arguments cannot work together.
    #[error("{reason}")]
    Usage {
        /// What to change.
        reason: String,
    },
}

impl CliError {
    /// The gRPC code of the error: the server's (or the client's) for
    /// [`CliError::Client`], `INVALID_ARGUMENT` for usage errors, none for local
    /// failures.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CliError::Client(e) => Some(e.code()),
            CliError::Usage { .. } => Some(tonic::Code::InvalidArgument),
            CliError::Io(_)
            | CliError::Csv(_)
            | CliError::Json(_)
            | CliError::Arrow(_)
            | CliError::Parquet(_)
            | CliError::Output { .. }
            | CliError::Reconcile { .. }
            | CliError::Refused { .. } => None,
        }
    }

    /// The line printed after `error: `: `CODE: message` (the message in the CLI's
    /// words, see [`words`]) or, for local failures, the message alone; then the chain
    /// of causes.
    pub fn report(&self) -> String {
        let mut line = match (self, self.code()) {
            (CliError::Client(e), _) => words::in_cli_words(&e.to_string()),
            (other, Some(code)) => format!("{}: {other}", crate::code_name(code)),
            (other, None) => other.to_string(),
        };
        let mut source = std::error::Error::source(self);
        if let CliError::Client(_) = self {
            // `transparent`: the first source is the client error's own.
            source = source.and_then(std::error::Error::source);
        }
        let mut previous = String::new();
        while let Some(cause) = source {
            // Transports often wrap an error in one that prints the same text.
            let text = cause.to_string();
            if text != previous {
                line.push_str(": ");
                line.push_str(&text);
            }
            previous = text;
            source = cause.source();
        }
        line
    }

    /// The reader went away (`| head`): not worth an error message.
    fn is_broken_pipe(&self) -> bool {
        let kind = match self {
            CliError::Io(e) => Some(e.kind()),
            CliError::Csv(e) => match e.kind() {
                csv::ErrorKind::Io(e) => Some(e.kind()),
                _ => None,
            },
            CliError::Json(e) => e.io_error_kind(),
            CliError::Client(_)
            | CliError::Arrow(_)
            | CliError::Parquet(_)
            | CliError::Output { .. }
            | CliError::Reconcile { .. }
            | CliError::Refused { .. }
            | CliError::Usage { .. } => None,
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    }
}

/// Entry point of the binary: parses the command line, runs it, prints errors as
/// `error: <CODE>: <message>` (`error: <message>` for local failures) and returns 0,
/// 1 (usage) or 2 (any other error).
pub fn main() -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Best effort: there is nowhere left to report a failed write to.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cli.global.token = match args::Token::from_env(|key| std::env::var_os(key)) {
        Ok(token) => token,
        Err(reason) => {
            eprintln!("error: INVALID_ARGUMENT: {reason}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: INTERNAL: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut stdout = io::BufWriter::new(io::stdout().lock());
    let result = runtime
        .block_on(run(&cli, &mut stdout))
        .and_then(|()| stdout.flush().map_err(CliError::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.report());
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Runs one parsed command against the server, writing the answer to `out`.
///
/// Notes of CSV answers go to stderr so that stdout stays loadable.
pub async fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(&cli.global).await?;
    let format = cli.global.format;
    match &cli.command {
        Command::CostByPrincipal(args) => {
            let request = args.to_request();
            let answer = client.cost_by_principal_all(request.clone()).await?;
            notes_to_stderr(format, answer.info.as_ref());
            render_rows(
                out,
                format,
                &RowLayout::cost_by_principal(&request),
                &answer,
            )
        }
        Command::CostByTag(args) => {
            let request = args.to_request();
            let answer = client.cost_by_tag_all(request.clone()).await?;
            notes_to_stderr(format, answer.info.as_ref());
            render_rows(out, format, &RowLayout::cost_by_tag(&request), &answer)
        }
        Command::TokenUsage(args) => {
            let request = args.to_request();
            let answer = client.token_usage_all(request.clone()).await?;
            notes_to_stderr(format, answer.info.as_ref());
            render_rows(out, format, &RowLayout::token_usage(&request), &answer)
        }
        Command::ListPrincipals(args) => {
            let request = args.to_request();
            let grouping = request.grouping();
            let answer = client.list_principals_all(request).await?;
            notes_to_stderr(format, answer.info.as_ref());
            render_principals(out, format, grouping, &answer)
        }
        Command::ListTagKeys(args) => {
            let answer = client.list_tag_keys_all(args.to_request()).await?;
            notes_to_stderr(format, answer.info.as_ref());
            render_tag_keys(out, format, &answer)
        }
        Command::ListModels(args) => {
            let answer = client.list_models_all(args.to_request()).await?;
            notes_to_stderr(format, answer.info.as_ref());
            render_models(out, format, &answer)
        }
        Command::Status => {
            let status = client.data_status(proto::DataStatusRequest {}).await?;
            render_status(out, format, &status)
        }
        Command::Refresh => {
            let refresh = client.refresh(proto::RefreshRequest {}).await?;
            render_refresh(out, format, &refresh)
        }
        Command::Chargeback(args) => chargeback::run(&client, args, out).await,
        Command::CreateBudget(args) => budgets::create(&client, args, format, out).await,
        Command::ListBudgets => budgets::list(&client, format, out).await,
        Command::DeleteBudget(args) => budgets::delete(&client, args, format, out).await,
        Command::BudgetStatus(args) => budgets::status(&client, args, format, out).await,
        Command::SpendAnomalies(args) => anomalies::run(&client, args, format, out).await,
        Command::WatchBudgets(args) => watch::run(&client, args, format, out).await,
    }
}

/// A client as the global options say: server, timeouts, CA, client certificate, token.
async fn connect(global: &args::GlobalArgs) -> Result<Client, CliError> {
    let timeout = Duration::from_secs(global.timeout);
    let mut builder = Client::builder(global.server.clone())
        .connect_timeout(timeout)
        .request_timeout(timeout);
    if let Some(path) = &global.ca_file {
        builder = builder.ca_file(path);
    }
    if let (Some(cert), Some(key)) = (&global.client_cert, &global.client_key) {
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| CliError::Usage {
                reason: format!("{flag} {}: {e}", path.display()),
            })
        };
        builder = builder.identity(read("--client-cert", cert)?, read("--client-key", key)?);
    }
    if let Some(token) = &global.token {
        builder = builder.bearer_token(token.expose());
    }
    Ok(builder.build().await?)
}

fn notes_to_stderr(format: Format, info: Option<&proto::AnswerInfo>) {
    if format == Format::Csv {
        for note in info.map(|i| i.notes.as_slice()).unwrap_or_default() {
            eprintln!("note: {note}");
        }
    }
}

/// One pretty-printed JSON document and a newline.
fn write_json(out: &mut dyn Write, document: &impl serde::Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, document)?;
    writeln!(out)?;
    Ok(())
}
