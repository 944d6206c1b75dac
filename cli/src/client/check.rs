//! `skybridge check`: verifies a deployment end to end and exits non-zero naming each problem.
//!
//! [`evaluate`] is a pure function from the fetched documents to findings (unit-tested without
//! sockets); [`run`] fetches them (the federator's `/readyz`, clusters, gateways, sources and
//! latency; each `--gateway-admin`'s `/status`) and prints one line per finding.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use skybridge_federator::api::dto::{
    ClustersResponse, GatewaysResponse, LatencyResponse, ProofsResponse, SourcesResponse,
};
use skybridge_federator::api::federation::FederatorsResponse;

use super::catalog::source_state;
use super::routes::rtt;
use super::{Api, ApiArgs, ClientError, Output, age, age_at, block_on, decode, now_ms, parse_duration};

/// A path report older than this is not evidence of anything (gateways report every few
/// seconds).
const REPORT_MAX_AGE_MS: u64 = 60_000;

/// Arguments of `skybridge check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// A gateway's admin address (host:port), to check its certificate and tunnels from its
    /// `/status` (the federator does not know certificate expiry). Repeatable.
    #[arg(long = "gateway-admin", value_name = "HOST:PORT")]
    pub gateway_admin: Vec<String>,
    /// Fail when a gateway certificate expires within this (e.g. 7d, 12h).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub cert_warn: Duration,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Ok,
    Fail,
    /// Not checked (and why is in the message); does not fail the run.
    Skip,
    /// Works, but not as it should for long (a path on the TCP fallback); does not fail the run.
    Warn,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    pub result: Verdict,
    /// `federator`, `gateway`, `source`, `path`, `cert` or `tunnel`.
    pub check: &'static str,
    pub message: String,
}

fn ok(check: &'static str, message: String) -> Finding {
    Finding { result: Verdict::Ok, check, message }
}

fn fail(check: &'static str, message: String) -> Finding {
    Finding { result: Verdict::Fail, check, message }
}

fn warn(check: &'static str, message: String) -> Finding {
    Finding { result: Verdict::Warn, check, message }
}

fn skip(check: &'static str, message: String) -> Finding {
    Finding { result: Verdict::Skip, check, message }
}

/// The fields of a gateway's admin `/status` that `check` reads (gateway/src/admin/mod.rs).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AdminStatus {
    pub cluster: String,
    pub ready: bool,
    pub certificate_expires_in_seconds: u64,
    /// Absent from gateways older than the expiry warning.
    #[serde(default)]
    pub certificate: Option<AdminCertificate>,
    #[serde(default)]
    pub peers: Vec<AdminPeer>,
}

/// The certificate in a gateway's `/status`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AdminCertificate {
    /// Within the gateway's own `tls.expiry_warning` of expiry.
    pub expiring_soon: bool,
}

/// One peer in a gateway's `/status`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AdminPeer {
    pub cluster: String,
    pub state: String,
    pub rtt_ms: Option<f64>,
    pub last_error: Option<String>,
}

/// The federator's documents; each is the error text when it could not be read.
#[derive(Debug)]
pub(crate) struct Docs {
    pub clusters: Result<ClustersResponse, String>,
    pub gateways: Result<GatewaysResponse, String>,
    pub sources: Result<SourcesResponse, String>,
    pub latency: Result<LatencyResponse, String>,
    pub federators: Result<FederatorsResponse, String>,
    pub proofs: Result<ProofsResponse, String>,
}

/// Everything `check` looks at.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The API URL, for messages.
    pub api: String,
    /// `/readyz`: `Ok` on 200, else why not.
    pub ready: Result<(), String>,
    /// `None` when the federator could not be reached at all.
    pub docs: Option<Docs>,
    /// Each `--gateway-admin` address and its `/status`.
    pub admins: Vec<(String, Result<AdminStatus, String>)>,
    pub now_ms: u64,
    pub cert_warn: Duration,
}

/// The findings, in a stable order: federator, gateways, sources, paths, certificates, tunnels.
pub(crate) fn evaluate(f: &Fetched) -> Vec<Finding> {
    let mut out = Vec::new();
    match &f.ready {
        Ok(()) => out.push(ok("federator", format!("{} is reachable and ready", f.api))),
        Err(e) if f.docs.is_none() => out.push(fail("federator", format!("{} cannot be reached: {e}", f.api))),
        Err(e) => out.push(fail("federator", format!("{} is not ready: {e}", f.api))),
    }
    if let Some(d) = &f.docs {
        federators(d, &mut out);
        federator_certs(d, f.now_ms, f.cert_warn, &mut out);
        gateways(d, f.now_ms, &mut out);
        sources(d, f.now_ms, &mut out);
        paths(d, f.now_ms, &mut out);
        proofs(d, f.now_ms, &mut out);
    }
    admins(f, &mut out);
    out
}

