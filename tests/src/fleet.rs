//! A three-cloud fleet for failover tests and benchmarks: a federator process and three gateway
//! processes (aws-1, gcp-1, azure-1) whose tunnels run through the userspace WAN relay, one
//! link per ordered pair, each with its own RTT and controls (delay, jitter, cut). The service
//! `web.prod` is exported by a backend in each cluster answering `hello from <cluster>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::wan::{self, Impairment, Link, Relay};
use crate::{FederatorToml, Proc, free_tcp, free_udp, http_backend, spawn_federator, wait_ready, write_identities};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TD: &str = "failover.test";
const TOKEN: &str = "failover-test-token";
/// The fleet's clusters.
pub const CLUSTERS: [&str; 3] = ["aws-1", "gcp-1", "azure-1"];

/// RTTs between the clusters, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub aws_gcp: u64,
    pub aws_azure: u64,
    pub gcp_azure: u64,
}

impl Layout {
    /// The RTT between `a` and `b`.
    pub fn rtt(&self, a: &str, b: &str) -> Duration {
        let ms = match (a.min(b), a.max(b)) {
            ("aws-1", "gcp-1") => self.aws_gcp,
            ("aws-1", "azure-1") => self.aws_azure,
            ("azure-1", "gcp-1") => self.gcp_azure,
            other => panic!("no link {other:?}"),
        };
        Duration::from_millis(ms)
    }
}

/// How one client connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by this cluster's backend.
    Served(String),
    /// Refused or answered with an error: a failed new connection.
    Failed(String),
}

/// The running fleet; everything stops when it drops.
pub struct Fleet {
    dir: tempfile::TempDir,
    pub api: SocketAddr,
    /// Each gateway's HTTP (Host-routed) listener.
    pub http: BTreeMap<&'static str, SocketAddr>,
    pub admin: BTreeMap<&'static str, SocketAddr>,
    /// Each gateway's `clusterset.local` DNS server (UDP and TCP).
    pub dns: BTreeMap<&'static str, SocketAddr>,
    /// (from, to) → the link `from` dials `to` through.
    links: BTreeMap<(&'static str, &'static str), Link>,
    backends: BTreeMap<&'static str, SocketAddr>,
    _relays: Vec<Relay>,
    /// The relays run on their own thread: the clients of a benchmark share the test's runtime,
    /// and their load must not show up as WAN delay.
    relay_rt: Option<tokio::runtime::Runtime>,
    _procs: Vec<Proc>,
}

