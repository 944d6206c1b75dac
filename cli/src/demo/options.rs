//! What `skybridge demo` is asked to do: the library's [`DemoOptions`] and the command line
//! that fills them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::DemoError;
use super::topology::{Ports, RttMatrix};

/// What to start and where.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The federator's REST API.
    pub api: SocketAddr,
    /// Every other listener.
    pub ports: Ports,
    /// Working directory to keep (certificates, configs, store); `None`: a temporary one,
    /// removed on shutdown.
    pub dir: Option<PathBuf>,
    pub rtt: RttMatrix,
    /// Added at random to each one-way delay, `0..=jitter`.
    pub jitter: Duration,
    /// How long the gateways may take to get the catalog.
    pub catalog_timeout: Duration,
    /// How long, after that, to wait for every peer to be probed healthy and every route to
    /// prefer the cluster the banner names (smoothed RTTs start from the first probe, which can
    /// be slow while everything starts).
    pub settle_timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            api: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ports: Ports::Base(18000),
            dir: None,
            rtt: RttMatrix::default(),
            jitter: Duration::from_millis(1),
            catalog_timeout: Duration::from_secs(30),
            settle_timeout: Duration::from_secs(20),
        }
    }
}

/// The `skybridge demo` command line.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The federator's REST API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api: SocketAddr,
    /// First port of the demo's range (it uses BASE+1 to BASE+600; 0: any free ports).
    #[arg(long, default_value_t = 18000)]
    pub base_port: u16,
    /// Working directory to create and keep; default: a temporary one removed on exit.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Round-trip times to use instead of the defaults, e.g. aws-gcp=10ms,aws-azure=40ms,gcp-azure=80ms.
    #[arg(long)]
    pub rtt: Option<String>,
}

impl DemoArgs {
    /// The options these flags ask for.
    pub fn options(&self) -> Result<DemoOptions, DemoError> {
        let mut rtt = RttMatrix::default();
        if let Some(spec) = &self.rtt {
            rtt.apply(spec)?;
        }
        let ports = if self.base_port == 0 { Ports::Ephemeral } else { Ports::Base(self.base_port) };
        Ok(DemoOptions { api: self.api, ports, dir: self.dir.clone(), rtt, ..DemoOptions::default() })
    }
}
