//! The federator itself: its replicas (`GET /api/v1/federators`) and one health verdict for
//! the whole control plane (`GET /api/v1/status`). Builders are pure: state in, DTOs out.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::SourceStatus;
use crate::state::{GatewayState, StoreHealth};
use crate::store::etcd::records::{ReplicaRecord, Role};

use super::Ctx;

/// One federator replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FederatorDto {
    pub name: String,
    /// `leader` (runs the sources, writes catalog versions), `follower` (serves what the
    /// leader wrote) or `degraded` (cannot reach the store: serves its last catalog read-only).
    pub role: String,
    /// Unix ms since it has had this role.
    pub role_since: u64,
    /// The catalog version it serves to its gateways.
    pub catalog_version: u64,
    /// Unix ms since it has served that version.
    pub version_since: u64,
    pub started_at: u64,
    /// Gateway control streams it holds.
    pub gateways: usize,
    /// Its software version.
    pub software: String,
    /// Whether this is the replica that answered.
    pub this: bool,
    /// Unix ms when its certificate expires; 0 when unknown (an older replica).
    #[serde(default)]
    pub certificate_not_after: u64,
    /// Its certificate is within its `tls.expiry_warning` of expiry (or expired): renew it.
    #[serde(default)]
    pub certificate_expiring: bool,
}

/// The store as the answering replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreDto {
    /// `embedded` or `etcd`.
    pub backend: String,
    /// `ok`, or `degraded` while it cannot be reached.
    pub state: String,
    /// Unix ms of the last change of state.
    pub since: u64,
    pub error: Option<String>,
    /// Keys under the store's prefix that this federator cannot use, with why.
    pub problems: BTreeMap<String, String>,
}

/// `GET /api/v1/federators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FederatorsResponse {
    /// The leader's name; null while none is elected.
    pub leader: Option<String>,
    pub store: StoreDto,
    /// Sorted by name.
    pub federators: Vec<FederatorDto>,
}

/// `GET /api/v1/status`: is the control plane healthy, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// `ok` or `degraded`.
    pub state: String,
    /// One line per reason for `degraded`.
    pub problems: Vec<String>,
    /// The replica that answered and its role.
    pub federator: String,
    pub role: String,
    pub leader: Option<String>,
    pub store: StoreDto,
    pub catalog_version: u64,
    pub services: usize,
    pub gateways_known: usize,
    pub gateways_connected: usize,
    pub sources_failing: Vec<String>,
}

fn store_dto(h: StoreHealth, problems: BTreeMap<String, String>) -> StoreDto {
    StoreDto { backend: h.backend.into(), state: h.state.into(), since: h.since, error: h.error, problems }
}

/// The replicas as the answering one (`me`) knows them.
pub fn federators(
    me: &str,
    replicas: BTreeMap<String, ReplicaRecord>,
    health: StoreHealth,
    problems: BTreeMap<String, String>,
) -> FederatorsResponse {
    // Without the store, other replicas' records are as old as the outage: only this
    // replica's own role is known.
    let trusted = |r: &&ReplicaRecord| health.state == "ok" || r.name == me;
    let leader = replicas.values().filter(trusted).find(|r| r.role == Role::Leader).map(|r| r.name.clone());
    let federators = replicas
        .into_values()
        .map(|r| FederatorDto {
            this: r.name == me,
            name: r.name,
            role: r.role.as_str().into(),
            role_since: r.role_since,
            catalog_version: r.catalog_version,
            version_since: r.version_since,
            started_at: r.started_at,
            gateways: r.gateways,
            software: r.software,
            certificate_not_after: r.certificate.not_after,
            certificate_expiring: r.certificate.expiring,
        })
        .collect();
    FederatorsResponse { leader, store: store_dto(health, problems), federators }
}

/// Everything `status` reads, gathered by the handler.
pub struct StatusInput {
    pub me: String,
    pub role: Role,
    pub replicas: BTreeMap<String, ReplicaRecord>,
    pub health: StoreHealth,
    pub problems: BTreeMap<String, String>,
    pub catalog_version: u64,
    pub services: usize,
    pub gateways: Vec<GatewayState>,
    pub sources: BTreeMap<String, SourceStatus>,
    /// Why this replica, leading, cannot write catalog versions.
    pub write_error: Option<String>,
}

/// The verdict: degraded when the store cannot be reached, holds unusable keys, has no
/// leader, a replica's certificate is expiring, or a source fails.
pub fn status(i: StatusInput) -> StatusResponse {
    let f = federators(&i.me, i.replicas, i.health, i.problems);
    let mut problems = Vec::new();
    if f.store.state != "ok" {
        let why = f.store.error.clone().unwrap_or_default();
        problems.push(format!("store {} unreachable: {why}; serving the last catalog read-only", f.store.backend));
    }
    for (key, why) in &f.store.problems {
        problems.push(format!("store key {key}: {why}"));
    }
    if let Some(e) = &i.write_error {
        problems.push(format!("the leader cannot write catalog versions ({e}); the last written one is served"));
    }
    if f.store.state == "ok" && f.leader.is_none() {
        problems.push("no federator replica leads: catalog sources are not running".into());
    }
    for r in f.federators.iter().filter(|r| r.certificate_expiring) {
        let at = skybridge_api::tls::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.certificate_not_after),
        );
        problems.push(format!("federator {}'s certificate expires at {at}: issue a new one", r.name));
    }
    let failing: Vec<String> = i
        .sources
        .iter()
        .filter(|(_, s)| s.consecutive_failures > 0 || !s.failing_clusters.is_empty())
        .map(|(id, _)| id.clone())
        .collect();
    for id in &failing {
        problems.push(format!("source {id} is failing; its last good data is served"));
    }
    StatusResponse {
        state: if problems.is_empty() { "ok" } else { "degraded" }.into(),
        problems,
        federator: i.me,
        role: i.role.as_str().into(),
        leader: f.leader,
        store: f.store,
        catalog_version: i.catalog_version,
        services: i.services,
        gateways_known: i.gateways.len(),
        gateways_connected: i.gateways.iter().filter(|g| g.connected).count(),
        sources_failing: failing,
    }
}

