//! Latency-aware failover end to end: a federator and three gateway processes whose tunnels run
//! through the userspace WAN relay (aws↔gcp 20 ms RTT, aws↔azure 60 ms, gcp↔azure 80 ms), and
//! clients at aws-1 opening new connections at a steady rate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use skybridge_tests::fleet::{self, Fleet, Layout, Load, Outcome, burst, request, served_by, until};

const LAYOUT: Layout = Layout { aws_gcp: 20, aws_azure: 60, gcp_azure: 80 };

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nearest_healthy_copy_with_failover_restore_and_weights() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let f = Fleet::start(LAYOUT).await;
    let aws = f.http["aws-1"];
    until("aws-1 has measured both peers", Duration::from_secs(30), async || {
        f.peer_ranked("aws-1", "gcp-1").await && f.peer_ranked("aws-1", "azure-1").await
    })
    .await;
    until("aws-1 routes web.prod", Duration::from_secs(30), async || {
        request(aws).await == Outcome::Served("aws-1".into())
    })
    .await;

    // Local first.
    let got = served_by(&burst(aws, 50, 5).await);
    assert_eq!(got, BTreeMap::from([("aws-1".to_owned(), 50)]), "a hosted service stays local");

    // Without the local copy: the lower-latency remote (gcp-1, 20 ms) takes it all.
    f.write_catalog(&["gcp-1", "azure-1"]);
    until("the aws copy is gone", Duration::from_secs(10), async || {
        request(aws).await != Outcome::Served("aws-1".into())
    })
    .await;
    let got = served_by(&burst(aws, 100, 5).await);
    assert_eq!(got, BTreeMap::from([("gcp-1".to_owned(), 100)]), "the nearest remote, 20 ms vs 60 ms");

    // The federator, from the gateways' reports, predicts the same, and what a gcp-1 outage
    // would do; the CLI shows it.
    let route = async |path: &str| -> serde_json::Value {
        let text = fleet::http(f.api, "GET", path, "").await;
        serde_json::from_str(text.split_once("\r\n\r\n").map_or("", |(_, b)| b)).unwrap_or_default()
    };
    until("the federator's latency view prefers gcp-1 from aws-1", Duration::from_secs(10), async || {
        let v = route("/api/v1/latency?service=prod/web&from=aws-1").await;
        v["routes"][0]["preferred"] == "gcp-1"
            && v["routes"][0]["expected_rtt_ms"].as_f64().is_some_and(|ms| ms >= 15.0)
    })
    .await;
    let v = route("/api/v1/whatif?down=gcp-1&service=prod/web&from=aws-1").await;
    assert_eq!(v["routes"][0]["after"]["preferred"], "azure-1", "{v}");
    let out = skybridge_tests::run(&["whatif", "--api", &format!("http://{}", f.api), "--down", "gcp-1"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("prod/web") && table.contains("azure-1"), "{table}");

    // Cut gcp-1 off under 100 new connections/s: new connections move to azure-1, none fail.
    let load = Load::start(aws, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut_at = Instant::now();
    f.cut("aws-1", "gcp-1", true);
    let down_after = until("aws-1 sees gcp-1 down", Duration::from_secs(5), async || {
        matches!(f.peer_state("aws-1", "gcp-1").await.as_str(), "down" | "suspect")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restored_at = Instant::now();
    f.cut("aws-1", "gcp-1", false);
    let back_after = until("traffic returns to gcp-1", Duration::from_secs(20), async || {
        let r = load.results.lock().unwrap();
        r.iter().rev().take(5).filter(|(s, _, o)| *s > restored_at && *o == Outcome::Served("gcp-1".into())).count()
            == 5
    })
    .await;
    let results = load.finish().await;

    let started_after_cut: Vec<_> = results.iter().filter(|(s, _, _)| *s >= cut_at).collect();
    let failed: Vec<_> = started_after_cut.iter().filter(|(_, _, o)| matches!(o, Outcome::Failed(_))).collect();
    assert!(failed.is_empty(), "{} of {} new connections failed: {failed:?}", failed.len(), started_after_cut.len());
    // Detection: the first connection opened after the cut that azure-1 served, and how long
    // it took end to end (a slow open on gcp-1, then the retry).
    let first_moved = started_after_cut
        .iter()
        .find(|(_, _, o)| *o == Outcome::Served("azure-1".into()))
        .expect("some connection went to azure-1 during the cut");
    let detection = first_moved.1.duration_since(cut_at);
    assert!(detection <= Duration::from_secs(1), "first connection served elsewhere {detection:?} after the cut");
    assert!(down_after <= Duration::from_millis(1500), "status showed gcp-1 unhealthy only after {down_after:?}");
    let during_cut = started_after_cut
        .iter()
        .filter(|(s, _, _)| *s > first_moved.0 && *s < restored_at)
        .filter(|(_, _, o)| *o != Outcome::Served("azure-1".into()))
        .count();
    assert_eq!(during_cut, 0, "after detection every new connection went to azure-1 until the restore");
    // Hysteresis: gcp-1 needs consecutive good probes (3 at 1 s) before it takes traffic again.
    assert!(
        back_after >= Duration::from_millis(1500) && back_after <= Duration::from_secs(15),
        "traffic returned {back_after:?} after the restore"
    );

    // Weights: 70/30 across gcp-1 and azure-1 over 1,000 connections, within ±6 points.
    f.put_policy(r#"{"weights": {"gcp-1": 70, "azure-1": 30}}"#).await;
    until("aws-1 holds the policy", Duration::from_secs(10), async || {
        let s = f.status("aws-1").await;
        s["services"].as_array().is_some_and(|v| v.iter().any(|s| s["policy"]["weights"]["gcp-1"] == 70))
    })
    .await;
    let got = served_by(&burst(aws, 1000, 20).await);
    eprintln!(
        "cut: {} new connections, first served elsewhere after {detection:?}, status unhealthy after {down_after:?}, \
         back {back_after:?} after the restore; weights 70/30 gave {got:?}",
        started_after_cut.len()
    );
    let (gcp, azure) = (got.get("gcp-1").copied().unwrap_or(0), got.get("azure-1").copied().unwrap_or(0));
    assert_eq!(gcp + azure, 1000, "{got:?}");
    assert!((640..=760).contains(&gcp), "gcp-1 took {gcp} of 1000 with weight 70: {got:?}");

    // The weighted split still fails over: gcp-1 cut, everything goes to azure-1.
    f.cut("aws-1", "gcp-1", true);
    let load = Load::start(aws, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let results = load.finish().await;
    let outcomes: Vec<Outcome> = results.into_iter().map(|(_, _, o)| o).collect();
    let got = served_by(&outcomes);
    assert!(got.keys().all(|k| k == "azure-1"), "{got:?}");
    f.cut("aws-1", "gcp-1", false);
}
