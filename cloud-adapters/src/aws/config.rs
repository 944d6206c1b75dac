//! `type = "aws-cloudmap"` source settings (a `[[sources]]` entry of the federator config).

use skybridge_api::backoff::Backoff;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::{ConfigError, duration, invalid};
use skybridge_api::model::{ClusterId, Protocol, ServiceKey};

/// One AWS account and region's Cloud Map namespaces. Several accounts or regions are several
/// sources.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudMapConfig {
    /// The source id (unique among the federator's sources).
    pub id: String,
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// Named profile from the shared config files; unset uses the default credential chain
    /// (environment, profile, web identity for IRSA, container and instance metadata).
    #[serde(default)]
    pub profile: Option<String>,
    /// Overrides the Cloud Map endpoint (VPC endpoints, or a local test server).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Namespace names to read; empty reads every namespace the credentials can list.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Cloud Map namespace name → clusterset namespace. Unlisted namespaces map to their first
    /// DNS label (`prod.example.local` → `prod`).
    #[serde(default)]
    pub namespace_map: BTreeMap<String, String>,
    /// Instance attribute naming the instance's cluster.
    #[serde(default = "defaults::cluster_attribute")]
    pub cluster_attribute: String,
    /// Cluster for instances without that attribute; unset skips them.
    #[serde(default)]
    pub default_cluster: Option<ClusterId>,
    /// Instance attribute holding the availability zone (ECS registers `AVAILABILITY_ZONE`).
    #[serde(default = "defaults::zone_attribute")]
    pub zone_attribute: String,
    /// Instance attribute with the service port clients call; unset uses `AWS_INSTANCE_PORT`.
    #[serde(default = "defaults::port_attribute")]
    pub port_attribute: String,
    /// Instance attribute with the protocol (`tls`, `http`, `tcp`).
    #[serde(default = "defaults::protocol_attribute")]
    pub protocol_attribute: String,
    /// Protocol when the attribute is absent.
    #[serde(default = "defaults::protocol")]
    pub default_protocol: Protocol,
    /// Time between polls.
    #[serde(default = "defaults::interval", with = "duration")]
    pub interval: Duration,
    /// Limit on one API call, retries included.
    #[serde(default = "defaults::timeout", with = "duration")]
    pub timeout: Duration,
    /// Attempts per API call (the SDK retries throttling and transient errors with jittered
    /// exponential backoff); after that the sync fails and the source backs off.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Services whose instances are fetched at once.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Retry pacing after a failed sync: doubles up to `backoff_max`, ±20% jitter.
    #[serde(default = "defaults::backoff_min", with = "duration")]
    pub backoff_min: Duration,
    #[serde(default = "defaults::backoff_max", with = "duration")]
    pub backoff_max: Duration,
}

/// Defaults, quoted in docs/sources/aws.md.
pub mod defaults {
    use std::time::Duration;

    use skybridge_api::model::Protocol;

    pub fn cluster_attribute() -> String {
        "cluster".into()
    }
    pub fn zone_attribute() -> String {
        "AVAILABILITY_ZONE".into()
    }
    pub fn port_attribute() -> String {
        "skybridge.port".into()
    }
    pub fn protocol_attribute() -> String {
        "skybridge.protocol".into()
    }
    pub fn protocol() -> Protocol {
        Protocol::Tcp
    }
    pub fn interval() -> Duration {
        Duration::from_secs(30)
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_attempts() -> u32 {
        3
    }
    pub fn concurrency() -> usize {
        4
    }
    pub fn backoff_min() -> Duration {
        skybridge_api::backoff::SOURCE_DEFAULT.min
    }
    pub fn backoff_max() -> Duration {
        skybridge_api::backoff::SOURCE_DEFAULT.max
    }
}

impl CloudMapConfig {
    /// Checks what serde cannot; `key` prefixes error keys (`sources[2]`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.region.is_empty()
            || !self.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(format!("{key}.region"), &self.region, "expected an AWS region such as us-east-1"));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(format!("{key}.endpoint_url"), url, "expected an http:// or https:// URL"));
        }
        for (from, to) in &self.namespace_map {
            if ServiceKey::new(to, "x").is_err() {
                return Err(invalid(
                    format!("{key}.namespace_map.\"{from}\""),
                    to,
                    "a clusterset namespace must be a DNS-1123 label",
                ));
            }
        }
        for (name, d) in [("interval", self.interval), ("timeout", self.timeout)] {
            if d.is_zero() {
                return Err(invalid(format!("{key}.{name}"), "0", "must be positive"));
            }
        }
        Backoff::checked_keys(key, self.backoff_min, self.backoff_max)?;
        if !(1..=10).contains(&self.max_attempts) {
            return Err(invalid(format!("{key}.max_attempts"), self.max_attempts, "must be between 1 and 10"));
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(invalid(format!("{key}.concurrency"), self.concurrency, "must be between 1 and 64"));
        }
        Ok(())
    }
}