impl Fleet {
    /// Starts the federator, the relays and the three gateways (the `skybridge` binary, see
    /// [`crate::skybridge_bin`]) and waits until each is ready. `web.prod` is in all three.
    pub async fn start(layout: Layout) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_identities(d, TD, &CLUSTERS);
        std::fs::write(d.join("token"), TOKEN).unwrap();
        let mut backends = BTreeMap::new();
        for c in CLUSTERS {
            backends.insert(c, http_backend(c).await);
        }
        let tunnels: BTreeMap<&str, SocketAddr> = CLUSTERS.into_iter().zip(free_udp(3)).collect();
        let mut links = BTreeMap::new();
        let relay_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wan-relay")
            .enable_all()
            .build()
            .unwrap();
        let mut relays = Vec::new();
        for from in CLUSTERS {
            for to in CLUSTERS.into_iter().filter(|t| *t != from) {
                let link = Link::new(Impairment::delay(layout.rtt(from, to) / 2));
                let (target, l) = (tunnels[to], link.clone());
                let relay = relay_rt.spawn(wan::udp("127.0.0.1:0".parse().unwrap(), target, l)).await.unwrap().unwrap();
                links.insert((from, to), link);
                relays.push(relay);
            }
        }
        let [api, control] = free_tcp(2)[..] else { unreachable!() };
        let fleet_dir = d.to_path_buf();
        let mut f = Fleet {
            dir,
            api,
            http: BTreeMap::new(),
            admin: BTreeMap::new(),
            dns: BTreeMap::new(),
            links,
            backends,
            _relays: Vec::new(),
            relay_rt: Some(relay_rt),
            _procs: Vec::new(),
        };
        f.write_catalog(&CLUSTERS);
        let fed = spawn_federator(&fleet_dir, api, &federator_toml(&fleet_dir, api, control), &[]);
        f._procs.push(fed);
        for c in CLUSTERS {
            let [http, admin] = free_tcp(2)[..] else { unreachable!() };
            let dns = free_udp(1)[0];
            let peer_addresses: Vec<String> = CLUSTERS
                .into_iter()
                .filter(|p| *p != c)
                .map(|p| format!("\"{p}\" = \"{}\"", relay_addr(&relays, c, p)))
                .collect();
            let listen = Listen { tunnel: tunnels[c], http, admin, dns };
            let text = gateway_toml(&fleet_dir, c, &listen, control, &peer_addresses.join(", "));
            let path = fleet_dir.join(format!("{c}.toml"));
            std::fs::write(&path, text).unwrap();
            let p = Proc::spawn(&["gateway", "--config", path.to_str().unwrap()], fleet_dir.join(format!("{c}.log")));
            assert!(wait_ready(admin, Duration::from_secs(30)), "{c} not ready:\n{}", p.log_text());
            f.http.insert(c, http);
            f.admin.insert(c, admin);
            f.dns.insert(c, dns);
            f._procs.push(p);
        }
        f._relays = relays;
        f
    }

    /// Rewrites the federator's static catalog: `web.prod` exported by `hosts`.
    pub fn write_catalog(&self, hosts: &[&str]) {
        self.write_services(&[("web", hosts)]);
    }

    /// Rewrites the federator's static catalog: each `(name, hosts)` an HTTP service on port 80
    /// in namespace `prod`, exported by the clusters `hosts` (their backends answer).
    pub fn write_services(&self, services: &[(&str, &[&str])]) {
        let mut text = String::new();
        for (c, cloud) in CLUSTERS.iter().zip(["aws", "gcp", "azure"]) {
            text += &format!("[[clusters]]\nid = \"{c}\"\ncloud = \"{cloud}\"\nregion = \"r\"\n");
        }
        for (name, hosts) in services {
            text += &format!("[[services]]\nnamespace = \"prod\"\nname = \"{name}\"\n");
            for c in *hosts {
                text += &format!(
                    "[[services.exports]]\ncluster = \"{c}\"\n[[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"{}\"]\n",
                    self.backends[c]
                );
            }
        }
        let tmp = self.dir.path().join("catalog.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.dir.path().join("catalog.toml")).unwrap();
    }

    /// The file holding the federator's API token.
    pub fn token_file(&self) -> std::path::PathBuf {
        self.dir.path().join("token")
    }

    /// Cuts (or restores) what `from` sends to `to` and the answers.
    pub fn cut(&self, from: &str, to: &str, cut: bool) {
        self.link(from, to).blackhole(cut);
    }

    /// The link `from` dials `to` through.
    pub fn link(&self, from: &str, to: &str) -> &Link {
        self.links.iter().find(|((f, t), _)| (*f, *t) == (from, to)).map(|(_, l)| l).expect("a link between clusters")
    }

    /// Gateway `c`'s `/status` document.
    pub async fn status(&self, c: &str) -> serde_json::Value {
        let text = http(self.admin[c], "GET", "/status", "").await;
        serde_json::from_str(text.split_once("\r\n\r\n").map_or("", |(_, b)| b)).unwrap_or_default()
    }

    /// `peer`'s health state as gateway `at` reports it.
    pub async fn peer_state(&self, at: &str, peer: &str) -> String {
        let s = self.status(at).await;
        let peers = s["peers"].as_array().cloned().unwrap_or_default();
        peers.iter().find(|p| p["cluster"] == peer).and_then(|p| p["state"].as_str()).unwrap_or("absent").to_owned()
    }

    /// Kills gateway `c`'s process (SIGKILL: no drain, as when its node dies).
    pub fn kill_gateway(&mut self, c: &str) {
        let log = self.dir.path().join(format!("{c}.log"));
        let p = self._procs.iter_mut().find(|p| p.log == log).expect("a gateway of the fleet");
        let _ = p.child.kill();
        let _ = p.child.wait();
    }

    /// Whether gateway `at` has measured `peer` long enough to rank it by latency.
    pub async fn peer_ranked(&self, at: &str, peer: &str) -> bool {
        let s = self.status(at).await;
        let peers = s["peers"].as_array().cloned().unwrap_or_default();
        peers.iter().any(|p| p["cluster"] == peer && p["state"] == "healthy" && p["rank_rtt_ms"].is_number())
    }

    /// Sets `web.prod`'s policy through the federator's API.
    pub async fn put_policy(&self, body: &str) {
        let resp = http(self.api, "PUT", "/api/v1/policies/prod/web", body).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Relays first (their tasks live on the relay runtime), then the runtime itself, which
        // cannot be dropped where blocking is not allowed (inside the test's runtime).
        self._relays.clear();
        if let Some(rt) = self.relay_rt.take() {
            rt.shutdown_background();
        }
    }
}

