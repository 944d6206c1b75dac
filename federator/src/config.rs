//! The federator's one typed config: TOML, parsed once, unknown keys rejected, errors that
//! name the key, the value and the reason.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
pub use skybridge_api::config::{ConfigError, TlsSection};
use skybridge_api::config::{duration, from_toml, invalid};
use skybridge_api::identity::valid_trust_domain;
use skybridge_cloud_adapters::aks::AksConfig;
use skybridge_cloud_adapters::aws::CloudMapConfig;
use skybridge_cloud_adapters::gke::GkeConfig;
use skybridge_cloud_adapters::kubernetes::KubernetesConfig;

/// The whole federator config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub federator: FederatorSection,
    pub tls: TlsSection,
    #[serde(default)]
    pub listen: ListenSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// Identity and storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatorSection {
    pub trust_domain: String,
    /// Folder for the embedded store (`federator.redb`).
    pub data_dir: PathBuf,
    /// How long a failing source's last good data is served; `"never"` keeps it until the
    /// source recovers or is removed from the config.
    #[serde(default = "defaults::stale_timeout", deserialize_with = "duration::or_never::deserialize")]
    pub stale_timeout: Option<Duration>,
    /// How often the catalog is re-merged even without source changes (stale expiry).
    #[serde(default = "defaults::merge_interval", with = "duration")]
    pub merge_interval: Duration,
}

/// Listen addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    #[serde(default = "defaults::control")]
    pub control: SocketAddr,
    #[serde(default = "defaults::api")]
    pub api: SocketAddr,
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection { control: defaults::control(), api: defaults::api() }
    }
}

/// REST API settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// File holding the bearer token for writes (policies); without it writes are refused.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// Bounds and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Messages queued per gateway before it is treated as lagging (and later resnapshotted).
    #[serde(default = "defaults::gateway_queue")]
    pub gateway_queue: usize,
    #[serde(default = "defaults::hello_timeout", with = "duration")]
    pub hello_timeout: Duration,
    #[serde(default = "defaults::handshake_timeout", with = "duration")]
    pub handshake_timeout: Duration,
    /// Events kept in the store.
    #[serde(default = "defaults::max_events")]
    pub max_events: usize,
    /// Source updates queued for the merge core.
    #[serde(default = "defaults::source_queue")]
    pub source_queue: usize,
    #[serde(default = "defaults::drain_deadline", with = "duration")]
    pub drain_deadline: Duration,
    /// Snapshots being sent at once (each held until the gateway ACKs it); bounds memory when
    /// many gateways (re)connect together.
    #[serde(default = "defaults::concurrent_snapshots")]
    pub concurrent_snapshots: usize,
    /// How long a gateway has to take in a whole snapshot; a session still sending after that
    /// is closed (the gateway reconnects), so a stuck reader cannot hold a snapshot slot.
    #[serde(default = "defaults::snapshot_send_timeout", with = "duration")]
    pub snapshot_send_timeout: Duration,
    /// How long a gateway has to ACK or NACK a snapshot before its slot is given to the next
    /// gateway waiting for one (the session stays open).
    #[serde(default = "defaults::snapshot_ack_timeout", with = "duration")]
    pub snapshot_ack_timeout: Duration,
    /// HTTP/2 PING interval on control connections; finds gateways that vanished without
    /// closing their connection.
    #[serde(default = "defaults::keepalive_interval", with = "duration")]
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    #[serde(default = "defaults::keepalive_timeout", with = "duration")]
    pub keepalive_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        toml::from_str("").expect("all limits have defaults")
    }
}

/// A catalog source.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A catalog file (see docs/federator.md), reloaded when it changes.
    Static {
        id: String,
        path: PathBuf,
        #[serde(default = "defaults::static_interval", with = "duration")]
        interval: Duration,
        #[serde(default = "defaults::backoff_min", with = "duration")]
        backoff_min: Duration,
        #[serde(default = "defaults::backoff_max", with = "duration")]
        backoff_max: Duration,
    },
    /// AWS Cloud Map namespaces of one account and region (docs/sources/aws.md).
    AwsCloudmap(CloudMapConfig),
    /// A GKE fleet: GKE Hub memberships and their MCS exports (docs/sources/gcp.md).
    GkeFleet(GkeConfig),
    /// One Kubernetes cluster's MCS exports (docs/sources/kubernetes.md).
    Kubernetes(KubernetesConfig),
    /// An Azure Kubernetes Fleet Manager fleet (docs/sources/azure.md).
    AksFleet(AksConfig),
}

