//! Azure AD credentials and the HTTPS transport they and the ARM client share.
//!
//! Every credential comes from `azure_identity` 1.x; only the `default` chain is ours, because
//! azure_identity 1.0 no longer ships `DefaultAzureCredential` and its
//! `DeveloperToolsCredential` covers developer tools only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::config::{AksConfig, CredentialConfig};
use super::error::SetupError;

/// Builds the HTTPS client for ARM and Azure AD: rustls (aws-lc-rs) through reqwest, the
/// platform roots plus `ca_file`, no redirects (a redirect would carry the bearer token
/// elsewhere), and explicit connect and per-attempt timeouts.
pub fn http_client(cfg: &AksConfig) -> Result<reqwest::Client, SetupError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
        .timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &cfg.ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| SetupError::CaFile { path: shown.clone(), reason: e.to_string() })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| SetupError::CaFile { path: shown.clone(), reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(SetupError::CaFile { path: shown, reason: "no PEM certificate in it".into() });
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| SetupError::Http(super::error::chain(&e)))
}

/// The SDK client options every pipeline here uses: our transport, the retry budget, and the
/// authority host when it is not Azure public cloud.
pub fn client_options(cfg: &AksConfig, http: &reqwest::Client) -> ClientOptions {
    let budget = azure_core::time::Duration::try_from(cfg.timeout).unwrap_or(azure_core::time::Duration::seconds(30));
    let retry = ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(250),
        max_retries: cfg.max_retries,
        max_total_elapsed: budget,
        max_delay: azure_core::time::Duration::seconds(10),
    };
    let cloud = cfg.authority_host.as_ref().map(|host| {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.trim_end_matches('/').to_owned();
        Arc::new(CloudConfiguration::Custom(custom))
    });
    ClientOptions {
        retry: RetryOptions::exponential(retry),
        transport: Some(Transport::new(Arc::new(http.clone()))),
        cloud,
        ..ClientOptions::default()
    }
}

/// Builds the configured credential.
pub fn credential(cfg: &AksConfig, http: &reqwest::Client) -> Result<Arc<dyn TokenCredential>, SetupError> {
    let opts = || client_options(cfg, http);
    let kind = cfg.credential.kind();
    let sdk = |e: azure_core::Error| SetupError::Credential { kind, reason: super::error::chain(&e) };
    Ok(match &cfg.credential {
        CredentialConfig::Default => Arc::new(DefaultChain::new(opts)?),
        CredentialConfig::WorkloadIdentity { tenant_id, client_id, token_file } => {
            let o = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options: opts() },
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                token_file_path: token_file.clone(),
            };
            WorkloadIdentityCredential::new(Some(o)).map_err(sdk)?
        }
        CredentialConfig::ManagedIdentity { client_id } => {
            let o = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: opts(),
            };
            ManagedIdentityCredential::new(Some(o)).map_err(sdk)?
        }
        CredentialConfig::ClientSecret { tenant_id, client_id, client_secret_file } => {
            let path = client_secret_file.display().to_string();
            let raw = std::fs::read_to_string(client_secret_file)
                .map_err(|e| SetupError::SecretFile { path: path.clone(), reason: e.to_string() })?;
            // Files written by `echo` or editors end with a newline that is not part of the secret.
            let secret = raw.trim();
            if secret.is_empty() {
                return Err(SetupError::SecretFile { path, reason: "the file is empty".into() });
            }
            let o = ClientSecretCredentialOptions { client_options: opts() };
            ClientSecretCredential::new(tenant_id, client_id.clone(), Secret::new(secret.to_owned()), Some(o))
                .map_err(sdk)?
        }
        CredentialConfig::AzureCli { tenant_id } => {
            let o = AzureCliCredentialOptions { tenant_id: tenant_id.clone(), ..AzureCliCredentialOptions::default() };
            AzureCliCredential::new(Some(o)).map_err(sdk)?
        }
    })
}

/// The `default` credential: workload identity when its environment is present, then managed
/// identity, then the Azure CLI. The first source that yields a token is used from then on, so
/// a federator on AKS does not probe IMDS or spawn `az` on every refresh.
#[derive(Debug)]
pub struct DefaultChain {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: Mutex<Option<usize>>,
}

impl DefaultChain {
    fn new(opts: impl Fn() -> ClientOptions) -> Result<Self, SetupError> {
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        let env_set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        if ["AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"].iter().all(|k| env_set(k)) {
            let o = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options: opts() },
                ..WorkloadIdentityCredentialOptions::default()
            };
            if let Ok(c) = WorkloadIdentityCredential::new(Some(o)) {
                sources.push(("workload identity", c));
            }
        }
        // AZURE_CLIENT_ID selects a user-assigned identity, as in the other Azure SDKs.
        let mi = ManagedIdentityCredentialOptions {
            user_assigned_id: std::env::var("AZURE_CLIENT_ID")
                .ok()
                .filter(|s| !s.is_empty())
                .map(UserAssignedId::ClientId),
            client_options: opts(),
        };
        if let Ok(c) = ManagedIdentityCredential::new(Some(mi)) {
            sources.push(("managed identity", c));
        }
        if let Ok(c) = AzureCliCredential::new(None) {
            sources.push(("Azure CLI", c));
        }
        if sources.is_empty() {
            return Err(SetupError::Credential { kind: "default", reason: "no credential source is available".into() });
        }
        Ok(DefaultChain { sources, chosen: Mutex::new(None) })
    }
}

#[async_trait::async_trait]
impl TokenCredential for DefaultChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = *self.chosen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = chosen
            && let Some((_, c)) = self.sources.get(i)
        {
            return c.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (i, (name, c)) in self.sources.iter().enumerate() {
            match c.get_token(scopes, options.clone()).await {
                Ok(t) => {
                    *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some(i);
                    tracing::info!(source = name, "Azure default credential chose {name}");
                    return Ok(t);
                }
                Err(e) => failures.push(format!("{name}: {}", super::error::chain(&e))),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!("no credential in the default chain worked ({})", failures.join("; ")),
        ))
    }
}
