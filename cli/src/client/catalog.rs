//! `skybridge status`, `clusters` and `services`: what the federator's catalog holds.

use clap::Args;
use skybridge_federator::api::dto::{
    ClustersResponse, EventsResponse, GatewaysResponse, PortDto, ProtocolDto, ServiceDetail, ServicesResponse,
    SourceStatusDto, SourcesResponse,
};
use skybridge_federator::api::federation::{FederatorsResponse, StatusResponse};
use skybridge_federator::api::policy::PolicyDto;

use super::table::{Table, list_or_dash, yes_no};
use super::{Api, ApiArgs, ClientError, Output, age_at, block_on, decode, encode, encode_query, now_ms, pretty};

/// Events that count as recent in `status`.
const RECENT_MS: u64 = 3_600_000;

/// Arguments of `skybridge status` and `skybridge clusters`.
#[derive(Debug, Args)]
pub(crate) struct PlainArgs {
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `skybridge services`.
#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// One service in detail, as namespace/name.
    pub service: Option<String>,
    /// Only services in this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Only services this cluster exports.
    #[arg(long)]
    pub cluster: Option<String>,
}

/// A source's state as `status` and `check` show it: `ok`, `degraded` (syncing, but some
/// member clusters of a fleet fail and their data is stale), `stale` (failing; its last good
/// data is still served), `failing` (no good data at all) or `pending` (not tried yet).
pub(crate) fn source_state(s: &SourceStatusDto) -> &'static str {
    match (s.last_attempt, s.consecutive_failures, s.stale_since) {
        (None, ..) => "pending",
        _ if s.held_removal.is_some() => "held",
        (_, _, Some(_)) => "stale",
        (_, 0, None) if !s.failing_clusters.is_empty() => "degraded",
        (_, 0, None) => "ok",
        _ => "failing",
    }
}

/// The failing member clusters of a fleet source, in one line: `gke-2 (unavailable: …); gke-3 (…)`.
pub(crate) fn failing_clusters(s: &SourceStatusDto) -> String {
    let parts: Vec<String> = s.failing_clusters.iter().map(|(c, f)| format!("{c} ({}: {})", f.kind, f.error)).collect();
    parts.join("; ")
}

/// `443/tls,80/http`.
pub(crate) fn ports(ports: &[PortDto]) -> String {
    let proto = |p: ProtocolDto| match p {
        ProtocolDto::Tls => "tls",
        ProtocolDto::Http => "http",
        ProtocolDto::Tcp => "tcp",
    };
    let v: Vec<String> = ports.iter().map(|p| format!("{}/{}", p.port, proto(p.protocol))).collect();
    list_or_dash(&v, ",")
}

/// Everything `status` shows, fetched together.
pub(crate) struct Overview {
    pub clusters: ClustersResponse,
    pub services: ServicesResponse,
    pub gateways: GatewaysResponse,
    pub sources: SourcesResponse,
    pub events: EventsResponse,
    pub federators: FederatorsResponse,
    pub health: StatusResponse,
}

/// `skybridge status`.
pub(crate) fn status(args: &PlainArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.api)?;
    let paths = [
        "/api/v1/clusters",
        "/api/v1/services",
        "/api/v1/gateways",
        "/api/v1/sources",
        "/api/v1/events?limit=1000",
        "/api/v1/federators",
        "/api/v1/status",
    ];
    let bodies = block_on(async {
        let mut out = Vec::new();
        for p in paths {
            out.push(api.get(p).await?);
        }
        Ok::<_, ClientError>(out)
    })??;
    if args.api.output == Output::Json {
        let mut doc = serde_json::Map::new();
        for (p, b) in paths.iter().zip(&bodies) {
            let key = p.trim_start_matches("/api/v1/").split('?').next().unwrap_or(p);
            doc.insert(key.to_owned(), decode::<serde_json::Value>(p, b)?);
        }
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let o = Overview {
        clusters: decode(paths[0], &bodies[0])?,
        services: decode(paths[1], &bodies[1])?,
        gateways: decode(paths[2], &bodies[2])?,
        sources: decode(paths[3], &bodies[3])?,
        events: decode(paths[4], &bodies[4])?,
        federators: decode(paths[5], &bodies[5])?,
        health: decode(paths[6], &bodies[6])?,
    };
    print!("{}", status_text(&args.api.api, &o, now_ms()));
    Ok(())
}

