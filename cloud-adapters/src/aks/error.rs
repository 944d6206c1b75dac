//! Maps ARM and Azure AD failures onto the source contract's [`ErrorKind`]s, with messages
//! that name what to fix: the role to grant, the fleet or resource group that is missing.

use std::time::Duration;

use azure_core::error::ErrorKind as AzKind;
use azure_core::http::StatusCode;
use azure_core::http::headers::{HeaderName, Headers};
use skybridge_api::source::{ErrorKind, SourceError};

/// Why an AKS source could not be set up (before any request is made).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The client secret file could not be read.
    #[error("cannot read the Azure client secret file {path}: {reason}")]
    SecretFile { path: String, reason: String },
    /// The extra CA bundle could not be read or holds no certificate.
    #[error("invalid CA bundle {path}: {reason}")]
    CaFile { path: String, reason: String },
    /// A URL in the config does not parse.
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The Azure SDK refused the credential settings.
    #[error("cannot set up the {kind} Azure credential: {reason}")]
    Credential { kind: &'static str, reason: String },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTPS client for Azure: {0}")]
    Http(String),
}

impl From<SetupError> for SourceError {
    fn from(e: SetupError) -> Self {
        let kind = match e {
            SetupError::SecretFile { .. } | SetupError::Credential { .. } => ErrorKind::Auth,
            SetupError::CaFile { .. } | SetupError::Url { .. } | SetupError::Http(_) => ErrorKind::Malformed,
        };
        SourceError::new(kind, e.to_string())
    }
}

/// The ARM operation that failed, which decides the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `GET .../fleets/{fleet}/members`.
    ListMembers,
    /// `GET .../managedClusters` in the resource group.
    ListClusters,
    /// `GET {clusterResourceId}`.
    GetCluster,
    /// `POST {clusterResourceId}/listClusterUserCredential`.
    Credentials,
    /// An Azure AD token for the AKS API servers.
    Token,
}

/// What was asked, for messages: the operation and the resource it was about.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    pub op: Op,
    /// Fleet `name` in `rg`, or a cluster resource id.
    pub resource: &'a str,
    /// The config key that has to be fixed for a 404 or an unknown api-version.
    pub api_version_key: &'static str,
}

impl Target<'_> {
    fn what(&self) -> String {
        match self.op {
            Op::ListMembers => format!("the members of {}", self.resource),
            Op::ListClusters => format!("the AKS clusters of {}", self.resource),
            Op::GetCluster => format!("AKS cluster {}", self.resource),
            Op::Credentials => format!("the user kubeconfig of AKS cluster {}", self.resource),
            Op::Token => format!("an Azure AD token for {}", self.resource),
        }
    }

    fn role_advice(&self) -> &'static str {
        match self.op {
            Op::ListMembers => {
                "grant the federator's identity the Reader role (Microsoft.ContainerService/fleets/members/read) \
                 on the fleet or its resource group"
            }
            Op::ListClusters | Op::GetCluster => {
                "grant the federator's identity the Reader role (Microsoft.ContainerService/managedClusters/read) \
                 on the clusters or their resource groups"
            }
            Op::Credentials => {
                "grant the federator's identity the 'Azure Kubernetes Service Cluster User Role' \
                 (Microsoft.ContainerService/managedClusters/listClusterUserCredential/action) on the cluster"
            }
            Op::Token => "check that the identity may get tokens for the AKS AAD server application",
        }
    }

    fn not_found_advice(&self) -> &'static str {
        match self.op {
            Op::ListMembers => "check `fleet`, `resource_group` and `subscription_id`",
            Op::ListClusters => "check `resource_group` and `subscription_id`",
            Op::GetCluster | Op::Credentials => {
                "the fleet member points at a cluster that does not exist (deleted?); remove the member"
            }
            Op::Token => "check `authority_host` and the tenant id",
        }
    }
}

/// ARM's error body: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Default, serde::Deserialize)]
struct ArmErrorBody {
    #[serde(default)]
    error: ArmError,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ArmError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// `code: message` from an ARM error body, or a short excerpt of whatever came back.
fn arm_error_text(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<ArmErrorBody>(body) {
        Ok(b) if !b.error.code.is_empty() => (b.error.code, b.error.message),
        _ => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = text.chars().take(200).collect();
            (String::new(), excerpt)
        }
    }
}

const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");

