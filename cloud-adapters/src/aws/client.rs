//! Cloud Map reads through the official SDK: paging, per-call timeouts and retries, and
//! errors classified for the operator.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_servicediscovery::types::{FilterCondition, HealthStatus, ServiceFilter, ServiceFilterName};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures::{StreamExt as _, TryStreamExt as _};
use skybridge_api::source::{ErrorKind, SourceError};

use super::config::CloudMapConfig;
use super::mapping::{Health, Instance, Namespace, Service};

/// Page size for every list call: the largest Cloud Map accepts (and, unlike leaving it unset,
/// the same against every server, so paging is always exercised the same way).
const PAGE: i32 = 100;

/// Builds the SDK client: the standard credential chain (or `credentials` when given, which
/// only tests do), the configured region, endpoint, timeouts and retries.
pub async fn client(cfg: &CloudMapConfig, credentials: Option<aws_credential_types::Credentials>) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(cfg.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
                .operation_attempt_timeout(cfg.timeout)
                .operation_timeout(cfg.timeout * cfg.max_attempts)
                .build(),
        );
    if let Some(p) = &cfg.profile {
        loader = loader.profile_name(p);
    }
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(c) = credentials {
        loader = loader.credentials_provider(c);
    }
    Client::new(&loader.load().await)
}

/// Classifies an SDK failure of `call`.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    cfg: &CloudMapConfig,
    call: &str,
    e: SdkError<E, HttpResponse>,
) -> SourceError {
    let region = &cfg.region;
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let message = se.err().message().unwrap_or("");
            let kind = match (code, status) {
                ("ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException", _) | (_, 429) => {
                    ErrorKind::Throttled
                }
                (
                    "AccessDeniedException"
                    | "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "MissingAuthenticationToken"
                    | "SignatureDoesNotMatch",
                    _,
                )
                | (_, 401 | 403) => ErrorKind::Auth,
                ("NamespaceNotFound" | "ServiceNotFound", _) | (_, 404) => ErrorKind::NotFound,
                (_, 500..) => ErrorKind::Unavailable,
                _ => ErrorKind::Malformed,
            };
            let hint = match kind {
                ErrorKind::Auth => {
                    "; check the credentials (environment, profile or IRSA role) and that the role allows \
                     servicediscovery:ListNamespaces, ListServices, ListInstances and GetInstancesHealthStatus"
                }
                ErrorKind::Throttled => {
                    "; Cloud Map rate-limited us: raise the source's interval or lower its concurrency"
                }
                ErrorKind::NotFound => "; check the configured namespace names and region",
                _ => "",
            };
            SourceError::new(kind, format!("Cloud Map {call} in {region}: {code} (HTTP {status}) {message}{hint}"))
        }
        SdkError::TimeoutError(_) => SourceError::new(
            ErrorKind::Unavailable,
            format!(
                "Cloud Map {call} in {region} timed out after {:?}; check network access to the endpoint",
                cfg.timeout
            ),
        ),
        // An error body the SDK cannot parse still has a status worth classifying by.
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            let (kind, hint) = match status {
                401 | 403 => (ErrorKind::Auth, "; check the credentials and the role's servicediscovery permissions"),
                429 => (ErrorKind::Throttled, "; raise the source's interval or lower its concurrency"),
                500.. => (ErrorKind::Unavailable, ""),
                _ => (ErrorKind::Malformed, ""),
            };
            SourceError::new(
                kind,
                format!(
                    "Cloud Map {call} in {region}: HTTP {status}, unreadable response: {}{hint}",
                    crate::error_chain(&e)
                ),
            )
        }
        _ => {
            let text = crate::error_chain(&e);
            // Missing or unloadable credentials surface as a dispatch failure.
            let kind =
                if text.to_ascii_lowercase().contains("credential") { ErrorKind::Auth } else { ErrorKind::Unavailable };
            SourceError::new(kind, format!("Cloud Map {call} in {region}: {text}"))
        }
    }
}

