//! The federator's one typed config: TOML, parsed once, unknown keys rejected, errors that
//! name the key, the value and the reason.

use skybridge_api::backoff::Backoff;
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

mod api;
mod etcd;
mod policies;
pub use api::{ApiSection, ApiTls};
pub use etcd::{EtcdConfig, EtcdTls};
pub use policies::PoliciesSection;
pub use skybridge_api::config::AuthorizationSection;

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
    pub authorization: AuthorizationSection,
    #[serde(default)]
    pub policies: PoliciesSection,
    #[serde(default)]
    pub limits: Limits,
    /// Where the catalog, policies, gateways and events are kept (docs/federator.md, "Store").
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// Identity and storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatorSection {
    pub trust_domain: String,
    /// Folder for the embedded store (`federator.redb`); required with `store.backend =
    /// "embedded"`, unused with etcd.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// This replica's name, shown in `/api/v1/federators` and unique among replicas; default
    /// `$HOSTNAME` (the pod name), else `federator`.
    #[serde(default)]
    pub name: Option<String>,
    /// A gateway connected to no replica for this long is removed (with an event): rollouts
    /// leave no records of dead pods behind for peers to dial.
    #[serde(default = "defaults::gateway_expiry", with = "duration")]
    pub gateway_expiry: Duration,
    /// A sync that would remove more than this share of a source's services (0.0 to 1.0; 1.0:
    /// only one removing all of them) is held: the previous data stays served.
    #[serde(default = "defaults::removal_guard")]
    pub removal_guard: f64,
    /// How long a held answer must stand before it applies by itself (an operator can confirm
    /// it sooner).
    #[serde(default = "defaults::removal_hold", with = "duration")]
    pub removal_hold: Duration,
    /// How long a failing source's last good data is served; `"never"` keeps it until the
    /// source recovers or is removed from the config.
    #[serde(default = "defaults::stale_timeout", deserialize_with = "duration::or_never::deserialize")]
    pub stale_timeout: Option<Duration>,
    /// How often the catalog is re-merged even without source changes (stale expiry).
    #[serde(default = "defaults::merge_interval", with = "duration")]
    pub merge_interval: Duration,
    /// `[[tls.federated]]` domains (each with `clusters`) whose roots are pushed to gateways,
    /// which take them within their own `[federator] distributed_trust` globs.
    #[serde(default)]
    pub distribute_trust: Vec<String>,
}

