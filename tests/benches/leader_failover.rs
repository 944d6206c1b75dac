//! Leader failover benchmark (issue 13): a 3-member etcd, 3 federator replicas (release
//! binary), a static source changing every 100 ms; kill -9 the leader KILLS times and time each
//! kill until the first catalog version written by the new leader (the catalog head in etcd
//! names the leader that wrote it). The killed replica is restarted before the next kill.
//!
//! Run: `bench/leader-failover.sh`. Env: BENCH_KILLS (10), BENCH_LEASE_TTL (5s, the default).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use skybridge_tests::eventually;
use skybridge_tests::ha::{Federation, Options};

fn main() {
    let kills: usize = std::env::var("BENCH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let ttl = std::env::var("BENCH_LEASE_TTL").unwrap_or_else(|_| "5s".into());
    let clusters = ["aws-1", "gcp-1"];
    let mut f = Federation::start(Options { lease_ttl: ttl.clone(), ..Options::default() }, &clusters);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let (catalog, tmp) = (f.path("catalog.toml"), f.path("catalog.next"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let text = format!(
                    "[[clusters]]\nid = \"aws-1\"\ncloud = \"aws\"\nregion = \"r\"\n[[services]]\nnamespace = \"prod\"\n\
                     name = \"churn\"\n[[services.exports]]\ncluster = \"aws-1\"\n[[services.exports.ports]]\nport = 80\n\
                     protocol = \"http\"\nendpoints = [\"10.0.{}.{}:80\"]\n",
                    n / 250 % 250,
                    n % 250
                );
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, &catalog).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let all: Vec<usize> = (0..3).collect();
    let mut times = Vec::new();
    for k in 0..kills {
        let leader = eventually("a leader writing versions", Duration::from_secs(60), || {
            let name = f.leader(&all)?;
            (f.head()["leader"].as_str()? == name).then_some(name)
        });
        let i = f.index(&leader);
        f.signal_fed(i, "-KILL");
        let killed = Instant::now();
        let took = eventually("the new leader's first version", Duration::from_secs(60), || {
            let h = f.head();
            (h["leader"].as_str()? != leader).then(|| killed.elapsed())
        });
        eprintln!("kill {}: {leader} → first version by {} after {took:?}", k + 1, f.head()["leader"]);
        times.push(took.as_secs_f64() * 1e3);
        f.start_fed(i);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!("leader failover benchmark: 3 etcd members, 3 replicas, lease_ttl = {ttl}, {kills} kills");
    println!("| measure | value |\n|---|---:|");
    println!("| leader kill → first version by the new leader, p50 | {:.0} ms |", sorted[sorted.len() / 2]);
    println!("| max | {:.0} ms |", sorted[sorted.len() - 1]);
    println!("| min | {:.0} ms |", sorted[0]);
    println!("per-kill times (ms): {:?}", times.iter().map(|t| *t as u64).collect::<Vec<_>>());
}
