//! Scoped trust across trust domains on the control plane: the federator accepts gateways of a
//! `[[tls.federated]]` domain for that domain's clusters only, and those gateways verify the
//! federator through its domain's roots (`[federator] trust_domain`).

use std::path::Path;
use std::time::Duration;

use skybridge_federator::app as fed_app;
use skybridge_federator::config::Config as FedConfig;
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::{FederatorToml, federated_gateway_toml, free_tcp, http_get, write_identities};

const AWS_TD: &str = "aws.corp.example";
const GCP_TD: &str = "gcp.corp.example";

fn federated(td: &str, bundle: &Path, clusters: &str) -> String {
    format!(
        "\n[[tls.federated]]\ntrust_domain = \"{td}\"\nbundle = \"{}\"\nclusters = [{clusters}]\n",
        bundle.display()
    )
}

/// The AWS-domain federator (identity under `aws/fed`) on `control`, its catalog at `catalog`.
fn fed_config(aws: &Path, control: std::net::SocketAddr, catalog: &Path) -> FederatorToml {
    FederatorToml::new(aws, AWS_TD, control).sources(&format!(
        "[[sources]]\ntype = \"static\"\nid = \"static\"\npath = \"{}\"\ninterval = \"50ms\"\n",
        catalog.display()
    ))
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federator_takes_gateways_of_a_federated_domain_within_its_clusters_only() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (aws, gcp) = (dir.path().join("aws"), dir.path().join("gcp"));
    // Two CAs: the federator's domain, and the GCP domain with an in-scope and an out-of-scope
    // gateway identity (the GCP domain may claim only gcp-*).
    write_identities(&aws, AWS_TD, &["aws-1"]);
    write_identities(&gcp, GCP_TD, &["gcp-1", "aws-7"]);
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, "[[clusters]]\nid = \"gcp-1\"\ncloud = \"gcp\"\nregion = \"europe-west1\"\n").unwrap();
    let control = free_tcp(1)[0];
    let text = fed_config(&aws, control, &catalog)
        .section(&federated(GCP_TD, &gcp.join("fed/ca.pem"), "\"gcp-*\""))
        .federator("data_dir", &format!("\"{}/data\"", dir.path().display()))
        .build();
    let fed = fed_app::start(FedConfig::parse(&text).unwrap()).await.unwrap();

    // A GCP-domain gateway: it trusts the AWS domain's roots for the federator only.
    let gateway = |cluster: &str| {
        federated_gateway_toml(&gcp, GCP_TD, cluster, control, false)
            + &format!("trust_domain = \"{AWS_TD}\"\n")
            + &federated(AWS_TD, &aws.join("fed/ca.pem"), "\"aws-*\"")
    };
    let g1 = gw_app::start(GwConfig::parse(&gateway("gcp-1")).unwrap()).await.unwrap();
    let connected = |c: &str| fed.state().gateways().iter().any(|g| g.connected && g.record.cluster.as_str() == c);
    until("gcp-1 (GCP domain) is connected to the AWS-domain federator", || connected("gcp-1")).await;
    until("gcp-1 routes the federator's catalog", || g1.context().federation.lock().unwrap().state == "connected")
        .await;

    // The GCP CA's certificate for aws-7 chains to the GCP roots, but the GCP domain may not
    // claim aws-7: the federator refuses it on every attempt.
    let g7 = gw_app::start(GwConfig::parse(&gateway("aws-7")).unwrap()).await.unwrap();
    // Its connects are refused (the gateway retries every 100-400 ms), and it never joins.
    until("aws-7's connect is refused", || g7.context().federation.lock().unwrap().last_error.is_some()).await;
    // ... because the federator's verifier failed the handshake.
    let failed = || {
        let (_, body) = tokio::task::block_in_place(|| http_get(fed.addrs.api, "/metrics")).unwrap_or_default();
        body.lines().any(|l| {
            l.starts_with(r#"skybridge_federator_control_connections_total{event="handshake_failed"}"#)
                && !l.ends_with(" 0")
        })
    };
    until("the federator counts a failed control handshake", failed).await;
    assert!(!connected("aws-7"), "an out-of-scope cluster joined");
    assert_ne!(g7.context().federation.lock().unwrap().state, "connected");
    g7.shutdown().await;
    g1.shutdown().await;
    fed.shutdown().await;
}

#[test]
fn the_federators_domain_must_be_ours_or_federated() {
    let dir = tempfile::tempdir().unwrap();
    let text = federated_gateway_toml(dir.path(), GCP_TD, "gcp-1", "127.0.0.1:1".parse().unwrap(), false)
        + &format!("trust_domain = \"{AWS_TD}\"\n");
    let e = GwConfig::parse(&text).unwrap_err().to_string();
    assert!(e.contains("federator.trust_domain") && e.contains(AWS_TD), "{e}");
}

