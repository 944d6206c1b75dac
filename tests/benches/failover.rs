//! Failover benchmark: new connections at a fixed rate (default 200/s) from aws-1 to `web.prod`
//! hosted in gcp-1 (20 ms RTT) and azure-1 (60 ms), while the aws-1→gcp-1 link is cut and
//! restored several times; then route changes under ±20 % RTT jitter between two near-equal
//! clouds. Prints medians. Run with `bench/failover.sh` (release build).
//!
//! Environment: `BENCH_RATE` (connections/s, 200), `BENCH_CUTS` (4), `BENCH_JITTER_SECS` (60).

use std::time::{Duration, Instant};

use skybridge_tests::fleet::{Fleet, Layout, Load, Outcome, Record, until};
use skybridge_tests::wan::Impairment;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn show(d: Duration) -> String {
    if d == Duration::MAX { "never".into() } else { format!("{:.0}", ms(d)) }
}

/// One cut's figures.
struct Cut {
    detection: Duration,
    failed: usize,
    opened: usize,
    recovery: Duration,
}

fn analyse(records: &[Record], cut_at: Instant, restored_at: Instant, next: Instant) -> Cut {
    let window: Vec<&Record> = records.iter().filter(|(s, _, _)| *s >= cut_at && *s < next).collect();
    let served = |who: &str| Outcome::Served(who.to_owned());
    let detection = window
        .iter()
        .find(|(_, _, o)| *o == served("azure-1"))
        .map_or(Duration::MAX, |(_, end, _)| end.duration_since(cut_at));
    let failed = window.iter().filter(|(_, _, o)| matches!(o, Outcome::Failed(_))).count();
    // Recovered at the first connection, started after the restore, from which on every one
    // went to gcp-1 (up to half a second before the next cut, which may catch later ones).
    let until = next - Duration::from_millis(500);
    let after: Vec<&&Record> = window.iter().filter(|(s, _, _)| *s >= restored_at && *s < until).collect();
    let recovery = match after.iter().rposition(|(_, _, o)| *o != served("gcp-1")) {
        None => after.first().map(|r| r.0),
        Some(i) => after.get(i + 1).map(|r| r.0),
    }
    .map_or(Duration::MAX, |t| t.duration_since(restored_at));
    Cut { detection, failed, opened: window.len(), recovery }
}

async fn cuts(rate: u64, n: u64) {
    let f = Fleet::start(Layout { aws_gcp: 20, aws_azure: 60, gcp_azure: 80 }).await;
    f.write_catalog(&["gcp-1", "azure-1"]);
    let aws = f.http["aws-1"];
    until("aws-1 routes web.prod to gcp-1", Duration::from_secs(30), async || {
        f.peer_ranked("aws-1", "azure-1").await
            && f.peer_ranked("aws-1", "gcp-1").await
            && skybridge_tests::fleet::request(aws).await == Outcome::Served("gcp-1".into())
    })
    .await;
    let load = Load::start(aws, Duration::from_secs(1) / rate as u32);
    let mut marks = Vec::new();
    for _ in 0..n {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let cut_at = Instant::now();
        f.cut("aws-1", "gcp-1", true);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let restored_at = Instant::now();
        f.cut("aws-1", "gcp-1", false);
        // A cut within a minute of recovering is a relapse: the hold-down doubles each time
        // (1, 2, 4, 8 s), which the recovery column shows. Wait it out before the next cut.
        tokio::time::sleep(Duration::from_secs(20)).await;
        marks.push((cut_at, restored_at));
    }
    let records = load.finish().await;
    let total_failed = records.iter().filter(|(_, _, o)| matches!(o, Outcome::Failed(_))).count();
    println!("## Cut and restore at {rate} new connections/s ({} connections in all)\n", records.len());
    println!("| cut | opened during | failed | detection ms | recovery after restore ms |");
    println!("|---|---|---|---|---|");
    let mut all = Vec::new();
    for (i, (cut_at, restored_at)) in marks.iter().enumerate() {
        let next = marks.get(i + 1).map_or(Instant::now(), |m| m.0);
        let c = analyse(&records, *cut_at, *restored_at, next);
        println!("| {} | {} | {} | {} | {} |", i + 1, c.opened, c.failed, show(c.detection), show(c.recovery));
        all.push(c);
    }
    println!(
        "\nmedian detection {:.0} ms, median recovery {:.0} ms, failed new connections {} of {} (whole run {total_failed})\n",
        median(all.iter().map(|c| ms(c.detection)).collect()),
        median(all.iter().map(|c| ms(c.recovery)).collect()),
        all.iter().map(|c| c.failed).sum::<usize>(),
        all.iter().map(|c| c.opened).sum::<usize>(),
    );
}

