//! Azure AD tokens for the member clusters' Kubernetes API servers.
//!
//! AKS clusters with Azure AD integration accept tokens for the AKS AAD server application
//! (`6dae42f8-4368-4678-94ff-3960e28e3630`, the same id in every tenant). Tokens are cached
//! and replaced [`REFRESH_BEFORE`] ahead of `expires_on`, like the Azure SDK's own caches, so
//! a watch never carries a token that expires mid-request.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::time::OffsetDateTime;
use skybridge_api::source::{ErrorKind, SourceError};
use tokio::sync::Mutex;

use super::error::{Op, Target};

/// The scope of the AKS AAD server application.
pub const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// How long before expiry a cached token is replaced.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Bearer tokens for AKS API servers from one Azure credential; clones share the cache.
#[derive(Clone)]
pub struct AksTokens {
    credential: Arc<dyn TokenCredential>,
    timeout: Duration,
    credential_kind: &'static str,
    cached: Arc<Mutex<Option<(String, OffsetDateTime)>>>,
}

impl std::fmt::Debug for AksTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AksTokens").field("credential", &self.credential_kind).finish_non_exhaustive()
    }
}

fn refresh_before() -> azure_core::time::Duration {
    azure_core::time::Duration::seconds(REFRESH_BEFORE.as_secs() as i64)
}

impl AksTokens {
    /// Tokens from `credential`; one token request may take `timeout`.
    pub fn new(credential: Arc<dyn TokenCredential>, timeout: Duration, credential_kind: &'static str) -> Self {
        AksTokens { credential, timeout, credential_kind, cached: Arc::new(Mutex::new(None)) }
    }

    /// A bearer token (without `Bearer `) for [`AKS_SCOPE`], from the cache while it has more
    /// than [`REFRESH_BEFORE`] left.
    pub async fn token(&self) -> Result<String, SourceError> {
        self.token_with_expiry().await.map(|(t, _)| t)
    }

    /// The token and when it expires.
    pub async fn token_with_expiry(&self) -> Result<(String, OffsetDateTime), SourceError> {
        // Held across the refresh so that concurrent callers wait for one request.
        let mut cached = self.cached.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some((tok, exp)) = cached.as_ref()
            && *exp - refresh_before() > now
        {
            return Ok((tok.clone(), *exp));
        }
        let fetched = tokio::time::timeout(self.timeout, self.credential.get_token(&[AKS_SCOPE], None)).await;
        let t = Target { op: Op::Token, resource: "the AKS AAD server application", api_version_key: "" };
        let err = match fetched {
            Ok(Ok(at)) => {
                let value = (at.token.secret().to_owned(), at.expires_on);
                *cached = Some(value.clone());
                return Ok(value);
            }
            Ok(Err(e)) => super::error::from_azure(&e, &t, self.credential_kind),
            Err(_) => SourceError::new(
                ErrorKind::Unavailable,
                format!("Azure AD did not issue an AKS token within {}s", self.timeout.as_secs_f32()),
            ),
        };
        // A failed early refresh keeps using the old token while it is still valid.
        if let Some((tok, exp)) = cached.as_ref()
            && *exp > now
        {
            tracing::warn!(error = %err, "AKS token refresh failed; using the current token until it expires");
            return Ok((tok.clone(), *exp));
        }
        Err(err)
    }

    /// Keeps `shared` (the Kubernetes client's token source) fresh until the task is dropped:
    /// refreshes [`REFRESH_BEFORE`] ahead of expiry, and every 10 s while refreshes fail.
    pub async fn keep_fresh(&self, shared: crate::k8s::SharedToken) {
        loop {
            let wait = match self.token_with_expiry().await {
                Ok((tok, exp)) => {
                    shared.set(tok);
                    let left = exp - OffsetDateTime::now_utc() - refresh_before();
                    Duration::try_from(left).unwrap_or(Duration::ZERO).max(Duration::from_secs(10))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh the AKS token");
                    Duration::from_secs(10)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}
