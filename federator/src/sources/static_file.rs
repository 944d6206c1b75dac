//! A catalog from a file: clusters, services and endpoints written by hand (or by a script),
//! reloaded when the file changes. The whole chain runs without a cloud this way.
//!
//! ```toml
//! [[clusters]]
//! id = "aws-1"
//! cloud = "aws"
//! region = "us-east-1"
//!
//! [[services]]
//! namespace = "prod"
//! name = "web"
//! [[services.exports]]
//! cluster = "aws-1"
//! exported_at = 1700000000000   # optional, Unix ms; the oldest export wins conflicts
//! [[services.exports.ports]]
//! port = 80
//! protocol = "http"
//! endpoints = ["10.0.0.1:8080", "10.0.0.2:8080"]
//! ```
//!
//! A file named `*.json` is read as JSON with the same shape. Generated catalogs should use it:
//! JSON is parsed straight into the snapshot, while TOML goes through a document tree that
//! needs about twenty times the file's size in transient memory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use skybridge_api::catalog::{ClusterInfo, Endpoint, Export, PortExport, SourceSnapshot};
use skybridge_api::model::{ClusterId, Protocol, ServiceKey};

use super::{CatalogSource, ErrorKind, SourceError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    clusters: Vec<ClusterInfo>,
    #[serde(default)]
    services: Vec<FileService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    namespace: String,
    name: String,
    exports: Vec<FileExport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExport {
    cluster: ClusterId,
    #[serde(default)]
    exported_at: u64,
    ports: Vec<FilePort>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePort {
    port: u16,
    protocol: Protocol,
    #[serde(default)]
    endpoints: Vec<SocketAddr>,
}

fn malformed(m: String) -> SourceError {
    SourceError::new(ErrorKind::Malformed, m)
}

/// Parses and validates a TOML catalog into a snapshot.
pub fn parse(text: &str) -> Result<SourceSnapshot, SourceError> {
    validate(toml::from_str(text).map_err(|e| malformed(e.to_string()))?)
}

/// Parses and validates a JSON catalog (the TOML shape) into a snapshot.
pub fn parse_json(text: &str) -> Result<SourceSnapshot, SourceError> {
    validate(serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?)
}

fn validate(file: File) -> Result<SourceSnapshot, SourceError> {
    let known: BTreeSet<&ClusterId> = file.clusters.iter().map(|c| &c.id).collect();
    if known.len() != file.clusters.len() {
        return Err(malformed("a cluster id is listed twice in [[clusters]]".into()));
    }
    let mut services: BTreeMap<ServiceKey, Vec<Export>> = BTreeMap::new();
    for (i, s) in file.services.iter().enumerate() {
        let key = ServiceKey::new(&s.namespace, &s.name).map_err(|e| malformed(format!("services[{i}]: {e}")))?;
        if services.contains_key(&key) {
            return Err(malformed(format!("services[{i}]: {key} is listed twice")));
        }
        let mut exports = Vec::new();
        for (j, e) in s.exports.iter().enumerate() {
            if !known.contains(&e.cluster) {
                return Err(malformed(format!(
                    "services[{i}].exports[{j}]: cluster {} is not in [[clusters]]",
                    e.cluster
                )));
            }
            let ports = e
                .ports
                .iter()
                .map(|p| PortExport {
                    port: p.port,
                    protocol: p.protocol,
                    endpoints: p.endpoints.iter().map(|a| Endpoint { address: *a, zone: None, ready: true }).collect(),
                })
                .collect();
            exports.push(Export { cluster: e.cluster.clone(), exported_at: e.exported_at, ports });
        }
        services.insert(key, exports);
    }
    Ok(SourceSnapshot { clusters: file.clusters, services, ..Default::default() })
}

/// Reads a catalog file, and again whenever its modification time or size changes.
pub struct StaticFile {
    path: PathBuf,
    interval: Duration,
    last: Option<(Option<SystemTime>, u64)>,
}

impl StaticFile {
    /// A source for `path`, checked for changes every `interval`.
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        StaticFile { path, interval, last: None }
    }

    fn stamp(&self) -> Result<(Option<SystemTime>, u64), SourceError> {
        let m = std::fs::metadata(&self.path).map_err(|e| {
            let kind =
                if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Unavailable };
            SourceError::new(kind, format!("{}: {e}", self.path.display()))
        })?;
        Ok((m.modified().ok(), m.len()))
    }
}