fn federators(d: &Docs, out: &mut Vec<Finding>) {
    let f = match &d.federators {
        Ok(f) => f,
        Err(e) => return out.push(skip("federator", format!("cannot list the federator replicas: {e}"))),
    };
    if f.store.state != "ok" {
        let why = f.store.error.as_deref().unwrap_or("no error recorded");
        out.push(fail(
            "store",
            format!("{} store is degraded: {why}; the replicas serve their last catalog read-only", f.store.backend),
        ));
    }
    for (key, why) in &f.store.problems {
        out.push(fail("store", format!("key {key} cannot be used: {why}")));
    }
    let replicas: Vec<String> =
        f.federators.iter().map(|r| format!("{} ({}, version {})", r.name, r.role, r.catalog_version)).collect();
    match &f.leader {
        Some(l) => out.push(ok("federator", format!("{l} leads; replicas: {}", replicas.join(", ")))),
        None if f.store.state == "ok" => out.push(fail(
            "federator",
            format!("no replica leads: catalog sources are not running; replicas: {}", replicas.join(", ")),
        )),
        None => {}
    }
}

/// Each replica's own certificate, as its record reports it (older replicas do not).
fn federator_certs(d: &Docs, now: u64, warn: Duration, out: &mut Vec<Finding>) {
    let Ok(f) = &d.federators else { return };
    for r in f.federators.iter().filter(|r| r.certificate_not_after > 0) {
        let who = format!("federator {}", r.name);
        let left_ms = r.certificate_not_after.saturating_sub(now);
        out.push(if left_ms == 0 {
            fail("cert", format!("{who}: certificate has expired"))
        } else if r.certificate_expiring {
            fail("cert", format!("{who}: certificate expires in {}, within its tls.expiry_warning", age(left_ms)))
        } else if left_ms <= warn.as_millis() as u64 {
            let w = age(warn.as_millis() as u64);
            fail("cert", format!("{who}: certificate expires in {}, within --cert-warn {w}", age(left_ms)))
        } else {
            ok("cert", format!("{who}: certificate valid for {}", age(left_ms)))
        });
    }
}

fn gateways(d: &Docs, now: u64, out: &mut Vec<Finding>) {
    let gws = match &d.gateways {
        Ok(g) => &g.gateways,
        Err(e) => return out.push(fail("gateway", format!("cannot list gateways: {e}"))),
    };
    if gws.is_empty() {
        out.push(fail("gateway", "no gateway has ever connected to the federator".into()));
    }
    for g in gws {
        let name = format!("{}/{}", g.cluster, g.instance);
        if !g.connected {
            out.push(fail("gateway", format!("{name} is not connected (last seen {} ago)", age_at(now, g.last_seen))));
        } else if g.nacks > 0 {
            let why = g.last_nack.as_deref().unwrap_or("no reason given");
            out.push(fail("gateway", format!("{name} rejected {} catalog update(s); last: {why}", g.nacks)));
        } else {
            let since = g.connected_since.map_or(String::new(), |s| format!(" for {}", age_at(now, s)));
            out.push(ok("gateway", format!("{name} connected{since}, at catalog version {}", g.acked_version)));
        }
    }
    if let Ok(c) = &d.clusters {
        for cl in c.clusters.iter().filter(|c| c.gateways.total == 0) {
            out.push(fail("gateway", format!("cluster {} has no gateway: its services cannot be reached", cl.id)));
        }
    }
}

