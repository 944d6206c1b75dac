//! `skybridge federator`: load the config, start, wait for SIGTERM/SIGINT, drain.

use std::path::Path;

use anyhow::Context as _;
use skybridge_api::identity::Role;
use skybridge_api::tls::{CertStore, TlsFiles};
use skybridge_federator::app;
use skybridge_federator::config::Config;

/// Runs a federator until signalled, or only validates with `check_only`.
pub(crate) fn run(path: &Path, check_only: bool) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    if check_only {
        if std::env::var_os("SKYBRIDGE_CHECK_SKIP_CERTS").is_none() {
            CertStore::load(TlsFiles::from(&cfg.tls), &cfg.federator.trust_domain, Role::Federator)?;
        }
        println!("config {} is valid", path.display());
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")?;
    rt.block_on(async {
        let running = app::start(cfg).await?;
        crate::gateway::wait_for_signal().await?;
        running.shutdown().await;
        Ok(())
    })
}
