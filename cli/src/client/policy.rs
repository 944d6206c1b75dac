//! `skybridge policy get|set|delete`: the federator's routing policies
//! (`/api/v1/policies`, docs/api.md#policies). Writes carry the API token or, over HTTPS, an
//! operator certificate (`--cert/--key`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use skybridge_federator::api::policy::{PoliciesResponse, PolicyDto, PolicyResponse};

use super::confirm::bearer;
use super::table::{Table, list_or_dash};
use super::{Api, ApiArgs, ClientError, Output, block_on, decode, encode, pretty, status_error};

/// `skybridge policy ...`.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The policy subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// List every policy, or show one service's (NAMESPACE/NAME).
    Get {
        #[command(flatten)]
        api: ApiArgs,
        service: Option<String>,
    },
    /// Set (replace) a service's whole policy from flags, or from a JSON file (`-f`, `-` for
    /// stdin) shaped like the API's body.
    Set {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        auth: WriteAuth,
        service: String,
        /// A JSON policy body (docs/api.md); `-` reads stdin. Excludes the field flags.
        #[arg(short = 'f', long = "file", conflicts_with_all = ["weights", "failover", "avoid", "allow", "allow_none", "deny"])]
        file: Option<PathBuf>,
        /// Weights per cluster, summing to 100: `aws-1=70,gcp-1=30`.
        #[arg(long)]
        weights: Option<String>,
        /// Explicit failover order: `gcp-1,azure-1`.
        #[arg(long)]
        failover: Option<String>,
        /// Clusters never to send the service's traffic to.
        #[arg(long)]
        avoid: Option<String>,
        /// Sources allowed in: cluster ids, globs (`aws-*`) or `spiffe://<domain>`.
        #[arg(long, conflicts_with = "allow_none")]
        allow: Option<String>,
        /// An empty allow list: no source may reach the service.
        #[arg(long)]
        allow_none: bool,
        /// Sources refused whatever the allow list says.
        #[arg(long)]
        deny: Option<String>,
    },
    /// Delete a service's policy.
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        auth: WriteAuth,
        service: String,
    },
}

/// How a write is authorized: the token (file or `$SKYBRIDGE_TOKEN`), or `--cert/--key`.
#[derive(Debug, Args)]
pub(crate) struct WriteAuth {
    /// File holding the API's bearer token (the federator's `api.token_file`).
    #[arg(long, env = "SKYBRIDGE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself, from the environment only (kept out of shell history).
    #[arg(skip = std::env::var("SKYBRIDGE_TOKEN").ok())]
    pub token: Option<String>,
}

/// A comma-separated list; empty entries are dropped.
fn list(s: Option<&str>) -> Vec<String> {
    s.map(|s| s.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect()).unwrap_or_default()
}

/// `aws-1=70,gcp-1=30` as the API's weights.
fn weights(s: Option<&str>) -> Result<std::collections::BTreeMap<String, i64>, ClientError> {
    list(s)
        .into_iter()
        .map(|e| {
            let bad = || ClientError::BadArgument(format!("--weights: {e:?} is not CLUSTER=WEIGHT"));
            let (c, w) = e.split_once('=').ok_or_else(bad)?;
            Ok((c.trim().to_owned(), w.trim().parse::<i64>().map_err(|_| bad())?))
        })
        .collect()
}

/// The JSON body of `set`: the file as is (the API validates it), or the flags.
fn body(cmd: &PolicyCommand) -> Result<Vec<u8>, ClientError> {
    let PolicyCommand::Set { file, weights: w, failover, avoid, allow, allow_none, deny, .. } = cmd else {
        return Ok(Vec::new());
    };
    if let Some(f) = file {
        let read = if f.as_os_str() == "-" {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
        } else {
            std::fs::read(f)
        };
        return read.map_err(|e| ClientError::BadArgument(format!("-f {}: {e}", f.display())));
    }
    let dto = PolicyDto {
        weights: weights(w.as_deref())?,
        failover: list(failover.as_deref()),
        avoid: list(avoid.as_deref()),
        allow: if *allow_none { Some(Vec::new()) } else { allow.as_deref().map(|a| list(Some(a))) },
        deny: list(deny.as_deref()),
    };
    Ok(serde_json::to_vec(&dto).unwrap_or_default())
}

/// The service path segment `namespace/name`, each part percent-encoded.
fn service_path(service: &str) -> Result<String, ClientError> {
    let (ns, name) = service
        .split_once('/')
        .ok_or_else(|| ClientError::BadArgument(format!("{service:?}: give the service as NAMESPACE/NAME")))?;
    Ok(format!("/api/v1/policies/{}/{}", encode(ns), encode(name)))
}

