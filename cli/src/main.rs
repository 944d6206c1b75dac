//! `skybridge`: the single binary. Parses the command line and hands off to a command.

mod ca;
mod client;
mod federator;
mod gateway;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The federator rebuilds large catalogs on every change; with glibc's allocator the freed memory
// stays in per-thread arenas and RSS ratchets up (measured in docs/benchmarks.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Skybridge: multi-cloud service federation over QUIC with mutual TLS.
#[derive(Parser)]
#[command(name = "skybridge", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway.
    Gateway {
        /// Path to the gateway config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Validate the config (and load its certificates) and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Run the federator (global catalog, gateway control, REST API).
    Federator {
        /// Path to the federator config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Validate the config (and load its certificates) and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Manage the federation's certificate authority.
    Ca {
        #[command(subcommand)]
        command: ca::CaCommand,
    },
    /// Run a whole federation locally: a federator, three gateways named like AWS, Google Cloud
    /// and Azure clusters, sample services and an emulated WAN, all on 127.0.0.1 (docs/demo.md).
    Demo(skybridge_cli::demo::DemoArgs),
    /// Summarize the federation: catalog, clusters, services, gateways, sources, events.
    Status(client::catalog::PlainArgs),
    /// List the catalog's clusters with their gateways and services.
    Clusters(client::catalog::PlainArgs),
    /// List the catalog's services, or show one (namespace/name) in detail.
    Services(client::catalog::ServicesArgs),
    /// Show where each service's new connections go from each cluster.
    Routes(client::routes::RoutesArgs),
    /// Ask the federator where connections would go if some clusters went down (changes nothing).
    #[command(name = "whatif")]
    WhatIf(client::whatif::WhatIfArgs),
    /// Verify a deployment end to end; exits non-zero naming each problem.
    Check(client::check::CheckArgs),
    /// Apply a source's held mass removal now (the federator held an answer that would remove
    /// most of the source's services; docs/federator.md).
    ConfirmRemoval(client::confirm::ConfirmArgs),
    /// Show, set or delete the federator's per-service routing policies.
    Policy(client::policy::PolicyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // One crypto provider for the whole process, aws-lc-rs; deny.toml bans a second (ring).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match cli.command {
        Command::Gateway { config, check_config } => gateway::run(&config, check_config),
        Command::Federator { config, check_config } => federator::run(&config, check_config),
        Command::Ca { command } => ca::run(command),
        Command::Demo(args) => demo(&args),
        Command::Status(args) => client::catalog::status(&args).map_err(Into::into),
        Command::Clusters(args) => client::catalog::clusters(&args).map_err(Into::into),
        Command::Services(args) => client::catalog::services(&args).map_err(Into::into),
        Command::Routes(args) => client::routes::run(&args).map_err(Into::into),
        Command::WhatIf(args) => client::whatif::run(&args).map_err(Into::into),
        Command::Check(args) => client::check::run(&args).map_err(Into::into),
        Command::ConfirmRemoval(args) => client::confirm::run(&args).map_err(Into::into),
        Command::Policy(args) => client::policy::run(&args).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `skybridge demo`: runs until SIGINT/SIGTERM, then stops everything and exits 0.
fn demo(args: &skybridge_cli::demo::DemoArgs) -> anyhow::Result<()> {
    let opts = args.options()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let rt = anyhow::Context::context(rt, "starting the tokio runtime")?;
    rt.block_on(async {
        let stop = async {
            // Without signal handlers nothing could stop the demo cleanly later: stop now.
            if let Err(e) = gateway::wait_for_signal().await {
                tracing::error!(error = %e, "cannot wait for signals; stopping the demo");
            }
        };
        skybridge_cli::demo::run(opts, stop, &mut std::io::stdout()).await
    })?;
    Ok(())
}
