//! Harness for end-to-end tests: the real `skybridge` binary as child processes, free loopback
//! ports, readiness polling. Processes are killed by PID when their guard drops.

pub mod etcd;
pub mod fleet;
pub mod ha;
pub mod webdriver;
pub use skybridge_cli::demo::wan;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `skybridge` binary of this workspace, built once if a plain `cargo test` in this
/// package did not already build it. `SKYBRIDGE_BIN` points at another build (benchmarks use
/// the release one).
pub fn skybridge_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SKYBRIDGE_BIN") {
            return PathBuf::from(bin);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
            // tests run from target/<profile>/deps/<test>
            let exe = std::env::current_exe().expect("test executable path");
            exe.ancestors().nth(3).expect("target dir").to_path_buf()
        });
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--bin", "skybridge", "--bin", "skybridge-gateway"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build --bin skybridge --bin skybridge-gateway failed");
        target.join("debug").join("skybridge")
    })
    .clone()
}

/// The gateway-only `skybridge-gateway` binary built beside [`skybridge_bin`].
pub fn skybridge_gateway_bin() -> PathBuf {
    skybridge_bin().with_file_name("skybridge-gateway")
}

/// Runs `skybridge ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(skybridge_bin()).args(args).output().expect("running skybridge")
}

/// Picks a free loopback port with `probe` that this process has never handed out before: a
/// released port can be returned again by the kernel at once, and tests run in parallel.
fn unique_port(probe: impl Fn() -> SocketAddr) -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let addr = probe();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// `n` distinct free TCP ports on 127.0.0.1.
pub fn free_tcp(n: usize) -> Vec<SocketAddr> {
    (0..n).map(|_| unique_port(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap())).collect()
}

/// `n` distinct free TCP ports on 127.0.0.1 below the ephemeral range (32768 and up), for
/// third-party servers: a port there can be taken by any outgoing connection between the
/// check and the server's bind.
pub fn free_low_tcp(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|_| {
            unique_port(|| {
                loop {
                    let port = 20_000 + fastrand::u16(..12_000);
                    if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                        return l.local_addr().unwrap();
                    }
                }
            })
        })
        .collect()
}

/// `n` distinct ports on 127.0.0.1 free for UDP and TCP (a gateway's tunnel serves both on one
/// port), below the ephemeral range, where an outgoing connection could take the TCP side
/// before the gateway binds it.
pub fn free_udp(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|_| {
            unique_port(|| {
                loop {
                    let port = 20_000 + fastrand::u16(..12_000);
                    let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) else { continue };
                    if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                        return udp.local_addr().unwrap();
                    }
                }
            })
        })
        .collect()
}

