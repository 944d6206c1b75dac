//! Discovery: fleet members (or a resource group's clusters) → managedClusters → API server
//! URL and cluster CA, as [`DiscoveredCluster`]s.
//!
//! Role assignments the federator's identity needs:
//! - **Reader** on the fleet's resource group (or the fleet): `fleets/members/read`, and on the
//!   member clusters (or their resource groups): `managedClusters/read`;
//! - **Azure Kubernetes Service Cluster User Role** on each member cluster:
//!   `managedClusters/listClusterUserCredential/action`, for the cluster CA;
//! - to read the clusters' Kubernetes API with Azure AD tokens ([`super::AksTokens`]), an
//!   in-cluster RBAC binding (or an Azure RBAC role such as "Azure Kubernetes Service RBAC
//!   Reader") for the same identity.

use std::collections::BTreeSet;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use base64::Engine as _;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use skybridge_api::model::{Cloud, ClusterId};
use skybridge_api::source::{ErrorKind, SourceError};

use super::arm::Arm;
use super::config::AksConfig;
use super::error::{Op, SetupError, Target};
use super::kubeconfig;
use super::{DiscoveredCluster, Discovery, Skipped};

/// Member clusters read at once (two ARM calls each).
const CONCURRENCY: usize = 4;

#[derive(Debug, Deserialize)]
struct FleetMember {
    #[serde(default)]
    name: String,
    #[serde(default)]
    properties: MemberProperties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberProperties {
    #[serde(default)]
    cluster_resource_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ManagedCluster {
    id: String,
    name: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    properties: ClusterProperties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterProperties {
    #[serde(default)]
    fqdn: Option<String>,
    #[serde(default, rename = "privateFQDN")]
    private_fqdn: Option<String>,
    #[serde(default)]
    power_state: Option<PowerState>,
}

#[derive(Debug, Deserialize)]
struct PowerState {
    #[serde(default)]
    code: String,
}

#[derive(Debug, Deserialize)]
struct CredentialResults {
    #[serde(default)]
    kubeconfigs: Vec<CredentialResult>,
}

#[derive(Debug, Deserialize)]
struct CredentialResult {
    #[serde(default)]
    value: String,
}

/// Lists a fleet's (or resource group's) AKS clusters through ARM.
#[derive(Debug, Clone)]
pub struct AksDiscovery {
    cfg: Arc<AksConfig>,
    arm: Arm,
    credential: Arc<dyn TokenCredential>,
}

/// One cluster's outcome: found, or left out with a reason.
enum Outcome {
    Found(DiscoveredCluster),
    Skipped(Skipped),
}

fn skipped(resource: &str, reason: impl Into<String>) -> Outcome {
    Outcome::Skipped(Skipped { resource: resource.to_owned(), reason: reason.into() })
}

/// `true` for `/subscriptions/*/resourceGroups/*/providers/Microsoft.ContainerService/managedClusters/*`.
fn is_managed_cluster_id(id: &str) -> bool {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    parts.len() == 8
        && parts[0].eq_ignore_ascii_case("subscriptions")
        && parts[2].eq_ignore_ascii_case("resourceGroups")
        && parts[4].eq_ignore_ascii_case("providers")
        && parts[5].eq_ignore_ascii_case("Microsoft.ContainerService")
        && parts[6].eq_ignore_ascii_case("managedClusters")
        && parts.iter().all(|p| !p.is_empty() && !p.contains(['?', '#', '%']))
}

impl AksDiscovery {
    /// Builds the credential and ARM client that `cfg` describes.
    pub fn new(cfg: AksConfig) -> Result<Self, SetupError> {
        let http = super::credential::http_client(&cfg)?;
        let credential = super::credential::credential(&cfg, &http)?;
        Self::build(cfg, credential, &http)
    }

    /// Uses `credential` instead of the configured one.
    pub fn with_credential(cfg: AksConfig, credential: Arc<dyn TokenCredential>) -> Result<Self, SetupError> {
        let http = super::credential::http_client(&cfg)?;
        Self::build(cfg, credential, &http)
    }

    fn build(cfg: AksConfig, credential: Arc<dyn TokenCredential>, http: &reqwest::Client) -> Result<Self, SetupError> {
        let arm = Arm::new(&cfg, credential.clone(), http)?;
        Ok(AksDiscovery { cfg: Arc::new(cfg), arm, credential })
    }

    /// The settings.
    pub fn config(&self) -> &AksConfig {
        &self.cfg
    }

    /// A token source for the member clusters' Kubernetes API, from the same credential.
    pub fn tokens(&self) -> super::AksTokens {
        super::AksTokens::new(self.credential.clone(), self.cfg.timeout, self.cfg.credential.kind())
    }

    /// One full read: every cluster that could be turned into a [`DiscoveredCluster`], and
    /// the ones that could not, with reasons. Fails as a whole when the fleet or resource
    /// group cannot be read, so that the federator keeps its last good view.
    pub async fn discover(&self) -> Result<Discovery, SourceError> {
        let outcomes = match &self.cfg.fleet {
            Some(fleet) => self.read_fleet(fleet).await?,
            None => self.read_resource_group().await?,
        };
        let mut clusters: Vec<DiscoveredCluster> = Vec::new();
        let mut skipped = Vec::new();
        let mut seen = BTreeSet::new();
        for o in outcomes {
            match o {
                Outcome::Found(c) if !seen.insert(c.id.clone()) => skipped.push(Skipped {
                    reason: format!("another cluster already has the id {}", c.id),
                    resource: c.resource_id,
                }),
                Outcome::Found(c) => clusters.push(c),
                Outcome::Skipped(s) => skipped.push(s),
            }
        }
        clusters.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Discovery { clusters, skipped })
    }

    async fn read_fleet(&self, fleet: &str) -> Result<Vec<Outcome>, SourceError> {
        let path =
            format!("{}/providers/Microsoft.ContainerService/fleets/{fleet}/members", self.cfg.resource_group_path());
        let resource = format!(
            "fleet {fleet:?} in resource group {:?} (subscription {})",
            self.cfg.resource_group, self.cfg.subscription_id
        );
        let t = Target { op: Op::ListMembers, resource: &resource, api_version_key: "fleet_api_version" };
        let members: Vec<FleetMember> = self.arm.list(self.arm.url(&path, &self.cfg.fleet_api_version), &t).await?;
        stream::iter(members).map(|m| self.member(m)).buffered(CONCURRENCY).try_collect().await
    }

    async fn member(&self, m: FleetMember) -> Result<Outcome, SourceError> {
        let Some(id) = m.properties.cluster_resource_id.filter(|s| !s.is_empty()) else {
            return Ok(skipped(&m.name, "fleet member has no properties.clusterResourceId"));
        };
        if !is_managed_cluster_id(&id) {
            return Ok(skipped(&id, "not an AKS managedCluster (only AKS members are discovered)"));
        }
        let t = Target { op: Op::GetCluster, resource: &id, api_version_key: "aks_api_version" };
        let cluster: ManagedCluster = match self.arm.get(self.arm.url(&id, &self.cfg.aks_api_version), &t).await {
            Ok(c) => c,
            // A member whose cluster was deleted: one stale member must not hide the others.
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(skipped(&id, e.message)),
            Err(e) => return Err(e),
        };
        self.cluster(cluster).await
    }

    async fn read_resource_group(&self) -> Result<Vec<Outcome>, SourceError> {
        let path = format!("{}/providers/Microsoft.ContainerService/managedClusters", self.cfg.resource_group_path());
        let resource =
            format!("resource group {:?} (subscription {})", self.cfg.resource_group, self.cfg.subscription_id);
        let t = Target { op: Op::ListClusters, resource: &resource, api_version_key: "aks_api_version" };
        let clusters: Vec<ManagedCluster> = self.arm.list(self.arm.url(&path, &self.cfg.aks_api_version), &t).await?;
        stream::iter(clusters).map(|c| self.cluster(c)).buffered(CONCURRENCY).try_collect().await
    }

    /// Turns one managedCluster into an outcome, fetching its CA.
    async fn cluster(&self, c: ManagedCluster) -> Result<Outcome, SourceError> {
        let lower = c.name.to_ascii_lowercase();
        let id = match ClusterId::new(&lower) {
            Ok(id) => id,
            Err(e) => {
                return Ok(skipped(&c.id, format!("cluster name {:?} is not a valid cluster id: {e}", c.name)));
            }
        };
        if let Some(ps) = &c.properties.power_state
            && ps.code.eq_ignore_ascii_case("Stopped")
        {
            return Ok(skipped(&c.id, "cluster is stopped (powerState Stopped)"));
        }
        let p = &c.properties;
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let host = if self.cfg.prefer_private_fqdn {
            non_empty(&p.private_fqdn).or_else(|| non_empty(&p.fqdn))
        } else {
            non_empty(&p.fqdn).or_else(|| non_empty(&p.private_fqdn))
        };
        let Some(host) = host else {
            return Ok(skipped(&c.id, "cluster has no fqdn or privateFQDN yet (still provisioning?)"));
        };

        let t = Target { op: Op::Credentials, resource: &c.id, api_version_key: "aks_api_version" };
        let url = self.arm.url(&format!("{}/listClusterUserCredential", c.id), &self.cfg.aks_api_version);
        let creds: CredentialResults = match self.arm.post(url, &t).await {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(skipped(&c.id, e.message)),
            Err(e) => return Err(e),
        };
        let Some(first) = creds.kubeconfigs.first() else {
            return Err(super::error::malformed(&t, "no kubeconfigs in the answer"));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(first.value.trim())
            .map_err(|e| super::error::malformed(&t, format!("kubeconfig is not base64: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| super::error::malformed(&t, "kubeconfig is not UTF-8"))?;
        let kc = kubeconfig::first_cluster(&text).map_err(|e| super::error::malformed(&t, e))?;

        // The kubeconfig's server keeps its port; it is used when it names the chosen host.
        let default_server = format!("https://{host}:443");
        let server = match azure_core::http::Url::parse(&kc.server) {
            Ok(u) if u.scheme() == "https" && u.host_str() == Some(host.as_str()) => kc.server.clone(),
            _ => default_server,
        };
        Ok(Outcome::Found(DiscoveredCluster {
            id,
            cloud: Cloud::Azure,
            region: c.location.to_ascii_lowercase(),
            server,
            ca_pem: kc.ca_pem,
            resource_id: c.id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_managed_cluster_ids() {
        assert!(is_managed_cluster_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-1"
        ));
        assert!(is_managed_cluster_id(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks-1"
        ));
        assert!(!is_managed_cluster_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/arc-1"
        ));
        assert!(!is_managed_cluster_id("/subscriptions/s/resourceGroups/rg"));
        assert!(!is_managed_cluster_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a?x=1"
        ));
    }
}
