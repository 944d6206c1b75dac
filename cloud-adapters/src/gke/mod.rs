//! GKE Multi-Cluster Services: the fleet's members from GKE Hub (`list_memberships`, official
//! `google-cloud-gkehub-v1` client), each member's ServiceExports, Services and EndpointSlices
//! from its Kubernetes API ([`crate::k8s`]), with Google application-default credentials as
//! bearer tokens, or those of a credentials file (docs/sources/gcp.md).

pub mod config;
#[cfg(feature = "testing")]
pub mod fake;
#[cfg(feature = "testing")]
pub mod fake_oauth;

use std::collections::BTreeMap;

use google_cloud_auth::credentials::{CacheableResource, Credentials};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::paginator::Paginator as _;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt as _};
use google_cloud_gkehub_v1::client::GkeHub;
use google_cloud_gkehub_v1::model::Membership;
use skybridge_api::catalog::ClusterInfo;
use skybridge_api::model::{Cloud, ClusterId};
use skybridge_api::source::{ErrorKind, SourceError};

pub use config::GkeConfig;

use crate::fleet::{Discovery, Fleet, Member, RefreshHandle, refresh_token};
use crate::k8s::{ApiServer, SharedToken, Tuning};

/// OAuth scope for GKE Hub, the connect gateway and GKE API servers.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// GKE Hub membership discovery.
pub struct GkeDiscovery {
    cfg: GkeConfig,
    hub: GkeHub,
    token: SharedToken,
    /// Per-membership CA files, read at start-up.
    cas: BTreeMap<String, String>,
    _refresh: RefreshHandle,
}

/// The GKE fleet source.
pub type GkeFleet = Fleet<GkeDiscovery>;

/// Builds the source. `credentials` `None` uses `cfg.credentials_file` when set, else
/// application-default credentials (the `GOOGLE_APPLICATION_CREDENTIALS` file, gcloud's ADC,
/// or the metadata server / workload identity on GKE).
pub async fn source(cfg: GkeConfig, credentials: Option<Credentials>) -> Result<GkeFleet, SourceError> {
    let (creds, check): (Credentials, std::sync::Arc<str>) = match (credentials, &cfg.credentials_file) {
        (Some(c), _) => (c, "the credentials given to the source".into()),
        (None, Some(path)) => (
            from_file(path)?,
            format!("the credentials file {} (its refresh token, key or token_uri)", path.display()).into(),
        ),
        (None, None) => {
            let c = google_cloud_auth::credentials::Builder::default().with_scopes([SCOPE]).build().map_err(|e| {
                SourceError::new(
                    ErrorKind::Auth,
                    format!(
                        "no Google application-default credentials: {e}; set GOOGLE_APPLICATION_CREDENTIALS, \
                         `credentials_file`, or use workload identity"
                    ),
                )
            })?;
            (c, "the application-default credentials".into())
        }
    };
    // Transient failures are retried a few times within the call (AIP-194: only UNAVAILABLE);
    // anything longer is the runner's backoff.
    let retry = Aip194Strict.with_attempt_limit(3).with_time_limit(cfg.timeout);
    let backoff = ExponentialBackoffBuilder::new()
        .with_initial_delay(std::time::Duration::from_millis(200))
        .with_maximum_delay(std::time::Duration::from_secs(2))
        .build()
        .map_err(|e| SourceError::new(ErrorKind::Malformed, format!("GKE Hub retry settings: {e}")))?;
    let hub = GkeHub::builder()
        .with_backoff_policy(backoff)
        .with_endpoint(cfg.hub_endpoint.clone())
        .with_credentials(creds.clone())
        .with_retry_policy(retry)
        .build()
        .await
        .map_err(|e| SourceError::new(ErrorKind::Unavailable, format!("cannot build the GKE Hub client: {e}")))?;
    let mut cas = BTreeMap::new();
    for c in &cfg.clusters {
        if let Some(path) = &c.ca_file {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                SourceError::new(
                    ErrorKind::NotFound,
                    format!("CA file {} for membership {}: {e}", path.display(), c.membership),
                )
            })?;
            cas.insert(c.membership.clone(), pem);
        }
    }
    let fetch_creds = creds.clone();
    let token_timeout = cfg.token_timeout;
    let (token, refresh) = refresh_token(cfg.token_refresh, move || {
        let (c, check) = (fetch_creds.clone(), check.clone());
        async move { bearer_within(&c, token_timeout, &check).await }
    })
    .await?;
    let tuning = Tuning::with_backoff(cfg.backoff_min, cfg.backoff_max);
    let (rediscover, apis) = (cfg.rediscover, cfg.export_apis.clone());
    let discovery = GkeDiscovery { cfg, hub, token, cas, _refresh: refresh };
    Ok(Fleet::new(discovery, rediscover, apis, tuning))
}

