//! A fake Azure Resource Manager and Azure AD token endpoint for tests (feature `testing`).
//!
//! No ARM emulator exists; this serves, over HTTPS on 127.0.0.1 (the Azure SDK sends bearer
//! tokens over TLS only), the documented request paths and JSON bodies the AKS source uses,
//! so that the production client runs with only `arm_endpoint`, `authority_host` and
//! `ca_file` changed:
//!
//! - `GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/fleets/{fleet}/members`
//!   and `.../managedClusters`: `{"value": [...], "nextLink": ...}` pages of
//!   [`FakeArm::set_page_size`] items (`$skipToken`);
//! - `GET .../managedClusters/{name}` and `POST .../managedClusters/{name}/listClusterUserCredential`
//!   (`{"kubeconfigs":[{"name":"clusterUser","value":<base64 kubeconfig>}]}`);
//! - `api-version` checked per resource type: 400 `MissingApiVersionParameter` /
//!   `InvalidApiVersionParameter` as ARM answers;
//! - `Authorization: Bearer` required, with a token this fake issued for the ARM audience
//!   (`{base}/.default`) that has not expired: 401 `AuthenticationFailed`,
//!   `InvalidAuthenticationToken`, `ExpiredAuthenticationToken` or
//!   `InvalidAuthenticationTokenAudience` otherwise, with ARM's error body;
//! - `POST /{tenant}/oauth2/v2.0/token` (client-credentials grant) for one service principal,
//!   authenticated by its client secret or, as AKS workload identity does, by a
//!   `client_assertion` (`jwt-bearer`) equal to the projected service-account token its
//!   federated credential accepts ([`FakeArm::set_federated_assertion`]); answering
//!   `{"token_type":"Bearer","expires_in":N,"access_token":...}` or an AADSTS error;
//! - 404 `ResourceGroupNotFound` / `ResourceNotFound` / `SubscriptionNotFound` bodies.
//!
//! Test controls: clusters and members added and removed, token lifetime and expiry, injected
//! 429 (with `Retry-After`), 5xx, 403 and malformed answers, and the request log.

mod http;
mod state;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

pub use state::{AKS_API_VERSIONS, ArmState, FLEET_API_VERSIONS, FakeCluster, Fault, Injection, RecordedRequest};

use super::config::{AksConfig, CredentialConfig, defaults};

/// The running fake; stops (and deletes its files) when dropped.
pub struct FakeArm {
    addr: SocketAddr,
    state: http::Shared,
    ca_pem: String,
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl FakeArm {
    /// The subscription the fake serves.
    pub const SUBSCRIPTION: &'static str = "00000000-0000-0000-0000-0000000a1b2c";
    /// The tenant of its token endpoint.
    pub const TENANT: &'static str = "11111111-2222-3333-4444-555555555555";
    /// The service principal its token endpoint accepts.
    pub const CLIENT_ID: &'static str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    /// That principal's secret (written to [`FakeArm::secret_file`]).
    pub const CLIENT_SECRET: &'static str = "fake~client~secret";

    /// Starts an empty fake on 127.0.0.1 with a fresh CA.
    pub async fn start() -> io::Result<Self> {
        let certs = crate::testing_tls::material("skybridge FakeArm test CA")?;
        let tcp = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = tcp.local_addr()?;
        let base = format!("https://{addr}");
        let state: http::Shared = Arc::new(Mutex::new(ArmState::new(
            base,
            Self::SUBSCRIPTION,
            Self::TENANT,
            Self::CLIENT_ID,
            Self::CLIENT_SECRET,
        )));
        let dir = std::env::temp_dir().join(format!("skybridge-fakearm-{}-{}", std::process::id(), addr.port()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ca.pem"), &certs.ca_pem)?;
        std::fs::write(dir.join("client-secret"), format!("{}\n", Self::CLIENT_SECRET))?;

        let listener = crate::testing_tls::TlsListener { tcp, acceptor: certs.acceptor };
        let app = axum::Router::new().fallback(http::handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "FakeArm stopped");
            }
        });
        Ok(FakeArm { addr, state, ca_pem: certs.ca_pem, dir, task })
    }

