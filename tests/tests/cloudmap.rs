//! End to end with AWS Cloud Map: instances registered with the real `aws` CLI in a moto
//! server appear in the federator's API (the federator a real process with the standard AWS
//! credential chain from its environment) and are reachable through the gateways.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::{
    AWS_TEST_ENV, FederatorToml, Moto, aws_cli, federated_gateway_toml, free_tcp, http_backend, run, spawn_federator,
    write_identities,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TD: &str = "cloudmap.test";

async fn request(addr: SocketAddr, host: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if f().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn gateway(dir: &Path, cluster: &str, control: SocketAddr) -> gw_app::Running {
    let text = federated_gateway_toml(dir, TD, cluster, control, true);
    gw_app::start(GwConfig::parse(&text).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_registered_with_the_aws_cli_are_served_and_routed() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let moto = Moto::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_identities(d, TD, &["eks-east", "gke-west"]);

    // The namespace and service, as an operator's tooling would create them.
    aws_cli(&moto, &["create-http-namespace", "--name", "prod.example.local"]).to_string();
    let ns = aws_cli(&moto, &["list-namespaces", "--query", "Namespaces[?Name=='prod.example.local'].Id"]);
    let svc = aws_cli(&moto, &["create-service", "--name", "web", "--namespace-id", &ns, "--query", "Service.Id"]);

    let [control, api] = free_tcp(2)[..] else { unreachable!() };
    let config = FederatorToml::new(d, TD, control)
        .api(api)
        .token_file()
        .sources(&format!(
            "[[sources]]\ntype = \"aws-cloudmap\"\nid = \"aws-test\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             namespaces = [\"prod.example.local\"]\ninterval = \"1s\"\ntimeout = \"5s\"\n",
            moto.url()
        ))
        .build();
    std::fs::write(d.join("token"), "cloudmap-token\n").unwrap();
    let fed = spawn_federator(d, api, &config, &AWS_TEST_ENV);
    let east = gateway(d, "eks-east", control).await;
    let west = gateway(d, "gke-west", control).await;

    // An instance in eks-east, registered with the aws CLI: the catalog shows it, and a client
    // of the gke-west gateway reaches it through the tunnel.
    let backend = http_backend("eks-east").await;
    let attrs = format!(
        "AWS_INSTANCE_IPV4=127.0.0.1,AWS_INSTANCE_PORT={},cluster=eks-east,skybridge.protocol=http,skybridge.port=80",
        backend.port()
    );
    aws_cli(&moto, &["register-instance", "--service-id", &svc, "--instance-id", "web-1", "--attributes", &attrs]);
    let registered = Instant::now();
    until("the API lists prod/web", async || request(api, "x", "/api/v1/services/prod/web").await.contains("eks-east"))
        .await;
    let shown = request(api, "x", "/api/v1/services/prod/web").await;
    assert!(shown.contains(&backend.to_string()) && shown.contains("aws-test"), "{shown}");
    until("web.prod answers through gke-west", async || {
        request(west.addrs.http.unwrap(), "web.prod", "/").await.ends_with("hello from eks-east\n")
    })
    .await;
    println!(
        "Cloud Map registration -> routable through a remote gateway: {:?} (poll interval 1 s)",
        registered.elapsed()
    );
    let sources = request(api, "x", "/api/v1/sources").await;
    assert!(sources.contains("aws-cloudmap") && sources.contains("aws-test"), "{sources}");

    // Deregistered with the CLI: the source's only service going away is a removal of
    // everything, the canonical bad answer (an IAM change, an empty page). The guard holds it:
    // the service stays served, `check` says so, until an operator confirms.
    aws_cli(&moto, &["deregister-instance", "--service-id", &svc, "--instance-id", "web-1"]);
    until("the removal held", async || request(api, "x", "/api/v1/sources").await.contains("\"held_removal\":{")).await;
    assert!(request(west.addrs.http.unwrap(), "web.prod", "/").await.ends_with("hello from eks-east\n"), "held");
    let api_url = format!("http://{api}");
    let check = run(&["check", "--api", &api_url]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success() && text.contains("skybridge confirm-removal aws-test"), "{text}");
    let token = d.join("token");
    let confirmed = run(&["confirm-removal", "aws-test", "--api", &api_url, "--token-file", token.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&confirmed.stdout);
    assert!(confirmed.status.success() && text.contains("removal of 1 of its 1 services applies now"), "{text}");
    until("web.prod refused", async || {
        request(west.addrs.http.unwrap(), "web.prod", "/").await.starts_with("HTTP/1.1 502")
    })
    .await;
    let events = request(api, "x", "/api/v1/events?limit=100").await;
    assert!(events.contains("removal_held") && events.contains("confirmed by an operator"), "{events}");

    // Cloud Map unreachable: the source reports it, and its last good data stays, marked stale.
    aws_cli(&moto, &["register-instance", "--service-id", &svc, "--instance-id", "web-2", "--attributes", &attrs]);
    until("web.prod back", async || {
        request(west.addrs.http.unwrap(), "web.prod", "/").await.ends_with("hello from eks-east\n")
    })
    .await;
    drop(moto);
    until("the source reports the outage", async || {
        request(api, "x", "/api/v1/sources").await.contains("\"last_error_kind\":\"unavailable\"")
    })
    .await;
    let shown = request(api, "x", "/api/v1/services/prod/web").await;
    assert!(shown.contains(&backend.to_string()) && shown.contains("\"stale_since\":"), "{shown}");
    assert!(!shown.contains("\"stale_since\":null"), "{shown}");
    assert!(request(west.addrs.http.unwrap(), "web.prod", "/").await.ends_with("hello from eks-east\n"));
    drop((east, west, fed));
}
