//! `rrlat`: a fixed-rate request/response latency meter over plain TCP, and its echo server.
//!
//! ```text
//! rrlat serve --listen 127.0.0.1:7000
//! rrlat run --target 127.0.0.1:7000 --rate 2000 --duration 10s --connections 8 --size 64 [--warmup 1s] [--json]
//! ```

mod client;
mod server;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Fixed-rate request/response latency over plain TCP.
#[derive(Parser)]
#[command(name = "rrlat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a TCP echo server.
    Serve {
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long)]
        listen: String,
    },
    /// Send fixed-size requests at a fixed rate and report the echo latency.
    Run {
        /// host:port of an echo server (or of a proxy in front of one).
        #[arg(long)]
        target: String,
        /// Requests per second, over all connections.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Length of the measurement (e.g. 10s, 500ms).
        #[arg(long, default_value = "10s", value_parser = duration)]
        duration: Duration,
        /// Connections; each carries rate/connections requests per second.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        connections: u32,
        /// Request and response size in bytes.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
        size: u32,
        /// Requests sent before the measurement and not recorded.
        #[arg(long, default_value = "1s", value_parser = duration)]
        warmup: Duration,
        /// A request (or connect) slower than this is an error.
        #[arg(long, default_value = "5s", value_parser = duration)]
        timeout: Duration,
        /// Busy-wait this long before each due time for a precise send (0 = only sleep).
        #[arg(long, default_value = "100us", value_parser = duration)]
        spin: Duration,
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    stats::parse_duration(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { listen } => server::serve(&listen),
        Command::Run { target, rate, duration, connections, size, warmup, timeout, spin, json } => {
            let opts = client::RunOptions {
                target,
                rate,
                duration,
                warmup,
                connections: connections as usize,
                size: size as usize,
                timeout,
                spin,
            };
            client::run(&opts).and_then(|report| {
                if json {
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.to_text());
                }
                if report.ok == 0 {
                    anyhow::bail!("no request succeeded");
                }
                Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rrlat: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
