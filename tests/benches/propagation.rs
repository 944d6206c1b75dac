//! Control-plane benchmark (issue 3): a catalog of SERVICES services × 10 endpoints × 3
//! clusters; federator RSS; time from one source change until every gateway has applied it
//! (3 real gateways in this process + 50 simulated control clients); delta vs snapshot bytes.
//!
//! Run: `bench/control-plane.sh` (builds the release binary, then
//! `SKYBRIDGE_BIN=target/release/skybridge cargo bench -p skybridge-tests --bench propagation`).
//! Env: BENCH_SERVICES (10000), BENCH_CHANGES (20), BENCH_SIMULATED (50), BENCH_STORE
//! (`embedded`, or `etcd`: 3 replicas on a real 3-member etcd, gateways spread over them, and
//! the etcd bytes written per change).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use skybridge_api::catalog::{GlobalCatalog, diff};
use skybridge_api::identity::Role;
use skybridge_api::model::ClusterId;
use skybridge_api::proto::wire::{self, federator_message, gateway_message};
use skybridge_api::proto::{delta_to_wire, snapshot_to_wire};
use skybridge_api::tls::{CertStore, ServerExpectation, TlsFiles};
use skybridge_federator::catalog::{MergeConfig, SourceInput, merge};
use skybridge_federator::sources::static_file;
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::{Config as GwConfig, FederatorSection};
use skybridge_tests::etcd::Etcd;
use skybridge_tests::{Proc, federated_gateway_toml, free_tcp, wait_ready, write_identities};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const TD: &str = "bench.test";
const CLUSTERS: [&str; 3] = ["aws-1", "gcp-1", "azure-1"];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The static-source file: `services` services exported by every cluster, 10 endpoints each;
/// `bump` changes one endpoint of service 0 (one service changes per step).
fn catalog_text(services: usize, bump: usize) -> String {
    let mut t = String::with_capacity(services * 700);
    for (i, c) in CLUSTERS.iter().enumerate() {
        let _ =
            write!(t, "[[clusters]]\nid = \"{c}\"\ncloud = \"{}\"\nregion = \"r{i}\"\n", ["aws", "gcp", "azure"][i]);
    }
    for s in 0..services {
        let _ = write!(t, "[[services]]\nnamespace = \"prod\"\nname = \"svc-{s}\"\n");
        for (ci, c) in CLUSTERS.iter().enumerate() {
            let _ = write!(
                t,
                "[[services.exports]]\ncluster = \"{c}\"\nexported_at = 1\n[[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = ["
            );
            for e in 0..10 {
                let port = if s == 0 && ci == 0 && e == 0 { 20000 + bump } else { 8000 + e };
                let _ = write!(t, "\"10.{ci}.{}.{}:{port}\",", s / 250, s % 250);
            }
            t.push_str("]\n");
        }
    }
    t
}

/// The same catalog as JSON, the form the static source parses without a document tree.
fn catalog_json(services: usize, bump: usize) -> String {
    let mut t = String::with_capacity(services * 600);
    t.push_str("{\"clusters\": [");
    for (i, c) in CLUSTERS.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ =
            write!(t, "{sep}{{\"id\": \"{c}\", \"cloud\": \"{}\", \"region\": \"r{i}\"}}", ["aws", "gcp", "azure"][i]);
    }
    t.push_str("],\n\"services\": [");
    for s in 0..services {
        let sep = if s == 0 { "" } else { ",\n" };
        let _ = write!(t, "{sep}{{\"namespace\": \"prod\", \"name\": \"svc-{s}\", \"exports\": [");
        for (ci, c) in CLUSTERS.iter().enumerate() {
            let sep = if ci == 0 { "" } else { "," };
            let _ = write!(
                t,
                "{sep}{{\"cluster\": \"{c}\", \"exported_at\": 1, \"ports\": [{{\"port\": 80, \"protocol\": \"http\", \"endpoints\": ["
            );
            for e in 0..10 {
                let port = if s == 0 && ci == 0 && e == 0 { 20000 + bump } else { 8000 + e };
                let sep = if e == 0 { "" } else { "," };
                let _ = write!(t, "{sep}\"10.{ci}.{}.{}:{port}\"", s / 250, s % 250);
            }
            t.push_str("]}]}");
        }
        t.push_str("]}");
    }
    t.push_str("]}\n");
    t
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("rss: anon {} file {} shmem {} KiB", field("RssAnon:"), field("RssFile:"), field("RssShmem:"));
    }
    (field("VmRSS:"), field("VmHWM:"))
}