impl SourceConfig {
    /// The source's id.
    pub fn id(&self) -> &str {
        match self {
            SourceConfig::Static { id, .. } => id,
            SourceConfig::AwsCloudmap(c) => &c.id,
            SourceConfig::GkeFleet(c) => &c.id,
            SourceConfig::Kubernetes(c) => &c.id,
            SourceConfig::AksFleet(c) => &c.id,
        }
    }

    /// The source's type name.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Static { .. } => "static",
            SourceConfig::AwsCloudmap(_) => "aws-cloudmap",
            SourceConfig::GkeFleet(_) => "gke-fleet",
            SourceConfig::Kubernetes(_) => "kubernetes",
            SourceConfig::AksFleet(_) => "aks-fleet",
        }
    }
}

/// Defaults, quoted in docs/federator.md.
pub mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;
    pub fn stale_timeout() -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
    pub fn merge_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn control() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 15010))
    }
    pub fn api() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 8080))
    }
    pub fn gateway_queue() -> usize {
        64
    }
    pub fn hello_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn handshake_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn max_events() -> usize {
        10_000
    }
    pub fn concurrent_snapshots() -> usize {
        4
    }
    pub fn snapshot_send_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn snapshot_ack_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn keepalive_interval() -> Duration {
        Duration::from_secs(20)
    }
    pub fn keepalive_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn source_queue() -> usize {
        64
    }
    pub fn drain_deadline() -> Duration {
        Duration::from_secs(10)
    }
    pub fn static_interval() -> Duration {
        Duration::from_secs(2)
    }
    pub fn backoff_min() -> Duration {
        Duration::from_secs(1)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(60)
    }
}