/// The store backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreSection {
    /// One redb file in `federator.data_dir`: a single federator process.
    #[default]
    Embedded,
    /// An etcd cluster shared by several federator replicas, one of them elected leader.
    Etcd(Box<EtcdConfig>),
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
    /// Catalog deltas kept so that a gateway reconnecting with a recent version (from another
    /// replica, or after a short break) catches up with deltas instead of a snapshot.
    #[serde(default = "defaults::catalog_history")]
    pub catalog_history: usize,
    /// Control connections (TLS included) open at once; more are closed at accept.
    #[serde(default = "defaults::max_control_connections")]
    pub max_control_connections: usize,
    /// Accept queue of the control and API listeners: a fleet of gateways reconnecting at once
    /// past it waits a second for the SYN retransmit; the kernel caps it at `net.core.somaxconn`.
    #[serde(default = "defaults::listen_backlog")]
    pub listen_backlog: usize,
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
        /// Larger files are refused (default 64 MiB, at most 1 GiB).
        #[serde(default = "defaults::static_max_size")]
        max_size: u64,
        /// How long one read may take (default 10s, at most 300s).
        #[serde(default = "defaults::static_read_timeout", with = "duration")]
        read_timeout: Duration,
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
    pub fn gateway_expiry() -> Duration {
        Duration::from_secs(600)
    }
    pub fn removal_guard() -> f64 {
        0.5
    }
    pub fn removal_hold() -> Duration {
        Duration::from_secs(300)
    }
    pub fn etcd_prefix() -> String {
        "/skybridge".into()
    }
    pub fn lease_ttl() -> Duration {
        Duration::from_secs(5)
    }
    pub fn etcd_connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn etcd_max_txn_ops() -> usize {
        128
    }
    pub fn etcd_max_txn_bytes() -> usize {
        1024 * 1024
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
    pub fn catalog_history() -> usize {
        64
    }
    pub fn listen_backlog() -> usize {
        skybridge_api::serve::DEFAULT_LISTEN_BACKLOG
    }
    pub fn max_control_connections() -> usize {
        1024
    }
    pub fn api_max_connections() -> usize {
        1024
    }
    pub fn api_header_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn api_idle_timeout() -> Duration {
        Duration::from_secs(120)
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
    pub fn static_max_size() -> u64 {
        64 << 20
    }
    pub fn static_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn backoff_min() -> Duration {
        skybridge_api::backoff::SOURCE_DEFAULT.min
    }
    pub fn backoff_max() -> Duration {
        skybridge_api::backoff::SOURCE_DEFAULT.max
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
        if let Some(d) = cfg.federator.data_dir.as_mut() {
            rel(d);
        }
        if let StoreSection::Etcd(e) = &mut cfg.store {
            if let Some(t) = e.tls.as_mut() {
                rel(&mut t.ca);
                for p in t.cert.iter_mut().chain(t.key.iter_mut()) {
                    rel(p);
                }
            }
            if let Some(p) = e.password_file.as_mut() {
                rel(p);
            }
        }
        cfg.tls.resolve(base);
        if let Some(t) = cfg.api.token_file.as_mut() {
            rel(t);
        }
        cfg.check_files()?;
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

    /// Checks the files and folders the config names that are not certificates (those are
    /// loaded and checked by the TLS store): the token file is readable, the data folder is not
    /// a file.
    fn check_files(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.api.token_file
            && let Err(e) = std::fs::read_to_string(t)
        {
            return Err(invalid("api.token_file", t.display(), format!("cannot be read: {e}")));
        }
        if let Some(p) = &self.policies.path
            && let Err(e) = crate::policies::file::load(p)
        {
            return Err(invalid("policies.path", p.display(), e));
        }
        if let (StoreSection::Embedded, Some(d)) = (&self.store, &self.federator.data_dir)
            && d.exists()
            && !d.is_dir()
        {
            return Err(invalid("federator.data_dir", d.display(), "is a file, not a folder"));
        }
        Ok(())
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
        if let Some(name) = &f.name
            && !valid_replica_name(name)
        {
            return Err(invalid("federator.name", name, "use 1 to 253 letters, digits, '-', '.' or '_'"));
        }
        if f.gateway_expiry < Duration::from_secs(10) || f.gateway_expiry > Duration::from_secs(30 * 86_400) {
            return Err(invalid(
                "federator.gateway_expiry",
                duration::format(f.gateway_expiry),
                "must be between 10s and 30d",
            ));
        }
        if !(0.0..=1.0).contains(&f.removal_guard) {
            return Err(invalid("federator.removal_guard", f.removal_guard, "must be a share from 0.0 to 1.0"));
        }
        if f.removal_hold > Duration::from_secs(7 * 86_400) {
            return Err(invalid("federator.removal_hold", duration::format(f.removal_hold), "must be at most 7d"));
        }
        match &self.store {
            StoreSection::Embedded => {
                if f.data_dir.is_none() {
                    return Err(invalid(
                        "federator.data_dir",
                        "(missing)",
                        "the embedded store needs a folder for its file; set data_dir, or use [store] backend = \"etcd\"",
                    ));
                }
            }
            StoreSection::Etcd(e) => e.validate()?,
        }
        let l = &self.limits;
        for (key, v, lo, hi) in [
            ("limits.gateway_queue", l.gateway_queue, 2, 100_000),
            ("limits.max_events", l.max_events, 10, 10_000_000),
            ("limits.source_queue", l.source_queue, 1, 100_000),
            ("limits.concurrent_snapshots", l.concurrent_snapshots, 1, 10_000),
            ("limits.catalog_history", l.catalog_history, 0, 10_000),
            ("limits.max_control_connections", l.max_control_connections, 1, 1_000_000),
            ("limits.listen_backlog", l.listen_backlog, 1, 65_535),
            ("api.max_connections", self.api.max_connections, 1, 1_000_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(invalid(key, v, format!("must be between {lo} and {hi}")));
            }
        }
        // Every duration has a ceiling: arithmetic on instants must never overflow, and a
        // timeout of years is a typo, not a setting.
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(86_400);
        for (key, d, max) in [
            ("limits.snapshot_send_timeout", l.snapshot_send_timeout, HOUR),
            ("limits.snapshot_ack_timeout", l.snapshot_ack_timeout, HOUR),
            ("limits.keepalive_interval", l.keepalive_interval, HOUR),
            ("limits.keepalive_timeout", l.keepalive_timeout, HOUR),
            ("limits.hello_timeout", l.hello_timeout, HOUR),
            ("limits.handshake_timeout", l.handshake_timeout, HOUR),
            ("limits.drain_deadline", l.drain_deadline, HOUR),
            ("federator.merge_interval", f.merge_interval, HOUR),
            ("api.header_timeout", self.api.header_timeout, HOUR),
            ("api.idle_timeout", self.api.idle_timeout, HOUR),
            ("policies.reload_interval", self.policies.reload_interval, HOUR),
        ] {
            if d.is_zero() || d > max {
                return Err(invalid(
                    key,
                    duration::format(d),
                    format!("must be between 1ms and {}", duration::format(max)),
                ));
            }
        }
        self.tls.validate(&f.trust_domain)?;
        for (i, td) in f.distribute_trust.iter().enumerate() {
            let key = format!("federator.distribute_trust[{i}]");
            match self.tls.federated.iter().find(|d| d.trust_domain == *td) {
                None => return Err(invalid(key, td, "is not a [[tls.federated]] trust domain of this federator")),
                Some(d) if d.clusters.is_none() => {
                    return Err(invalid(
                        key,
                        td,
                        "its [[tls.federated]] entry has no clusters: a distributed domain must be scoped",
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(t) = f.stale_timeout
            && t > 30 * DAY
        {
            return Err(invalid("federator.stale_timeout", duration::format(t), "must be at most 30d, or \"never\""));
        }
        if self.api.idle_timeout < Duration::from_secs(20) {
            return Err(invalid(
                "api.idle_timeout",
                duration::format(self.api.idle_timeout),
                "must be at least 20s: the event stream sends a keep-alive every 15 s",
            ));
        }
        if skybridge_api::config::listeners_collide(self.listen.control, self.listen.api) {
            return Err(invalid(
                "listen.api",
                self.listen.api,
                "is the same port as listen.control on an overlapping address: give the REST API and the control stream a port each",
            ));
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
                SourceConfig::Static { interval, backoff_min, backoff_max, max_size, read_timeout, .. } => {
                    if interval.is_zero() {
                        return Err(invalid(format!("sources[{i}].interval"), "0", "must be positive"));
                    }
                    if *interval > Duration::from_secs(86_400) {
                        return Err(invalid(
                            format!("sources[{i}].interval"),
                            duration::format(*interval),
                            "must be at most 1d",
                        ));
                    }
                    Backoff::checked_keys(&format!("sources[{i}]"), *backoff_min, *backoff_max)?;
                    if read_timeout.is_zero() || *read_timeout > Duration::from_secs(300) {
                        return Err(invalid(
                            format!("sources[{i}].read_timeout"),
                            duration::format(*read_timeout),
                            "must be between 1ms and 300s",
                        ));
                    }
                    if !(1..=1 << 30).contains(max_size) {
                        return Err(invalid(
                            format!("sources[{i}].max_size"),
                            max_size,
                            "must be between 1 and 1073741824 bytes",
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

/// A replica name: what a pod name may be, so `$HOSTNAME` always qualifies.
pub fn valid_replica_name(name: &str) -> bool {
    (1..=253).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
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
            (
                format!("{BASE}\n[limits]\nkeepalive_interval = \"18446744073709551615s\"\n"),
                "limits.keepalive_interval",
            ),
            (format!("{BASE}\n[limits]\ndrain_deadline = \"0s\"\n"), "limits.drain_deadline"),
            (BASE.replace("data_dir = \"data\"", "data_dir = \"data\"\nstale_timeout = \"9000h\""), "stale_timeout"),
            (BASE.replace("data_dir = \"data\"", "data_dir = \"data\"\nremoval_guard = 1.5"), "removal_guard"),
            (format!("{BASE}\n[listen]\ncontrol = \"127.0.0.1:9000\"\napi = \"127.0.0.1:9000\"\n"), "listen.api"),
            (format!("{BASE}\n[listen]\ncontrol = \"0.0.0.0:9000\"\napi = \"127.0.0.1:9000\"\n"), "listen.api"),
            (BASE.replace("path = \"catalog.toml\"", "path = \"catalog.toml\"\nmax_size = 0"), "max_size"),
            (BASE.replace("path = \"catalog.toml\"", "path = \"catalog.toml\"\nread_timeout = \"1h\""), "read_timeout"),
            (format!("{BASE}\n[[sources]]\ntype = \"static\"\nid = \"static\"\npath = \"x\"\n"), "unique"),
            (BASE.replace("path = \"catalog.toml\"", "path = \"catalog.toml\"\nurl = \"x\""), "url"),
            (format!("{BASE}{AWS}"), "sources[1].region"),
            (format!("{BASE}{}", AWS.replace("us_east", "us-east-1\"\nnamespace = \"x")), "namespace"),
            (format!("{BASE}{}", AWS.replace("us_east\"", "us-east-1\"\nmax_attempts = 0")), "max_attempts"),
            (
                BASE.replace("data_dir = \"data\"", "data_dir = \"data\"\ndistribute_trust = [\"gcp.example\"]"),
                "federator.distribute_trust[0]",
            ),
            (format!("{BASE}\n[authorization]\ndefault = \"maybe\"\n"), "maybe"),
            (format!("{BASE}\n[policies]\nreload_interval = \"0s\"\n"), "policies.reload_interval"),
            (format!("{BASE}\n[api]\ntls = {{ cert = \"c\" }}\n"), "key"),
        ] {
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        // Any free port twice (tests) and one port on two addresses do not collide.
        for listen in [
            "control = \"127.0.0.1:0\"\napi = \"127.0.0.1:0\"",
            "control = \"127.0.0.1:9000\"\napi = \"127.0.0.2:9000\"",
        ] {
            Config::parse(&format!("{BASE}\n[listen]\n{listen}\n")).unwrap();
        }
    }
}
