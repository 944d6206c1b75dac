//! The federation's `[authorization] default = "deny"` and policies from a watched file, on a
//! real federator and two gateways: nothing crosses until the file allows it; a changed file
//! applies without a restart; a broken or emptied file is refused and the previous policies
//! stay; the API shows where each policy comes from and refuses to change the file's.

use std::path::Path;
use std::time::Duration;

use skybridge_federator::app as fed_app;
use skybridge_federator::config::Config as FedConfig;
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::{
    catalog_toml, federated_gateway_toml, federator_toml, free_tcp, get_json, http_backend, write_catalog_file,
    write_identities,
};

const TD: &str = "policy.file.example";

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if tokio::task::block_in_place(&mut f) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Writes the policies file by rename, as a ConfigMap update or `git pull` would.
fn write_policies(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `GET http://web.prod/` through the gateway's HTTP listener: the status code, or 0 when
/// nothing came back.
fn get_web(http: std::net::SocketAddr) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(http) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: web.prod.svc.clusterset.local\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn metric(api: std::net::SocketAddr, series: &str) -> f64 {
    skybridge_tests::metric(api, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_wide_deny_and_a_watched_policies_file_decide_who_crosses() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_identities(d, TD, &["aws-1", "gcp-1"]);
    let backend = http_backend("gcp-1").await;
    write_catalog_file(d, &catalog_toml(&["aws-1", "gcp-1"], &[("web", "gcp-1", backend)]));
    let policies = d.join("policies.toml");
    // Only another cluster is allowed: aws-1 is refused under the federation's default deny.
    write_policies(&policies, "[policy.\"prod/web\"]\nallow = [\"azure-*\"]\n");
    let control = free_tcp(1)[0];
    let extra = format!(
        "[authorization]\ndefault = \"deny\"\n[policies]\npath = \"{}\"\nreload_interval = \"100ms\"\n",
        policies.display()
    );
    let text = federator_toml(d, TD, control, &extra);
    let fed = fed_app::start(FedConfig::parse(&text).unwrap()).await.unwrap();
    let api = fed.addrs.api;
    // Both gateways allow by default themselves: the federation makes them stricter.
    let gw = |c: &str| GwConfig::parse(&federated_gateway_toml(d, TD, c, control, true)).unwrap();
    let aws = gw_app::start(gw("aws-1")).await.unwrap();
    let gcp = gw_app::start(gw("gcp-1")).await.unwrap();
    let http = aws.addrs.http.unwrap();
    let gcp_admin = gcp.addrs.admin;
    until("gcp-1 holds the federation's default deny", Duration::from_secs(15), || {
        get_json(gcp_admin, "/status").is_some_and(|s| s["authorization"]["default"] == "deny")
    })
    .await;
    let status = get_json(gcp_admin, "/status").unwrap();
    assert_eq!(status["authorization"]["gateway"], "allow");
    assert_eq!(status["authorization"]["federation"], "deny");
    until("aws-1 routes web.prod to gcp-1", Duration::from_secs(15), || {
        get_json(aws.addrs.admin, "/status")
            .is_some_and(|s| s["services"].as_array().is_some_and(|v| v.iter().any(|svc| svc["preferred"] == "gcp-1")))
    })
    .await;
    assert_ne!(get_web(http), 200, "aws-1 is not in the file's allow list");

    // The API shows the file's policy and refuses to change it.
    let list = get_json(api, "/api/v1/policies").unwrap();
    assert_eq!(list["authorization_default"], "deny");
    assert_eq!(list["policies"][0]["source"], "file");

    // The file now allows aws-*: applied without a restart.
    write_policies(&policies, "# reviewed in Git\n[policy.\"prod/web\"]\nallow = [\"aws-*\"]\n");
    until("aws-1 reaches web.prod once the file allows it", Duration::from_secs(10), || get_web(http) == 200).await;

    // A broken file, then an emptied one: refused, counted, the previous policies stay.
    write_policies(&policies, "[policy.\"prod/web\"]\nallow = [\"aws_1\"]\n");
    let errors = r#"skybridge_federator_policy_file_reloads_total{result="error"}"#;
    until("the broken file is refused", Duration::from_secs(10), || metric(api, errors) >= 1.0).await;
    write_policies(&policies, "");
    until("the emptied file is refused", Duration::from_secs(10), || metric(api, errors) >= 2.0).await;
    for _ in 0..5 {
        assert_eq!(get_web(http), 200, "the previous policies stay in effect");
    }
    let events = get_json(api, "/api/v1/events").unwrap().to_string();
    assert!(
        events.contains("refused, the previous policies stay in effect") && events.contains("allow[0]"),
        "{events}"
    );
    assert!(events.contains("the file is empty"), "{events}");

    // The file drops the service: under default deny, nothing crosses again.
    write_policies(&policies, "# no policies\n");
    until("aws-1 is refused once no allow list names it", Duration::from_secs(10), || get_web(http) != 200).await;
    aws.shutdown().await;
    gcp.shutdown().await;
    fed.shutdown().await;
}

/// A broken policies file at start is a config error naming the key and the entry.
#[test]
fn a_broken_policies_file_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let policies = d.join("policies.toml");
    write_policies(&policies, "[policy.\"prod/web\"]\nweights = { aws-1 = 60 }\n");
    let path = d.join("federator.toml");
    std::fs::write(
        &path,
        format!(
            "[federator]\ntrust_domain = \"{TD}\"\ndata_dir = \"{p}/data\"\n\
             [tls]\ncert = \"{p}/cert.pem\"\nkey = \"{p}/key.pem\"\ntrust_bundle = \"{p}/ca.pem\"\n\
             [policies]\npath = \"{}\"\n",
            policies.display(),
            p = d.display()
        ),
    )
    .unwrap();
    let e = FedConfig::load(&path).unwrap_err().to_string();
    assert!(e.contains("policies.path") && e.contains("policy.\"prod/web\".weights") && e.contains("60"), "{e}");
}