/// The server's requested wait: `x-ms-retry-after-ms`, `retry-after-ms`, then `Retry-After`
/// in seconds (ARM sends seconds; HTTP dates are not used by ARM and are ignored).
pub(crate) fn retry_after(headers: &Headers) -> Option<Duration> {
    for name in [X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS] {
        if let Some(ms) = headers.get_optional_str(&name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    headers.get_optional_str(&RETRY_AFTER).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

/// Classifies a non-success ARM response.
pub(crate) fn from_response(status: StatusCode, headers: &Headers, body: &[u8], t: &Target<'_>) -> SourceError {
    let (code, message) = arm_error_text(body);
    let detail = if code.is_empty() { format!("HTTP {status}: {message}") } else { format!("{code}: {message}") };
    let what = t.what();
    let e = SourceError::new;
    match u16::from(status) {
        401 => e(
            ErrorKind::Auth,
            format!(
                "ARM rejected the token while reading {what} ({detail}); check the credential's tenant, client id \
                 and secret or federated token, and that arm_endpoint matches the cloud the tenant is in"
            ),
        ),
        403 => e(ErrorKind::Auth, format!("ARM forbids reading {what} ({detail}); {}", t.role_advice())),
        404 => e(ErrorKind::NotFound, format!("{what} not found ({detail}); {}", t.not_found_advice())),
        429 => {
            let wait = retry_after(headers)
                .map(|d| format!("; ARM asks to retry after {}s", d.as_secs().max(1)))
                .unwrap_or_default();
            e(
                ErrorKind::Throttled,
                format!(
                    "ARM throttled reading {what} ({detail}){wait}; raise `interval` if this persists \
                     (ARM read limits are per identity and subscription)"
                ),
            )
        }
        400 if code.contains("ApiVersion") => e(
            ErrorKind::Malformed,
            format!("ARM refused the api-version for {what} ({detail}); fix or remove `{}`", t.api_version_key),
        ),
        408 | 500..=599 => e(ErrorKind::Unavailable, format!("ARM failed while reading {what} ({detail}); will retry")),
        _ => e(ErrorKind::Malformed, format!("ARM refused the request for {what} ({detail})")),
    }
}

/// Classifies an error of the Azure SDK pipeline (transport, credential, or a response that a
/// policy turned into an error).
pub(crate) fn from_azure(err: &azure_core::Error, t: &Target<'_>, credential_kind: &str) -> SourceError {
    let what = t.what();
    match err.kind() {
        AzKind::HttpResponse { status, raw_response: Some(raw), .. } => {
            from_response(*status, raw.headers(), raw.body(), t)
        }
        AzKind::HttpResponse { status, .. } => from_response(*status, &Headers::new(), err.to_string().as_bytes(), t),
        AzKind::Io | AzKind::Connection => SourceError::new(
            ErrorKind::Unavailable,
            format!("cannot reach ARM while reading {what}: {}; check network access to arm_endpoint", chain(err)),
        ),
        AzKind::Credential if caused_by_transport(err) => SourceError::new(
            ErrorKind::Unavailable,
            format!(
                "cannot reach Azure AD for a token ({credential_kind} credential): {}; check network access to \
                 the authority host",
                chain(err)
            ),
        ),
        AzKind::Credential => SourceError::new(
            ErrorKind::Auth,
            format!(
                "cannot get an Azure AD token with the {credential_kind} credential: {}; check its tenant, client \
                 id and secret, federated token file or managed identity",
                chain(err)
            ),
        ),
        AzKind::DataConversion => {
            SourceError::new(ErrorKind::Malformed, format!("undecodable answer while reading {what}: {}", chain(err)))
        }
        _ => SourceError::new(ErrorKind::Unavailable, format!("request for {what} failed: {}", chain(err))),
    }
}

/// A request that ran out of its `timeout`.
pub(crate) fn timed_out(t: &Target<'_>, after: Duration) -> SourceError {
    SourceError::new(
        ErrorKind::Unavailable,
        format!("reading {} did not finish within {}s (retries included); will retry", t.what(), after.as_secs_f32()),
    )
}

/// A response body that is not the documented JSON.
pub(crate) fn malformed(t: &Target<'_>, reason: impl std::fmt::Display) -> SourceError {
    SourceError::new(ErrorKind::Malformed, format!("undecodable ARM answer for {}: {reason}", t.what()))
}

/// Whether a credential error was caused by the network rather than a refusal.
fn caused_by_transport(err: &azure_core::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(az) = e.downcast_ref::<azure_core::Error>() {
            match az.kind() {
                AzKind::Io | AzKind::Connection => return true,
                AzKind::HttpResponse { status, .. } if u16::from(*status) >= 500 => return true,
                _ => {}
            }
        }
        cur = e.source();
    }
    false
}

pub(crate) use crate::error_chain as chain;
