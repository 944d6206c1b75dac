//! `skybridge routes`: where each service's new connections go from each cluster, as the
//! federator computes it from the gateways' reports (`GET /api/v1/latency`, its `routes`).

use clap::Args;
use skybridge_federator::api::dto::{LatencyResponse, RouteShare};

use super::table::Table;
use super::{Api, ApiArgs, ClientError, Output, block_on, decode, encode_query, pretty};

/// Arguments of `skybridge routes`.
#[derive(Debug, Args)]
pub(crate) struct RoutesArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Only this service (namespace/name).
    #[arg(long)]
    pub service: Option<String>,
    /// Only routes from this cluster's gateways.
    #[arg(long)]
    pub from: Option<String>,
}

/// `skybridge routes`.
pub(crate) fn run(args: &RoutesArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.api)?;
    let q = encode_query(&[("service", args.service.as_deref()), ("from", args.from.as_deref())]);
    let path = if q.is_empty() { "/api/v1/latency".to_owned() } else { format!("/api/v1/latency?{q}") };
    let body = block_on(api.get(&path))??;
    match args.api.output {
        Output::Json => println!("{}", pretty(&path, &body)?),
        Output::Table => print!("{}", table(&decode(&path, &body)?)),
    }
    Ok(())
}

/// `aws-1 70%,gcp-1 30%`, or `-` when no cluster can take the service.
pub(crate) fn shares(s: &[RouteShare]) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.iter().map(|s| format!("{} {:.0}%", s.cluster, s.share * 100.0)).collect::<Vec<_>>().join(",")
}

/// `12.5 ms`, or `?` when not measured.
pub(crate) fn rtt(ms: Option<f64>) -> String {
    ms.map_or("?".into(), |ms| format!("{ms:.1} ms"))
}

/// SERVICE FROM PREFERRED SHARES EXPECTED-RTT; a share over a path on the TLS-over-TCP
/// fallback (UDP blocked) is marked `(tcp)`.
pub(crate) fn table(l: &LatencyResponse) -> String {
    let tcp: std::collections::BTreeSet<(&str, &str)> =
        l.paths.iter().filter(|p| p.transport == "tcp").map(|p| (p.from.as_str(), p.to.as_str())).collect();
    let mut t = Table::new(&["SERVICE", "FROM", "PREFERRED", "SHARES", "EXPECTED-RTT"]);
    for r in &l.routes {
        let unreachable = r.preferred.is_none();
        let mut text = shares(&r.shares);
        if r.shares.iter().any(|s| tcp.contains(&(r.from.as_str(), s.cluster.as_str()))) {
            text = r
                .shares
                .iter()
                .map(|s| {
                    let mark = if tcp.contains(&(r.from.as_str(), s.cluster.as_str())) { " (tcp)" } else { "" };
                    format!("{} {:.0}%{mark}", s.cluster, s.share * 100.0)
                })
                .collect::<Vec<_>>()
                .join(",");
        }
        t.row(vec![
            format!("{}/{}", r.namespace, r.name),
            r.from.clone(),
            r.preferred.clone().unwrap_or_else(|| "unreachable".into()),
            text,
            if unreachable { "-".into() } else { rtt(r.expected_rtt_ms) },
        ]);
    }
    if t.is_empty() { "No routes (no service, or no gateway known).\n".into() } else { t.render() }
}

#[cfg(test)]
mod tests {
    use skybridge_federator::api::dto::ServiceRoute;

    use super::*;

    #[test]
    fn routes_table() {
        let route = |name: &str, from: &str, shares: &[(&str, f64)], rtt: Option<f64>| ServiceRoute {
            namespace: "prod".into(),
            name: name.into(),
            from: from.into(),
            preferred: shares.first().map(|s| s.0.to_owned()),
            shares: shares.iter().map(|(c, s)| RouteShare { cluster: (*c).into(), share: *s }).collect(),
            order: vec![],
            expected_rtt_ms: rtt,
        };
        let path = |from: &str, to: &str, transport: &str| skybridge_federator::api::dto::LatencyPath {
            from: from.into(),
            to: to.into(),
            rtt_ms: Some(3.0),
            rank_rtt_ms: None,
            state: "healthy".into(),
            transport: transport.into(),
            transport_for_s: None,
            reported_at: 1,
            by: "gw".into(),
        };
        let l = LatencyResponse {
            clusters: vec![],
            paths: vec![path("aws-1", "gcp-1", "tcp"), path("gcp-1", "aws-1", "quic")],
            routes: vec![
                route("payments", "aws-1", &[("aws-1", 0.7), ("gcp-1", 0.3)], Some(3.6)),
                route("web", "gcp-1", &[("aws-1", 1.0)], None),
                route("db", "gcp-1", &[], None),
            ],
        };
        assert_eq!(
            table(&l),
            "\
SERVICE         FROM    PREFERRED     SHARES                      EXPECTED-RTT
prod/payments   aws-1   aws-1         aws-1 70%,gcp-1 30% (tcp)   3.6 ms
prod/web        gcp-1   aws-1         aws-1 100%                  ?
prod/db         gcp-1   unreachable   -                           -
"
        );
    }
}
