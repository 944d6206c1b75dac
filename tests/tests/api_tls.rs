//! The federator's REST API over HTTPS (`[api] tls`): plain HTTP is refused, reads need no
//! client certificate, writes take the bearer token or an operator's certificate and never a
//! gateway's, the token and the API certificate rotate without a restart, and the `skybridge`
//! CLI speaks it with `--cacert`, `--cert` and `--key`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use skybridge_api::ca::{self, PemPair};
use skybridge_api::identity::SpiffeId;
use skybridge_cli::http::{self, TlsClient};
use skybridge_federator::app as fed_app;
use skybridge_federator::config::Config as FedConfig;
use skybridge_tests::{FederatorToml, free_tcp, run, write_identities, write_identity};

const TD: &str = "api.tls.example";
const POLICY: &str = "/api/v1/policies/prod/payments";

/// Writes `leaf` as `dir/cert.pem` + `dir/key.pem` and returns `dir`.
fn write_leaf(dir: &Path, leaf: &PemPair, ca: &PemPair) -> PathBuf {
    write_identity(dir, leaf, &ca.cert_pem);
    dir.to_owned()
}

fn issue(ca: &PemPair, id: &SpiffeId, sans: &[&str]) -> PemPair {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    ca::issue(ca, id, &sans, time::OffsetDateTime::now_utc(), 1).unwrap()
}