impl CatalogSource for StaticFile {
    fn kind(&self) -> &'static str {
        "static"
    }

    async fn next(&mut self) -> Result<SourceSnapshot, SourceError> {
        if self.last.is_some() {
            loop {
                tokio::time::sleep(self.interval).await;
                // A failing stat is reported at once (the runner backs off and calls again).
                if Some(self.stamp()?) != self.last {
                    break;
                }
            }
        }
        let stamp = self.stamp()?;
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| SourceError::new(ErrorKind::Unavailable, format!("{}: {e}", self.path.display())))?;
        // Remember the stamp even when parsing fails, so a broken file is reported once per
        // change rather than on every poll.
        self.last = Some(stamp);
        let json = self.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parsed = if json { parse_json(&text) } else { parse(&text) };
        parsed.map_err(|e| SourceError::new(e.kind, format!("{}: {}", self.path.display(), e.message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[clusters]]
id = "aws-1"
cloud = "aws"
region = "us-east-1"

[[services]]
namespace = "prod"
name = "web"
[[services.exports]]
cluster = "aws-1"
exported_at = 5
[[services.exports.ports]]
port = 80
protocol = "http"
endpoints = ["10.0.0.1:8080"]
"#;

    #[test]
    fn parses_the_documented_format() {
        let s = parse(GOOD).unwrap();
        let e = &s.services[&"prod/web".parse::<ServiceKey>().unwrap()][0];
        assert_eq!((e.cluster.as_str(), e.exported_at, e.ports[0].endpoints.len()), ("aws-1", 5, 1));
    }

    #[test]
    fn json_has_the_same_shape_and_checks() {
        let json = r#"{"clusters": [{"id": "aws-1", "cloud": "aws", "region": "us-east-1"}],
            "services": [{"namespace": "prod", "name": "web", "exports": [{"cluster": "aws-1",
            "exported_at": 5, "ports": [{"port": 80, "protocol": "http", "endpoints": ["10.0.0.1:8080"]}]}]}]}"#;
        assert_eq!(parse_json(json).unwrap(), parse(GOOD).unwrap());
        let e = parse_json(&json.replace("{\"cluster\": \"aws-1\"", "{\"cluster\": \"gcp-1\"")).unwrap_err();
        assert!(e.message.contains("not in [[clusters]]"), "{}", e.message);
        assert!(parse_json(&json.replace("\"region\"", "\"zone\": \"a\", \"region\"")).is_err());
    }

    #[test]
    fn rejects_with_a_pointed_message() {
        for (text, needle) in [
            (GOOD.replace("name = \"web\"", "name = \"Web\""), "services[0]"),
            (GOOD.replace("cluster = \"aws-1\"", "cluster = \"gcp-1\""), "not in [[clusters]]"),
            (format!("{GOOD}\n[[clusters]]\nid = \"aws-1\"\ncloud = \"aws\"\nregion = \"x\"\n"), "twice"),
            (GOOD.replace("protocol = \"http\"", "protocol = \"udp\""), "udp"),
            (GOOD.replace("region = \"us-east-1\"", "region = \"us-east-1\"\nzone = \"a\""), "zone"),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Malformed);
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
        }
    }

    #[tokio::test]
    async fn reloads_on_change_and_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.toml");
        let mut src = StaticFile::new(path.clone(), Duration::from_millis(20));
        assert_eq!(src.next().await.unwrap_err().kind, ErrorKind::NotFound);
        std::fs::write(&path, GOOD).unwrap();
        assert_eq!(src.next().await.unwrap().services.len(), 1);
        // Unchanged: next() keeps waiting.
        assert!(tokio::time::timeout(Duration::from_millis(150), src.next()).await.is_err());
        std::fs::write(&path, GOOD.replace("10.0.0.1:8080", "10.0.0.1:8080\", \"10.0.0.2:8080")).unwrap();
        let s = tokio::time::timeout(Duration::from_secs(2), src.next()).await.unwrap().unwrap();
        assert_eq!(s.services.values().next().unwrap()[0].ports[0].endpoints.len(), 2);
    }
}