/// The one-screen summary.
pub(crate) fn status_text(api: &str, o: &Overview, now: u64) -> String {
    let svcs = &o.services.services;
    let connected = o.gateways.gateways.iter().filter(|g| g.connected).count();
    let recent: Vec<_> = o.events.events.iter().filter(|e| now.saturating_sub(e.at) <= RECENT_MS).collect();
    let mut t = Table::new(&["FEDERATOR", api]);
    t.row(vec!["STATE".into(), o.health.state.clone()]);
    t.row(vec!["CATALOG VERSION".into(), o.clusters.catalog_version.to_string()]);
    t.row(vec!["CLUSTERS".into(), o.clusters.clusters.len().to_string()]);
    t.row(vec![
        "SERVICES".into(),
        format!(
            "{} ({} with conflicts, {} stale)",
            svcs.len(),
            svcs.iter().filter(|s| s.has_conflicts).count(),
            svcs.iter().filter(|s| s.stale).count()
        ),
    ]);
    t.row(vec!["GATEWAYS".into(), format!("{connected}/{} connected", o.gateways.gateways.len())]);
    let last =
        o.events.events.last().map_or(String::new(), |e| format!(" (last {} ago: {})", age_at(now, e.at), e.kind));
    t.row(vec!["EVENTS".into(), format!("{} in the last hour{last}", recent.len())]);
    let mut out = t.render();
    for p in &o.health.problems {
        out.push_str(&format!("  ! {p}\n"));
    }
    out.push('\n');
    let mut t = Table::new(&["REPLICA", "ROLE", "SERVES VERSION", "ROLE FOR", "GATEWAYS"]);
    for f in &o.federators.federators {
        let name = if f.this { format!("{} (answered)", f.name) } else { f.name.clone() };
        let since = format!("{} (for {})", f.catalog_version, age_at(now, f.version_since));
        t.row(vec![name, f.role.clone(), since, age_at(now, f.role_since), f.gateways.to_string()]);
    }
    out.push_str(&t.render());
    out.push_str(&format!("store: {} ({})\n\n", o.federators.store.backend, o.federators.store.state));
    if o.sources.sources.is_empty() {
        out.push_str("No catalog sources configured.\n");
        return out;
    }
    let mut t = Table::new(&["SOURCE", "KIND", "STATE", "LAST SYNC", "SERVICES", "ERROR"]);
    for (id, s) in &o.sources.sources {
        let state = source_state(s);
        let state = match s.stale_since {
            Some(since) => format!("{state} for {}", age_at(now, since)),
            None => state.to_owned(),
        };
        t.row(vec![
            id.clone(),
            s.kind.clone(),
            state,
            s.last_success.map_or("never".into(), |at| format!("{} ago", age_at(now, at))),
            s.services.to_string(),
            match s.last_error.clone().filter(|_| s.consecutive_failures > 0) {
                Some(e) => e,
                None if s.held_removal.is_some() => {
                    let h = s.held_removal.as_ref().expect("checked");
                    format!(
                        "last answer removes {} of {} services: held, applies in {} (skybridge confirm-removal {id})",
                        h.removed,
                        h.of,
                        super::age(h.applies_at.saturating_sub(now))
                    )
                }
                None if !s.failing_clusters.is_empty() => format!("members failing: {}", failing_clusters(s)),
                None => "-".into(),
            },
        ]);
    }
    out.push_str(&t.render());
    out
}

/// `skybridge clusters`.
pub(crate) fn clusters(args: &PlainArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.api)?;
    let (clusters, services) = block_on(async {
        let c = api.get("/api/v1/clusters").await?;
        let s = if args.api.output == Output::Table { Some(api.get("/api/v1/services").await?) } else { None };
        Ok::<_, ClientError>((c, s))
    })??;
    match services {
        None => println!("{}", pretty("/api/v1/clusters", &clusters)?),
        Some(s) => {
            print!("{}", clusters_table(&decode("/api/v1/clusters", &clusters)?, &decode("/api/v1/services", &s)?))
        }
    }
    Ok(())
}

/// CLUSTER CLOUD REGION GATEWAYS SERVICES.
pub(crate) fn clusters_table(c: &ClustersResponse, s: &ServicesResponse) -> String {
    let mut t = Table::new(&["CLUSTER", "CLOUD", "REGION", "GATEWAYS", "SERVICES"]);
    for cl in &c.clusters {
        let services = s.services.iter().filter(|svc| svc.clusters.iter().any(|x| x.cluster == cl.id)).count();
        let cloud = serde_json::to_value(cl.cloud).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        t.row(vec![
            cl.id.clone(),
            cloud,
            cl.region.clone(),
            format!("{}/{}", cl.gateways.connected, cl.gateways.total),
            services.to_string(),
        ]);
    }
    if t.is_empty() { "No clusters in the catalog.\n".into() } else { t.render() }
}

