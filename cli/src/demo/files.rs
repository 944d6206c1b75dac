//! What the demo writes into its working directory: a fresh CA with the federator's and each
//! gateway's certificate, the static catalog, and the config texts of the federator and the
//! gateways (parsed by the same `Config::parse` as real config files).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use skybridge_api::ca;
use skybridge_api::identity::SpiffeId;
use skybridge_api::model::ClusterId;
use time::OffsetDateTime;

use super::topology::{CLUSTERS, ClusterSpec, GatewayPorts, NAMESPACE, SERVICE_PORT, SERVICES};

/// The demo federation's trust domain.
pub const TRUST_DOMAIN: &str = "demo.skybridge";
/// Certificates last 30 days: outside the 7-day `tls.expiry_warning`, so a demo shows healthy
/// (a demo is restarted with fresh certificates long before then).
const CERT_DAYS: u32 = 30;

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot make the demo certificates")]
    Ca(#[from] ca::CaError),
}

/// Writes `bytes` to `path` with `mode`, through a temporary file and a rename so that a
/// watcher (the static source, the certificate reloader) never reads half a file.
pub(super) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FilesError> {
    let err = |source| FilesError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// A fresh CA, then `cert.pem`, `key.pem` (0600) and `ca.pem` under `dir/federator` and under
/// `dir/<cluster-id>` for each gateway; the CA itself goes to `dir/ca`.
pub(super) fn write_identities(dir: &Path) -> Result<(), FilesError> {
    let now = OffsetDateTime::now_utc();
    let root = ca::init(TRUST_DOMAIN, now, CERT_DAYS)?;
    write_file(&dir.join("ca/ca.pem"), root.cert_pem.as_bytes(), 0o644)?;
    write_file(&dir.join("ca/ca-key.pem"), root.key_pem.as_bytes(), 0o600)?;
    let mut ids = vec![("federator".to_owned(), SpiffeId::federator(TRUST_DOMAIN))];
    for c in &CLUSTERS {
        let cluster = ClusterId::new(c.id).expect("demo cluster ids are valid");
        ids.push((c.id.to_owned(), SpiffeId::gateway(TRUST_DOMAIN, cluster)));
    }
    for (sub, id) in ids {
        let leaf = ca::issue(&root, &id, &[], now, CERT_DAYS)?;
        let d = dir.join(sub);
        write_file(&d.join("cert.pem"), leaf.cert_pem.as_bytes(), 0o644)?;
        write_file(&d.join("key.pem"), leaf.key_pem.as_bytes(), 0o600)?;
        write_file(&d.join("ca.pem"), root.cert_pem.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// A TOML basic string holding `s` (paths may contain quotes or backslashes).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path_str(p: &Path) -> String {
    quoted(&p.display().to_string())
}

/// The static catalog: the three clusters and, for every service copy, its backend's address.
/// Keyed `(cluster, service)` as [`super::topology::Layout::backends`].
pub(super) fn catalog_toml(backends: &BTreeMap<(usize, usize), SocketAddr>) -> String {
    let mut out = String::from("# Written by `skybridge demo`: the sample services and where their copies run.\n");
    for c in &CLUSTERS {
        out.push_str(&format!(
            "\n[[clusters]]\nid = {}\ncloud = {}\nregion = {}\n",
            quoted(c.id),
            quoted(c.cloud),
            quoted(c.region)
        ));
    }
    for (s, svc) in SERVICES.iter().enumerate() {
        out.push_str(&format!("\n[[services]]\nnamespace = {}\nname = {}\n", quoted(NAMESPACE), quoted(svc.name)));
        for &c in svc.clusters {
            let Some(addr) = backends.get(&(c, s)) else { continue };
            out.push_str(&format!(
                "[[services.exports]]\ncluster = {}\n[[services.exports.ports]]\nport = {SERVICE_PORT}\nprotocol = \"http\"\nendpoints = [\"{addr}\"]\n",
                quoted(CLUSTERS[c].id)
            ));
        }
    }
    out
}

/// The federator's config: embedded store and certificates under `dir`, the static source
/// reading `dir/catalog.toml`.
pub(super) fn federator_toml(dir: &Path, control: SocketAddr, api: SocketAddr) -> String {
    let f = dir.join("federator");
    format!(
        "[federator]\ntrust_domain = {td}\ndata_dir = {data}\nmerge_interval = \"1s\"\n\
         [tls]\ncert = {cert}\nkey = {key}\ntrust_bundle = {bundle}\n\
         [listen]\ncontrol = \"{control}\"\napi = \"{api}\"\n\
         [limits]\n# Ctrl-C should not wait long for anything.\ndrain_deadline = \"3s\"\n\
         [[sources]]\ntype = \"static\"\nid = \"demo\"\npath = {catalog}\ninterval = \"1s\"\n",
        td = quoted(TRUST_DOMAIN),
        data = path_str(&dir.join("store")),
        cert = path_str(&f.join("cert.pem")),
        key = path_str(&f.join("key.pem")),
        bundle = path_str(&f.join("ca.pem")),
        catalog = path_str(&dir.join("catalog.toml")),
    )
}

/// A gateway's config: its listeners, the federator at `control`, and `peer_addresses`
/// pointing every peer at the WAN relay in between rather than at the peer's own tunnel.
pub(super) fn gateway_toml(
    dir: &Path,
    cluster: &ClusterSpec,
    ports: &GatewayPorts,
    control: SocketAddr,
    peers: &[(&str, SocketAddr)],
) -> String {
    let d = dir.join(cluster.id);
    let peer_addresses: Vec<String> = peers.iter().map(|(id, addr)| format!("{} = \"{addr}\"", quoted(id))).collect();
    format!(
        "[gateway]\ncluster = {id}\ncloud = {cloud}\nregion = {region}\ntrust_domain = {td}\n\
         [tls]\ncert = {cert}\nkey = {key}\ntrust_bundle = {bundle}\n\
         [listen]\ntunnel = \"{tunnel}\"\nsni = \"{sni}\"\nhttp = \"{http}\"\nadmin = \"{admin}\"\ndns = \"{dns}\"\n\
         [limits]\ndrain_deadline = \"3s\"\n\
         [federator]\naddress = \"{control}\"\ninstance = {instance}\n\
         # Reports every second so the latency matrix fills while you watch.\nreport_interval = \"1s\"\n\
         reconnect_min = \"200ms\"\nreconnect_max = \"2s\"\npeer_addresses = {{ {peer_addresses} }}\n",
        id = quoted(cluster.id),
        cloud = quoted(cluster.cloud),
        region = quoted(cluster.region),
        td = quoted(TRUST_DOMAIN),
        cert = path_str(&d.join("cert.pem")),
        key = path_str(&d.join("key.pem")),
        bundle = path_str(&d.join("ca.pem")),
        tunnel = ports.tunnel,
        sni = ports.sni,
        http = ports.http,
        admin = ports.admin,
        dns = ports.dns,
        instance = quoted(&format!("{}-gw-0", cluster.id)),
        peer_addresses = peer_addresses.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::topology::{Layout, Ports};

    #[test]
    fn generated_configs_parse() {
        let l = Layout::new(Ports::Base(18000)).unwrap();
        let dir = Path::new("/tmp/with \"quote\" and \\ backslash");
        let fed = federator_toml(dir, l.control, "127.0.0.1:8080".parse().unwrap());
        let cfg = skybridge_federator::config::Config::parse(&fed).unwrap();
        assert_eq!(cfg.federator.data_dir, Some(dir.join("store")));
        let catalog = catalog_toml(&l.backends);
        let snap = skybridge_federator::sources::static_file::parse(&catalog).unwrap();
        assert_eq!((snap.clusters.len(), snap.services.len()), (3, SERVICES.len()));
        let peers = [("gcp-demo", l.relays[&(0, 1)]), ("azure-demo", l.relays[&(0, 2)])];
        let gw = gateway_toml(dir, &CLUSTERS[0], &l.gateways[0], l.control, &peers);
        let cfg = skybridge_gateway::config::Config::parse(&gw).unwrap();
        assert_eq!(cfg.gateway.cluster.as_str(), "aws-demo");
    }
}
