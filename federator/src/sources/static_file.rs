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

/// Why an endpoint address cannot receive connections: unspecified (`0.0.0.0`, `::`),
/// broadcast, multicast, or port 0.
fn unusable(a: &SocketAddr) -> Option<&'static str> {
    let ip = a.ip();
    if a.port() == 0 {
        Some("port 0")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("the broadcast address")
    } else {
        None
    }
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
            let mut ports = Vec::new();
            for (k, p) in e.ports.iter().enumerate() {
                let at = || format!("services[{i}].exports[{j}].ports[{k}]");
                if p.port == 0 {
                    return Err(malformed(format!("{}: port 0 is not a service port (use 1 to 65535)", at())));
                }
                for a in &p.endpoints {
                    if let Some(why) = unusable(a) {
                        return Err(malformed(format!(
                            "{}: endpoint {a} is {why}, not an address to connect to",
                            at()
                        )));
                    }
                }
                let endpoints = p.endpoints.iter().map(|a| Endpoint { address: *a, zone: None, ready: true }).collect();
                ports.push(PortExport { port: p.port, protocol: p.protocol, endpoints });
            }
            exports.push(Export { cluster: e.cluster.clone(), exported_at: e.exported_at, ports });
        }
        services.insert(key, exports);
    }
    Ok(SourceSnapshot { clusters: file.clusters, services, ..Default::default() })
}

/// How a catalog file is read.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Files larger than this are refused (a wrong path must not exhaust memory).
    pub max_size: u64,
    /// How long one read may take (a file on a hung network mount).
    pub timeout: Duration,
}

/// Reads a catalog file, and again whenever its modification time or size changes. Only
/// regular files are read (a FIFO or a device would block or never end), at most
/// `limits.max_size` bytes, off the async workers and within `limits.timeout`.
pub struct StaticFile {
    path: PathBuf,
    interval: Duration,
    limits: ReadLimits,
    last: Option<(Option<SystemTime>, u64)>,
}

impl StaticFile {
    /// A source for `path`, checked for changes every `interval`.
    pub fn new(path: PathBuf, interval: Duration, limits: ReadLimits) -> Self {
        StaticFile { path, interval, limits, last: None }
    }

    fn stamp(&self) -> Result<(Option<SystemTime>, u64), SourceError> {
        let m = std::fs::metadata(&self.path).map_err(|e| {
            let kind =
                if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Unavailable };
            SourceError::new(kind, format!("{}: {e}", self.path.display()))
        })?;
        if !m.is_file() {
            return Err(malformed(format!(
                "{}: not a regular file (a FIFO, device or directory is never read)",
                self.path.display()
            )));
        }
        if m.len() > self.limits.max_size {
            return Err(malformed(format!(
                "{}: {} bytes is more than the source's max_size ({} bytes)",
                self.path.display(),
                m.len(),
                self.limits.max_size
            )));
        }
        Ok((m.modified().ok(), m.len()))
    }

    /// Reads the whole file on a blocking thread: at most `max_size` bytes, within `timeout`.
    async fn read(&self) -> Result<Vec<u8>, SourceError> {
        let (path, max) = (self.path.clone(), self.limits.max_size);
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::Read;
            let file = std::fs::File::open(&path)?;
            // Checked again on the open file: it may have been swapped since the stat.
            if !file.metadata()?.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            let mut bytes = Vec::new();
            file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        let unavailable = |m: String| SourceError::new(ErrorKind::Unavailable, format!("{}: {m}", self.path.display()));
        let bytes = match tokio::time::timeout(self.limits.timeout, read).await {
            Err(_) => {
                return Err(unavailable(format!("reading took longer than read_timeout ({:?})", self.limits.timeout)));
            }
            Ok(Err(e)) => return Err(unavailable(format!("the read task failed: {e}"))),
            Ok(Ok(Err(e))) => return Err(unavailable(e.to_string())),
            Ok(Ok(Ok(bytes))) => bytes,
        };
        if bytes.len() as u64 > max {
            return Err(malformed(format!(
                "{}: grew past max_size ({max} bytes) while being read",
                self.path.display()
            )));
        }
        Ok(bytes)
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
        let bytes = self.read().await?;
        // Remember the stamp even when parsing fails, so a broken file is reported once per
        // change rather than on every poll.
        self.last = Some(stamp);
        let text = String::from_utf8(bytes).map_err(|e| {
            malformed(format!("{}: not UTF-8 text (at byte {})", self.path.display(), e.utf8_error().valid_up_to()))
        })?;
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

    /// The fuzz seeds (fuzz/seeds/catalog_file) are valid catalogs, so fuzzing starts from
    /// inputs that reach validation.
    #[test]
    fn the_fuzz_seeds_are_valid_catalogs() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/catalog_file");
        let mut n = 0;
        for f in std::fs::read_dir(dir).unwrap() {
            let path = f.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = if path.extension().is_some_and(|e| e == "json") { parse_json(&text) } else { parse(&text) };
            parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 3);
    }

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
            (GOOD.replace("port = 80", "port = 0"), "port 0"),
            (GOOD.replace("10.0.0.1:8080", "0.0.0.0:0"), "port 0"),
            (GOOD.replace("10.0.0.1:8080", "0.0.0.0:80"), "unspecified"),
            (GOOD.replace("10.0.0.1:8080", "255.255.255.255:80"), "broadcast"),
            (GOOD.replace("10.0.0.1:8080", "[ff02::1]:80"), "multicast"),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Malformed);
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
        }
    }

    const LIMITS: ReadLimits = ReadLimits { max_size: 1 << 20, timeout: Duration::from_secs(5) };

    #[tokio::test]
    async fn a_fifo_a_device_a_huge_file_and_binary_bytes_are_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        // A FIFO would block a read forever: refused by its type, at once.
        let fifo = dir.path().join("catalog.toml");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let mut src = StaticFile::new(fifo.clone(), Duration::from_millis(20), LIMITS);
        let e = tokio::time::timeout(Duration::from_secs(2), src.next()).await.expect("no hang").unwrap_err();
        assert!(e.kind == ErrorKind::Malformed && e.message.contains("not a regular file"), "{}", e.message);
        // /dev/zero would never end.
        let mut src = StaticFile::new("/dev/zero".into(), Duration::from_millis(20), LIMITS);
        assert!(src.next().await.unwrap_err().message.contains("not a regular file"));
        // Larger than max_size: refused before reading.
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; (LIMITS.max_size + 1) as usize]).unwrap();
        let mut src = StaticFile::new(big, Duration::from_millis(20), LIMITS);
        let e = src.next().await.unwrap_err();
        assert!(e.kind == ErrorKind::Malformed && e.message.contains("max_size"), "{}", e.message);
        // Not UTF-8: malformed, not "unavailable".
        let binary = dir.path().join("bin.toml");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let mut src = StaticFile::new(binary, Duration::from_millis(20), LIMITS);
        let e = src.next().await.unwrap_err();
        assert!(e.kind == ErrorKind::Malformed && e.message.contains("UTF-8"), "{}", e.message);
    }

    #[tokio::test]
    async fn reloads_on_change_and_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.toml");
        let mut src = StaticFile::new(path.clone(), Duration::from_millis(20), LIMITS);
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
