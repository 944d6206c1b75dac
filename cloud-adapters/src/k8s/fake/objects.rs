//! Builders for the JSON objects tests put into the fake, shaped like what the real
//! controllers create.

use serde_json::{Value, json};

use crate::k8s::ExportApi;

/// A ServiceExport in `api`'s group.
pub fn service_export(api: ExportApi, namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": format!("{}/{}", api.group(), api.version()),
        "kind": "ServiceExport",
        "metadata": { "namespace": namespace, "name": name },
    })
}

/// A port of [`service`]: `(name, port, appProtocol, protocol)`.
pub type SvcPort<'a> = (&'a str, u16, Option<&'a str>, &'a str);

/// A ClusterIP Service with `ports`.
pub fn service(namespace: &str, name: &str, ports: &[SvcPort<'_>]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(pname, port, app, proto)| {
            let mut p = json!({ "port": port, "protocol": proto, "targetPort": port });
            if !pname.is_empty() {
                p["name"] = json!(pname);
            }
            if let Some(a) = app {
                p["appProtocol"] = json!(a);
            }
            p
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "namespace": namespace, "name": name },
        "spec": { "type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": ports, "selector": { "app": name } },
    })
}

/// An endpoint of [`endpoint_slice`]: `(address, ready (None = condition absent), zone)`.
pub type SliceEndpoint<'a> = (&'a str, Option<bool>, Option<&'a str>);

/// An IPv4 EndpointSlice of service `service` with `ports` (`(name, port)`) and `endpoints`.
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    ports: &[(&str, u16)],
    endpoints: &[SliceEndpoint<'_>],
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(pname, port)| {
            let mut p = json!({ "port": port, "protocol": "TCP" });
            if !pname.is_empty() {
                p["name"] = json!(pname);
            }
            p
        })
        .collect();
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(addr, ready, zone)| {
            let mut e = json!({ "addresses": [addr], "conditions": {} });
            if let Some(r) = ready {
                e["conditions"] = json!({ "ready": r, "serving": r, "terminating": false });
            }
            if let Some(z) = zone {
                e["zone"] = json!(z);
            }
            e
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    })
}
