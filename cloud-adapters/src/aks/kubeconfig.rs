//! Just enough of a kubeconfig reader for what `listClusterUserCredential` returns: the first
//! cluster's `server` and `certificate-authority-data`.
//!
//! AKS renders kubeconfigs with Go's YAML encoder in block style (`- cluster:` list items,
//! two-space indents, plain or quoted scalars), and kubeconfigs may also be JSON. Both are read
//! here without a YAML dependency; flow-style YAML, anchors and multi-line scalars are not
//! (AKS does not produce them), and are reported as undecodable rather than misread.

use base64::Engine as _;

/// The parts of a kubeconfig this source needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigCluster {
    /// `clusters[0].cluster.server`.
    pub server: String,
    /// `clusters[0].cluster.certificate-authority-data`, decoded to PEM.
    pub ca_pem: Option<String>,
}

/// Why a kubeconfig could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigError {
    /// No `clusters` list, or its first item has no `server`.
    #[error("kubeconfig has no clusters[0].cluster.server")]
    NoServer,
    /// `certificate-authority-data` is not base64 of a PEM certificate.
    #[error("kubeconfig certificate-authority-data is not a base64 PEM certificate: {0}")]
    BadCa(String),
}

/// Reads the first cluster of a kubeconfig (YAML block style or JSON).
pub fn first_cluster(text: &str) -> Result<KubeconfigCluster, KubeconfigError> {
    let (server, ca_b64) = if text.trim_start().starts_with('{') { from_json(text) } else { from_yaml(text) };
    let server = server.filter(|s| !s.is_empty()).ok_or(KubeconfigError::NoServer)?;
    let ca_pem = match ca_b64.filter(|s| !s.is_empty()) {
        None => None,
        Some(b64) => Some(decode_ca(&b64)?),
    };
    Ok(KubeconfigCluster { server, ca_pem })
}

fn decode_ca(b64: &str) -> Result<String, KubeconfigError> {
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| KubeconfigError::BadCa(e.to_string()))?;
    let pem = String::from_utf8(bytes).map_err(|_| KubeconfigError::BadCa("not UTF-8 text".into()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(KubeconfigError::BadCa("no BEGIN CERTIFICATE block".into()));
    }
    Ok(pem)
}

fn from_json(text: &str) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return (None, None) };
    let cluster = &v["clusters"][0]["cluster"];
    let s = |k: &str| cluster[k].as_str().map(str::to_owned);
    (s("server"), s("certificate-authority-data"))
}

/// Indentation width, or `None` for blank and comment lines.
fn indent(line: &str) -> Option<usize> {
    let trimmed = line.trim_start_matches(' ');
    if trimmed.is_empty() || trimmed.starts_with('#') { None } else { Some(line.len() - trimmed.len()) }
}

/// A plain, single- or double-quoted scalar (no escapes other than `''` and `\"` are expected
/// in URLs and base64).
fn scalar(raw: &str) -> String {
    let v = raw.trim();
    if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        inner.replace("\\\"", "\"")
    } else if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        v.to_owned()
    }
}

fn from_yaml(text: &str) -> (Option<String>, Option<String>) {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    // The top-level `clusters:` key.
    let Some(start) = lines.iter().position(|l| indent(l) == Some(0) && l.trim_end() == "clusters:") else {
        return (None, None);
    };
    let mut server = None;
    let mut ca = None;
    let mut item_indent: Option<usize> = None;
    for line in &lines[start + 1..] {
        let Some(ind) = indent(line) else { continue };
        let body = &line[ind..];
        // A top-level key ends the list (Go puts list items at the key's own indent).
        if ind == 0 && !body.starts_with('-') {
            break;
        }
        if body.starts_with("- ") || body == "-" {
            match item_indent {
                None => item_indent = Some(ind),
                // The second cluster: only the first one counts.
                Some(first) if ind == first => break,
                Some(_) => {}
            }
        }
        let entry = body.trim_start_matches("- ").trim_start();
        if let Some((key, value)) = entry.split_once(':') {
            match key.trim() {
                "server" if server.is_none() => server = Some(scalar(value)),
                "certificate-authority-data" if ca.is_none() => ca = Some(scalar(value)),
                _ => {}
            }
        }
    }
    (server, ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_aks_style_yaml() {
        let text = format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://aks-1-dns.hcp.westeurope.azmk8s.io:443\n  name: aks-1\n- cluster:\n    server: https://other:443\n  name: other\ncontexts:\n- context:\n    cluster: aks-1\n    user: clusterUser\n  name: aks-1\ncurrent-context: aks-1\nkind: Config\nusers:\n- name: clusterUser\n  user:\n    token: x\n",
            b64(PEM)
        );
        let c = first_cluster(&text).unwrap();
        assert_eq!(c.server, "https://aks-1-dns.hcp.westeurope.azmk8s.io:443");
        assert_eq!(c.ca_pem.as_deref(), Some(PEM));
    }

    #[test]
    fn reads_quoted_indented_and_json() {
        let text = "# comment\nclusters:\n  - name: a\n    cluster:\n      server: \"https://a:443\"\nusers: []\n";
        assert_eq!(first_cluster(text).unwrap(), KubeconfigCluster { server: "https://a:443".into(), ca_pem: None });
        let json = format!(
            r#"{{"clusters":[{{"name":"a","cluster":{{"server":"https://j:443","certificate-authority-data":"{}"}}}}]}}"#,
            b64(PEM)
        );
        assert_eq!(first_cluster(&json).unwrap().server, "https://j:443");
    }

    #[test]
    fn reports_missing_server_and_bad_ca() {
        assert_eq!(first_cluster("apiVersion: v1\nkind: Config\n"), Err(KubeconfigError::NoServer));
        let bad = "clusters:\n- cluster:\n    server: https://a\n    certificate-authority-data: '!!!'\n";
        assert!(matches!(first_cluster(bad), Err(KubeconfigError::BadCa(_))));
        let not_pem =
            format!("clusters:\n- cluster:\n    server: https://a\n    certificate-authority-data: {}\n", b64("x"));
        assert!(matches!(first_cluster(&not_pem), Err(KubeconfigError::BadCa(_))));
    }
}
