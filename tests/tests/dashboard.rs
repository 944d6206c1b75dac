//! The dashboard in a real browser: a federator with a three-cloud static catalog and three
//! gateways in this process, Debian's headless chromium driven over WebDriver. The page must
//! show what the API says, pick up a catalog change without a reload, and log no errors.
//! Leaves a screenshot at `target/dashboard.png` (and the whole page at
//! `target/dashboard-full.png`) for review.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skybridge_federator::app as fed_app;
use skybridge_federator::config::Config as FedConfig;
use skybridge_gateway::app as gw_app;
use skybridge_gateway::config::Config as GwConfig;
use skybridge_tests::webdriver::{Driver, Session};
use skybridge_tests::{federated_gateway_toml, free_tcp, http_backend, write_identities};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TD: &str = "dashboard.test";
const CLUSTERS: [(&str, &str, &str); 3] =
    [("aws-1", "aws", "us-east-1"), ("gcp-1", "gcp", "europe-west1"), ("azure-1", "azure", "westeurope")];

/// Like the demo: `prod/web` everywhere, `prod/payments` in aws and gcp, `dev/api` only in
/// azure, plus `extra`.
fn catalog(extra: &str) -> String {
    let mut t = String::new();
    for (id, cloud, region) in CLUSTERS {
        t += &format!("[[clusters]]\nid = \"{id}\"\ncloud = \"{cloud}\"\nregion = \"{region}\"\n");
    }
    let service = |ns: &str, name: &str, port: u16, proto: &str, hosts: &[(&str, &str)]| {
        let mut s = format!("[[services]]\nnamespace = \"{ns}\"\nname = \"{name}\"\n");
        for (cluster, endpoints) in hosts {
            s += &format!(
                "[[services.exports]]\ncluster = \"{cluster}\"\n[[services.exports.ports]]\nport = {port}\n\
                 protocol = \"{proto}\"\nendpoints = [{endpoints}]\n"
            );
        }
        s
    };
    t += &service(
        "prod",
        "web",
        80,
        "http",
        &[("aws-1", "\"10.0.0.1:8080\""), ("gcp-1", "\"10.1.0.1:8080\""), ("azure-1", "\"10.2.0.1:8080\"")],
    );
    t += &service(
        "prod",
        "payments",
        443,
        "tls",
        &[("aws-1", "\"10.0.0.2:8443\", \"10.0.0.3:8443\""), ("gcp-1", "\"10.1.0.2:8443\"")],
    );
    t += &service("dev", "api", 8080, "tcp", &[("azure-1", "\"10.2.0.5:8080\"")]);
    t + extra
}

fn write_catalog(dir: &Path, text: &str) {
    let tmp = dir.join("catalog.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join("catalog.toml")).unwrap();
}

/// A federator on `control` whose catalog comes from `d/catalog.toml`, or with no catalog
/// sources at all when `with_source` is false.
async fn federator(d: &Path, control: SocketAddr, with_source: bool) -> fed_app::Running {
    let source = format!(
        "[[sources]]\ntype = \"static\"\nid = \"demo-file\"\npath = \"{}/catalog.toml\"\ninterval = \"200ms\"\n",
        d.display()
    );
    let source = if with_source { source } else { String::new() };
    let d = d.display();
    let text = format!(
        r#"
[federator]
trust_domain = "{TD}"
data_dir = "{d}/data"
merge_interval = "100ms"
[tls]
cert = "{d}/fed/cert.pem"
key = "{d}/fed/key.pem"
trust_bundle = "{d}/fed/ca.pem"
[listen]
control = "{control}"
api = "127.0.0.1:0"
{source}"#
    );
    fed_app::start(FedConfig::parse(&text).unwrap()).await.unwrap()
}

async fn gateway(d: &Path, cluster: &str, control: SocketAddr) -> gw_app::Running {
    // The harness's text ends in the [federator] table: these lines extend it.
    let text = federated_gateway_toml(d, TD, cluster, control, true)
        + &format!(
            "instance = \"{cluster}-gw-0\"\nreport_interval = \"200ms\"\n[routing]\nproof_interval = \"500ms\"\n"
        );
    gw_app::start(GwConfig::parse(&text).unwrap()).await.unwrap()
}

/// `GET path` on the federator's API, as JSON.
async fn api(addr: SocketAddr, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
}

/// Polls `f` until it returns `Some` (within `secs`).
async fn until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        // Tests run from target/<profile>/deps/<test>.
        std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_path_buf()
    })
}