fn http_get(api: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metrics_text(api: SocketAddr) -> String {
    http_get(api, "/metrics")
}

/// Whether the replicas have recorded an ACK of `version` (or later) from `n` connected
/// gateways, each counted by the replica holding its session.
fn all_acked(feds: &[Fed], version: u64, n: usize) -> bool {
    let mut acked = 0;
    for f in feds {
        let text = http_get(f.api, "/api/v1/gateways");
        let Some(body) = text.split("\r\n\r\n").nth(1) else { return false };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else { return false };
        acked += v["gateways"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| {
                g["connected"].as_bool() == Some(true)
                    && g["federator"].as_str().is_none_or(|r| r == f.name)
                    && g["acked_version"].as_u64().is_some_and(|a| a >= version)
            })
            .count();
    }
    acked >= n
}

/// One federator replica process.
struct Fed {
    name: String,
    control: SocketAddr,
    api: SocketAddr,
    proc: Proc,
}

/// A counter or gauge from a Prometheus text page (the sum over its label sets).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A control client that only ACKs: stands in for a gateway without its data plane.
async fn simulated(control: SocketAddr, dir: std::path::PathBuf, cluster: String, applied: Arc<AtomicU64>) {
    let files = TlsFiles::in_dir(&dir);
    let certs = CertStore::load(files, TD, Role::Gateway(ClusterId::new(&cluster).unwrap())).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(
        certs.client_config(ServerExpectation::Federator, &[b"h2"]).unwrap(),
    ));
    let section: FederatorSection = toml::from_str(&format!("address = \"{control}\"")).unwrap();
    let channel = skybridge_gateway::federation::connect(&section, &tls).await.unwrap();
    let mut client =
        wire::control_client::ControlClient::new(channel).max_decoding_message_size(section.max_message_size);
    let (tx, rx) = mpsc::channel(16);
    let hello =
        wire::Hello { cluster: cluster.clone(), cloud: "other".into(), instance: "sim".into(), ..Default::default() };
    tx.send(wire::GatewayMessage { msg: Some(gateway_message::Msg::Hello(hello)) }).await.unwrap();
    let mut inbound = client.session(ReceiverStream::new(rx)).await.unwrap().into_inner();
    while let Ok(Some(m)) = inbound.message().await {
        let version = match m.msg {
            Some(federator_message::Msg::Snapshot(s)) if s.more => continue,
            Some(federator_message::Msg::Snapshot(s)) => s.version,
            Some(federator_message::Msg::Delta(d)) => d.to_version,
            None => continue,
        };
        applied.store(version, Ordering::Release);
        let ack = wire::GatewayMessage { msg: Some(gateway_message::Msg::Ack(wire::Ack { version })) };
        if tx.send(ack).await.is_err() {
            return;
        }
    }
}