/// `skybridge services [NS/NAME]`.
pub(crate) fn services(args: &ServicesArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.api)?;
    let path = match &args.service {
        Some(s) => {
            let (ns, name) = s
                .split_once('/')
                .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
                .ok_or_else(|| ClientError::BadArgument(format!("service {s:?}: expected namespace/name")))?;
            format!("/api/v1/services/{}/{}", encode(ns), encode(name))
        }
        None => {
            let q = encode_query(&[("namespace", args.namespace.as_deref()), ("cluster", args.cluster.as_deref())]);
            if q.is_empty() { "/api/v1/services".into() } else { format!("/api/v1/services?{q}") }
        }
    };
    let body = block_on(api.get(&path))??;
    match (args.api.output, &args.service) {
        (Output::Json, _) => println!("{}", pretty(&path, &body)?),
        (Output::Table, None) => print!("{}", services_table(&decode(&path, &body)?)),
        (Output::Table, Some(_)) => print!("{}", service_detail(&decode(&path, &body)?, now_ms())),
    }
    Ok(())
}

/// NAMESPACE NAME PORTS CLUSTERS CONFLICTS STALE; CLUSTERS is `cluster ready/total` per
/// cluster.
pub(crate) fn services_table(s: &ServicesResponse) -> String {
    let mut t = Table::new(&["NAMESPACE", "NAME", "PORTS", "CLUSTERS", "CONFLICTS", "STALE"]);
    for svc in &s.services {
        let clusters: Vec<String> =
            svc.clusters.iter().map(|c| format!("{}:{}/{}", c.cluster, c.ready, c.total)).collect();
        t.row(vec![
            svc.namespace.clone(),
            svc.name.clone(),
            ports(&svc.ports),
            list_or_dash(&clusters, ","),
            yes_no(svc.has_conflicts),
            yes_no(svc.stale),
        ]);
    }
    if t.is_empty() { "No services in the catalog.\n".into() } else { t.render() }
}

fn policy_text(p: Option<&PolicyDto>) -> String {
    let Some(p) = p else { return "none".into() };
    let weights: Vec<String> = p.weights.iter().map(|(c, w)| format!("{c}={w}")).collect();
    format!(
        "weights {}; failover {}; avoid {}; allow {}; deny {}",
        list_or_dash(&weights, ","),
        list_or_dash(&p.failover, ","),
        list_or_dash(&p.avoid, ","),
        p.allow.as_ref().map_or("default".into(), |a| list_or_dash(a, ",")),
        list_or_dash(&p.deny, ",")
    )
}

/// One service in detail: header fields, then a table per cluster and one per endpoint.
pub(crate) fn service_detail(d: &ServiceDetail, now: u64) -> String {
    let mut t = Table::new(&["Name:", &d.fqdn]);
    t.row(vec!["Namespace:".into(), d.namespace.clone()]);
    t.row(vec!["Ports:".into(), ports(&d.ports)]);
    t.row(vec!["Catalog version:".into(), d.catalog_version.to_string()]);
    t.row(vec!["Stale:".into(), yes_no(d.stale)]);
    t.row(vec!["Policy:".into(), policy_text(d.policy.as_ref())]);
    let mut out = t.render();
    out.push('\n');
    let mut t = Table::new(&["CLUSTER", "READY", "SOURCE", "SYNCED", "STALE FOR", "EXPORTED"]);
    for c in &d.clusters {
        t.row(vec![
            c.cluster.clone(),
            format!("{}/{}", c.ready, c.total),
            c.provenance.source.clone(),
            format!("{} ago", age_at(now, c.provenance.observed_at)),
            c.provenance.stale_for_ms.map_or("-".into(), super::age),
            // Sources that do not know when a cluster exported report 0.
            if c.exported_at == 0 { "-".into() } else { format!("{} ago", age_at(now, c.exported_at)) },
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
    let mut t = Table::new(&["CLUSTER", "PORT", "ENDPOINT", "ZONE", "READY"]);
    for c in &d.clusters {
        for e in &c.endpoints {
            t.row(vec![
                c.cluster.clone(),
                e.port.to_string(),
                e.address.clone(),
                e.zone.clone().unwrap_or_else(|| "-".into()),
                yes_no(e.ready),
            ]);
        }
    }
    out.push_str(&t.render());
    if !d.conflicts.is_empty() {
        out.push('\n');
        let mut t = Table::new(&["CONFLICT", "WINNER", "REASON"]);
        for c in &d.conflicts {
            t.row(vec![c.cluster.clone(), c.winner.clone(), c.reason.clone()]);
        }
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
