//! Scoped trust between trust domains (`[[tls.federated]]`): a gateway of another domain is
//! accepted only through that domain's roots and only for the clusters the domain may claim.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{GwSpec, Pki, TD, backends, free_udp, quic, service};
use skybridge_api::ca::{self, PemPair};
use skybridge_api::header::{OpenRequest, Status};
use skybridge_api::identity::SpiffeId;
use skybridge_api::model::ClusterId;
use skybridge_gateway::app::{self, Running};
use skybridge_gateway::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The other trust domain: a separate root, as a second cloud's CA would be.
const GCP_TD: &str = "gcp.corp.example";

fn federated(td: &str, bundle: &Path, clusters: &str) -> String {
    format!(
        "\n[[tls.federated]]\ntrust_domain = \"{td}\"\nbundle = \"{}\"\nclusters = [{clusters}]\n",
        bundle.display()
    )
}

/// Starts a gateway of trust domain `td` from `spec`.
async fn start_in(td: &str, spec: &GwSpec) -> Running {
    // Only the `[gateway]` key: a `[[tls.federated]]` entry may name our test domain too.
    let text = spec.toml().replacen(&format!("trust_domain = \"{TD}\""), &format!("trust_domain = \"{td}\""), 1);
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    app::start(cfg).await.unwrap()
}

fn leaf(ca: &PemPair, td: &str, cluster: &str) -> PemPair {
    let id = SpiffeId::gateway(td, ClusterId::new(cluster).unwrap());
    ca::issue(ca, &id, &[], time::OffsetDateTime::now_utc(), 1).unwrap()
}

/// aws-1 (our domain, with a listener for `echo.prod`) and gcp-1 (GCP_TD, hosting it), each
/// federating the other's domain for its clusters: `aws_roots` are our domain's roots as gcp-1
/// trusts them, `gcp_roots` the GCP domain's as aws-1 does.
async fn start_two(aws_certs: PathBuf, gcp_certs: PathBuf, aws_roots: &Path, gcp_roots: &Path) -> (Running, Running) {
    let echo = backends::echo().await;
    let (ta, tg) = (free_udp(), free_udp());
    let services = |eps: &[SocketAddr]| service("prod", "echo", &["gcp-1"], 7000, "tcp", eps);
    let gcp = GwSpec {
        cluster: "gcp-1".into(),
        tunnel: tg,
        certs: gcp_certs,
        peers: vec![("aws-1".into(), ta)],
        extra: format!("{}{}", services(&[echo]), federated(TD, aws_roots, "\"aws-*\"")),
    };
    let gcp = start_in(GCP_TD, &gcp).await;
    let aws = GwSpec {
        cluster: "aws-1".into(),
        tunnel: ta,
        certs: aws_certs,
        peers: vec![("gcp-1".into(), tg)],
        extra: format!(
            "\n[[listen.tcp]]\naddress = \"127.0.0.1:0\"\nservice = \"echo.prod\"\nport = 7000\n{}{}",
            services(&[]),
            federated(GCP_TD, gcp_roots, "\"gcp-*\"")
        ),
    };
    (start_in(TD, &aws).await, gcp)
}

/// aws-1 in our domain and gcp-1 in GCP_TD, each trusting the other's domain for its clusters
/// only; gcp-1 hosts `echo.prod`.
struct TwoDomains {
    aws_pki: Pki,
    gcp_pki: Pki,
    aws: Running,
    gcp: Running,
}

async fn two_domains() -> TwoDomains {
    common::init();
    let (aws_pki, gcp_pki) = (Pki::new(), Pki::with_domain(GCP_TD));
    let aws_certs = aws_pki.issue_files("aws-1", "aws-1", 1);
    let gcp_certs = gcp_pki.issue_files("gcp-1", "gcp-1", 1);
    let (aws_roots, gcp_roots) = (aws_certs.join("ca.pem"), gcp_certs.join("ca.pem"));
    let (aws, gcp) = start_two(aws_certs, gcp_certs, &aws_roots, &gcp_roots).await;
    TwoDomains { aws_pki, gcp_pki, aws, gcp }
}

async fn echo_through(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    out
}