/// [`bearer`] bounded by `limit`: a metadata server or token endpoint that accepts the
/// connection and never answers would otherwise stall the source's start and its refreshes.
async fn bearer_within(creds: &Credentials, limit: std::time::Duration, check: &str) -> Result<String, SourceError> {
    tokio::time::timeout(limit, bearer(creds, check)).await.unwrap_or_else(|_| {
        Err(SourceError::new(
            ErrorKind::Unavailable,
            format!(
                "no Google access token within {limit:?} (`token_timeout`); check that the metadata server \
                 (169.254.169.254, workload identity) or the credentials' token endpoint is reachable"
            ),
        ))
    })
}

/// The bearer token the credentials currently hold (they renew it before expiry); `check`
/// names the credentials in errors.
async fn bearer(creds: &Credentials, check: &str) -> Result<String, SourceError> {
    let auth = |m: String| SourceError::new(ErrorKind::Auth, m);
    let headers = match creds.headers(Default::default()).await {
        Ok(CacheableResource::New { data, .. }) => data,
        Ok(CacheableResource::NotModified) => return Err(auth("credentials returned no headers".into())),
        Err(e) => {
            // The library's message leaves out the cause (the token endpoint's `invalid_grant`
            // and the like), which is what tells the operator what to fix.
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                why.push_str(&format!(": {c}"));
                cause = c.source();
            }
            return Err(auth(format!("cannot get a Google access token: {why}; check {check}")));
        }
    };
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| auth("the credentials give no Authorization header (anonymous?)".into()))?;
    Ok(value.strip_prefix("Bearer ").unwrap_or(value).to_owned())
}

/// Credentials from a Google credentials JSON file, dispatched on its `type` the way
/// google-cloud-auth does for the `GOOGLE_APPLICATION_CREDENTIALS` file (it has no public
/// builder taking the JSON itself).
fn from_file(path: &std::path::Path) -> Result<Credentials, SourceError> {
    use google_cloud_auth::credentials::{external_account, impersonated, service_account, user_account};
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Auth };
        SourceError::new(
            kind,
            format!("cannot read the Google credentials file {shown} (`credentials_file`): {e}; check the path and that the federator may read it"),
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        SourceError::new(
            ErrorKind::Auth,
            format!("the Google credentials file {shown} is not JSON: {e}; use a key or a file from `gcloud iam workload-identity-pools create-cred-config`"),
        )
    })?;
    let kind = json.get("type").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    let built = match kind.as_str() {
        "authorized_user" => user_account::Builder::new(json).with_scopes([SCOPE]).build(),
        "service_account" => service_account::Builder::new(json)
            .with_access_specifier(service_account::AccessSpecifier::from_scopes([SCOPE]))
            .build(),
        "external_account" => external_account::Builder::new(json).with_scopes([SCOPE]).build(),
        "impersonated_service_account" => impersonated::Builder::new(json).with_scopes([SCOPE]).build(),
        other => {
            return Err(SourceError::new(
                ErrorKind::Auth,
                format!(
                    "the Google credentials file {shown} has `type` {other:?}; expected service_account, \
                     authorized_user, external_account or impersonated_service_account"
                ),
            ));
        }
    };
    built.map_err(|e| {
        SourceError::new(
            ErrorKind::Auth,
            format!("the Google credentials file {shown} ({kind}) is not usable: {e}; check its fields against the file Google issued"),
        )
    })
}

