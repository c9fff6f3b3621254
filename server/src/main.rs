//! `bedrock-attribution-server`: serves Bedrock cost attribution over gRPC.

use std::process::ExitCode;

use bedrock_attribution_server::{
    Config,
    demo::{DemoConfig, generate},
    server, telemetry,
};
use clap::Parser;

/// mimalloc instead of the system allocator: queries allocate many short-lived Arrow
/// buffers on every core, and glibc's malloc spent a third of a loaded server's CPU
/// (arena locks, consolidation); with mimalloc the same load took a quarter less CPU
/// per answer (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let mut config = Config::parse();
    let telemetry = match telemetry::init(&config.telemetry) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = serve(&mut config).await;
    // The spans of the last requests and of the shutdown are still buffered.
    telemetry.shutdown().await;
    code
}

async fn serve(config: &mut Config) -> ExitCode {
    if config.data.demo {
        let root = config.data.demo_dir.join("acme-cur2");
        if root.exists()
            && let Err(e) = std::fs::remove_dir_all(&root)
        {
            tracing::error!(path = %root.display(), "cannot clear the demo folder: {e}");
            return ExitCode::FAILURE;
        }
        match generate(&root, &DemoConfig::demo()) {
            Ok(written) => {
                tracing::info!(path = %root.display(), periods = written.periods.len(), line_items = written.line_items, "demo dataset written")
            }
            Err(e) => {
                tracing::error!(path = %root.display(), "cannot write the demo dataset: {e}");
                return ExitCode::FAILURE;
            }
        }
        match std::path::absolute(&root) {
            Ok(abs) => config
                .data
                .sources
                .push(format!("file://{}", abs.display())),
            Err(e) => {
                tracing::error!("cannot resolve the demo folder: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let result = async {
        let catalog = server::catalog_from(&config.data)?;
        let handle = server::start(config, catalog).await?;
        handle.run_until(server::shutdown_signal()).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
