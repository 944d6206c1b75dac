//! `skybridge-gateway`: the gateway alone, as `skybridge gateway` runs it. A separate binary
//! because a process maps the pages of the code it runs: without the federator, the cloud SDKs
//! and the CLI linked in, an idle gateway's resident text is a fraction of the full binary's
//! (docs/benchmarks.md, "Idle footprint").

#[path = "../gateway.rs"]
mod gateway;
#[path = "../logging.rs"]
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run a Skybridge gateway (the same as `skybridge gateway`).
#[derive(Parser)]
#[command(name = "skybridge-gateway", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    /// Path to the gateway config (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the config (and load its certificates) and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // One crypto provider for the whole process, as in `skybridge`.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match gateway::run(&cli.config, cli.check_config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