    /// The base URL, used both as `arm_endpoint` and `authority_host`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// PEM of the CA that signed the fake's server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A file holding [`FakeArm::ca_pem`], for `ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A file holding [`FakeArm::CLIENT_SECRET`] (with a trailing newline, as `echo` writes).
    pub fn secret_file(&self) -> PathBuf {
        self.dir.join("client-secret")
    }

    /// The folder of the fake's files (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A config that reaches this fake with the client-secret credential; `fleet: None`
    /// lists the resource group's clusters.
    pub fn config(&self, resource_group: &str, fleet: Option<&str>) -> AksConfig {
        AksConfig {
            id: "aks-test".into(),
            subscription_id: Self::SUBSCRIPTION.into(),
            resource_group: resource_group.into(),
            fleet: fleet.map(str::to_owned),
            arm_endpoint: self.url(),
            authority_host: Some(self.url()),
            ca_file: Some(self.ca_file()),
            credential: CredentialConfig::ClientSecret {
                tenant_id: Self::TENANT.into(),
                client_id: Self::CLIENT_ID.into(),
                client_secret_file: self.secret_file(),
            },
            prefer_private_fqdn: false,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            max_retries: 2,
            backoff_min: defaults::backoff_min(),
            backoff_max: defaults::backoff_max(),
            fleet_api_version: defaults::fleet_api_version(),
            aks_api_version: defaults::aks_api_version(),
        }
    }

    /// As [`FakeArm::config`], with AKS workload identity: the federated token read from
    /// `token_file` (what `AZURE_FEDERATED_TOKEN_FILE` names in a pod), given explicitly so
    /// tests need no process environment.
    pub fn workload_identity_config(&self, resource_group: &str, fleet: Option<&str>, token_file: &Path) -> AksConfig {
        let mut cfg = self.config(resource_group, fleet);
        cfg.credential = CredentialConfig::WorkloadIdentity {
            tenant_id: Some(Self::TENANT.into()),
            client_id: Some(Self::CLIENT_ID.into()),
            token_file: Some(token_file.to_owned()),
        };
        cfg
    }

    /// The assertion the app's federated credential accepts from now on (`None`: none).
    pub fn set_federated_assertion(&self, assertion: Option<&str>) {
        self.update(|s| s.federated_assertion = assertion.map(str::to_owned))
    }

    /// The access tokens issued for `scope` so far, in order.
    pub fn tokens_for(&self, scope: &str) -> Vec<String> {
        self.update(|s| s.tokens_for(scope))
    }

    /// Runs `f` with the state locked: several changes become visible at once.
    pub fn update<R>(&self, f: impl FnOnce(&mut ArmState) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// Creates or replaces a cluster; returns its ARM id.
    pub fn put_cluster(&self, c: FakeCluster) -> String {
        self.update(|s| s.put_cluster(c))
    }

    /// Deletes a cluster (its fleet members stay, as in Azure).
    pub fn remove_cluster(&self, resource_group: &str, name: &str) -> bool {
        self.update(|s| s.remove_cluster(resource_group, name))
    }

    /// Creates an empty fleet.
    pub fn add_fleet(&self, resource_group: &str, fleet: &str) {
        self.update(|s| s.add_fleet(resource_group, fleet))
    }

    /// Adds or replaces a fleet member pointing at `cluster_resource_id`.
    pub fn put_member(&self, resource_group: &str, fleet: &str, member: &str, cluster_resource_id: &str) {
        self.update(|s| s.put_member(resource_group, fleet, member, cluster_resource_id))
    }

    /// Removes a fleet member.
    pub fn remove_member(&self, resource_group: &str, fleet: &str, member: &str) -> bool {
        self.update(|s| s.remove_member(resource_group, fleet, member))
    }

    /// Items per list page (a `nextLink` follows when more remain).
    pub fn set_page_size(&self, n: usize) {
        self.update(|s| s.page_size = n)
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_token_ttl(&self, secs: u64) {
        self.update(|s| s.token_ttl = secs)
    }

    /// Makes every token issued so far expired.
    pub fn expire_tokens(&self) {
        self.update(ArmState::expire_tokens)
    }

    /// Queues an injected fault.
    pub fn inject(&self, i: Injection) {
        self.update(|s| s.inject(i))
    }

    /// Scopes of the tokens issued so far, in order.
    pub fn issued_scopes(&self) -> Vec<String> {
        self.update(|s| s.issued_scopes())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.update(|s| s.requests())
    }
}