fn relay_addr(relays: &[Relay], from: &str, to: &str) -> SocketAddr {
    // Relays were made in the order of the nested loop in `Fleet::start`.
    let mut i = 0;
    for f in CLUSTERS {
        for t in CLUSTERS.into_iter().filter(|t| *t != f) {
            if (f, t) == (from, to) {
                return relays[i].addr;
            }
            i += 1;
        }
    }
    panic!("no relay {from}→{to}")
}

fn federator_toml(d: &Path, api: SocketAddr, control: SocketAddr) -> String {
    FederatorToml::new(d, TD, control).api(api).federator("merge_interval", "\"50ms\"").token_file().build()
}

/// One gateway's listeners.
struct Listen {
    tunnel: SocketAddr,
    http: SocketAddr,
    admin: SocketAddr,
    dns: SocketAddr,
}

fn gateway_toml(d: &Path, cluster: &str, l: &Listen, control: SocketAddr, peer_addresses: &str) -> String {
    let d = d.display();
    let Listen { tunnel, http, admin, dns } = l;
    // Routing knobs are the shipped defaults; only the connect budget is shortened so that a
    // connection the gateway could not place shows up quickly as a failure.
    format!(
        "[gateway]\ncluster = \"{cluster}\"\ncloud = \"other\"\nregion = \"r\"\ntrust_domain = \"{TD}\"\n\
         [tls]\ncert = \"{d}/{cluster}/cert.pem\"\nkey = \"{d}/{cluster}/key.pem\"\ntrust_bundle = \"{d}/{cluster}/ca.pem\"\n\
         [listen]\ntunnel = \"{tunnel}\"\nsni = \"off\"\nhttp = \"{http}\"\nadmin = \"{admin}\"\ndns = \"{dns}\"\n\
         [limits]\nconnect_budget = \"2s\"\n\
         [federator]\naddress = \"{control}\"\ninstance = \"{cluster}-0\"\nreport_interval = \"500ms\"\n\
         reconnect_min = \"100ms\"\nreconnect_max = \"400ms\"\npeer_addresses = {{ {peer_addresses} }}\n"
    )
}

/// One HTTP/1.1 exchange with `Connection: close` (with the fleet's API token); the whole
/// response text ("" on failure).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.ok().flatten().unwrap_or_default()
}

/// One new client connection to `web.prod` through `gw`.
pub async fn request(gw: SocketAddr) -> Outcome {
    let exchange = async {
        let mut s = TcpStream::connect(gw).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: web.prod.svc.clusterset.local\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(out)
    };
    match tokio::time::timeout(Duration::from_secs(4), exchange).await {
        Ok(Ok(text)) => match text.rsplit_once("hello from ") {
            Some((head, who)) if head.starts_with("HTTP/1.1 200") => Outcome::Served(who.trim().to_owned()),
            _ => Outcome::Failed(text.lines().next().unwrap_or("empty response").to_owned()),
        },
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Failed("no response within 4 s".into()),
    }
}

/// `n` connections, `parallel` at a time; the outcomes in completion order.
pub async fn burst(gw: SocketAddr, n: usize, parallel: usize) -> Vec<Outcome> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (next, out) = (next.clone(), out.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    let o = request(gw).await;
                    out.lock().unwrap().push(o);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

/// One connection of a [`Load`]: when it started, when it ended, how.
pub type Record = (Instant, Instant, Outcome);

/// Opens a new connection every `every` until finished, each recorded with its times.
pub struct Load {
    pub results: Arc<Mutex<Vec<Record>>>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts opening connections to `web.prod` through `gw`.
    pub fn start(gw: SocketAddr, every: Duration) -> Load {
        let results = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (r, s) = (results.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let tracker = tokio_util::task::TaskTracker::new();
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let r = r.clone();
                tracker.spawn(async move {
                    let start = Instant::now();
                    let o = request(gw).await;
                    r.lock().unwrap().push((start, Instant::now(), o));
                });
            }
            tracker.close();
            tracker.wait().await;
        });
        Load { results, stop, task }
    }

    /// Stops, waits for the connections in flight, returns all records by start time.
    pub async fn finish(self) -> Vec<Record> {
        self.stop.cancel();
        self.task.await.unwrap();
        let mut v = Arc::try_unwrap(self.results).unwrap().into_inner().unwrap();
        v.sort_by_key(|(s, _, _)| *s);
        v
    }
}

/// Polls `f` every 50 ms until it holds; how long that took. Panics after `within`.
pub async fn until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if f().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {within:?} waiting until {what}");
}

/// How many outcomes each cluster served (failures keyed by `failed: <reason>`).
pub fn served_by(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        let k = match o {
            Outcome::Served(c) => c.clone(),
            Outcome::Failed(e) => format!("failed: {e}"),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
