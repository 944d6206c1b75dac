//! Knowing when the demo is worth printing: every gateway holds the federator's catalog with
//! all sample services, has probed each peer healthy, and sends every new connection for each
//! service to the cluster the banner says (the local copy, else the nearest). Read from the
//! gateways' own `/status`, the same view an operator gets.
//!
//! The route check matters because a gateway's smoothed RTT starts from its first probe, which
//! can be slow while everything is still starting; the printed `curl` examples should be true
//! when they are printed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::topology::{CLUSTERS, SERVICES};

/// Largest response [`get`] reads (a `/status` of the demo is a few KB).
const MAX_RESPONSE: u64 = 1024 * 1024;

/// `GET path` on `addr` with `Host: host`: the status code and body, or `None` when the
/// connection fails or no complete answer comes within `within`.
pub(super) async fn get(addr: SocketAddr, host: &str, path: &str, within: Duration) -> Option<(u16, String)> {
    let (code, body) = crate::http::get(&addr.to_string(), host, path, within, MAX_RESPONSE).await.ok()?;
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

/// What one gateway must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Expectation {
    /// The gateway's cluster id.
    pub cluster: &'static str,
    /// Its admin listener (`/status`).
    pub admin: SocketAddr,
    /// `(service clusterset name, cluster it should prefer)` for every sample service.
    pub routes: Vec<(String, &'static str)>,
}

/// Where one gateway stands, from its `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct GatewayProgress {
    /// Connected to the federator and holding every sample service.
    pub has_catalog: bool,
    /// What is not there yet, one line each (peers not probed healthy, routes that still
    /// prefer another cluster).
    pub unsettled: Vec<String>,
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Reads a gateway's `/status` document against what it should show.
pub(super) fn progress(exp: &Expectation, status: &Value) -> GatewayProgress {
    let empty = Vec::new();
    let services = status.get("services").and_then(Value::as_array).unwrap_or(&empty);
    let service = |host: &str| services.iter().find(|s| field(s, "name") == Some(host));
    let connected = status.pointer("/federator/state").and_then(Value::as_str) == Some("connected");
    let has_catalog = connected && SERVICES.iter().all(|s| service(&s.host()).is_some());

    let peers = status.get("peers").and_then(Value::as_array).unwrap_or(&empty);
    let mut unsettled = Vec::new();
    for c in CLUSTERS.iter().filter(|c| c.id != exp.cluster) {
        let peer = peers.iter().find(|p| field(p, "cluster") == Some(c.id));
        let measured = peer.and_then(|p| p.get("rtt_ms")).and_then(Value::as_f64).is_some();
        let healthy = peer.and_then(|p| field(p, "state")) == Some("healthy");
        if !(measured && healthy) {
            unsettled.push(format!("{} -> {}: not probed healthy yet", exp.cluster, c.id));
        }
    }
    for (host, want) in &exp.routes {
        // A gateway that does not report its preference cannot be checked; its peers can.
        let Some(svc) = service(host) else { continue };
        let Some(preferred) = field(svc, "preferred") else { continue };
        let short = host.split(".svc.").next().unwrap_or(host);
        // Clusters whose RTTs are within the sharing margin split new connections between
        // them; the expected cluster must take all of them.
        let shared: Vec<&str> = svc
            .get("shares")
            .and_then(Value::as_array)
            .unwrap_or(&empty)
            .iter()
            .filter(|s| {
                field(s, "cluster") != Some(want) && s.get("share").and_then(Value::as_f64).unwrap_or(0.0) > 0.0
            })
            .filter_map(|s| field(s, "cluster"))
            .collect();
        if preferred != *want {
            unsettled.push(format!("{}: {short} still prefers {preferred}, not {want}", exp.cluster));
        } else if !shared.is_empty() {
            unsettled.push(format!("{}: {short} still shares {want} with {}", exp.cluster, shared.join(", ")));
        }
    }
    GatewayProgress { has_catalog, unsettled }
}

/// How the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every gateway has the catalog, every peer probed healthy, every route as expected.
    Ready,
    /// Every gateway has the catalog, but these were not settled when the wait ended (one
    /// line each); routing is still converging.
    Unsettled(Vec<String>),
    /// These gateways still lacked the catalog when the wait ended.
    NoCatalog(Vec<String>),
}