/// `GET http://<svc>.prod/` through a gateway's HTTP listener: the status, 0 when nothing came.
fn get_service(http: std::net::SocketAddr, svc: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(http) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET / HTTP/1.1\r\nHost: {svc}.prod.svc.clusterset.local\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The federator distributes the GCP domain's roots: an AWS gateway that opted in for gcp-*
/// takes them and serves GCP gateways without any GCP bundle of its own; one that did not opt
/// in refuses them (and so the GCP gateway's connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federator_distributes_a_domain_to_gateways_that_opted_in() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (aws, gcp) = (dir.path().join("aws"), dir.path().join("gcp"));
    write_identities(&aws, AWS_TD, &["aws-1", "aws-2"]);
    write_identities(&gcp, GCP_TD, &["gcp-1"]);
    let (web, api) = (skybridge_tests::http_backend("aws-1").await, skybridge_tests::http_backend("aws-2").await);
    let catalog = dir.path().join("catalog.toml");
    let mut text = String::new();
    for c in ["aws-1", "aws-2", "gcp-1"] {
        text += &format!("[[clusters]]\nid = \"{c}\"\ncloud = \"other\"\nregion = \"r\"\n");
    }
    for (svc, cluster, ep) in [("web", "aws-1", web), ("api", "aws-2", api)] {
        text += &format!(
            "[[services]]\nnamespace = \"prod\"\nname = \"{svc}\"\n[[services.exports]]\ncluster = \"{cluster}\"\n\
             [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"{ep}\"]\n"
        );
    }
    std::fs::write(&catalog, text).unwrap();
    let control = free_tcp(1)[0];
    let text = fed_config(&aws, control, &catalog)
        .section(&federated(GCP_TD, &gcp.join("fed/ca.pem"), "\"gcp-*\""))
        .federator("data_dir", &format!("\"{}/data\"", dir.path().display()))
        .federator("distribute_trust", &format!("[\"{GCP_TD}\"]"))
        .build();
    let fed = fed_app::start(FedConfig::parse(&text).unwrap()).await.unwrap();

    // aws-1 opts in for gcp-*; aws-2 does not. Neither has a GCP bundle of its own.
    let aws_gw = |c: &str, opt_in: &str| federated_gateway_toml(&aws, AWS_TD, c, control, false) + opt_in;
    let a1 =
        gw_app::start(GwConfig::parse(&aws_gw("aws-1", "distributed_trust = [\"gcp-*\"]\n")).unwrap()).await.unwrap();
    let a2 = gw_app::start(GwConfig::parse(&aws_gw("aws-2", "")).unwrap()).await.unwrap();
    // gcp-1 trusts the AWS domain locally (for the federator and the AWS gateways).
    let g1_text = federated_gateway_toml(&gcp, GCP_TD, "gcp-1", control, true)
        + &format!("trust_domain = \"{AWS_TD}\"\n")
        + &federated(AWS_TD, &aws.join("fed/ca.pem"), "\"aws-*\"");
    let g1 = gw_app::start(GwConfig::parse(&g1_text).unwrap()).await.unwrap();
    let http = g1.addrs.http.unwrap();

    let status =
        |admin| tokio::task::block_in_place(|| skybridge_tests::get_json(admin, "/status")).unwrap_or_default();
    until("aws-1 takes the distributed GCP domain", || {
        status(a1.addrs.admin)["distributed_trust"]["taken"][0]["trust_domain"] == GCP_TD
    })
    .await;
    assert_eq!(status(a1.addrs.admin)["distributed_trust"]["taken"][0]["clusters"], serde_json::json!(["gcp-*"]));
    until("aws-2 refuses it, saying why", || {
        status(a2.addrs.admin)["distributed_trust"]["refused"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("distributed_trust"))
    })
    .await;
    // gcp-1 reaches aws-1's service: aws-1 verifies gcp-1 through the distributed roots.
    until("gcp-1 reaches web.prod on aws-1", || tokio::task::block_in_place(|| get_service(http, "web")) == 200).await;
    // aws-2 never learned the GCP roots: its tunnel refuses gcp-1's certificate.
    for _ in 0..3 {
        assert_ne!(tokio::task::block_in_place(|| get_service(http, "api")), 200, "aws-2 accepted a GCP gateway");
    }
    // ... at the handshake: gcp-1 sees the path to aws-2 down, to aws-1 healthy.
    let peers = status(g1.addrs.admin)["peers"].clone();
    let state = |c: &str| peers.as_array().unwrap().iter().find(|p| p["cluster"] == c).map(|p| p["state"].clone());
    assert_eq!(state("aws-1"), Some(serde_json::json!("healthy")), "{peers:#}");
    assert_eq!(state("aws-2"), Some(serde_json::json!("down")), "{peers:#}");
    for g in [g1, a1, a2] {
        g.shutdown().await;
    }
    fed.shutdown().await;
}