/// Reads the configured namespaces with their services and instances.
pub async fn fetch(client: &Client, cfg: &CloudMapConfig) -> Result<Vec<Namespace>, SourceError> {
    let mut found = Vec::new();
    let mut pages = client.list_namespaces().into_paginator().page_size(PAGE).send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify(cfg, "ListNamespaces", e))?;
        for ns in page.namespaces() {
            if let (Some(id), Some(name)) = (ns.id(), ns.name())
                && (cfg.namespaces.is_empty() || cfg.namespaces.iter().any(|n| n == name))
            {
                found.push((id.to_owned(), name.to_owned()));
            }
        }
    }
    if let Some(missing) = cfg.namespaces.iter().find(|n| !found.iter().any(|(_, name)| name == *n)) {
        return Err(SourceError::new(
            ErrorKind::NotFound,
            format!(
                "Cloud Map namespace {missing:?} not found in {}: check the name, the region and the account",
                cfg.region
            ),
        ));
    }
    let mut namespaces = Vec::with_capacity(found.len());
    for (id, name) in found {
        let services = services(client, cfg, &id).await?;
        namespaces.push(Namespace { name, services });
    }
    Ok(namespaces)
}

async fn services(client: &Client, cfg: &CloudMapConfig, namespace_id: &str) -> Result<Vec<Service>, SourceError> {
    let filter = ServiceFilter::builder()
        .name(ServiceFilterName::NamespaceId)
        .condition(FilterCondition::Eq)
        .values(namespace_id)
        .build()
        .map_err(|e| SourceError::new(ErrorKind::Malformed, format!("building the ListServices filter: {e}")))?;
    let mut summaries = Vec::new();
    let mut pages = client.list_services().filters(filter).into_paginator().page_size(PAGE).send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify(cfg, "ListServices", e))?;
        for s in page.services() {
            if let (Some(id), Some(name)) = (s.id(), s.name()) {
                let checked = s.health_check_config().is_some() || s.health_check_custom_config().is_some();
                let created = s.create_date().and_then(|d| d.to_millis().ok()).map_or(0, |ms| ms.max(0) as u64);
                summaries.push((id.to_owned(), name.to_owned(), created, checked));
            }
        }
    }
    // Bounded fan-out: `concurrency` services' instances at a time (a sliding window, on this
    // task), results in listing order.
    let fetched: Vec<Option<Service>> = futures::stream::iter(summaries)
        .map(|(id, name, created_at, checked)| async move {
            match instances(client, cfg, &id, checked).await {
                Ok(instances) => Ok(Some(Service { name, created_at, instances })),
                // Deleted between ListServices and ListInstances: simply gone.
                Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffered(cfg.concurrency)
        .try_collect()
        .await?;
    Ok(fetched.into_iter().flatten().collect())
}

async fn instances(
    client: &Client,
    cfg: &CloudMapConfig,
    service_id: &str,
    checked: bool,
) -> Result<Vec<Instance>, SourceError> {
    let mut out = Vec::new();
    let mut pages = client.list_instances().service_id(service_id).into_paginator().page_size(PAGE).send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify(cfg, "ListInstances", e))?;
        for i in page.instances() {
            if let Some(id) = i.id() {
                let attributes = i.attributes().cloned().unwrap_or_default();
                out.push(Instance { id: id.to_owned(), attributes, health: None });
            }
        }
    }
    if checked && !out.is_empty() {
        let mut health: HashMap<String, Health> = HashMap::new();
        let mut pages =
            client.get_instances_health_status().service_id(service_id).into_paginator().page_size(PAGE).send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(cfg, "GetInstancesHealthStatus", e))?;
            for (id, status) in page.status().into_iter().flatten() {
                let h = match status {
                    HealthStatus::Healthy => Health::Healthy,
                    HealthStatus::Unhealthy => Health::Unhealthy,
                    _ => Health::Unknown,
                };
                health.insert(id.clone(), h);
            }
        }
        for i in &mut out {
            i.health = Some(health.get(&i.id).copied().unwrap_or(Health::Unknown));
        }
    }
    Ok(out)
}
