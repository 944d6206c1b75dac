//! Azure Kubernetes Service member clusters, discovered through Azure Resource Manager: the
//! Azure half of the "AKS with Azure Kubernetes Fleet Manager" catalog source.
//!
//! - [`AksDiscovery`] lists a fleet's members (`Microsoft.ContainerService/fleets/{fleet}/members`,
//!   paged with `nextLink`), reads each member's managedCluster (region, API server FQDN) and
//!   its user kubeconfig (`listClusterUserCredential`, for the cluster CA), and returns
//!   [`DiscoveredCluster`]s; without a fleet it lists the resource group's managedClusters.
//! - [`AksTokens`] issues Azure AD tokens for the clusters' Kubernetes API (scope
//!   [`tokens::AKS_SCOPE`]), cached and refreshed 5 minutes before expiry.
//! - Requests go through the `azure_core` pipeline (bearer-token and retry policies, explicit
//!   timeouts) with credentials from `azure_identity`; failures become classified
//!   [`SourceError`](skybridge_api::source::SourceError)s whose messages name the fix.
//!
//! Roles the federator's identity needs are listed in [`discover`]. Behind the `testing`
//! feature, [`fake::FakeArm`] serves the documented ARM and Azure AD token endpoints on
//! loopback over HTTPS.

mod arm;
pub mod config;
pub mod credential;
pub mod discover;
mod error;
pub mod kubeconfig;
pub mod source;
pub mod tokens;

#[cfg(feature = "testing")]
pub mod fake;
#[cfg(all(test, feature = "testing"))]
mod tests;

use skybridge_api::model::{Cloud, ClusterId};

pub use config::{AksConfig, CredentialConfig};
pub use discover::AksDiscovery;
pub use error::SetupError;
pub use tokens::AksTokens;

/// A member cluster found through ARM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredCluster {
    /// The cluster name, lowercased (it must be a DNS label).
    pub id: ClusterId,
    /// Always [`Cloud::Azure`].
    pub cloud: Cloud,
    /// The Azure location (`westeurope`).
    pub region: String,
    /// The Kubernetes API server, `https://{fqdn}:443`.
    pub server: String,
    /// PEM of the cluster CA from the user kubeconfig; `None` when the kubeconfig has none.
    pub ca_pem: Option<String>,
    /// The managedCluster's ARM resource id.
    pub resource_id: String,
}

/// A cluster or fleet member left out of the result, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The ARM resource id (or member name) concerned.
    pub resource: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The result of one discovery pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Usable clusters, sorted by id.
    pub clusters: Vec<DiscoveredCluster>,
    /// Members or clusters that were left out (invalid names, stopped, deleted, not AKS).
    pub skipped: Vec<Skipped>,
}
