//! The replicated control plane end to end: a real 3-member etcd, federator replicas and
//! gateways as real processes, and what survives when each of them is killed, paused or cut
//! off. The tests run one at a time (they time failovers, and share two cores).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use skybridge_tests::ha::{Federation, Gw, Options, backend, converged};
use skybridge_tests::{eventually, http_status, run};

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

const CLUSTERS: [&str; 2] = ["aws-1", "gcp-1"];

/// `n` services `svc-0..` exported by aws-1, plus `web` served by `web` in gcp-1.
fn services(n: usize, web: std::net::SocketAddr) -> Vec<(String, String, Vec<std::net::SocketAddr>)> {
    let mut v: Vec<_> = (0..n).map(|i| (format!("svc-{i}"), "aws-1".to_owned(), vec![])).collect();
    v.push(("web".into(), "gcp-1".into(), vec![web]));
    v
}

fn head(f: &Federation) -> serde_json::Value {
    f.head()
}

/// The replica a gateway's control stream is on.
fn replica_of(f: &Federation, g: &Gw) -> Option<usize> {
    let addr = g.status()?["federator"]["address"].as_str()?.to_owned();
    f.feds.iter().position(|r| r.control.to_string() == addr)
}

/// Waits up to 30 s for `ok`; on timeout prints every replica's status and log tail, then fails.
fn wait_or_dump(f: &Federation, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        if Instant::now() > deadline {
            for i in 0..f.feds.len() {
                let log = f.fed_log(i);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {}: {:?}", f.feds[i].name, f.api(i, "/api/v1/status"));
                eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SNAPSHOTS: &str = "skybridge_gateway_catalog_updates_total{kind=\"snapshot\"}";

#[test]
fn killing_the_leader_loses_no_change_and_gateways_on_survivors_keep_their_deltas() {
    let _one = serial();
    let web = backend("gcp-1");
    let mut f = Federation::start(Options::default(), &CLUSTERS);
    f.write_catalog(&CLUSTERS, &services(1, web));
    let mut gws: Vec<Gw> = (0..4).map(|i| f.spawn_gateway(CLUSTERS[i % 2], &format!("gw-{i}"))).collect();
    converged(&gws.iter().collect::<Vec<_>>(), 1, Duration::from_secs(30));
    let leader = f.index(&f.leader(&[0, 1, 2]).expect("a leader"));
    // Some gateway must sit on a surviving replica for the delta check to mean anything.
    for attempt in 0..10 {
        if gws.iter().any(|g| replica_of(&f, g).is_some_and(|r| r != leader)) {
            break;
        }
        assert!(attempt < 9, "every gateway keeps landing on the leader");
        gws[0].kill();
        gws[0].start(f.dir.path());
        converged(&gws.iter().collect::<Vec<_>>(), 1, Duration::from_secs(30));
    }
    let on_survivor: Vec<bool> = gws.iter().map(|g| replica_of(&f, g).is_some_and(|r| r != leader)).collect();
    let snapshots: Vec<f64> = gws.iter().map(|g| g.metric(SNAPSHOTS)).collect();

    // A source that keeps changing: one more service every 150 ms.
    let written = Arc::new(AtomicUsize::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop) = (written.clone(), stop.clone());
        let catalog = f.path("catalog.toml");
        let tmp = f.path("catalog.toml.next");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = written.load(Ordering::Relaxed) + 1;
                let mut text: String = CLUSTERS
                    .iter()
                    .map(|c| format!("[[clusters]]\nid = \"{c}\"\ncloud = \"other\"\nregion = \"r\"\n"))
                    .collect();
                for (name, cluster, eps) in services(n, web) {
                    let eps: Vec<String> = eps.iter().map(|e| format!("\"{e}\"")).collect();
                    text += &format!(
                        "[[services]]\nnamespace = \"prod\"\nname = \"{name}\"\n[[services.exports]]\ncluster = \"{cluster}\"\n\
                         [[services.exports.ports]]\nport = 80\nprotocol = \"http\"\nendpoints = [{}]\n",
                        eps.join(", ")
                    );
                }
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, &catalog).unwrap();
                written.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let old = f.feds[leader].name.clone();
    f.signal_fed(leader, "-KILL");
    let killed = Instant::now();
    let took_over = eventually("a new leader to write a catalog version", Duration::from_secs(20), || {
        let h = head(&f);
        (h["leader"].as_str()? != old).then(|| killed.elapsed())
    });
    eprintln!("leader {old} killed: the new leader wrote its first version after {took_over:?}");
    assert!(took_over <= Duration::from_secs(2 + 2), "lease_ttl (2s) + 2 s, took {took_over:?}");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let n = written.load(Ordering::Relaxed);

    // Every change is in the catalog every surviving replica serves, and every gateway routes
    // on that same version.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let version = eventually("survivors to serve every written service", Duration::from_secs(20), || {
        let versions: Vec<u64> = survivors
            .iter()
            .map(|i| {
                let s = f.api(*i, "/api/v1/services")?;
                (s["services"].as_array()?.len() == n + 1).then(|| s["catalog_version"].as_u64())?
            })
            .collect::<Option<_>>()?;
        versions.windows(2).all(|w| w[0] == w[1]).then(|| versions[0])
    });
    let refs: Vec<&Gw> = gws.iter().collect();
    assert_eq!(converged(&refs, version, Duration::from_secs(20)), version);
    for (i, g) in gws.iter().enumerate() {
        let on = replica_of(&f, g).expect("connected");
        assert_ne!(on, leader, "{} is on a live replica", g.instance);
        if on_survivor[i] {
            assert_eq!(g.metric(SNAPSHOTS), snapshots[i], "{} stayed on a survivor: deltas only", g.instance);
        }
    }
    // A request still crosses from aws-1 to gcp-1.
    let client = gws.iter().find(|g| g.cluster == "aws-1").unwrap();
    assert_eq!(
        eventually("a request through aws-1", Duration::from_secs(10), || client.get("web").ok()),
        "hello from gcp-1\n"
    );
}