async fn save_png(page: &Session, name: &str) {
    let png = page.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = target_dir().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// A temporary folder with a CA's federator identity in `fed/` and a gateway identity for each
/// of `clusters` in `<cluster>/`.
fn identities(clusters: &[&str]) -> tempfile::TempDir {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_identities(d, TD, clusters);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_api_and_follows_catalog_changes() {
    let dir = identities(&CLUSTERS.map(|c| c.0));
    let d = dir.path();
    // prod/echo has a real backend in gcp-1, for the traffic view; prod/broken's endpoint
    // refuses connections (port 1), for the proofs.
    let echo = format!(
        "[[services]]\nnamespace = \"prod\"\nname = \"echo\"\n[[services.exports]]\ncluster = \"gcp-1\"\n\
         [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"{}\"]\n\
         [[services]]\nnamespace = \"prod\"\nname = \"broken\"\n[[services.exports]]\ncluster = \"gcp-1\"\n\
         [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"127.0.0.1:1\"]\n",
        http_backend("gcp-1").await
    );
    write_catalog(d, &catalog(&echo));
    let control = free_tcp(1)[0];
    let fed = federator(d, control, true).await;
    let mut gateways = Vec::new();
    for (c, _, _) in CLUSTERS {
        gateways.push(gateway(d, c, control).await);
    }
    let base = fed.addrs.api;
    // Every gateway connected and every path measured, so the heatmap is full.
    until("the gateways measure every path", 30, async || {
        let lat = api(base, "/api/v1/latency").await;
        let measured = lat["paths"].as_array().unwrap().iter().filter(|p| p["rtt_ms"].is_number()).count();
        (measured == 6).then_some(())
    })
    .await;

    let driver = Driver::start(&d.join("chromedriver.log")).await;
    let page = driver.session(&d.join("profile")).await;
    let started = Instant::now();
    page.goto(&format!("http://{base}/")).await;

    // Topology: one node per API cluster, under its cloud and region.
    let api_clusters = api(base, "/api/v1/clusters").await;
    let want: BTreeSet<String> =
        api_clusters["clusters"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
    let shown = until("the topology renders", 15, async || {
        let v = page
            .execute(
                "return [...document.querySelectorAll('#topology .cluster[data-cluster]')].map(e => e.dataset.cluster)",
            )
            .await;
        let got: BTreeSet<String> = strings(&v).into_iter().collect();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(shown, want);
    for (id, cloud, region) in CLUSTERS {
        let sel = format!("#topology [data-cloud='{cloud}'] [data-region='{region}'] [data-cluster='{id}']");
        let nodes = page.find_all(&sel).await;
        assert_eq!(nodes.len(), 1, "{sel}");
        assert_eq!(page.attr(&nodes[0], "data-state").await.as_deref(), Some("up"), "{id}");
        assert!(page.text(&nodes[0]).await.contains(&format!("{id}-gw-0")), "{id}'s gateway not shown");
    }

    // Heatmap: a cell per ordered pair; the measured ones are exactly the API's paths.
    let lat = api(base, "/api/v1/latency").await;
    let n = lat["clusters"].as_array().unwrap().len();
    assert_eq!(page.find_all("#heatmap td[data-from][data-to]").await.len(), n * n);
    let api_paths: BTreeSet<(String, String)> = lat["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["from"].as_str().unwrap().to_owned(), p["to"].as_str().unwrap().to_owned()))
        .collect();
    let mut shown_paths = BTreeSet::new();
    for cell in page.find_all("#heatmap td.measured").await {
        let from = page.attr(&cell, "data-from").await.unwrap();
        let to = page.attr(&cell, "data-to").await.unwrap();
        assert!(!page.attr(&cell, "data-rtt").await.unwrap().is_empty(), "{from}→{to} shows no RTT");
        // Every path of this fleet runs on QUIC (the TCP mark is for UDP-blocked paths).
        assert_eq!(page.attr(&cell, "data-transport").await.as_deref(), Some("quic"), "{from}→{to}");
        shown_paths.insert((from, to));
    }
    assert_eq!(shown_paths, api_paths);

    // Services: one row per API service, with the preferred target per source cluster.
    let services = api(base, "/api/v1/services").await;
    let want: Vec<String> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}/{}", s["namespace"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    let rows = page
        .execute("return [...document.querySelectorAll('#services tr[data-service]')].map(e => e.dataset.service)")
        .await;
    assert_eq!(strings(&rows), want);
    let row = &page.find_all("#services tr[data-service='prod/payments']").await[0];
    let text = page.text(row).await;
    assert!(text.contains("aws-1 2/2") && text.contains("gcp-1 1/1") && text.contains("3/3"), "{text}");
    // Routes follow measured RTTs, which gateways report every few seconds: the page and a
    // later API read may straddle a report, so compare until both show the same reports.
    let consistent = until("the page shows the API's preferred routes", 15, async || {
        let routes = api(base, "/api/v1/latency?service=prod/payments").await;
        let mut seen = Vec::new();
        for r in routes["routes"].as_array().unwrap() {
            let from = r["from"].as_str().unwrap();
            let sel = format!("#services tr[data-service='prod/payments'] .route[data-from='{from}']");
            let el = &page.find_all(&sel).await[0];
            let shown = page.attr(el, "data-preferred").await.unwrap();
            seen.push((sel, shown, r["preferred"].as_str().unwrap_or("").to_owned()));
        }
        seen.iter().all(|(_, shown, want)| shown == want).then_some(seen)
    })
    .await;
    for (sel, shown, want) in consistent {
        assert_eq!(shown, want, "{sel}");
    }

    traffic_and_proofs(&page, base, gateways[0].addrs.http.unwrap()).await;

    // Sources and events have content; no error banner.
    assert_eq!(page.find_all("#sources tr[data-source='demo-file'][data-state='ok']").await.len(), 1);
    // The single federator on its embedded store is listed as the leader.
    assert_eq!(page.find_all("#federators tr[data-role='leader']").await.len(), 1);
    assert_eq!(page.execute("return document.getElementById('store-state').dataset.state").await, json!("ok"));
    until("events are listed", 10, async || {
        let v = page.execute("return document.querySelectorAll('#events li[data-seq]').length").await;
        (v.as_u64() > Some(0)).then_some(())
    })
    .await;
    assert_eq!(page.execute("return document.getElementById('banner').hidden").await, json!(true));

    // What-if: tick azure-1 and simulate; dev/api (only in azure) becomes unreachable.
    page.click(&page.find_all("#whatif-clusters input[value='azure-1']").await[0]).await;
    page.click(&page.find_all("#whatif-run").await[0]).await;
    let summary = until("the what-if answers", 10, async || {
        let e = page.find_all("#whatif-summary").await;
        match e.first() {
            Some(e) => Some(page.text(e).await),
            None => None,
        }
    })
    .await;
    assert!(summary.contains("If azure-1 went down"), "{summary}");
    assert!(!page.find_all("#whatif-result tr[data-service='dev/api'].unhealthy").await.is_empty());

    // A catalog change shows up live: the page is not reloaded (the marker survives).
    page.execute("window.__notReloaded = true; return null").await;
    let checkout = "[[services]]\nnamespace = \"prod\"\nname = \"checkout\"\n[[services.exports]]\ncluster = \"gcp-1\"\n\
         [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [\"10.1.0.9:8080\"]\n";
    write_catalog(d, &catalog(&format!("{echo}{checkout}")));
    let changed = Instant::now();
    until("the new service's row appears", 10, async || {
        let n = page.find_all("#services tr[data-service='prod/checkout']").await.len();
        (n == 1).then_some(())
    })
    .await;
    eprintln!("new service shown {:?} after the catalog file changed", changed.elapsed());
    assert_eq!(page.execute("return window.__notReloaded === true").await, json!(true));
    assert_eq!(page.find_all("#services tr[data-service]").await.len(), want.len() + 1);

    // No console errors (CSP violations, failed requests and exceptions are all SEVERE).
    let logs = page.browser_logs().await;
    let severe: Vec<&Value> = logs.iter().filter(|l| l["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "console errors: {severe:#?}");

    // The what-if click scrolled the page; the laptop view starts at the top.
    page.execute("window.scrollTo(0, 0); return null").await;
    save_png(&page, "dashboard.png").await;
    let height = page.execute("return document.documentElement.scrollHeight").await.as_u64().unwrap();
    page.set_window_size(1366, height.max(768) + 100).await;
    save_png(&page, "dashboard-full.png").await;
    eprintln!("browser part took {:?}", started.elapsed());
    // The session closes the browser before its driver is killed.
    drop(page);
    drop(driver);
}

/// Requests from aws-1's clients to prod/echo (in gcp-1): the page shows the API's numbers for
/// the service and for the path; and the proofs, passing and failing, as the API has them.
async fn traffic_and_proofs(page: &Session, base: SocketAddr, aws_http: SocketAddr) {
    for _ in 0..12 {
        let mut s = TcpStream::connect(aws_http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: echo.prod\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
    }
    let (shown, traffic) = until("the page shows the API's traffic for prod/echo", 15, async || {
        let t = api(base, "/api/v1/traffic").await;
        let row = t["services"].as_array()?.iter().find(|s| s["service"] == "prod/echo")?.clone();
        let sel = "#traffic-services tr[data-service='prod/echo']";
        let el = page.find_all(sel).await.into_iter().next()?;
        let shown = page.attr(&el, "data-connections").await?;
        (row["traffic"]["connections"].as_u64().is_some_and(|n| n > 0 && shown == n.to_string()))
            .then_some((shown, row))
    })
    .await;
    assert!(shown.parse::<u64>().unwrap() >= 12, "{shown}");
    let cell = |field: &str| format!("#traffic-services tr[data-service='prod/echo'] td[data-field='{field}']");
    let success = page.text(&page.find_all(&cell("success_ratio")).await[0]).await;
    let want = traffic["traffic"]["success_ratio"].as_f64().map_or("—".to_owned(), |r| format!("{:.1}%", r * 100.0));
    assert_eq!(success, want);
    assert_eq!(page.find_all("#traffic-paths tr[data-path='aws-1>gcp-1'] svg.spark polyline").await.len(), 1);

    // Proofs: prod/echo (a live backend in gcp-1) is proven from aws-1; prod/broken's endpoint
    // refuses, so its proof fails. The page marks each as the API says.
    for (proof, ok) in [("prod/echo:80:aws-1>gcp-1", "true"), ("prod/broken:80:aws-1>gcp-1", "false")] {
        until(&format!("the page shows proof {proof} as ok={ok}"), 20, async || {
            let proofs = api(base, "/api/v1/proofs").await;
            let name = |p: &Value| {
                format!(
                    "{}:{}:{}>{}",
                    p["service"].as_str().unwrap_or(""),
                    p["port"],
                    p["from"].as_str().unwrap_or(""),
                    p["to"].as_str().unwrap_or("")
                )
            };
            let api_ok = proofs["proofs"].as_array()?.iter().find(|p| name(p) == proof)?["ok"].to_string();
            let sel = format!("#proofs tr[data-proof='{proof}'][data-ok='{ok}']");
            (api_ok == ok && page.find_all(&sel).await.len() == 1).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_federation_and_a_lost_api_say_so() {
    let dir = identities(&[]);
    let d = dir.path();
    let fed = federator(d, free_tcp(1)[0], false).await;
    let base = fed.addrs.api;

    let driver = Driver::start(&d.join("chromedriver.log")).await;
    let page = driver.session(&d.join("profile")).await;
    page.goto(&format!("http://{base}/")).await;
    let text_of = async |sel: &str| -> String {
        let found = page.find_all(sel).await;
        match found.first() {
            Some(e) => page.text(e).await,
            None => String::new(),
        }
    };
    // Every view says why it is empty and what to look at, rather than showing nothing.
    until("the empty views render", 15, async || (!text_of("#topology .empty").await.is_empty()).then_some(())).await;
    for (sel, want) in [
        ("#topology .empty", "No clusters in the catalog yet"),
        ("#heatmap .empty", "No clusters yet"),
        ("#services .empty", "No services in the catalog yet"),
        ("#sources .empty", "No catalog sources configured"),
    ] {
        let got = text_of(sel).await;
        assert!(got.contains(want), "{sel}: {got:?}");
    }
    until("the event list says it is empty", 10, async || {
        text_of("#events .empty").await.contains("No events yet").then_some(())
    })
    .await;
    assert!(text_of("#summary").await.contains("0 clusters"), "{}", text_of("#summary").await);
    assert_eq!(page.execute("return document.getElementById('banner').hidden").await, json!(true));
    let logs = page.browser_logs().await;
    let severe: Vec<&Value> = logs.iter().filter(|l| l["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "console errors on an empty federation: {severe:#?}");

    // The federator goes away: the page keeps its last data and says the API is unreachable.
    fed.shutdown().await;
    until("the error banner shows", 15, async || {
        let hidden = page.execute("return document.getElementById('banner').hidden").await;
        (hidden == json!(false)).then_some(())
    })
    .await;
    let banner = text_of("#banner").await;
    assert!(banner.contains("Federator API unreachable or failing") && banner.contains("retrying"), "{banner}");
    assert!(text_of("#topology .empty").await.contains("No clusters"), "the last data stays on screen");
    save_png(&page, "dashboard-error.png").await;
    drop(page);
    drop(driver);
}
