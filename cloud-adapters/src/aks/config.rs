//! `type = "aks-fleet"` source settings (a `[[sources]]` entry of the federator config).
//!
//! ```toml
//! [[sources]]
//! type = "aks-fleet"
//! id = "azure-prod"
//! subscription_id = "00000000-0000-0000-0000-000000000000"
//! resource_group = "fleet-rg"
//! fleet = "prod-fleet"          # omit to list every managedCluster in resource_group
//! credential = { kind = "workload-identity" }
//! ```

use skybridge_api::backoff::Backoff;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use skybridge_api::config::{ConfigError, duration, invalid};

/// One Azure Kubernetes Fleet Manager fleet (its member clusters), or one resource group's AKS
/// clusters when `fleet` is unset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AksConfig {
    /// The source id (unique among the federator's sources).
    pub id: String,
    /// Subscription that holds the fleet (or the clusters), a GUID.
    pub subscription_id: String,
    /// Resource group of the fleet (or of the clusters).
    pub resource_group: String,
    /// Fleet Manager resource name; unset lists the `managedClusters` of `resource_group`.
    #[serde(default)]
    pub fleet: Option<String>,
    /// Azure Resource Manager endpoint; the ARM token audience is `{arm_endpoint}/.default`.
    #[serde(default = "defaults::arm_endpoint")]
    pub arm_endpoint: String,
    /// Azure AD (Entra ID) authority host; unset uses Azure public cloud
    /// (`https://login.microsoftonline.com`, or `AZURE_AUTHORITY_HOST` when set).
    #[serde(default)]
    pub authority_host: Option<String>,
    /// Extra PEM CA bundle trusted for ARM and the authority host, on top of the platform roots
    /// (TLS-inspecting proxies, private clouds, local test servers).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How the federator authenticates to Azure AD.
    #[serde(default)]
    pub credential: CredentialConfig,
    /// Use the clusters' private API server FQDN (`properties.privateFQDN`) when they have
    /// one: for a federator that runs inside the clusters' virtual network.
    #[serde(default)]
    pub prefer_private_fqdn: bool,
    /// Time between polls.
    #[serde(default = "defaults::interval", with = "duration")]
    pub interval: Duration,
    /// Limit on one ARM or Azure AD call, retries included.
    #[serde(default = "defaults::timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries per call after throttling (honoring `Retry-After`), 5xx and connection errors.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// Retry pacing after a failed sync: doubles up to `backoff_max`, ±20% jitter.
    #[serde(default = "defaults::backoff_min", with = "duration")]
    pub backoff_min: Duration,
    /// Upper bound of the retry pacing.
    #[serde(default = "defaults::backoff_max", with = "duration")]
    pub backoff_max: Duration,
    /// `api-version` for `Microsoft.ContainerService/fleets` (GA).
    #[serde(default = "defaults::fleet_api_version")]
    pub fleet_api_version: String,
    /// `api-version` for `Microsoft.ContainerService/managedClusters` (GA).
    #[serde(default = "defaults::aks_api_version")]
    pub aks_api_version: String,
}

/// Which Azure AD credential to use. Every kind reads its secrets from files or the
/// environment, never from the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// Tries, in order: workload identity (when `AZURE_FEDERATED_TOKEN_FILE`,
    /// `AZURE_CLIENT_ID` and `AZURE_TENANT_ID` are set, as the AKS workload identity webhook
    /// does), managed identity, then the Azure CLI; sticks to the first that works.
    #[default]
    Default,
    /// AKS workload identity: a projected service-account token exchanged for an Azure AD
    /// token. Unset fields come from the `AZURE_*` variables above.
    WorkloadIdentity {
        #[serde(default)]
        tenant_id: Option<String>,
        #[serde(default)]
        client_id: Option<String>,
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// The VM's or node pool's managed identity; `client_id` picks a user-assigned one.
    ManagedIdentity {
        #[serde(default)]
        client_id: Option<String>,
    },
    /// A service principal with a client secret read from `client_secret_file`.
    ClientSecret { tenant_id: String, client_id: String, client_secret_file: PathBuf },
    /// The signed-in Azure CLI (`az account get-access-token`), for development.
    AzureCli {
        #[serde(default)]
        tenant_id: Option<String>,
    },
}

impl CredentialConfig {
    /// The kind's name as written in the config, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialConfig::Default => "default",
            CredentialConfig::WorkloadIdentity { .. } => "workload-identity",
            CredentialConfig::ManagedIdentity { .. } => "managed-identity",
            CredentialConfig::ClientSecret { .. } => "client-secret",
            CredentialConfig::AzureCli { .. } => "azure-cli",
        }
    }
}

/// Defaults, quoted in the field docs.
pub mod defaults {
    use std::time::Duration;