impl Config {
    /// Reads, parses and validates a config file; relative paths follow the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut cfg = skybridge_api::config::load(path, Config::parse)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rel(&mut cfg.federator.data_dir);
        cfg.tls.resolve(base);
        if let Some(t) = cfg.api.token_file.as_mut() {
            rel(t);
        }
        for s in &mut cfg.sources {
            match s {
                SourceConfig::Static { path, .. } => rel(path),
                SourceConfig::AwsCloudmap(_) => {}
                SourceConfig::Kubernetes(c) => c.resolve(base),
                SourceConfig::AksFleet(c) => {
                    use skybridge_cloud_adapters::aks::CredentialConfig;
                    if let Some(ca) = c.ca_file.as_mut() {
                        rel(ca);
                    }
                    match &mut c.credential {
                        CredentialConfig::ClientSecret { client_secret_file, .. } => rel(client_secret_file),
                        CredentialConfig::WorkloadIdentity { token_file: Some(f), .. } => rel(f),
                        _ => {}
                    }
                }
                SourceConfig::GkeFleet(c) => c.resolve(base),
            }
        }
        Ok(cfg)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = from_toml(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.federator;
        if !valid_trust_domain(&f.trust_domain) {
            return Err(invalid(
                "federator.trust_domain",
                &f.trust_domain,
                "use lowercase letters, digits, '.', '-' or '_'",
            ));
        }
        if f.merge_interval.is_zero() {
            return Err(invalid("federator.merge_interval", "0", "must be positive"));
        }
        let l = &self.limits;
        for (key, v, lo, hi) in [
            ("limits.gateway_queue", l.gateway_queue, 2, 100_000),
            ("limits.max_events", l.max_events, 10, 10_000_000),
            ("limits.source_queue", l.source_queue, 1, 100_000),
            ("limits.concurrent_snapshots", l.concurrent_snapshots, 1, 10_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(invalid(key, v, format!("must be between {lo} and {hi}")));
            }
        }
        for (key, d) in [
            ("limits.snapshot_send_timeout", l.snapshot_send_timeout),
            ("limits.snapshot_ack_timeout", l.snapshot_ack_timeout),
            ("limits.keepalive_interval", l.keepalive_interval),
            ("limits.keepalive_timeout", l.keepalive_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "0s", "must be positive"));
            }
        }
        let mut ids = BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let id = s.id();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                return Err(invalid(format!("sources[{i}].id"), id, "use lowercase letters, digits and '-'"));
            }
            if !ids.insert(id) {
                return Err(invalid(format!("sources[{i}].id"), id, "source ids must be unique"));
            }
            match s {
                SourceConfig::Static { interval, backoff_min, backoff_max, .. } => {
                    if interval.is_zero() || backoff_min.is_zero() || backoff_max < backoff_min {
                        return Err(invalid(
                            format!("sources[{i}]"),
                            id,
                            "interval and backoff_min must be positive, backoff_max at least backoff_min",
                        ));
                    }
                }
                SourceConfig::AwsCloudmap(c) => c.validate(&format!("sources[{i}]"))?,
                SourceConfig::GkeFleet(c) => c.validate(&format!("sources[{i}]"))?,
                SourceConfig::Kubernetes(c) => c.validate(&format!("sources[{i}]"))?,
                SourceConfig::AksFleet(c) => c.validate(&format!("sources[{i}]"))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[federator]
trust_domain = "corp.example"
data_dir = "data"

[tls]
cert = "c.pem"
key = "k.pem"
trust_bundle = "ca.pem"

[[sources]]
type = "static"
id = "static"
path = "catalog.toml"
"#;

    #[test]
    fn base_and_defaults() {
        let c = Config::parse(BASE).unwrap();
        assert_eq!(c.listen.control.port(), 15010);
        assert_eq!(c.federator.stale_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(c.sources[0].kind(), "static");
        let never =
            Config::parse(&BASE.replace("data_dir = \"data\"", "data_dir = \"data\"\nstale_timeout = \"never\""))
                .unwrap();
        assert_eq!(never.federator.stale_timeout, None);
    }

    #[test]
    fn credential_files_follow_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{BASE}[[sources]]\ntype = \"gke-fleet\"\nid = \"gke\"\nproject = \"p\"\ncredentials_file = \"gcp.json\"\n\
             [[sources]]\ntype = \"aks-fleet\"\nid = \"aks\"\nsubscription_id = \"00000000-0000-0000-0000-000000000000\"\n\
             resource_group = \"rg\"\ncredential = {{ kind = \"workload-identity\", token_file = \"azure/token\" }}\n"
        );
        let path = dir.path().join("federator.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let SourceConfig::GkeFleet(gke) = &c.sources[1] else { panic!("{:?}", c.sources[1]) };
        assert_eq!(gke.credentials_file.as_deref(), Some(dir.path().join("gcp.json").as_path()));
        let SourceConfig::AksFleet(aks) = &c.sources[2] else { panic!("{:?}", c.sources[2]) };
        let skybridge_cloud_adapters::aks::CredentialConfig::WorkloadIdentity { token_file, .. } = &aks.credential
        else {
            panic!("{:?}", aks.credential)
        };
        assert_eq!(token_file.as_deref(), Some(dir.path().join("azure/token").as_path()));
    }

    const AWS: &str = "[[sources]]\ntype = \"aws-cloudmap\"\nid = \"aws-prod\"\nregion = \"us_east\"\n";

    #[test]
    fn cloud_map_source() {
        let c = Config::parse(&format!("{BASE}{}", AWS.replace("us_east", "us-east-1"))).unwrap();
        let SourceConfig::AwsCloudmap(aws) = &c.sources[1] else { panic!("{:?}", c.sources[1]) };
        assert_eq!(
            (aws.id.as_str(), aws.region.as_str(), aws.interval),
            ("aws-prod", "us-east-1", Duration::from_secs(30))
        );
        assert_eq!(c.sources[1].kind(), "aws-cloudmap");
    }

    #[test]
    fn errors_name_the_key() {
        for (text, needle) in [
            (BASE.replace("type = \"static\"", "type = \"ldap\""), "ldap"),
            (BASE.replace("id = \"static\"", "id = \"Static\""), "sources[0].id"),
            (format!("{BASE}\n[limits]\ngateway_queue = 1\n"), "limits.gateway_queue"),
            (format!("{BASE}\n[limits]\nhello_timeout = \"5 s\"\n"), "hello_timeout"),
            (format!("{BASE}\n[[sources]]\ntype = \"static\"\nid = \"static\"\npath = \"x\"\n"), "unique"),
            (BASE.replace("path = \"catalog.toml\"", "path = \"catalog.toml\"\nurl = \"x\""), "url"),
            (format!("{BASE}{AWS}"), "sources[1].region"),
            (format!("{BASE}{}", AWS.replace("us_east", "us-east-1\"\nnamespace = \"x")), "namespace"),
            (format!("{BASE}{}", AWS.replace("us_east\"", "us-east-1\"\nmax_attempts = 0")), "max_attempts"),
        ] {
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
