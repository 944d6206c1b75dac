//! End-to-end: the real `skybridge` binary as separate processes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use skybridge_api::identity::{Role, SpiffeId};
use skybridge_tests::{Proc, free_tcp, free_udp, run, wait_ready};

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "skybridge {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ca init` in `<dir>/ca` and `ca issue --cluster C --out <dir>/<out>` for each (C, out).
fn pki(dir: &Path, issue: &[(&str, &str)]) {
    let ca = dir.join("ca");
    ok(&["ca", "init", "--trust-domain", "e2e.skybridge", "--out", ca.to_str().unwrap()]);
    for (cluster, out) in issue {
        ok(&[
            "ca",
            "issue",
            "--ca",
            ca.to_str().unwrap(),
            "--cluster",
            cluster,
            "--out",
            dir.join(out).to_str().unwrap(),
        ]);
    }
}

fn spiffe_of(cert: &Path) -> SpiffeId {
    let der = CertificateDer::from_pem_file(cert).unwrap();
    SpiffeId::from_cert_der_any_domain(&der).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_init_and_issue() {
    let dir = tempfile::tempdir().unwrap();
    let d = |s: &str| dir.path().join(s).to_str().unwrap().to_owned();
    ok(&["ca", "init", "--trust-domain", "corp.example", "--out", &d("ca")]);
    assert_eq!(mode(&dir.path().join("ca/ca-key.pem")), 0o600);
    // A second init must not silently replace the root.
    let again = run(&["ca", "init", "--trust-domain", "corp.example", "--out", &d("ca")]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    ok(&["ca", "issue", "--ca", &d("ca"), "--cluster", "aws-prod-use1", "--out", &d("gw")]);
    assert_eq!(mode(&dir.path().join("gw/key.pem")), 0o600);
    let id = spiffe_of(&dir.path().join("gw/cert.pem"));
    assert_eq!(id.to_string(), "spiffe://corp.example/cluster/aws-prod-use1/gateway");
    assert!(dir.path().join("gw/ca.pem").exists());

    ok(&["ca", "issue", "--ca", &d("ca"), "--federator", "--dns", "federator.corp.example", "--out", &d("fed")]);
    assert_eq!(spiffe_of(&dir.path().join("fed/cert.pem")).role, Role::Federator);

    ok(&["ca", "issue", "--ca", &d("ca"), "--admin", "alice", "--out", &d("alice")]);
    assert_eq!(spiffe_of(&dir.path().join("alice/cert.pem")).role, Role::Admin("alice".into()));

    let bad = run(&["ca", "issue", "--ca", &d("ca"), "--cluster", "Not_A_Label", "--out", &d("x")]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Not_A_Label"));
    let bad = run(&["ca", "issue", "--ca", &d("ca"), "--admin", "Alice/x", "--out", &d("x")]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--admin"), "{}", String::from_utf8_lossy(&bad.stderr));
}

struct Cluster {
    config: String,
    admin: SocketAddr,
}

#[allow(clippy::too_many_arguments)]
fn gateway_config(
    dir: &Path,
    cluster: &str,
    tunnel: SocketAddr,
    admin: SocketAddr,
    peer: (&str, SocketAddr),
    tcp_listen: Option<SocketAddr>,
    endpoint: Option<SocketAddr>,
    extra: &str,
) -> Cluster {
    let eps = endpoint.map(|e| format!("\"{e}\"")).unwrap_or_default();
    let listen_tcp = tcp_listen
        .map(|a| format!("[[listen.tcp]]\naddress = \"{a}\"\nservice = \"echo.demo\"\nport = 9000\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[gateway]
cluster = "{cluster}"
cloud = "other"
region = "e2e"
trust_domain = "e2e.skybridge"

[tls]
cert = "{cluster}/cert.pem"
key = "{cluster}/key.pem"
trust_bundle = "{cluster}/ca.pem"

[listen]
tunnel = "{tunnel}"
sni = "off"
http = "off"
admin = "{admin}"
{listen_tcp}
[[peers]]
cluster = "{}"
cloud = "other"
address = "{}"

[[services]]
namespace = "demo"
name = "echo"
clusters = ["gw-b"]
[[services.ports]]
port = 9000
protocol = "tcp"
endpoints = [{eps}]
{extra}"#,
        peer.0, peer.1
    );
    let path = dir.join(format!("{cluster}.toml"));
    std::fs::write(&path, text).unwrap();
    Cluster { config: path.to_str().unwrap().to_owned(), admin }
}

fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn check_config_reports_key_value_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d, &[("gw-a", "gw-a")]);
    let (udp, tcp) = (free_udp(2), free_tcp(1));
    let good = gateway_config(d, "gw-a", udp[0], tcp[0], ("gw-b", udp[1]), None, None, "");
    let good_text = std::fs::read_to_string(&good.config).unwrap();
    let out = run(&["gateway", "--config", &good.config, "--check-config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = d.join("bad.toml");
    let check = |text: String| {
        std::fs::write(&bad, text).unwrap();
        let out = run(&["gateway", "--config", bad.to_str().unwrap(), "--check-config"]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check(format!("{good_text}\n[limits]\nidle_timeout = \"0s\"\n"));
    assert!(err.contains("limits.idle_timeout") && err.contains("must be positive"), "{err}");
    let err = check(format!("{good_text}\n[gateway2]\n"));
    assert!(err.contains("gateway2"), "{err}");
    let err = check(good_text.replace("tunnel = \"", "tunnel = \"localhost:"));
    assert!(err.contains("listen.tunnel"), "{err}");
    // The gateway-only binary checks the same way.
    let gw_only = |config: &str| {
        std::process::Command::new(skybridge_tests::skybridge_gateway_bin())
            .args(["--config", config, "--check-config"])
            .output()
            .unwrap()
    };
    assert!(gw_only(&good.config).status.success());
    let out = gw_only(bad.to_str().unwrap());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("listen.tunnel"));

    // A certificate for another cluster is caught by --check-config too.
    let ca = d.join("ca");
    ok(&["ca", "issue", "--ca", ca.to_str().unwrap(), "--cluster", "gw-z", "--out", d.join("gw-a").to_str().unwrap()]);
    let out = run(&["gateway", "--config", &good.config, "--check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("gw-z") && err.contains("gw-a"), "{err}");
}

fn roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
}

#[test]
fn two_gateway_processes_tunnel_then_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d, &[("gw-a", "gw-a"), ("gw-b", "gw-b")]);
    let echo = echo_server();
    let (udp, tcp) = (free_udp(2), free_tcp(3));
    let (ta, tb, listen) = (udp[0], udp[1], tcp[0]);
    let a = gateway_config(d, "gw-a", ta, tcp[1], ("gw-b", tb), Some(listen), None, "");
    let b = gateway_config(d, "gw-b", tb, tcp[2], ("gw-a", ta), None, Some(echo), "");
    let pb = Proc::spawn(&["gateway", "--config", &b.config], d.join("b.log"));
    // A runs as the gateway-only binary the Kubernetes manifests start, B as `skybridge gateway`.
    let mut pa =
        Proc::spawn_program(&skybridge_tests::skybridge_gateway_bin(), &["--config", &a.config], &[], d.join("a.log"));
    assert!(wait_ready(a.admin, Duration::from_secs(20)), "gw-a not ready: {}", pa.log_text());
    assert!(wait_ready(b.admin, Duration::from_secs(20)), "gw-b not ready: {}", pb.log_text());

    let mut held = TcpStream::connect(listen).unwrap_or_else(|e| {
        panic!("connect {listen}: {e}\ngw-a log:\n{}\ngw-b log:\n{}", pa.log_text(), pb.log_text())
    });
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    roundtrip(&mut held, b"across two processes");

    pa.terminate();
    // Draining: the listener closes and readiness drops, the held connection keeps working.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect_timeout(&listen, Duration::from_millis(100)).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused, "listener still accepting after SIGTERM");
    assert_ne!(skybridge_tests::http_status(a.admin, "/readyz"), Some(200));
    roundtrip(&mut held, b"still flowing while draining");
    held.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    assert_eq!(pa.wait_exit(Duration::from_secs(10)), Some(0), "clean exit after drain: {}", pa.log_text());
    let log = pa.log_text();
    assert!(log.contains("connection closed") && log.contains("cluster=gw-b"), "access log line: {log}");
}

/// `skybridge gateway` under `prlimit --nofile=SOFT:HARD`, as a container runtime starts it.
fn spawn_with_nofile(nofile: &str, config: &str, log: std::path::PathBuf) -> Proc {
    let file = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new("prlimit")
        .arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(skybridge_tests::skybridge_bin())
        .args(["gateway", "--config", config])
        .env("SKYBRIDGE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .expect("prlimit (util-linux)");
    Proc { child, log }
}

/// The (soft, hard) open-file limit of process `pid`.
fn nofile(pid: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let v: Vec<&str> = line.split_whitespace().collect();
    (v[3].to_owned(), v[4].to_owned())
}

#[test]
fn the_gateway_raises_its_open_file_limit_and_warns_when_the_caps_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d, &[("gw-a", "gw-a")]);
    let (udp, tcp) = (free_udp(2), free_tcp(2));
    // containerd 2's default: soft 1024, hard far higher. The gateway takes the hard limit
    // (this test's own hard limit: only root may raise a hard limit).
    let hard = nofile("self").1;
    assert!(hard == "unlimited" || hard.parse::<u64>().unwrap() >= 4096, "this machine's hard limit is {hard}");
    // 1000 connections need 3000 descriptors (+ admin and reserve): they fit in 4096.
    let small = "\n[limits]\nmax_connections = 1000\n";
    let a = gateway_config(d, "gw-a", udp[0], tcp[0], ("gw-b", udp[1]), None, None, small);
    let p = spawn_with_nofile(&format!("1024:{hard}"), &a.config, d.join("raised.log"));
    assert!(wait_ready(a.admin, Duration::from_secs(20)), "not ready: {}", p.log_text());
    assert_eq!(nofile(&p.child.id().to_string()), (hard.clone(), hard));
    let log = p.log_text();
    assert!(log.contains("raised the open-file limit") && !log.contains("the open-file limit is"), "{log}");
    drop(p);

    // A hard limit below what the caps need: it runs, and says which settings do not fit.
    let b = gateway_config(d, "gw-a", udp[0], tcp[1], ("gw-b", udp[1]), None, None, "");
    let p = spawn_with_nofile("1024:1024", &b.config, d.join("short.log"));
    assert!(wait_ready(b.admin, Duration::from_secs(20)), "not ready: {}", p.log_text());
    let log = p.log_text();
    assert!(
        log.contains("the open-file limit is 1024 (hard limit 1024)") && log.contains("limits.max_connections (10000"),
        "{log}"
    );
}

/// `ca issue --intermediate`: a root delegates a CA to a trust domain; leaves issued by it carry
/// the intermediate and name the root as their trust bundle, and a gateway config using them
/// checks out.
#[test]
fn ca_delegates_a_trust_domain_to_an_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |s: &str| d.join(s).to_str().unwrap().to_owned();
    ok(&["ca", "init", "--trust-domain", "e2e.skybridge", "--out", &p("root")]);
    ok(&["ca", "issue", "--ca", &p("root"), "--intermediate", "--trust-domain", "gcp.e2e", "--out", &p("gcp-ca")]);
    ok(&["ca", "issue", "--ca", &p("gcp-ca"), "--cluster", "gcp-1", "--out", &p("gcp-1")]);
    let cert = std::fs::read_to_string(d.join("gcp-1/cert.pem")).unwrap();
    assert_eq!(cert.matches("BEGIN CERTIFICATE").count(), 2, "leaf and intermediate");
    let root = std::fs::read_to_string(d.join("root/ca.pem")).unwrap();
    assert_eq!(std::fs::read_to_string(d.join("gcp-1/ca.pem")).unwrap(), root, "the trust bundle is the root");
    let leaf = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let id = SpiffeId::from_cert_der_any_domain(&leaf).unwrap();
    assert_eq!(id.to_string(), "spiffe://gcp.e2e/cluster/gcp-1/gateway");
    // An intermediate does not issue intermediates, and --trust-domain needs --intermediate.
    assert!(
        !run(&["ca", "issue", "--ca", &p("gcp-ca"), "--intermediate", "--trust-domain", "x.e2e", "--out", &p("x")])
            .status
            .success()
    );
    assert!(
        !run(&["ca", "issue", "--ca", &p("root"), "--cluster", "a-1", "--trust-domain", "x.e2e", "--out", &p("y")])
            .status
            .success()
    );
    // The gateway's own chain (leaf + intermediate) verifies against the root at --check-config.
    let (udp, tcp) = (free_udp(2), free_tcp(1));
    std::fs::create_dir_all(d.join("gw")).unwrap();
    let config = d.join("gw/gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ncluster = \"gcp-1\"\ncloud = \"gcp\"\nregion = \"r\"\ntrust_domain = \"gcp.e2e\"\n\
             [tls]\ncert = \"{0}/cert.pem\"\nkey = \"{0}/key.pem\"\ntrust_bundle = \"{0}/ca.pem\"\n\
             [listen]\ntunnel = \"{1}\"\nsni = \"off\"\nhttp = \"off\"\nadmin = \"127.0.0.1:{2}\"\n",
            p("gcp-1"),
            udp[0],
            tcp[0].port()
        ),
    )
    .unwrap();
    let out = run(&["gateway", "--config", config.to_str().unwrap(), "--check-config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