/// A child process killed (SIGKILL) when dropped unless it already exited.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `skybridge ARGS` with stderr to `log`.
    pub fn spawn(args: &[&str], log: PathBuf) -> Proc {
        Proc::spawn_env(args, &[], log)
    }

    /// Starts `skybridge ARGS` with extra environment variables and stderr to `log`.
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Proc {
        Proc::spawn_program(&skybridge_bin(), args, env, log)
    }

    /// Starts `PROGRAM ARGS` (one of this workspace's binaries) with extra environment
    /// variables and stderr to `log`.
    pub fn spawn_program(program: &Path, args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env("SKYBRIDGE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        Proc { child, log }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits up to `within` for exit; returns the exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `GET /readyz` on an admin address until it answers 200.
pub fn wait_ready(admin: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if http_status(admin, "/readyz") == Some(200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The status code of `GET path`, or None when the connection fails.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.get(9..12)?.parse().ok()
}

/// `GET path` on `addr`: the status code and body, or None when the connection fails.
/// The value of the `/metrics` sample named exactly `series` (name and label set) at `addr`.
pub fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics")?;
    body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    let code = text.get(9..12)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    Some((code, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` on `addr` as JSON, or None when it fails or does not answer 200.
pub fn get_json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    match http_get(addr, path)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Polls `f` every 50 ms until it returns Some, for up to `within`; panics naming `what`.
pub fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub use skybridge_cloud_adapters::aws::moto::Moto;

pub use skybridge_api::testing::{Pki, write_identities, write_identity};

/// Environment for the AWS SDK and the `aws` CLI against moto: dummy static credentials, a
/// region, and no instance-metadata probing.
pub const AWS_TEST_ENV: [(&str, &str); 5] = [
    ("AWS_ACCESS_KEY_ID", "AKIDSKYBRIDGETEST"),
    ("AWS_SECRET_ACCESS_KEY", "secret"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Runs the real `aws servicediscovery ARGS` CLI against `moto` (text output, trimmed).
pub fn aws_cli(moto: &Moto, args: &[&str]) -> String {
    let out = Command::new("aws")
        .args(["--endpoint-url", &moto.url(), "--output", "text", "servicediscovery"])
        .args(args)
        .envs(AWS_TEST_ENV)
        .output()
        .expect("aws CLI not found: pip install awscli (scripts/test.sh does)");
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A loopback HTTP server answering every request with `hello from {who}`.
pub async fn http_backend(who: &'static str) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let body = format!("hello from {who}\n");
                let resp =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// Writes `config` to `dir/federator.toml`, starts `skybridge federator` on it with `env`
/// (log in `dir/fed.log`) and waits until its API on `api` is ready.
pub fn spawn_federator(dir: &Path, api: SocketAddr, config: &str, env: &[(&str, &str)]) -> Proc {
    let path = dir.join("federator.toml");
    std::fs::write(&path, config).unwrap();
    let fed = Proc::spawn_env(&["federator", "--config", path.to_str().unwrap()], env, dir.join("fed.log"));
    assert!(wait_ready(api, Duration::from_secs(30)), "federator not ready:\n{}", fed.log_text());
    fed
}

/// Config text of a gateway for `cluster` that takes its routes from the federator at
/// `control`, with the identity [`write_identity`] put under `dir/cluster`; `http` opens the
/// HTTP listener on a free port.
pub fn federated_gateway_toml(
    dir: &Path,
    trust_domain: &str,
    cluster: &str,
    control: SocketAddr,
    http: bool,
) -> String {
    let d = dir.display();
    let http = if http { "127.0.0.1:0" } else { "off" };
    format!(
        "[gateway]\ncluster = \"{cluster}\"\ncloud = \"other\"\nregion = \"r\"\ntrust_domain = \"{trust_domain}\"\n\
         [tls]\ncert = \"{d}/{cluster}/cert.pem\"\nkey = \"{d}/{cluster}/key.pem\"\ntrust_bundle = \"{d}/{cluster}/ca.pem\"\n\
         [listen]\ntunnel = \"{}\"\nsni = \"off\"\nhttp = \"{http}\"\nadmin = \"127.0.0.1:0\"\n\
         [federator]\naddress = \"{control}\"\nreconnect_min = \"100ms\"\nreconnect_max = \"400ms\"\n",
        free_udp(1)[0]
    )
}

/// A UDP and a TCP relay to `target` on one port number, sharing `link`: a gateway's tunnel
/// serves QUIC and TLS over TCP on one port, and peers dial one address for both.
pub async fn tunnel_relay(target: SocketAddr, link: wan::Link) -> (wan::Relay, wan::Relay) {
    for _ in 0..100 {
        let port = free_udp(1)[0];
        let Ok(udp) = wan::udp(port, target, link.clone()).await else { continue };
        match wan::tcp(udp.addr, target, link.clone()).await {
            Ok(tcp) => return (udp, tcp),
            Err(_) => continue,
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A gateway config with one static peer, HTTP on any free port and SNI off: `certs` is the
/// folder under `dir` holding its identity; `extra` (services, `[routing]`, listeners) is
/// appended.
pub fn peer_gateway_toml(
    dir: &Path,
    trust_domain: &str,
    cluster: &str,
    certs: &str,
    tunnel: SocketAddr,
    peer: (&str, SocketAddr),
    extra: &str,
) -> String {
    let d = dir.display();
    format!(
        "[gateway]\ncluster = \"{cluster}\"\ncloud = \"other\"\nregion = \"r\"\ntrust_domain = \"{trust_domain}\"\n\
         [tls]\ncert = \"{d}/{certs}/cert.pem\"\nkey = \"{d}/{certs}/key.pem\"\ntrust_bundle = \"{d}/{certs}/ca.pem\"\n\
         [listen]\ntunnel = \"{tunnel}\"\nsni = \"off\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[peers]]\ncluster = \"{}\"\ncloud = \"other\"\naddress = \"{}\"\n{extra}",
        peer.0, peer.1
    )
}

/// A static catalog (the federator's `static` source format): `clusters` (cloud `other`, region
/// `r`) and, per `(name, cluster, endpoint)`, `prod/<name>` exported by that cluster on port 80
/// (HTTP).
pub fn catalog_toml(clusters: &[&str], services: &[(&str, &str, SocketAddr)]) -> String {
    let mut t = String::new();
    for c in clusters {
        t += &format!("[[clusters]]\nid = \"{c}\"\ncloud = \"other\"\nregion = \"r\"\n");
    }
    for (name, cluster, ep) in services {
        t += &format!(
            "[[services]]\nnamespace = \"prod\"\nname = \"{name}\"\n[[services.exports]]\ncluster = \"{cluster}\"\n\
             [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"{ep}\"]\n"
        );
    }
    t
}

/// Writes `dir/catalog.toml` by rename, as the static source expects a whole file.
pub fn write_catalog_file(dir: &Path, text: &str) {
    let tmp = dir.join("catalog.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join("catalog.toml")).unwrap();
}

/// A federator config for tests and benches, built from the layout [`write_identities`] makes:
/// trust domain `td` with its identity under `dir/fed`, data under `dir/data`, control on the
/// given address, the API on any free port, merge every 100 ms, and the static source
/// `dir/catalog.toml` polled every 50 ms. Each setter replaces a key or adds a section.
#[derive(Debug, Clone)]
pub struct FederatorToml {
    dir: PathBuf,
    federator: Vec<(String, String)>,
    tls: Vec<(String, String)>,
    listen: Vec<(String, String)>,
    sections: Vec<String>,
    sources: Option<String>,
}

impl FederatorToml {
    /// The defaults above.
    pub fn new(dir: &Path, td: &str, control: SocketAddr) -> FederatorToml {
        let p = dir.display();
        let q = |v: String| format!("\"{v}\"");
        FederatorToml {
            dir: dir.to_path_buf(),
            federator: vec![
                ("trust_domain".into(), q(td.into())),
                ("data_dir".into(), q(format!("{p}/data"))),
                ("merge_interval".into(), q("100ms".into())),
            ],
            tls: vec![
                ("cert".into(), q(format!("{p}/fed/cert.pem"))),
                ("key".into(), q(format!("{p}/fed/key.pem"))),
                ("trust_bundle".into(), q(format!("{p}/fed/ca.pem"))),
            ],
            listen: vec![("control".into(), q(control.to_string())), ("api".into(), q("127.0.0.1:0".into()))],
            sections: Vec::new(),
            sources: None,
        }
    }

    fn set(table: &mut Vec<(String, String)>, key: &str, value: &str) {
        match table.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.to_owned(),
            None => table.push((key.to_owned(), value.to_owned())),
        }
    }

    /// Sets `key = value` (TOML, quoted by the caller) in `[federator]`.
    pub fn federator(mut self, key: &str, value: &str) -> Self {
        Self::set(&mut self.federator, key, value);
        self
    }

    /// Sets `key = value` in `[tls]`.
    pub fn tls(mut self, key: &str, value: &str) -> Self {
        Self::set(&mut self.tls, key, value);
        self
    }

    /// The API's listen address.
    pub fn api(mut self, api: SocketAddr) -> Self {
        Self::set(&mut self.listen, "api", &format!("\"{api}\""));
        self
    }

    /// Write access with the token in `dir/token` (`[api] token_file`).
    pub fn token_file(self) -> Self {
        let section = format!("[api]\ntoken_file = \"{}/token\"\n", self.dir.display());
        self.section(&section)
    }

    /// Appends whole sections (`[store]`, `[limits]`, `[[tls.federated]]`, ...).
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.to_owned());
        self
    }

    /// Replaces the static source with these `[[sources]]`.
    pub fn sources(mut self, text: &str) -> Self {
        self.sources = Some(text.to_owned());
        self
    }

    /// The config text.
    pub fn build(&self) -> String {
        let table = |name: &str, kvs: &[(String, String)]| {
            let body: String = kvs.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            format!("[{name}]\n{body}")
        };
        let sources = self.sources.clone().unwrap_or_else(|| {
            format!(
                "[[sources]]\ntype = \"static\"\nid = \"static\"\npath = \"{}/catalog.toml\"\ninterval = \"50ms\"\n",
                self.dir.display()
            )
        });
        [table("federator", &self.federator), table("tls", &self.tls), table("listen", &self.listen)]
            .into_iter()
            .chain(self.sections.iter().cloned())
            .chain([sources])
            .collect()
    }
}

/// [`FederatorToml`]'s defaults with `extra` (whole sections) appended.
pub fn federator_toml(dir: &Path, td: &str, control: SocketAddr, extra: &str) -> String {
    FederatorToml::new(dir, td, control).section(extra).build()
}
