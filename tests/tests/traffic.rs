//! Traffic accounting end to end: connections through a gateway pair are counted per service,
//! serving cluster and transport; the federator's `/api/v1/traffic` and the gateway's metrics
//! show the same connections and bytes as the clients saw.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use skybridge_federator::app as fed_app;
use skybridge_federator::config::Config as FedConfig;
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::{
    catalog_toml, federated_gateway_toml, federator_toml, free_tcp, get_json, http_backend, metric, write_catalog_file,
    write_identities,
};

const TD: &str = "traffic.example";

/// One request for `web.prod` through `http`: (bytes sent, bytes received, served).
fn request(http: SocketAddr, pad: usize) -> (u64, u64, bool) {
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET /{} HTTP/1.1\r\nHost: web.prod.svc.clusterset.local\r\nConnection: close\r\n\r\n",
        "x".repeat(pad)
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (req.len() as u64, out.len() as u64, out.starts_with(b"HTTP/1.1 200"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_bytes_are_counted_the_same_by_the_gateway_and_the_federator() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_identities(d, TD, &["aws-1", "gcp-1"]);
    let backend = http_backend("gcp-1").await;
    write_catalog_file(d, &catalog_toml(&["aws-1", "gcp-1"], &[("web", "gcp-1", backend)]));
    let control = free_tcp(1)[0];
    let text = federator_toml(d, TD, control, "");
    let fed = fed_app::start(FedConfig::parse(&text).unwrap()).await.unwrap();
    let gw = |c: &str| {
        GwConfig::parse(&(federated_gateway_toml(d, TD, c, control, true) + "report_interval = \"200ms\"\n")).unwrap()
    };
    let aws = gw_app::start(gw("aws-1")).await.unwrap();
    let gcp = gw_app::start(gw("gcp-1")).await.unwrap();
    let http = aws.addrs.http.unwrap();
    let warmed = tokio::task::spawn_blocking(move || {
        for _ in 0..200 {
            if request(http, 0).2 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    assert!(warmed.await.unwrap(), "aws-1 never reached web.prod on gcp-1");

    let api = fed.addrs.api;
    let admin = aws.addrs.admin;
    let web = move || {
        let v = get_json(api, "/api/v1/traffic")?;
        v["services"].as_array()?.iter().find(|s| s["service"] == "prod/web").map(|s| s["traffic"].clone())
    };
    let ok = r#"skybridge_gateway_traffic_connections_total{service="prod/web",cluster="gcp-1",transport="quic",result="ok"}"#;
    let bytes_up = r#"skybridge_gateway_traffic_bytes_total{service="prod/web",cluster="gcp-1",direction="upstream"}"#;
    // The federator has what the gateway counted (a report every 200 ms).
    let agreed = async |want: u64| {
        for _ in 0..100 {
            let t = tokio::task::spawn_blocking(web).await.unwrap();
            if let Some(t) = t.filter(|t| t["connections"] == want) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the federator never counted {want} connections: {:?}", tokio::task::spawn_blocking(web).await.unwrap());
    };
    let gateway_count = move || metric(admin, ok).unwrap_or(0.0) as u64;
    let before = agreed(tokio::task::spawn_blocking(gateway_count).await.unwrap()).await;

    // N more connections of different sizes; what the clients sent and got.
    const N: u64 = 25;
    let (sent, got) = tokio::task::spawn_blocking(move || {
        (0..N as usize).map(|i| request(http, i * 37)).fold((0, 0), |(s, g), (a, b, ok)| {
            assert!(ok);
            (s + a, g + b)
        })
    })
    .await
    .unwrap();
    let n0 = before["connections"].as_u64().unwrap();
    assert_eq!(
        tokio::task::spawn_blocking(gateway_count).await.unwrap(),
        n0 + N,
        "the gateway counted each connection once"
    );
    let after = agreed(n0 + N).await;
    let grew = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert_eq!((grew("bytes_up"), grew("bytes_down")), (sent, got), "bytes as the clients saw them: {after}");
    assert_eq!((grew("failed"), grew("retried")), (0, 0));
    assert!(after["p99_open_ms"].as_u64().is_some() && after["conn_per_s_1m"].as_f64().unwrap() > 0.0, "{after}");
    let up = tokio::task::spawn_blocking(move || metric(admin, bytes_up)).await.unwrap().unwrap() as u64;
    assert_eq!(up, after["bytes_up"].as_u64().unwrap(), "the metrics agree with the API");
    let v = get_json(api, "/api/v1/traffic").unwrap();
    let path = &v["paths"][0];
    assert_eq!(
        (path["from"].as_str(), path["to"].as_str(), path["transport"].as_str()),
        (Some("aws-1"), Some("gcp-1"), Some("quic"))
    );
    assert_eq!(path["traffic"]["connections"], n0 + N);
    aws.shutdown().await;
    gcp.shutdown().await;
    fed.shutdown().await;
}
