//! A replicated control plane on loopback for end-to-end tests and benchmarks: a real etcd
//! cluster, federator replicas and gateways as real `skybridge` processes, a static catalog
//! file the test rewrites, and a plain HTTP backend. Processes are stopped by PID.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::etcd::Etcd;
use crate::{FederatorToml, Proc, eventually, free_tcp, free_udp, get_json, wait_ready, write_identities};
use serde_json::Value;

/// The trust domain of these federations.
pub const TD: &str = "ha.test";

/// The API write token of every replica.
pub const API_TOKEN: &str = "ha-test-token";

/// How a federation is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub etcd_members: usize,
    pub replicas: usize,
    pub lease_ttl: String,
    pub gateway_expiry: &'static str,
    /// How often the static source re-reads its file.
    pub source_interval: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            etcd_members: 3,
            replicas: 3,
            lease_ttl: "2s".into(),
            gateway_expiry: "10m",
            source_interval: "100ms",
        }
    }
}

/// One federator replica.
pub struct Fed {
    pub name: String,
    pub api: SocketAddr,
    pub control: SocketAddr,
    pub proc: Option<Proc>,
    config: PathBuf,
}

/// A gateway process.
pub struct Gw {
    pub cluster: String,
    pub instance: String,
    pub admin: SocketAddr,
    pub http: SocketAddr,
    pub proc: Option<Proc>,
    config: PathBuf,
}

/// The whole federation.
pub struct Federation {
    pub dir: tempfile::TempDir,
    pub etcd: Etcd,
    pub feds: Vec<Fed>,
    pub opts: Options,
}

impl Federation {
    /// Starts etcd and the replicas (each ready), with identities for `clusters`' gateways
    /// and a catalog holding those clusters and no services.
    pub fn start(opts: Options, clusters: &[&str]) -> Federation {
        let dir = tempfile::tempdir().unwrap();
        write_identities(dir.path(), TD, clusters);
        std::fs::write(dir.path().join("token"), API_TOKEN).unwrap();
        let etcd = Etcd::start(opts.etcd_members);
        let mut f = Federation { dir, etcd, feds: Vec::new(), opts };
        f.write_catalog(clusters, &[]);
        for i in 0..f.opts.replicas {
            let (api, control) = (free_tcp(1)[0], free_tcp(1)[0]);
            let name = format!("fed-{i}");
            let config = f.path(&format!("{name}.toml"));
            std::fs::write(&config, f.federator_toml(&name, api, control)).unwrap();
            f.feds.push(Fed { name, api, control, proc: None, config });
        }
        for i in 0..f.opts.replicas {
            f.start_fed(i);
        }
        f
    }

