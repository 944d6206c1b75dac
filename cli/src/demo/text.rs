//! The demo's banner: where everything listens and ready-to-paste commands, with the cluster
//! each `curl` is expected to reach under the configured RTTs.

use std::fmt::Write as _;
use std::time::Duration;

use skybridge_api::config::duration;

use super::topology::{CLUSTERS, NAMESPACE, SERVICE_PORT, SERVICES, ServiceSpec};
use super::{Demo, Readiness};

/// The example requests: (gateway the client uses, service), chosen to show a local copy, the
/// nearer of two remote copies, and a copy that exists only far away.
const EXAMPLES: [(usize, &str); 4] = [(2, "payments"), (0, "search"), (0, "inventory"), (1, "web")];

fn ms(d: Duration) -> String {
    duration::format(d)
}

fn service(name: &str) -> &'static ServiceSpec {
    SERVICES.iter().find(|s| s.name == name).expect("examples name sample services")
}

/// Why `from`'s gateway sends `svc` where it does, in a few words.
fn explain(demo: &Demo, from: usize, svc: &ServiceSpec) -> String {
    let id = |c: usize| CLUSTERS[c].id;
    if svc.runs_in(from) {
        return format!("from {}: its local copy answers", id(from));
    }
    let mut remote: Vec<usize> = svc.clusters.to_vec();
    remote.sort_by_key(|&c| (demo.rtt.get(from, c), c));
    match remote.as_slice() {
        [only] => format!("from {}: only {} runs it ({} away)", id(from), id(*only), ms(demo.rtt.get(from, *only))),
        [best, rest @ ..] => {
            let others: Vec<String> =
                rest.iter().map(|&c| format!("{} ({})", id(c), ms(demo.rtt.get(from, c)))).collect();
            format!(
                "from {}: {} ({}) is nearer than {}",
                id(from),
                id(*best),
                ms(demo.rtt.get(from, *best)),
                others.join(", ")
            )
        }
        [] => unreachable!("every service runs somewhere"),
    }
}

/// The whole banner.
pub(super) fn banner(demo: &Demo, readiness: &Readiness) -> String {
    let mut out = String::new();
    let w = &mut out;
    let api = demo.api;
    let _ =
        writeln!(w, "\nSkybridge demo: a federator and {} gateways on 127.0.0.1 with an emulated WAN.", CLUSTERS.len());
    let kept = if demo.parts.temp.is_some() { "removed on exit" } else { "kept" };
    let _ = writeln!(w, "working directory: {} ({kept})\n", demo.dir.display());

    let _ = writeln!(w, "federator");
    let _ = writeln!(w, "  dashboard     http://{api}/");
    let _ = writeln!(w, "  services      http://{api}/api/v1/services");
    let _ = writeln!(w, "  latency       http://{api}/api/v1/latency");
    let _ = writeln!(w, "  gateways      http://{api}/api/v1/gateways\n");

    let _ = writeln!(w, "gateways        cloud  region        HTTP (Host)        TLS (SNI)          status");
    for g in &demo.gateways {
        let c = g.cluster;
        let _ = writeln!(
            w,
            "  {:<13} {:<6} {:<13} {:<18} {:<18} http://{}/status",
            c.id, c.cloud, c.region, g.addrs.http, g.addrs.sni, g.addrs.admin
        );
    }

    let _ = writeln!(w, "\nWAN round-trip times (one relay per direction; each adds half, plus up to 1ms jitter)");
    for l in demo.links.iter() {
        let _ = writeln!(w, "  {:<10} <-> {:<10} {}", CLUSTERS[l.a].id, CLUSTERS[l.b].id, ms(l.rtt));
    }
    let _ = writeln!(
        w,
        "  cut / restore: curl -X POST http://{}/links/aws/azure/cut   (.../restore; GET /links)",
        demo.links_api
    );

    let _ = writeln!(w, "\nservices (namespace {NAMESPACE}, HTTP port {SERVICE_PORT}, routed by Host)");
    for s in &SERVICES {
        let at: Vec<&str> = s.clusters.iter().map(|&c| CLUSTERS[c].id).collect();
        let _ = writeln!(w, "  {:<15} {}", s.short(), at.join(", "));
    }

    let _ = writeln!(w, "\ntry");
    for (from, name) in EXAMPLES {
        let svc = service(name);
        let http = demo.gateways[from].addrs.http;
        let _ = writeln!(w, "  curl -H 'Host: {}' http://{http}/", svc.host());
        let _ = writeln!(w, "      # {}", explain(demo, from, svc));
    }
    if let Some(&(from, name)) = EXAMPLES.first() {
        let (svc, dns) = (service(name), demo.gateways[from].addrs.dns);
        let _ = writeln!(w, "  dig @{} -p {} +short {}", dns.ip(), dns.port(), svc.host());
        let _ = writeln!(w, "      # the gateway's DNS answers clusterset names from its catalog (a typo: NXDOMAIN)");
    }
    let _ = writeln!(w, "  skybridge whatif --api http://{api} --down aws-demo");
    let _ = writeln!(w, "      # which routes would move if aws-demo went down");

    if let Readiness::Unsettled(what) = readiness {
        let _ = writeln!(w, "\nnote: routing has not settled yet, so some answers may differ from the comments above:");
        for line in what {
            let _ = writeln!(w, "  {line}");
        }
    }
    let _ = writeln!(w, "\nready. Ctrl-C stops everything.");
    out
}
