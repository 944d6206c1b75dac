//! A federator and two gateways in one process on loopback: the catalog flows from a static
//! source through the control stream into the gateways' routing, and survives the federator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use skybridge_api::ca;
use skybridge_api::identity::SpiffeId;
use skybridge_api::model::ClusterId;
use skybridge_federator::app as fed_app;
use skybridge_federator::config::Config as FedConfig;
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::{federated_gateway_toml, free_tcp, http_backend, write_identities, write_identity};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TD: &str = "fed.test";

struct World {
    dir: tempfile::TempDir,
    ca: ca::PemPair,
    control: SocketAddr,
}

impl World {
    fn new() -> World {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let ca = write_identities(dir.path(), TD, &["aws-1", "gcp-1"]);
        let control = free_tcp(1)[0];
        let w = World { dir, ca, control };
        w.write_catalog("");
        w
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Rewrites the static source's file: two clusters and `services` (TOML).
    fn write_catalog(&self, services: &str) {
        let text = format!(
            "[[clusters]]\nid = \"aws-1\"\ncloud = \"aws\"\nregion = \"us-east-1\"\n\
             [[clusters]]\nid = \"gcp-1\"\ncloud = \"gcp\"\nregion = \"europe-west1\"\n{services}"
        );
        let tmp = self.path("catalog.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path("catalog.toml")).unwrap();
    }

    async fn federator(&self) -> fed_app::Running {
        self.federator_with("").await
    }

    async fn federator_with(&self, limits: &str) -> fed_app::Running {
        self.federator_with_section("", limits).await
    }

    /// A federator with extra `[federator]` keys and `[limits]` lines.
    async fn federator_with_section(&self, section: &str, limits: &str) -> fed_app::Running {
        let d = self.dir.path().display();
        let text = format!(
            r#"
[federator]
trust_domain = "{TD}"
data_dir = "{d}/data"
merge_interval = "100ms"
{section}
[tls]
cert = "{d}/fed/cert.pem"
key = "{d}/fed/key.pem"
trust_bundle = "{d}/fed/ca.pem"
[listen]
control = "{}"
api = "127.0.0.1:0"
[limits]
hello_timeout = "2s"
{limits}
[[sources]]
type = "static"
id = "static"
path = "{d}/catalog.toml"
interval = "50ms"
backoff_min = "50ms"
backoff_max = "200ms"
"#,
            self.control
        );
        fed_app::start(FedConfig::parse(&text).unwrap()).await.unwrap()
    }

    async fn gateway(&self, cluster: &str, extra: &str) -> gw_app::Running {
        self.gateway_named(cluster, &format!("{cluster}-gw-0"), extra).await
    }

    async fn gateway_named(&self, cluster: &str, instance: &str, extra: &str) -> gw_app::Running {
        // The harness's text ends in the [federator] table: the first lines extend it.
        let text = federated_gateway_toml(self.dir.path(), TD, cluster, self.control, true)
            + &format!("instance = \"{instance}\"\nreport_interval = \"200ms\"\n{extra}");
        gw_app::start(GwConfig::parse(&text).unwrap()).await.unwrap()
    }
}

type ControlClient = skybridge_api::proto::wire::control_client::ControlClient<tonic::transport::Channel>;

fn gateway_role(cluster: &str) -> skybridge_api::identity::Role {
    skybridge_api::identity::Role::Gateway(ClusterId::new(cluster).unwrap())
}

/// [`control_client`], retried for up to 5 s while the control port is at its cap.
async fn control_client_soon(w: &World, cluster: &str) -> ControlClient {
    for _ in 0..50 {
        if let Ok(c) = control_client_as(w, &w.path(cluster), gateway_role(cluster)).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{cluster} could not connect to the control port within 5 s");
}

/// A raw control-stream client holding `cluster`'s gateway certificate.
async fn control_client(w: &World, cluster: &str) -> ControlClient {
    let role = skybridge_api::identity::Role::Gateway(ClusterId::new(cluster).unwrap());
    control_client_as(w, &w.path(cluster), role).await.unwrap()
}

/// A raw control-stream client presenting the identity in `dir` (which must be `role`'s).
async fn control_client_as(
    w: &World,
    dir: &std::path::Path,
    role: skybridge_api::identity::Role,
) -> Result<ControlClient, skybridge_gateway::federation::FederationError> {
    use skybridge_api::tls::{CertStore, ServerExpectation, TlsFiles};
    let files = TlsFiles::in_dir(dir);
    let certs = CertStore::load_unverified(files, TD, role).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        certs.client_config(ServerExpectation::Federator, &[b"h2"]).unwrap(),
    ));
    let section: skybridge_gateway::config::FederatorSection =
        toml::from_str(&format!("address = \"{}\"", w.control)).unwrap();
    let channel = skybridge_gateway::federation::connect(&section, &tls).await?;
    Ok(ControlClient::new(channel).max_decoding_message_size(section.max_message_size))
}

fn hello_message(cluster: &str, instance: &str) -> skybridge_api::proto::wire::GatewayMessage {
    use skybridge_api::proto::wire::{self, gateway_message};
    let hello =
        wire::Hello { cluster: cluster.into(), cloud: "gcp".into(), instance: instance.into(), ..Default::default() };
    wire::GatewayMessage { msg: Some(gateway_message::Msg::Hello(hello)) }
}

/// A gateway client whose HTTP/2 windows are 64 KiB, so that by not reading it soon stops the
/// federator's sends (the production client's windows are megabytes).
async fn small_window_client(w: &World, cluster: &str) -> ControlClient {
    use skybridge_api::tls::{CertStore, ServerExpectation, TlsFiles};
    let d = w.path(cluster);
    let files = TlsFiles::in_dir(&d);
    let role = skybridge_api::identity::Role::Gateway(ClusterId::new(cluster).unwrap());
    let certs = CertStore::load(files, TD, role).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        certs.client_config(ServerExpectation::Federator, &[b"h2"]).unwrap(),
    ));
    let addr = w.control;
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            let name = rustls_pki_types::ServerName::try_from("federator.skybridge").unwrap();
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls.connect(name, tcp).await?))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://federator.skybridge")
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(65_535))
        .connect_with_connector(connector)
        .await
        .unwrap();
    ControlClient::new(channel)
}