/// The federator replicas, their roles and the catalog version each serves.
#[utoipa::path(
    get, path = "/api/v1/federators", tag = "ops",
    responses((status = 200, description = "Every federator replica (one with the embedded store)", body = FederatorsResponse)),
)]
pub(super) async fn list_federators(State(ctx): State<Ctx>) -> Json<FederatorsResponse> {
    let s = &ctx.state;
    Json(federators(&s.identity().name, s.replicas(), s.store_health(), s.store_problems()))
}

/// One health verdict for the control plane, with the reasons.
#[utoipa::path(
    get, path = "/api/v1/status", tag = "ops",
    responses((status = 200, description = "ok, or degraded with one line per problem", body = StatusResponse)),
)]
pub(super) async fn get_status(State(ctx): State<Ctx>) -> Json<StatusResponse> {
    let s = &ctx.state;
    let catalog = s.catalog();
    Json(status(StatusInput {
        me: s.identity().name.clone(),
        role: s.role().0,
        replicas: s.replicas(),
        health: s.store_health(),
        problems: s.store_problems(),
        catalog_version: catalog.version,
        services: catalog.services.len(),
        gateways: s.gateways(),
        sources: s.sources(),
        write_error: s.write_error(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::etcd::records::CertificateStatus;

    fn replica(name: &str, role: Role) -> ReplicaRecord {
        ReplicaRecord {
            name: name.into(),
            role,
            role_since: 1,
            catalog_version: 7,
            version_since: 2,
            started_at: 0,
            gateways: 3,
            software: "0.1.0".into(),
            certificate: Default::default(),
        }
    }

    fn input(health: StoreHealth, replicas: &[(&str, Role)]) -> StatusInput {
        StatusInput {
            me: "fed-a".into(),
            role: Role::Follower,
            replicas: replicas.iter().map(|(n, r)| (n.to_string(), replica(n, *r))).collect(),
            health,
            problems: BTreeMap::new(),
            catalog_version: 7,
            services: 2,
            gateways: Vec::new(),
            sources: BTreeMap::new(),
            write_error: None,
        }
    }

    const OK: StoreHealth = StoreHealth { backend: "etcd", state: "ok", since: 0, error: None };

    #[test]
    fn replicas_are_listed_with_the_leader_named() {
        let f = federators("fed-a", input(OK, &[]).replicas, OK, BTreeMap::new());
        assert_eq!(f.leader, None);
        let i = input(OK, &[("fed-a", Role::Follower), ("fed-b", Role::Leader)]);
        let f = federators("fed-a", i.replicas, OK, BTreeMap::new());
        assert_eq!(f.leader.as_deref(), Some("fed-b"));
        assert_eq!(
            f.federators.iter().map(|r| (r.name.as_str(), r.this)).collect::<Vec<_>>(),
            [("fed-a", true), ("fed-b", false)]
        );
    }

    #[test]
    fn status_is_degraded_for_each_reason_and_says_why() {
        let healthy = status(input(OK, &[("fed-a", Role::Follower), ("fed-b", Role::Leader)]));
        assert_eq!((healthy.state.as_str(), healthy.problems.len()), ("ok", 0));
        let down = StoreHealth { state: "degraded", error: Some("no leader".into()), ..OK };
        let s = status(input(down, &[("fed-a", Role::Degraded)]));
        assert_eq!(s.state, "degraded");
        assert!(
            s.problems[0].contains("unreachable: no leader") && s.problems[0].contains("read-only"),
            "{:?}",
            s.problems
        );
        let leaderless = status(input(OK, &[("fed-a", Role::Follower)]));
        assert!(leaderless.problems[0].contains("no federator replica leads"));
        let mut bad = input(OK, &[("fed-b", Role::Leader)]);
        bad.problems.insert("/sb/other".into(), "not a key this federator writes".into());
        bad.sources.insert("aws".into(), SourceStatus { consecutive_failures: 2, ..SourceStatus::default() });
        let s = status(bad);
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert_eq!(s.sources_failing, ["aws"]);

        // A replica whose certificate nears expiry degrades the status, named.
        let mut expiring = input(OK, &[("fed-a", Role::Follower), ("fed-b", Role::Leader)]);
        let cert = CertificateStatus { not_after: 1_767_225_600_000, expiring: true };
        expiring.replicas.get_mut("fed-b").unwrap().certificate = cert;
        let s = status(expiring);
        assert_eq!(s.state, "degraded");
        assert_eq!(s.problems, ["federator fed-b's certificate expires at 2026-01-01T00:00:00Z: issue a new one"]);
    }
}