#[test]
fn a_paused_leader_is_fenced_and_comes_back_as_a_follower() {
    let _one = serial();
    let web = backend("gcp-1");
    let mut f = Federation::start(Options::default(), &CLUSTERS);
    f.write_catalog(&CLUSTERS, &services(1, web));
    let old = f.leader(&[0, 1, 2]).expect("a leader");
    let paused = f.index(&old);
    eventually("the first version", Duration::from_secs(20), || (head(&f)["version"].as_u64()? >= 1).then_some(()));
    let old_term = head(&f)["term"].as_i64().unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != paused).collect();

    f.signal_fed(paused, "-STOP");
    let new =
        eventually("another replica to lead", Duration::from_secs(20), || f.leader(&others).filter(|l| *l != old));
    // The new leader writes; then the catalog changes again while the old one is still paused,
    // so that it has something to write the moment it wakes.
    f.write_catalog(&CLUSTERS, &services(2, web));
    eventually("the new leader's version", Duration::from_secs(20), || {
        let h = head(&f);
        (h["leader"].as_str()? == new && h["term"].as_i64()? > old_term).then_some(())
    });
    let new_term = head(&f)["term"].as_i64().unwrap();
    f.write_catalog(&CLUSTERS, &services(3, web));
    std::thread::sleep(Duration::from_millis(500));
    f.signal_fed(paused, "-CONT");

    // It steps down and follows.
    eventually("the old leader to follow", Duration::from_secs(20), || {
        let v = f.api(paused, "/api/v1/federators")?;
        let me = v["federators"].as_array()?.iter().find(|r| r["this"] == true)?.clone();
        (me["role"] == "follower" && v["leader"].as_str()? == new).then_some(())
    });
    let log = f.fed_log(paused);
    assert!(log.contains("stepping down as leader") || log.contains("fenced"), "{log}");
    // Only the new term ever wrote after the takeover, and every replica serves its catalog.
    std::thread::sleep(Duration::from_secs(1));
    let h = head(&f);
    assert_eq!((h["leader"].as_str(), h["term"].as_i64()), (Some(new.as_str()), Some(new_term)), "{h}");
    eventually("all replicas to serve the 4 services", Duration::from_secs(20), || {
        (0..3)
            .all(|i| f.api(i, "/api/v1/services").is_some_and(|s| s["services"].as_array().map(Vec::len) == Some(4)))
            .then_some(())
    });
    let metrics = skybridge_tests::http_get(f.feds[paused].api, "/metrics").unwrap().1;
    eprintln!(
        "paused leader after resume: {}",
        metrics
            .lines()
            .filter(|l| l.contains("fenced_writes") || l.contains("leader_changes"))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn losing_etcd_members_stops_nothing_until_quorum_goes_and_then_only_writes() {
    let _one = serial();
    let web = backend("gcp-1");
    let mut f = Federation::start(Options { replicas: 2, ..Options::default() }, &CLUSTERS);
    f.write_catalog(&CLUSTERS, &services(1, web));
    let client = f.spawn_gateway("aws-1", "gw-0");
    let server = f.spawn_gateway("gcp-1", "gw-0");
    let v1 = converged(&[&client, &server], 1, Duration::from_secs(30));
    assert_eq!(eventually("a request", Duration::from_secs(15), || client.get("web").ok()), "hello from gcp-1\n");
    // A policy written through either replica is served by both (and reaches the gateways).
    let leader = f.index(&f.leader(&[0, 1]).unwrap());
    let follower = 1 - leader;
    assert_eq!(f.put(follower, "/api/v1/policies/prod/web", r#"{"avoid": ["aws-1"]}"#), Some(200));
    eventually("the policy on the leader", Duration::from_secs(10), || {
        (f.api(leader, "/api/v1/policies/prod/web")?["policy"]["avoid"][0] == "aws-1").then_some(())
    });

    // One member down: changes still flow.
    f.etcd.kill(0);
    f.write_catalog(&CLUSTERS, &services(2, web));
    wait_or_dump(&f, "the change to reach the gateways with one etcd member down", || {
        client.version() > v1 && server.version() > v1
    });
    let v2 = converged(&[&client, &server], v1 + 1, Duration::from_secs(20));
    eventually("both replicas to serve it", Duration::from_secs(20), || {
        (0..2)
            .all(|i| f.api(i, "/api/v1/status").is_some_and(|s| s["catalog_version"].as_u64() == Some(v2)))
            .then_some(())
    });

    // Two down: no quorum. Replicas serve read-only, stay ready and say degraded; traffic flows.
    f.etcd.kill(1);
    for i in 0..2 {
        let s = eventually("a degraded status", Duration::from_secs(20), || {
            f.api(i, "/api/v1/status").filter(|s| s["state"] == "degraded" && s["store"]["state"] == "degraded")
        });
        assert!(s["problems"][0].as_str().unwrap().contains("read-only"), "{s}");
        assert_eq!(http_status(f.feds[i].api, "/readyz"), Some(200));
        assert_eq!(s["catalog_version"].as_u64(), Some(v2));
    }
    eventually("no replica to lead", Duration::from_secs(10), || {
        (0..2)
            .all(|i| {
                f.api(i, "/api/v1/federators").is_some_and(|v| {
                    v["federators"].as_array().unwrap().iter().all(|r| r["this"] != true || r["role"] != "leader")
                })
            })
            .then_some(())
    });
    f.write_catalog(&CLUSTERS, &services(3, web));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(client.version(), v2, "nothing is written without quorum");
    assert_eq!(f.put(0, "/api/v1/policies/prod/web", "{}"), Some(500), "a policy write fails rather than vanish");
    assert_eq!(client.get("web").unwrap(), "hello from gcp-1\n");
    let api = format!("http://{}", f.feds[0].api);
    let out = run(&["check", "--api", &api]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("store is degraded"), "{text}");

    // Quorum back: a leader resumes from what etcd holds and the pending change lands.
    f.etcd.restart(0);
    f.etcd.restart(1);
    f.etcd.wait_healthy(Duration::from_secs(30));
    eventually("a healthy control plane", Duration::from_secs(30), || {
        (0..2)
            .all(|i| f.api(i, "/api/v1/status").is_some_and(|s| s["store"]["state"] == "ok" && !s["leader"].is_null()))
            .then_some(())
    });
    converged(&[&client, &server], v2 + 1, Duration::from_secs(20));
    let services_now = f.api(0, "/api/v1/services").unwrap();
    assert_eq!(services_now["services"].as_array().unwrap().len(), 4);
}

#[test]
fn a_gateway_restarted_while_no_federator_answers_routes_from_its_cache() {
    let _one = serial();
    let web = backend("gcp-1");
    let mut f = Federation::start(Options { etcd_members: 1, replicas: 2, ..Options::default() }, &CLUSTERS);
    f.write_catalog(&CLUSTERS, &services(1, web));
    let mut client = f.spawn_gateway("aws-1", "gw-0");
    let server = f.spawn_gateway("gcp-1", "gw-0");
    let v = converged(&[&client, &server], 1, Duration::from_secs(30));
    assert_eq!(eventually("a request", Duration::from_secs(15), || client.get("web").ok()), "hello from gcp-1\n");
    // The cache is written behind the stream; wait until it holds the version.
    eventually("the cache file", Duration::from_secs(10), || {
        (client.status()?["federator"]["cache"]["version"].as_u64()? == v).then_some(())
    });

    for i in 0..2 {
        f.signal_fed(i, "-KILL");
    }
    client.kill();
    client.start(f.dir.path());
    let st = client.status().unwrap();
    assert!(st["catalog"].as_str().unwrap().starts_with(&format!("cached (version {v}")), "{st}");
    assert_eq!(
        eventually("a request from the cache", Duration::from_secs(15), || client.get("web").ok()),
        "hello from gcp-1\n"
    );
}

#[test]
fn a_rolled_gateway_expires_and_check_passes() {
    let _one = serial();
    let web = backend("gcp-1");
    let f = Federation::start(Options { replicas: 2, gateway_expiry: "10s", ..Options::default() }, &CLUSTERS);
    f.write_catalog(&CLUSTERS, &services(1, web));
    let mut old = f.spawn_gateway("aws-1", "gw-old");
    let server = f.spawn_gateway("gcp-1", "gw-0");
    converged(&[&old, &server], 1, Duration::from_secs(30));
    old.kill();
    let new = f.spawn_gateway("aws-1", "gw-new");
    converged(&[&new, &server], 1, Duration::from_secs(30));
    let gone = Instant::now();
    eventually("the old pod's record to expire", Duration::from_secs(40), || {
        let g = f.api(1, "/api/v1/gateways")?;
        let names: Vec<&str> = g["gateways"].as_array()?.iter().filter_map(|g| g["instance"].as_str()).collect();
        (!names.contains(&"gw-old") && names.contains(&"gw-new")).then_some(())
    });
    assert!(gone.elapsed() >= Duration::from_secs(9), "not before the expiry: {:?}", gone.elapsed());
    let events = f.api(0, "/api/v1/events?limit=1000").unwrap();
    assert!(events.to_string().contains("gateway aws-1/gw-old expired"), "{events}");
    let api = format!("http://{}", f.feds[0].api);
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let out = run(&["check", "--api", &api]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break text;
        }
        assert!(Instant::now() < deadline, "skybridge check keeps failing:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(text.contains("gw-new") && !text.contains("gw-old"), "{text}");
}
