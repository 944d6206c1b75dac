//! The `aks-fleet` catalog source: members discovered through ARM, each member's Fleet
//! ServiceExports and EndpointSlices watched through its API server with an Azure AD token for
//! the AKS AAD server scope, kept fresh in the background.

use skybridge_api::catalog::ClusterInfo;
use skybridge_api::source::SourceError;
use tracing::Instrument as _;

use super::{AksConfig, AksDiscovery};
use crate::fleet::{Discovery, Fleet, Member};
use crate::k8s::{ApiServer, ExportApi, SharedToken, Tuning};

/// ARM discovery plus the token the member API servers are called with.
pub struct AksMembers {
    discovery: AksDiscovery,
    token: SharedToken,
    refresher: tokio::task::JoinHandle<()>,
}

impl Drop for AksMembers {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl Discovery for AksMembers {
    fn kind(&self) -> &'static str {
        "aks-fleet"
    }

    async fn discover(&mut self) -> Result<Vec<Member>, SourceError> {
        let found = self.discovery.discover().await?;
        for s in &found.skipped {
            tracing::warn!(resource = %s.resource, reason = %s.reason, "fleet member left out");
        }
        Ok(found
            .clusters
            .into_iter()
            .map(|c| Member {
                cluster: ClusterInfo { id: c.id, cloud: c.cloud, region: c.region, network: None },
                api: ApiServer {
                    url: c.server,
                    ca_pem: c.ca_pem,
                    tls_server_name: None,
                    token: std::sync::Arc::new(self.token.clone()),
                },
            })
            .collect())
    }
}

/// The AKS fleet source.
pub type AksFleet = Fleet<AksMembers>;

/// Builds the source from `cfg` (credentials are resolved here; the first AKS token is
/// fetched before returning, so a credential problem shows as this source's `auth` error).
pub async fn source(cfg: AksConfig) -> Result<AksFleet, SourceError> {
    let discovery = AksDiscovery::new(cfg.clone()).map_err(SourceError::from)?;
    with_discovery(cfg, discovery).await
}

/// As [`source`], with discovery built by the caller (tests pass their own credential).
pub async fn with_discovery(cfg: AksConfig, discovery: AksDiscovery) -> Result<AksFleet, SourceError> {
    let tokens = discovery.tokens();
    let token = SharedToken::new(tokens.token().await?);
    let fresh = token.clone();
    let refresher = tokio::spawn(
        async move { tokens.keep_fresh(fresh).await }.instrument(tracing::info_span!("aks_token_refresh")),
    );
    let members = AksMembers { discovery, token, refresher };
    let tuning = Tuning::with_backoff(cfg.backoff_min, cfg.backoff_max);
    Ok(Fleet::new(
        members,
        cfg.interval,
        vec![ExportApi::AksFleet, ExportApi::AksFleetV1alpha1, ExportApi::Upstream],
        tuning,
    ))
}