async fn jitter(rate: u64, secs: u64) {
    // Two clouds within the sharing margin of each other, both jittered ±20 %.
    let layout = Layout { aws_gcp: 40, aws_azure: 44, gcp_azure: 80 };
    let f = Fleet::start(layout).await;
    for (to, rtt) in [("gcp-1", layout.rtt("aws-1", "gcp-1")), ("azure-1", layout.rtt("aws-1", "azure-1"))] {
        // One-way delay 0.4·RTT plus up to 0.2·RTT each way: RTT within ±20 %.
        let imp = Impairment { delay: rtt.mul_f64(0.4), jitter: rtt.mul_f64(0.2), loss: 0.0 };
        f.link("aws-1", to).set(imp);
    }
    f.write_catalog(&["gcp-1", "azure-1"]);
    let aws = f.http["aws-1"];
    until("aws-1 has measured both", Duration::from_secs(30), async || {
        f.peer_ranked("aws-1", "gcp-1").await && f.peer_ranked("aws-1", "azure-1").await
    })
    .await;
    let load = Load::start(aws, Duration::from_secs(1) / rate as u32);
    let start = Instant::now();
    let (mut changes, mut samples, mut last) = (0u32, 0u32, None::<String>);
    let mut state_changes = 0u32;
    let mut last_states = None::<(String, String)>;
    while start.elapsed() < Duration::from_secs(secs) {
        let s = f.status("aws-1").await;
        let preferred = s["services"]
            .as_array()
            .and_then(|v| v.iter().find(|s| s["name"] == "web.prod.svc.clusterset.local"))
            .and_then(|s| s["preferred"].as_str().map(str::to_owned));
        let states = (f.peer_state("aws-1", "gcp-1").await, f.peer_state("aws-1", "azure-1").await);
        if samples > 0 && preferred != last {
            changes += 1;
        }
        if last_states.as_ref().is_some_and(|l| *l != states) {
            state_changes += 1;
        }
        last = preferred;
        last_states = Some(states);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let records = load.finish().await;
    let outcomes: Vec<Outcome> = records.into_iter().map(|(_, _, o)| o).collect();
    let by = skybridge_tests::fleet::served_by(&outcomes);
    let status = f.status("aws-1").await;
    for p in status["peers"].as_array().into_iter().flatten() {
        println!(
            "- {}: smoothed RTT {:.1} ms, ranking RTT {:.1} ms, QUIC RTT {:.1} ms",
            p["cluster"].as_str().unwrap_or("?"),
            p["rtt_ms"].as_f64().unwrap_or(f64::NAN),
            p["rank_rtt_ms"].as_f64().unwrap_or(f64::NAN),
            p["quic_rtt_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let minutes = secs as f64 / 60.0;
    println!("## ±20 % jitter, gcp-1 40 ms vs azure-1 44 ms, {secs} s at {rate} connections/s\n");
    println!(
        "preferred-cluster changes: {changes} ({:.2}/min); peer health changes: {state_changes}; served: {by:?}\n",
        f64::from(changes) / minutes
    );
}

fn main() {
    let rate = env_or("BENCH_RATE", 200);
    let n = env_or("BENCH_CUTS", 4);
    let secs = env_or("BENCH_JITTER_SECS", 60);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        cuts(rate, n).await;
        jitter(rate, secs).await;
    });
}