    /// Azure public cloud's Resource Manager.
    pub fn arm_endpoint() -> String {
        "https://management.azure.com".into()
    }
    /// Newest GA `Microsoft.ContainerService/fleets` version in the ARM REST reference.
    pub fn fleet_api_version() -> String {
        "2025-03-01".into()
    }
    /// Newest GA `Microsoft.ContainerService/managedClusters` version in the ARM REST reference.
    pub fn aks_api_version() -> String {
        "2025-10-01".into()
    }
    /// Clusters join and leave fleets rarely; ARM read limits are per identity and hour.
    pub fn interval() -> Duration {
        Duration::from_secs(60)
    }
    /// One call with its retries.
    pub fn timeout() -> Duration {
        Duration::from_secs(30)
    }
    /// Retries per call.
    pub fn max_retries() -> u32 {
        3
    }
    /// First wait after a failed sync.
    pub fn backoff_min() -> Duration {
        Duration::from_secs(2)
    }
    /// Longest wait after failed syncs.
    pub fn backoff_max() -> Duration {
        Duration::from_secs(300)
    }
}

/// An Azure resource name: what ARM accepts in a path segment without escaping.
fn is_resource_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 90
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'(' | b')'))
        && !s.ends_with('.')
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A tenant is a GUID or a domain name (`contoso.onmicrosoft.com`).
fn is_tenant(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn is_https_url(s: &str) -> bool {
    s.strip_prefix("https://").is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

fn is_api_version(s: &str) -> bool {
    let (date, suffix) = s.split_at(s.len().min(10));
    let b = date.as_bytes();
    date.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
        && (suffix.is_empty() || suffix == "-preview")
}

impl AksConfig {
    /// Checks what serde cannot; `key_prefix` prefixes error keys (`sources[2]`).
    pub fn validate(&self, key_prefix: &str) -> Result<(), ConfigError> {
        let key = key_prefix;
        if self.id.is_empty() {
            return Err(invalid(format!("{key}.id"), &self.id, "must not be empty"));
        }
        if !is_guid(&self.subscription_id) {
            return Err(invalid(
                format!("{key}.subscription_id"),
                &self.subscription_id,
                "expected a subscription GUID such as 00000000-0000-0000-0000-000000000000",
            ));
        }
        if !is_resource_name(&self.resource_group) {
            return Err(invalid(
                format!("{key}.resource_group"),
                &self.resource_group,
                "expected a resource group name (letters, digits, '-', '_', '.', '(', ')'; at most 90)",
            ));
        }
        if let Some(fleet) = &self.fleet
            && (!is_resource_name(fleet) || fleet.len() > 63)
        {
            return Err(invalid(
                format!("{key}.fleet"),
                fleet,
                "expected a Fleet Manager resource name (letters, digits, '-'; at most 63)",
            ));
        }
        if !is_https_url(&self.arm_endpoint) {
            return Err(invalid(
                format!("{key}.arm_endpoint"),
                &self.arm_endpoint,
                "expected an https:// URL (Azure SDK sends bearer tokens over TLS only)",
            ));
        }
        if let Some(host) = &self.authority_host
            && !is_https_url(host)
        {
            return Err(invalid(format!("{key}.authority_host"), host, "expected an https:// URL"));
        }
        self.validate_credential(key)?;
        for (name, d) in [("interval", self.interval), ("timeout", self.timeout)] {
            if d.is_zero() {
                return Err(invalid(format!("{key}.{name}"), "0", "must be positive"));
            }
        }
        Backoff::checked_keys(key, self.backoff_min, self.backoff_max)?;
        if self.max_retries > 10 {
            return Err(invalid(format!("{key}.max_retries"), self.max_retries, "must be between 0 and 10"));
        }
        for (name, v) in [("fleet_api_version", &self.fleet_api_version), ("aks_api_version", &self.aks_api_version)] {
            if !is_api_version(v) {
                return Err(invalid(format!("{key}.{name}"), v, "expected an ARM api-version such as 2025-03-01"));
            }
        }
        Ok(())
    }

    fn validate_credential(&self, key: &str) -> Result<(), ConfigError> {
        let k = |field: &str| format!("{key}.credential.{field}");
        match &self.credential {
            CredentialConfig::Default => {}
            CredentialConfig::WorkloadIdentity { tenant_id, client_id, token_file } => {
                if let Some(t) = tenant_id
                    && !is_tenant(t)
                {
                    return Err(invalid(k("tenant_id"), t, "expected a tenant GUID or domain"));
                }
                if client_id.as_deref() == Some("") {
                    return Err(invalid(k("client_id"), "", "must not be empty; omit it to use AZURE_CLIENT_ID"));
                }
                if let Some(p) = token_file
                    && p.as_os_str().is_empty()
                {
                    return Err(invalid(k("token_file"), "", "must not be empty"));
                }
            }
            CredentialConfig::ManagedIdentity { client_id } => {
                if client_id.as_deref() == Some("") {
                    return Err(invalid(k("client_id"), "", "must not be empty; omit it for the system identity"));
                }
            }
            CredentialConfig::ClientSecret { tenant_id, client_id, client_secret_file } => {
                if !is_tenant(tenant_id) {
                    return Err(invalid(k("tenant_id"), tenant_id, "expected a tenant GUID or domain"));
                }
                if client_id.is_empty() {
                    return Err(invalid(k("client_id"), client_id, "expected the application (client) id"));
                }
                if client_secret_file.as_os_str().is_empty() {
                    return Err(invalid(k("client_secret_file"), "", "expected the path of a file holding the secret"));
                }
            }
            CredentialConfig::AzureCli { tenant_id } => {
                if let Some(t) = tenant_id
                    && !is_tenant(t)
                {
                    return Err(invalid(k("tenant_id"), t, "expected a tenant GUID or domain"));
                }
            }
        }
        Ok(())
    }

    /// The resource-group scope path (`/subscriptions/{sub}/resourceGroups/{rg}`).
    pub fn resource_group_path(&self) -> String {
        format!("/subscriptions/{}/resourceGroups/{}", self.subscription_id, self.resource_group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
id = "azure"
subscription_id = "00000000-0000-0000-0000-000000000001"
resource_group = "fleet-rg"
"#;

    fn parse(extra: &str) -> Result<AksConfig, String> {
        toml::from_str::<AksConfig>(&format!("{BASE}{extra}")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_credentials() {
        let c = parse("fleet = \"f1\"\n").unwrap();
        assert_eq!(c.arm_endpoint, "https://management.azure.com");
        assert_eq!(c.credential, CredentialConfig::Default);
        assert_eq!(c.timeout, Duration::from_secs(30));
        c.validate("sources[0]").unwrap();

        let c = parse(
            "interval = \"5s\"\n[credential]\nkind = \"client-secret\"\ntenant_id = \"t1\"\nclient_id = \"c1\"\nclient_secret_file = \"/s\"\n",
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.credential.kind(), "client-secret");
        c.validate("s").unwrap();

        let c = parse("credential = { kind = \"managed-identity\", client_id = \"abc\" }\n").unwrap();
        assert_eq!(c.credential, CredentialConfig::ManagedIdentity { client_id: Some("abc".into()) });
        let c = parse("credential = { kind = \"workload-identity\" }\n").unwrap();
        assert!(matches!(c.credential, CredentialConfig::WorkloadIdentity { tenant_id: None, .. }));
    }

    #[test]
    fn rejects_unknown_keys_and_inline_secrets() {
        assert!(parse("flet = \"x\"\n").unwrap_err().contains("flet"));
        let e = parse(
            "credential = { kind = \"client-secret\", tenant_id = \"t\", client_id = \"c\", client_secret = \"s\" }\n",
        )
        .unwrap_err();
        assert!(e.contains("client_secret"), "{e}");
        assert!(parse("credential = { kind = \"password\" }\n").is_err());
    }

    #[test]
    fn validate_names_key_value_and_reason() {
        let mut c = parse("").unwrap();
        c.subscription_id = "not-a-guid".into();
        let e = c.validate("sources[1]").unwrap_err().to_string();
        assert!(e.contains("sources[1].subscription_id") && e.contains("not-a-guid") && e.contains("GUID"), "{e}");

        let mut c = parse("").unwrap();
        c.arm_endpoint = "http://management.azure.com".into();
        assert!(c.validate("s").unwrap_err().to_string().contains("s.arm_endpoint"));

        let mut c = parse("").unwrap();
        c.fleet = Some("bad/name".into());
        assert!(c.validate("s").unwrap_err().to_string().contains("s.fleet"));

        let mut c = parse("").unwrap();
        c.fleet_api_version = "latest".into();
        assert!(c.validate("s").unwrap_err().to_string().contains("s.fleet_api_version"));
        c.fleet_api_version = "2025-04-01-preview".into();
        c.validate("s").unwrap();

        let mut c = parse("").unwrap();
        c.backoff_max = Duration::from_secs(1);
        assert!(c.validate("s").unwrap_err().to_string().contains("s.backoff_max"));

        let mut c = parse("").unwrap();
        c.credential = CredentialConfig::ClientSecret {
            tenant_id: "t 1".into(),
            client_id: "c".into(),
            client_secret_file: "/s".into(),
        };
        assert!(c.validate("s").unwrap_err().to_string().contains("s.credential.tenant_id"));
    }
}