/// Opens a session with a Hello for `cluster`; the error when the federator refuses it.
async fn hello_from(
    client: Result<ControlClient, skybridge_gateway::federation::FederationError>,
    cluster: &str,
) -> Result<(), String> {
    use skybridge_api::proto::wire::{self, gateway_message};
    let mut client = client.map_err(|e| e.to_string())?;
    let hello = wire::GatewayMessage {
        msg: Some(gateway_message::Msg::Hello(wire::Hello {
            cluster: cluster.into(),
            cloud: "aws".into(),
            ..Default::default()
        })),
    };
    let mut stream = client.session(tokio_stream::iter(vec![hello])).await.map_err(|e| e.to_string())?.into_inner();
    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

fn web_service(endpoint: SocketAddr) -> String {
    format!(
        "[[services]]\nnamespace = \"prod\"\nname = \"web\"\n[[services.exports]]\ncluster = \"gcp-1\"\n\
         [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"{endpoint}\"]\n"
    )
}

/// Two services nobody calls, so that removing `web` is not a mass removal.
fn fillers() -> String {
    (0..2)
        .map(|i| {
            format!(
                "[[services]]\nnamespace = \"prod\"\nname = \"filler-{i}\"\n[[services.exports]]\ncluster = \"gcp-1\"\n\
                 [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"10.0.0.{}:80\"]\n",
                i + 1
            )
        })
        .collect()
}

async fn get(gw: &gw_app::Running, host: &str) -> String {
    let mut s = TcpStream::connect(gw.addrs.http.unwrap()).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

async fn http_text(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Polls until `f` holds (10 s at most).
async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn routing_version(gw: &gw_app::Running) -> String {
    gw.context().catalog.load().version.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_flows_to_gateways_and_survives_the_federator() {
    let w = World::new();
    let backend = http_backend("gcp-1").await;
    let fed = w.federator().await;
    let a = w.gateway("aws-1", "").await;
    let b = w.gateway("gcp-1", "").await;
    until("both gateways connected", async || fed.state().gateways().iter().filter(|g| g.connected).count() == 2).await;

    // The static source adds a service (and two others): both gateways route to it, a through
    // the tunnel.
    w.write_catalog(&format!("{}{}", web_service(backend), fillers()));
    until("web.prod reached aws-1", async || get(&a, "web.prod").await.ends_with("hello from gcp-1\n")).await;
    assert!(get(&b, "web.prod").await.ends_with("hello from gcp-1\n"), "gcp-1 delivers locally");
    let v = fed.state().catalog().version;
    until("both ACKed", async || fed.state().gateways().iter().all(|g| g.record.acked_version == v)).await;
    assert_eq!(routing_version(&a), format!("federator-{v}"));
    let metrics = http_text(fed.addrs.api, "/metrics").await;
    assert!(metrics.contains("skybridge_federator_gateways_connected 2"), "{metrics}");
    assert!(metrics.contains(&format!("skybridge_federator_catalog_version {v}")), "{metrics}");
    assert!(metrics.contains(r#"skybridge_federator_source_syncs_total{source="static",result="ok"}"#), "{metrics}");

    // Removed from the source (one of three): refused with a clear 502, not a hang.
    w.write_catalog(&fillers());
    until("web.prod gone from aws-1", async || get(&a, "web.prod").await.starts_with("HTTP/1.1 502")).await;
    // The file emptied (a truncation): held by the mass-removal guard, nothing changes.
    let before = fed.state().catalog().version;
    w.write_catalog("");
    until("the emptying held", async || fed.state().sources()["static"].held_removal.is_some()).await;
    assert_eq!(fed.state().catalog().version, before, "nothing removed");
    assert_eq!(fed.state().catalog().services.len(), 2);

    // Back, then the federator dies: gateways keep routing on the last catalog.
    w.write_catalog(&format!("{}{}", web_service(backend), fillers()));
    until("web.prod back", async || get(&a, "web.prod").await.ends_with("hello from gcp-1\n")).await;
    let version = fed.state().catalog().version;
    until("aws-1 at the latest version", async || routing_version(&a) == format!("federator-{version}")).await;
    fed.shutdown().await;
    until("aws-1 sees the federator gone", async || a.context().federation.lock().unwrap().state != "connected").await;
    assert!(get(&a, "web.prod").await.ends_with("hello from gcp-1\n"), "static stability");
    // Operators see it: /status names the federator state and the version still routed on.
    let status = http_text(a.addrs.admin, "/status").await;
    let body: serde_json::Value = serde_json::from_str(status.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_ne!(body["federator"]["state"], "connected", "{body}");
    assert_eq!(body["federator"]["catalog_version"], version, "{body}");
    let metrics = http_text(a.addrs.admin, "/metrics").await;
    assert!(metrics.contains("skybridge_gateway_federator_connected 0"), "{metrics}");
    assert!(metrics.contains(&format!("skybridge_gateway_catalog_version {version}")), "{metrics}");

    // Restarted on the same store: same version; gateways resync without a new snapshot.
    let snapshots = |g: &gw_app::Running| {
        g.context()
            .metrics
            .catalog_updates
            .get_or_create(&skybridge_gateway::metrics::KindLabels { kind: "snapshot" })
            .get()
    };
    let before = snapshots(&a);
    let fed = w.federator().await;
    assert_eq!(fed.state().catalog().version, version, "restored from the store");
    until("both reconnected", async || fed.state().gateways().iter().filter(|g| g.connected).count() == 2).await;
    until("aws-1 ACKed the same version", async || {
        fed.state()
            .gateways()
            .iter()
            .any(|g| g.record.cluster.as_str() == "aws-1" && g.connected && g.record.acked_version == version)
    })
    .await;
    assert_eq!(snapshots(&a), before, "an up-to-date gateway is not sent a snapshot again");
    assert_eq!(routing_version(&a), format!("federator-{version}"));
    assert!(get(&a, "web.prod").await.ends_with("hello from gcp-1\n"));

    // Latency reports from the gateways reach the federator.
    until("a latency sample aws-1 -> gcp-1", async || {
        fed.state().latency().keys().any(|(f, t)| f.as_str() == "aws-1" && t.as_str() == "gcp-1")
    })
    .await;
    fed.shutdown().await;
    drop((a, b, w.ca));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_claiming_another_cluster_is_rejected() {
    use skybridge_api::proto::wire::{self, gateway_message};

    let w = World::new();
    let fed = w.federator().await;
    let mut client = control_client(&w, "aws-1").await;
    let hello = wire::GatewayMessage {
        msg: Some(gateway_message::Msg::Hello(wire::Hello {
            cluster: "gcp-1".into(),
            cloud: "gcp".into(),
            ..Default::default()
        })),
    };
    let err = client.session(tokio_stream::iter(vec![hello])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("gcp-1") && err.message().contains("aws-1"), "{}", err.message());
    assert!(fed.state().gateways().is_empty(), "nothing registered");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_gateway_identities_of_the_federation_may_open_a_session() {
    use skybridge_api::identity::Role;
    let w = World::new();
    w.write_catalog(&web_service(SocketAddr::from(([127, 0, 0, 1], 9))));
    let fed = w.federator().await;
    until("the catalog is loaded", async || fed.state().catalog().version > 0).await;

    // The federator's own certificate is of the federation's CA, but not a gateway's.
    let as_federator = control_client_as(&w, &w.path("fed"), Role::Federator).await;
    let refused = hello_from(as_federator, "aws-1").await;
    assert!(refused.is_err(), "a federator identity was accepted on the control port");

    // A gateway certificate for aws-1 from another CA with the same trust domain.
    let now = OffsetDateTime::now_utc();
    let other_ca = ca::init(TD, now, 1).unwrap();
    let id = SpiffeId::gateway(TD, ClusterId::new("aws-1").unwrap());
    write_identity(&w.path("rogue"), &ca::issue(&other_ca, &id, &[], now, 1).unwrap(), &w.ca.cert_pem);
    let rogue = control_client_as(&w, &w.path("rogue"), Role::Gateway(ClusterId::new("aws-1").unwrap())).await;
    assert!(hello_from(rogue, "aws-1").await.is_err(), "a certificate of another CA was accepted");
    assert!(fed.state().gateways().is_empty(), "nothing registered: {:?}", fed.state().gateways());

    // The real gateway identity is accepted (so the refusals above are about identity).
    let real = control_client_as(&w, &w.path("aws-1"), Role::Gateway(ClusterId::new("aws-1").unwrap())).await;
    hello_from(real, "aws-1").await.unwrap();
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_that_never_ack_or_never_read_do_not_hold_the_snapshot_slots() {
    let w = World::new();
    // A catalog big enough that a client that reads nothing cannot take in a whole snapshot.
    let bulk: String = (0..3000)
        .map(|i| {
            format!(
                "[[services]]\nnamespace = \"bulk\"\nname = \"s{i}\"\n[[services.exports]]\ncluster = \"gcp-1\"\n\
                 [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"10.9.{0}.{1}:80\", \"10.10.{0}.{1}:80\", \"10.11.{0}.{1}:80\"]\n",
                i / 200,
                i % 200
            )
        })
        .collect();
    w.write_catalog(&bulk);
    // One snapshot slot: without the timeouts, either stuck client below would keep it forever.
    let fed = w
        .federator_with(
            "concurrent_snapshots = 1\ngateway_queue = 2\nsnapshot_ack_timeout = \"300ms\"\nsnapshot_send_timeout = \"1s\"",
        )
        .await;
    until("the catalog is loaded", async || fed.state().catalog().version > 0).await;

    // Reads everything, answers nothing.
    let mut client = control_client(&w, "gcp-1").await;
    let (acks, rx) = tokio::sync::mpsc::channel(4);
    acks.send(hello_message("gcp-1", "never-acks")).await.unwrap();
    let mut stream = client.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} });
    until("the client that never ACKs got a snapshot", async || {
        fed.state().gateways().iter().any(|g| g.record.instance == "never-acks" && g.connected)
    })
    .await;

    // Reads nothing: with 64 KiB HTTP/2 windows it cannot take in the ~0.5 MB snapshot.
    let mut client = small_window_client(&w, "gcp-1").await;
    let (reads, rx) = tokio::sync::mpsc::channel(4);
    reads.send(hello_message("gcp-1", "never-reads")).await.unwrap();
    let never_reads = client.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    until("the client that never reads is connected", async || {
        fed.state().gateways().iter().any(|g| g.record.instance == "never-reads" && g.connected)
    })
    .await;

    // A real gateway still gets the catalog, and the session that never read is closed.
    let started = std::time::Instant::now();
    let a = w.gateway("aws-1", "").await;
    let v = fed.state().catalog().version;
    until("the healthy gateway gets its snapshot", async || routing_version(&a) == format!("federator-{v}")).await;
    eprintln!("snapshot after {:?}", started.elapsed());
    until("the session that never read is closed", async || {
        fed.state().gateways().iter().any(|g| g.record.instance == "never-reads" && !g.connected)
    })
    .await;
    let lagging = http_text(fed.addrs.api, "/metrics").await;
    assert!(
        lagging.lines().any(|l| l.starts_with("skybridge_federator_gateways_lagging_total") && !l.ends_with(" 0")),
        "the closed session is counted as lagging: {lagging}"
    );
    drop((never_reads, reads, acks));
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_gateway_does_not_delay_others_and_is_resnapshotted() {
    use skybridge_api::proto::wire::{self, federator_message, gateway_message};

    let w = World::new();
    let backend = SocketAddr::from(([127, 0, 0, 1], 9));
    // A tiny per-gateway queue so that a client that stops reading fills it quickly.
    let fed = w.federator_with("gateway_queue = 2").await;
    let a = w.gateway("aws-1", "").await;

    // The stuck client: gcp-1's identity, Hello, then it reads nothing.
    let mut client = control_client(&w, "gcp-1").await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello =
        wire::Hello { cluster: "gcp-1".into(), cloud: "gcp".into(), instance: "stuck".into(), ..Default::default() };
    tx.send(wire::GatewayMessage { msg: Some(gateway_message::Msg::Hello(hello)) }).await.unwrap();
    let mut stuck = client.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    until("both connected", async || fed.state().gateways().iter().filter(|g| g.connected).count() == 2).await;

    // Many versions, each with a big enough service list to fill transport buffers: the
    // healthy gateway follows every one of them while the stuck one reads nothing.
    // Every service changes every round (deltas of tens of KB), so what the stuck client does
    // not read fills the transport buffers and then its queue.
    let bulk = |round: u16| -> String {
        (0..1500)
            .map(|i| {
                format!(
                    "[[services]]\nnamespace = \"bulk\"\nname = \"s{i}\"\n[[services.exports]]\ncluster = \"gcp-1\"\n\
                     [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"10.9.{}.{}:{}\"]\n",
                    i / 200,
                    i % 200,
                    1000 + round
                )
            })
            .collect()
    };
    for round in 0..40 {
        w.write_catalog(&bulk(round));
        let v = fed.state().catalog().version;
        until("the change is merged", async || fed.state().catalog().version > v).await;
        let now = fed.state().catalog().version;
        until("the healthy gateway follows", async || routing_version(&a) == format!("federator-{now}")).await;
    }
    let lagging = http_text(fed.addrs.api, "/metrics").await;
    assert!(
        lagging.lines().any(|l| l.starts_with("skybridge_federator_gateways_lagging_total") && !l.ends_with(" 0")),
        "the stuck gateway was detected as lagging: {lagging}"
    );

    // Reading again, the stuck client catches up through a fresh snapshot of the latest version.
    w.write_catalog(&format!("{}{}", web_service(backend), bulk(99)));
    let latest = {
        let before = fed.state().catalog().version;
        until("last change merged", async || fed.state().catalog().version > before).await;
        fed.state().catalog().version
    };
    let mut got_snapshot_at = None;
    while got_snapshot_at.is_none_or(|v| v < latest) {
        let m = tokio::time::timeout(Duration::from_secs(10), stuck.message()).await.unwrap().unwrap().unwrap();
        match m.msg {
            Some(federator_message::Msg::Snapshot(s)) if !s.more => {
                got_snapshot_at = Some(s.version);
                let ack =
                    wire::GatewayMessage { msg: Some(gateway_message::Msg::Ack(wire::Ack { version: s.version })) };
                tx.send(ack).await.unwrap();
            }
            Some(federator_message::Msg::Delta(dl)) if got_snapshot_at.is_some() => {
                got_snapshot_at = Some(dl.to_version)
            }
            _ => {}
        }
    }
    let snapshots = http_text(fed.addrs.api, "/metrics").await;
    let count = snapshots
        .lines()
        .find_map(|l| l.strip_prefix(r#"skybridge_federator_control_messages_total{kind="snapshot"} "#))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap();
    assert!(count >= 3, "aws-1's first, the stuck client's first, and its catch-up snapshot: {count}");
    until("the healthy gateway has the latest too", async || routing_version(&a) == format!("federator-{latest}"))
        .await;
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_is_answered_with_a_fresh_snapshot() {
    use skybridge_api::proto::wire::{self, federator_message, gateway_message};

    let w = World::new();
    w.write_catalog(&web_service(SocketAddr::from(([127, 0, 0, 1], 9))));
    let fed = w.federator().await;
    until("catalog loaded", async || fed.state().catalog().version >= 1).await;
    let mut client = control_client(&w, "gcp-1").await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let hello =
        wire::Hello { cluster: "gcp-1".into(), cloud: "gcp".into(), instance: "nacker".into(), ..Default::default() };
    tx.send(wire::GatewayMessage { msg: Some(gateway_message::Msg::Hello(hello)) }).await.unwrap();
    let mut inbound = client.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut next_whole_snapshot = async || loop {
        let m = tokio::time::timeout(Duration::from_secs(10), inbound.message()).await.unwrap().unwrap().unwrap();
        if let Some(federator_message::Msg::Snapshot(s)) = m.msg
            && !s.more
        {
            return s.version;
        }
    };
    let v = next_whole_snapshot().await;
    let nack = wire::Nack { version: v, reason: "digest mismatch (test)".into() };
    tx.send(wire::GatewayMessage { msg: Some(gateway_message::Msg::Nack(nack)) }).await.unwrap();
    assert_eq!(next_whole_snapshot().await, v, "the NACK is answered with a fresh snapshot of the current version");
    let g = fed.state().gateways().into_iter().find(|g| g.record.instance == "nacker").unwrap();
    assert_eq!((g.nacks, g.last_nack.as_deref()), (1, Some("digest mismatch (test)")));
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_gone_for_the_expiry_is_removed_from_the_embedded_store_too() {
    let w = World::new();
    let fed = w.federator_with_section("gateway_expiry = \"10s\"", "").await;
    let old = w.gateway_named("aws-1", "old-pod", "").await;
    until("old-pod connected", async || fed.state().gateways().iter().any(|g| g.connected)).await;
    old.shutdown().await;
    let new = w.gateway_named("aws-1", "new-pod", "").await;
    let names =
        |f: &fed_app::Running| -> Vec<String> { f.state().gateways().into_iter().map(|g| g.record.instance).collect() };
    until("new-pod connected", async || {
        fed.state().gateways().iter().any(|g| g.connected && g.record.instance == "new-pod")
    })
    .await;
    let gone = std::time::Instant::now();
    for _ in 0..300 {
        if !names(&fed).contains(&"old-pod".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(names(&fed), ["new-pod"], "the old pod's record expired");
    assert!(gone.elapsed() >= Duration::from_secs(8), "not before the expiry: {:?}", gone.elapsed());
    let events = http_text(fed.addrs.api, "/api/v1/events?limit=100").await;
    assert!(events.contains("gateway aws-1/old-pod expired"), "{events}");
    let metrics = http_text(fed.addrs.api, "/metrics").await;
    assert!(metrics.contains("skybridge_federator_gateways_expired_total 1"), "{metrics}");
    // Removed from the store as well: a restart does not bring it back.
    new.shutdown().await;
    fed.shutdown().await;
    let fed = w.federator_with_section("gateway_expiry = \"10s\"", "").await;
    assert_eq!(names(&fed), ["new-pod"]);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_session_ending_does_not_disconnect_the_gateways_new_one() {
    use skybridge_api::proto::wire;
    let w = World::new();
    let fed = w.federator().await;
    let connected = |f: &fed_app::Running| f.state().gateways().iter().filter(|g| g.connected).count();
    // The gateway reconnects while its first stream is still open (a network blip the
    // federator has not noticed yet: it would wait for the HTTP/2 keepalive).
    let (old_tx, old_rx) = tokio::sync::mpsc::channel::<wire::GatewayMessage>(4);
    old_tx.send(hello_message("aws-1", "gw-0")).await.unwrap();
    let mut old_client = control_client(&w, "aws-1").await;
    let old = old_client.session(tokio_stream::wrappers::ReceiverStream::new(old_rx)).await.unwrap();
    until("the first session", async || connected(&fed) == 1).await;
    let (new_tx, new_rx) = tokio::sync::mpsc::channel::<wire::GatewayMessage>(4);
    new_tx.send(hello_message("aws-1", "gw-0")).await.unwrap();
    let mut new_client = control_client(&w, "aws-1").await;
    let _new = new_client.session(tokio_stream::wrappers::ReceiverStream::new(new_rx)).await.unwrap();
    // The old stream ends now.
    drop((old_tx, old));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(connected(&fed), 1, "the gateway is still connected through its new session");
    let disconnected = http_text(fed.addrs.api, "/api/v1/events?limit=100").await;
    assert!(disconnected.contains("gateway aws-1/gw-0 disconnected"), "the old session's end is still an event");
    drop(new_tx);
    until("the new session's end", async || connected(&fed) == 0).await;
    fed.shutdown().await;
}

/// Reads until the peer closes (or `within` passes); whether it closed.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let ended = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    ended.await.is_ok()
}

fn counter(metrics: &str, family: &str, event: &str) -> u64 {
    let prefix = format!("{family}{{event=\"{event}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_on_the_control_port_cannot_lock_gateways_out() {
    let w = World::new();
    let fed = w.federator_with("handshake_timeout = \"3s\"\nmax_control_connections = 3").await;

    // Three sockets that never start TLS fill the listener; a gateway still gets in, taking the
    // slot of the oldest, which is closed long before its handshake timeout.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(w.control).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    hello_from(Ok(control_client(&w, "aws-1").await), "aws-1").await.unwrap();
    assert!(closed_within(&mut silent[0], Duration::from_millis(500)).await, "the oldest silent socket was kept");

    // The handshake timeout closes the others.
    for s in &mut silent[1..] {
        assert!(closed_within(s, Duration::from_secs(5)).await, "a silent socket outlived the handshake timeout");
    }

    // Verified gateways are never evicted: with every slot a gateway, a new socket is closed at
    // once, before any TLS.
    // (The server frees the slot of a closed session a moment after the client sees the end.)
    let held = [
        control_client_soon(&w, "aws-1").await,
        control_client_soon(&w, "gcp-1").await,
        control_client_soon(&w, "aws-1").await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(w.control).await.unwrap();
    assert!(closed_within(&mut over, Duration::from_millis(500)).await, "a socket past the cap stayed open");
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        if hello_from(control_client_as(&w, &w.path("gcp-1"), gateway_role("gcp-1")).await, "gcp-1").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "slots of closed gateway connections were not freed");

    let m = http_text(fed.addrs.api, "/metrics").await;
    let family = "skybridge_federator_control_connections_total";
    assert!(counter(&m, family, "evicted") >= 1, "{m}");
    assert!(counter(&m, family, "max_connections") >= 1, "{m}");
    assert_eq!(counter(&m, family, "handshake_timeout") + counter(&m, family, "evicted"), 3, "{m}");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_gateway_that_sends_nothing_after_the_handshake_is_closed() {
    use skybridge_api::tls::{CertStore, ServerExpectation, TlsFiles};
    let w = World::new();
    // hello_timeout (2 s) is also the first-byte timeout.
    let fed = w.federator().await;
    let d = w.path("aws-1");
    let files = TlsFiles::in_dir(&d);
    let role = skybridge_api::identity::Role::Gateway(ClusterId::new("aws-1").unwrap());
    let certs = CertStore::load(files, TD, role).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        certs.client_config(ServerExpectation::Federator, &[b"h2"]).unwrap(),
    ));
    let name = rustls_pki_types::ServerName::try_from("federator.skybridge").unwrap();
    let mut conn = tls.connect(name, TcpStream::connect(w.control).await.unwrap()).await.unwrap();
    let started = std::time::Instant::now();
    let mut sink = [0u8; 4096];
    let ended = tokio::time::timeout(Duration::from_secs(6), async {
        while let Ok(n) = conn.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a connection that sent no HTTP/2 preface was kept");
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed before the timeout: {:?}", started.elapsed());
    let m = http_text(fed.addrs.api, "/metrics").await;
    assert_eq!(counter(&m, "skybridge_federator_control_connections_total", "first_byte_timeout"), 1, "{m}");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_api_sockets_are_capped_and_timed_out() {
    let w = World::new();
    let fed = w.federator_with("[api]\nmax_connections = 4\nheader_timeout = \"1s\"").await;
    // Silent sockets give their slots to a probe.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(fed.addrs.api).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ok = http_text(fed.addrs.api, "/healthz").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(closed_within(&mut silent[0], Duration::from_millis(500)).await, "the oldest silent socket was kept");
    drop(silent);

    // Sockets that started a request hold the cap: a clear 503, not a hang; and the control port,
    // bounded on its own, still takes a gateway's session.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(fed.addrs.api).await.unwrap();
        s.write_all(b"G").await.unwrap();
        idle.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = http_text(fed.addrs.api, "/healthz").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    hello_from(Ok(control_client(&w, "aws-1").await), "aws-1").await.unwrap();
    for s in &mut idle {
        assert!(closed_within(s, Duration::from_secs(3)).await, "an idle socket outlived the header timeout");
    }
    let ok = http_text(fed.addrs.api, "/healthz").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // The client sees the close a moment before the server counts it.
    let family = "skybridge_federator_api_connections_total";
    let mut m = String::new();
    for _ in 0..20 {
        m = http_text(fed.addrs.api, "/metrics").await;
        if counter(&m, family, "header_timeout") == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counter(&m, family, "header_timeout"), 4, "{m}");
    assert_eq!(counter(&m, family, "max_connections"), 1, "{m}");
    assert!(counter(&m, family, "evicted") >= 1, "{m}");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federators_own_certificate_must_be_valid_and_is_reported_before_it_expires() {
    let w = World::new();
    let now = OffsetDateTime::now_utc();
    let issue = |from: OffsetDateTime, days| {
        let leaf = ca::issue(&w.ca, &SpiffeId::federator(TD), &[], from, days).unwrap();
        write_identity(&w.path("fed"), &leaf, &w.ca.cert_pem);
    };
    // Expired: the federator does not start, and says which file and when.
    issue(now - time::Duration::days(3), 1);
    let d = w.dir.path().display();
    let text = format!(
        "[federator]\ntrust_domain = \"{TD}\"\ndata_dir = \"{d}/data\"\n[tls]\ncert = \"{d}/fed/cert.pem\"\n\
         key = \"{d}/fed/key.pem\"\ntrust_bundle = \"{d}/fed/ca.pem\"\n[listen]\ncontrol = \"{}\"\napi = \"127.0.0.1:0\"\n",
        w.control
    );
    let err = fed_app::start(FedConfig::parse(&text).unwrap()).await.err().expect("an expired certificate was used");
    assert!(err.to_string().contains("expired") && err.to_string().contains("cert.pem"), "{err}");

    // Two days left, inside the default 7-day warning: served, but status and metrics say so.
    issue(now, 2);
    let fed = w.federator().await;
    let status: serde_json::Value =
        serde_json::from_str(http_text(fed.addrs.api, "/api/v1/status").await.split("\r\n\r\n").nth(1).unwrap())
            .unwrap();
    assert_eq!(status["state"], "degraded", "{status}");
    assert!(status["problems"].to_string().contains("certificate expires at"), "{status}");
    let m = http_text(fed.addrs.api, "/metrics").await;
    assert!(m.contains("skybridge_federator_cert_expiring 1\n"), "{m}");
    let replicas = http_text(fed.addrs.api, "/api/v1/federators").await;
    assert!(replicas.contains("\"certificate_expiring\":true"), "{replicas}");
    fed.shutdown().await;
}
