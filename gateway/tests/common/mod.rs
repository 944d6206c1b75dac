//! In-process test harness: a CA from the real `ca` code, gateways started through `app::start`
//! on loopback, and small backends. Only 127.0.0.0/8 is used.
#![allow(dead_code)]

pub(crate) mod backends;
pub(crate) mod federator;
pub(crate) mod flood;
pub(crate) mod quic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use skybridge_api::ca::PemPair;
use skybridge_gateway::app::{self, Running};
use skybridge_gateway::config::Config;
use tempfile::TempDir;

pub(crate) const TD: &str = "test.skybridge";

/// Installs the process-wide crypto provider, as `main` does.
pub(crate) fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A CA (the shared test PKI) and a folder to put issued certificates in.
pub(crate) struct Pki {
    pub dir: TempDir,
    pub ca: PemPair,
    issuer: skybridge_api::testing::Pki,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        Pki::with_domain(TD)
    }

    pub(crate) fn with_domain(td: &str) -> Pki {
        let issuer = skybridge_api::testing::Pki::new(td);
        Pki { dir: tempfile::tempdir().unwrap(), ca: issuer.ca.clone(), issuer }
    }

    pub(crate) fn trust_domain(&self) -> String {
        self.issuer.trust_domain.clone()
    }

    /// Issues a gateway certificate for `cluster` valid for `days` and writes cert/key/ca files
    /// into `<dir>/<name>/`; returns that folder.
    pub(crate) fn issue_files(&self, name: &str, cluster: &str, days: u32) -> PathBuf {
        let dir = self.dir.path().join(name);
        write_identity(&dir, &self.issue(cluster, days), &self.ca.cert_pem);
        dir
    }

    /// A leaf for `cluster`, in memory.
    pub(crate) fn issue(&self, cluster: &str, days: u32) -> PemPair {
        self.issuer.gateway(cluster, days)
    }
}

pub(crate) use skybridge_api::testing::write_identity;

/// A free UDP port on 127.0.0.1 that no other test in this process was given: a released port
/// can be handed out again by the kernel at once, and tests run in parallel.
pub(crate) fn free_udp() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        // A tunnel port serves UDP and TCP: free for both, and below the ephemeral range, where
        // an outgoing connection could take the TCP side before the gateway binds it.
        let port = 20_000 + fastrand::u16(..12_000);
        let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) else { continue };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let addr = udp.local_addr().unwrap();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// Everything needed to write one gateway's config.
pub(crate) struct GwSpec {
    pub cluster: String,
    pub tunnel: SocketAddr,
    pub certs: PathBuf,
    /// `[[peers]]` entries: (cluster, address).
    pub peers: Vec<(String, SocketAddr)>,
    /// Raw TOML appended: `[[services]]`, `[[listen.tcp]]`, `[limits]`.
    pub extra: String,
}

impl GwSpec {
    pub(crate) fn toml(&self) -> String {
        let mut s = format!(
            r#"
[gateway]
cluster = "{cluster}"
cloud = "other"
region = "test"
trust_domain = "{TD}"

[tls]
cert = "{certs}/cert.pem"
key = "{certs}/key.pem"
trust_bundle = "{certs}/ca.pem"
reload_interval = "100ms"

[listen]
tunnel = "{tunnel}"
sni = "127.0.0.1:0"
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
"#,
            cluster = self.cluster,
            certs = self.certs.display(),
            tunnel = self.tunnel,
        );
        for (c, a) in &self.peers {
            s.push_str(&format!("\n[[peers]]\ncluster = \"{c}\"\ncloud = \"other\"\naddress = \"{a}\"\n"));
        }
        s.push_str(&self.extra);
        s
    }

    pub(crate) async fn start(&self) -> Running {
        let cfg = Config::parse(&self.toml()).unwrap_or_else(|e| panic!("test config invalid: {e}\n{}", self.toml()));
        app::start(cfg).await.unwrap()
    }
}

/// Starts gcp-1 (hosting `services(true)`, plus `b_extra`) and aws-1 (egress side: `a_extra`
/// plus the same services without endpoints), peered with each other; returns (aws-1, gcp-1).
pub(crate) async fn start_pair(
    pki: &Pki,
    services: impl Fn(bool) -> String,
    a_extra: &str,
    b_extra: &str,
) -> (Running, Running) {
    let (ta, tb) = (free_udp(), free_udp());
    let b = GwSpec {
        cluster: "gcp-1".into(),
        tunnel: tb,
        certs: pki.issue_files("gcp-1", "gcp-1", 1),
        peers: vec![("aws-1".into(), ta)],
        extra: format!("{}{b_extra}", services(true)),
    }
    .start()
    .await;
    let a = GwSpec {
        cluster: "aws-1".into(),
        tunnel: ta,
        certs: pki.issue_files("aws-1", "aws-1", 1),
        peers: vec![("gcp-1".into(), tb)],
        extra: format!("{a_extra}{}", services(false)),
    }
    .start()
    .await;
    (a, b)
}

/// `[[services]]` TOML: a service hosted in `clusters`, with one port and local endpoints.
pub(crate) fn service(
    ns: &str,
    name: &str,
    clusters: &[&str],
    port: u16,
    proto: &str,
    endpoints: &[SocketAddr],
) -> String {
    service_allowing(ns, name, clusters, port, proto, endpoints, None)
}

/// Like [`service`], with an allow list of source clusters.
pub(crate) fn service_allowing(
    ns: &str,
    name: &str,
    clusters: &[&str],
    port: u16,
    proto: &str,
    endpoints: &[SocketAddr],
    allow: Option<&[&str]>,
) -> String {
    let quote = |v: &[String]| v.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    let clusters: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
    let eps: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
    let allow = allow
        .map(|a| format!("allow = [{}]\n", quote(&a.iter().map(|c| c.to_string()).collect::<Vec<_>>())))
        .unwrap_or_default();
    format!(
        "\n[[services]]\nnamespace = \"{ns}\"\nname = \"{name}\"\nclusters = [{}]\n{allow}[[services.ports]]\nport = {port}\nprotocol = \"{proto}\"\nendpoints = [{}]\n",
        quote(&clusters),
        quote(&eps)
    )
}

/// Polls `f` every 20 ms until it returns true or `within` passes.
pub(crate) async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// GETs an admin path with a minimal HTTP/1.1 client; returns (status, body).
pub(crate) async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of one metric sample line (exact label set) from `/metrics`, or 0.
pub(crate) async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, body) = admin_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Polls `/metrics` until `series` reaches `at_least` (within 5 s).
pub(crate) async fn wait_metric(addr: SocketAddr, series: &str, at_least: f64) -> bool {
    for _ in 0..100 {
        if metric(addr, series).await >= at_least {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