/// Classifies a GKE Hub failure.
fn classify(cfg: &GkeConfig, e: &google_cloud_gkehub_v1::Error) -> SourceError {
    let status = e.http_status_code();
    let (kind, hint) = match status {
        Some(401 | 403) => (
            ErrorKind::Auth,
            "; grant the federator's identity roles/gkehub.viewer on the project (and roles/gkehub.gatewayReader for the connect gateway)",
        ),
        Some(404) => (ErrorKind::NotFound, "; check `project` and `location`"),
        Some(429) => (ErrorKind::Throttled, "; raise `rediscover`"),
        Some(400) => (ErrorKind::Malformed, ""),
        _ if e.is_timeout() || e.is_io() || e.is_transport() || status.is_some_and(|s| s >= 500) => {
            (ErrorKind::Unavailable, "")
        }
        _ if e.is_deserialization() => (ErrorKind::Malformed, ""),
        _ if e.is_authentication() => {
            (ErrorKind::Auth, "; check `credentials_file` or the application-default credentials")
        }
        _ => (ErrorKind::Unavailable, ""),
    };
    SourceError::new(kind, format!("GKE Hub memberships of {}/{}: {e}{hint}", cfg.project, cfg.location))
}

impl GkeDiscovery {
    fn member(&self, m: &Membership) -> Result<Member, String> {
        // projects/{p}/locations/{l}/memberships/{id}
        let parts: Vec<&str> = m.name.split('/').collect();
        let (Some(location), Some(id)) = (parts.get(3), parts.get(5)) else {
            return Err(format!("membership name {:?} is not projects/*/locations/*/memberships/*", m.name));
        };
        let over = self.cfg.clusters.iter().find(|c| c.membership == *id);
        let cluster = match over.and_then(|o| o.cluster.clone()) {
            Some(c) => c,
            None => ClusterId::new(id).map_err(|e| format!("membership {id}: {e}; set clusters[].cluster for it"))?,
        };
        // A global membership's region is its GKE cluster's location.
        let region = m
            .endpoint()
            .and_then(|e| e.gke_cluster.as_ref())
            .and_then(|g| g.resource_link.split("/locations/").nth(1))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or(location)
            .to_owned();
        let url = match over.and_then(|o| o.server.clone()) {
            Some(server) => server,
            None => format!(
                "{}/v1/{}",
                self.cfg.connect_gateway.trim_end_matches('/'),
                m.name.replacen("/memberships/", "/gkeMemberships/", 1)
            ),
        };
        let api = ApiServer {
            url,
            ca_pem: self.cas.get(*id).cloned(),
            tls_server_name: None,
            token: std::sync::Arc::new(self.token.clone()),
        };
        Ok(Member { cluster: ClusterInfo { id: cluster, cloud: Cloud::Gcp, region, network: None }, api })
    }
}

impl Discovery for GkeDiscovery {
    fn kind(&self) -> &'static str {
        "gke-fleet"
    }

    async fn discover(&mut self) -> Result<Vec<Member>, SourceError> {
        let parent = format!("projects/{}/locations/{}", self.cfg.project, self.cfg.location);
        let mut pages = self.hub.list_memberships().set_parent(parent).set_page_size(100).by_page();
        let mut members = Vec::new();
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        loop {
            let page = tokio::time::timeout_at(deadline, pages.next()).await.map_err(|_| {
                SourceError::new(
                    ErrorKind::Unavailable,
                    format!("GKE Hub did not answer within {:?}", self.cfg.timeout),
                )
            })?;
            let Some(page) = page else { break };
            let page = page.map_err(|e| classify(&self.cfg, &e))?;
            for m in &page.resources {
                // Only members that are registered and not being deleted.
                let ready = m
                    .state
                    .as_ref()
                    .is_none_or(|s| !matches!(s.code, google_cloud_gkehub_v1::model::membership_state::Code::Deleting));
                if !ready {
                    continue;
                }
                match self.member(m) {
                    Ok(member) => members.push(member),
                    Err(why) => tracing::warn!(membership = %m.name, "fleet member left out: {why}"),
                }
            }
        }
        Ok(members)
    }
}
