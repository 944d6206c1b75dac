//! Reachability proofs: a service whose endpoint is dead while its path is healthy fails its
//! proof; the API, the service's detail and `skybridge check` name it; once the endpoint is
//! fixed the proof passes within an interval.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use skybridge_federator::app as fed_app;
use skybridge_federator::config::Config as FedConfig;
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::{
    catalog_toml, federated_gateway_toml, federator_toml, free_tcp, get_json, http_backend, run, write_catalog_file,
    write_identities,
};

const TD: &str = "proofs.example";

fn write_catalog(d: &Path, dead_endpoint: SocketAddr, live: SocketAddr) {
    write_catalog_file(
        d,
        &catalog_toml(&["aws-1", "gcp-1"], &[("web", "gcp-1", live), ("dead", "gcp-1", dead_endpoint)]),
    );
}

/// The proof of `prod/<name>:80` from aws-1 through gcp-1, once there is one.
fn proof(api: SocketAddr, name: &str) -> Option<serde_json::Value> {
    let v = get_json(api, "/api/v1/proofs")?;
    v["proofs"].as_array()?.iter().find(|p| p["service"] == format!("prod/{name}")).cloned()
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = tokio::task::block_in_place(&mut f) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_behind_a_healthy_path_fails_its_proof_until_fixed() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_identities(d, TD, &["aws-1", "gcp-1"]);
    let live = http_backend("gcp-1").await;
    // A port nobody listens on: connections to it are refused.
    let dead = free_tcp(1)[0];
    write_catalog(d, dead, live);
    let control = free_tcp(1)[0];
    let text = federator_toml(d, TD, control, "");
    let fed = fed_app::start(FedConfig::parse(&text).unwrap()).await.unwrap();
    let gw = |c: &str| {
        let text = federated_gateway_toml(d, TD, c, control, true)
            + "report_interval = \"200ms\"\n[routing]\nproof_interval = \"300ms\"\n";
        GwConfig::parse(&text).unwrap()
    };
    let aws = gw_app::start(gw("aws-1")).await.unwrap();
    let gcp = gw_app::start(gw("gcp-1")).await.unwrap();
    let api = fed.addrs.api;

    let failed = until("prod/dead's proof fails", || proof(api, "dead").filter(|p| p["ok"] == false)).await;
    assert_eq!((failed["from"].as_str(), failed["to"].as_str()), (Some("aws-1"), Some("gcp-1")), "{failed}");
    let why = failed["error"].as_str().unwrap();
    assert!(why.contains("upstream_unreachable") && why.contains(&dead.to_string()), "{why}");
    let web = until("prod/web's proof passes", || proof(api, "web").filter(|p| p["ok"] == true)).await;
    assert!(web["took_ms"].as_f64().is_some(), "{web}");
    // The path itself is healthy: the proof, not the path, finds the dead service.
    let admin = aws.addrs.admin;
    until("aws-1 → gcp-1 is healthy", || {
        let status = get_json(admin, "/status")?;
        let peers = status["peers"].as_array()?.clone();
        peers.iter().any(|p| p["cluster"] == "gcp-1" && p["state"] == "healthy").then_some(())
    })
    .await;
    assert_eq!(proof(api, "dead").unwrap()["ok"], false, "still failing on a healthy path");
    let detail = get_json(api, "/api/v1/services/prod/dead").unwrap();
    assert_eq!(detail["proofs"][0]["ok"], false, "{detail}");

    // skybridge check fails, naming the service, the source and the target.
    let url = format!("http://{api}");
    let out = tokio::task::spawn_blocking(move || run(&["check", "--api", &url])).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL  proof") && l.contains("prod/dead:80 from aws-1 through gcp-1")),
        "{text}"
    );

    // Fixed: the endpoint is a live backend now; the proof passes within an interval or two.
    write_catalog(d, live, live);
    until("prod/dead's proof passes once fixed", || proof(api, "dead").filter(|p| p["ok"] == true)).await;
    aws.shutdown().await;
    gcp.shutdown().await;
    fed.shutdown().await;
}
