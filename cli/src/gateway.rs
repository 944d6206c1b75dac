//! `skybridge gateway`: load the config, start, wait for SIGTERM/SIGINT, drain.

use std::path::Path;

use anyhow::Context as _;
use skybridge_api::identity::Role;
use skybridge_gateway::app;
use skybridge_gateway::config::Config;
use skybridge_gateway::tls::{CertStore, TlsFiles};

/// Runs a gateway until signalled, or only validates with `check_only`.
pub(crate) fn run(path: &Path, check_only: bool) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    if check_only {
        let files = TlsFiles::from(&cfg.tls);
        // Certificates are part of a valid config only when they exist where it says; a
        // rendered config checked before its Secret is mounted can skip them.
        if std::env::var_os("SKYBRIDGE_CHECK_SKIP_CERTS").is_none() {
            CertStore::load(files, &cfg.gateway.trust_domain, Role::Gateway(cfg.gateway.cluster.clone()))?;
        }
        println!("config {} is valid", path.display());
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")?;
    rt.block_on(async {
        let running = app::start(cfg).await?;
        wait_for_signal().await?;
        running.shutdown().await;
        Ok(())
    })
}

/// Waits for SIGTERM or SIGINT.
pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => { r.context("installing the SIGINT handler")?; tracing::info!("SIGINT received") }
    }
    Ok(())
}
