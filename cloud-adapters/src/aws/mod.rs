//! AWS Cloud Map: namespaces, services and instances polled through the official SDK and
//! mapped to clusterset services (docs/sources/aws.md).

pub mod client;
pub mod config;
pub mod mapping;
#[cfg(feature = "testing")]
pub mod moto;

use skybridge_api::catalog::SourceSnapshot;
use skybridge_api::source::{CatalogSource, SourceError};

pub use config::CloudMapConfig;

/// The Cloud Map source: one account and region.
pub struct CloudMap {
    cfg: CloudMapConfig,
    client: aws_sdk_servicediscovery::Client,
    /// Whether the last sync succeeded: only then does the next one wait for `interval` (after a
    /// failure the runner's backoff is the wait).
    last_ok: bool,
    /// What was left out last time, so an unchanged list is not logged on every poll.
    last_skipped: Vec<String>,
}

impl CloudMap {
    /// A source using the standard AWS credential chain.
    pub async fn new(cfg: CloudMapConfig) -> Self {
        let client = client::client(&cfg, None).await;
        CloudMap { cfg, client, last_ok: false, last_skipped: Vec::new() }
    }

    /// A source with fixed credentials (tests against a local server).
    pub async fn with_credentials(cfg: CloudMapConfig, credentials: aws_credential_types::Credentials) -> Self {
        let client = client::client(&cfg, Some(credentials)).await;
        CloudMap { cfg, client, last_ok: false, last_skipped: Vec::new() }
    }

    /// One full read, mapped.
    pub async fn sync(&self) -> Result<mapping::Mapped, SourceError> {
        let namespaces = client::fetch(&self.client, &self.cfg).await?;
        Ok(mapping::map(&self.cfg, &namespaces))
    }
}

impl CatalogSource for CloudMap {
    fn kind(&self) -> &'static str {
        "aws-cloudmap"
    }

    // Every poll returns the whole view; the federator's merge turns an unchanged view into no
    // new version (nothing is pushed) and reuses the unchanged endpoint lists.
    async fn next(&mut self) -> Result<SourceSnapshot, SourceError> {
        if self.last_ok {
            tokio::time::sleep(self.cfg.interval).await;
        }
        self.last_ok = false;
        let mapped = self.sync().await?;
        self.last_ok = true;
        if mapped.skipped_count > 0 && mapped.skipped != self.last_skipped {
            tracing::warn!(
                source = %self.cfg.id,
                skipped = mapped.skipped_count,
                examples = ?mapped.skipped,
                "Cloud Map entries left out of the catalog"
            );
        }
        self.last_skipped = mapped.skipped;
        Ok(mapped.snapshot)
    }
}
