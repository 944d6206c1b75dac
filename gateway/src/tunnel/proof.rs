//! Reachability proofs: a path can be healthy while the service behind it is not (its
//! endpoints dead, a policy refusing us). Every `routing.proof_interval` (±20 %), for each
//! remote service port this gateway can route to, each hosting cluster's gateway is asked to
//! connect to one endpoint and close it (a proof stream carries no payload). Results go to
//! `/status` and to the federator with the reports. At most `routing.proofs_per_round` per
//! round, 16 at a time; a larger catalog is covered over several rounds, in turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use skybridge_api::model::{ClusterId, ServiceKey};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::routing::catalog::Catalog;

/// Proofs in flight at once.
const CONCURRENCY: usize = 16;

/// What is proven: a service port, through a hosting cluster.
pub type ProofKey = (ServiceKey, u16, ClusterId);

/// The latest proof of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofResult {
    pub ok: bool,
    /// When it was made (Unix ms).
    pub at_ms: u64,
    /// Why it failed: the remote gateway's refusal (`denied`, `no_route`, `upstream_unreachable`
    /// with its reason) or the stream error.
    pub error: Option<String>,
    /// Time to the answer, when there was one.
    pub took: Option<Duration>,
}

/// Every key a round could prove: each port of each service, through each remote cluster that
/// hosts it and is a peer, in a stable order.
pub fn targets(catalog: &Catalog) -> Vec<ProofKey> {
    let mut out = Vec::new();
    let mut services: Vec<_> = catalog.services.values().collect();
    services.sort_by(|a, b| a.key.cmp(&b.key));
    for svc in services {
        for port in &svc.ports {
            for c in svc.clusters.iter().filter(|c| **c != catalog.local && catalog.peers.contains_key(*c)) {
                out.push((svc.key.clone(), port.port, c.clone()));
            }
        }
    }
    out
}

/// The keys of this round: `max` of `all`, starting at `offset` and wrapping. Pure.
pub fn window(all: &[ProofKey], offset: usize, max: usize) -> Vec<ProofKey> {
    if all.len() <= max {
        return all.to_vec();
    }
    (0..max).map(|i| all[(offset + i) % all.len()].clone()).collect()
}

/// Proves until `stop` is cancelled or draining starts.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let mut offset = 0usize;
    loop {
        let every = ctx.routing.proof_interval.mul_f64(0.8 + 0.4 * fastrand::f64());
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.draining.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let catalog = ctx.catalog.load();
        let all = targets(&catalog);
        let round = window(&all, offset, ctx.routing.proofs_per_round);
        offset = offset.wrapping_add(round.len());
        let timeout = ctx.limits.open_timeout;
        let results: Vec<(ProofKey, ProofResult)> = futures_util::stream::iter(round)
            .map(|key| {
                let (ctx, catalog) = (ctx.clone(), catalog.clone());
                async move {
                    let result = match catalog.peers.get(&key.2) {
                        Some(peer) => match tokio::time::timeout(timeout, ctx.pool.prove(peer, &key.0, key.1)).await {
                            Ok(Ok(took)) => Ok(took),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err(format!("no answer within limits.open_timeout ({timeout:?})")),
                        },
                        None => Err("no longer a peer".to_owned()),
                    };
                    let at_ms = crate::federation::cache::unix_ms(SystemTime::now());
                    let r = match result {
                        Ok(took) => ProofResult { ok: true, at_ms, error: None, took: Some(took) },
                        Err(e) => ProofResult { ok: false, at_ms, error: Some(e), took: None },
                    };
                    (key, r)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut proofs = ctx.proofs.lock().expect("proofs lock");
        for (key, r) in results {
            if !r.ok {
                tracing::info!(service = %key.0, port = key.1, cluster = %key.2, error = r.error.as_deref().unwrap_or(""), "reachability proof failed");
            }
            proofs.insert(key, r);
        }
        // Keys the catalog no longer has are dropped, not reported as stale successes.
        let keep: std::collections::BTreeSet<&ProofKey> = all.iter().collect();
        proofs.retain(|k, _| keep.contains(k));
    }
}

/// The latest proofs, for `/status` and the reports.
pub fn snapshot(ctx: &Context) -> BTreeMap<ProofKey, ProofResult> {
    ctx.proofs.lock().expect("proofs lock").clone()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use skybridge_api::model::{Cloud, Protocol};

    use super::*;
    use crate::routing::catalog::{Peer, Service, ServicePort};

    fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }

    #[test]
    fn every_remote_port_through_every_hosting_peer_in_windows() {
        let svc = |name: &str, ports: &[u16], clusters: &[&str]| {
            let key: ServiceKey = format!("prod/{name}").parse().unwrap();
            let ports = ports
                .iter()
                .map(|p| ServicePort { port: *p, protocol: Protocol::Tcp, local_endpoints: vec![] })
                .collect();
            (
                key.clone(),
                Service { key, ports, clusters: clusters.iter().map(|c| id(c)).collect(), allow: None, deny: vec![] },
            )
        };
        let peer =
            |c: &str| (id(c), Peer { cluster: id(c), cloud: Cloud::Other, region: "r".into(), address: "x:1".into() });
        let catalog = Catalog {
            version: "v".into(),
            local: id("aws-1"),
            peers: [peer("gcp-1"), peer("azure-1")].into(),
            services: HashMap::from([
                svc("web", &[80, 443], &["aws-1", "gcp-1"]),
                svc("api", &[8080], &["gcp-1", "azure-1", "gone-1"]),
                svc("local", &[80], &["aws-1"]),
            ]),
            policies: HashMap::new(),
            authorization_default: Default::default(),
        };
        let all = targets(&catalog);
        let want: Vec<ProofKey> = vec![
            ("prod/api".parse().unwrap(), 8080, id("gcp-1")),
            ("prod/api".parse().unwrap(), 8080, id("azure-1")),
            ("prod/web".parse().unwrap(), 80, id("gcp-1")),
            ("prod/web".parse().unwrap(), 443, id("gcp-1")),
        ];
        assert_eq!(all, want, "not the local cluster, not a cluster without a gateway");
        assert_eq!(window(&all, 0, 10), all);
        assert_eq!(window(&all, 3, 2), vec![all[3].clone(), all[0].clone()], "wraps around");
    }
}
