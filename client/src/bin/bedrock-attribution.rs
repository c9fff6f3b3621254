//! `bedrock-attribution`: query Amazon Bedrock cost attribution from the command line.
//!
//! Everything lives in [`bedrock_attribution_client::cli`]; this file only calls it.

fn main() -> std::process::ExitCode {
    bedrock_attribution_client::cli::main()
}
