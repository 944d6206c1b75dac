//! Turns Kubernetes objects into the compact records the store keeps. Only what the catalog
//! needs survives the conversion, so a large cluster costs a few bytes per port and address
//! rather than whole objects.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use skybridge_api::catalog::UnixMillis;
use skybridge_api::model::{Protocol, ServiceKey};

/// The label EndpointSlice controllers set to the owning Service's name.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Identifies an object within one resource type: `(namespace, name)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjKey {
    pub namespace: String,
    pub name: String,
}

/// A ServiceExport reduced to what the catalog needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportRec {
    pub key: ServiceKey,
    /// `metadata.creationTimestamp`: the MCS conflict rule lets the oldest export win.
    pub created_ms: UnixMillis,
}

/// One TCP port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SvcPort {
    /// The port name ("" when unnamed): EndpointSlice ports are matched by it.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// A Service reduced to its routable ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceRec {
    pub key: ServiceKey,
    pub ports: Vec<SvcPort>,
    /// ExternalName services have no endpoints of their own and cannot be exported.
    pub external_name: bool,
}

/// One address of an EndpointSlice endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SliceAddr {
    pub ip: IpAddr,
    pub ready: bool,
    pub zone: Option<String>,
}

/// An EndpointSlice reduced to its TCP ports and IP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SliceRec {
    /// The Service this slice belongs to (its `kubernetes.io/service-name` label).
    pub service: ServiceKey,
    /// `(port name, port number)`; the name is "" when unnamed.
    pub ports: Vec<(String, u16)>,
    pub addrs: Vec<SliceAddr>,
}

/// Why an object was left out; logged, never fatal for the other objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Skip {
    #[error("invalid name: {0}")]
    BadName(String),
    #[error("EndpointSlice has no {SERVICE_NAME_LABEL} label")]
    NoServiceLabel,
}

/// The store key of any object.
pub(crate) fn obj_key(meta: &ObjectMeta) -> ObjKey {
    ObjKey { namespace: meta.namespace.clone().unwrap_or_default(), name: meta.name.clone().unwrap_or_default() }
}

fn service_key(namespace: Option<&str>, name: Option<&str>) -> Result<ServiceKey, Skip> {
    ServiceKey::new(namespace.unwrap_or_default(), name.unwrap_or_default()).map_err(|e| Skip::BadName(e.to_string()))
}

/// Converts a ServiceExport of any of the supported API groups (they share the MCS shape; only
/// the metadata matters here).
pub(crate) fn export(obj: &DynamicObject) -> Result<(ObjKey, ExportRec), Skip> {
    let meta = &obj.metadata;
    let key = service_key(meta.namespace.as_deref(), meta.name.as_deref())?;
    // An object always has a creation time on a real server; 0 (the oldest possible) would
    // wrongly win conflicts, so a missing one counts as "now-ish" via u64::MAX instead.
    let created_ms = meta
        .creation_timestamp
        .as_ref()
        .and_then(|t| u64::try_from(t.0.as_millisecond()).ok())
        .unwrap_or(UnixMillis::MAX);
    Ok((obj_key(meta), ExportRec { key, created_ms }))
}

/// How clients speak a port, from `appProtocol` (authoritative when set) or the port name's
/// first `-`-separated token (the Istio/Gateway naming convention: `http-web`, `grpc`, `tls-db`).
pub(crate) fn protocol_of(app_protocol: Option<&str>, name: Option<&str>) -> Protocol {
    let hint = app_protocol.filter(|s| !s.is_empty()).or(name).unwrap_or_default().to_ascii_lowercase();
    // Kubernetes-defined appProtocol values carry a prefix (`kubernetes.io/h2c`).
    let hint = hint.strip_prefix("kubernetes.io/").unwrap_or(&hint);
    let token = hint.split(['-', '_', '.']).next().unwrap_or_default();
    match token {
        "https" | "tls" | "wss" => Protocol::Tls,
        "http" | "http2" | "grpc" | "h2c" | "ws" => Protocol::Http,
        _ => Protocol::Tcp,
    }
}

/// True for the protocol field values that mean TCP (absent defaults to TCP).
fn is_tcp(protocol: Option<&str>) -> bool {
    matches!(protocol, None | Some("TCP") | Some(""))
}

/// Converts a Service: TCP ports only (UDP and SCTP cannot be tunnelled as streams).
pub(crate) fn service(svc: &Service) -> Result<(ObjKey, ServiceRec), Skip> {
    let meta = &svc.metadata;
    let key = service_key(meta.namespace.as_deref(), meta.name.as_deref())?;
    let spec = svc.spec.as_ref();
    let external_name = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    let mut ports: Vec<SvcPort> = spec
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter(|p| is_tcp(p.protocol.as_deref()))
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok().filter(|p| *p != 0)?;
            Some(SvcPort {
                name: p.name.clone().unwrap_or_default(),
                port,
                protocol: protocol_of(p.app_protocol.as_deref(), p.name.as_deref()),
            })
        })
        .collect();
    ports.sort_by_key(|p| p.port);
    ports.dedup_by_key(|p| p.port);
    Ok((obj_key(meta), ServiceRec { key, ports, external_name }))
}

/// Converts an EndpointSlice: IPv4/IPv6 addresses and TCP ports (FQDN slices cannot become
/// socket addresses and are kept empty).
pub(crate) fn slice(es: &EndpointSlice) -> Result<(ObjKey, SliceRec), Skip> {
    let meta = &es.metadata;
    let svc_name = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).ok_or(Skip::NoServiceLabel)?;
    let service = service_key(meta.namespace.as_deref(), Some(svc_name))?;
    let ip_slice = matches!(es.address_type.as_str(), "IPv4" | "IPv6");
    let ports = es
        .ports
        .iter()
        .flatten()
        .filter(|p| is_tcp(p.protocol.as_deref()))
        .filter_map(|p| Some((p.name.clone().unwrap_or_default(), u16::try_from(p.port?).ok().filter(|p| *p != 0)?)))
        .collect();
    let addrs = es
        .endpoints
        .iter()
        .filter(|_| ip_slice)
        .flat_map(|ep| {
            // Per the EndpointSlice API an absent `ready` condition means ready.
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let zone = ep.zone.clone().filter(|z| !z.is_empty());
            ep.addresses.iter().filter_map(move |a| Some(SliceAddr { ip: a.parse().ok()?, ready, zone: zone.clone() }))
        })
        .collect();
    Ok((obj_key(meta), SliceRec { service, ports, addrs }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_mapping() {
        use Protocol::*;
        let cases: &[(Option<&str>, Option<&str>, Protocol)] = &[
            (None, Some("https"), Tls),
            (None, Some("tls-db"), Tls),
            (None, Some("http"), Http),
            (None, Some("http2"), Http),
            (None, Some("grpc-api"), Http),
            (None, Some("http-web"), Http),
            (None, Some("redis"), Tcp),
            (None, None, Tcp),
            (Some("kubernetes.io/h2c"), Some("tcp"), Http),
            (Some("https"), Some("http"), Tls),
            (Some("mysql"), Some("http"), Tcp),
            (Some(""), Some("HTTP"), Http),
        ];
        for (app, name, want) in cases {
            assert_eq!(protocol_of(*app, *name), *want, "{app:?} {name:?}");
        }
    }
}