/// One HTTPS request to the API; `as_dir` holds the client certificate to present, if any.
async fn https(
    api: &str,
    ca: &Path,
    as_dir: Option<&Path>,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let identity = as_dir.map(|d| (d.join("cert.pem"), d.join("key.pem")));
    let tls = TlsClient::new("127.0.0.1", Some(ca), identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))
        .map_err(|e| e.to_string())?;
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let body: &[u8] = if method == "PUT" { br#"{"failover": ["aws-1"]}"# } else { b"" };
    let req = http::Request { method, host: api, path, headers: &headers, body, tls: Some(&tls) };
    let (status, body) = http::request(api, req, Duration::from_secs(10), 1 << 20)
        .await
        .map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A plain-HTTP request to the API (what a client that forgot `https://` sends).
async fn plain(api: &str, method: &str, path: &str, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str())];
    let req = http::Request { method, host: api, path, headers: &headers, body: b"{}", tls: None };
    let (status, body) = http::request(api, req, Duration::from_secs(10), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn sky(args: &[&str]) -> Output {
    run(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_https_takes_tokens_and_operator_certificates_and_refuses_the_rest() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = write_identities(d, TD, &["aws-1"]);
    let api_dir = write_leaf(&d.join("api"), &issue(&ca, &SpiffeId::federator(TD), &["127.0.0.1", "localhost"]), &ca);
    let alice = write_leaf(&d.join("alice"), &issue(&ca, &SpiffeId::admin(TD, "alice").unwrap(), &[]), &ca);
    // An operator certificate from a CA this federation does not trust.
    let rogue_ca = ca::init(TD, time::OffsetDateTime::now_utc(), 1).unwrap();
    let mallory =
        write_leaf(&d.join("mallory"), &issue(&rogue_ca, &SpiffeId::admin(TD, "mallory").unwrap(), &[]), &rogue_ca);
    let token = d.join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let catalog = d.join("catalog.toml");
    std::fs::write(&catalog, "[[clusters]]\nid = \"aws-1\"\ncloud = \"aws\"\nregion = \"us-east-1\"\n").unwrap();
    let control = free_tcp(1)[0];
    let text = FederatorToml::new(d, TD, control)
        .tls("reload_interval", "\"100ms\"")
        .section(&format!(
            "[api]\ntoken_file = \"{p}/token\"\ntls = {{ cert = \"{p}/api/cert.pem\", key = \"{p}/api/key.pem\" }}\n",
            p = d.display()
        ))
        .sources(&format!(
            "[[sources]]\ntype = \"static\"\nid = \"static\"\npath = \"{}\"\ninterval = \"50ms\"\n",
            catalog.display()
        ))
        .build();
    let fed = fed_app::start(FedConfig::parse(&text).unwrap()).await.unwrap();
    let api = fed.addrs.api.to_string();
    let ca_pem = d.join("fed/ca.pem");

    // Plain HTTP gets a 400 naming https, for reads and writes alike; nothing is written.
    let (status, body) = plain(&api, "PUT", POLICY, "first-token").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("https://"), "{body}");
    assert_eq!(plain(&api, "GET", "/api/v1/clusters", "x").await.0, 400);

    // Reads need no client certificate.
    let (status, body) = https(&api, &ca_pem, None, "GET", "/api/v1/clusters", None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    // Writes: no credentials or a wrong token are 401; the token is 200.
    assert_eq!(https(&api, &ca_pem, None, "PUT", POLICY, None).await.unwrap().0, 401);
    assert_eq!(https(&api, &ca_pem, None, "PUT", POLICY, Some("wrong")).await.unwrap().0, 401);
    assert_eq!(https(&api, &ca_pem, None, "PUT", POLICY, Some("first-token")).await.unwrap().0, 200);
    // An operator certificate needs no token; a gateway's is refused even with the token.
    let (status, body) = https(&api, &ca_pem, Some(&alice), "DELETE", POLICY, None).await.unwrap();
    assert_eq!(status, 204, "{body}");
    let (status, body) =
        https(&api, &ca_pem, Some(&d.join("aws-1")), "PUT", POLICY, Some("first-token")).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("spiffe://api.tls.example/cluster/aws-1/gateway may not write"), "{body}");
    // A certificate of an untrusted CA fails the handshake: no request is served.
    let e = https(&api, &ca_pem, Some(&mallory), "PUT", POLICY, None).await.unwrap_err();
    assert!(e.contains("TLS") || e.contains("talking to"), "{e}");
    let events = https(&api, &ca_pem, None, "GET", "/api/v1/events", None).await.unwrap().1;
    assert!(events.contains("deleted by spiffe://api.tls.example/admin/alice"), "{events}");
    assert!(events.contains("set by the API token"), "{events}");

    // The token rotates without a restart.
    std::fs::write(d.join(".token.tmp"), "second-token\n").unwrap();
    std::fs::rename(d.join(".token.tmp"), &token).unwrap();
    assert_eq!(https(&api, &ca_pem, None, "PUT", POLICY, Some("first-token")).await.unwrap().0, 401);
    assert_eq!(https(&api, &ca_pem, None, "PUT", POLICY, Some("second-token")).await.unwrap().0, 200);

    // The CLI: https with --cacert reads; without it the system roots do not know our CA.
    let url = format!("https://127.0.0.1:{}", fed.addrs.api.port());
    let cacert = ca_pem.to_str().unwrap();
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        let cacert = cacert.to_owned();
        move || sky(&["clusters", "--api", &url, "--cacert", &cacert])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("aws-1"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || sky(&["clusters", "--api", &url])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && (stderr.contains("--cacert") || stderr.contains("no trusted roots")), "{stderr}");
    // A write with the operator's certificate and no token: authorized, so the answer is the
    // source's own (nothing is held), not 401 or 403.
    let args = |who: &Path| {
        let (url, cacert) = (url.clone(), cacert.to_owned());
        let (cert, key) = (who.join("cert.pem"), who.join("key.pem"));
        move || {
            let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
            sky(&["confirm-removal", "static", "--api", &url, "--cacert", &cacert, "--cert", cert, "--key", key])
        }
    };
    let out = tokio::task::spawn_blocking(args(&alice)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("409") && stderr.contains("no held removal"), "{stderr}");
    let out = tokio::task::spawn_blocking(args(&d.join("aws-1"))).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403") && stderr.contains("may not write"), "{stderr}");

    // The API certificate rotates without a restart: re-issued by another CA, a client that
    // trusts only that CA fails before the reload and succeeds after it.
    let ca2 = ca::init(TD, time::OffsetDateTime::now_utc(), 1).unwrap();
    let ca2_pem = d.join("ca2.pem");
    std::fs::write(&ca2_pem, &ca2.cert_pem).unwrap();
    assert!(https(&api, &ca2_pem, None, "GET", "/healthz", None).await.is_err());
    let next = issue(&ca2, &SpiffeId::federator(TD), &["127.0.0.1"]);
    std::fs::write(api_dir.join("key.pem"), &next.key_pem).unwrap();
    std::fs::write(api_dir.join("cert.pem"), &next.cert_pem).unwrap();
    let mut served = false;
    for _ in 0..100 {
        if https(&api, &ca2_pem, None, "GET", "/healthz", None).await.is_ok_and(|(s, _)| s == 200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the new API certificate was not picked up within 5 s");

    // Refusals are counted by kind.
    let metrics = https(&api, &ca2_pem, None, "GET", "/metrics", None).await.unwrap().1;
    for event in ["plain_http", "tls_handshake_failed"] {
        assert!(
            metrics.lines().any(|l| l.contains(&format!("event=\"{event}\"")) && !l.ends_with(" 0")),
            "{event}:\n{metrics}"
        );
    }
    fed.shutdown().await;
}

/// `[api] tls` with a missing or mismatched key stops the start, naming the file.
#[tokio::test]
async fn a_broken_api_certificate_stops_the_start_naming_the_file() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = write_identities(d, TD, &[]);
    let other = issue(&ca, &SpiffeId::federator(TD), &["127.0.0.1"]);
    let api_dir = write_leaf(&d.join("api"), &issue(&ca, &SpiffeId::federator(TD), &["127.0.0.1"]), &ca);
    std::fs::write(api_dir.join("key.pem"), &other.key_pem).unwrap();
    let text = |key: &str| {
        format!(
            "[federator]\ntrust_domain = \"{TD}\"\ndata_dir = \"{p}/data\"\n\
             [tls]\ncert = \"{p}/fed/cert.pem\"\nkey = \"{p}/fed/key.pem\"\ntrust_bundle = \"{p}/fed/ca.pem\"\n\
             [listen]\ncontrol = \"127.0.0.1:0\"\napi = \"127.0.0.1:0\"\n\
             [api]\ntls = {{ cert = \"{p}/api/cert.pem\", key = \"{key}\" }}\n",
            p = d.display(),
        )
    };
    for (key, want) in [(api_dir.join("key.pem"), "key.pem"), (d.join("missing.pem"), "missing.pem")] {
        let e = match fed_app::start(FedConfig::parse(&text(key.to_str().unwrap())).unwrap()).await {
            Ok(_) => panic!("started with {}", key.display()),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{e}");
    }
    // An unknown key in the table is a config error naming it.
    let e = FedConfig::parse(&text("k").replace("key = \"k\"", "key = \"k\", ca = \"x\"")).unwrap_err().to_string();
    assert!(e.contains("ca"), "{e}");
}
