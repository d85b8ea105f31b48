//! The `bindery` binary.

use std::io::IsTerminal;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The media decoders log a client's undecodable input at error level; the client
                // already gets that error, so it is no operator's concern.
                .unwrap_or_else(|_| "bindery=info,warn,symphonia=off".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person watching: a log file or a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = bindery::cli::Cli::parse();
    match bindery::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bindery: {}", bindery::shared::error_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