fn sources(d: &Docs, now: u64, out: &mut Vec<Finding>) {
    let sources = match &d.sources {
        Ok(s) => &s.sources,
        Err(e) => return out.push(fail("source", format!("cannot list sources: {e}"))),
    };
    if sources.is_empty() {
        out.push(skip("source", "no catalog sources configured".into()));
    }
    for (id, s) in sources {
        let error = match (&s.last_error_kind, &s.last_error) {
            (Some(k), Some(e)) => format!("{k}: {e}"),
            (None, Some(e)) => e.clone(),
            _ => "no error recorded".into(),
        };
        let synced = s.last_success.map_or("never".into(), |at| format!("{} ago", age_at(now, at)));
        out.push(match source_state(s) {
            "ok" => ok("source", format!("{id} ({}) synced {synced}, {} services", s.kind, s.services)),
            "pending" => fail("source", format!("{id} ({}) has not synced yet", s.kind)),
            "held" => {
                let h = s.held_removal.as_ref().expect("held");
                fail(
                    "source",
                    format!(
                        "{id} ({}): its last answer would remove {} of {} services; held since {} ago (the previous \
                         data is served): fix the source, or apply it with `skybridge confirm-removal {id}`",
                        s.kind,
                        h.removed,
                        h.of,
                        age_at(now, h.since)
                    ),
                )
            }
            "degraded" => fail(
                "source",
                format!(
                    "{id} ({}) syncs, but member clusters fail and their exports are served stale: {}",
                    s.kind,
                    super::catalog::failing_clusters(s)
                ),
            ),
            "stale" => fail(
                "source",
                format!(
                    "{id} ({}) is failing ({error}) since {} ago; its data is stale: last synced {synced}",
                    s.kind,
                    age_at(now, s.stale_since.unwrap_or(now))
                ),
            ),
            _ => fail(
                "source",
                format!(
                    "{id} ({}) is failing ({error}), {} attempts in a row; last synced {synced}",
                    s.kind, s.consecutive_failures
                ),
            ),
        });
    }
}

/// Each failing reachability proof fails the check, naming the service, the source and the
/// target; passing ones are summed up in one line.
fn proofs(d: &Docs, now: u64, out: &mut Vec<Finding>) {
    let p = match &d.proofs {
        Ok(p) => p,
        Err(e) => return out.push(skip("proof", format!("cannot read the reachability proofs: {e}"))),
    };
    for f in p.proofs.iter().filter(|f| !f.ok) {
        let why = f.error.as_deref().unwrap_or("no reason given");
        out.push(fail(
            "proof",
            format!(
                "{}:{} from {} through {}: {why} ({} ago, by {})",
                f.service,
                f.port,
                f.from,
                f.to,
                age_at(now, f.at),
                f.by
            ),
        ));
    }
    let passing = p.proofs.len() - p.failing;
    if passing > 0 {
        out.push(ok("proof", format!("{passing} service ports proven reachable from their sources")));
    }
}

fn paths(d: &Docs, now: u64, out: &mut Vec<Finding>) {
    let (lat, gws) = match (&d.latency, &d.gateways) {
        (Ok(l), Ok(g)) => (l, &g.gateways),
        (Err(e), _) => return out.push(fail("path", format!("cannot read the latency matrix: {e}"))),
        (_, Err(_)) => return,
    };
    // Sources: clusters with a connected gateway; targets: clusters some gateway serves tunnels for.
    let connected: BTreeSet<&str> = gws.iter().filter(|g| g.connected).map(|g| g.cluster.as_str()).collect();
    let targets: BTreeSet<&str> =
        gws.iter().filter(|g| !g.tunnel_addresses.is_empty()).map(|g| g.cluster.as_str()).collect();
    let reported: BTreeMap<(&str, &str), _> = lat.paths.iter().map(|p| ((p.from.as_str(), p.to.as_str()), p)).collect();
    for from in &connected {
        for to in targets.iter().filter(|t| *t != from) {
            if !reported.contains_key(&(*from, *to)) {
                out.push(fail("path", format!("{from} → {to}: {from}'s gateways reported no measurement")));
            }
        }
    }
    for p in &lat.paths {
        let name = format!("{} → {}", p.from, p.to);
        let when = format!("reported {} ago by {}", age_at(now, p.reported_at), p.by);
        let old = now.saturating_sub(p.reported_at) > REPORT_MAX_AGE_MS;
        out.push(if !connected.contains(p.from.as_str()) {
            skip("path", format!("{name}: not checked, {}'s gateway is not connected ({when})", p.from))
        } else if old {
            fail("path", format!("{name}: no fresh measurement, {when}"))
        } else if p.state == "healthy" && p.transport == "tcp" {
            let how_long = p.transport_for_s.map_or(String::new(), |s| format!(" for {}", age(s * 1000)));
            warn(
                "path",
                format!(
                    "{name} healthy over TLS/TCP{how_long}: QUIC (UDP) is blocked on the path, RTT {} ({when})",
                    rtt(p.rtt_ms)
                ),
            )
        } else if p.state == "healthy" {
            ok("path", format!("{name} healthy, RTT {} ({when})", rtt(p.rtt_ms)))
        } else {
            fail("path", format!("{name} is {} ({when})", p.state))
        });
    }
}

