//! Path health changes become events: cut a link in the WAN relay while clients use it, and the
//! federator has a `path_down` event for that path moments after the gateway marks it down (a
//! report goes out at once, not at the next report interval); restore it and `path_recovered`
//! follows. The gateway's verdict itself comes from its probes (`routing.probe_interval` ×
//! `down_after`: 1.5-2.5 s with the defaults; slow opens are abandoned for another cluster
//! without marking the path down).

use std::time::{Duration, Instant};

use skybridge_tests::fleet::{Fleet, Layout, Load, Outcome, http, request};

const LAYOUT: Layout = Layout { aws_gcp: 10, aws_azure: 20, gcp_azure: 30 };

/// The federator's events of `kind` whose message names the path aws-1 → gcp-1.
async fn path_events(f: &Fleet, kind: &str) -> Vec<serde_json::Value> {
    let text = http(f.api, "GET", "/api/v1/events?limit=1000", "").await;
    let body: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").map_or("", |(_, b)| b)).unwrap_or_default();
    body["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["kind"] == kind && e["message"].as_str().is_some_and(|m| m.contains("aws-1 → gcp-1")))
        .collect()
}

async fn within(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_is_a_path_down_event_and_its_repair_a_path_recovered_one() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let f = Fleet::start(LAYOUT).await;
    // web.prod only in gcp-1 (nearest to aws-1) and azure-1: aws-1's clients use the path.
    f.write_catalog(&["gcp-1", "azure-1"]);
    let aws = f.http["aws-1"];
    within("aws-1's clients are served by gcp-1", Duration::from_secs(30), async || {
        request(aws).await == Outcome::Served("gcp-1".into())
    })
    .await;
    assert!(path_events(&f, "path_down").await.is_empty(), "no path is down before the cut");
    let load = Load::start(aws, Duration::from_millis(50));

    f.cut("aws-1", "gcp-1", true);
    // When aws-1 itself marks the path down, and when the federator has the event.
    let cut = Instant::now();
    let (mut gateway_down, mut event) = (None, None);
    while event.is_none() && cut.elapsed() < Duration::from_secs(10) {
        if gateway_down.is_none() && f.peer_state("aws-1", "gcp-1").await == "down" {
            gateway_down = Some(cut.elapsed());
        }
        if !path_events(&f, "path_down").await.is_empty() {
            event = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let event = event.expect("a path_down event for aws-1 → gcp-1 within 10 s of the cut");
    let gateway_down = gateway_down.unwrap_or(event);
    eprintln!("after the cut: aws-1 marked gcp-1 down at {gateway_down:?}, the federator's event at {event:?}");
    // The event trails the gateway's own verdict by one immediate report, not a report interval
    // (500 ms here); the verdict itself takes probe_interval x down_after with the defaults.
    assert!(event.saturating_sub(gateway_down) < Duration::from_millis(450), "{gateway_down:?} -> {event:?}");
    assert!(event < Duration::from_secs(4), "{event:?}");
    assert_eq!(path_events(&f, "path_down").await.len(), 1, "one event per change, not per report");

    f.cut("aws-1", "gcp-1", false);
    within("a path_recovered event for aws-1 → gcp-1", Duration::from_secs(15), async || {
        !path_events(&f, "path_recovered").await.is_empty()
    })
    .await;
    let served = load.finish().await.len();
    assert!(served > 10, "the load ran ({served} connections)");
    // Steady again: further reports make no more events.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(path_events(&f, "path_down").await.len(), 1);
    assert_eq!(path_events(&f, "path_recovered").await.len(), 1);
}
