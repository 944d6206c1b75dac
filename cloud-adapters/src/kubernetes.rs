//! `type = "kubernetes"`: one cluster's MCS exports read straight from its API server, for
//! clusters outside a managed fleet (on-premises, EKS with the MCS API, kind) or when the
//! federator runs inside the cluster it reads.

use skybridge_api::backoff::Backoff;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use skybridge_api::catalog::ClusterInfo;
use skybridge_api::config::{ConfigError, duration, invalid};
use skybridge_api::model::{Cloud, ClusterId};
use skybridge_api::source::{ErrorKind, SourceError};

use crate::k8s::{ApiServer, ClusterConfig, ClusterWatch, ExportApi, TokenFile, Tuning};

/// Where the in-cluster service account's token and CA are mounted.
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// One Kubernetes cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The source id (unique among the federator's sources).
    pub id: String,
    /// The cluster's id in the catalog.
    pub cluster: ClusterId,
    pub cloud: Cloud,
    pub region: String,
    /// `https://…` of the API server; unset uses the in-cluster address and service account.
    #[serde(default)]
    pub server: Option<String>,
    /// PEM file of the API server's CA; unset trusts the system roots (or, in-cluster, the
    /// service account's `ca.crt`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// File holding the bearer token, read on every request (projected tokens rotate in
    /// place); unset uses the in-cluster service account token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// ServiceExport API groups to watch.
    #[serde(default = "all_apis")]
    pub export_apis: Vec<ExportApi>,
    #[serde(default = "defaults_backoff_min", with = "duration")]
    pub backoff_min: Duration,
    #[serde(default = "defaults_backoff_max", with = "duration")]
    pub backoff_max: Duration,
}

fn all_apis() -> Vec<ExportApi> {
    ExportApi::ALL.to_vec()
}
fn defaults_backoff_min() -> Duration {
    Duration::from_millis(500)
}
fn defaults_backoff_max() -> Duration {
    Duration::from_secs(30)
}

impl KubernetesConfig {
    /// Checks what serde cannot; `key` prefixes error keys (`sources[2]`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if let Some(s) = &self.server
            && !(s.starts_with("https://") || s.starts_with("http://"))
        {
            return Err(invalid(format!("{key}.server"), s, "expected an http(s):// URL"));
        }
        if self.export_apis.is_empty() {
            return Err(invalid(format!("{key}.export_apis"), "[]", "name at least one ServiceExport API group"));
        }
        Backoff::checked_keys(key, self.backoff_min, self.backoff_max)?;
        Ok(())
    }

    /// Paths made absolute against the config file's directory.
    pub fn resolve(&mut self, base: &std::path::Path) {
        for p in [self.ca_file.as_mut(), self.token_file.as_mut()].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// Builds the watch (no I/O until the first `next`).
pub fn source(cfg: &KubernetesConfig) -> Result<ClusterWatch, SourceError> {
    let bad = |m: String| SourceError::new(ErrorKind::NotFound, m);
    let (url, default_ca, default_token) = match &cfg.server {
        Some(s) => (s.clone(), None, None),
        None => {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                bad("no `server` configured and not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset)".into())
            })?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            let host = if host.contains(':') { format!("[{host}]") } else { host };
            (
                format!("https://{host}:{port}"),
                Some(PathBuf::from(SA_DIR).join("ca.crt")),
                Some(PathBuf::from(SA_DIR).join("token")),
            )
        }
    };
    let ca_pem = match cfg.ca_file.clone().or(default_ca) {
        Some(path) => {
            Some(std::fs::read_to_string(&path).map_err(|e| bad(format!("CA file {}: {e}", path.display())))?)
        }
        None => None,
    };
    let token = cfg
        .token_file
        .clone()
        .or(default_token)
        .ok_or_else(|| bad("a `server` needs a `token_file` with a bearer token that can read ServiceExports, Services and EndpointSlices".into()))?;
    let mut api = ApiServer::new(url, TokenFile::new(token));
    api.ca_pem = ca_pem;
    let info = ClusterInfo { id: cfg.cluster.clone(), cloud: cfg.cloud, region: cfg.region.clone(), network: None };
    let mut c = ClusterConfig::new(info, api);
    c.export_apis = cfg.export_apis.clone();
    c.tuning = Tuning::with_backoff(cfg.backoff_min, cfg.backoff_max);
    ClusterWatch::new(c).map_err(|e| SourceError::new(ErrorKind::Malformed, format!("cluster {}: {e}", cfg.cluster)))
}