    /// A path in the federation's folder.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn federator_toml(&self, name: &str, api: SocketAddr, control: SocketAddr) -> String {
        let d = self.dir.path();
        let o = &self.opts;
        FederatorToml::new(d, TD, control)
            .api(api)
            .token_file()
            .federator("name", &format!("\"{name}\""))
            .federator("gateway_expiry", &format!("\"{}\"", o.gateway_expiry))
            .section(&format!(
                "[store]\nbackend = \"etcd\"\nendpoints = {}\nprefix = \"/skybridge\"\nlease_ttl = \"{}\"\n",
                self.etcd.endpoints_toml(),
                o.lease_ttl
            ))
            .sources(&format!(
                "[[sources]]\ntype = \"static\"\nid = \"static\"\npath = \"{}/catalog.toml\"\ninterval = \"{}\"\n\
                 backoff_min = \"100ms\"\nbackoff_max = \"500ms\"\n",
                d.display(),
                o.source_interval
            ))
            .build()
    }

    /// Starts (or restarts) replica `i` and waits until it is ready.
    pub fn start_fed(&mut self, i: usize) {
        let f = &mut self.feds[i];
        assert!(f.proc.is_none(), "{} is running", f.name);
        let log = self.dir.path().join(format!("{}.log", f.name));
        let p = Proc::spawn(&["federator", "--config", f.config.to_str().unwrap()], log);
        assert!(wait_ready(f.api, Duration::from_secs(30)), "{} not ready:\n{}", f.name, p.log_text());
        f.proc = Some(p);
    }

    /// Sends `sig` (`-KILL`, `-STOP`, `-CONT`) to replica `i`; a killed one is reaped.
    pub fn signal_fed(&mut self, i: usize, sig: &str) {
        let f = &mut self.feds[i];
        let pid = f.proc.as_ref().expect("running").child.id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
        if sig == "-KILL" {
            let mut p = f.proc.take().unwrap();
            let _ = p.child.wait();
        }
    }

    /// The log of replica `i` so far.
    pub fn fed_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.path(&format!("{}.log", self.feds[i].name))).unwrap_or_default()
    }

    /// `GET path` on replica `i`'s API.
    pub fn api(&self, i: usize, path: &str) -> Option<Value> {
        get_json(self.feds[i].api, path)
    }

    /// The leader's name as the first answering replica among `among` sees it.
    pub fn leader(&self, among: &[usize]) -> Option<String> {
        among.iter().find_map(|i| self.api(*i, "/api/v1/federators")?["leader"].as_str().map(str::to_owned))
    }

    /// `PUT path` with `body` and the write token on replica `i`'s API: the status code.
    pub fn put(&self, i: usize, path: &str, body: &str) -> Option<u16> {
        let mut s = TcpStream::connect_timeout(&self.feds[i].api, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let req = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.get(9..12)?.parse().ok()
    }

    /// Index of the replica named `name`.
    pub fn index(&self, name: &str) -> usize {
        self.feds.iter().position(|f| f.name == name).unwrap()
    }

    /// The catalog head as etcd holds it (`null` before the first version).
    pub fn head(&self) -> Value {
        let text = self.etcd.ctl(&["get", "/skybridge/catalog/head", "--print-value-only"]);
        serde_json::from_str(text.trim()).unwrap_or_default()
    }

    /// Rewrites the static source: `clusters` and `services` as `(name, exporting cluster,
    /// endpoints)`, all HTTP on port 80 in namespace `prod`.
    pub fn write_catalog(&self, clusters: &[&str], services: &[(String, String, Vec<SocketAddr>)]) {
        let mut text = String::new();
        for c in clusters {
            text += &format!("[[clusters]]\nid = \"{c}\"\ncloud = \"other\"\nregion = \"r\"\n");
        }
        for (name, cluster, eps) in services {
            let eps: Vec<String> = eps.iter().map(|e| format!("\"{e}\"")).collect();
            text += &format!(
                "[[services]]\nnamespace = \"prod\"\nname = \"{name}\"\n[[services.exports]]\ncluster = \"{cluster}\"\n\
                 [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [{}]\n",
                eps.join(", ")
            );
        }
        let tmp = self.path("catalog.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path("catalog.toml")).unwrap();
    }

    /// Starts a gateway of `cluster` named `instance` that knows every replica, keeps its
    /// catalog cache in its own folder and serves HTTP by Host; waits until it is ready.
    pub fn spawn_gateway(&self, cluster: &str, instance: &str) -> Gw {
        let d = self.dir.path().display();
        let (admin, http) = (free_tcp(1)[0], free_tcp(1)[0]);
        let tunnel = free_udp(1)[0];
        let addresses: Vec<String> = self.feds.iter().map(|f| format!("\"{}\"", f.control)).collect();
        let text = format!(
            "[gateway]\ncluster = \"{cluster}\"\ncloud = \"other\"\nregion = \"r\"\ntrust_domain = \"{TD}\"\n\
             [tls]\ncert = \"{d}/{cluster}/cert.pem\"\nkey = \"{d}/{cluster}/key.pem\"\ntrust_bundle = \"{d}/{cluster}/ca.pem\"\n\
             [listen]\ntunnel = \"{tunnel}\"\nsni = \"off\"\nhttp = \"{http}\"\nadmin = \"{admin}\"\n\
             [federator]\naddresses = [{}]\ninstance = \"{instance}\"\nreconnect_min = \"100ms\"\nreconnect_max = \"400ms\"\n\
             report_interval = \"500ms\"\ncatalog_cache = \"{d}/{cluster}/{instance}-cache.pb\"\n",
            addresses.join(", ")
        );
        let config = self.path(&format!("{cluster}-{instance}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut gw = Gw { cluster: cluster.into(), instance: instance.into(), admin, http, proc: None, config };
        gw.start(self.dir.path());
        gw
    }
}

impl Gw {
    /// Starts (or restarts) the gateway process on its config.
    pub fn start(&mut self, dir: &Path) {
        assert!(self.proc.is_none());
        let log = dir.join(format!("{}-{}.log", self.cluster, self.instance));
        let p = Proc::spawn(&["gateway", "--config", self.config.to_str().unwrap()], log);
        assert!(wait_ready(self.admin, Duration::from_secs(30)), "gateway not ready:\n{}", p.log_text());
        self.proc = Some(p);
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Its `/status`.
    pub fn status(&self) -> Option<Value> {
        get_json(self.admin, "/status")
    }

    /// The catalog version it routes on.
    pub fn version(&self) -> u64 {
        self.status().and_then(|s| s["federator"]["catalog_version"].as_u64()).unwrap_or(0)
    }

    /// A counter from its `/metrics` (the sum over label sets matching `series`).
    pub fn metric(&self, series: &str) -> f64 {
        let Some((200, text)) = crate::http_get(self.admin, "/metrics") else { return 0.0 };
        text.lines().filter(|l| l.starts_with(series)).filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()).sum()
    }

    /// `GET /` with `Host: <service>.prod.svc.clusterset.local` through its HTTP listener: the
    /// response body, or the error.
    pub fn get(&self, service: &str) -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let req = format!("GET / HTTP/1.1\r\nHost: {service}.prod.svc.clusterset.local\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        if !out.starts_with("HTTP/1.1 200") {
            return Err(out);
        }
        Ok(out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP server on a thread answering every request with `hello from {who}`.
pub fn backend(who: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let body = format!("hello from {who}\n");
                let resp =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes());
            });
        }
    });
    addr
}

/// Waits until every gateway in `gws` routes on catalog version `v` or later; returns it.
pub fn converged(gws: &[&Gw], at_least: u64, within: Duration) -> u64 {
    eventually(&format!("gateways at catalog version >= {at_least}"), within, || {
        let versions: Vec<u64> = gws.iter().map(|g| g.version()).collect();
        let first = versions[0];
        (first >= at_least && versions.iter().all(|v| *v == first)).then_some(first)
    })
}