fn admins(f: &Fetched, out: &mut Vec<Finding>) {
    if f.admins.is_empty() {
        out.push(skip(
            "cert",
            "gateway certificates not checked: the federator does not report their expiry; \
             pass --gateway-admin HOST:PORT for each gateway"
                .into(),
        ));
        return;
    }
    let warn = f.cert_warn.as_secs();
    for (addr, st) in &f.admins {
        let s = match st {
            Ok(s) => s,
            Err(e) => {
                out.push(fail("cert", format!("gateway admin {addr}: cannot read /status: {e}")));
                continue;
            }
        };
        let who = format!("gateway {} ({addr})", s.cluster);
        let left = s.certificate_expires_in_seconds;
        out.push(if left == 0 {
            fail("cert", format!("{who}: certificate has expired"))
        } else if s.certificate.as_ref().is_some_and(|c| c.expiring_soon) {
            fail("cert", format!("{who}: certificate expires in {}, within its tls.expiry_warning", age(left * 1000)))
        } else if left <= warn {
            let w = age(warn * 1000);
            fail("cert", format!("{who}: certificate expires in {}, within --cert-warn {w}", age(left * 1000)))
        } else {
            ok("cert", format!("{who}: certificate valid for {}", age(left * 1000)))
        });
        if !s.ready {
            out.push(fail("tunnel", format!("{who} is not ready")));
        }
        for p in &s.peers {
            let name = format!("{} → {}", s.cluster, p.cluster);
            out.push(if p.state == "healthy" {
                ok("tunnel", format!("{name} healthy at {addr}, RTT {}", rtt(p.rtt_ms)))
            } else {
                let err = p.last_error.as_deref().map_or(String::new(), |e| format!("; last error: {e}"));
                fail("tunnel", format!("{name} is {} at {addr}{err}", p.state))
            });
        }
    }
}

/// The report: one `ok`/`FAIL`/`skip` line per finding, then a summary line.
pub(crate) fn report(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let r = match f.result {
            Verdict::Ok => "ok",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
            Verdict::Warn => "WARN",
        };
        out.push_str(&format!("{r:<4}  {:<9}  {}\n", f.check, f.message));
    }
    let failed = findings.iter().filter(|f| f.result == Verdict::Fail).count();
    let total = findings.iter().filter(|f| f.result != Verdict::Skip).count();
    let warned = findings.iter().filter(|f| f.result == Verdict::Warn).count();
    if failed == 0 && warned > 0 {
        out.push_str(&format!("\nall {total} checks passed, {warned} with a warning\n"));
    } else if failed == 0 {
        out.push_str(&format!("\nall {total} checks passed\n"));
    } else {
        out.push_str(&format!("\n{failed} of {total} checks failed\n"));
    }
    out
}

/// `skybridge check`: fetches, evaluates, prints; a failed check is an error.
pub(crate) fn run(args: &CheckArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.api)?;
    let fetched = block_on(fetch(&api, args))?;
    let findings = evaluate(&fetched);
    match args.api.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&findings).unwrap_or_default()),
        Output::Table => print!("{}", report(&findings)),
    }
    let failed = findings.iter().filter(|f| f.result == Verdict::Fail).count();
    let total = findings.iter().filter(|f| f.result != Verdict::Skip).count();
    if failed > 0 { Err(ClientError::ChecksFailed { failed, total }) } else { Ok(()) }
}

async fn fetch(api: &Api, args: &CheckArgs) -> Fetched {
    let text = |e: ClientError| error_chain(&e);
    let ready = api.get("/readyz").await;
    let unreachable = matches!(ready, Err(ClientError::Http(..)));
    let docs = if unreachable {
        None
    } else {
        Some(Docs {
            clusters: api.get_json("/api/v1/clusters").await.map_err(text),
            gateways: api.get_json("/api/v1/gateways").await.map_err(text),
            sources: api.get_json("/api/v1/sources").await.map_err(text),
            latency: api.get_json("/api/v1/latency").await.map_err(text),
            federators: api.get_json("/api/v1/federators").await.map_err(text),
            proofs: api.get_json("/api/v1/proofs").await.map_err(text),
        })
    };
    let mut admins = Vec::new();
    for addr in &args.gateway_admin {
        // Gateway admin ports are plain HTTP on the pod network.
        let url = super::Url { https: false, authority: addr.clone(), prefix: String::new() };
        let admin = super::Api { url, tls: None };
        let st = match admin.get("/status").await {
            Ok(body) => decode::<AdminStatus>("/status", &body).map_err(text),
            Err(e) => Err(text(e)),
        };
        admins.push((addr.clone(), st));
    }
    Fetched {
        api: args.api.api.clone(),
        ready: ready.map(drop).map_err(text),
        docs,
        admins,
        now_ms: now_ms(),
        cert_warn: args.cert_warn,
    }
}

/// An error and its causes, `: `-separated (an I/O error's text is in its source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
