//! The metrics operators see stay in sync with what the binaries expose: every metric a running
//! gateway or federator serves is documented in docs/metrics.md, and every metric the sample
//! Grafana dashboard (docs/grafana/skybridge.json) queries exists.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use skybridge_tests::fleet::{self, Fleet, Layout, Outcome, request, until};

/// `(name, type)` of every metric family in an OpenMetrics exposition.
fn families(exposition: &str) -> BTreeSet<(String, String)> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.trim().to_owned()))
        .collect()
}

/// Every `skybridge_…` metric name a text mentions.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("skybridge_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// A sample name without the suffix OpenMetrics adds to its family's name.
fn family_of(sample: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"].iter().find_map(|s| sample.strip_suffix(s)).unwrap_or(sample)
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    let text = fleet::http(addr, "GET", "/metrics", "").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_and_dashboard_metrics_match_what_the_binaries_serve() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let f = Fleet::start(Layout { aws_gcp: 10, aws_azure: 20, gcp_azure: 30 }).await;
    // Traffic that touches every labelled family: probes, a tunneled connection, a refusal.
    until("aws-1 has measured its peers", Duration::from_secs(30), async || {
        f.peer_ranked("aws-1", "gcp-1").await && f.peer_ranked("aws-1", "azure-1").await
    })
    .await;
    f.write_catalog(&["gcp-1"]);
    until("a connection tunneled to gcp-1", Duration::from_secs(30), async || {
        request(f.http["aws-1"]).await == Outcome::Served("gcp-1".into())
    })
    .await;
    let refused = fleet::http(f.http["aws-1"], "GET", "/", "").await;
    assert!(refused.starts_with("HTTP/1.1 502"), "Host: x is no service: {refused}");
    let gateway = families(&metrics(f.admin["aws-1"]).await);
    let federator = families(&metrics(f.api).await);
    assert!(gateway.iter().any(|(n, _)| n == "skybridge_gateway_peer_state"), "{gateway:?}");
    assert!(federator.iter().any(|(n, _)| n == "skybridge_federator_catalog_version"), "{federator:?}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let mut undocumented = Vec::new();
    for (name, kind) in gateway.iter().chain(&federator) {
        let short = name.trim_start_matches("skybridge_gateway_").trim_start_matches("skybridge_federator_");
        let documented = if kind == "counter" { format!("`{short}_total`") } else { format!("`{short}`") };
        if !docs.contains(&documented) {
            undocumented.push(format!("{name} ({kind}) as {documented}"));
        }
    }
    assert!(undocumented.is_empty(), "served but not in docs/metrics.md: {undocumented:?}");

    let dashboard = std::fs::read_to_string(root.join("docs/grafana/skybridge.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is valid JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
    let served: BTreeSet<&str> = gateway.iter().chain(&federator).map(|(n, _)| n.as_str()).collect();
    let queried = mentioned(&dashboard);
    assert!(queried.len() > 20, "{queried:?}");
    let unknown: Vec<_> = queried.iter().filter(|m| !served.contains(family_of(m))).collect();
    assert!(unknown.is_empty(), "the dashboard queries metrics nothing serves: {unknown:?}");
}

#[test]
fn helpers_split_names_as_openmetrics_does() {
    assert_eq!(family_of("skybridge_gateway_retries_total"), "skybridge_gateway_retries");
    assert_eq!(family_of("skybridge_gateway_open_latency_seconds_bucket"), "skybridge_gateway_open_latency_seconds");
    let m = mentioned(r#"rate(skybridge_a_b_total{x="1"}[5m]) / skybridge_c"#);
    assert_eq!(m, BTreeSet::from(["skybridge_a_b_total".to_owned(), "skybridge_c".to_owned()]));
    let f = families("# TYPE skybridge_x counter\nskybridge_x_total 1\n# TYPE skybridge_y gauge\n");
    assert_eq!(f.len(), 2);
}