/// Polls every gateway's `/status` until all show what they should. Gives up after
/// `catalog_within` while a gateway lacks the catalog, or `settle_within` after they all have
/// it; the result says what was missing.
pub(super) async fn wait(gateways: &[Expectation], catalog_within: Duration, settle_within: Duration) -> Readiness {
    let mut deadline = Instant::now() + catalog_within;
    let mut settling = false;
    loop {
        let mut no_catalog = Vec::new();
        let mut unsettled = Vec::new();
        for exp in gateways {
            let status = get(exp.admin, "localhost", "/status", Duration::from_secs(2))
                .await
                .filter(|(code, _)| *code == 200)
                .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok());
            let p = status.map(|s| progress(exp, &s)).unwrap_or_default();
            if !p.has_catalog {
                no_catalog.push(exp.cluster.to_owned());
            }
            unsettled.extend(p.unsettled);
        }
        let outcome = match (no_catalog.is_empty(), unsettled.is_empty()) {
            (true, true) => return Readiness::Ready,
            (true, false) => Readiness::Unsettled(unsettled),
            (false, _) => Readiness::NoCatalog(no_catalog),
        };
        if !settling && matches!(outcome, Readiness::Unsettled(_)) {
            // The catalog is in: from now on only probes and routes are awaited.
            settling = true;
            deadline = Instant::now() + settle_within;
        }
        if Instant::now() >= deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn progress_needs_the_catalog_healthy_peers_and_the_expected_routes() {
        let services: Vec<Value> = SERVICES
            .iter()
            .map(|s| json!({ "name": s.host(), "preferred": "aws-demo", "shares": [{ "cluster": "aws-demo", "share": 1.0 }] }))
            .collect();
        let status = json!({
            "federator": { "state": "connected" },
            "services": services,
            "peers": [
                { "cluster": "gcp-demo", "state": "healthy", "rtt_ms": 10.2 },
                { "cluster": "azure-demo", "state": "healthy", "rtt_ms": 41.0 },
            ],
        });
        let exp = Expectation {
            cluster: "aws-demo",
            admin: "127.0.0.1:1".parse().unwrap(),
            routes: vec![(SERVICES[0].host(), "aws-demo")],
        };
        assert_eq!(progress(&exp, &status), GatewayProgress { has_catalog: true, unsettled: vec![] });

        let mut down = status.clone();
        down["peers"][1] = json!({ "cluster": "azure-demo", "state": "down", "rtt_ms": 40.0 });
        assert_eq!(progress(&exp, &down).unsettled, vec!["aws-demo -> azure-demo: not probed healthy yet"]);

        let elsewhere = Expectation { routes: vec![(SERVICES[0].host(), "gcp-demo")], ..exp.clone() };
        assert_eq!(
            progress(&elsewhere, &status).unsettled,
            vec!["aws-demo: web.shop still prefers aws-demo, not gcp-demo"]
        );

        let mut split = status.clone();
        split["services"][0]["shares"] =
            json!([{ "cluster": "aws-demo", "share": 0.6 }, { "cluster": "gcp-demo", "share": 0.4 }]);
        assert_eq!(progress(&exp, &split).unsettled, vec!["aws-demo: web.shop still shares aws-demo with gcp-demo"]);

        let mut partial = status.clone();
        partial["services"] = json!([{ "name": SERVICES[0].host() }]);
        assert!(!progress(&exp, &partial).has_catalog, "a service is missing");
        let mut disconnected = status;
        disconnected["federator"]["state"] = json!("connecting");
        assert!(!progress(&exp, &disconnected).has_catalog);
    }
}