fn gateway_version(g: &gw_app::Running) -> u64 {
    g.context().catalog.load().version.strip_prefix("federator-").and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let services = env("BENCH_SERVICES", 10_000);
    let changes = env("BENCH_CHANGES", 20);
    let sims = env("BENCH_SIMULATED", 50);
    let snapshots = env("BENCH_CONCURRENT_SNAPSHOTS", 4);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gw_names: Vec<String> =
        CLUSTERS.iter().map(|s| s.to_string()).chain((0..sims).map(|i| format!("sim-{i}"))).collect();
    write_identities(d, TD, &gw_names.iter().map(String::as_str).collect::<Vec<_>>());

    // Offline: parse and merge time and message sizes for this catalog.
    let toml_text = catalog_text(services, 0);
    let t = Instant::now();
    let snap = static_file::parse(&toml_text).unwrap();
    let parse_ms = t.elapsed().as_secs_f64() * 1e3;
    // The federator reads JSON unless BENCH_FORMAT=toml (TOML's document tree costs ~20x the
    // file's size in transient memory, which shows in the peak RSS).
    let toml = std::env::var("BENCH_FORMAT").is_ok_and(|f| f == "toml");
    let (file_name, render): (&str, fn(usize, usize) -> String) =
        if toml { ("catalog.toml", catalog_text) } else { ("catalog.json", catalog_json) };
    let json_text = catalog_json(services, 0);
    let t = Instant::now();
    let from_json = static_file::parse_json(&json_text).unwrap();
    let json_parse_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(from_json, snap, "the JSON and TOML renderings describe one catalog");
    let text = if toml { toml_text.clone() } else { json_text };
    let input = |s| {
        [(
            "static".to_owned(),
            SourceInput {
                snapshot: Arc::new(s),
                synced_at: 1,
                failing_since: None,
                failing_clusters: Default::default(),
            },
        )]
        .into_iter()
        .collect()
    };
    let cfg = MergeConfig { stale_timeout_ms: None };
    let t = Instant::now();
    let c1 = merge(&GlobalCatalog::default(), &input(snap), 1, &cfg);
    let merge_ms = t.elapsed().as_secs_f64() * 1e3;
    let c2 = merge(&c1, &input(static_file::parse(&catalog_text(services, 1)).unwrap()), 2, &cfg);
    let snapshot_bytes = snapshot_to_wire(&c2, vec![], vec![]).encoded_len();
    let delta_bytes = delta_to_wire(&diff(&c1, &c2), None, None).encoded_len();

    // The federator as its own process, or three replicas on a real etcd.
    std::fs::write(d.join(file_name), &text).unwrap();
    let replicated = std::env::var("BENCH_STORE").is_ok_and(|s| s == "etcd");
    let etcd = replicated.then(|| Etcd::start(3));
    let store = match &etcd {
        Some(e) => format!("[store]\nbackend = \"etcd\"\nendpoints = {}\nlease_ttl = \"5s\"\n", e.endpoints_toml()),
        None => format!("[federator]\ndata_dir = \"{}/data\"\n", d.display()),
    };
    let mut feds: Vec<Fed> = Vec::new();
    for i in 0..if replicated { 3 } else { 1 } {
        let (control, api) = {
            let p = free_tcp(2);
            (p[0], p[1])
        };
        let name = format!("fed-{i}");
        // `[federator]` may appear once: the embedded store's data_dir joins it from `store`.
        let (fed_extra, store_section) = match store.strip_prefix("[federator]\n") {
            Some(data_dir) => (data_dir.to_owned(), String::new()),
            None => (String::new(), store.clone()),
        };
        let fed_cfg = format!(
            "[federator]\ntrust_domain = \"{TD}\"\nname = \"{name}\"\nmerge_interval = \"1s\"\n{fed_extra}\
             [tls]\ncert = \"{0}/fed/cert.pem\"\nkey = \"{0}/fed/key.pem\"\ntrust_bundle = \"{0}/fed/ca.pem\"\n\
             [listen]\ncontrol = \"{control}\"\napi = \"{api}\"\n[limits]\nconcurrent_snapshots = {snapshots}\n{store_section}\
             [[sources]]\ntype = \"static\"\nid = \"static\"\npath = \"{0}/{file_name}\"\ninterval = \"20ms\"\n",
            d.display(),
        );
        let path = d.join(format!("{name}.toml"));
        std::fs::write(&path, fed_cfg).unwrap();
        let proc = Proc::spawn(&["federator", "--config", path.to_str().unwrap()], d.join(format!("{name}.log")));
        assert!(wait_ready(api, Duration::from_secs(60)), "{name} not ready:\n{}", proc.log_text());
        feds.push(Fed { name, control, api, proc });
    }
    let api = feds[0].api;

    // Three real gateways and the simulated clients, spread over the replicas.
    let mut gateways = Vec::new();
    for (i, c) in CLUSTERS.iter().enumerate() {
        let text = federated_gateway_toml(d, TD, c, feds[i % feds.len()].control, false);
        gateways.push(gw_app::start(GwConfig::parse(&text).unwrap()).await.unwrap());
    }
    let applied: Vec<Arc<AtomicU64>> = (0..sims).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (i, a) in applied.iter().enumerate() {
        let name = format!("sim-{i}");
        tokio::spawn(simulated(feds[(i + CLUSTERS.len()) % feds.len()].control, d.join(&name), name, a.clone()));
    }
    let all_at = |v: u64| {
        gateways.iter().all(|g| gateway_version(g) >= v) && applied.iter().all(|a| a.load(Ordering::Acquire) >= v)
    };
    // The first version with the whole catalog (clients were started right after the federator
    // became ready, so this includes the federator's first sync and every snapshot).
    let t = Instant::now();
    let first = loop {
        let m = metrics_text(api);
        let field =
            |name: &str| m.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
        if field("skybridge_federator_catalog_services ") == Some(services as u64) {
            break field("skybridge_federator_catalog_version ").unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(120), "federator did not load the catalog");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    while !all_at(first) {
        assert!(t.elapsed() < Duration::from_secs(120), "initial sync did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let initial_s = t.elapsed().as_secs_f64();
    let rss_synced: Vec<u64> = feds.iter().map(|f| rss_kib(f.proc.child.id()).0).collect();
    let etcd_before = etcd.as_ref().map(|e| http_get(e.members[0].client, "/metrics"));

    // One service changes per step; time until every gateway applied the new version.
    let mut times = Vec::new();
    let mut ack_times = Vec::new();
    let mut version = first;
    for step in 1..=changes {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tmp = d.join("catalog.tmp");
        std::fs::write(&tmp, render(services, step)).unwrap();
        let start = Instant::now();
        std::fs::rename(&tmp, d.join(file_name)).unwrap();
        version += 1;
        while !all_at(version) {
            if start.elapsed() > Duration::from_secs(60) {
                let versions: Vec<u64> = gateways.iter().map(gateway_version).collect();
                let sims: Vec<u64> = applied.iter().map(|a| a.load(Ordering::Acquire)).collect();
                panic!(
                    "change {step} (to version {version}) did not propagate: gateways at {versions:?}, simulated at {sims:?}\nfederator log:\n{}",
                    feds[0].proc.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
        // The measure: until the federator has every gateway's ACK of the version.
        while !all_acked(&feds, version, CLUSTERS.len() + sims) {
            assert!(start.elapsed() < Duration::from_secs(60), "ACKs of version {version} did not arrive");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ack_times.push(start.elapsed().as_secs_f64() * 1e3);
        if std::env::var_os("BENCH_DEBUG").is_some() {
            let fed_version = metrics_text(api)
                .lines()
                .find_map(|l| l.strip_prefix("skybridge_federator_catalog_version ").map(str::to_owned));
            eprintln!(
                "step {step}: expected {version}, federator {fed_version:?}, gateways {:?}",
                gateways.iter().map(gateway_version).collect::<Vec<_>>()
            );
        }
    }
    let in_order = times.clone();
    times.sort_by(f64::total_cmp);
    ack_times.sort_by(f64::total_cmp);
    let rss: Vec<(u64, u64)> = feds.iter().map(|f| rss_kib(f.proc.child.id())).collect();
    let etcd_after = etcd.as_ref().map(|e| http_get(e.members[0].client, "/metrics"));
    let metrics = metrics_text(api);
    let counters: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("skybridge_federator_control_messages_total")
                || l.starts_with("skybridge_federator_gateways_lagging_total")
                || l.starts_with("skybridge_federator_merge_seconds_sum")
                || l.starts_with("skybridge_federator_merge_seconds_count")
        })
        .collect();
    for f in &mut feds {
        f.proc.terminate();
        let _ = f.proc.wait_exit(Duration::from_secs(10));
    }

    let store_name = if replicated { "etcd, 3 replicas" } else { "embedded, 1 federator" };
    println!(
        "control-plane benchmark: {services} services x 10 endpoints x {} clusters, store: {store_name}",
        CLUSTERS.len()
    );
    println!("| measure | value |\n|---|---:|");
    println!(
        "| static file parse: {:.1} MB TOML / JSON | {parse_ms:.0} / {json_parse_ms:.0} ms |",
        toml_text.len() as f64 / 1e6
    );
    println!("| file the federator reads | {file_name} ({:.1} MB) |", text.len() as f64 / 1e6);
    println!("| full merge | {merge_ms:.0} ms |");
    println!("| snapshot (protobuf) | {:.2} MB |", snapshot_bytes as f64 / 1e6);
    println!("| delta, one service changed | {delta_bytes} bytes |");
    println!(
        "| initial sync of {} gateways ({} real + {sims} simulated) | {initial_s:.2} s |",
        CLUSTERS.len() + sims,
        CLUSTERS.len()
    );
    println!("| propagation, source change to all applied, p50 ({changes} changes) | {:.0} ms |", pct(&times, 0.5));
    println!("| propagation p99 | {:.0} ms |", pct(&times, 0.99));
    println!(
        "| source change to every ACK recorded by the federator, p50 / p99 | {:.0} / {:.0} ms |",
        pct(&ack_times, 0.5),
        pct(&ack_times, 0.99)
    );
    for (i, f) in feds.iter().enumerate() {
        println!(
            "| {} RSS after sync / at end / peak | {} / {} / {} MB |",
            f.name,
            rss_synced[i] / 1024,
            rss[i].0 / 1024,
            rss[i].1 / 1024
        );
    }
    if let (Some(before), Some(after)) = (&etcd_before, &etcd_after) {
        let per = |name: &str| (metric(after, name) - metric(before, name)) / changes as f64;
        println!(
            "| etcd per one-service change (member 0, all writes incl. presence and events): puts / put bytes / WAL bytes | {:.1} / {:.0} / {:.0} |",
            per("etcd_mvcc_put_total"),
            per("etcd_debugging_mvcc_total_put_size_in_bytes"),
            per("etcd_disk_wal_write_bytes_total")
        );
    }
    println!("(the static source is polled every 20 ms: that detection delay is included)");
    println!("per-change times (ms): {:?}", in_order.iter().map(|t| *t as u64).collect::<Vec<_>>());
    println!("federator counters: {counters:?}");
}
