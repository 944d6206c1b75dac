//! `[authorization] default = "deny"` and per-service allow/deny lists (clusters, globs, trust
//! domains) on a real pair: nothing crosses unless allowed, deny wins, and a refusal names the
//! rule that decided it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Pki, TD, backends, metric, quic, start_pair};
use skybridge_api::header::{OpenRequest, Status};
use skybridge_api::model::{ClusterId, ServiceKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A tcp service on port 7000 hosted by gcp-1, with raw `lists` TOML (allow/deny).
fn service(name: &str, lists: &str, eps: &[SocketAddr]) -> String {
    let eps: Vec<String> = eps.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "\n[[services]]\nnamespace = \"prod\"\nname = \"{name}\"\nclusters = [\"gcp-1\"]\n{lists}\n\
         [[services.ports]]\nport = 7000\nprotocol = \"tcp\"\nendpoints = [{}]\n",
        eps.join(", ")
    )
}

const SERVICES: [(&str, &str); 4] = [
    // No lists: the default decides.
    ("open", ""),
    ("team", "allow = [\"aws-*\"]"),
    ("blocked", "allow = [\"aws-*\"]\ndeny = [\"aws-1\"]"),
    ("domain", "allow = [\"spiffe://test.skybridge\"]"),
];

/// Sends `msg` through aws-1's listener for `name` and returns what came back (nothing when
/// gcp-1 refused the stream).
async fn echo(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_deny_lets_through_only_what_is_allowed_and_deny_wins() {
    assert_eq!(TD, "test.skybridge", "the domain entry above names the test trust domain");
    common::init();
    let pki = Pki::new();
    let echo_backend = backends::echo().await;
    let services = move |eps: bool| {
        let eps = if eps { vec![echo_backend] } else { vec![] };
        SERVICES.iter().map(|(n, lists)| service(n, lists, &eps)).collect::<String>()
    };
    let listeners: String = SERVICES
        .iter()
        .map(|(n, _)| format!("\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"{n}.prod\"\nport = 7000\n"))
        .collect();
    let (a, b) = start_pair(&pki, services, &listeners, "\n[authorization]\ndefault = \"deny\"\n").await;
    let through = |i: usize| a.addrs.tcp[i];

    assert_eq!(echo(through(0), b"x").await, b"", "default deny: a service without lists is closed");
    assert_eq!(echo(through(1), b"glob").await, b"glob", "allowed by the aws-* glob");
    assert_eq!(echo(through(2), b"x").await, b"", "deny beats allow");
    assert_eq!(echo(through(3), b"domain").await, b"domain", "allowed by trust domain");
    let denied = r#"skybridge_gateway_stream_opens_total{side="ingress",status="denied",transport="quic"}"#;
    assert_eq!(metric(b.addrs.admin, denied).await, 2.0);

    // The refusal names the rule: ask gcp-1 directly as aws-1.
    let conn = quic::connect(b.addrs.tunnel, Some(&pki.issue("aws-1", 1))).await.unwrap();
    let ask = |name: &'static str| {
        let conn = conn.clone();
        async move {
            let req = OpenRequest {
                service: ServiceKey::new("prod", name).unwrap(),
                port: 7000,
                source: ClusterId::new("aws-1").unwrap(),
                trace: None,
                probe: false,
                proof: false,
            };
            quic::raw_open(&conn, &quic::header(&req)).await.unwrap()
        }
    };
    let (status, reason) = ask("open").await;
    assert_eq!(status, Status::Denied);
    assert!(reason.ends_with("may not reach prod/open: default deny"), "{reason}");
    let (status, reason) = ask("blocked").await;
    assert_eq!(status, Status::Denied);
    assert!(reason.ends_with(r#"may not reach prod/blocked: deny[0] = "aws-1""#), "{reason}");
    assert_eq!(ask("team").await.0, Status::Ok);
    // Probes still measure the path under a default deny.
    assert_eq!(
        quic::raw_open(&conn, &quic::header(&OpenRequest::probe(ClusterId::new("aws-1").unwrap()))).await.unwrap().0,
        Status::Ok
    );
}

#[test]
fn bad_entries_are_config_errors_naming_the_key() {
    for (lists, needle) in [
        ("allow = [\"a.b\"]", "not a cluster id"),
        ("deny = [\"spiffe://\"]", "not a trust domain"),
        ("deny = [\"GCP-*\"]", "cluster glob"),
    ] {
        let text = common::GwSpec {
            cluster: "aws-1".into(),
            tunnel: "127.0.0.1:1".parse().unwrap(),
            certs: "/nonexistent".into(),
            peers: vec![],
            extra: service("x", lists, &[]),
        }
        .toml();
        let e = skybridge_gateway::config::Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains(needle), "{lists}: {e}");
    }
    let text = common::GwSpec {
        cluster: "aws-1".into(),
        tunnel: "127.0.0.1:1".parse().unwrap(),
        certs: "/nonexistent".into(),
        peers: vec![],
        extra: "\n[authorization]\ndefault = \"maybe\"\n".into(),
    }
    .toml();
    let e = skybridge_gateway::config::Config::parse(&text).unwrap_err().to_string();
    assert!(e.contains("authorization") || e.contains("maybe"), "{e}");
}
