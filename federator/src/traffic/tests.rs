use super::*;

fn entry(service: &str, cluster: &str, transport: &str) -> Entry {
    Entry { service: service.into(), cluster: cluster.into(), transport: transport.into() }
}

fn served(ok: u64, bytes: u64, fast: u64) -> Counters {
    let mut open_buckets = vec![0; 11];
    open_buckets[2] = fast;
    open_buckets[6] = ok - fast;
    Counters { ok, failed: 0, retried: 1, bytes_up: bytes, bytes_down: 2 * bytes, open_buckets }
}

fn gw(c: &str, i: &str) -> (ClusterId, String) {
    (ClusterId::new(c).unwrap(), i.into())
}

#[test]
fn totals_rates_and_history_per_service_and_path() {
    let mut log = TrafficLog::default();
    let t0 = 1_000_000_000;
    // aws-1 (two instances) sends prod/web to gcp-1; one connection found no cluster.
    for (i, (at, ok)) in [(t0, 0), (t0 + 60_000, 600), (t0 + 120_000, 1200)].into_iter().enumerate() {
        let mut e = BTreeMap::from([(entry("prod/web", "gcp-1", "quic"), served(ok.max(1), ok * 10, ok / 2))]);
        if i == 2 {
            e.insert(entry("prod/web", "none", "none"), Counters { failed: 4, ..Counters::default() });
        }
        log.record(gw("aws-1", "a"), 7, at, e);
    }
    log.record(
        gw("aws-1", "b"),
        9,
        t0 + 120_000,
        BTreeMap::from([(entry("prod/web", "gcp-1", "quic"), served(100, 0, 100))]),
    );
    let v = log.view(t0 + 120_000);
    let web = &v.services.iter().find(|s| s.service == "prod/web").unwrap().traffic;
    assert_eq!((web.connections, web.failed, web.retried), (1300, 4, 2));
    assert_eq!(web.bytes_up, 12_000);
    assert!((web.conn_per_s_1m - 10.0).abs() < 1e-9, "600 more in the last 60 s: {}", web.conn_per_s_1m);
    assert!((web.bytes_per_s_1m - 300.0).abs() < 1e-9, "{}", web.bytes_per_s_1m);
    assert_eq!(web.success_ratio, Some(1300.0 / 1304.0));
    assert_eq!(web.p99_open_ms, Some(100), "half the opens under 5 ms, half under 100 ms");
    assert_eq!(web.history.len(), 90);
    assert_eq!(web.history.last().unwrap().at, t0 + 120_000);
    assert!((web.history[89].conn_per_s - 10.0).abs() < 1e-9, "{:?}", &web.history[88..]);
    let path = v.paths.iter().find(|p| (p.from.as_str(), p.to.as_str()) == ("aws-1", "gcp-1")).unwrap();
    assert_eq!((path.transport.as_str(), path.traffic.connections, path.traffic.failed), ("quic", 1300, 0));
    assert_eq!(v.paths.len(), 1, "failed connections belong to no path");
}

#[test]
fn a_restarted_gateway_starts_over_and_old_samples_age_out() {
    let mut log = TrafficLog::default();
    let t0 = 5_000_000;
    let e = |ok| BTreeMap::from([(entry("prod/api", "gcp-1", "tcp"), served(ok, 0, 0))]);
    for k in 0..200u64 {
        log.record(gw("aws-1", "a"), 1, t0 + k * 10_000, e(1 + k));
    }
    let h = &log.gateways[&gw("aws-1", "a")];
    assert!(h.samples.len() <= 91, "{} samples kept", h.samples.len());
    // Restarted: the counters fall back, which is not negative traffic.
    log.record(gw("aws-1", "a"), 2, t0 + 2_000_000, e(5));
    let v = log.view(t0 + 2_000_000);
    assert_eq!(v.services[0].traffic.connections, 5);
    assert_eq!(v.services[0].traffic.conn_per_s_1m, 0.0, "one sample since the restart: no rate yet");
    log.forget(&gw("aws-1", "a"));
    assert!(log.view(t0).services.is_empty());
}
