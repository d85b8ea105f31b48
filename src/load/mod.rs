//! `bindery load`: a gRPC load generator for bindery servers.
//! CONTRACT STUB: implementation pending.

use clap::Args;

/// Options of `bindery load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
}

/// Runs a load test; returns the process exit code (non-zero when an SLO is missed).
pub async fn run(args: LoadArgs) -> anyhow::Result<std::process::ExitCode> {
    let _ = args;
    anyhow::bail!("not implemented")
}