/// Runs a `policy` subcommand.
pub(crate) fn run(args: &PolicyArgs) -> Result<(), ClientError> {
    match &args.command {
        PolicyCommand::Get { api: a, service } => {
            let api = Api::new(a)?;
            let path = match service {
                Some(s) => service_path(s)?,
                None => "/api/v1/policies".to_owned(),
            };
            let body = block_on(api.get(&path))??;
            let text = match (a.output, service) {
                (Output::Json, _) => pretty(&path, &body)? + "\n",
                (Output::Table, Some(_)) => table(&[decode::<PolicyResponse>(&path, &body)?], None),
                (Output::Table, None) => {
                    let all: PoliciesResponse = decode(&path, &body)?;
                    table(&all.policies, Some(&all.authorization_default))
                }
            };
            print!("{text}");
        }
        cmd @ (PolicyCommand::Set { api: a, auth, service, .. } | PolicyCommand::Delete { api: a, auth, service }) => {
            let api = Api::new(a)?;
            let path = service_path(service)?;
            let token = bearer(auth.token_file.as_deref(), auth.token.as_deref(), a.cert.is_some())?;
            let mut headers = vec![("Accept", "application/json"), ("Content-Type", "application/json")];
            if let Some(t) = &token {
                headers.push(("Authorization", t.as_str()));
            }
            let (method, want) = if matches!(cmd, PolicyCommand::Set { .. }) { ("PUT", 200) } else { ("DELETE", 204) };
            let body = body(cmd)?;
            let (status, answer) = block_on(api.send(method, &path, &headers, &body))??;
            if status != want {
                return Err(status_error(&path, status, &answer));
            }
            match (a.output, method) {
                (Output::Json, "PUT") => println!("{}", pretty(&path, &answer)?),
                (_, "PUT") => {
                    let p: PolicyResponse = decode(&path, &answer)?;
                    print!("{}", table(std::slice::from_ref(&p), None));
                    if !p.unknown_clusters.is_empty() {
                        println!("warning: clusters not in the catalog (yet?): {}", p.unknown_clusters.join(", "));
                    }
                }
                _ => println!("policy for {service} deleted"),
            }
        }
    }
    Ok(())
}

/// The kubectl-style listing; `default` is the federation's `[authorization] default`.
pub(crate) fn table(policies: &[PolicyResponse], default: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(d) = default {
        out.push_str(&format!("Authorization default: {d}\n\n"));
    }
    if policies.is_empty() {
        out.push_str("No policies.\n");
        return out;
    }
    let mut t = Table::new(&["SERVICE", "SOURCE", "WEIGHTS", "FAILOVER", "AVOID", "ALLOW", "DENY", "IN CATALOG"]);
    for p in policies {
        let d = &p.policy;
        let weights: Vec<String> = d.weights.iter().map(|(c, w)| format!("{c}={w}")).collect();
        let source =
            serde_json::to_value(p.source).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        t.row(vec![
            format!("{}/{}", p.namespace, p.name),
            source,
            list_or_dash(&weights, ","),
            list_or_dash(&d.failover, ","),
            list_or_dash(&d.avoid, ","),
            d.allow.as_ref().map_or("default".into(), |a| if a.is_empty() { "none".into() } else { a.join(",") }),
            list_or_dash(&d.deny, ","),
            if p.in_catalog { "yes" } else { "no" }.into(),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_the_apis_body() {
        let cmd = |extra: &[&str]| {
            use clap::Parser;
            #[derive(Parser)]
            struct T {
                #[command(subcommand)]
                c: PolicyCommand,
            }
            let mut argv = vec!["t", "set", "prod/web"];
            argv.extend_from_slice(extra);
            T::parse_from(argv).c
        };
        let b = body(&cmd(&[
            "--weights",
            "aws-1=70, gcp-1=30",
            "--failover",
            "gcp-1",
            "--allow",
            "aws-*,spiffe://x.example",
        ]))
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["weights"], serde_json::json!({"aws-1": 70, "gcp-1": 30}));
        assert_eq!(v["allow"], serde_json::json!(["aws-*", "spiffe://x.example"]));
        assert_eq!(v["deny"], serde_json::json!([]));
        let v: serde_json::Value = serde_json::from_slice(&body(&cmd(&[])).unwrap()).unwrap();
        assert_eq!(v["allow"], serde_json::Value::Null, "no --allow: the default decides");
        let v: serde_json::Value = serde_json::from_slice(&body(&cmd(&["--allow-none"])).unwrap()).unwrap();
        assert_eq!(v["allow"], serde_json::json!([]));
        assert!(body(&cmd(&["--weights", "aws-1"])).unwrap_err().to_string().contains("CLUSTER=WEIGHT"));
        assert!(service_path("web").is_err());
    }

    #[test]
    fn the_table_shows_source_lists_and_the_default() {
        let p = PolicyResponse {
            namespace: "prod".into(),
            name: "web".into(),
            in_catalog: true,
            unknown_clusters: vec![],
            source: skybridge_federator::policies::Origin::File,
            policy: PolicyDto { allow: Some(vec![]), avoid: vec!["gcp-1".into()], ..Default::default() },
        };
        let text = table(&[p], Some("deny"));
        assert!(text.starts_with("Authorization default: deny\n\nSERVICE "), "{text}");
        assert!(text.contains("prod/web   file     -         -          gcp-1   none    -      yes"), "{text}");
        assert_eq!(table(&[], None), "No policies.\n");
    }
}
