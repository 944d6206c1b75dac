//! `type = "gke-fleet"` source settings.

use skybridge_api::backoff::Backoff;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::{ConfigError, duration, invalid};
use skybridge_api::model::ClusterId;

use crate::k8s::ExportApi;

/// A GKE fleet (one project's GKE Hub memberships) read with Google application-default
/// credentials or a credentials file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GkeConfig {
    /// The source id (unique among the federator's sources).
    pub id: String,
    /// The fleet host project (id or number).
    pub project: String,
    /// Membership location: `-` for every location, `global`, or a region.
    #[serde(default = "defaults::location")]
    pub location: String,
    /// GKE Hub API endpoint.
    #[serde(default = "defaults::hub_endpoint")]
    pub hub_endpoint: String,
    /// Connect gateway endpoint: how members' API servers are reached unless `clusters` says
    /// otherwise.
    #[serde(default = "defaults::connect_gateway")]
    pub connect_gateway: String,
    /// Google credentials JSON (service account key, `authorized_user`, or `external_account`
    /// for workload identity federation) used instead of application-default credentials.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Per-membership overrides: cluster id, API server and CA.
    #[serde(default)]
    pub clusters: Vec<ClusterOverride>,
    /// ServiceExport API groups to watch.
    #[serde(default = "defaults::export_apis")]
    pub export_apis: Vec<ExportApi>,
    /// How often the memberships are listed again.
    #[serde(default = "defaults::rediscover", with = "duration")]
    pub rediscover: Duration,
    /// How often the bearer token is taken from the credentials (which renew it themselves
    /// before it expires).
    #[serde(default = "defaults::token_refresh", with = "duration")]
    pub token_refresh: Duration,
    /// Limit on one access-token fetch (the metadata server or the credentials' token
    /// endpoint); a hanging one would otherwise stall the source.
    #[serde(default = "defaults::token_timeout", with = "duration")]
    pub token_timeout: Duration,
    /// Limit on one GKE Hub call.
    #[serde(default = "defaults::timeout", with = "duration")]
    pub timeout: Duration,
    /// Retry pacing after a failure: doubles up to `backoff_max`, ±20% jitter.
    #[serde(default = "defaults::backoff_min", with = "duration")]
    pub backoff_min: Duration,
    #[serde(default = "defaults::backoff_max", with = "duration")]
    pub backoff_max: Duration,
}

/// How to reach one membership's API server directly (instead of the connect gateway).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterOverride {
    /// The membership id (the last part of its name).
    pub membership: String,
    /// The cluster id in the catalog; defaults to the membership id.
    #[serde(default)]
    pub cluster: Option<ClusterId>,
    /// `https://…` of the API server.
    #[serde(default)]
    pub server: Option<String>,
    /// PEM file of the API server's CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Defaults, quoted in docs/sources/gcp.md.
pub mod defaults {
    use std::time::Duration;

    use crate::k8s::ExportApi;

    pub fn location() -> String {
        "-".into()
    }
    pub fn hub_endpoint() -> String {
        "https://gkehub.googleapis.com".into()
    }
    pub fn connect_gateway() -> String {
        "https://connectgateway.googleapis.com".into()
    }
    pub fn export_apis() -> Vec<ExportApi> {
        vec![ExportApi::Gke, ExportApi::Upstream]
    }
    pub fn rediscover() -> Duration {
        Duration::from_secs(60)
    }
    pub fn token_refresh() -> Duration {
        Duration::from_secs(60)
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn token_timeout() -> Duration {
        Duration::from_secs(20)
    }
    pub fn backoff_min() -> Duration {
        skybridge_api::backoff::SOURCE_DEFAULT.min
    }
    pub fn backoff_max() -> Duration {
        skybridge_api::backoff::SOURCE_DEFAULT.max
    }
}

impl GkeConfig {
    /// Makes relative file paths (`credentials_file`, `clusters[].ca_file`) relative to `base`,
    /// the config file's folder, so the federator's working directory does not matter.
    pub fn resolve(&mut self, base: &std::path::Path) {
        let files = self.credentials_file.iter_mut().chain(self.clusters.iter_mut().filter_map(|c| c.ca_file.as_mut()));
        for p in files {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Checks what serde cannot; `key` prefixes error keys (`sources[2]`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.project.is_empty() || self.project.contains('/') {
            return Err(invalid(format!("{key}.project"), &self.project, "expected a project id or number"));
        }
        for (name, url) in [("hub_endpoint", &self.hub_endpoint), ("connect_gateway", &self.connect_gateway)] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(format!("{key}.{name}"), url, "expected an http(s):// URL"));
            }
        }
        for (i, c) in self.clusters.iter().enumerate() {
            if c.server.as_deref().is_some_and(|s| !s.starts_with("https://") && !s.starts_with("http://")) {
                return Err(invalid(
                    format!("{key}.clusters[{i}].server"),
                    c.server.as_deref().unwrap_or(""),
                    "expected an http(s):// URL",
                ));
            }
        }
        for (name, d) in [
            ("rediscover", self.rediscover),
            ("token_refresh", self.token_refresh),
            ("timeout", self.timeout),
            ("token_timeout", self.token_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(format!("{key}.{name}"), "0", "must be positive"));
            }
        }
        Backoff::checked_keys(key, self.backoff_min, self.backoff_max)?;
        if self.credentials_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(invalid(
                format!("{key}.credentials_file"),
                "",
                "must not be empty; remove it to use application-default credentials",
            ));
        }
        if self.export_apis.is_empty() {
            return Err(invalid(format!("{key}.export_apis"), "[]", "name at least one ServiceExport API group"));
        }
        Ok(())
    }
}
