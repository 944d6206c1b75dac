//! Source propagation benchmark (issue 4): from a change in the cloud's registry to every
//! gateway having applied it. AWS Cloud Map (moto's server, instances registered with the real
//! `aws` CLI, polled every BENCH_INTERVAL) and a Kubernetes watch (EndpointSlice changes on a
//! local Kubernetes API server stand-in). The federator is its own process; three gateways run
//! here.
//!
//! Run: `bench/sources.sh` (release build). Env: BENCH_SAMPLES (10), BENCH_INTERVAL ("1s").

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use skybridge_cloud_adapters::k8s::ExportApi;
use skybridge_cloud_adapters::k8s::fake::{FakeApiServer, objects};
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::{
    AWS_TEST_ENV, Moto, aws_cli, federated_gateway_toml, free_tcp, spawn_federator, write_identities,
};

const TD: &str = "bench.test";
const GATEWAYS: [&str; 3] = ["eks-1", "gke-1", "aks-1"];

fn metric(api: SocketAddr, name: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok())
}

fn gateway_version(g: &gw_app::Running) -> u64 {
    g.context().catalog.load().version.strip_prefix("federator-").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Time from `start` until the federator published a version above `before` and every
/// gateway applied it.
async fn applied(api: SocketAddr, gateways: &[gw_app::Running], before: u64, start: Instant) -> (Duration, u64) {
    let deadline = start + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "change did not propagate");
        if let Some(v) = metric(api, "skybridge_federator_catalog_version ").filter(|v| *v > before)
            && gateways.iter().all(|g| gateway_version(g) >= v)
        {
            return (start.elapsed(), v);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let p = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    println!("| {name} | {} | {:.0} | {:.0} | {:.0} |", ms.len(), p(0.5), p(0.9), ms[ms.len() - 1]);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let samples: usize = std::env::var("BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let interval = std::env::var("BENCH_INTERVAL").unwrap_or_else(|_| "1s".into());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_identities(d, TD, &GATEWAYS);

    let moto = Moto::start(&[]);
    aws_cli(&moto, &["create-http-namespace", "--name", "prod.local"]);
    let ns = aws_cli(&moto, &["list-namespaces", "--query", "Namespaces[?Name=='prod.local'].Id"]);
    let svc = aws_cli(&moto, &["create-service", "--name", "web", "--namespace-id", &ns, "--query", "Service.Id"]);
    let k8s = FakeApiServer::start().await.unwrap();
    std::fs::write(d.join("k8s-token"), FakeApiServer::DEFAULT_TOKEN).unwrap();
    k8s.apply(objects::service_export(ExportApi::Gke, "prod", "api")).unwrap();
    k8s.apply(objects::service("prod", "api", &[("http", 80, None, "TCP")])).unwrap();

    let [control, api] = free_tcp(2)[..] else { unreachable!() };
    let config = format!(
        "[federator]\ntrust_domain = \"{TD}\"\ndata_dir = \"{0}/data\"\n\
         [tls]\ncert = \"{0}/fed/cert.pem\"\nkey = \"{0}/fed/key.pem\"\ntrust_bundle = \"{0}/fed/ca.pem\"\n\
         [listen]\ncontrol = \"{control}\"\napi = \"{api}\"\n\
         [[sources]]\ntype = \"aws-cloudmap\"\nid = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{1}\"\ninterval = \"{interval}\"\n\
         [[sources]]\ntype = \"kubernetes\"\nid = \"gke-1\"\ncluster = \"gke-1\"\ncloud = \"gcp\"\nregion = \"us-east1\"\n\
         server = \"{2}\"\ntoken_file = \"{0}/k8s-token\"\n",
        d.display(),
        moto.url(),
        k8s.url()
    );
    let fed = spawn_federator(d, api, &config, &AWS_TEST_ENV);
    let mut gateways = Vec::new();
    for c in GATEWAYS {
        let text = federated_gateway_toml(d, TD, c, control, false);
        gateways.push(gw_app::start(GwConfig::parse(&text).unwrap()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Kubernetes: one EndpointSlice change per sample.
    let mut k8s_ms = Vec::new();
    for i in 0..samples {
        let before = metric(api, "skybridge_federator_catalog_version ").unwrap_or(0);
        let ip = format!("10.9.0.{}", i + 1);
        let start = Instant::now();
        k8s.apply(objects::endpoint_slice("prod", "api-1", "api", &[("http", 8080)], &[(&ip, Some(true), None)]))
            .unwrap();
        let (t, _) = applied(api, &gateways, before, start).await;
        k8s_ms.push(t.as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Cloud Map: one registration per sample, at a random point of the poll cycle.
    let mut aws_ms = Vec::new();
    for i in 0..samples {
        tokio::time::sleep(Duration::from_millis(fastrand_ms(i))).await;
        let before = metric(api, "skybridge_federator_catalog_version ").unwrap_or(0);
        let attrs = format!("AWS_INSTANCE_IPV4=10.8.0.{},AWS_INSTANCE_PORT=80,cluster=eks-1", i + 1);
        let start = Instant::now();
        aws_cli(
            &moto,
            &["register-instance", "--service-id", &svc, "--instance-id", &format!("i-{i}"), "--attributes", &attrs],
        );
        let (t, _) = applied(api, &gateways, before, start).await;
        aws_ms.push(t.as_secs_f64() * 1e3);
    }
    drop(fed);

    println!(
        "source propagation to {} gateways ({samples} samples each; Cloud Map poll interval {interval})",
        GATEWAYS.len()
    );
    println!("| change | n | p50 ms | p90 ms | max ms |\n|---|---:|---:|---:|---:|");
    summary("Kubernetes EndpointSlice change (watch)", k8s_ms);
    summary("Cloud Map RegisterInstance (aws CLI returned → applied)", aws_ms);
}

/// A spread of waits (0–1.3 s) so registrations land at different points of the poll cycle.
fn fastrand_ms(i: usize) -> u64 {
    ((i as u64 * 7919) % 13) * 100
}