/// Opens a stream as `identity` (a gateway certificate for `cluster`) to `tunnel` and returns
/// the status it gets, or why not.
async fn open_as(tunnel: SocketAddr, identity: &PemPair, cluster: &str) -> Result<Status, String> {
    let conn = quic::connect(tunnel, Some(identity)).await?;
    let req = OpenRequest {
        service: skybridge_api::model::ServiceKey::new("prod", "echo").unwrap(),
        port: 7000,
        source: ClusterId::new(cluster).unwrap(),
        trace: None,
        probe: false,
        proof: false,
    };
    let r = tokio::time::timeout(Duration::from_secs(5), quic::raw_open(&conn, &quic::header(&req)))
        .await
        .map_err(|_| "no answer".to_owned())?;
    r.map(|(status, _)| status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_of_a_federated_domain_is_accepted_and_routed() {
    let d = two_domains().await;
    // aws-1 verified gcp-1 against the GCP roots (server side) and gcp-1 verified aws-1 against
    // ours (client side).
    assert_eq!(echo_through(d.aws.addrs.tcp[0], b"across trust domains").await, b"across trust domains");
    // A fresh gateway certificate of the GCP domain, for a cluster it may claim: accepted.
    assert_eq!(open_as(d.aws.addrs.tunnel, &leaf(&d.gcp_pki.ca, GCP_TD, "gcp-7"), "gcp-7").await, Ok(Status::NoRoute));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_domains_ca_cannot_impersonate_or_leave_its_scope() {
    let d = two_domains().await;
    let gcp_ca = &d.gcp_pki.ca;
    // The GCP CA signs an identity of *our* domain: it does not chain to our roots.
    let impostor = leaf(gcp_ca, TD, "aws-2");
    let e = open_as(d.aws.addrs.tunnel, &impostor, "aws-2").await.unwrap_err();
    assert!(!e.is_empty());
    assert!(
        open_as(d.gcp.addrs.tunnel, &impostor, "aws-2").await.is_err(),
        "gcp-1 trusts our domain only through our roots"
    );
    // The GCP CA signs a GCP identity for a cluster outside its `clusters`: refused.
    assert!(open_as(d.aws.addrs.tunnel, &leaf(gcp_ca, GCP_TD, "aws-9"), "aws-9").await.is_err());
    // Our own CA may not speak for a cluster the GCP domain claims.
    assert!(open_as(d.aws.addrs.tunnel, &leaf(&d.aws_pki.ca, TD, "gcp-9"), "gcp-9").await.is_err());
    // A domain nobody federated, even with a certificate for a plausible cluster.
    let stranger = Pki::with_domain("evil.example");
    assert!(open_as(d.aws.addrs.tunnel, &leaf(&stranger.ca, "evil.example", "aws-3"), "aws-3").await.is_err());
    // And the legitimate ones still work.
    assert_eq!(open_as(d.aws.addrs.tunnel, &leaf(&d.aws_pki.ca, TD, "aws-2"), "aws-2").await, Ok(Status::NoRoute));
    assert_eq!(echo_through(d.aws.addrs.tcp[0], b"still fine").await, b"still fine");
}

#[test]
fn federated_config_errors_name_the_key() {
    let base = GwSpec {
        cluster: "aws-1".into(),
        tunnel: "127.0.0.1:1".parse().unwrap(),
        certs: "/nonexistent".into(),
        peers: vec![],
        extra: String::new(),
    }
    .toml();
    let err = |extra: &str| Config::parse(&format!("{base}{extra}")).unwrap_err().to_string();
    let b = Path::new("/b.pem");
    let e = err(&federated(TD, b, "\"x-*\""));
    assert!(e.contains("tls.federated[0].trust_domain") && e.contains("our own"), "{e}");
    let e = err(&format!("{}{}", federated("a.example", b, "\"gcp-*\""), federated("b.example", b, "\"*-prod\"")));
    assert!(e.contains("tls.federated[1].clusters[0]") && e.contains("overlaps tls.federated[0].clusters[0]"), "{e}");
    let e = err(&format!("{}{}", federated("a.example", b, "\"x\""), federated("a.example", b, "\"y\"")));
    assert!(e.contains("tls.federated[1].trust_domain") && e.contains("also tls.federated[0]"), "{e}");
    let e = err(&federated("a.example", b, "\"GCP-*\""));
    assert!(e.contains("cluster glob") && e.contains("GCP-*"), "{e}");
    let e = err(&federated("a.example", b, ""));
    assert!(e.contains("tls.federated[0].clusters"), "{e}");
    let e = err(&federated("Not A Domain", b, "\"x\""));
    assert!(e.contains("tls.federated[0].trust_domain"), "{e}");
}

/// One root delegating a CA per trust domain (`skybridge ca issue --intermediate`): both
/// domains trust the same root, and what keeps them apart is the intermediate each chain must
/// come through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_root_delegates_a_ca_per_domain_and_intermediates_bind_their_domain() {
    common::init();
    let now = time::OffsetDateTime::now_utc();
    let root = ca::init("corp.example", now, 1).unwrap();
    let aws_ca = ca::intermediate(&root, TD, now, 1).unwrap();
    let gcp_ca = ca::intermediate(&root, GCP_TD, now, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A leaf issued by an intermediate, as `ca issue --ca <intermediate>` writes it.
    let chained = |ca: &PemPair, td: &str, cluster: &str| {
        let mut l = leaf(ca, td, cluster);
        l.cert_pem.push_str(&ca.cert_pem);
        l
    };
    let write = |name: &str, pair: &PemPair| {
        let d = dir.path().join(name);
        common::write_identity(&d, pair, &root.cert_pem);
        d
    };
    let (aws_certs, gcp_certs) =
        (write("aws-1", &chained(&aws_ca, TD, "aws-1")), write("gcp-1", &chained(&gcp_ca, GCP_TD, "gcp-1")));
    let bundle = aws_certs.join("ca.pem");
    let (aws, _gcp) = start_two(aws_certs, gcp_certs, &bundle, &bundle).await;
    assert_eq!(echo_through(aws.addrs.tcp[0], b"delegated").await, b"delegated");
    let tunnel = aws.addrs.tunnel;
    assert_eq!(open_as(tunnel, &chained(&aws_ca, TD, "aws-2"), "aws-2").await, Ok(Status::NoRoute));
    // The GCP intermediate signs an identity of our domain: it chains to the root we trust for
    // our domain, but through an intermediate of another domain.
    assert!(open_as(tunnel, &chained(&gcp_ca, TD, "aws-2"), "aws-2").await.is_err());
    // Straight from the shared root, with no intermediate to say which domain: refused.
    assert!(open_as(tunnel, &leaf(&root, TD, "aws-3"), "aws-3").await.is_err());
    assert!(open_as(tunnel, &leaf(&root, GCP_TD, "gcp-3"), "gcp-3").await.is_err());
}

/// A federated bundle reloads like the certificates: a garbage bundle is refused and counted
/// and the previous trust stays; a bundle without the domain's old root stops new handshakes
/// with that root's certificates while connections already open keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_bundle_reloads_and_a_removed_root_stops_only_new_handshakes() {
    let d = two_domains().await;
    let admin = d.aws.addrs.admin;
    let bundle = d.gcp_pki.dir.path().join("gcp-1/ca.pem");
    // A connection through the tunnel that stays open across the reloads.
    let mut held = TcpStream::connect(d.aws.addrs.tcp[0]).await.unwrap();
    let mut roundtrip = async |msg: &[u8]| {
        held.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), held.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(buf, msg);
    };
    roundtrip(b"before").await;
    let gcp7 = leaf(&d.gcp_pki.ca, GCP_TD, "gcp-7");
    assert_eq!(open_as(d.aws.addrs.tunnel, &gcp7, "gcp-7").await, Ok(Status::NoRoute));

    let count = |result: &'static str| async move {
        common::metric(admin, &format!(r#"skybridge_gateway_cert_reloads_total{{result="{result}"}}"#)).await
    };
    let (errors, oks) = (count("error").await, count("ok").await);
    let write = |text: String| {
        let tmp = bundle.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &bundle).unwrap();
    };
    // Whether the reload counter `result` passes `before` within 5 s.
    let passes = async |result: &'static str, before: f64| {
        for _ in 0..100 {
            if count(result).await > before {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    write("not a certificate\n".into());
    assert!(passes("error", errors).await, "a garbage bundle was not refused");
    assert_eq!(open_as(d.aws.addrs.tunnel, &gcp7, "gcp-7").await, Ok(Status::NoRoute), "the previous trust stays");

    // Rotate the GCP domain to a new root and drop the old one from the bundle.
    let new_root = ca::init(GCP_TD, time::OffsetDateTime::now_utc(), 1).unwrap();
    write(new_root.cert_pem.clone());
    assert!(passes("ok", oks).await, "the new bundle was not loaded");
    assert!(open_as(d.aws.addrs.tunnel, &gcp7, "gcp-7").await.is_err(), "the removed root is still trusted");
    assert_eq!(open_as(d.aws.addrs.tunnel, &leaf(&new_root, GCP_TD, "gcp-8"), "gcp-8").await, Ok(Status::NoRoute));
    roundtrip(b"after the rotation").await;
}
